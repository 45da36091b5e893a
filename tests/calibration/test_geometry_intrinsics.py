"""Intrinsics: calibrateCamera / stereoCalibrate on OpenCV's stereo chessboard pairs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from expokit.calibration.boards import BoardDetection, BoardSpec, detect_board
from expokit.calibration.intrinsics import (
    Intrinsics,
    IntrinsicsError,
    calibrate_intrinsics,
    distort_points,
    load_intrinsics,
    stereo_rms,
    undistort_image,
    undistort_points,
)
from expokit.core.errors import InputFileError
from tests.conftest import shared_path

CHESSBOARD = BoardSpec.chessboard(9, 6, 0.025)
K = np.array([[500.0, 0, 320], [0, 505.0, 240], [0, 0, 1]])
DIST = np.array([-0.25, 0.08, 0.001, -0.0005, 0.0])


@pytest.fixture(scope="module")
def chessboard_views() -> tuple[list[BoardDetection], list[BoardDetection]]:
    folder = shared_path("stereo", "opencv_chessboard_pairs")
    views: dict[str, list[BoardDetection]] = {"left": [], "right": []}
    for side, found in views.items():
        for i in range(1, 10):
            gray = cv2.imread(str(folder / f"{side}0{i}.jpg"), cv2.IMREAD_GRAYSCALE)
            det = detect_board(gray, CHESSBOARD)
            assert det is not None, f"{side}0{i}.jpg"
            found.append(det)
    return views["left"], views["right"]


def test_chessboard_rms_matches_field_notes(
    chessboard_views: tuple[list[BoardDetection], list[BoardDetection]],
) -> None:
    left_views, right_views = chessboard_views
    left = calibrate_intrinsics(left_views, (640, 480), "left")
    right = calibrate_intrinsics(right_views, (640, 480), "right")
    assert left.views == right.views == 9
    # Field notes: left 0.453, right 0.509, stereo 0.497 px.
    assert left.rms == pytest.approx(0.453, abs=0.02)
    assert right.rms == pytest.approx(0.509, abs=0.02)
    stereo = stereo_rms(list(zip(left_views, right_views, strict=True)), left, right)
    assert stereo == pytest.approx(0.497, abs=0.02)
    # A plausible camera: principal point near the centre, square-ish pixels.
    k = left.camera_matrix
    assert abs(k[0, 2] - 320) < 40 and abs(k[1, 2] - 240) < 40
    assert k[0, 0] / k[1, 1] == pytest.approx(1.0, abs=0.02)


def test_too_few_views(chessboard_views: tuple[list[BoardDetection], list[BoardDetection]]) -> None:
    left_views, right_views = chessboard_views
    with pytest.raises(IntrinsicsError, match="at least 3 views, found it in 2"):
        calibrate_intrinsics(left_views[:2], (640, 480), "reference")
    left = Intrinsics(K, DIST, (640, 480))
    with pytest.raises(IntrinsicsError, match="stereo"):
        stereo_rms(list(zip(left_views[:2], right_views[:2], strict=True)), left, left)


def test_distort_undistort_round_trip() -> None:
    intr = Intrinsics(K, DIST, (640, 480))
    grid = np.mgrid[0:640:40, 0:480:40].reshape(2, -1).T.astype(np.float64)
    raw = distort_points(grid, intr)
    assert np.abs(raw - grid).max() > 5  # the lens model really moves the corners
    np.testing.assert_allclose(undistort_points(raw, intr), grid, atol=1e-3)


def test_undistort_image_mask() -> None:
    image = np.full((480, 640), 200, np.uint8)
    out, valid = undistort_image(image, Intrinsics(K, DIST, (640, 480)))
    assert out.shape == image.shape and out.dtype == np.uint8
    # Barrel distortion: every undistorted pixel comes from inside the sensor.
    assert valid.dtype == np.uint8 and valid.min() == 255
    # Pincushion: the undistorted corners come from outside it.
    _, valid = undistort_image(image, Intrinsics(K, -DIST, (640, 480)))
    assert valid[240, 320] == 255 and valid[0, 0] == 0 and 0.5 < (valid > 0).mean() < 1.0


def test_intrinsics_validation_and_round_trip(tmp_path: Path) -> None:
    intr = Intrinsics(K, DIST, (640, 480), rms=0.3, views=12)
    assert Intrinsics.from_dict(json.loads(json.dumps(intr.to_dict()))).to_dict() == intr.to_dict()
    with pytest.raises(ValueError, match="focal"):
        Intrinsics(np.diag([0.0, 1.0, 1.0]), DIST, (640, 480))
    with pytest.raises(ValueError, match="distortion"):
        Intrinsics(K, np.zeros(3), (640, 480))
    with pytest.raises(ValueError, match="NaN"):
        Intrinsics(K * np.nan, DIST, (640, 480))
    path = tmp_path / "cam.json"
    path.write_text(json.dumps({"intrinsics": intr.to_dict()}))
    loaded = load_intrinsics(path)
    np.testing.assert_allclose(loaded.camera_matrix, K)
    assert loaded.source == str(path)


def test_load_intrinsics_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such"):
        load_intrinsics(tmp_path / "missing.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("%YAML:1.0\n---\nfoo: 1\n")
    with pytest.raises(InputFileError, match=r"bad\.yml"):
        load_intrinsics(bad)
    broken = tmp_path / "broken.json"
    broken.write_text('{"camera_matrix": [[1, 0]]}')
    with pytest.raises(InputFileError, match=r"broken\.json"):
        load_intrinsics(broken)
