import math

import numpy as np
import pytest

from expokit.curation.metrics import psnr, ssim


def _pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (64, 80, 3)).astype(np.uint8)
    import cv2

    base = cv2.GaussianBlur(base, (7, 7), 2)
    noisy = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    return base, noisy


def test_psnr_reference_value() -> None:
    a = np.zeros((4, 4), np.uint8)
    b = np.full((4, 4), 10, np.uint8)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))
    assert psnr(a, a) == math.inf


def test_ssim_matches_scikit_image_gaussian_convention() -> None:
    from skimage.metrics import structural_similarity

    a, b = _pair()
    ours = ssim(a, b)
    ref = structural_similarity(
        a,
        b,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert ours == pytest.approx(ref, abs=2e-3)
    assert ssim(a, a) == pytest.approx(1.0)


def test_mask_restricts_the_comparison() -> None:
    a, b = _pair()
    b2 = b.copy()
    b2[:, 40:] = 0  # ruin the right half
    mask = np.zeros(a.shape[:2], bool)
    mask[:, :40] = True
    assert psnr(a, b2, mask=mask) == pytest.approx(psnr(a[:, :40], b[:, :40]))
    assert ssim(a, b2, mask=mask) > ssim(a, b2) + 0.2


def test_nan_and_shape_errors() -> None:
    a = np.zeros((16, 16))
    b = a.copy()
    b[0, 0] = np.nan
    assert math.isnan(psnr(a, b, data_range=1.0))
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(a, np.zeros((16, 15)))
    with pytest.raises(ValueError, match="too small"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))
