"""Per-pair alignment and photometry: warp, ECC refinement, valid region, gain, residual.

Every function here is pure (arrays in, arrays out). Conventions:

* Images are OpenCV BGR, ``(H, W, 3)``, uint8 or uint16; ``transfer`` says how code values
  encode light (``"srgb"``, IEC 61966-2-1, or ``"linear"``).
* A *valid* mask is ``(H, W)`` bool, True where the input holds real pixels of the scene
  (inside the warped test frame).
* The photometric gain is ``target / input`` in **linear** light, fitted on pixels that are
  valid and unclipped in both images; it is stored, never applied to the stored input.
* The alignment residual is the median magnitude (px) of DIS optical flow
  (``cv2.DISOpticalFlow_create``, no learned weights) from the target to the
  exposure-normalised input, in grayscale, over valid, unclipped, textured pixels.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from expokit.calibration.homography import (
    ECC_MOTIONS,
    EccSettings,
    match_histogram,
    refine_ecc,
    to_gray_float,
)
from expokit.calibration.warp import largest_valid_rectangle, warp_maps, warp_test_to_reference
from expokit.core.transfer import LUMA_RGB, srgb_decode, srgb_encode

if TYPE_CHECKING:
    from expokit.calibration.homography import EccResult
    from expokit.calibration.rig_calibration import RigCalibration

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

#: Rec. 709 luminance weights in OpenCV's B, G, R order.
LUMA_BGR = LUMA_RGB[::-1].astype(np.float32)
#: Fewer usable pixels than this and no gain is fitted (NaN).
MIN_GAIN_PIXELS = 64
#: Linear values are indexed at this many bits when re-encoding (error < 1 code of 16-bit).
_ENCODE_INDEX_BITS = 20


class AlignmentError(ValueError):
    """A pair cannot be aligned (size mismatch, no overlap); the caller names the files."""


# --------------------------------------------------------------------------- photometry


@lru_cache(maxsize=8)
def _decode_lut(bits: int, transfer: str) -> F32:
    codes = np.arange(1 << bits, dtype=np.float64) / ((1 << bits) - 1)
    values = srgb_decode(codes) if transfer == "srgb" else codes
    return values.astype(np.float32)


@lru_cache(maxsize=8)
def _encode_lut(bits: int, transfer: str) -> npt.NDArray[Any]:
    linear = np.arange(1 << _ENCODE_INDEX_BITS, dtype=np.float64) / ((1 << _ENCODE_INDEX_BITS) - 1)
    encoded = srgb_encode(linear) if transfer == "srgb" else linear
    codes = np.rint(encoded * ((1 << bits) - 1))
    return codes.astype(np.uint8 if bits == 8 else np.uint16)


def bits_of(image: npt.NDArray[Any]) -> int:
    """8 or 16: bits per channel of a uint8/uint16 image."""
    if image.dtype == np.uint8:
        return 8
    if image.dtype == np.uint16:
        return 16
    raise TypeError(f"expected a uint8 or uint16 image, got {image.dtype}")


def to_linear(image: npt.NDArray[Any], transfer: str = "srgb") -> F32:
    """Linear light in ``[0, 1]``, float32, same shape (a lookup table per code value)."""
    return _decode_lut(bits_of(image), transfer)[image]


def from_linear(linear: npt.ArrayLike, bits: int, transfer: str = "srgb") -> npt.NDArray[Any]:
    """Encode linear light (clipped to ``[0, 1]``) as uint8/uint16 code values."""
    values = np.clip(np.asarray(linear, np.float32), 0.0, 1.0)
    index = np.rint(values * ((1 << _ENCODE_INDEX_BITS) - 1)).astype(np.int32)
    return _encode_lut(bits, transfer)[index]


def luminance(linear: npt.NDArray[np.float32]) -> F32:
    """Rec. 709 luminance ``(H, W)`` of linear BGR ``(H, W, 3)`` (2-D input is returned)."""
    if linear.ndim == 2:
        return linear
    return np.asarray(linear @ LUMA_BGR, np.float32)


def clip_masks(image: npt.NDArray[Any], dark: int, bright: int) -> tuple[Mask, Mask]:
    """``(dark, bright)`` clipped-pixel masks ``(H, W)``.

    A pixel is dark-clipped when every channel is ``<= dark`` (crushed to black) and
    bright-clipped when any channel is ``>= bright`` (a saturated channel breaks colour and
    exposure ratios even if the others are fine).
    """
    top = channel_max(image)
    return top <= dark, top >= bright


def channel_max(image: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Per-pixel maximum over channels, ``(H, W)`` (element-wise: numpy's ``max(axis=2)``
    over a 3-wide axis is ~20x slower)."""
    if image.ndim == 2:
        return image
    top = image[..., 0]
    for channel in range(1, image.shape[2]):
        top = np.maximum(top, image[..., channel])
    return top


def usable(image: npt.NDArray[Any], dark: int, bright: int) -> Mask:
    """Pixels clipped neither dark nor bright (see :func:`clip_masks`)."""
    low, high = clip_masks(image, dark, bright)
    return ~(low | high)


def fit_gain(
    input_image: npt.NDArray[Any],
    target: npt.NDArray[Any],
    valid: Mask,
    levels: tuple[int, int],
    transfer: str = "srgb",
) -> float:
    """Linear gain ``g`` with ``target ≈ g * input``, robustly.

    The median of the per-pixel luminance ratio ``Y_target / Y_input`` over pixels that are
    valid and unclipped in both images (``levels = (dark, bright)`` code values of the
    images' bit depth). A median ignores the pixels where the two differ for other reasons
    (moving objects, noise in deep shadows, local tone mapping).

    Returns
    -------
    float
        The gain (> 1 when the input is darker), or NaN with fewer than
        :data:`MIN_GAIN_PIXELS` usable pixels.
    """
    dark, bright = levels
    y_in = luminance(to_linear(input_image, transfer))
    y_t = luminance(to_linear(target, transfer))
    use = valid & usable(input_image, dark, bright) & usable(target, dark, bright)
    use &= (y_in > 0) & (y_t > 0)
    if int(np.count_nonzero(use)) < MIN_GAIN_PIXELS:
        return math.nan
    return float(np.median(y_t[use] / y_in[use]))


def normalise_exposure(
    input_image: npt.NDArray[Any], gain: float, transfer: str = "srgb"
) -> npt.NDArray[Any]:
    """The input with ``gain`` applied in linear light, re-encoded (same shape and dtype).

    A NaN gain returns the input unchanged.
    """
    if not math.isfinite(gain):
        return input_image.copy()
    return from_linear(
        to_linear(input_image, transfer) * np.float32(gain), bits_of(input_image), transfer
    )


def match_tones(
    input_image: npt.NDArray[Any],
    target: npt.NDArray[Any],
    region: Mask,
) -> npt.NDArray[Any]:
    """The input with one monotonic curve per channel that gives it the target's tones.

    Each channel's code values are mapped so that their distribution over ``region`` (the
    pixels valid and unclipped in both images) matches the target's (CDF matching, the
    curve interpolated between quantiles). A linear gain is the special case of linear
    data; a camera's tone curve (an ISP's exposure sequence) is not linear, and comparing
    after a gain alone judges that curve, not the pair's alignment or sharpness. The curve
    is global, so it cannot hide a misregistration. Returns ``input_image`` unchanged when
    ``region`` holds fewer than :data:`MIN_GAIN_PIXELS` pixels.

    Parameters
    ----------
    input_image, target
        ``(H, W, 3)`` (or ``(H, W)``) uint8 or uint16, same shape and dtype.
    region
        ``(H, W)`` bool.
    """
    if int(np.count_nonzero(region)) < MIN_GAIN_PIXELS:
        return input_image.copy()
    levels = 256 if input_image.dtype == np.uint8 else 65536
    quantiles = np.linspace(0.0, 1.0, 257)
    out = np.empty_like(input_image)
    channels = input_image.shape[2] if input_image.ndim == 3 else 1
    for c in range(channels):
        src = input_image[..., c] if input_image.ndim == 3 else input_image
        dst = target[..., c] if target.ndim == 3 else target
        src_q = np.quantile(src[region], quantiles)
        dst_q = np.quantile(dst[region], quantiles)
        # np.interp needs increasing x: keep the first quantile of each repeated value.
        src_q, first = np.unique(src_q, return_index=True)
        lut = np.interp(np.arange(levels), src_q, dst_q[first])
        mapped = np.round(lut).astype(input_image.dtype)[src]
        if input_image.ndim == 3:
            out[..., c] = mapped
        else:
            out = mapped
    return out


# --------------------------------------------------------------------------- residual


def gray_u8(image: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """8-bit grayscale of a BGR uint8/uint16 image (OpenCV's BGR -> gray weights)."""
    import cv2

    eight = image if image.dtype == np.uint8 else (image >> 8).astype(np.uint8)
    if eight.ndim == 3:
        eight = cv2.cvtColor(eight, cv2.COLOR_BGR2GRAY)
    return np.asarray(eight, np.uint8)


def flow_residual(
    input_normalised: npt.NDArray[Any],
    target: npt.NDArray[Any],
    valid: Mask,
    levels: tuple[int, int],
    max_side: int = 1024,
) -> float:
    """Median DIS optical-flow magnitude (px of the given images) between target and input.

    Parameters
    ----------
    input_normalised
        Input after :func:`normalise_exposure`, ``(H, W, 3)`` uint8/uint16.
    target
        Target, same shape and dtype.
    valid
        ``(H, W)`` bool valid mask.
    levels
        ``(dark, bright)`` clip levels for the images' bit depth; clipped pixels carry no
        motion information and are excluded.
    max_side
        Flow runs on images downscaled to this longer side; the result is scaled back.

    Returns
    -------
    float
        The median over valid, unclipped, textured pixels (flat areas report zero flow
        whatever the misalignment, so they would hide it); NaN when nothing is valid.
        Unusable input pixels are replaced by the target's before the flow is computed.
    """
    import cv2

    dark, bright = levels
    use = valid & usable(target, dark, bright) & usable(input_normalised, dark, bright)
    # Clipped or invalid input pixels do not match the target after normalisation (a
    # saturated sky becomes a flat grey); DIS would propagate that mismatch into nearby
    # usable pixels. They are excluded from the median anyway, so show DIS the target there.
    filled = np.where(
        use[..., None] if input_normalised.ndim == 3 else use, input_normalised, target
    )
    a: npt.NDArray[Any] = gray_u8(target)
    b: npt.NDArray[Any] = gray_u8(filled)
    scale = min(1.0, max_side / max(a.shape))
    if scale < 1.0:
        size = (max(1, round(a.shape[1] * scale)), max(1, round(a.shape[0] * scale)))
        a = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
        b = cv2.resize(b, size, interpolation=cv2.INTER_AREA)
        use = cv2.resize(use.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    if not use.any():
        return math.nan
    # DISOpticalFlow.create is cv2.DISOpticalFlow_create (typed in OpenCV's stubs).
    dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = np.asarray(dis.calc(a, b, np.zeros((*a.shape, 2), np.float32)))
    magnitude = np.hypot(flow[..., 0], flow[..., 1])
    # Flow is unreliable within a few pixels of invalid areas and of the image border.
    inner = cv2.erode(use.astype(np.uint8), np.ones((7, 7), np.uint8), borderValue=0) > 0
    smooth = cv2.GaussianBlur(a, (5, 5), 1.0).astype(np.float32)
    gradient = np.hypot(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
    region = inner if inner.sum() >= 64 else use
    textured = region & (gradient >= max(8.0, float(np.percentile(gradient[region], 50))))
    pick = textured if textured.sum() >= 64 else region
    return float(np.median(magnitude[pick])) / scale


# --------------------------------------------------------------------------- geometry


@dataclass
class Aligned:
    """An input resampled onto the target grid.

    Attributes
    ----------
    image
        ``(H, W, 3)`` input on the target's pixel grid (dtype of the input).
    valid
        ``(H, W)`` bool: True where the input holds scene pixels.
    homography
        ``(3, 3)`` test -> reference homography used (rig convention: flipped, undistorted
        test pixels to undistorted reference pixels; input -> target pixels otherwise), or
        ``None`` when the input was not resampled.
    ecc
        The ECC refinement, when it ran.
    resampled
        The input was geometrically resampled (its valid mask matters).
    """

    image: npt.NDArray[Any]
    valid: Mask
    homography: F64 | None
    ecc: EccResult | None = None
    resampled: bool = False


def ecc_refine(
    target: npt.NDArray[Any],
    moving: npt.NDArray[Any],
    valid: Mask,
    max_side: int = 1024,
    motions: tuple[str, ...] | None = None,
    max_shift: float = 0.05,
) -> EccResult:
    """ECC refinement of ``moving`` (already on the target grid) onto ``target``.

    Both are converted to grayscale and ``moving`` is histogram-matched to ``target`` over
    the valid pixels (ECC's correlation is invariant to gain, not to a tone curve; the
    matching also maps clipped areas consistently). Only the geometric valid region is
    masked: a mask with holes at clipped pixels makes ``findTransformECC`` stop converging
    (20-30x slower on SICE pairs, and less accurate). Returns
    :func:`expokit.calibration.homography.refine_ecc`'s result: its homography maps
    ``moving`` pixels to ``target`` pixels (identity when every motion was rejected).
    """
    reference = to_gray_float(target)
    test = match_histogram(to_gray_float(moving), reference, valid, valid)
    settings = EccSettings(
        motions=motions or ECC_MOTIONS, max_side=max(64, max_side), max_shift=max_shift
    )
    mask = None if valid.all() else (valid * 255).astype(np.uint8)
    # refine_ecc logs every rejected motion as a warning, right for a rig calibration; for
    # an already aligned pair rejection is the normal outcome, and a build has thousands.
    logger = logging.getLogger(refine_ecc.__module__)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return refine_ecc(reference, test, np.eye(3), mask, settings)
    finally:
        logger.setLevel(level)


def _warp_plain(image: npt.NDArray[Any], h: F64, size: tuple[int, int]) -> tuple[Any, Mask]:
    import cv2

    warped = cv2.warpPerspective(
        image, h, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    ones = np.full(image.shape[:2], 255, np.uint8)
    cover = cv2.warpPerspective(
        ones, h, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    return np.asarray(warped), np.asarray(cover) == 255


def align_pair(
    input_image: npt.NDArray[Any],
    target: npt.NDArray[Any],
    calibration: RigCalibration | None,
    *,
    ecc: bool = False,
    ecc_max_side: int = 1024,
    ecc_motions: tuple[str, ...] | None = None,
    ecc_max_shift: float = 0.05,
) -> Aligned:
    """Put ``input_image`` on ``target``'s pixel grid.

    With a rig ``calibration`` the raw test image is flipped and warped by
    :func:`~expokit.calibration.warp.warp_test_to_reference`. With ``ecc`` a residual
    homography is then estimated by ECC and composed with the rig mapping, so the raw input
    is still resampled only once (with intrinsics the remap tables are composed).

    Raises
    ------
    AlignmentError
        Sizes that do not match the calibration (or each other, without one).
    """
    size = (int(target.shape[1]), int(target.shape[0]))
    in_size = (int(input_image.shape[1]), int(input_image.shape[0]))
    if calibration is not None:
        if size != tuple(calibration.reference_size):
            raise AlignmentError(
                f"reference image is {size[0]}x{size[1]}, the rig calibration is for "
                f"{calibration.reference_size[0]}x{calibration.reference_size[1]}"
            )
        try:
            image, valid = warp_test_to_reference(input_image, calibration)
        except ValueError as exc:
            raise AlignmentError(str(exc)) from None
        aligned = Aligned(image, valid, np.asarray(calibration.homography, np.float64), None, True)
    else:
        if in_size != size:
            raise AlignmentError(
                f"input is {in_size[0]}x{in_size[1]}, target is {size[0]}x{size[1]}"
            )
        aligned = Aligned(input_image, np.ones(target.shape[:2], bool), None)
    if not ecc:
        return aligned
    result = ecc_refine(
        target, aligned.image, aligned.valid, ecc_max_side, ecc_motions, ecc_max_shift
    )
    aligned.ecc = result
    if result.motion == "identity":
        return aligned
    residual = np.asarray(result.homography, np.float64)
    if calibration is None:
        image, valid = _warp_plain(input_image, residual, size)
        return Aligned(image, valid, residual, result, True)
    composed = residual @ np.asarray(calibration.homography, np.float64)
    composed = composed / composed[2, 2]

    if calibration.reference_intrinsics is None and calibration.test_intrinsics is None:
        image, valid = warp_test_to_reference(
            input_image, dataclasses.replace(calibration, homography=composed)
        )
    else:
        import cv2

        # Reference pixel p reads the rig map at residual^-1 p: warpPerspective of the maps.
        map_x, map_y = warp_maps(calibration)
        maps = tuple(
            np.asarray(
                cv2.warpPerspective(
                    m,
                    residual,
                    size,
                    flags=cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT,
                    borderValue=-1e6,
                ),
                np.float32,
            )
            for m in (map_x, map_y)
        )
        image, valid = warp_test_to_reference(input_image, calibration, maps=(maps[0], maps[1]))
    return Aligned(image, valid, composed, result, True)


def downscale(
    images: list[npt.NDArray[Any]], valid: Mask, max_side: int | None
) -> tuple[list[npt.NDArray[Any]], Mask, float]:
    """Resize images (INTER_AREA) so the longer side is at most ``max_side``.

    A resized pixel is valid only when every source pixel it averages was valid.
    Returns ``(images, valid, scale)``.
    """
    import cv2

    height, width = valid.shape
    if max_side is None or max(height, width) <= max_side:
        return images, valid, 1.0
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    out = [np.asarray(cv2.resize(im, size, interpolation=cv2.INTER_AREA)) for im in images]
    cover = cv2.resize(valid.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    return out, np.asarray(cover >= 1.0 - 1e-6), scale


def valid_rectangle(valid: Mask) -> tuple[int, int, int, int]:
    """Largest axis-aligned valid rectangle ``(x, y, w, h)`` (the whole frame when all valid).

    Raises
    ------
    AlignmentError
        When no pixel is valid (the warped input misses the target frame).
    """
    if valid.all():
        return 0, 0, int(valid.shape[1]), int(valid.shape[0])

    x, y, w, h = largest_valid_rectangle(valid)
    if w == 0 or h == 0:
        raise AlignmentError("the aligned input does not overlap the target frame")
    return int(x), int(y), int(w), int(h)
