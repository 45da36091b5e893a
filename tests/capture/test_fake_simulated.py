"""The fake backend serving simulated footage: `expokit capture video/pair/calibration` on a
fake rig whose `[fake]` table names a source, checked against the session's truth.json."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from expokit.calibration.geometry import load_rig_calibration
from expokit.calibration.homography import homography_grid_error
from expokit.calibration.mirror import Flip
from expokit.calibration.sync_record import load_sync_json
from expokit.capture.footage import srgb_to_linear
from expokit.capture.journal import read_journal
from expokit.capture.rig_config import RigConfigError, load_rig_config
from expokit.cli import cli

BOARD_ARGS = ["--charuco", "7x5", "--square", "0.04", "--marker", "0.028"]
OFFSET_S = -0.43  # the test body starts 0.43 s after the reference (sync.json convention)

RIG = """
backend = "fake"
output_root = "sessions"
ev_offset = -2.0

[roles.reference]
serial = "REF-1"
settings = {{ shutter = "1/125", aperture = "8", iso = "100" }}

[roles.test]
serial = "TST-2"
settings = {{ aperture = "8", iso = "100" }}

[fake]
source = {source}
cameras = [{{ serial = "REF-1" }}, {{ serial = "TST-2", vendor = "canon" }}]

[fake.simulation]
offset_s = {offset}
drift_ppm = 0.0
seed = 3
size = [256, 192]
{extra}
"""


def _rig(folder: Path, source: str = '"generated"', extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rig.toml"
    path.write_text(RIG.format(source=source, offset=OFFSET_S, extra=extra))
    return path


def _ok(*args: str) -> str:
    run = CliRunner().invoke(cli, list(args))
    assert run.exit_code == 0, run.output
    return run.output


def _session(output: str) -> Path:
    line = next(x for x in output.splitlines() if x.startswith("session: "))
    return Path(line.removeprefix("session: "))


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One simulated rig, three capture commands through the normal capture code."""
    rig = _rig(tmp_path_factory.mktemp("fakesim"))
    common = ["--rig", str(rig), "--no-progress"]
    return {
        "video": _session(_ok("capture", "video", "--seconds", "3", "--session", "v", *common)),
        "calibration": _session(_ok("capture", "calibration", "--session", "c", *common)),
        "pair": _session(_ok("capture", "pair", "-n", "2", "--session", "p", *common)),
    }


def _journal(session: Path) -> tuple[dict[int, str], dict[tuple[int, str], str]]:
    events, torn = read_journal(session / "journal.jsonl")
    assert torn == 0
    kinds = {e["index"]: e["kind"] for e in events if e["event"] == "planned"}
    files = {(e["index"], e["role"]): e["file"] for e in events if e["event"] == "downloaded"}
    assert not [e for e in events if e["event"] == "exif_check" and e.get("ok") is False]
    return kinds, files


def _geometry(session: Path, truth: dict, out: Path) -> None:
    """`calibrate geometry` on the session's calibration stills (two image paths)."""
    files = truth["files"]
    board = [str(session / files["board_reference"]), str(session / files["board_test"])]
    _ok("calibrate", "geometry", *board, "--out", str(out), *BOARD_ARGS)


def _truth(session: Path) -> dict:
    return json.loads((session / "truth.json").read_text())


def test_video_is_the_simulated_movie_and_sync_recovers_the_offset(
    sessions: dict[str, Path], tmp_path: Path
) -> None:
    root = sessions["video"]
    kinds, files = _journal(root)
    assert kinds == {1: "video"}
    name = root.name
    assert files == {(1, "reference"): f"{name}_0001_reference_0.mp4",
                     (1, "test"): f"{name}_0001_test_N2.mp4"}  # fmt: skip
    truth = _truth(root)
    assert truth["sync_a"] == f"files/{files[(1, 'reference')]}"
    assert truth["offset_s"] == pytest.approx(OFFSET_S, abs=1e-12)
    assert truth["bodies"]["test"]["frames"] == 72  # 3 s at 24 fps, not the wall time
    assert truth["audio"] and truth["image_size"] == [256, 192]
    sync_json = tmp_path / "sync.json"
    _ok("calibrate", "sync", str(root / truth["sync_a"]), str(root / truth["sync_b"]),
        "--out", str(sync_json))  # fmt: skip
    result = load_sync_json(sync_json)
    assert result.method == "audio"
    assert abs(result.offset_s - truth["offset_s"]) < 1e-3


def test_calibration_stills_recover_flip_and_homography(
    sessions: dict[str, Path], tmp_path: Path
) -> None:
    root = sessions["calibration"]
    kinds, files = _journal(root)
    assert kinds == {1: "calibration"}
    truth = _truth(root)
    assert truth["files"]["board_reference"] == f"files/{files[(1, 'reference')]}"
    _geometry(root, truth, tmp_path / "rig")
    calib = load_rig_calibration(tmp_path / "rig" / "rig_calibration.json")
    assert calib.flip is Flip(truth["flip"]) is Flip.HORIZONTAL
    mean, _ = homography_grid_error(
        calib.homography, np.array(truth["homography"]), tuple(truth["image_size"])
    )
    assert mean < 0.3
    # One rig, one seed: every session of it shares the misregistration.
    assert truth["homography"] == _truth(sessions["video"])["homography"]


def test_pair_is_the_scene_flipped_misregistered_and_ev_shifted(
    sessions: dict[str, Path],
) -> None:
    root = sessions["pair"]
    kinds, files = _journal(root)
    assert kinds == {1: "pair", 2: "pair"}
    truth = _truth(root)
    ref = cv2.imread(str(root / "files" / files[(1, "reference")]), cv2.IMREAD_UNCHANGED)
    test = cv2.imread(str(root / "files" / files[(1, "test")]), cv2.IMREAD_UNCHANGED)
    assert ref.dtype == np.uint16 and ref.shape == (192, 256, 3)
    w, h = truth["image_size"]
    warped = cv2.warpPerspective(
        srgb_to_linear(Flip(truth["flip"]).apply(test) / 65535.0),
        np.array(truth["homography"]), (w, h),
    )  # fmt: skip
    linear_ref = srgb_to_linear(ref / 65535.0)
    inner = (slice(12, h - 12), slice(12, w - 12))
    mask = (linear_ref[inner] < 0.9) & (warped[inner] > 0.02)
    gain = float(np.median(linear_ref[inner][mask] / warped[inner][mask]))
    assert truth["photometric_gain"] == 4.0
    assert gain == pytest.approx(4.0, rel=0.03)
    # Without the flip the two do not line up (the mirror is really there).
    unflipped = cv2.warpPerspective(srgb_to_linear(test / 65535.0), np.eye(3), (w, h))
    assert np.corrcoef(unflipped[inner].ravel(), linear_ref[inner].ravel())[0, 1] < 0.5
    assert np.corrcoef(warped[inner].ravel(), linear_ref[inner].ravel())[0, 1] > 0.9
    # Two pairs are two scene instants (the scene moves).
    second = cv2.imread(str(root / "files" / files[(2, "reference")]), cv2.IMREAD_UNCHANGED)
    assert not np.array_equal(second, ref)


def test_curation_skips_calibration_shots(sessions: dict[str, Path], tmp_path: Path) -> None:
    from expokit.curation.build.config import BuildConfig
    from expokit.curation.build.sources import discover_capture

    cal = sessions["calibration"]
    truth = _truth(cal)
    _geometry(cal, truth, tmp_path / "rig")
    assert discover_capture(cal, BuildConfig(), tmp_path / "rig", []).scenes == []
    pairs = discover_capture(sessions["pair"], BuildConfig(), tmp_path / "rig", []).scenes
    assert len(pairs) == 1 and len(pairs[0].pairs) == 2 and pairs[0].problem is None


def test_plain_fake_rig_still_serves_synthetic_shots(tmp_path: Path) -> None:
    from tests.capture.conftest import write_rig

    rig = write_rig(tmp_path)
    root = _session(_ok("capture", "pair", "--rig", str(rig), "--no-progress"))
    assert not (root / "truth.json").exists()
    assert sorted(p.suffix for p in (root / "files").iterdir()) == [".jpg", ".jpg"]


@pytest.mark.parametrize(
    ("source", "extra", "match"),
    [
        ('"generated"', "bogus = 1", r"fake\.simulation: unknown keys bogus"),
        ('"generated"', "fps = 500.0", r"fake\.simulation\.fps: fps = 500"),
        ('"generated"', 'crf = "high"', r"fake\.simulation\.crf = 'high' must be a number"),
        ('"generated"', "splitter_ratio = 50.0", r"fake\.simulation\.splitter_ratio"),
        ('"generated"', "ev_offset = -3.0", r"fake\.simulation\.ev_offset = -3 differs"),
        ('"generated"', "test_sensor = { full_well_e = 1.0 }", r"fake\.simulation\.test_sensor"),
        ('"no-such-clip.mp4"', "", r"fake\.source = '.*no-such-clip\.mp4': no such file"),
        ("7", "", r"fake\.source = 7"),
    ],
)
def test_bad_simulation_settings_name_the_file_and_key(
    tmp_path: Path, source: str, extra: str, match: str
) -> None:
    rig = _rig(tmp_path, source, extra)
    with pytest.raises(RigConfigError, match=r"rig\.toml: " + match):
        load_rig_config(rig)


def test_impossible_drift_is_refused_by_the_capture_command(tmp_path: Path) -> None:
    rig = _rig(tmp_path)
    rig.write_text(rig.read_text().replace("drift_ppm = 0.0", "drift_ppm = 1500.0"))
    run = CliRunner().invoke(
        cli, ["capture", "video", "--rig", str(rig), "--seconds", "1", "--no-progress"]
    )
    assert run.exit_code == 1
    assert "rig.toml: fake.simulation.drift_ppm = 1500: camera clocks drift" in run.output
    assert not (tmp_path / "sessions").exists()  # refused before any folder is made
