"""Injected QA defects (expokit/capture/defects.py): syntax, refusals, physics, truth.json.

The physics is checked against known answers on near-noiseless sensors (an exposure gain
is a pixel ratio, a shift is a phase-correlation peak, a time offset is the clean camera's
image of a later scene instant, ...); sessions check that truth.json names every
injection and that the shots no defect touches are byte for byte those of a clean session.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from expokit.capture.defects import (
    DEFECT_KINDS,
    DefectError,
    DefectSpec,
    Shot,
    blur,
    flicker_factor,
    parse_defect,
)
from expokit.capture.footage import srgb_to_linear
from expokit.capture.simulate import simulate
from expokit.capture.simulator import (
    RigSimulation,
    SensorModel,
    SimulationConfig,
    SimulationError,
    expose,
)
from expokit.cli import cli
from expokit.core.video_io import FrameReader
from expokit.curation.truth import load_truth

#: Sensors with (nearly) no noise: pixel ratios and shifts are then exact.
QUIET = SensorModel(full_well_e=1e9, read_noise_e=0.0)
SMALL: dict[str, Any] = {"size": (128, 96), "seconds": 1.5, "fps": 12.0, "offset_s": 0.25,
                         "drift_ppm": 0.0}  # fmt: skip


def _sim(*defects: str, **changes: object) -> RigSimulation:
    settings = {**SMALL, "still_pairs": 3, "reference_sensor": QUIET, "test_sensor": QUIET,
                "steady_light": True, **changes}  # fmt: skip
    return RigSimulation.create(SimulationConfig(defects=defects, **settings))


def _shot(sim: RigSimulation, role: str, pair: int | None = 1) -> np.ndarray:
    return sim.still(role, sim.session_still_times()[0], pair=pair)


def _unclipped(*images: np.ndarray) -> np.ndarray:
    return np.logical_and.reduce([(im > 0.01) & (im < 0.95) for im in images])


# --------------------------------------------------------------------------- syntax


@pytest.mark.parametrize(
    ("text", "canonical", "role"),
    [
        ("gain:0.3@still=2", "gain:0.3@still=2", "test"),
        ("GAIN:0.30", "gain:0.3", "test"),
        (
            "misregistration:2.5@still=1-3,angle=90",
            "misregistration:2.5@still=1-3,angle=90",
            "test",
        ),
        ("flicker:0.05@ref,video,hz=3", "flicker:0.05@reference,video,hz=3", "reference"),
        ("scene_flicker:0.04@frames=0-47,hz=100", "scene_flicker:0.04@frames=0-47,hz=100", None),
        ("defocus:2@shape=disc,still=3,still=1", "defocus:2@still=1,still=3,shape=disc", "test"),
        ("clipping:3@reference,stills", "clipping:3@reference,stills", "reference"),
        ("light_ramp:0.2@video", "light_ramp:0.2@video", None),
        ("motion:0", "motion:0", None),
    ],
)
def test_parse_and_canonical_text(text: str, canonical: str, role: str | None) -> None:
    spec = parse_defect(text)
    assert spec.text() == canonical
    assert spec.role == role
    assert parse_defect(canonical) == spec  # the canonical text reads back the same


def test_places_default_to_everything_and_narrow_when_given() -> None:
    everything = parse_defect("gain:0.2")
    assert everything.stills == "all" and everything.frames == "all"
    stills_only = parse_defect("gain:0.2@still=2-4")
    assert stills_only.stills == (2, 3, 4) and stills_only.frames is None
    frames_only = parse_defect("gain:0.2@frames=5-9")
    assert frames_only.stills is None and frames_only.frames == (5, 9)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("blurr:2", r"unknown defect kind 'blurr'; known: misregistration, light_change"),
        ("gain", r"is not KIND:MAGNITUDE\[@WHERE\]"),
        ("gain:", r"is not KIND:MAGNITUDE"),
        ("gain:abc", r"magnitude 'abc' is not a number"),
        ("gain:-0.5", r"magnitude -0.5 is negative"),
        ("gain:nan", r"magnitude must be finite"),
        ("misregistration:inf", r"magnitude must be finite"),
        ("gain:9", r"too large \(gain takes at most 8 EV\)"),
        ("flicker:1", r"too large \(flicker takes below 1 fraction\)"),
        ("scene_flicker:0.1@test", r"is in the scene \(both cameras see it\); it takes no camera"),
        ("gain:0.1@hz=3", r"gain takes no parameter, not hz"),
        ("defocus:1@angle=3", r"defocus takes shape, not angle"),
        ("defocus:1@shape=square", r"shape must be gaussian or disc"),
        ("flicker:0.1@hz=0", r"hz must be in \(0, 1000\]"),
        ("gain:0.1@still=3-1", r"still='3-1' ends before it starts"),
        ("gain:0.1@still=0", r"still pairs are numbered from 1"),
        ("gain:0.1@still=x", r"still='x' is not N or N-M"),
        ("gain:0.1@frames=1-2,frames=4-5", r"give one frames=A-B range"),
        ("gain:0.1@everywhere", r"unknown term 'everywhere'"),
        ("gain:0.1@test,reference", r"names a camera twice"),
        ("gain:0.1@", r"empty term after '@'"),
    ],
)
def test_bad_defects_are_refused(text: str, match: str) -> None:
    with pytest.raises(DefectError, match=match):
        parse_defect(text)


def test_spec_checks_its_own_fields() -> None:
    with pytest.raises(DefectError, match="unknown defect kind 'nope'"):
        DefectSpec("nope", 1.0)
    with pytest.raises(DefectError, match="magnitude must be a finite number"):
        DefectSpec("gain", math.inf)
    with pytest.raises(DefectError, match="magnitude must be a finite number"):
        DefectSpec("gain", True)
    with pytest.raises(DefectError, match="hits no still pair and no frame"):
        DefectSpec("gain", 0.1, stills=None, frames=None)
    with pytest.raises(DefectError, match="camera must be reference or test"):
        DefectSpec("gain", 0.1, camera="left")
    with pytest.raises(DefectError, match="expected DefectSpec or --defect text"):
        SimulationConfig(defects=(3,))


def test_session_refuses_what_it_does_not_have(tmp_path: Path) -> None:
    with pytest.raises(DefectError, match=r"still pair 5 asked, the session has 3 still pair"):
        _sim("gain:0.3@still=5")
    with pytest.raises(DefectError, match=r"frame 99 asked, the movies have 18 frames"):
        _sim("gain:0.3@frames=10-99")
    with pytest.raises(DefectError, match="hits no shot of this session"):
        _sim("gain:0.3@stills", still_pairs=0)
    with pytest.raises(SimulationError, match=r"steady_light .* generated source only"):
        SimulationConfig(source=str(tmp_path / "x.png"), steady_light=True)


def test_cli_refuses_bad_defects(tmp_path: Path) -> None:
    out = tmp_path / "o"
    run = CliRunner().invoke(
        cli, ["simulate", "generated", "--out", str(out), "--defect", "gain:-1", "--no-progress"]
    )
    assert run.exit_code == 2
    assert "--defect" in run.output and "magnitude -1 is negative" in run.output
    run = CliRunner().invoke(
        cli, ["simulate", "generated", "--out", str(out), "--size", "128x96", "--seconds", "1.5",
              "--still-pairs", "2", "--defect", "gain:0.2@still=4", "--no-progress"],
    )  # fmt: skip
    assert run.exit_code == 1
    assert "still pair 4 asked, the session has 2 still pair(s)" in run.output
    assert not out.exists()  # refused before anything was written


# --------------------------------------------------------------------------- physics


@pytest.mark.parametrize("role", ["test", "reference"])
def test_gain_and_light_change_scale_the_exposure(role: str) -> None:
    clean = _shot(_sim(), role)
    for text, factor in ((f"gain:0.4@{role},still=1", 2**0.4),
                         (f"light_change:0.25@{role},still=1", 1.25),
                         (f"clipping:1@{role},still=1", 2.0)):  # fmt: skip
        hit = _shot(_sim(text), role)
        ok = _unclipped(clean, hit)
        assert ok.mean() > 0.5
        assert np.median(hit[ok] / clean[ok]) == pytest.approx(factor, rel=1e-4)
    other = "reference" if role == "test" else "test"
    np.testing.assert_array_equal(
        _shot(_sim(f"gain:0.4@{role},still=1"), other), _shot(_sim(), other)
    )


def test_clipping_clips_what_the_extra_exposure_pushes_past_white() -> None:
    clean = _shot(_sim(), "test")
    hit = _shot(_sim("clipping:3@still=1"), "test")
    assert np.mean(clean >= 1.0) < 0.01
    np.testing.assert_allclose(np.mean(hit >= 1.0), np.mean(clean * 8.0 >= 1.0), atol=1e-3)


def test_misregistration_shifts_the_image_by_its_magnitude() -> None:
    clean = _shot(_sim(), "reference")
    hit = _shot(_sim("misregistration:2.5@reference,still=1,angle=30"), "reference")
    a = cv2.cvtColor(clean, cv2.COLOR_RGB2GRAY).astype(np.float64)
    b = cv2.cvtColor(hit, cv2.COLOR_RGB2GRAY).astype(np.float64)
    (dx, dy), _ = cv2.phaseCorrelate(a, b)
    assert dx == pytest.approx(2.5 * math.cos(math.radians(30)), abs=0.1)
    assert dy == pytest.approx(2.5 * math.sin(math.radians(30)), abs=0.1)


def test_misregistration_of_the_test_camera_is_before_its_mirror() -> None:
    """The shift is in the unflipped test image (what the rig homography maps)."""
    clean = _shot(_sim(), "test")[:, ::-1]
    hit = _shot(_sim("misregistration:2@still=1,angle=0"), "test")[:, ::-1]
    a = cv2.cvtColor(np.ascontiguousarray(clean), cv2.COLOR_RGB2GRAY).astype(np.float64)
    b = cv2.cvtColor(np.ascontiguousarray(hit), cv2.COLOR_RGB2GRAY).astype(np.float64)
    (dx, dy), _ = cv2.phaseCorrelate(a, b)
    assert dx == pytest.approx(2.0, abs=0.1) and abs(dy) < 0.1


def test_time_offset_records_a_later_scene_instant() -> None:
    """The test body with a 0.2 s offset records exactly what a clean one records 0.2 s
    later (same noise draws: the same bytes)."""
    t = _sim().session_still_times()[0]
    late = _sim().still("test", t + 0.2)
    hit = _sim("time_offset:0.2@still=1").still("test", t, pair=1)
    np.testing.assert_array_equal(hit, late)
    assert np.abs(hit - _sim().still("test", t)).mean() > 1e-3  # the scene moved meanwhile


@pytest.mark.parametrize("shape", ["gaussian", "disc"])
def test_defocus_blurs_the_scene_before_the_sensor(shape: str) -> None:
    sim = _sim(f"defocus:2@reference,still=1,shape={shape}")
    t = sim.session_still_times()[0]
    hit = sim.still("reference", t, pair=1)
    expected = expose(blur(sim.footage.frame_at(t), 2.0, shape), sim.bodies["reference"],
                      sim.size, np.random.default_rng(0))  # fmt: skip
    np.testing.assert_allclose(hit, expected, atol=5e-4)
    clean = _shot(_sim(), "reference")
    assert np.abs(np.diff(hit, axis=1)).mean() < 0.7 * np.abs(np.diff(clean, axis=1)).mean()


def test_flicker_follows_its_formula_on_movie_frames() -> None:
    sim = _sim("flicker:0.1@reference,video,hz=2.3,phase=40")
    plan, body = sim.defects, sim.bodies["reference"]
    for k in range(0, sim.frame_count, 5):
        scene_t = float(body.scene_time(k / sim.fps))
        _, seen_by = plan.apply("reference", Shot("frame", k), scene_t, k / sim.fps,
                                sim.footage.frame_at, body)  # fmt: skip
        expected = 1 + 0.1 * math.sin(2 * math.pi * 2.3 * k / sim.fps + math.radians(40))
        assert seen_by.gain == pytest.approx(body.gain * expected, rel=1e-12)
        _, test_body = plan.apply("test", Shot("frame", k), scene_t, k / sim.fps,
                                  sim.footage.frame_at, sim.bodies["test"])  # fmt: skip
        assert test_body == sim.bodies["test"]  # the other camera does not flicker


def test_scene_flicker_is_seen_by_both_cameras_at_their_scene_time() -> None:
    sim = _sim("scene_flicker:0.2@video,hz=5.3,phase=10")
    for role, body in sim.bodies.items():
        for k in (0, 7, 13):
            scene_t = float(body.scene_time(k / sim.fps))
            _, seen_by = sim.defects.apply(role, Shot("frame", k), scene_t, k / sim.fps,
                                           sim.footage.frame_at, body)  # fmt: skip
            assert seen_by.gain == pytest.approx(
                body.gain * flicker_factor(0.2, 5.3, 10.0, scene_t), rel=1e-12
            )


def _mean_frames(path: Path) -> np.ndarray:
    with FrameReader(path) as reader:
        return np.array([srgb_to_linear(f / 255.0).mean() for f in reader])


def test_movie_flicker_and_board_untouched(tmp_path: Path) -> None:
    """End to end through H.264: the reference movie's brightness follows the flicker,
    the test movie and the board stills are those of a clean session, byte for byte."""
    config = {**SMALL, "still_pairs": 1, "steady_light": True}
    clean = simulate(SimulationConfig(**config), tmp_path / "clean").truth.to_json()
    hit = simulate(
        SimulationConfig(**config, defects=("flicker:0.15@reference,video,hz=2.3,phase=0",)),
        tmp_path / "hit",
    ).truth.to_json()
    for key in ("video_test", "board_reference", "board_test", "still_0002_reference"):
        assert hit["sha256"][key] == clean["sha256"][key], key
    assert hit["sha256"]["video_reference"] != clean["sha256"]["video_reference"]
    ratio = _mean_frames(tmp_path / "hit" / hit["files"]["video_reference"]) / _mean_frames(
        tmp_path / "clean" / clean["files"]["video_reference"]
    )
    k = np.arange(ratio.size)
    wave = np.sin(2 * np.pi * 2.3 * k / 12.0)
    # 8-bit sRGB, H.264 and a few clipped highlights: within 2 % frame by frame.
    np.testing.assert_allclose(ratio, 1 + 0.15 * wave, atol=0.02)
    amplitude = float(np.dot(ratio - 1, wave) / np.dot(wave, wave))
    assert amplitude == pytest.approx(0.15, rel=0.1)


def test_motion_control_draws_one_moving_disc() -> None:
    sim = _sim("motion:60@video")
    clean = _sim()
    injection = sim.defects.injections[0]
    radius = injection.params["radius_px"]
    centres = []
    for k in (0, 6, 12):
        t = float(sim.bodies["reference"].scene_time(k / sim.fps))
        a = sim.defects.apply("reference", Shot("frame", k), t, k / sim.fps,
                              sim.footage.frame_at, sim.bodies["reference"])[0]  # fmt: skip
        b = clean.footage.frame_at(t)
        changed = np.abs(a - b).max(axis=2) > 1e-6
        ys, xs = np.nonzero(changed)
        assert changed.sum() <= math.pi * (radius + 1) ** 2  # one disc, nothing else
        centres.append(xs.mean())
        assert ys.mean() == pytest.approx(injection.params["y_px"], abs=2.0)
    steps = np.abs(np.diff(centres))
    assert np.all(steps > 1.0)  # it moves (60 px/s x 0.5 s = 30 px, less a bounce)


# --------------------------------------------------------------------------- truth.json


def test_truth_records_every_injection(tmp_path: Path) -> None:
    defects = (
        "gain:0.3@still=2", "misregistration:2@reference,still=1,still=3,angle=45",
        "scene_flicker:0.05@frames=4-9", "flicker:0.04@video", "light_ramp:0.2",
    )  # fmt: skip
    config = SimulationConfig(**SMALL, still_pairs=3, defects=defects)
    out = tmp_path / "sim"
    truth = simulate(config, out).truth.to_json()
    assert truth == load_truth(out).to_json()  # the reader validates it field by field
    records = truth["defects"]
    assert [r["spec"] for r in records] == [parse_defect(d).text() for d in defects]
    assert [r["id"] for r in records] == list(range(len(defects)))
    gain, misreg, scene, flicker, ramp = records
    assert (gain["kind"], gain["magnitude"], gain["unit"], gain["camera"]) == ("gain", 0.3, "EV",
                                                                               "test")  # fmt: skip
    assert gain["stills"] == [2] and gain["still_shots"] == [3] and gain["frames"] == {}
    assert gain["files"] == [truth["files"]["still_0003_test"]]
    assert misreg["camera"] == "reference" and misreg["stills"] == [1, 3]
    assert misreg["files"] == [truth["files"]["still_0002_reference"],
                               truth["files"]["still_0004_reference"]]  # fmt: skip
    assert misreg["params"]["shift_px"] == pytest.approx([math.sqrt(2), math.sqrt(2)])
    assert scene["camera"] is None and scene["stills"] == []
    assert scene["frames"]["reference"] == [4, 9]
    # The test body starts 0.25 s = 3 frames later: it shows those instants 3 frames on.
    assert scene["frames"]["test"] == [7, 12]
    assert scene["params"]["hz"] == 5.3 and 0 <= scene["params"]["phase_deg"] < 360
    assert sorted(scene["files"]) == sorted([truth["sync_a"], truth["sync_b"]])
    assert flicker["frames"] == {"test": [0, 17]} and flicker["files"] == [truth["sync_b"]]
    assert ramp["control"] is True and ramp["unit"] == "EV/s"
    assert ramp["stills"] == [1, 2, 3] and ramp["frames"] == {"reference": [0, 17],
                                                              "test": [0, 17]}  # fmt: skip
    for record in records:
        assert record["model"] == DEFECT_KINDS[record["kind"]].model
        assert all((out / path).is_file() for path in record["files"])
    assert [d["kind"] for d in truth["config"]["defects"]] == [r["kind"] for r in records]


def test_clipping_records_the_clipped_share(tmp_path: Path) -> None:
    """truth.json says how much of the image the over-exposure clipped: the share of the
    written 16-bit still's pixels with a channel at white, and a mean over movie frames."""
    defects = ("clipping:3@still=1-2", "clipping:2@reference,video")
    config = SimulationConfig(**SMALL, still_pairs=2, defects=defects)
    out = tmp_path / "sim"
    truth = simulate(config, out).truth.to_json()
    stills, movie = truth["defects"]
    shares = stills["params"]["clipped_fraction"]
    assert len(shares) == 2
    for share, path in zip(shares, stills["files"], strict=True):
        image = cv2.imread(str(out / path), cv2.IMREAD_UNCHANGED)
        assert share == pytest.approx(float(np.mean(image.max(axis=2) == 65535)), abs=0.01)
        assert 0.02 < share < 1.0
    assert 0.0 < movie["params"]["clipped_fraction_frames"] < 1.0
    assert "clipped_fraction" not in movie["params"]


def test_clean_shots_are_byte_identical_and_seeded(tmp_path: Path) -> None:
    def run(name: str, *defects: str, seed: int = 0) -> dict:
        config = SimulationConfig(**SMALL, still_pairs=3, seed=seed, defects=defects)
        return simulate(config, tmp_path / name).truth.to_json()

    clean = run("clean")
    assert "defects" not in clean and "defects" not in clean["config"]
    hit = run("hit", "gain:0.5@still=2", "defocus:2@reference,still=3")
    again = run("again", "gain:0.5@still=2", "defocus:2@reference,still=3")
    changed = {k for k in clean["sha256"] if clean["sha256"][k] != hit["sha256"][k]}
    assert changed == {"still_0003_test", "still_0004_reference"}
    assert hit["sha256"] == again["sha256"]
    strip = ("files",)
    assert [{k: v for k, v in d.items() if k not in strip} for d in hit["defects"]] == [
        {k: v for k, v in d.items() if k not in strip} for d in again["defects"]
    ]
    drawn = run("drawn", "misregistration:2@still=1", seed=1)
    other = run("other", "misregistration:2@still=1", seed=2)
    assert drawn["defects"][0]["params"]["angle_deg"] != other["defects"][0]["params"]["angle_deg"]


def test_cli_injects_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    run = CliRunner().invoke(
        cli, ["simulate", "generated", "--out", str(out), "--size", "128x96", "--seconds", "1.5",
              "--still-pairs", "2", "--steady-light", "--defect", "gain:0.3@still=2",
              "--defect", "scene_flicker:0.05@video", "--no-progress"],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    assert "defect      gain:0.3@still=2" in run.output
    assert "defects     2 injected" in run.output
    truth = json.loads((out / "truth.json").read_text())
    assert [d["spec"] for d in truth["defects"]] == ["gain:0.3@still=2", "scene_flicker:0.05@video"]
    assert truth["config"]["steady_light"] is True
