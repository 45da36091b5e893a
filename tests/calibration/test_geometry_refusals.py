"""Issue 11: ECC kept only when it does not raise the board-corner error; geometric refusals
name their reason instead of "too few matches"."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from expokit.calibration.boards import (
    BoardNotFoundError,
    BoardSpec,
    require_board,
    transposed_hint,
)
from expokit.calibration.geometry import (
    GeometryConfig,
    calibrate_geometry,
    correspondence_problem,
    ecc_keep_decision,
)
from expokit.calibration.homography import (
    DegenerateHomographyError,
    EccSettings,
    HomographyLimits,
    TooFewMatchesError,
    project,
    transfer_rms,
)
from expokit.calibration.rig_calibration import RIG_CALIBRATION_NAME
from expokit.cli import cli
from expokit.cli.calibrate import rms_rise_note


def _texture(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A gray image full of corners and blobs (good for SIFT and ECC)."""
    rng = np.random.default_rng(seed)
    w, h = size
    image = np.full((h, w), 128, np.uint8)
    for _ in range(250):
        x, y = (int(v) for v in rng.integers(0, [w, h]))
        r = int(rng.integers(3, 18))
        colour = int(rng.integers(0, 256))
        if rng.random() < 0.5:
            cv2.circle(image, (x, y), r, colour, -1)
        else:
            cv2.rectangle(image, (x, y), (x + r, y + 2 * r // 3), colour, -1)
    return cv2.GaussianBlur(image, (3, 3), 0)


def _chessboard(columns: int, rows: int, square: int) -> np.ndarray:
    """White-bordered chessboard with ``columns`` x ``rows`` inner corners."""
    cells = np.indices((rows + 1, columns + 1)).sum(axis=0) % 2
    board = np.kron(cells, np.ones((square, square))).astype(np.uint8) * 255
    return np.pad(board, square // 2, constant_values=255)


# ----------------------------------------------------------------------------- ECC keep rule


def test_ecc_keep_decision_board_refuses_a_worse_refinement() -> None:
    rng = np.random.default_rng(0)
    test = rng.uniform(0, 400, (40, 2))
    h0 = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, -3.0], [0.0, 0.0, 1.0]])
    ref = project(h0, test) + rng.normal(0, 0.05, test.shape)
    h_ecc = h0.copy()
    h_ecc[0, 2] += 1.5  # ECC locked onto something else: 1.5 px off at the corners
    h, record = ecc_keep_decision(h0, h_ecc, test, ref, "chessboard", 0.02)
    assert h is h0 and record["kept"] is False
    assert record["board_reprojection_rms_ecc"] > record["board_reprojection_rms_initial"] + 1
    assert "board homography is kept" in record["reason"]
    # A refinement within the tolerance is kept; features have no corners to check.
    h_close = h0.copy()
    h_close[0, 2] += 0.001
    h, record = ecc_keep_decision(h0, h_close, test, ref, "charuco", 0.02)
    assert h is h_close and record["kept"] is True
    h, record = ecc_keep_decision(h0, h_ecc, test, ref, "features", 0.02)
    assert h is h_ecc and record["kept"] is True and "board_reprojection_rms_ecc" not in record


def test_board_calibration_keeps_board_homography_when_ecc_raises_corner_error(
    tmp_path: Path,
) -> None:
    """A chessboard in front of a textured wall that moves differently (parallax): ECC aligns
    the wall, which dominates the image, and would move the board corners by 4 px."""
    rng = np.random.default_rng(1)
    noise = cv2.GaussianBlur(rng.uniform(0, 255, (400, 520)).astype(np.float32), (0, 0), 2.5)
    wall = cv2.normalize(noise, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    board = _chessboard(5, 4, 24)
    bh, bw = board.shape

    def view(wall_shift: int) -> np.ndarray:
        image = wall[20:380, 20 + wall_shift : 500 + wall_shift].copy()
        image[130 : 130 + bh, 170 : 170 + bw] = board  # the board does not move
        return image

    ref_path, test_path = tmp_path / "ref.png", tmp_path / "test.png"
    cv2.imwrite(str(ref_path), view(0))
    cv2.imwrite(str(test_path), view(4))
    config = GeometryConfig(flip="none", qa_images=False, ecc=EccSettings(max_side=480))
    calib = calibrate_geometry(
        [ref_path], [test_path], tmp_path / "out", BoardSpec.chessboard(5, 4, 1.0), config
    )
    assert calib.method == "chessboard"
    assert calib.ecc is not None and calib.ecc["motion"] == "homography"  # ECC did move
    assert calib.ecc["kept"] is False
    assert np.allclose(calib.homography, calib.initial_homography)
    assert calib.reprojection_rms == pytest.approx(calib.initial_reprojection_rms)
    assert calib.reprojection_rms < 0.5  # the board says: identity
    recorded = json.loads((tmp_path / "out" / RIG_CALIBRATION_NAME).read_text())["ecc"]
    assert recorded["kept"] is False
    assert recorded["board_reprojection_rms_ecc"] > 3.0 > recorded["board_reprojection_rms_initial"]


# ----------------------------------------------------------------------------- refusal reasons


def test_collinear_correspondences_are_named_degenerate() -> None:
    line = np.c_[np.linspace(0, 300, 30), np.linspace(10, 160, 30)]
    problem = correspondence_problem(line, line + 4)
    assert problem is not None and "one line" in problem
    spread = np.random.default_rng(0).uniform(0, 300, (30, 2))
    assert correspondence_problem(spread, spread + 4) is None
    assert "distinct" in str(correspondence_problem(np.zeros((10, 2)), np.zeros((10, 2))))


def test_geometric_refusal_names_its_reason_not_too_few_matches(tmp_path: Path) -> None:
    """Hundreds of good matches, but the only fit breaks a geometric limit (here: the mapped
    area must be at least 1.5 x the reference): the error says so, not "too few matches"."""
    image = _texture((400, 300), seed=2)
    ref_path, test_path = tmp_path / "ref.png", tmp_path / "test.png"
    cv2.imwrite(str(ref_path), image)
    cv2.imwrite(str(test_path), image)
    limits = HomographyLimits(area_ratio=(1.5, 20.0))
    config = GeometryConfig(qa_images=False, ecc=None, limits=limits)
    with pytest.raises(DegenerateHomographyError) as info:
        calibrate_geometry([ref_path], [test_path], tmp_path / "out", None, config)
    message = str(info.value)
    assert not isinstance(info.value, TooFewMatchesError)
    assert "too few" not in message
    assert "x the reference area (allowed 1.5..20)" in message and "flip none" in message
    assert "test.png" in message


def test_unrelated_images_still_say_too_few_matches(tmp_path: Path) -> None:
    ref_path, test_path = tmp_path / "ref.png", tmp_path / "test.png"
    cv2.imwrite(str(ref_path), _texture((400, 300), seed=3))
    cv2.imwrite(str(test_path), _texture((400, 300), seed=4))
    config = GeometryConfig(qa_images=False, ecc=None)
    with pytest.raises(TooFewMatchesError, match="too few"):
        calibrate_geometry([ref_path], [test_path], tmp_path / "out", None, config)


def test_transfer_rms_is_what_the_rule_compares() -> None:
    pts = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    assert transfer_rms(np.eye(3), pts, pts + np.array([3.0, 4.0])) == pytest.approx(5.0)


# ----------------------------------------------------------------------------- issue 19


def _charuco_image(columns: int, rows: int) -> np.ndarray:
    """A ChArUco board of the rig guide (square 0.04, marker 0.028, DICT_6X6_250)."""
    dictionary = cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_6X6_250)
    board = cv2.aruco.CharucoBoard((columns, rows), 0.04, 0.028, dictionary)
    return board.generateImage((columns * 80, rows * 80), marginSize=40)


def test_transposed_charuco_size_is_named_in_the_error(tmp_path: Path) -> None:
    image = _charuco_image(7, 5)
    ref_path, test_path = tmp_path / "ref.png", tmp_path / "test.png"
    cv2.imwrite(str(ref_path), image)
    cv2.imwrite(str(test_path), image)
    swapped = BoardSpec.charuco(5, 7, 0.04, 0.028)
    config = GeometryConfig(flip="none", qa_images=False, ecc=None)
    with pytest.raises(
        BoardNotFoundError,
        match=r"ref\.png.*not found.*board not found as 5x7; it is found as 7x5: "
        r"use --charuco 7x5",
    ):
        calibrate_geometry([ref_path], [test_path], tmp_path / "out", swapped, config)
    # The test images alone (automatic flip): the same hint.
    cv2.imwrite(str(ref_path), _charuco_image(5, 7))
    with pytest.raises(BoardNotFoundError, match=r"test\.png.*use --charuco 7x5"):
        calibrate_geometry([ref_path], [test_path], tmp_path / "out", swapped, GeometryConfig())


def test_transposed_hint_only_when_the_transposed_board_is_there() -> None:
    image = _charuco_image(7, 5)
    hint = transposed_hint([image], BoardSpec.charuco(5, 7, 0.04, 0.028))
    assert hint == "; board not found as 5x7; it is found as 7x5: use --charuco 7x5"
    assert transposed_hint([image], BoardSpec.charuco(7, 5, 0.04, 0.028)) == ""  # 5x7 absent
    blank = np.full_like(image, 128)
    assert transposed_hint([blank], BoardSpec.charuco(5, 7, 0.04, 0.028)) == ""
    assert transposed_hint([image], BoardSpec.chessboard(9, 6)) == ""  # OpenCV finds 6x9 too
    with pytest.raises(BoardNotFoundError) as caught:
        require_board(
            [None], [Path("blank.png")], BoardSpec.charuco(5, 7, 0.04, 0.028), "x", [blank]
        )
    assert "found as" not in str(caught.value)


def _ecc_record(kept: bool = True) -> dict[str, object]:
    return {"motion": "homography", "initial_correlation": 0.61, "correlation": 0.93, "kept": kept}


def test_rms_rise_note_only_when_the_printed_rms_rises() -> None:
    note = rms_rise_note("features", 1.345, 2.779, _ecc_record())
    assert note is not None
    flat = " ".join(note.split())
    assert "ECC aligns intensities over the whole overlap" in flat
    assert "ECC correlation (0.6100 -> 0.9300)" in flat and "grid error" in flat
    assert "not by the feature inliers' reprojection RMS, which it is not fitted to" in flat
    assert "Kept: ECC's homography" in flat
    assert rms_rise_note("features", 1.345, 1.2, _ecc_record()) is None  # fell
    assert rms_rise_note("features", 1.3451, 1.3452, _ecc_record()) is None  # same as printed
    assert rms_rise_note("features", 1.345, 2.779, None) is None  # ECC off
    assert rms_rise_note("charuco", 0.2, 0.9, _ecc_record(kept=False)) is None  # discarded
    board = rms_rise_note(
        "charuco", 0.2, 0.21, {**_ecc_record(), "board_reprojection_rms_ecc": 0.21}
    )
    assert board is not None and "board corners'" in board and "tolerance" in board


@pytest.mark.parametrize(("final", "explained"), [(2.779, True), (1.1, False)])
def test_calibrate_geometry_prints_why_the_rms_rose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, final: float, explained: bool
) -> None:
    """What `expokit calibrate geometry` prints for graf1 -> graf3 (RMS 1.345 -> 2.779 px)."""
    import expokit.calibration.geometry as geometry

    def fake(*_args: object, **_kwargs: object) -> SimpleNamespace:
        return SimpleNamespace(
            pairs=[object()],
            mirror=SimpleNamespace(scores={}, method="features", ambiguous=False),
            flip=SimpleNamespace(value="none"),
            reference_intrinsics=None,
            test_intrinsics=None,
            stereo_rms=None,
            method="features",
            inliers=900,
            correspondences=1000,
            initial_reprojection_rms=1.345,
            reprojection_rms=final,
            ecc=_ecc_record(),
            valid_region=(0, 0, 800, 640),
            reference_size=(800, 640),
            qa_images=[],
            parallax=None,
        )

    monkeypatch.setattr(geometry, "calibrate_geometry", fake)
    for name in ("graf3.png", "graf1.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8), np.uint8))
    args = ["calibrate", "geometry", str(tmp_path / "graf3.png"), str(tmp_path / "graf1.png")]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "rig")])
    assert result.exit_code == 0, result.output
    assert f"RMS 1.345 -> {final:.3f} px" in result.output
    flat = " ".join(result.output.split())
    assert ("ECC aligns intensities over the whole overlap" in flat) is explained
    assert ("Kept: ECC's homography" in flat) is explained


def test_homography_only_calibration_warns_about_parallax(tmp_path: Path) -> None:
    """Board fixed, wall behind it 4 px apart between the views: one homography cannot
    align both depths, so the record carries ``parallax`` and the CLI prints a warning;
    with the wall moving along with the board there is none."""
    from click.testing import CliRunner

    from expokit.cli import cli

    rng = np.random.default_rng(1)
    noise = cv2.GaussianBlur(rng.uniform(0, 255, (400, 520)).astype(np.float32), (0, 0), 2.5)
    wall = cv2.normalize(noise, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    board = _chessboard(5, 4, 24)
    bh, bw = board.shape

    def view(wall_shift: int) -> np.ndarray:
        image = wall[20:380, 20 + wall_shift : 500 + wall_shift].copy()
        image[130 : 130 + bh, 170 : 170 + bw] = board
        return image

    for name, shift in (("flat", 0), ("deep", 4)):
        ref_path, test_path = tmp_path / f"{name}_ref.png", tmp_path / f"{name}_test.png"
        cv2.imwrite(str(ref_path), view(0))
        cv2.imwrite(str(test_path), view(shift))
        result = CliRunner().invoke(
            cli, ["calibrate", "geometry", str(ref_path), str(test_path), "-o",
                  str(tmp_path / name), "--chessboard", "5x4", "--flip", "none", "--no-qa"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        recorded = json.loads((tmp_path / name / RIG_CALIBRATION_NAME).read_text())["parallax"]
        if shift == 0:
            assert recorded is None and "WARNING" not in result.output
        else:
            assert recorded is not None and 3.0 < recorded["parallax_px"] < 5.0, recorded
            text = " ".join(result.output.split())
            assert "WARNING" in text and "aligns one depth only" in text
