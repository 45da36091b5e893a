"""Board specs and detection (ChArUco, chessboard), against the OpenCV sample images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from expokit.calibration.boards import (
    BoardNotFoundError,
    BoardSpec,
    detect_board,
    normalise_charuco,
    require_board,
)
from expokit.calibration.intrinsics import board_reprojection_error, load_intrinsics
from tests.conftest import shared_path

CHARUCO = BoardSpec.charuco(5, 7, 0.04, 0.02, "DICT_6X6_250")


def _gray(path: object) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image is not None
    return image


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "dots", "columns": 5, "rows": 7}, "kind"),
        ({"kind": "chessboard", "columns": 2, "rows": 6}, "at least"),
        ({"kind": "chessboard", "columns": 7, "rows": 7}, "ambiguous"),
        ({"kind": "chessboard", "columns": 9, "rows": 6, "square_size": 0.0}, "square size"),
        ({"kind": "chessboard", "columns": 9, "rows": 6, "marker_size": 0.1}, "no markers"),
        ({"kind": "charuco", "columns": 5, "rows": 7, "square_size": 0.04}, "marker size"),
        (
            {"kind": "charuco", "columns": 5, "rows": 7, "square_size": 0.04, "marker_size": 0.05},
            "marker size",
        ),
        (
            {
                "kind": "charuco",
                "columns": 5,
                "rows": 7,
                "square_size": 0.04,
                "marker_size": 0.02,
                "dictionary": "6x6",
            },
            "dictionary",
        ),
    ],
)
def test_spec_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BoardSpec(**kwargs)


def test_spec_parse_and_round_trip() -> None:
    spec = BoardSpec.parse("chessboard", "9x6", 0.025)
    assert (spec.kind, spec.columns, spec.rows, spec.square_size) == ("chessboard", 9, 6, 0.025)
    assert spec.corner_count == 54
    charuco = BoardSpec.parse("charuco", " 5 X 7 ", 0.04, 0.02)
    assert charuco == CHARUCO and charuco.corner_count == 24
    for s in (spec, charuco):
        assert BoardSpec.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="9x6"):
        BoardSpec.parse("chessboard", "9*6", 0.025)


def test_object_points_layout() -> None:
    pts = BoardSpec.chessboard(9, 6, 0.5).object_points()
    assert pts.shape == (54, 3) and pts.dtype == np.float32
    np.testing.assert_allclose(pts[1] - pts[0], [0.5, 0, 0])  # x fastest, as the detector
    np.testing.assert_allclose(pts[9] - pts[0], [0, 0.5, 0])
    # ChArUco corner ids agree with OpenCV's own board geometry.
    board = cv2.aruco.CharucoBoard(
        (5, 7), 0.04, 0.02, cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_6X6_250)
    )
    np.testing.assert_allclose(CHARUCO.object_points(), board.getChessboardCorners(), atol=1e-7)


@pytest.mark.parametrize(
    ("corners", "ids"),
    [
        (np.zeros((5, 2), np.float32), np.arange(5)),  # OpenCV 5
        (np.zeros((5, 1, 2), np.float32), np.arange(5).reshape(5, 1)),  # OpenCV 4.x
    ],
)
def test_normalise_charuco_shapes(corners: np.ndarray, ids: np.ndarray) -> None:
    points, labels = normalise_charuco(corners + 1.5, ids)
    assert points.shape == (5, 2) and points.dtype == np.float32
    assert labels.shape == (5,) and labels.dtype == np.int32
    assert labels.tolist() == [0, 1, 2, 3, 4] and np.all(points == 1.5)


def test_normalise_charuco_empty_and_mismatch() -> None:
    points, labels = normalise_charuco(None, None)
    assert points.shape == (0, 2) and labels.shape == (0,)
    with pytest.raises(ValueError, match="ids"):
        normalise_charuco(np.zeros((4, 2)), np.arange(3))


def test_charuco_tutorial_image() -> None:
    folder = shared_path("stereo", "charuco")
    gray = _gray(folder / "choriginal.jpg")
    det = detect_board(gray, CHARUCO)
    assert det is not None
    assert len(det) == 24 and det.markers == 17
    assert det.image_points.shape == (24, 2) and det.ids.shape == (24,)
    assert sorted(det.ids.tolist()) == list(range(24))
    intrinsics = load_intrinsics(folder / "tutorial_camera_charuco.yml")
    assert intrinsics.image_size == (640, 480) and intrinsics.rms == pytest.approx(0.1823, 1e-3)
    rms, mean = board_reprojection_error(det, intrinsics)
    # Field notes: 0.20 px (that is the mean; the RMS is 0.216).
    assert mean == pytest.approx(0.20, abs=0.02)
    assert rms < 0.25


def test_charuco_not_found_mirrored_or_dark() -> None:
    gray = _gray(shared_path("stereo", "charuco", "choriginal.jpg"))
    assert detect_board(gray[:, ::-1].copy(), CHARUCO) is None  # markers are chiral
    # 2.5 EV under-exposed: found after the internal contrast stretch.
    dark = np.clip(gray * 2**-2.5, 0, 255).astype(np.uint8)
    det = detect_board(dark, CHARUCO)
    assert det is not None and len(det) >= 20


def test_chessboard_sample() -> None:
    gray = _gray(shared_path("stereo", "opencv_chessboard_pairs", "left01.jpg"))
    det = detect_board(gray, BoardSpec.chessboard(9, 6))
    assert det is not None and len(det) == 54
    assert det.object_points.shape == (54, 3) and det.markers == 0
    assert detect_board(np.full((200, 300), 128, np.uint8), BoardSpec.chessboard(9, 6)) is None


def test_require_board_names_files(tmp_path: object) -> None:
    from pathlib import Path

    paths = [Path("a.jpg"), Path("b.jpg")]
    require_board([None, object()], paths, CHARUCO, "test")  # type: ignore[list-item]
    with pytest.raises(BoardNotFoundError, match=r"a\.jpg.*any of the 2 test images"):
        require_board([None, None], paths, CHARUCO, "test")
