"""QA flags against injected truth: each defect the simulator injects at a clear magnitude is
flagged by its flag, the clean pairs beside it carry no flag, the negative controls raise
nothing, and :func:`rows_against_truth` maps every manifest row back to its defects.

Generated footage with steady light (its claps stay: audio sync is exact), 160x120 px at
12 fps, the test body 3 frames (0.25 s) behind the reference so paired frames show the same
scene instant; the rig calibrated from the board stills (feature fallback at this size).
The flags and figures are those of the QA spec (docs/qa.md): ``misaligned``,
``gain_outlier`` (figure ``gain_deviation_ev``), ``gain_unstable``, ``target_flicker``,
``defocus`` (``focus_ratio``), ``clipped_input``, ``clipped_target``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from expokit.calibration.geometry import calibrate_geometry
from expokit.calibration.sync import synchronize
from expokit.calibration.sync_record import write_sync_json
from expokit.capture.footage import GeneratedScene
from expokit.capture.simulate import simulate
from expokit.capture.simulator import SimulationConfig
from expokit.curation.build.config import BuildConfig
from expokit.curation.build.driver import build_dataset
from expokit.curation.truth import (
    RowTruth,
    TruthError,
    control_counts,
    detection_counts,
    expected_flags,
    false_positive_counts,
    rows_against_truth,
)

SIZE = (160, 120)
FPS = 12.0
SEED = 0
RIG: dict[str, Any] = {"size": SIZE, "fps": FPS, "offset_s": 0.25, "drift_ppm": 0.0, "seed": SEED,
       "steady_light": True}  # fmt: skip


def _offset_s(scene_seed: int) -> float:
    """A time offset that moves the generated scene's panning background (the seed's
    ``pan``, px/s) by 3 px, three times the residual threshold."""
    margin = max(8, round(0.04 * max(SIZE)))
    scene = GeneratedScene((SIZE[0] + 2 * margin, SIZE[1] + 2 * margin), 3.0, scene_seed)
    return round(min(2.0, 3.0 / float(math.hypot(*scene.pan))), 3)


OFFSET_S = _offset_s(SEED)

#: Still pair -> defect at a clear magnitude, and the flag it must raise.
STILL_DEFECTS: dict[int, tuple[str, str]] = {
    2: ("misregistration:3", "misaligned"),
    3: ("gain:0.5", "gain_outlier"),
    4: ("light_change:0.5@reference", "gain_outlier"),
    5: ("defocus:5", "defocus"),
    6: ("defocus:5@reference", "defocus"),
    7: ("clipping:4", "clipped_input"),
    8: ("clipping:3@reference", "clipped_target"),
    9: (f"time_offset:{OFFSET_S}", "misaligned"),
}
STILL_PAIRS = 12

#: Clip sessions (each its own scene of the same rig: curation refuses one capture under
#: two names): name -> (defects, flags every pair of the clip must carry).
CLIPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "flicker_test": (("flicker:0.1@video",), ("gain_unstable",)),
    "flicker_reference": (("flicker:0.1@reference,video",), ("gain_unstable", "target_flicker")),
    "scene_flicker": (("scene_flicker:0.1@video",), ("target_flicker",)),
    "time_offset": ((f"time_offset:{_offset_s(SEED + 4)}@video",), ("misaligned",)),
    "light_ramp": (("light_ramp:0.3@video",), ()),
    "motion": (("motion:60@video",), ()),
    "frame_ranges": (("gain:0.5@frames=6-9", "misregistration:3@frames=14-17"), ()),
}


def _place(text: str, still: int) -> str:
    """``text`` restricted to still pair ``still`` (keeping a camera it names)."""
    return f"{text},still={still}" if "@" in text else f"{text}@still={still}"


def _build(base: Path, sessions: dict[str, SimulationConfig]) -> tuple[Path, list[Path]]:
    """Simulate ``sessions``, calibrate the rig on the first one's board, sync every movie,
    build one dataset of all of them."""
    roots, syncs = [], []
    calibration = None
    for name, config in sessions.items():
        root = base / name
        truth = simulate(config, root).truth.to_json()
        if calibration is None:
            calibrate_geometry([root / truth["files"]["board_reference"]],
                               [root / truth["files"]["board_test"]], base / "rig")  # fmt: skip
            calibration = base / "rig" / "rig_calibration.json"
        sync = synchronize(root / truth["sync_a"], root / truth["sync_b"])
        assert abs(sync.offset_s - truth["offset_s"]) < 1e-3  # pairs show the same instant
        syncs.append(write_sync_json(sync, base / f"{name}_sync.json"))
        roots.append(root)
    dataset = base / "ds"
    summary = build_dataset(roots, dataset, BuildConfig(), rig_calibration=calibration,
                            sync_files=syncs, workers=1, progress=False)  # fmt: skip
    assert summary.ok, summary.report()
    return dataset, roots


@pytest.fixture(scope="module")
def still_rows(tmp_path_factory: pytest.TempPathFactory) -> list[RowTruth]:
    """One session: 12 still pairs, 8 of them with one defect each; a clean 2 s movie."""
    defects = tuple(_place(text, still) for still, (text, _) in STILL_DEFECTS.items())
    config = SimulationConfig(**RIG, seconds=2.0, still_pairs=STILL_PAIRS, defects=defects)
    dataset, roots = _build(tmp_path_factory.mktemp("qa_stills"), {"stills": config})
    return rows_against_truth(dataset, roots)


@pytest.fixture(scope="module")
def clip_rows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[RowTruth]]:
    """One 2 s clip per entry of :data:`CLIPS` (and one still pair each), one dataset."""
    sessions = {
        name: SimulationConfig(
            **RIG, scene_seed=SEED + 1 + index, seconds=2.0, still_pairs=1, defects=defects
        )
        for index, (name, (defects, _)) in enumerate(CLIPS.items())
    }
    dataset, roots = _build(tmp_path_factory.mktemp("qa_clips"), sessions)
    rows = rows_against_truth(dataset, roots)
    return {name: [r for r in rows if r.session.name == name and r.frames] for name in CLIPS}


def _by_still(rows: list[RowTruth]) -> dict[int, RowTruth]:
    return {r.still: r for r in rows if r.still is not None}


def _figure(row: RowTruth, name: str) -> float:
    value: Any = row.figures.get(name)
    assert value is not None and not (isinstance(value, float) and math.isnan(value)), (
        f"{row.pair_id}: no {name} figure"
    )
    return float(value)


# --------------------------------------------------------------------------- the reader


def test_every_row_is_mapped_to_its_defects(still_rows: list[RowTruth]) -> None:
    stills = _by_still(still_rows)
    assert sorted(stills) == list(range(1, STILL_PAIRS + 1))
    for number, row in stills.items():
        kinds = [d["kind"] for d in row.defects]
        if number in STILL_DEFECTS:
            assert kinds == [STILL_DEFECTS[number][0].split(":")[0]]
            assert row.expected() == (STILL_DEFECTS[number][1],)
        else:
            assert kinds == [] and row.clean
    video = [r for r in still_rows if r.frames]
    assert len(video) >= 18 and all(r.clean for r in video)
    # The test body starts 3 frames later: reference frame i shows what test frame i+3 does.
    assert {r.frames["test"] - r.frames["reference"] for r in video} == {3}


def test_frame_ranges_map_to_rows(clip_rows: dict[str, list[RowTruth]]) -> None:
    rows = clip_rows["frame_ranges"]
    gain = [r for r in rows if any(d["kind"] == "gain" for d in r.defects)]
    shifted = [r for r in rows if any(d["kind"] == "misregistration" for d in r.defects)]
    # Test-camera defects on test frames 6-9 and 14-17: rows whose test frame is in range.
    assert sorted(r.frames["test"] for r in gain) == [6, 7, 8, 9]
    assert sorted(r.frames["test"] for r in shifted) == [14, 15, 16, 17]
    assert all(len(r.clip_defects) == 2 and not r.clean for r in rows)


def test_reader_refuses_a_dataset_of_other_sessions(
    still_rows: list[RowTruth], tmp_path: Path
) -> None:
    other = tmp_path / "other"
    simulate(SimulationConfig(size=(96, 64), seconds=1.5, still_pairs=1, seed=3), other)
    dataset = still_rows[0].session.parent / "ds"
    with pytest.raises(TruthError, match=r"no pair of the dataset comes from .*other"):
        rows_against_truth(dataset, [other])


def test_expected_flags_follow_the_camera() -> None:
    assert expected_flags({"kind": "clipping", "camera": "test"}) == ("clipped_input",)
    assert expected_flags({"kind": "clipping", "camera": "reference"}) == ("clipped_target",)
    assert expected_flags({"kind": "flicker", "camera": "test"}) == ("gain_unstable",)
    assert expected_flags({"kind": "light_ramp", "camera": None}) == ()
    with pytest.raises(TruthError, match="unknown defect kind 'x'"):
        expected_flags({"kind": "x"})


# --------------------------------------------------------------------------- still pairs


@pytest.mark.parametrize("number", sorted(STILL_DEFECTS))
def test_still_defect_is_flagged(still_rows: list[RowTruth], number: int) -> None:
    text, flag = STILL_DEFECTS[number]
    row = _by_still(still_rows)[number]
    assert flag in row.flags, f"still {number} ({text}): flags {row.flags}"


def test_clean_still_and_video_pairs_carry_no_flag(still_rows: list[RowTruth]) -> None:
    clean = [r for r in still_rows if r.clean]
    assert len(clean) >= 4 + 18
    flagged = {r.pair_id: r.flags for r in clean if r.flags}
    assert not flagged, flagged


def test_figures_measure_the_injected_magnitudes(still_rows: list[RowTruth]) -> None:
    """The figures behind the flags read the truth: a 3 px shift is a 3 px residual, a
    0.5 EV brighter test exposure a -0.5 EV gain deviation (gain = target / input), a 50 %
    brighter reference +log2(1.5), a blurred camera the softer side of the focus ratio."""
    stills = _by_still(still_rows)
    assert _figure(stills[2], "alignment_residual_px") == pytest.approx(3.0, abs=0.4)
    assert _figure(stills[3], "gain_deviation_ev") == pytest.approx(-0.5, abs=0.03)
    assert _figure(stills[4], "gain_deviation_ev") == pytest.approx(math.log2(1.5), abs=0.03)
    assert _figure(stills[5], "focus_ratio") < 1.0 < _figure(stills[6], "focus_ratio")
    for number in (1, 10, 11, 12):
        assert abs(_figure(stills[number], "gain_deviation_ev")) < 0.03
        assert _figure(stills[number], "alignment_residual_px") < 0.3


def test_counts_say_every_defect_was_detected(still_rows: list[RowTruth]) -> None:
    counts = detection_counts(still_rows)
    assert {(c.kind, c.camera) for c in counts} == {
        ("misregistration", "test"), ("gain", "test"), ("light_change", "reference"),
        ("defocus", "test"), ("defocus", "reference"), ("clipping", "test"),
        ("clipping", "reference"), ("time_offset", "test"),
    }  # fmt: skip
    missed = [c for c in counts if c.detected != c.injected]
    assert not missed, missed
    assert all(c.injected == 1 for c in counts)
    fp = false_positive_counts(still_rows)
    assert fp.pairs == len([r for r in still_rows if r.clean]) and fp.flagged == 0, fp.by_flag


# --------------------------------------------------------------------------- clips


@pytest.mark.parametrize("name", [n for n, (_, flags) in CLIPS.items() if flags])
def test_clip_defect_is_flagged_on_its_clip(
    clip_rows: dict[str, list[RowTruth]], name: str
) -> None:
    rows = clip_rows[name]
    assert len(rows) >= 18
    for flag in CLIPS[name][1]:
        missing = [r.frames for r in rows if flag not in r.flags]
        assert not missing, f"{name}: {flag} missing on frames {missing}"


@pytest.mark.parametrize("name", ["light_ramp", "motion"])
def test_negative_controls_raise_nothing(clip_rows: dict[str, list[RowTruth]], name: str) -> None:
    rows = clip_rows[name]
    assert len(rows) >= 18
    counts = control_counts(rows)
    assert counts.pairs == len(rows)
    assert counts.flagged == 0, f"{name}: {counts.by_flag}"


def test_camera_flicker_in_the_test_camera_leaves_the_target_steady(
    clip_rows: dict[str, list[RowTruth]],
) -> None:
    """Flicker in the test camera changes the pair's gain, not the target's brightness."""
    rows = clip_rows["flicker_test"]
    assert not [r.frames for r in rows if "target_flicker" in r.flags]


def test_frame_range_defects_flag_their_frames_only(clip_rows: dict[str, list[RowTruth]]) -> None:
    rows = clip_rows["frame_ranges"]
    for row in rows:
        kinds = {d["kind"] for d in row.defects}
        assert ("gain_outlier" in row.flags) == ("gain" in kinds), (row.frames, row.flags)
        assert ("misaligned" in row.flags) == ("misregistration" in kinds), (row.frames, row.flags)
        if not kinds:
            assert row.flags == (), (row.frames, row.flags)
