"""QA figures and flags: thresholds turn figures into flags; nothing is dropped."""

from __future__ import annotations

import math

import numpy as np
import pytest

from expokit.curation.build_config import QA_FLAGS, BuildConfigError, QaThresholds
from expokit.curation.qa import clipped_fractions, flags_for, flicker, pair_figures

GOOD_ROW = {
    "psnr_db": 30.0,
    "ssim": 0.95,
    "alignment_residual_px": 0.1,
    "ecc_correlation": None,
    "photometric_gain": 4.0,
    "clipped_dark_input": 0.01,
    "clipped_bright_input": 0.0,
    "clipped_dark_target": 0.0,
    "clipped_bright_target": 0.0,
    "flicker": None,
}


def test_clean_row_has_no_flags() -> None:
    assert flags_for(GOOD_ROW, QaThresholds(), valid_fraction=0.9) == []


@pytest.mark.parametrize(
    ("change", "flag"),
    [
        ({"psnr_db": 12.0}, "low_psnr"),
        ({"ssim": 0.3}, "low_ssim"),
        ({"alignment_residual_px": 2.5}, "misaligned"),
        ({"ecc_correlation": 0.5}, "low_ecc"),
        ({"photometric_gain": math.nan}, "gain_unfit"),
        ({"clipped_bright_input": 0.6}, "clipped_input"),
        ({"clipped_dark_target": 0.3}, "clipped_target"),
        ({"flicker": 0.2}, "flicker"),
    ],
)
def test_each_threshold_raises_its_flag(change: dict[str, float], flag: str) -> None:
    assert flags_for({**GOOD_ROW, **change}, QaThresholds()) == [flag]


def test_valid_region_flag_and_order() -> None:
    row = {**GOOD_ROW, "psnr_db": 5.0, "flicker": 0.5}
    assert flags_for(row, QaThresholds(), valid_fraction=0.2) == [
        "low_psnr",
        "small_valid_region",
        "flicker",
    ]
    assert all(f in QA_FLAGS for f in flags_for(row, QaThresholds(), 0.2))
    # Looser thresholds clear them.
    loose = QaThresholds(min_psnr_db=0, max_flicker=1, min_valid_fraction=0.1)
    assert flags_for(row, loose, valid_fraction=0.2) == []


def test_thresholds_are_validated() -> None:
    with pytest.raises(BuildConfigError, match="min_ssim"):
        QaThresholds(min_ssim=2.0)
    with pytest.raises(BuildConfigError, match="fraction"):
        QaThresholds(max_clipped_input=1.5)
    with pytest.raises(BuildConfigError, match="unknown QA threshold"):
        QaThresholds.from_dict({"min_psnr": 3})
    assert QaThresholds.from_dict({"min_psnr_db": 25}).min_psnr_db == 25.0


def test_flicker_is_std_over_mean() -> None:
    assert flicker([0.2, 0.2, 0.2]) == pytest.approx(0.0, abs=1e-12)
    assert flicker([0.1, 0.3]) == pytest.approx(0.5)
    assert flicker([0.2]) is None
    assert flicker([0.2, math.nan]) is None


def test_clipped_fractions_and_figures() -> None:
    image = np.full((40, 40, 3), 128, np.uint8)
    image[:10] = 0  # 25 % crushed
    image[10:14, :, 2] = 255  # 10 % with one saturated channel
    valid = np.ones((40, 40), bool)
    dark, bright = clipped_fractions(image, valid, (2, 253))
    assert dark == pytest.approx(0.25) and bright == pytest.approx(0.10)
    valid[:10] = False  # the crushed rows are outside the valid region
    assert clipped_fractions(image, valid, (2, 253))[0] == 0.0
    rng = np.random.default_rng(0)
    target = rng.integers(20, 230, (40, 40, 3)).astype(np.uint8)
    same = pair_figures(target, target, target, np.ones((40, 40), bool), (2, 253))
    assert same["psnr_db"] == math.inf and same["ssim"] == pytest.approx(1.0)
    noisy = np.clip(target.astype(int) + rng.integers(-20, 21, target.shape), 0, 255).astype(
        np.uint8
    )
    worse = pair_figures(noisy, noisy, target, np.ones((40, 40), bool), (2, 253))
    assert 20 < worse["psnr_db"] < 35 and 0.5 < worse["ssim"] < 0.99
