"""QA figures and flags: thresholds turn figures into flags; nothing is dropped."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from expokit.curation.build.config import BuildConfigError, QaThresholds
from expokit.curation.build.qa import (
    clipped_fractions,
    flags_for,
    flicker,
    focus_ratio,
    gain_deviations,
    gain_instability,
    group_figures,
    pair_figures,
    target_flicker,
)
from expokit.curation.dataset.flags import QA_FLAGS

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
    "usable_fraction": 0.9,
    "focus_ratio": 1.0,
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
        ({"usable_fraction": 0.05}, "fit_unreliable"),
        ({"gain_deviation_ev": 0.3}, "gain_outlier"),
        ({"gain_deviation_ev": -0.3}, "gain_outlier"),
        ({"gain_instability_ev": 0.1}, "gain_unstable"),
        ({"target_flicker": 0.05}, "target_flicker"),
        ({"focus_ratio": 0.5}, "defocus"),
        ({"focus_ratio": 1.6}, "defocus"),
    ],
)
def test_each_threshold_raises_its_flag(change: dict[str, float], flag: str) -> None:
    assert flags_for({**GOOD_ROW, **change}, QaThresholds()) == [flag]


def test_valid_region_flag_and_order() -> None:
    row = {**GOOD_ROW, "psnr_db": 5.0, "target_flicker": 0.5}
    assert flags_for(row, QaThresholds(), valid_fraction=0.2) == [
        "low_psnr",
        "target_flicker",
        "small_valid_region",
    ]
    assert all(f in QA_FLAGS for f in flags_for(row, QaThresholds(), 0.2))
    # Looser thresholds clear them.
    loose = QaThresholds(min_psnr_db=0, max_target_flicker=1, min_valid_fraction=0.1)
    assert flags_for(row, loose, valid_fraction=0.2) == []


def test_unreliable_fit_is_not_judged_as_misaligned_or_low_quality() -> None:
    # A mostly clipped input (SICE "+3 EV"): its gain and figures mean nothing.
    row = {
        **GOOD_ROW, "usable_fraction": 0.03, "psnr_db": 5.6, "ssim": 0.2,
        "alignment_residual_px": 4.0, "gain_deviation_ev": -3.0, "focus_ratio": 0.3,
        "clipped_bright_input": 0.95,
    }  # fmt: skip
    assert flags_for(row, QaThresholds()) == ["fit_unreliable", "clipped_input"]


def test_old_flicker_threshold_is_refused_with_its_replacements() -> None:
    with pytest.raises(BuildConfigError, match="max_target_flicker"):
        QaThresholds.from_dict({"max_flicker": 0.02})


def test_gain_deviation_against_the_group_median() -> None:
    deviations, spread = gain_deviations([4.0, 4.02, 3.98, 4.0, 7.3])
    assert deviations[-1] == pytest.approx(math.log2(7.3 / 4.0))
    assert abs(deviations[0]) < 1e-9 and spread is not None and spread < 0.02
    # Too small a group judges nobody; missing gains are skipped.
    assert gain_deviations([4.0, 7.3])[0] == [None, None]
    assert gain_deviations([4.0, None, 4.0, math.nan, 4.0])[0][1] is None


def _changes(lumas: list[float]) -> list[float | None]:
    """Frame-to-frame log brightness changes (what the build measures per video frame)."""
    return [None] + [float(np.log(b / a)) for a, b in itertools.pairwise(lumas)]


def _clip_rows(gains: list[float], lumas: list[float]) -> list[dict[str, object]]:
    return [
        {
            **GOOD_ROW,
            "clip_id": "c",
            "frame_index": i,
            "source": "capture",
            "input_ev": -2.0,
            "target_ev": 0.0,
            "photometric_gain": g,
            "target_change": c,
        }
        for i, (g, c) in enumerate(zip(gains, _changes(lumas), strict=True))
    ]


def _flags(rows: list[dict[str, object]]) -> set[str]:
    group_figures(rows, QaThresholds())  # type: ignore[arg-type]
    return {f for r in rows for f in flags_for(r, QaThresholds())}


FPS = 24.0
T = np.arange(144) / FPS  # 6 s


def test_content_and_steady_light_changes_are_not_flicker() -> None:
    rng = np.random.default_rng(1)
    steady_gain = list(4.0 * (1 + rng.normal(0, 0.002, T.size)))
    ramp = list(0.10 + 0.05 * T / T[-1])  # the scene light rising for both cameras
    pan = list(
        0.12
        + 0.04 * np.sin(2 * np.pi * 0.3 * T)
        + 0.01 * np.cumsum(rng.normal(0, 0.02, T.size)) / 10
    )
    assert _flags(_clip_rows(steady_gain, ramp)) == set()
    assert _flags(_clip_rows(steady_gain, pan)) == set()


def test_scene_flicker_flags_the_target_not_the_pair_ratio() -> None:
    lumas = list(0.12 * (1 + 0.07 * np.sin(2 * np.pi * 7.0 * T)))
    rows = _clip_rows([4.0] * T.size, lumas)
    assert _flags(rows) == {"target_flicker"}
    assert float(rows[0]["target_flicker"]) == pytest.approx(0.07, rel=0.05)  # type: ignore[arg-type]


def test_one_camera_flickering_makes_the_gain_unstable() -> None:
    gains = list(4.0 * (1 + 0.05 * np.sin(2 * np.pi * 3.0 * T)))
    assert _flags(_clip_rows(gains, [0.12] * T.size)) == {"gain_unstable"}


def test_one_frame_with_a_light_change_is_a_gain_outlier() -> None:
    gains = [4.0] * T.size
    gains[40] = 7.3  # a light change falls between the two bodies' exposures
    rows = _clip_rows(gains, [0.12] * T.size)
    group_figures(rows, QaThresholds())  # type: ignore[arg-type]
    flagged = [i for i, r in enumerate(rows) if "gain_outlier" in flags_for(r, QaThresholds())]
    assert flagged == [40]


def test_clip_figures_need_enough_frames() -> None:
    assert target_flicker([0.1, 0.2, 0.1]) is None
    assert gain_instability([4.0, 4.4]) is None


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
    assert same["usable_fraction"] == pytest.approx(1.0) and same["focus_ratio"] == 1.0


def test_focus_ratio_sees_blur_not_noise_or_shift() -> None:
    import cv2

    rng = np.random.default_rng(2)
    scene = cv2.GaussianBlur(rng.uniform(0, 1, (240, 320)).astype(np.float32), (0, 0), 2.0)
    scene = (scene - scene.min()) / (scene.max() - scene.min())
    sharp = np.repeat((30 + 190 * scene)[..., None], 3, axis=2).astype(np.uint8)
    valid = np.ones(sharp.shape[:2], bool)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 1.5)
    limit = QaThresholds().min_focus_ratio  # the defocus flag's bar
    assert focus_ratio(blurred, sharp, valid) < limit
    assert focus_ratio(sharp, blurred, valid) > 1 / limit
    shifted = np.roll(sharp, 3, axis=1)
    assert focus_ratio(shifted, sharp, valid) == pytest.approx(1.0, abs=0.05)
    noisy = np.clip(sharp + rng.normal(0, 4, sharp.shape), 0, 255).astype(np.uint8)
    assert 0.8 < focus_ratio(noisy, sharp, valid) < 1.25


def test_light_switched_and_flashes_seen_by_both_are_not_flicker() -> None:
    # The demo's generated scene: the light steps down and up, and one-frame flashes.
    lumas = [0.33] * 11 + [0.15] * 10 + [0.33] * 12 + [0.15] * 11
    for flash in (5, 21, 38):
        lumas[flash] = 0.57
    assert target_flicker(_changes(lumas)) == pytest.approx(0.0, abs=1e-3)
    beat = [y * (1 + 0.03 * np.sin(2 * np.pi * 7.0 * i / 24.0)) for i, y in enumerate(lumas)]
    assert 0.02 < target_flicker(_changes(beat)) < 0.035  # type: ignore[operator]
