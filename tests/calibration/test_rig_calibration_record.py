"""rig_calibration.json: one reader, one writer, specific errors naming file and field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from expokit.calibration.boards import BoardSpec
from expokit.calibration.geometry import load_rig_calibration
from expokit.calibration.geometry_qa import (
    QaFrames,
    pair_correlation,
    previous_qa_images,
    qa_image_name,
    remove_stale_qa_images,
    render_qa_images,
)
from expokit.calibration.intrinsics import Intrinsics
from expokit.calibration.mirror import Flip, MirrorDecision
from expokit.calibration.rig_calibration import (
    FORMAT_VERSION,
    RIG_CALIBRATION_NAME,
    PairRecord,
    RigCalibration,
    RigCalibrationFormatError,
    read_rig_calibration,
    write_rig_calibration,
)
from expokit.core.atomic import TEMP_PREFIX
from expokit.core.errors import InputFileError


def _record(**changes: Any) -> RigCalibration:
    h = np.array([[1.01, 0.002, 5.5], [-0.001, 0.99, -3.25], [1e-6, -2e-6, 1.0]])
    fields: dict[str, Any] = {
        "homography": h,
        "initial_homography": np.eye(3),
        "flip": Flip.HORIZONTAL,
        "mirror": MirrorDecision(Flip.HORIZONTAL, "features", {"none": 3.0, "horizontal": 90.0}),
        "method": "charuco",
        "correspondences": 120,
        "inliers": 110,
        "reprojection_rms": 0.4,
        "initial_reprojection_rms": 0.5,
        "ecc": {"motion": "homography", "correlation": 0.97, "attempts": [], "kept": True},
        "valid_region": (3, 4, 90, 60),
        "reference_size": (96, 64),
        "test_size": (100, 70),
        "reference_intrinsics": Intrinsics(
            np.array([[100.0, 0, 48], [0, 100, 32], [0, 0, 1]]),
            np.array([0.01, -0.002, 0, 0, 0]),
            (96, 64),
            rms=0.3,
            views=5,
        ),
        "stereo_rms": 0.5,
        "board": BoardSpec("charuco", 7, 5, 0.03, 0.022),
        "pairs": (PairRecord("r.png", "a" * 64, "t.png", "b" * 64, 30, 28, 28, 27, None, 0.93),),
        "qa_images": ("rig_qa_00_checkerboard.png", "rig_qa_00_difference.png"),
        "config": {"flip": "auto", "ratio": 0.75},
        "software": {"expokit": "1.0", "opencv": "4.9"},
        "created_at": "2026-01-01T00:00:00+00:00",
    }
    fields.update(changes)
    return RigCalibration(**fields)


def _write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_round_trip_is_exact(tmp_path: Path) -> None:
    record = _record()
    written = write_rig_calibration(record, tmp_path)  # a folder: the standard name in it
    assert written == tmp_path / RIG_CALIBRATION_NAME
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]
    loaded = read_rig_calibration(written)
    assert loaded.to_dict() == record.to_dict()
    np.testing.assert_array_equal(loaded.homography, record.homography)
    assert loaded.homography.dtype == np.float64
    assert loaded.flip is Flip.HORIZONTAL and loaded.pairs[0].correlation == 0.93
    assert loaded.reference_intrinsics is not None and loaded.reference_intrinsics.views == 5
    assert loaded.board == record.board
    # The folder form reads the same file; the geometry name is the same reader.
    assert read_rig_calibration(tmp_path).to_dict() == record.to_dict()
    assert load_rig_calibration(tmp_path).to_dict() == record.to_dict()
    # Key-sorted, indented JSON: the on-disk format of every earlier release.
    text = written.read_text()
    assert text == json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n"


def test_minimal_file_of_earlier_releases_reads(tmp_path: Path) -> None:
    """Optional entries (software, created_at, pairs, qa_images, config, ...) may be absent."""
    data = _record(reference_intrinsics=None, board=None, pairs=(), ecc=None).to_dict()
    for key in ("software", "created_at", "pairs", "qa_images", "config", "stereo_rms"):
        del data[key]
    loaded = read_rig_calibration(_write(tmp_path / RIG_CALIBRATION_NAME, data))
    assert loaded.pairs == () and loaded.qa_images == () and loaded.software == {}
    assert loaded.ecc is None and loaded.board is None and loaded.stereo_rms is None


BAD_FIELDS = [
    ("homography", [[1, 0, 0], [0, float("nan"), 0], [0, 0, 1]], "finite"),
    ("homography", [[1, 0, 0], [0, 1, 0]], r"3x3 matrix, got shape \(2, 3\)"),
    ("homography", "eye", "3x3 matrix of numbers"),
    ("homography", [[1, 0, 0], [0, 1, 0], [0, 0, None]], "finite"),  # null reads as NaN
    ("initial_homography", [[1, 0, 0], [0, 1, 0], [0, 0, float("inf")]], "finite"),
    ("flip", 1, "must be a string"),
    ("flip", "sideways", "must be one of"),
    ("method", "magic", "must be one of charuco, chessboard, features"),
    ("method", 3, "must be a string"),
    ("correspondences", "12", "must be an integer"),
    ("inliers", -1, "must be >= 0"),
    ("inliers", True, "must be an integer"),
    ("reprojection_rms", "0.4", "must be a number"),
    ("reprojection_rms", -0.1, ">= 0"),
    ("valid_region", [0, 0, 10], "list of 4 integers"),
    ("valid_region[2]", None, "must be an integer"),
    ("reference_size[1]", 0, "must be >= 1"),
    ("test_size", {"w": 1}, "list of 2 integers"),
    ("mirror", "horizontal", "must be a JSON object"),
    ("mirror", {"method": "fixed"}, "missing entry 'flip'"),
    ("ecc", [1, 2], "must be a JSON object"),
    ("reference_intrinsics", {"camera_matrix": [[1]]}, "missing entry"),
    ("board", 5, "must be a JSON object"),
    ("stereo_rms", "x", "must be a number"),
    ("pairs", {"a": 1}, "must be a list"),
    ("pairs[0]", "r.png", "must be a JSON object"),
    ("pairs[0].inliers", "7", "must be an integer"),
    ("pairs[0].reference", 5, "must be a string"),
    ("qa_images", [1], "list of strings"),
    ("software", [], "must be a JSON object"),
    ("created_at", 20260101, "must be a string"),
]


@pytest.mark.parametrize(("name", "value", "problem"), BAD_FIELDS)
def test_invalid_field_is_named(tmp_path: Path, name: str, value: Any, problem: str) -> None:
    data = _record().to_dict()
    key, _, rest = name.partition("[")
    if not rest:
        data[key] = value
    elif "." in rest:  # pairs[0].inliers
        data[key][0][rest.split(".")[1]] = value
    elif key == "pairs":  # pairs[0]
        data[key][0] = value
    else:  # valid_region[2]
        data[key][int(rest[:-1])] = value
    path = _write(tmp_path / RIG_CALIBRATION_NAME, data)
    with pytest.raises(RigCalibrationFormatError) as info:
        read_rig_calibration(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert f"field {name!r}" in message
    assert re.search(problem, message), message
    assert isinstance(info.value, InputFileError) and info.value.path == path


@pytest.mark.parametrize(
    "name",
    ["homography", "flip", "mirror", "method", "valid_region", "reference_size", "inliers"],
)
def test_missing_field_is_named(tmp_path: Path, name: str) -> None:
    data = _record().to_dict()
    del data[name]
    path = _write(tmp_path / RIG_CALIBRATION_NAME, data)
    with pytest.raises(RigCalibrationFormatError, match=rf"field '{name}': missing"):
        read_rig_calibration(path)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ([1, 2, 3], "top level is a JSON list, expected an object"),
        ("calibration", "top level is a JSON str"),
        ({"homography": np.eye(3).tolist()}, "no format_version"),
        ({"format_version": 2}, "format_version 2 is not supported"),
        ({"format_version": "1"}, "format_version '1' is not supported"),
        ({"format_version": True}, "format_version True is not supported"),
    ],
)
def test_wrong_shape_or_version(tmp_path: Path, content: Any, problem: str) -> None:
    path = _write(tmp_path / RIG_CALIBRATION_NAME, content)
    with pytest.raises(RigCalibrationFormatError, match=problem) as info:
        read_rig_calibration(path)
    assert str(path) in str(info.value)


def test_wrong_version_of_a_full_record(tmp_path: Path) -> None:
    data = {**_record().to_dict(), "format_version": FORMAT_VERSION + 1}
    path = _write(tmp_path / RIG_CALIBRATION_NAME, data)
    with pytest.raises(RigCalibrationFormatError, match=r"field 'format_version'.*version 1"):
        read_rig_calibration(path)


def test_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / RIG_CALIBRATION_NAME
    path.write_text("{not json")
    with pytest.raises(RigCalibrationFormatError, match="not a JSON file"):
        read_rig_calibration(path)
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(RigCalibrationFormatError, match="not a JSON file"):
        read_rig_calibration(path)
    with pytest.raises(RigCalibrationFormatError, match="no such file"):
        read_rig_calibration(tmp_path / "missing.json")
    with pytest.raises(RigCalibrationFormatError, match="no such file"):
        read_rig_calibration(tmp_path / "empty_folder_is_not_here")


def test_records_built_in_code_are_checked() -> None:
    with pytest.raises(ValueError, match="homography must be finite"):
        _record(homography=np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="initial_homography must be a 3x3"):
        _record(initial_homography=np.eye(2))
    with pytest.raises(ValueError, match="flip must be a Flip"):
        _record(flip="none")
    with pytest.raises(ValueError, match="test_size"):
        _record(test_size=(0, 10))


def test_writer_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "cal" / RIG_CALIBRATION_NAME
    write_rig_calibration(_record(), path)
    write_rig_calibration(_record(method="features"), path)
    assert read_rig_calibration(path).method == "features"
    assert sorted(p.name for p in path.parent.iterdir()) == [RIG_CALIBRATION_NAME]


# --------------------------------------------------------------------------- QA images


def test_stale_qa_images_are_removed_only_when_recorded_and_ours(tmp_path: Path) -> None:
    names = [qa_image_name(i, k) for i in range(3) for k in ("checkerboard", "difference")]
    record = _record(qa_images=(*names, "notes.png"))
    write_rig_calibration(record, tmp_path)
    for name in [*names, "notes.png"]:
        (tmp_path / name).write_bytes(b"png")
    previous = previous_qa_images(tmp_path)
    assert previous == set(names)  # "notes.png" is not a QA image name: never touched
    removed = remove_stale_qa_images(tmp_path, previous, names[:2])
    assert removed == sorted(names[2:])
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([*names[:2], "notes.png", RIG_CALIBRATION_NAME])
    # A malformed record removes nothing.
    (tmp_path / RIG_CALIBRATION_NAME).write_text("[]")
    assert previous_qa_images(tmp_path) == set()
    with pytest.raises(ValueError, match="kind"):
        qa_image_name(0, "overlay")


def test_qa_rendering_and_correlation() -> None:
    rng = np.random.default_rng(0)
    reference = rng.random((40, 60), dtype=np.float32)
    valid = np.ones((40, 60), bool)
    assert pair_correlation(QaFrames(reference, reference * 0.5 + 0.1, valid)) == pytest.approx(
        1.0, abs=1e-4
    )  # gain and offset do not matter
    valid[:, :10] = False
    test = np.where(valid, reference, 0).astype(np.float32)
    frames = QaFrames(reference, test, valid)
    images = render_qa_images(frames, tile=8)
    assert set(images) == {"checkerboard", "difference"}
    for image in images.values():
        assert image.shape == (40, 60) and image.dtype == np.uint8
    assert not images["difference"].any()  # identical where valid, 0 elsewhere
    shifted = QaFrames(reference, np.roll(test, 5, axis=1), valid)
    assert pair_correlation(shifted) < 0.5
    assert np.isnan(pair_correlation(QaFrames(reference, test, np.zeros_like(valid))))
