"""The rig simulator: session layout, every calibration stage against truth.json, bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from expokit.calibration.geometry import load_rig_calibration
from expokit.calibration.homography import homography_grid_error
from expokit.calibration.mirror import Flip
from expokit.calibration.sync import synchronize
from expokit.calibration.sync_record import SyncConfig, load_sync_json
from expokit.capture.footage import FootageError
from expokit.capture.journal import read_journal
from expokit.capture.rig_config import RigConfig
from expokit.capture.simulate import simulate
from expokit.capture.simulator import SimulationConfig, SimulationError
from expokit.cli import cli
from expokit.core.roots import root_kind
from tests.conftest import shared_path

BOARD_ARGS = ["--charuco", "7x5", "--square", "0.04", "--marker", "0.028"]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """6 s of generated footage, 320x240, no drift, test camera starts 0.53 s later."""
    out = tmp_path_factory.mktemp("sim") / "gen"
    config = SimulationConfig(offset_s=-0.53, drift_ppm=0.0, seconds=6.0, still_pairs=2)
    result = simulate(config, out)
    return out, result.truth.to_json()


def _grid_error(calibration_dir: Path, truth: dict) -> float:
    calib = load_rig_calibration(calibration_dir / "rig_calibration.json")
    assert calib.flip is Flip(truth["flip"])
    mean, _ = homography_grid_error(
        calib.homography, np.array(truth["homography"]), tuple(truth["image_size"])
    )
    return mean


def test_session_is_what_capture_writes(session: tuple[Path, dict]) -> None:
    root, truth = session
    assert root_kind(root) == "session"
    config = RigConfig.from_dict(json.loads((root / "rig.json").read_text()))
    assert config.backend == "fake" and config.ev_offset == truth["ev_offset"] == -2.0
    events, torn = read_journal(root / "journal.jsonl")
    assert torn == 0
    planned = {e["index"]: e for e in events if e["event"] == "planned"}
    # The board is journaled as a calibration shot (curate build skips that kind).
    assert [p["kind"] for p in planned.values()] == ["video", "pair", "pair", "calibration"]
    downloaded = {(e["index"], e["role"]): e["file"] for e in events if e["event"] == "downloaded"}
    assert downloaded[(4, "reference")] == "gen_0004_reference_0.png"
    assert truth["files"]["board_test"] == "files/gen_0004_test_N2.png"
    assert downloaded[(1, "reference")] == "gen_0001_reference_0.mp4"  # rig's template
    assert downloaded[(1, "test")] == "gen_0001_test_N2.mp4"
    assert len(downloaded) == 8 and all((root / "files" / f).is_file() for f in downloaded.values())
    assert {e["index"] for e in events if e["event"] == "shot_done"} == {1, 2, 3, 4}
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [
        "files", "journal.jsonl", "rig.json", "truth.json"
    ]  # fmt: skip
    # rig.json is a fake rig naming the source: `expokit capture` on it simulates again.
    assert config.fake["source"] == "generated" and config.simulation() is not None
    assert truth["offset_s"] == pytest.approx(-0.53, abs=1e-12)
    assert truth["photometric_gain"] == pytest.approx(4.0)
    for key, path in truth["files"].items():
        assert (root / path).is_file(), key


def test_geometry_from_board_recovers_truth(session: tuple[Path, dict], tmp_path: Path) -> None:
    root, truth = session
    out = tmp_path / "rig"
    run = CliRunner().invoke(
        cli, ["calibrate", "geometry", str(root / truth["files"]["board_reference"]),
              str(root / truth["files"]["board_test"]), "--out", str(out), *BOARD_ARGS],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    assert "charuco" in run.output
    assert _grid_error(out, truth) < 0.3


def test_geometry_from_scene_still_recovers_truth(
    session: tuple[Path, dict], tmp_path: Path
) -> None:
    root, truth = session
    run = CliRunner().invoke(
        cli, ["calibrate", "geometry", str(root / truth["files"]["still_0002_reference"]),
              str(root / truth["files"]["still_0002_test"]), "--out", str(tmp_path / "rig")],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    assert _grid_error(tmp_path / "rig", truth) < 0.3


def test_audio_sync_recovers_offset(session: tuple[Path, dict], tmp_path: Path) -> None:
    root, truth = session
    sync_json = tmp_path / "sync.json"
    run = CliRunner().invoke(
        cli, ["calibrate", "sync", str(root / truth["sync_a"]), str(root / truth["sync_b"]),
              "--out", str(sync_json)],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    result = load_sync_json(sync_json)
    assert result.method == "audio"
    assert abs(result.offset_s - truth["offset_s"]) < 1e-3
    # The test body started later: reference frame i shows what test frame i - 12.7 shows.
    assert result.frame_map is not None
    fps = truth["fps"]
    for index_a, index_b in enumerate(result.frame_map):
        if index_b is not None:
            assert abs(index_b / fps - (index_a / fps + truth["offset_s"])) <= 0.5 / fps + 1e-6


def test_video_only_sync_within_one_frame(session: tuple[Path, dict]) -> None:
    root, truth = session
    result = synchronize(
        root / truth["sync_a"], root / truth["sync_b"], SyncConfig(method="brightness")
    )
    assert abs(result.offset_s - truth["offset_s"]) < 1.0 / truth["fps"]


def test_curate_discovers_the_video_session(session: tuple[Path, dict], tmp_path: Path) -> None:
    from expokit.curation.build.config import BuildConfig
    from expokit.curation.build.sources import discover_capture

    root, truth = session
    calibration = tmp_path / "rig"
    run = CliRunner().invoke(
        cli, ["calibrate", "geometry", str(root / truth["files"]["board_reference"]),
              str(root / truth["files"]["board_test"]), "--out", str(calibration), *BOARD_ARGS],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    sync_json = tmp_path / "sync.json"
    synchronize_run = CliRunner().invoke(
        cli, ["calibrate", "sync", str(root / truth["sync_a"]), str(root / truth["sync_b"]),
              "--out", str(sync_json)],
    )  # fmt: skip
    assert synchronize_run.exit_code == 0, synchronize_run.output
    found = discover_capture(root, BuildConfig(), calibration, [sync_json])
    video = [s for s in found.scenes if s.video]
    assert len(video) == 1 and video[0].problem is None
    assert len(video[0].pairs) > 100  # 6 s at 24 fps, minus the 0.53 s offset
    stills = [s for s in found.scenes if not s.video]
    assert stills and all(s.problem is None for s in stills)
    inputs = {Path(p.input.path).name for s in stills for p in s.pairs}
    assert inputs and not inputs & {Path(truth["files"]["board_test"]).name}  # board skipped


def test_deterministic_per_seed(tmp_path: Path) -> None:
    def run(name: str, seed: int) -> dict:
        config = SimulationConfig(seed=seed, seconds=1.5, size=(96, 64), still_pairs=1)
        return simulate(config, tmp_path / name).truth.to_json()

    first, again, other = run("a", 5), run("b", 5), run("c", 6)
    strip = ("files", "sha256", "sync_a", "sync_b")  # file names carry the session name
    assert first["sha256"] == again["sha256"]  # same bytes: movies, stills, board
    assert {k: v for k, v in first.items() if k not in strip} == {
        k: v for k, v in again.items() if k not in strip
    }
    assert other["homography"] != first["homography"]
    assert other["sha256"]["still_0002_test"] != first["sha256"]["still_0002_test"]


def test_physics_exposure_and_flip(session: tuple[Path, dict]) -> None:
    """Unclipped linear pixels: reference = test (unflipped, warped) * 2^-ev."""
    from expokit.capture.footage import srgb_to_linear

    root, truth = session
    ref = cv2.imread(str(root / truth["files"]["still_0002_reference"]), cv2.IMREAD_UNCHANGED)
    test = cv2.imread(str(root / truth["files"]["still_0002_test"]), cv2.IMREAD_UNCHANGED)
    assert ref.dtype == np.uint16
    w, h = truth["image_size"]
    unflipped = Flip(truth["flip"]).apply(test)
    warped = cv2.warpPerspective(
        srgb_to_linear(unflipped / 65535.0), np.array(truth["homography"]), (w, h)
    )
    linear_ref = srgb_to_linear(ref / 65535.0)
    inner = (slice(12, h - 12), slice(12, w - 12))
    mask = (linear_ref[inner] < 0.9) & (warped[inner] > 0.02)
    gain = float(np.median(linear_ref[inner][mask] / warped[inner][mask]))
    assert gain == pytest.approx(truth["photometric_gain"], rel=0.03)


@pytest.mark.slow
@pytest.mark.slow
def test_drift_on_a_short_clip_is_not_estimated_and_says_so(tmp_path: Path) -> None:
    """Under SyncConfig.drift_min_span_s (30 s) of audio, drift is not estimated: sync must
    say so, never report a silent 0 ppm (long clips: tests/test_simulation_chain.py)."""
    config = SimulationConfig(drift_ppm=150.0, offset_s=0.37, seconds=20.0, size=(128, 96),
                              still_pairs=0)  # fmt: skip
    truth = simulate(config, tmp_path / "drift").truth.to_json()
    result = synchronize(tmp_path / "drift" / truth["sync_a"], tmp_path / "drift" / truth["sync_b"])
    assert not result.drift_estimated
    assert any("drift not estimated" in w for w in result.warnings), result.warnings
    # the offset still holds near the start of the overlap (150 ppm x 20 s = 3 ms at the end)
    assert abs(result.offset_s - truth["offset_s"]) < 3e-3


@pytest.mark.slow
# cockatoo.mp4 carries an MP3 track of digital silence: simulated without sound, so sync
# falls back to brightness (or says there is no cue), never a made-up audio answer.
@pytest.mark.parametrize(("name", "sound"), [("Megamind.avi", True), ("cockatoo.mp4", False)])
def test_real_clip(name: str, sound: bool, tmp_path: Path) -> None:
    clip = shared_path("video", name)
    config = SimulationConfig(source=str(clip), drift_ppm=0.0, offset_s=0.37, seconds=6.0,
                              size=(360, 264), still_pairs=1)  # fmt: skip
    out = tmp_path / "sim"
    truth = simulate(config, out).truth.to_json()
    assert truth["audio"] is sound and truth["source"]["kind"] == "video"
    if sound:
        result = synchronize(out / truth["sync_a"], out / truth["sync_b"])
        assert result.method == "audio"
        assert abs(result.offset_s - truth["offset_s"]) < 1e-3
    else:
        from expokit.calibration.sync import NoSyncCueError
        from expokit.calibration.sync_record import SyncError

        try:
            result = synchronize(out / truth["sync_a"], out / truth["sync_b"])
        except (NoSyncCueError, SyncError) as exc:
            assert "audio" in str(exc)  # names why audio could not be used
        else:
            assert result.method == "brightness"
            assert abs(result.offset_s - truth["offset_s"]) < 1.0 / truth["fps"]
    run = CliRunner().invoke(
        cli, ["calibrate", "geometry", str(out / truth["files"]["board_reference"]),
              str(out / truth["files"]["board_test"]), "--out", str(tmp_path / "rig"), *BOARD_ARGS],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    assert _grid_error(tmp_path / "rig", truth) < 0.3
    # the movie keeps the source's own frame rate
    from expokit.core.video_io import probe_media

    assert probe_media(clip).fps == pytest.approx(truth["fps"], rel=1e-3)


def test_frame_folder_source(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (80, 112, 3), dtype=np.uint8), (0, 0), 1.0)
    for i in range(40):
        cv2.imwrite(str(frames / f"f{i}.png"), np.roll(base, i, axis=1))
    config = SimulationConfig(source=str(frames), fps=20.0, offset_s=0.1, still_pairs=1)
    truth = simulate(config, tmp_path / "out").truth.to_json()
    assert truth["source"]["kind"] == "frames" and truth["image_size"] == [112, 80]
    assert not truth["audio"] and truth["fps"] == 20.0
    assert truth["bodies"]["test"]["frames"] >= 30


# --------------------------------------------------------------------------- bad input


def _cli(*args: str) -> tuple[int, str]:
    run = CliRunner().invoke(cli, ["simulate", *args, "--no-progress"])
    return run.exit_code, run.output


def test_missing_source(tmp_path: Path) -> None:
    code, output = _cli(str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o"))
    assert code == 1 and "nope.mp4: no such file or folder" in output
    assert not (tmp_path / "o").exists()  # nothing created before the inputs are checked


def test_video_without_frames(tmp_path: Path) -> None:
    from expokit.core.video_io import ffmpeg_exe

    audio_only = tmp_path / "sound.m4a"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
         "-c:a", "aac", str(audio_only)], check=True,
    )  # fmt: skip
    with pytest.raises(FootageError, match=r"sound\.m4a: has no video frames"):
        simulate(SimulationConfig(source=str(audio_only)), tmp_path / "o")
    code, output = _cli(str(audio_only), "--out", str(tmp_path / "o2"))
    assert code == 1 and "has no video frames" in output


def test_frame_folder_with_mixed_sizes(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "a.png"), np.zeros((64, 96, 3), np.uint8))
    cv2.imwrite(str(frames / "b.png"), np.zeros((80, 96, 3), np.uint8))
    with pytest.raises(FootageError, match=r"mixed sizes: a.png is 96x64, b.png is 96x80"):
        simulate(SimulationConfig(source=str(frames)), tmp_path / "o")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--ev-offset", "-9"], r"ev_offset \(--ev-offset\) = -9 is beyond .* \+-8 EV"),
        (["--drift-ppm", "1500"], r"drift_ppm \(--drift-ppm\) = 1500"),
        (["--size", "321x240"], r"--size.*must be even"),
        (["--seconds", "30", "--offset-s", "0.5", "--size", "64x64"], None),
    ],
)
def test_impossible_settings(tmp_path: Path, args: list[str], match: str | None) -> None:
    frames = tmp_path / "frames"
    if match is None:  # a source too short for the recording asked for
        frames.mkdir()
        for i in range(10):
            cv2.imwrite(str(frames / f"{i}.png"), np.full((64, 64, 3), i * 20, np.uint8))
        code, output = _cli(str(frames), "--out", str(tmp_path / "o"), *args)
        assert code == 1 and "--seconds" in output and "of footage leave" in output
        return
    code, output = _cli("generated", "--out", str(tmp_path / "o"), *args)
    assert code == 1
    import re

    assert re.search(match, output), output
    with pytest.raises(SimulationError):
        SimulationConfig(ev_offset=8.5)


def test_out_must_be_new(tmp_path: Path) -> None:
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "x.txt").write_text("mine")
    code, output = _cli("generated", "--out", str(tmp_path / "o"), "--size", "64x64")
    assert code == 1 and "is not empty" in output
