"""calibrate_geometry end to end on real data with known answers, bad inputs, the JSON file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from expokit.calibration import geometry
from expokit.calibration.boards import BoardNotFoundError, BoardSpec
from expokit.calibration.geometry import GeometryConfig, calibrate_geometry, load_rig_calibration
from expokit.calibration.homography import (
    DegenerateHomographyError,
    EccSettings,
    TooFewMatchesError,
    homography_grid_error,
)
from expokit.calibration.intrinsics import Intrinsics, IntrinsicsError
from expokit.calibration.mirror import Flip
from expokit.calibration.rig_calibration import (
    FORMAT_VERSION,
    RIG_CALIBRATION_NAME,
    RigCalibration,
    RigCalibrationFormatError,
)
from expokit.calibration.warp import largest_valid_rectangle, warp_test_to_reference
from expokit.core.errors import ExpokitError, InputFileError
from expokit.core.hashing import sha256_file
from tests.conftest import shared_path

CHARUCO = BoardSpec.charuco(5, 7, 0.04, 0.02, "DICT_6X6_250")
#: A rig-like test -> reference homography: ~12 px shift, 1° rotation, 2 % scale, perspective.
RIG_H = np.array([[1.02, 0.018, -12.5], [-0.017, 1.01, 7.3], [2e-5, -1e-5, 1.0]])


def _graf() -> tuple[Path, Path, np.ndarray]:
    folder = shared_path("stereo", "homography_graf")
    storage = cv2.FileStorage(str(folder / "H1to3p.xml"), cv2.FILE_STORAGE_READ)
    truth = storage.getNode("H13").mat()
    storage.release()
    return folder / "graf1.png", folder / "graf3.png", truth


def _write(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


def _under_expose(image: np.ndarray, ev: float, seed: int = 0) -> np.ndarray:
    """Darken by ``ev`` stops (gain ``2**-ev``), add Gaussian noise sigma 2, round to uint8."""
    rng = np.random.default_rng(seed)
    dark = image.astype(np.float64) * 2.0**-ev + rng.normal(0.0, 2.0, image.shape)
    return np.clip(np.round(dark), 0, 255).astype(np.uint8)


def _views_of(canvas: np.ndarray, h_test_to_ref: np.ndarray, size: tuple[int, int], offset: float):
    """Reference and test views cut from one larger image, related by ``h_test_to_ref``.

    Both are sampled from inside ``canvas`` so neither has an empty border, as with a rig.
    """
    shift = np.array([[1, 0, offset], [0, 1, offset], [0, 0, 1.0]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    ref = cv2.warpPerspective(canvas, shift, size, flags=flags)
    test = cv2.warpPerspective(canvas, shift @ h_test_to_ref, size, flags=flags)
    return ref, test


@pytest.fixture(scope="module")
def graf_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RigCalibration, np.ndarray, Path]:
    """graf1 (test) -> graf3 (reference), automatic flip, ECC on: the H1to3p ground truth."""
    graf1, graf3, truth = _graf()
    out = tmp_path_factory.mktemp("graf")
    return calibrate_geometry([graf3], [graf1], out), truth, out


# --------------------------------------------------------------------------- accuracy


def test_graf_accuracy_against_ground_truth(
    graf_run: tuple[RigCalibration, np.ndarray, Path],
) -> None:
    calib, truth, _ = graf_run
    assert calib.flip is Flip.NONE and calib.mirror.method == "features"
    assert calib.method == "features" and calib.inliers >= 100
    before = homography_grid_error(calib.initial_homography, truth, calib.test_size)
    after = homography_grid_error(calib.homography, truth, calib.test_size)
    # Field notes: SIFT + MAGSAC 1.56 / 6.83 px, + ECC 0.96 / 3.73 px; truth good to ~1 px.
    assert before[0] < 2.5 and before[1] < 10
    assert after[0] < 1.5 and after[1] < 5
    assert after[0] < before[0]
    assert calib.ecc is not None and calib.ecc["motion"] == "homography"
    assert calib.ecc["correlation"] > calib.ecc["initial_correlation"] > 0.8
    assert calib.ecc["attempts"][0]["ok"] is True


def test_graf_mirrored_test_image(tmp_path: Path) -> None:
    graf1, graf3, truth = _graf()
    mirrored = _write(tmp_path / "graf1_mirrored.png", cv2.imread(str(graf1))[:, ::-1])
    calib = calibrate_geometry([graf3], [mirrored], tmp_path / "out")
    assert calib.flip is Flip.HORIZONTAL and not calib.mirror.ambiguous
    # SIFT is rotation invariant: "vertical" (= horizontal + 180°) also matches, but maps the
    # image upside down and must not score.
    assert calib.mirror.scores["vertical"] == 0 and calib.mirror.scores["none"] == 0
    mean, worst = homography_grid_error(calib.homography, truth, calib.test_size)
    assert mean < 1.5 and worst < 5
    # The raw (mirrored) image warps onto the reference like the unmirrored one does.
    warped, valid = warp_test_to_reference(cv2.imread(str(mirrored), cv2.IMREAD_GRAYSCALE), calib)
    direct = cv2.warpPerspective(cv2.imread(str(graf1), cv2.IMREAD_GRAYSCALE), truth, (800, 640))
    inner = valid & (cv2.erode(valid.astype(np.uint8), np.ones((9, 9))) > 0)
    diff = np.abs(warped.astype(int) - direct.astype(int))[inner]
    assert np.median(diff) < 8


@pytest.mark.parametrize("ev", [2.5, -2.0])
def test_exposure_difference_recovers_known_homography(tmp_path: Path, ev: float) -> None:
    """Test image 2.5 EV darker, or 2 EV brighter (gain 4 on 8-bit values: ~75 % clipped)."""
    graf1, _, _ = _graf()
    canvas = cv2.imread(str(graf1))
    ref, test = _views_of(canvas, RIG_H, (480, 384), offset=150)
    test = _under_expose(test, ev)
    if ev > 0:
        assert test.mean() < ref.mean() / 4  # really 2.5 EV darker
    else:
        assert (test == 255).mean() > 0.6  # mostly clipped
    ref_path = _write(tmp_path / "ref.png", ref)
    test_path = _write(tmp_path / "test.png", test)
    calib = calibrate_geometry([ref_path], [test_path], tmp_path / "out")
    assert calib.flip is Flip.NONE
    mean, worst = homography_grid_error(calib.homography, RIG_H, calib.test_size)
    assert mean < 0.5 and worst < 1.0
    assert calib.ecc is not None and calib.ecc["motion"] != "identity"


def test_charuco_mirrored_and_under_exposed(tmp_path: Path) -> None:
    folder = shared_path("stereo", "charuco")
    image = cv2.imread(str(folder / "choriginal.jpg"))
    test = _write(tmp_path / "mirrored_dark.png", _under_expose(image[:, ::-1], 2.5))
    calib = calibrate_geometry([folder / "choriginal.jpg"], [test], tmp_path / "out", CHARUCO)
    assert calib.flip is Flip.HORIZONTAL
    assert calib.mirror.method == "board" and calib.mirror.scores["horizontal"] >= 20
    assert calib.mirror.scores["none"] == 0
    assert calib.method == "charuco"
    pair = calib.pairs[0]
    assert pair.board_corners_reference == 24 and pair.board_corners_test >= 20
    # Mirrored back, the test image *is* the reference: H is the identity.
    mean, worst = homography_grid_error(calib.homography, np.eye(3), calib.test_size)
    assert mean < 0.3 and worst < 0.8


def test_chessboard_pairs_intrinsics_and_stereo(tmp_path: Path) -> None:
    folder = shared_path("stereo", "opencv_chessboard_pairs")
    left = sorted(folder.glob("left0*.jpg"))
    right = sorted(folder.glob("right0*.jpg"))
    assert len(left) == len(right) == 9
    # Small ECC working size: this is a stereo pair with parallax (no exact homography), so
    # ECC falls back along the chain; the test is about the intrinsics.
    config = GeometryConfig(estimate_intrinsics=True, ecc=EccSettings(max_side=320))
    calib = calibrate_geometry(
        left, right, tmp_path / "out", BoardSpec.chessboard(9, 6, 0.025), config
    )
    assert calib.method == "chessboard" and calib.flip is Flip.NONE
    assert calib.reference_intrinsics is not None and calib.test_intrinsics is not None
    # Field notes: left 0.453, right 0.509, stereo 0.497 px.
    assert calib.reference_intrinsics.rms == pytest.approx(0.453, abs=0.02)
    assert calib.test_intrinsics.rms == pytest.approx(0.509, abs=0.02)
    assert calib.stereo_rms == pytest.approx(0.497, abs=0.02)
    assert {p.board_order for p in calib.pairs} == {"as detected"}
    assert calib.ecc is not None and len(calib.ecc["attempts"]) >= 1
    loaded = load_rig_calibration(tmp_path / "out")
    assert loaded.reference_intrinsics is not None
    assert loaded.reference_intrinsics.rms == pytest.approx(calib.reference_intrinsics.rms)
    # With intrinsics the warp goes through remap maps; it still gives image and mask.
    warped, valid = warp_test_to_reference(cv2.imread(str(right[0])), loaded)
    assert warped.shape == (480, 640, 3) and valid.dtype == bool and 0.3 < valid.mean() < 1


# --------------------------------------------------------------------------- outputs


def test_json_round_trip_and_contents(graf_run: tuple[RigCalibration, np.ndarray, Path]) -> None:
    calib, _, out = graf_run
    data = json.loads((out / RIG_CALIBRATION_NAME).read_text())
    assert data["format_version"] == FORMAT_VERSION == 1
    for key in (
        "flip",
        "homography",
        "method",
        "reprojection_rms",
        "ecc",
        "valid_region",
        "reference_size",
        "test_size",
        "reference_intrinsics",
        "pairs",
        "mirror",
    ):
        assert key in data
    pair = data["pairs"][0]
    assert pair["test_sha256"] == sha256_file(pair["test"])
    assert pair["reference_sha256"] == sha256_file(pair["reference"])
    assert data["reference_size"] == [800, 640]
    assert 0 < data["reprojection_rms"] < 3
    loaded = load_rig_calibration(out / RIG_CALIBRATION_NAME)
    assert loaded.to_dict() == calib.to_dict()
    np.testing.assert_array_equal(loaded.homography, calib.homography)
    for name in calib.qa_images:
        qa = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
        assert qa is not None and qa.shape == (640, 800) and qa.dtype == np.uint8
    assert sorted(calib.qa_images) == ["rig_qa_00_checkerboard.png", "rig_qa_00_difference.png"]


def test_load_rejects_other_versions(
    graf_run: tuple[RigCalibration, np.ndarray, Path], tmp_path: Path
) -> None:
    calib, _, _ = graf_run
    path = tmp_path / RIG_CALIBRATION_NAME
    path.write_text(json.dumps({**calib.to_dict(), "format_version": 2}))
    with pytest.raises(RigCalibrationFormatError, match=r"format_version 2 is not supported"):
        load_rig_calibration(path)
    path.write_text(json.dumps({"homography": np.eye(3).tolist()}))
    with pytest.raises(RigCalibrationFormatError, match="no format_version"):
        load_rig_calibration(path)
    path.write_text(json.dumps({**calib.to_dict(), "homography": [[1, 0], [0, 1]]}))
    with pytest.raises(RigCalibrationFormatError, match=RIG_CALIBRATION_NAME):
        load_rig_calibration(path)
    path.write_text("{not json")
    with pytest.raises(RigCalibrationFormatError, match="not a JSON"):
        load_rig_calibration(path)
    with pytest.raises(RigCalibrationFormatError, match="no such"):
        load_rig_calibration(tmp_path / "missing.json")


def test_warp_and_valid_region(graf_run: tuple[RigCalibration, np.ndarray, Path]) -> None:
    calib, _, _ = graf_run
    graf1, graf3, _ = _graf()
    test = cv2.imread(str(graf1))
    ref = cv2.imread(str(graf3), cv2.IMREAD_GRAYSCALE)
    warped, valid = warp_test_to_reference(test, calib)
    assert warped.shape == test.shape and warped.dtype == np.uint8
    assert valid.shape == (640, 800) and valid.dtype == bool
    assert 0.2 < valid.mean() < 0.95  # graf1 covers part of graf3
    assert np.all(warped[~valid].max(axis=-1) < 255)  # nothing invented outside
    x, y, w, h = calib.valid_region
    assert w > 200 and h > 200 and valid[y : y + h, x : x + w].all()
    # Aligned: warped test correlates with the reference inside the valid region.
    gray = cv2.cvtColor(warped, cv2.COLOR_BGR2GRAY)[y : y + h, x : x + w].astype(float)
    assert np.corrcoef(gray.ravel(), ref[y : y + h, x : x + w].astype(float).ravel())[0, 1] > 0.8
    with pytest.raises(ValueError, match="calibration is for 800x640"):
        warp_test_to_reference(test[:100], calib)


def test_remap_path_equals_projective_path(
    graf_run: tuple[RigCalibration, np.ndarray, Path],
) -> None:
    """Zero-distortion intrinsics and a flip: the composed remap equals warpPerspective."""
    calib, _, _ = graf_run
    k = np.array([[700.0, 0, 400], [0, 700.0, 320], [0, 0, 1]])
    zero = Intrinsics(k, np.zeros(5), (800, 640))
    graf1, _, _ = _graf()
    test = cv2.imread(str(graf1), cv2.IMREAD_GRAYSCALE)
    mirrored = dataclasses.replace(calib, flip=Flip.HORIZONTAL)
    expected, expected_valid = warp_test_to_reference(test, mirrored)
    with_intrinsics = dataclasses.replace(mirrored, reference_intrinsics=zero, test_intrinsics=zero)
    got, valid = warp_test_to_reference(test, with_intrinsics)
    assert (valid != expected_valid).mean() < 0.002
    both = valid & expected_valid
    assert np.abs(got.astype(int) - expected.astype(int))[both].max() <= 2


def test_largest_valid_rectangle() -> None:
    mask = np.zeros((100, 200), bool)
    mask[10:60, 20:150] = True
    mask[60:90, 20:40] = True
    assert largest_valid_rectangle(mask) == (20, 10, 130, 50)
    assert largest_valid_rectangle(np.zeros((5, 5), bool))[2:] == (0, 0)
    big = np.ones((3000, 2000), bool)
    big[:, :7] = False
    x, y, w, h = largest_valid_rectangle(big)
    assert (x, y, w, h) == (7, 0, 1993, 3000)


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def small_pair(tmp_path: Path) -> tuple[Path, Path]:
    """A quick 320x256 textured pair related by RIG_H (for the error paths)."""
    graf1, _, _ = _graf()
    canvas = cv2.resize(cv2.imread(str(graf1)), (400, 320), interpolation=cv2.INTER_AREA)
    ref, test = _views_of(canvas, RIG_H, (320, 256), offset=30)
    return _write(tmp_path / "ref.png", ref), _write(tmp_path / "test.png", test)


@pytest.mark.parametrize("flip", list(Flip))
def test_every_flip_is_detected(small_pair: tuple[Path, Path], tmp_path: Path, flip: Flip) -> None:
    ref, test = small_pair
    flipped = _write(tmp_path / "flipped.png", flip.apply(cv2.imread(str(test))))
    calib = calibrate_geometry([ref], [flipped], tmp_path / "out")
    assert calib.flip is flip and not calib.mirror.ambiguous
    assert [k for k, v in calib.mirror.scores.items() if v > 0] == [flip.value]
    assert homography_grid_error(calib.homography, RIG_H, calib.test_size)[1] < 0.5


def test_unreadable_and_missing_images(small_pair: tuple[Path, Path], tmp_path: Path) -> None:
    ref, _ = small_pair
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(InputFileError, match=r"broken\.png.*not a readable image"):
        calibrate_geometry([ref], [broken], tmp_path / "out")
    with pytest.raises(InputFileError, match=r"nope\.png.*no such image"):
        calibrate_geometry([tmp_path / "nope.png"], [ref], tmp_path / "out")
    with pytest.raises(ExpokitError, match="same number"):
        calibrate_geometry([ref, ref], [ref], tmp_path / "out")


def test_size_mismatch_within_a_camera(small_pair: tuple[Path, Path], tmp_path: Path) -> None:
    ref, test = small_pair
    other = _write(tmp_path / "small_test.png", cv2.imread(str(test))[:200])
    with pytest.raises(InputFileError, match=r"small_test\.png.*test image is 320x200"):
        calibrate_geometry([ref, ref], [test, other], tmp_path / "out")


def test_no_board_found(small_pair: tuple[Path, Path], tmp_path: Path) -> None:
    ref, test = small_pair
    with pytest.raises(BoardNotFoundError, match=r"ref\.png.*ChArUco 5x7.*not found"):
        calibrate_geometry([ref], [test], tmp_path / "out", CHARUCO)
    # Allowed to fall back: features give the homography.
    calib = calibrate_geometry(
        [ref], [test], tmp_path / "out", CHARUCO, GeometryConfig(feature_fallback=True)
    )
    assert calib.method == "features"
    assert homography_grid_error(calib.homography, RIG_H, calib.test_size)[0] < 0.5


def test_too_few_matches(small_pair: tuple[Path, Path], tmp_path: Path) -> None:
    ref, _ = small_pair
    rng = np.random.default_rng(3)
    noise = cv2.GaussianBlur(rng.uniform(0, 255, (256, 320)).astype(np.uint8), (0, 0), 2)
    unrelated = _write(tmp_path / "unrelated.png", noise)
    with pytest.raises(TooFewMatchesError, match=r"unrelated\.png.*too few feature matches"):
        calibrate_geometry([ref], [unrelated], tmp_path / "out")


def test_degenerate_homography(
    small_pair: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref, test = small_pair

    def singular(test_points: np.ndarray, *args: object, **kwargs: object):
        return np.diag([1.0, 1e-9, 1.0]), np.ones(len(test_points), bool)

    monkeypatch.setattr(geometry, "fit_homography", singular)
    with pytest.raises(DegenerateHomographyError, match=r"test\.png -> .*ref\.png.*singular"):
        calibrate_geometry([ref], [test], tmp_path / "out", config=GeometryConfig(flip="none"))
    assert not (tmp_path / "out" / RIG_CALIBRATION_NAME).exists()


def test_intrinsics_need_a_board(small_pair: tuple[Path, Path], tmp_path: Path) -> None:
    ref, test = small_pair
    with pytest.raises(IntrinsicsError, match="board"):
        calibrate_geometry(
            [ref], [test], tmp_path / "out", config=GeometryConfig(estimate_intrinsics=True)
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"flip": "diagonal"}, "flip"),
        ({"ratio": 1.5}, "ratio"),
        ({"min_inliers": 3}, "min inliers"),
        ({"inlier_threshold": 0}, "threshold"),
        (
            {
                "estimate_intrinsics": True,
                "test_intrinsics": Intrinsics(np.eye(3), np.zeros(5), (1, 1)),
            },
            "not both",
        ),
    ],
)
def test_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GeometryConfig(**kwargs)


def test_resolve_images(tmp_path: Path) -> None:
    from expokit.calibration.geometry_io import resolve_images

    for name in ("left10.jpg", "left2.jpg", "left1.JPG", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    names = [p.name for p in resolve_images(tmp_path)]
    assert names == ["left1.JPG", "left2.jpg", "left10.jpg"]  # natural order, images only
    assert [p.name for p in resolve_images(str(tmp_path / "left1*"))] == ["left1.JPG", "left10.jpg"]
    assert resolve_images(tmp_path / "one.png") == [tmp_path / "one.png"]
    with pytest.raises(InputFileError, match="no file matches"):
        resolve_images(str(tmp_path / "right*.jpg"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="no images"):
        resolve_images(tmp_path / "empty")
