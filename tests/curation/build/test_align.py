"""Per-pair alignment: known homography + 2 EV darkening is undone (residual, gain)."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import pytest

from expokit.calibration.rig_calibration import RigCalibration
from expokit.core.synthetic import demo_scene
from expokit.core.transfer import srgb_encode
from expokit.curation.build.align import (
    AlignmentError,
    align_pair,
    downscale,
    fit_gain,
    flow_residual,
    from_linear,
    normalise_exposure,
    to_linear,
    valid_rectangle,
)
from tests.conftest import shared_path

LEVELS = (2, 253)
#: Reference -> test mapping of the simulated rig: a small perspective shift and rotation.
G = np.array([[1.01, 0.02, 7.3], [-0.015, 0.99, -4.6], [1e-5, -2e-5, 1.0]])


def calibration(h: np.ndarray, size: tuple[int, int], flip: str = "none") -> RigCalibration:
    """A rig calibration whose homography maps flipped test pixels to reference pixels."""
    w, hh = size
    return RigCalibration.from_dict(
        {
            "format_version": 1, "flip": flip, "mirror": {"flip": flip, "method": "fixed"},
            "method": "features", "homography": np.asarray(h).tolist(),
            "initial_homography": np.asarray(h).tolist(), "correspondences": 0, "inliers": 0,
            "reprojection_rms": 0.0, "initial_reprojection_rms": 0.0, "ecc": None,
            "valid_region": [0, 0, w, hh], "reference_size": [w, hh], "test_size": [w, hh],
        }
    )  # fmt: skip


def texture_target(height: int = 240, width: int = 320) -> np.ndarray:
    scene = demo_scene("texture", height, width, seed=3) * 0.8
    return np.rint(srgb_encode(scene[..., ::-1]) * 255).astype(np.uint8)


def simulated_test(target: np.ndarray, flip: str, ev: float = -2.0) -> np.ndarray:
    """What the test camera records: the scene warped by G, ``ev`` stops darker, flipped."""
    h, w = target.shape[:2]
    warped = cv2.warpPerspective(target, G, (w, h), flags=cv2.INTER_CUBIC)
    darker = from_linear(to_linear(warped) * 2.0**ev, 8)
    return np.ascontiguousarray(darker[:, ::-1]) if flip == "horizontal" else darker


def measure(
    aligned_image: np.ndarray, target: np.ndarray, valid: np.ndarray
) -> tuple[float, float]:
    x, y, w, h = valid_rectangle(valid)
    a, b = aligned_image[y : y + h, x : x + w], target[y : y + h, x : x + w]
    v = valid[y : y + h, x : x + w]
    gain = fit_gain(a, b, v, LEVELS)
    return gain, flow_residual(normalise_exposure(a, gain), b, v, LEVELS)


@pytest.mark.parametrize("flip", ["none", "horizontal"])
def test_known_homography_and_two_ev_are_undone(flip: str) -> None:
    target = texture_target()
    test = simulated_test(target, flip)
    aligned = align_pair(test, target, calibration(np.linalg.inv(G), (320, 240), flip))
    assert aligned.resampled and aligned.homography is not None
    assert 0.8 < aligned.valid.mean() < 1.0  # the warp leaves an invalid border
    gain, residual = measure(aligned.image, target, aligned.valid)
    assert gain == pytest.approx(4.0, rel=0.10)
    assert residual < 0.5


def test_wrong_flip_or_homography_is_measured_as_misalignment() -> None:
    target = texture_target()
    test = simulated_test(target, "horizontal")
    shifted = np.array([[1.0, 0, 6], [0, 1, 0], [0, 0, 1]]) @ np.linalg.inv(G)
    aligned = align_pair(test, target, calibration(shifted, (320, 240), "horizontal"))
    _, residual = measure(aligned.image, target, aligned.valid)
    assert 4.5 < residual < 7.5  # the 6 px error is what DIS reports
    # ECC refinement (on by config) recovers the pair from the wrong rig homography.
    refined = align_pair(test, target, calibration(shifted, (320, 240), "horizontal"), ecc=True)
    assert refined.ecc is not None and refined.ecc.motion != "identity"
    assert refined.ecc.correlation > refined.ecc.initial_correlation
    _, residual = measure(refined.image, target, refined.valid)
    assert residual < 0.5


def test_real_image_alignment() -> None:
    folder = shared_path("exposure", "sice_7ev_sequences", "seq_0064")
    files = sorted(folder.glob("*.jpg"), key=lambda p: int(p.stem))
    target = np.asarray(cv2.imread(str(files[3])))
    test = simulated_test(target, "horizontal")
    aligned = align_pair(test, target, calibration(np.linalg.inv(G), (512, 512), "horizontal"))
    gain, residual = measure(aligned.image, target, aligned.valid)
    assert gain == pytest.approx(4.0, rel=0.10) and residual < 0.5


def test_ecc_without_rig_aligns_a_shifted_input() -> None:
    target = texture_target()
    shift = np.array([[1.0, 0, -3.0], [0, 1, 2.0], [0, 0, 1]])
    moved = cv2.warpPerspective(target, shift, (320, 240), flags=cv2.INTER_CUBIC)
    darker = from_linear(to_linear(moved) / 2.0, 8)
    plain = align_pair(darker, target, None)
    assert not plain.resampled and plain.valid.all() and plain.homography is None
    assert measure(plain.image, target, plain.valid)[1] > 2.5
    refined = align_pair(darker, target, None, ecc=True)
    assert refined.resampled and refined.homography is not None
    gain, residual = measure(refined.image, target, refined.valid)
    assert gain == pytest.approx(2.0, rel=0.10) and residual < 0.5
    # Compare mappings, not matrix entries (translation trades off against perspective terms).
    grid = np.array([[x, y, 1.0] for x in (20, 160, 300) for y in (20, 120, 220)]).T
    mapped = refined.homography @ grid
    expected = np.linalg.inv(shift) @ grid
    assert np.abs(mapped[:2] / mapped[2] - expected[:2] / expected[2]).max() < 0.5


def test_gain_is_fitted_in_linear_light_on_unclipped_pixels() -> None:
    target = texture_target()
    for ev in (-3.0, -1.0, 1.0):
        image = from_linear(to_linear(target) * 2.0**ev, 8)
        gain = fit_gain(image, target, np.ones(target.shape[:2], bool), LEVELS)
        assert gain == pytest.approx(2.0**-ev, rel=0.10)
    sixteen = (target.astype(np.uint16) * 257)[..., :]
    darker16 = from_linear(to_linear(sixteen) / 4.0, 16)
    assert fit_gain(
        darker16, sixteen, np.ones(target.shape[:2], bool), (514, 65021)
    ) == pytest.approx(4.0, rel=0.02)
    black = np.zeros_like(target)
    assert math.isnan(fit_gain(black, target, np.ones(target.shape[:2], bool), LEVELS))
    # Normalising the darker image back reproduces the target closely.
    back = normalise_exposure(from_linear(to_linear(target) / 4.0, 8), 4.0)
    assert np.abs(back.astype(int) - target.astype(int)).mean() < 2.0


def test_sizes_and_overlap_errors() -> None:
    target = texture_target()
    with pytest.raises(AlignmentError, match="input is 160x120, target is 320x240"):
        align_pair(target[:120, :160], target, None)
    with pytest.raises(AlignmentError, match="calibration is for 640x480"):
        align_pair(target, target, calibration(np.eye(3), (640, 480)))
    away = np.array([[1.0, 0, 1000], [0, 1, 0], [0, 0, 1]])
    aligned = align_pair(target, target, calibration(away, (320, 240)))
    with pytest.raises(AlignmentError, match="does not overlap"):
        valid_rectangle(aligned.valid)


def test_downscale_keeps_the_mask_conservative() -> None:
    valid = np.ones((100, 200), bool)
    valid[:, :11] = False
    images: list[Any] = [np.zeros((100, 200, 3), np.uint8)]
    (small,), mask, scale = downscale(images, valid, 50)
    assert small.shape == (25, 50, 3) and scale == 0.25
    assert not mask[:, :2].any() and mask[:, 3:].all()  # 11 px -> 2.75: three cells touched
