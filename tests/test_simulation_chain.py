"""The whole chain on a simulated session, every stage against truth.json (issue 11).

simulate -> calibrate geometry (board stills) -> calibrate sync -> curate build (video +
still pairs) -> curate export (dime; msec refused: a two-camera rig has one input EV) ->
curate validate -> :func:`compare_to_truth`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from expokit.calibration.sync import synchronize
from expokit.capture.simulate import simulate
from expokit.capture.simulator import SimulationConfig
from expokit.cli import cli
from expokit.curation.truth import StageCheck, TruthError, compare_to_truth, format_checks

BOARD_ARGS = ["--charuco", "7x5", "--square", "0.04", "--marker", "0.028"]


def _ok(*args: str) -> str:
    run = CliRunner().invoke(cli, list(args))
    assert run.exit_code == 0, run.output
    return run.output


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """6 s of generated footage at 256x192, 12 fps; the test body starts 0.3 s later."""
    base = tmp_path_factory.mktemp("chain")
    session = base / "sim"
    config = SimulationConfig(offset_s=-0.3, drift_ppm=0.0, seconds=6.0, size=(256, 192),
                              fps=12.0, still_pairs=2)  # fmt: skip
    truth = simulate(config, session).truth.to_json()
    rig, sync_json, dataset = base / "rig", base / "sync.json", base / "ds"
    _ok("calibrate", "geometry", str(session / truth["files"]["board_reference"]),
        str(session / truth["files"]["board_test"]), "--out", str(rig), *BOARD_ARGS)  # fmt: skip
    _ok("calibrate", "sync", str(session / truth["sync_a"]), str(session / truth["sync_b"]),
        "--out", str(sync_json))  # fmt: skip
    _ok("curate", "build", str(session), "--out", str(dataset), "--rig-calibration",
        str(rig / "rig_calibration.json"), "--sync", str(sync_json), "--no-progress")  # fmt: skip
    return {"session": session, "rig": rig / "rig_calibration.json", "sync": sync_json,
            "dataset": dataset, "base": base}  # fmt: skip


def _by_stage(checks: list[StageCheck]) -> dict[str, StageCheck]:
    return {c.stage: c for c in checks}


def test_every_stage_matches_the_truth(chain: dict[str, Path]) -> None:
    checks = compare_to_truth(chain["session"], chain["rig"], chain["sync"], chain["dataset"],
                              video_only_sync=True)  # fmt: skip
    table = format_checks(checks)
    assert all(c.passed for c in checks), table
    stages = _by_stage(checks)
    assert set(stages) == {
        "flip", "homography grid error px", "sync offset s (audio)", "sync drift ppm",
        "video-only sync offset s (brightness)", "frame pairing frames", "build residual px",
        "photometric gain (stills)", "photometric gain (video)",
    }  # fmt: skip
    assert stages["flip"].measured == "horizontal"
    assert stages["homography grid error px"].measured < 0.3
    assert abs(stages["sync offset s (audio)"].measured - (-0.3)) < 1e-3
    assert abs(stages["video-only sync offset s (brightness)"].measured - (-0.3)) < 1 / 12
    # 6 s < drift_min_span_s: drift is not estimated, and sync.json says so.
    assert stages["sync drift ppm"].measured == "not estimated"
    assert "drift not estimated" in stages["sync drift ppm"].detail
    assert stages["frame pairing frames"].measured <= 0.5 + 12e-3
    assert stages["build residual px"].measured < 0.5
    for kind in ("stills", "video"):
        assert stages[f"photometric gain ({kind})"].measured == pytest.approx(4.0, rel=0.02)
    assert "PASS" in table and "FAIL" not in table


def test_video_pairs_are_the_same_instant(chain: dict[str, Path]) -> None:
    from expokit.curation.dataset.format import load_dataset

    manifest = load_dataset(chain["dataset"]).manifest
    video = manifest[manifest["source_input"].str.contains("#frame=")]
    # 6 s x 12 fps = 72 frames; the test body starts 0.3 s = 3.6 frames later.
    assert 66 <= len(video) <= 69
    ref = video["source_target"].str.extract(r"#frame=(\d+)")[0].astype(int)
    test = video["source_input"].str.extract(r"#frame=(\d+)")[0].astype(int)
    assert set((ref - test).tolist()) <= {3, 4}  # reference frame i shows test frame i - 3.6


def test_exports_and_validate(chain: dict[str, Path]) -> None:
    from expokit.curation.export.peers import check_dime_peers

    dime = chain["base"] / "dime"
    _ok("curate", "export", str(chain["dataset"]), "--layout", "dime", "--out", str(dime),
        "--no-progress")  # fmt: skip
    errors, _warnings = check_dime_peers(dime)
    assert errors == []
    clips = sorted((dime / "np").glob("*/LQ/*"))
    assert clips
    for lq in clips:
        gt = lq.parent.parent / "GT" / lq.name
        names = sorted(p.name for p in lq.iterdir())
        assert names == sorted(p.name for p in gt.iterdir()) and len(names) >= 5
    output = _ok("curate", "validate", str(dime), "--no-progress")
    assert "0 error(s)" in output
    _ok("curate", "validate", str(chain["dataset"]), "--no-progress")
    # MSEC needs five input EVs per scene; a two-camera rig has one (-2): refused, named.
    run = CliRunner().invoke(
        cli,
        [
            "curate",
            "export",
            str(chain["dataset"]),
            "--layout",
            "msec",
            "--out",
            str(chain["base"] / "msec"),
            "--no-progress",
        ],
    )
    assert run.exit_code == 1
    assert "lacks input(s) N1.5 N1 P1 P1.5" in run.output


# --------------------------------------------------------------------------- bad input


def test_missing_truth_json(chain: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(TruthError, match=r"truth\.json: no such file"):
        compare_to_truth(tmp_path, chain["rig"])
    (tmp_path / "truth.json").write_text("{not json")
    with pytest.raises(TruthError, match=r"truth\.json: unreadable"):
        compare_to_truth(tmp_path)
    (tmp_path / "truth.json").write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(TruthError, match="not an expokit rig simulation"):
        compare_to_truth(tmp_path)


def test_mismatched_session(chain: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other"
    config = SimulationConfig(seed=3, seconds=1.5, size=(96, 64), still_pairs=1)
    simulate(config, other)
    with pytest.raises(TruthError, match=r"calibrated for 256x192 images.*96x64.*not this"):
        compare_to_truth(other, calibration_json=chain["rig"])
    with pytest.raises(TruthError, match=r"synchronizes sim_0001_reference_0\.mp4.*not this"):
        compare_to_truth(other, sync_json=chain["sync"])
    with pytest.raises(TruthError, match=r"no pair of the dataset comes from .*other"):
        compare_to_truth(other, dataset_root=chain["dataset"])


def test_wrong_result_fails_its_stage(chain: dict[str, Path], tmp_path: Path) -> None:
    """A check that can fail: a sync.json whose offset is 5 ms off fails the offset stage."""
    data = json.loads(chain["sync"].read_text())
    data["offset_s"] += 0.005
    bad = tmp_path / "sync.json"
    bad.write_text(json.dumps(data))
    stages = _by_stage(compare_to_truth(chain["session"], sync_json=bad))
    assert not stages["sync offset s (audio)"].passed
    assert "FAIL" in format_checks(list(stages.values()))


# --------------------------------------------------------------------------- drift


@pytest.mark.slow
@pytest.mark.parametrize("drift_ppm", [150.0, -150.0, 300.0, -300.0])
def test_audio_drift_recovered_on_long_clip(tmp_path: Path, drift_ppm: float) -> None:
    """45 s (over drift_min_span_s = 30 s) at 96x72, 8 fps: offset < 1 ms, drift <= 2 ppm."""
    config = SimulationConfig(drift_ppm=drift_ppm, offset_s=0.37, seconds=45.0, size=(96, 72),
                              fps=8.0, still_pairs=0)  # fmt: skip
    out = tmp_path / "drift"
    truth = simulate(config, out).truth.to_json()
    result = synchronize(out / truth["sync_a"], out / truth["sync_b"])
    assert result.method == "audio" and result.drift_estimated
    assert abs(result.offset_s - truth["offset_s"]) < 1e-3
    assert abs(result.drift_ppm - truth["drift_ppm"]) <= 2.0
    shutil.rmtree(out)
