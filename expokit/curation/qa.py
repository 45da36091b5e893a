"""QA figures of a pair and of a clip, and the flags thresholds turn them into.

Figures (computed per pair by :func:`pair_figures`, stored in the manifest):

* ``psnr_db``, ``ssim``: the input after exposure normalisation (the fitted linear gain
  applied, re-encoded) against the target, inside the valid mask, with
  :mod:`expokit.curation.metrics` (the one implementation of both);
* ``clipped_dark_*`` / ``clipped_bright_*``: fractions of valid pixels clipped dark / bright
  (:func:`expokit.curation.align.clip_masks`) in the input and the target;
* per clip, ``flicker``: population std / mean of the target's mean linear luminance over
  the clip's frames (:func:`flicker`).

Flags (:func:`flags_for`) are computed from those figures when the manifest is assembled,
so changing a threshold never re-processes an image. Flagged rows are kept. One flag needs
no threshold: ``exif_mismatch`` marks a capture pair whose camera did not apply a
requested setting (the journal's EXIF check), whatever its figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from expokit.curation.align import clip_masks, luminance, to_linear
from expokit.curation.build_config import QA_FLAGS, QaThresholds


def clipped_fractions(
    image: npt.NDArray[Any], valid: npt.NDArray[np.bool_], levels: tuple[int, int]
) -> tuple[float, float]:
    """``(dark, bright)`` fractions of valid pixels clipped in ``image`` (NaN if none valid)."""
    count = int(np.count_nonzero(valid))
    if count == 0:
        return math.nan, math.nan
    dark, bright = clip_masks(image, *levels)
    return (
        float(np.count_nonzero(dark & valid)) / count,
        float(np.count_nonzero(bright & valid)) / count,
    )


def mean_luminance(
    image: npt.NDArray[Any], valid: npt.NDArray[np.bool_], transfer: str = "srgb"
) -> float:
    """Mean linear Rec. 709 luminance (``[0, 1]``) over the valid pixels."""
    values = luminance(to_linear(image, transfer))[valid]
    return float(values.mean()) if values.size else math.nan


def pair_figures(
    input_normalised: npt.NDArray[Any],
    input_image: npt.NDArray[Any],
    target: npt.NDArray[Any],
    valid: npt.NDArray[np.bool_],
    levels: tuple[int, int],
) -> dict[str, float]:
    """PSNR/SSIM of the exposure-normalised input vs the target, and clipping fractions.

    Parameters
    ----------
    input_normalised
        Input with the fitted gain applied, ``(H, W, 3)``, dtype of ``target``.
    input_image
        The stored input (clipping is measured on what the camera recorded).
    target
        ``(H, W, 3)`` uint8 or uint16.
    valid
        ``(H, W)`` bool.
    levels
        ``(dark, bright)`` clip levels in code values of the images' bit depth.

    Returns
    -------
    dict
        ``psnr_db``, ``ssim`` (NaN when the valid region holds no full 11x11 SSIM window),
        ``clipped_dark_input``, ``clipped_bright_input``, ``clipped_dark_target``,
        ``clipped_bright_target``.
    """
    from expokit.curation.metrics import psnr, ssim

    data_range = 255.0 if target.dtype == np.uint8 else 65535.0
    out: dict[str, float] = {}
    out["psnr_db"] = (
        psnr(input_normalised, target, data_range, mask=valid) if valid.any() else math.nan
    )
    try:
        out["ssim"] = ssim(input_normalised, target, data_range, mask=valid)
    except ValueError:  # smaller than one SSIM window
        out["ssim"] = math.nan
    out["clipped_dark_input"], out["clipped_bright_input"] = clipped_fractions(
        input_image, valid, levels
    )
    out["clipped_dark_target"], out["clipped_bright_target"] = clipped_fractions(
        target, valid, levels
    )
    return out


def flicker(means: Sequence[float]) -> float | None:
    """Temporal spread of a clip's brightness: population std / mean of ``means``.

    ``None`` for fewer than two finite values or a non-positive mean.
    """
    values = np.asarray([m for m in means if m is not None and math.isfinite(m)], np.float64)
    if values.size < 2 or not values.mean() > 0:
        return None
    return float(values.std() / values.mean())


def _bad(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def flags_for(
    row: Mapping[str, Any], qa: QaThresholds, valid_fraction: float | None = None
) -> list[str]:
    """QA flags of one manifest row, in :data:`QA_FLAGS` order.

    Missing figures (NaN/None) raise no flag except ``gain_unfit`` for a missing gain.
    ``valid_fraction`` is the valid rectangle's share of the reference frame. A non-empty
    private ``_exif_mismatch`` (set by the build from the capture journal) raises
    ``exif_mismatch``.
    """
    found: set[str] = set()

    def number(key: str) -> float | None:
        value = row.get(key)
        return None if _bad(value) else float(value)  # type: ignore[arg-type]

    def above(key: str, limit: float) -> bool:
        value = number(key)
        return value is not None and value > limit

    def below(key: str, limit: float) -> bool:
        value = number(key)
        return value is not None and value < limit

    if below("psnr_db", qa.min_psnr_db):
        found.add("low_psnr")
    if below("ssim", qa.min_ssim):
        found.add("low_ssim")
    if above("alignment_residual_px", qa.max_residual_px):
        found.add("misaligned")
    if below("ecc_correlation", qa.min_ecc_correlation):
        found.add("low_ecc")
    if _bad(row.get("photometric_gain")):
        found.add("gain_unfit")
    if above("clipped_dark_input", qa.max_clipped_input) or above(
        "clipped_bright_input", qa.max_clipped_input
    ):
        found.add("clipped_input")
    if above("clipped_dark_target", qa.max_clipped_target) or above(
        "clipped_bright_target", qa.max_clipped_target
    ):
        found.add("clipped_target")
    if valid_fraction is not None and valid_fraction < qa.min_valid_fraction:
        found.add("small_valid_region")
    if above("flicker", qa.max_flicker):
        found.add("flicker")
    if row.get("_exif_mismatch"):
        found.add("exif_mismatch")
    return [f for f in QA_FLAGS if f in found]
