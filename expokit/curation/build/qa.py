"""QA figures of a pair, of a clip and of a group of pairs, and the flags they raise.

Per pair (:func:`pair_figures`, computed where the images are, stored in the manifest):

* ``psnr_db``, ``ssim``: the input after exposure normalisation (the fitted linear gain,
  then a monotonic tone curve matched to the target, :func:`expokit.curation.build.align.
  match_tones`) against the target, on valid pixels unclipped in both, with
  :mod:`expokit.curation.metrics` (the one implementation of both);
* ``clipped_dark_*`` / ``clipped_bright_*``: fractions of valid pixels clipped dark / bright
  (:func:`expokit.curation.build.align.clip_masks`) in the input and the target;
* ``usable_fraction``: share of valid pixels unclipped in *both* images, the pixels the gain
  is fitted on (:func:`usable_fraction`);
* ``focus_ratio``: sharpness of the normalised input over the target's (:func:`focus_ratio`);
* ``target_luma``: the target's mean linear luminance (the clip figures use it).

Over pairs (:func:`group_figures`, computed when the manifest is assembled, from the columns):

* ``gain_deviation_ev``: ``log2`` of the pair's gain over the robust median gain of its group
  (same clip, or same source for still sets, and same exposure offset), the rig itself as
  the reference (:func:`gain_deviations`);
* ``gain_instability_ev``, per clip: trimmed standard deviation of the per-frame ``log2``
  gain (:func:`gain_instability`): test vs reference over time (sync, auto exposure, one
  camera flickering);
* ``target_flicker``, per clip: relative amplitude of the strongest fast oscillation of the
  scene light, from ``target_change`` (the target's frame-to-frame brightness change, a
  median per-pixel ratio that moving content does not enter; :func:`target_flicker`): a
  mains beat in the scene; content, steps and steady light changes are not oscillations.

Flags (:func:`flags_for`) follow from those figures and :class:`QaThresholds`, so changing a
threshold never re-processes an image; flagged rows are kept. A ``fit_unreliable`` pair (too
few unclipped pixels) is not judged by the fit flags (:data:`FIT_FLAGS`). ``exif_mismatch``
marks a capture pair whose camera did not apply a requested setting (the journal's EXIF
check). The rules, defaults and measured detection rates are in ``docs/qa.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from expokit.curation.build.align import clip_masks, luminance, to_linear, usable
from expokit.curation.build.config import QaThresholds
from expokit.curation.dataset.flags import FIT_FLAGS, QA_FLAGS
from expokit.curation.metrics import psnr, ssim


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


#: A gain group needs this many judged pairs before its median stands for the rig.
MIN_GAIN_GROUP = 3
#: ``gain_outlier`` also needs the deviation to exceed this many robust standard deviations
#: of the group (groups whose gains legitimately differ, e.g. tone-mapped MSEC images).
GAIN_SPREAD_FACTOR = 4.0
#: Clip figures need this many frames.
MIN_CLIP_FRAMES = 5
#: ``target_flicker`` looks for oscillations of at least this many cycles per frame (a
#: period of at most 10 frames: 2.4 Hz at 24 fps); slower changes are content's.
FLICKER_MIN_CYCLES = 0.1
#: Frame-to-frame brightness jumps above this (log units, and 6 robust standard deviations)
#: are a light switched or a flash, not flicker.
FLICKER_JUMP = 0.03
#: ``target_flicker`` counts the power of its peak above this many times the median power of
#: the band (the highest of ~N/2 bins of a broadband change is about 6x its median).
FLICKER_FLOOR = 10.0
#: Frame-to-frame changes ``target_flicker`` needs.
MIN_FLICKER_FRAMES = 16
#: Longer side (px) of the thumbnails consecutive targets are compared at.
THUMBNAIL_SIDE = 64
#: ``1.4826 * MAD`` estimates a standard deviation for Gaussian data.
MAD_SCALE = 1.4826


def usable_fraction(
    input_image: npt.NDArray[Any],
    target: npt.NDArray[Any],
    valid: npt.NDArray[np.bool_],
    levels: tuple[int, int],
) -> float:
    """Share of valid pixels clipped in neither image (NaN if none valid).

    These are the pixels :func:`expokit.curation.build.align.fit_gain` fits the gain on; with few
    of them the gain, the normalised input and every figure computed from it mean little.
    """
    count = int(np.count_nonzero(valid))
    if count == 0:
        return math.nan
    both = valid & usable(input_image, *levels) & usable(target, *levels)
    return float(np.count_nonzero(both)) / count


def sharpness(image: npt.NDArray[Any], region: npt.NDArray[np.bool_]) -> float:
    """Edge strength of ``image`` inside ``region``: the 90th percentile of the gradient
    magnitude of its 2x-downscaled grey image (code values scaled to ``[0, 1]``).

    Downscaling averages noise down before the gradient while edges survive, so an
    amplified dark input does not read as sharper; a percentile of the magnitudes (not a
    per-pixel comparison) makes the figure insensitive to misregistration.
    NaN when ``region`` holds fewer than 64 pixels at the working scale.
    """
    import cv2

    grey = np.asarray(image, np.float32)
    if grey.ndim == 3:
        grey = grey.mean(axis=2)
    grey = grey / (255.0 if image.dtype == np.uint8 else 65535.0)
    size = (max(1, grey.shape[1] // 2), max(1, grey.shape[0] // 2))
    small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    inside = cv2.resize(region.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    inside = cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8), borderValue=0) > 0
    if int(np.count_nonzero(inside)) < 64:
        return math.nan
    gx = cv2.Sobel(small, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(small, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.percentile(np.hypot(gx, gy)[inside], 90))


def focus_ratio(
    input_normalised: npt.NDArray[Any], target: npt.NDArray[Any], region: npt.NDArray[np.bool_]
) -> float:
    """Sharpness of the exposure-normalised input over the target's (:func:`sharpness`) on
    ``region`` (``(H, W)`` bool: valid pixels the cameras recorded unclipped): ``< 1`` when
    the input's camera is softer (defocus, motion blur), ``> 1`` when the target's is. NaN
    when not measurable."""
    mine, theirs = sharpness(input_normalised, region), sharpness(target, region)
    if not (math.isfinite(mine) and math.isfinite(theirs)) or theirs <= 1e-6:
        return math.nan
    return mine / theirs


def pair_figures(
    input_normalised: npt.NDArray[Any],
    input_image: npt.NDArray[Any],
    target: npt.NDArray[Any],
    valid: npt.NDArray[np.bool_],
    levels: tuple[int, int],
    transfer: str = "srgb",
) -> dict[str, float | None]:
    """Every per-pair QA figure of one aligned pair.

    Parameters
    ----------
    input_normalised
        Input with the fitted gain applied and its tones matched to ``target``,
        ``(H, W, 3)``, dtype of ``target``.
    input_image
        The stored input (clipping is measured on what the camera recorded).
    target
        ``(H, W, 3)`` uint8 or uint16.
    valid
        ``(H, W)`` bool.
    levels
        ``(dark, bright)`` clip levels in code values of the images' bit depth.
    transfer
        ``"srgb"`` or ``"linear"``: how the code values encode light (``target_luma``).

    Returns
    -------
    dict
        ``psnr_db``, ``ssim`` (NaN when the valid region holds no full 11x11 SSIM window),
        ``clipped_dark_input``, ``clipped_bright_input``, ``clipped_dark_target``,
        ``clipped_bright_target``, ``usable_fraction``, ``focus_ratio``, ``target_luma``.
    """
    data_range = 255.0 if target.dtype == np.uint8 else 65535.0
    out: dict[str, float | None] = {}
    # Clipped pixels are counted by clipped_*; PSNR/SSIM judge the pixels both recorded.
    judged = valid & usable(input_image, *levels) & usable(target, *levels)
    out["psnr_db"] = (
        psnr(input_normalised, target, data_range, mask=judged) if judged.any() else math.nan
    )
    try:
        out["ssim"] = (
            ssim(input_normalised, target, data_range, mask=judged) if judged.any() else math.nan
        )
    except ValueError:  # smaller than one SSIM window
        out["ssim"] = math.nan
    out["clipped_dark_input"], out["clipped_bright_input"] = clipped_fractions(
        input_image, valid, levels
    )
    out["clipped_dark_target"], out["clipped_bright_target"] = clipped_fractions(
        target, valid, levels
    )
    out["usable_fraction"] = usable_fraction(input_image, target, valid, levels)
    out["focus_ratio"] = focus_ratio(input_normalised, target, judged)
    out["target_luma"] = mean_luminance(target, valid, transfer)
    return out


# --------------------------------------------------------------------------- over pairs


def _finite(values: Sequence[Any]) -> npt.NDArray[np.float64]:
    return np.asarray(
        [float(v) for v in values if not _bad(v) and math.isfinite(float(v))], np.float64
    )


def robust_spread(values: npt.NDArray[np.float64]) -> float:
    """``1.4826 * median(|x - median(x)|)``: a standard deviation that ignores outliers."""
    return float(MAD_SCALE * np.median(np.abs(values - np.median(values))))


def trimmed_std(values: npt.NDArray[np.float64]) -> float:
    """Standard deviation of ``values`` within 4 robust standard deviations
    (:func:`robust_spread`) of their median: isolated outliers (a one-frame flash, one
    glitched frame) are dropped, and unlike the robust spread itself the result does not
    depend on which phases of an oscillation happened to be sampled (a sinusoid of
    amplitude ``a`` gives ``a / sqrt(2)``)."""
    centre = float(np.median(values))
    bar = max(4.0 * robust_spread(values), 1e-12)
    return float(values[np.abs(values - centre) <= bar].std())


def gain_deviations(gains: Sequence[float | None]) -> tuple[list[float | None], float | None]:
    """``log2(gain / median gain)`` of each member of one group, and the group's spread.

    ``gains`` are the photometric gains of pairs that should share one (one rig, one
    exposure offset); ``None``/NaN/non-positive members get ``None``. With fewer than
    :data:`MIN_GAIN_GROUP` usable gains the group cannot judge anyone: all ``None``.

    Returns
    -------
    tuple
        Per member the deviation in EV (or ``None``), and the group's robust spread
        (:func:`robust_spread`, EV) or ``None``.
    """
    logs: list[float | None] = []
    for gain in gains:
        value = None if gain is None or _bad(gain) else float(gain)
        logs.append(math.log2(value) if value is not None and 0 < value < math.inf else None)
    known = np.asarray([v for v in logs if v is not None], np.float64)
    if known.size < MIN_GAIN_GROUP:
        return [None] * len(logs), None
    centre = float(np.median(known))
    return [None if v is None else v - centre for v in logs], robust_spread(known)


def gain_instability(gains: Sequence[float | None]) -> float | None:
    """Spread (EV, :func:`trimmed_std`) of ``log2`` of a clip's per-frame gains; ``None``
    below :data:`MIN_CLIP_FRAMES` usable frames (a one-frame light change is a
    ``gain_outlier``, not instability).

    A beam-splitter pair's gain is fixed by the rig (exposures, splitter), whatever the
    scene does; its drift or oscillation over a clip is a camera or sync fault.
    """
    values = _finite(gains)
    values = values[values > 0]
    if values.size < MIN_CLIP_FRAMES:
        return None
    return trimmed_std(np.log2(values))


def brightness_thumbnail(
    image: npt.NDArray[Any], levels: tuple[int, int], transfer: str = "srgb"
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """A frame's linear luminance at :data:`THUMBNAIL_SIDE` px and where it is unclipped:
    what :func:`brightness_change` compares between consecutive frames."""
    import cv2

    height, width = image.shape[:2]
    scale = min(1.0, THUMBNAIL_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    luma = luminance(to_linear(image, transfer))
    small = cv2.resize(luma, size, interpolation=cv2.INTER_AREA)
    ok = cv2.resize(usable(image, *levels).astype(np.uint8), size, interpolation=cv2.INTER_AREA)
    return np.asarray(small, np.float32), np.asarray(ok, np.uint8) > 0


def brightness_change(
    previous: tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]] | None,
    current: tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]],
) -> float | None:
    """``log`` of the median per-pixel brightness ratio from ``previous`` to ``current``
    (:func:`brightness_thumbnail`s of consecutive frames).

    The light of the scene scales every pixel by one factor; moving content changes only
    the pixels it covers, so the median follows the light and ignores the content. ``None``
    without a previous frame, for another frame size, or with under 50 shared pixels.
    """
    if previous is None or previous[0].shape != current[0].shape:
        return None
    (before, ok_before), (after, ok_after) = previous, current
    both = ok_before & ok_after & (before > 1e-4) & (after > 1e-4)
    if int(np.count_nonzero(both)) < 50:
        return None
    return float(np.median(np.log(after[both] / before[both])))


def target_flicker(changes: Sequence[float | None]) -> float | None:
    """Relative amplitude of the strongest fast oscillation of a clip's scene light.

    ``changes`` are the target's frame-to-frame brightness changes in frame order
    (:func:`brightness_change`: the log of the median per-pixel ratio, so moving content
    does not enter). A light ramp is a constant there (removed with the mean); a light
    switched or a flash is an isolated jump (jumps beyond :data:`FLICKER_JUMP` and 6 robust
    standard deviations are set to the median). The periodogram of what is left is searched
    for its strongest frequency between :data:`FLICKER_MIN_CYCLES` cycles per frame and
    Nyquist; the power of that peak above :data:`FLICKER_FLOOR` times the band's median (a
    broadband change is not an oscillation), as an amplitude divided by the difference's
    gain ``2 sin(pi f)``, is the amplitude ``a`` of a light ``m (1 + a sin(2 pi f k))``,
    whatever phases the frames sampled. A beat slower than ``FLICKER_MIN_CYCLES * fps`` Hz
    is not measured.

    ``None`` with fewer than :data:`MIN_FLICKER_FRAMES` finite changes.
    """
    change = _finite(changes)
    if change.size < MIN_FLICKER_FRAMES:
        return None
    centre = float(np.median(change))
    jump = max(6.0 * robust_spread(change), FLICKER_JUMP)
    change = np.where(np.abs(change - centre) > jump, centre, change)
    change = change - change.mean()
    window = np.hanning(change.size)
    spectrum = np.abs(np.fft.rfft(change * window, n=4 * change.size))
    cycles = np.fft.rfftfreq(4 * change.size)
    band = cycles >= FLICKER_MIN_CYCLES
    power = spectrum**2
    best = int(np.argmax(np.where(band, power, -1.0)))
    # Only what stands above the band's own floor is an oscillation: content that changes
    # at random (a bird moving, a short clip's noise) has a broad spectrum whose highest
    # bin is a few times its median, a beat a narrow peak far above it.
    floor = FLICKER_FLOOR * float(np.median(power[band]))
    excess = math.sqrt(max(float(power[best]) - floor, 0.0))
    amplitude = 2.0 * excess / float(window.sum())
    return amplitude / (2.0 * math.sin(math.pi * float(cycles[best])))


def flicker(means: Sequence[float]) -> float | None:
    """Population std / mean of ``means`` (``None`` for fewer than two finite values or a
    non-positive mean): the clip flicker of video *outputs* in ``expokit eval``, where
    input and target are the same scene and only the method's stability is compared."""
    values = _finite(means)
    if values.size < 2 or not values.mean() > 0:
        return None
    return float(values.std() / values.mean())


def _exposure_offset(row: Mapping[str, Any]) -> float | None:
    a, b = _number(row, "input_ev"), _number(row, "target_ev")
    if a is None or b is None:
        return None
    return round(b - a, 2)


def gain_group(row: Mapping[str, Any]) -> tuple[str, ...] | None:
    """Which pairs should share ``row``'s gain: same clip (or, for still sets, same source
    and source folder kind) and same exposure offset. ``None`` when no group applies:
    exposure ranks (``ev_basis == "rank"``) are not offsets, and a scene's ranks differ."""
    if str(row.get("ev_basis") or "ev") == "rank":
        return None
    offset = _exposure_offset(row)
    if offset is None:
        return None
    clip = row.get("clip_id")
    where = f"clip:{clip}" if not _bad(clip) and clip else f"source:{row.get('source')}"
    return (where, f"{offset:+.2f}")


def _frame_key(row: Mapping[str, Any]) -> int:
    value = row.get("frame_index")
    return -1 if _bad(value) else int(value)  # type: ignore[arg-type]


def group_figures(rows: Sequence[dict[str, Any]], qa: QaThresholds) -> None:
    """Fill ``gain_deviation_ev``, ``gain_instability_ev`` and ``target_flicker`` of
    ``rows`` (manifest rows as dicts, every scene of the dataset) in place.

    Pairs that are ``fit_unreliable`` (their ``usable_fraction`` below
    ``qa.min_usable_fraction``) neither get a deviation nor enter the group's median or a
    clip's gain spread. Clip figures are computed for rows with a ``frame_index`` of one
    ``clip_id`` (video pairs) and given to every pair of the clip.
    """
    judged = [not _unreliable(row, qa) for row in rows]
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, row in enumerate(rows):
        row["gain_deviation_ev"] = None
        key = gain_group(row)
        if key is not None and judged[index]:
            groups.setdefault(key, []).append(index)
    for members in groups.values():
        deviations, spread = gain_deviations([rows[i].get("photometric_gain") for i in members])
        for i, value in zip(members, deviations, strict=True):
            rows[i]["gain_deviation_ev"] = value
            rows[i]["_gain_spread_ev"] = spread
    clips: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        row["gain_instability_ev"] = None
        row["target_flicker"] = None
        clip = row.get("clip_id")
        if not _bad(clip) and clip and not _bad(row.get("frame_index")):
            clips.setdefault(str(clip), []).append(index)
    for members in clips.values():
        members.sort(key=lambda i: _frame_key(rows[i]))
        instability = gain_instability(
            [rows[i].get("photometric_gain") for i in members if judged[i]]
        )
        oscillation = target_flicker([rows[i].get("target_change") for i in members])
        for i in members:
            rows[i]["gain_instability_ev"] = instability
            rows[i]["target_flicker"] = oscillation


def _bad(value: Any) -> bool:
    """None, NaN or pandas' NA: no figure."""
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return type(value).__name__ == "NAType"  # pandas.NA, without importing pandas here


def _number(row: Mapping[str, Any], key: str) -> float | None:
    value = row.get(key)
    return None if _bad(value) else float(value)  # type: ignore[arg-type]


def _unreliable(row: Mapping[str, Any], qa: QaThresholds) -> bool:
    fraction = _number(row, "usable_fraction")
    return fraction is not None and fraction < qa.min_usable_fraction


def flags_for(
    row: Mapping[str, Any], qa: QaThresholds, valid_fraction: float | None = None
) -> list[str]:
    """QA flags of one manifest row, in :data:`QA_FLAGS` order.

    Missing figures (NaN/None) raise no flag except ``gain_unfit`` for a missing gain. A
    ``fit_unreliable`` row raises none of :data:`FIT_FLAGS`. ``valid_fraction`` is the valid
    rectangle's share of the reference frame. A non-empty private ``_exif_mismatch`` (set
    by the build from the capture journal) raises ``exif_mismatch``; a private
    ``_gain_spread_ev`` (set by :func:`group_figures`) raises the ``gain_outlier`` bar to
    :data:`GAIN_SPREAD_FACTOR` times the group's spread.
    """
    found: set[str] = set()

    def above(key: str, limit: float) -> bool:
        value = _number(row, key)
        return value is not None and value > limit

    def below(key: str, limit: float) -> bool:
        value = _number(row, key)
        return value is not None and value < limit

    if _unreliable(row, qa):
        found.add("fit_unreliable")
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
    deviation = _number(row, "gain_deviation_ev")
    if deviation is not None:
        spread = _number(row, "_gain_spread_ev") or 0.0
        if abs(deviation) > max(qa.max_gain_deviation_ev, GAIN_SPREAD_FACTOR * spread):
            found.add("gain_outlier")
    if above("gain_instability_ev", qa.max_gain_instability_ev):
        found.add("gain_unstable")
    if above("target_flicker", qa.max_target_flicker):
        found.add("target_flicker")
    ratio = _number(row, "focus_ratio")
    if (
        ratio is not None
        and qa.min_focus_ratio > 0
        and (ratio < qa.min_focus_ratio or ratio > 1.0 / qa.min_focus_ratio)
    ):
        found.add("defocus")
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
    if row.get("_exif_mismatch"):
        found.add("exif_mismatch")
    if "fit_unreliable" in found:
        found -= set(FIT_FLAGS)
    return [f for f in QA_FLAGS if f in found]
