"""sRGB transfer function and exposure lookup tables.

All functions are pure numpy. Linear values are relative scene-referred intensities where
``1.0`` is the display white (sensor saturation at EV 0); encoded values are in ``[0, 1]``.

References
----------
IEC 61966-2-1:1999, Multimedia systems and equipment - Colour measurement and management -
Part 2-1: Default RGB colour space - sRGB.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
import numpy.typing as npt

Transfer = Literal["srgb", "linear"]

#: Number of codes of a 16-bit linear input (LibRaw's ``output_bps=16``).
INPUT_CODES = 65536

#: Rec. ITU-R BT.709 luma weights of linear (R, G, B): ``LUMA_RGB @ rgb`` is the relative
#: luminance; reverse it (``LUMA_RGB[::-1]``) for OpenCV's BGR order. Read-only.
LUMA_RGB: npt.NDArray[np.float64] = np.array([0.2126, 0.7152, 0.0722])
LUMA_RGB.setflags(write=False)

# IEC 61966-2-1 constants.
SRGB_LINEAR_BREAK = 0.0031308
SRGB_ENCODED_BREAK = 0.04045
SRGB_SLOPE = 12.92
SRGB_A = 0.055
SRGB_GAMMA = 2.4


def srgb_encode(linear: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Apply the sRGB opto-electronic transfer function (linear -> encoded).

    Parameters
    ----------
    linear
        Any shape, float; values are clipped to ``[0, 1]`` first. NaN stays NaN.

    Returns
    -------
    numpy.ndarray
        Same shape, float64 in ``[0, 1]``.
    """
    x = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    low = x * SRGB_SLOPE
    with np.errstate(invalid="ignore"):
        high = (1.0 + SRGB_A) * np.power(x, 1.0 / SRGB_GAMMA) - SRGB_A
    return np.where(x <= SRGB_LINEAR_BREAK, low, high)


def srgb_decode(encoded: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Inverse of :func:`srgb_encode` (encoded ``[0, 1]`` -> linear ``[0, 1]``). NaN stays NaN."""
    v = np.clip(np.asarray(encoded, dtype=np.float64), 0.0, 1.0)
    low = v / SRGB_SLOPE
    with np.errstate(invalid="ignore"):
        high = np.power((v + SRGB_A) / (1.0 + SRGB_A), SRGB_GAMMA)
    return np.where(v <= SRGB_ENCODED_BREAK, low, high)


def exposure_lut(gain: float, bits: Literal[8, 16], transfer: Transfer) -> npt.NDArray[np.integer]:
    """Lookup table from 16-bit linear codes to output codes at exposure ``gain``.

    Entry ``v`` is ``round((2**bits - 1) * T(clip(v / 65535 * gain, 0, 1)))`` where ``T`` is
    the sRGB transfer function or the identity. An EV offset ``e`` is ``gain = 2**e``, an exact
    scale of the linear value of every pixel; clipping happens after the scale.

    Returns
    -------
    numpy.ndarray
        Shape ``(65536,)``, dtype uint8 (``bits=8``) or uint16 (``bits=16``).
    """
    if not np.isfinite(gain) or gain <= 0:
        raise ValueError(f"exposure gain must be a positive finite number, got {gain}")
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    linear = np.arange(INPUT_CODES, dtype=np.float64) * (gain / (INPUT_CODES - 1))
    linear = np.minimum(linear, 1.0)
    encoded = srgb_encode(linear) if transfer == "srgb" else linear
    top = (1 << bits) - 1
    codes = np.rint(encoded * top)
    return codes.astype(np.uint8 if bits == 8 else np.uint16)


def apply_luts(
    image: npt.NDArray[np.uint16],
    luts: Sequence[npt.NDArray[np.integer]],
    *,
    reverse_channels: bool = False,
    band_rows: int = 64,
    threads: int = 1,
) -> list[npt.NDArray[np.integer]]:
    """Map ``image`` through several lookup tables at once, band by band.

    Equivalent to ``[apply_lut(image[..., ::-1] if reverse_channels else image, lut) for lut
    in luts]`` (byte-identical), but each band of ``band_rows`` rows is converted to index
    type once and stays in cache while every table is applied; ``np.take`` otherwise converts
    the whole uint16 image to 64-bit indices on every call. Bands run on ``threads`` threads
    (``np.take`` releases the GIL).

    Parameters
    ----------
    image
        ``(H, W, C)`` uint16.
    luts
        1-d tables indexed by 16-bit codes (see :func:`exposure_lut`).
    reverse_channels
        Reverse the channel order on the way (RGB -> OpenCV's BGR) without a copy.

    Returns
    -------
    list of numpy.ndarray
        One ``(H, W, C)`` array per table, with the table's dtype.
    """
    if image.dtype != np.uint16 or image.ndim != 3:
        raise TypeError(
            f"apply_luts needs an (H, W, C) uint16 image, got {image.dtype} {image.shape}"
        )
    source = image[..., ::-1] if reverse_channels else image
    outputs = [np.empty(image.shape, dtype=lut.dtype) for lut in luts]

    def run_band(start: int) -> None:
        rows = slice(start, min(start + band_rows, image.shape[0]))
        index = source[rows].astype(np.intp)
        for lut, out in zip(luts, outputs, strict=True):
            np.take(lut, index, out=out[rows], mode="clip")

    starts = range(0, image.shape[0], band_rows)
    if threads <= 1:
        for start in starts:
            run_band(start)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(run_band, starts))
    return outputs


def apply_lut(
    image: npt.NDArray[np.uint16], lut: npt.NDArray[np.integer]
) -> npt.NDArray[np.integer]:
    """Map every 16-bit code of ``image`` (any shape, uint16) through ``lut``; same shape."""
    if image.dtype != np.uint16:
        raise TypeError(f"apply_lut needs a uint16 image, got {image.dtype}")
    return np.take(lut, image)
