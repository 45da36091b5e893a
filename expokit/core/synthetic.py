"""Synthetic RAW (DNG) files with known scene radiance.

The files written here are plain, uncompressed DNGs produced with :mod:`tifffile` that LibRaw
(and therefore :mod:`rawpy`) decodes without any special handling. They serve two purposes:

* ground truth for tests of the multi-EV renderer (the scene radiance of every pixel is known,
  so a decoded render can be compared against it exactly), and
* the small demo data set shipped with the repository (:func:`write_demo_set`).

Forward model
-------------
``radiance`` is linear, white-balanced scene radiance expressed in linear sRGB / Rec.709
primaries (a neutral grey has ``R == G == B``). The simulated sensor has linear sRGB primaries
too, but an unequal channel sensitivity given by its *native neutral* ``n`` (the camera's
response to a neutral grey under D65, normalised so that ``max(n) == 1``). For every pixel and
channel ``c``::

    signal_c = exposure_gain * radiance_c * n_c / max(n)               (0 .. 1 = saturation)
    raw_c    = clip(rint(black_level + signal_c * (white_level - black_level)
                         + N(0, noise_sigma)), 0, white_level)

so ``radiance == 1 / exposure_gain`` saturates the most sensitive channel, and white-balance
multipliers ``1 / n`` map a neutral grey back to ``R == G == B``. In Bayer mode only the channel
named by the CFA pattern is kept at each photosite; in LinearRaw mode all three are stored.

The metadata is consistent with this model: ``ColorMatrix1`` (XYZ -> camera, D65) is
``diag(n / max(n)) @ inv(M)`` where ``M`` is the linear-sRGB -> XYZ (D65) matrix, and
``AsShotNeutral`` is ``n``. LibRaw therefore derives an identity camera -> sRGB matrix and
``daylight_whitebalance == 1 / n``; decoding with ``user_wb = 1 / n`` (camera or daylight WB),
``output_color=sRGB``, ``gamma=(1, 1)``, ``no_auto_bright=True`` and 16-bit output gives
``rgb / 65535 == exposure_gain * radiance`` (up to quantisation, demosaicing at edges and
clipping at 1).
"""

from __future__ import annotations

import io
import itertools
import os
import struct
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "CFA_PATTERNS",
    "DEFAULT_NEUTRAL",
    "DEMO_SCENES",
    "chart_patches",
    "demo_scene",
    "feature_texture",
    "write_demo_set",
    "write_dng",
]

#: Default native neutral of the simulated sensor (camera R, G, B response to grey under D65).
DEFAULT_NEUTRAL: tuple[float, float, float] = (0.5, 1.0, 0.6)

#: Supported 2x2 Bayer layouts, as colour indices (0 = R, 1 = G, 2 = B) in row-major order.
CFA_PATTERNS: dict[str, tuple[int, int, int, int]] = {
    "RGGB": (0, 1, 1, 2),
    "BGGR": (2, 1, 1, 0),
    "GRBG": (1, 0, 2, 1),
    "GBRG": (1, 2, 0, 1),
}

#: Names accepted by :func:`demo_scene`.
DEMO_SCENES: tuple[str, ...] = ("chart", "window", "gradient", "texture")

# Linear sRGB -> CIE XYZ (D65). The same constants LibRaw uses (``LibRaw_constants::xyz_rgb``),
# so the camera -> sRGB matrix LibRaw derives from ColorMatrix1 is the identity to ~1e-7.
_SRGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ],
    dtype=np.float64,
)

# TIFF / DNG / EXIF tag codes.
_TAG_NEW_SUBFILE_TYPE = 254
_TAG_MAKE = 271
_TAG_MODEL = 272
_TAG_ORIENTATION = 274
_TAG_CFA_REPEAT_PATTERN_DIM = 33421
_TAG_CFA_PATTERN = 33422
_TAG_EXPOSURE_TIME = 33434
_TAG_F_NUMBER = 33437
_TAG_EXIF_IFD = 34665
# tifffile refuses to write tag 34665 itself, so IFD0 gets this unused code as a placeholder,
# which _attach_exif_ifd renames to 34665 (the sort order of IFD0 is unchanged).
_TAG_EXIF_IFD_PLACEHOLDER = 34664
_TAG_ISO_SPEED = 34855
_TAG_EXIF_VERSION = 36864
_TAG_DATETIME_ORIGINAL = 36867
_TAG_DNG_VERSION = 50706
_TAG_DNG_BACKWARD_VERSION = 50707
_TAG_UNIQUE_CAMERA_MODEL = 50708
_TAG_CFA_PLANE_COLOR = 50710
_TAG_CFA_LAYOUT = 50711
_TAG_BLACK_LEVEL_REPEAT_DIM = 50713
_TAG_BLACK_LEVEL = 50714
_TAG_WHITE_LEVEL = 50717
_TAG_COLOR_MATRIX_1 = 50721
_TAG_AS_SHOT_NEUTRAL = 50728
_TAG_CALIBRATION_ILLUMINANT_1 = 50778

_PHOTOMETRIC_CFA = 32803
_PHOTOMETRIC_LINEAR_RAW = 34892
_ILLUMINANT_D65 = 21

# Denominators used for the RATIONAL / SRATIONAL tags.
_MATRIX_DENOMINATOR = 1_000_000
_NEUTRAL_DENOMINATOR = 1_000_000

_TagTuple = tuple[int, int | str, int, Any, bool]
_F64 = npt.NDArray[np.float64]


# --------------------------------------------------------------------------------------------
# DNG writer
# --------------------------------------------------------------------------------------------


def _rational(value: float, max_denominator: int) -> tuple[int, int]:
    """Return ``(numerator, denominator)`` approximating ``value``."""
    frac = Fraction(value).limit_denominator(max_denominator)
    return frac.numerator, frac.denominator


def _normalised_neutral(neutral: tuple[float, float, float], name: str) -> _F64:
    """Validate a neutral triple and scale it so that its maximum is 1."""
    arr = np.asarray(neutral, dtype=np.float64)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        msg = f"{name} must be three positive finite numbers, got {neutral!r}"
        raise ValueError(msg)
    out: _F64 = arr / arr.max()
    return out


def _color_matrix(neutral: _F64) -> _F64:
    """XYZ -> camera matrix for a camera with sRGB primaries and native neutral ``neutral``.

    Parameters
    ----------
    neutral : np.ndarray
        Shape (3,), float64, max 1.

    Returns
    -------
    np.ndarray
        Shape (3, 3), float64: ``diag(neutral) @ inv(sRGB -> XYZ)``. It maps the D65 white
        (XYZ with Y = 1) to ``neutral``.
    """
    matrix: _F64 = np.diag(neutral) @ np.linalg.inv(_SRGB_TO_XYZ)
    return matrix


def _exif_ifd(
    offset: int,
    exposure_time: float,
    f_number: float,
    iso: int,
    datetime: str,
) -> bytes:
    """Serialise a little-endian EXIF IFD that will start at file offset ``offset``."""
    entries: list[tuple[int, int, int, bytes]] = []  # (code, type, count, payload)
    num, den = _rational(exposure_time, 1_000_000)
    entries.append((_TAG_EXPOSURE_TIME, 5, 1, struct.pack("<II", num, den)))
    num, den = _rational(f_number, 1000)
    entries.append((_TAG_F_NUMBER, 5, 1, struct.pack("<II", num, den)))
    entries.append((_TAG_ISO_SPEED, 3, 1, struct.pack("<H", iso)))
    entries.append((_TAG_EXIF_VERSION, 7, 4, b"0231"))
    date = datetime.encode("ascii") + b"\x00"
    entries.append((_TAG_DATETIME_ORIGINAL, 2, len(date), date))
    entries.sort()

    header_size = 2 + 12 * len(entries) + 4
    ifd = bytearray(struct.pack("<H", len(entries)))
    extra = bytearray()
    for code, dtype, count, payload in entries:
        if len(payload) <= 4:
            ifd += struct.pack("<HHI", code, dtype, count) + payload.ljust(4, b"\x00")
        else:
            value_offset = offset + header_size + len(extra)
            ifd += struct.pack("<HHII", code, dtype, count, value_offset)
            extra += payload
            if len(extra) % 2:
                extra += b"\x00"
    ifd += struct.pack("<I", 0)  # no next IFD
    return bytes(ifd + extra)


def _attach_exif_ifd(tiff: bytes, exif_args: dict[str, Any]) -> bytes:
    """Append an EXIF IFD to a little-endian classic TIFF and link it from IFD0.

    The placeholder tag of IFD0 becomes ExifIFD (34665) pointing at the appended IFD.
    """
    if tiff[:4] != b"II*\x00":
        msg = "expected a little-endian classic TIFF from tifffile"
        raise RuntimeError(msg)
    data = bytearray(tiff)
    if len(data) % 2:
        data += b"\x00"
    exif_offset = len(data)
    (ifd0,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd0)
    for i in range(count):
        entry = ifd0 + 2 + 12 * i
        code, dtype, n = struct.unpack_from("<HHI", data, entry)
        if code == _TAG_EXIF_IFD_PLACEHOLDER:
            if dtype != 4 or n != 1:
                msg = "unexpected ExifIFD placeholder tag layout"
                raise RuntimeError(msg)
            struct.pack_into("<HHII", data, entry, _TAG_EXIF_IFD, 4, 1, exif_offset)
            break
    else:
        msg = "ExifIFD placeholder tag not found in IFD0"
        raise RuntimeError(msg)
    data += _exif_ifd(exif_offset, **exif_args)
    return bytes(data)


def write_dng(
    path: str | os.PathLike[str],
    radiance: npt.ArrayLike,
    *,
    cfa: str = "RGGB",
    black_level: int = 256,
    white_level: int = 4095,
    exposure_gain: float = 1.0,
    as_shot_neutral: tuple[float, float, float] | None = DEFAULT_NEUTRAL,
    sensor_neutral: tuple[float, float, float] | None = None,
    make: str = "expokit",
    model: str = "Synthetic Bayer",
    exposure_time: float = 1 / 125,
    iso: int = 100,
    f_number: float = 8.0,
    datetime: str = "2026:01:01 12:00:00",
    linear_raw: bool = False,
    white_level_tag: int | None = None,
    noise_sigma: float = 0.0,
    seed: int = 0,
) -> None:
    """Write a synthetic, uncompressed 16-bit DNG of a scene with known radiance.

    The forward model is (per pixel, per camera channel ``c``; ``n`` is the sensor's native
    neutral scaled to ``max(n) == 1``)::

        signal_c = exposure_gain * radiance_c * n_c
        raw_c = clip(rint(black_level + signal_c * (white_level - black_level)
                          + N(0, noise_sigma)), 0, white_level)

    i.e. ``radiance == 1 / exposure_gain`` saturates the most sensitive channel, and a neutral
    grey produces camera values proportional to ``n``, so white-balance multipliers ``1 / n``
    recover ``R == G == B``. The ColorMatrix1 tag makes LibRaw's camera -> sRGB matrix the
    identity, so a linear sRGB render with WB ``1 / n`` reproduces
    ``exposure_gain * radiance`` (as a fraction of the output white).

    Parameters
    ----------
    path : str or os.PathLike
        Output file (conventionally ``*.dng``). Overwritten if it exists.
    radiance : array_like
        Shape (H, W, 3), float, linear white-balanced scene radiance in linear sRGB / Rec.709
        primaries; must be finite. Negative values are clipped to 0; values above
        ``1 / exposure_gain`` clip (on the most sensitive channel first).
    cfa : {"RGGB", "BGGR", "GRBG", "GBRG"}
        Bayer layout of the top-left 2x2 block. Ignored when ``linear_raw`` is true.
    black_level : int
        Black level in raw units, 0 <= black_level < white_level. Written as BlackLevel.
    white_level : int
        Saturation level in raw units, <= 65535. Data are clipped to it.
    exposure_gain : float
        Positive multiplier applied to ``radiance`` before sensing (exposure).
    as_shot_neutral : tuple of 3 float, or None
        Camera neutral for the shot (AsShotNeutral tag). ``None`` omits the tag, producing a
        file without camera white balance.
    sensor_neutral : tuple of 3 float, or None
        The sensor's native response to grey under D65 (used by the forward model and encoded
        in ColorMatrix1). Defaults to ``as_shot_neutral``, or :data:`DEFAULT_NEUTRAL` when that
        is ``None``. Pass a value different from ``as_shot_neutral`` to simulate a wrong
        as-shot white balance.
    make, model : str
        Make / Model tags (7-bit ASCII). UniqueCameraModel is ``f"{make} {model}"``.
    exposure_time : float
        EXIF ExposureTime in seconds (> 0), stored as a rational.
    iso : int
        EXIF ISOSpeedRatings, 1 .. 65535.
    f_number : float
        EXIF FNumber (> 0), stored as a rational.
    datetime : str
        ``"YYYY:MM:DD HH:MM:SS"``; written as EXIF DateTimeOriginal and TIFF DateTime. No
        other time stamp is stored, so identical arguments give byte-identical files.
    linear_raw : bool
        If true, write a demosaiced 3-sample LinearRaw DNG (PhotometricInterpretation 34892)
        instead of a Bayer CFA image; LibRaw reports ``raw_type == RawType.Stack`` for it.
    white_level_tag : int or None
        Value stored in the WhiteLevel tag; defaults to ``white_level``. A smaller value
        simulates files whose stated white level is below their data.
    noise_sigma : float
        Standard deviation of additive Gaussian read noise in raw units (>= 0).
    seed : int
        Seed of the noise generator (the output is deterministic for a given seed).

    Raises
    ------
    ValueError
        On invalid shapes, levels, CFA names, neutrals or metadata values.

    Notes
    -----
    Observed with rawpy 0.28 / LibRaw 0.22 (renderer settings: linear sRGB, user WB, Clip):

    * Without AsShotNeutral, ``camera_whitebalance`` is ``[0, 1, 0, 0]``;
      ``daylight_whitebalance`` is ``1 / n`` (from ColorMatrix1), which renders grey neutral.
    * BlackLevel / WhiteLevel hold a single value in LinearRaw mode too (see the code comment);
      LinearRaw files decode as ``RawType.Stack`` with ``raw_image`` of shape (H, W, 4).
    * A saturated green channel comes out as 65534 (not 65535) after LibRaw's float scaling.
    * LibRaw clips values below black to 0, so with ``noise_sigma > 0`` the mean of very dark
      regions is biased upwards (by about ``noise_sigma / sqrt(2 pi)`` raw units at zero signal).
    """
    rad = np.asarray(radiance, dtype=np.float64)
    tag_white = white_level if white_level_tag is None else int(white_level_tag)
    _check_dng_arguments(
        rad, cfa, linear_raw, black_level, white_level, tag_white, exposure_gain, noise_sigma,
        exposure_time, f_number, iso, datetime,
    )  # fmt: skip
    asn, native = _neutrals(as_shot_neutral, sensor_neutral)
    data = _sense(rad, native, cfa, linear_raw, black_level, white_level, exposure_gain,
                  noise_sigma, seed)  # fmt: skip
    tags = _dng_tags(make, model, black_level, tag_white, native, asn, cfa, linear_raw)
    tiff = _tiff_bytes(data, tags, linear_raw, datetime)
    exif_args = {
        "exposure_time": float(exposure_time),
        "f_number": float(f_number),
        "iso": int(iso),
        "datetime": datetime,
    }
    Path(path).write_bytes(_attach_exif_ifd(tiff, exif_args))


def _check_dng_arguments(
    rad: _F64,
    cfa: str,
    linear_raw: bool,
    black_level: int,
    white_level: int,
    tag_white: int,
    exposure_gain: float,
    noise_sigma: float,
    exposure_time: float,
    f_number: float,
    iso: int,
    datetime: str,
) -> None:
    """:func:`write_dng`'s argument checks (``ValueError`` naming the argument)."""
    if rad.ndim != 3 or rad.shape[2] != 3 or rad.shape[0] < 2 or rad.shape[1] < 2:
        raise ValueError(f"radiance must have shape (H, W, 3) with H, W >= 2, got {rad.shape}")
    if not np.all(np.isfinite(rad)):
        raise ValueError("radiance must be finite")
    if not linear_raw and cfa not in CFA_PATTERNS:
        raise ValueError(f"cfa must be one of {sorted(CFA_PATTERNS)}, got {cfa!r}")
    if not 0 <= black_level < white_level <= 65535:
        raise ValueError(
            f"need 0 <= black_level < white_level <= 65535, got {black_level}, {white_level}"
        )
    if not black_level < tag_white <= 65535:
        raise ValueError(f"white_level_tag must be in (black_level, 65535], got {tag_white}")
    if not (np.isfinite(exposure_gain) and exposure_gain > 0):
        raise ValueError(f"exposure_gain must be positive, got {exposure_gain}")
    if not (np.isfinite(noise_sigma) and noise_sigma >= 0):
        raise ValueError(f"noise_sigma must be >= 0, got {noise_sigma}")
    if not (exposure_time > 0 and f_number > 0 and 1 <= iso <= 65535):
        raise ValueError("exposure_time and f_number must be > 0 and iso in 1..65535")
    if len(datetime) != 19 or datetime[4] != ":" or datetime[13] != ":":
        raise ValueError(f"datetime must look like 'YYYY:MM:DD HH:MM:SS', got {datetime!r}")


def _neutrals(
    as_shot_neutral: tuple[float, float, float] | None,
    sensor_neutral: tuple[float, float, float] | None,
) -> tuple[_F64 | None, _F64]:
    """The as-shot neutral (or ``None``) and the sensor's native neutral, both scaled to a
    maximum of 1; the native one defaults to the as-shot one, then to DEFAULT_NEUTRAL."""
    asn = (
        None if as_shot_neutral is None else _normalised_neutral(as_shot_neutral, "as_shot_neutral")
    )
    if sensor_neutral is not None:
        return asn, _normalised_neutral(sensor_neutral, "sensor_neutral")
    if asn is not None:
        return asn, asn
    return asn, _normalised_neutral(DEFAULT_NEUTRAL, "DEFAULT_NEUTRAL")


def _sense(
    rad: _F64,
    native: _F64,
    cfa: str,
    linear_raw: bool,
    black_level: int,
    white_level: int,
    exposure_gain: float,
    noise_sigma: float,
    seed: int,
) -> npt.NDArray[np.uint16]:
    """The forward model of :func:`write_dng`: camera-channel signal relative to saturation,
    the Bayer mosaic (unless LinearRaw), then raw units with read noise, clipped."""
    height, width = rad.shape[:2]
    signal = np.maximum(rad, 0.0) * (exposure_gain * native)
    if linear_raw:
        sensed = signal
    else:
        pattern = np.array(CFA_PATTERNS[cfa], dtype=np.intp).reshape(2, 2)
        colour = np.tile(pattern, ((height + 1) // 2, (width + 1) // 2))[:height, :width]
        sensed = np.take_along_axis(signal, colour[:, :, None], axis=2)[:, :, 0]
    raw = black_level + sensed * float(white_level - black_level)
    if noise_sigma > 0:
        raw = raw + np.random.default_rng(seed).normal(0.0, noise_sigma, size=raw.shape)
    return np.clip(np.rint(raw), 0, white_level).astype(np.uint16)


def _dng_tags(
    make: str,
    model: str,
    black_level: int,
    tag_white: int,
    native: _F64,
    asn: _F64 | None,
    cfa: str,
    linear_raw: bool,
) -> list[_TagTuple]:
    """The DNG tags of the image IFD, sorted by tag number."""
    cm_rational: list[int] = []
    for value in _color_matrix(native).ravel():
        cm_rational += [round(float(value) * _MATRIX_DENOMINATOR), _MATRIX_DENOMINATOR]
    tags: list[_TagTuple] = [
        (_TAG_NEW_SUBFILE_TYPE, "I", 1, 0, True),
        (_TAG_MAKE, "s", 0, make, True),
        (_TAG_MODEL, "s", 0, model, True),
        (_TAG_ORIENTATION, "H", 1, 1, True),
        (_TAG_EXIF_IFD_PLACEHOLDER, "I", 1, 0, True),  # see _attach_exif_ifd
        (_TAG_DNG_VERSION, "B", 4, (1, 4, 0, 0), True),
        (_TAG_DNG_BACKWARD_VERSION, "B", 4, (1, 1, 0, 0), True),
        (_TAG_UNIQUE_CAMERA_MODEL, "s", 0, f"{make} {model}", True),
        (_TAG_BLACK_LEVEL_REPEAT_DIM, "H", 2, (1, 1), True),
        # BlackLevel / WhiteLevel hold ONE value even in LinearRaw mode. The DNG spec asks for
        # SamplesPerPixel values there, but LibRaw (0.22) then keeps the black level per channel
        # only and scales by 65535 / white_level instead of 65535 / (white_level - black_level)
        # (output too dark by (W - B) / W); with a single value it decodes exactly.
        (_TAG_BLACK_LEVEL, "I", 1, black_level, True),
        (_TAG_WHITE_LEVEL, "I", 1, tag_white, True),
        (_TAG_COLOR_MATRIX_1, 10, 9, tuple(cm_rational), True),
        (_TAG_CALIBRATION_ILLUMINANT_1, "H", 1, _ILLUMINANT_D65, True),
    ]
    if not linear_raw:
        tags += [
            (_TAG_CFA_REPEAT_PATTERN_DIM, "H", 2, (2, 2), True),
            (_TAG_CFA_PATTERN, "B", 4, CFA_PATTERNS[cfa], True),
            (_TAG_CFA_PLANE_COLOR, "B", 3, (0, 1, 2), True),
            (_TAG_CFA_LAYOUT, "H", 1, 1, True),
        ]
    if asn is not None:
        asn_rational: list[int] = []
        for value in asn:
            asn_rational += list(_rational(float(value), _NEUTRAL_DENOMINATOR))
        tags.append((_TAG_AS_SHOT_NEUTRAL, 5, 3, tuple(asn_rational), True))
    return sorted(tags, key=lambda tag: tag[0])


def _tiff_bytes(
    data: npt.NDArray[np.uint16], tags: list[_TagTuple], linear_raw: bool, datetime: str
) -> bytes:
    """The uncompressed little-endian TIFF of ``data`` with ``tags`` (no EXIF IFD yet)."""
    import tifffile

    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer, byteorder="<", bigtiff=False) as tif:
        tif.write(
            data,
            photometric=_PHOTOMETRIC_LINEAR_RAW if linear_raw else _PHOTOMETRIC_CFA,
            planarconfig="contig" if linear_raw else None,
            rowsperstrip=data.shape[0],
            compression=None,
            metadata=None,
            software=False,
            datetime=datetime,
            extratags=tags,
        )
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Procedural scenes
# --------------------------------------------------------------------------------------------

# Approximate sRGB (8-bit, D65) values of the 24 ColorChecker Classic patches, row-major from
# "dark skin" to "black". The neutral row is made exactly grey, and the three channels below 48
# (orange B 44, yellow B 31, cyan R 8) are raised to 48, so that every channel of every patch
# is >= 0.023 (>= ~45 raw units at 12 bit with the default neutral) and the rounding of the raw
# data stays below ~1.1 % at EV 0.
_COLORCHECKER_SRGB8: tuple[tuple[int, int, int], ...] = (
    (115, 82, 68), (194, 150, 130), (98, 122, 157), (87, 108, 67), (133, 128, 177),
    (103, 189, 170), (214, 126, 48), (80, 91, 166), (193, 90, 99), (94, 60, 108),
    (157, 188, 64), (224, 163, 46), (56, 61, 150), (70, 148, 73), (175, 54, 60),
    (231, 199, 48), (187, 86, 149), (48, 133, 161), (243, 243, 243), (200, 200, 200),
    (160, 160, 160), (122, 122, 122), (85, 85, 85), (52, 52, 52),
)  # fmt: skip

# Illumination of the chart: white patch ~0.72, "neutral 5" ~0.16 of saturation at EV 0.
_CHART_EXPOSURE = 0.8
_CHART_BACKGROUND = 0.18
_CHART_CARD = 0.012


def _srgb_to_linear(value: float) -> float:
    """Inverse sRGB transfer function for a value in [0, 1]."""
    if value <= 0.04045:
        return value / 12.92
    return float(((value + 0.055) / 1.055) ** 2.4)


def chart_patches(
    height: int = 424, width: int = 640
) -> list[tuple[int, int, int, int, tuple[float, float, float]]]:
    """Patch rectangles and radiance of the ``"chart"`` scene.

    Parameters
    ----------
    height, width : int
        Image size in pixels (the same values passed to ``demo_scene("chart", ...)``).

    Returns
    -------
    list of (y0, y1, x0, x1, rgb)
        24 entries in ColorChecker order (row-major, "dark skin" first, "black" last). The
        patch covers rows ``y0:y1`` and columns ``x0:x1`` (end exclusive) and is filled with
        the constant radiance ``rgb`` (linear sRGB, float32-exact values, all in (0, 1)).
        Patches are square; at the default 424 x 640 they are 80 x 80 px (>= 40 px whenever
        ``height >= 212`` and ``width >= 318``). The last six entries are exactly neutral.

    Raises
    ------
    ValueError
        If the image is too small for 8 x 8 px patches.
    """
    cols, rows, gap_ratio = 6, 4, 0.15
    size = int(
        min(
            0.85 * width / (cols + (cols - 1) * gap_ratio),
            0.85 * height / (rows + (rows - 1) * gap_ratio),
        )
    )
    if size < 8:
        msg = f"image {height}x{width} too small for the chart"
        raise ValueError(msg)
    gap = max(2, round(size * gap_ratio))
    chart_w = cols * size + (cols - 1) * gap
    chart_h = rows * size + (rows - 1) * gap
    top = (height - chart_h) // 2
    left = (width - chart_w) // 2
    patches: list[tuple[int, int, int, int, tuple[float, float, float]]] = []
    for index, srgb8 in enumerate(_COLORCHECKER_SRGB8):
        r, c = divmod(index, cols)
        y0 = top + r * (size + gap)
        x0 = left + c * (size + gap)
        lin = [float(np.float32(_CHART_EXPOSURE * _srgb_to_linear(v / 255.0))) for v in srgb8]
        patches.append((y0, y0 + size, x0, x0 + size, (lin[0], lin[1], lin[2])))
    return patches


def _coords(height: int, width: int) -> tuple[_F64, _F64]:
    """Pixel-centre coordinates ``(y, x)``, shapes (H, 1) and (1, W), float64, in pixels."""
    y = np.arange(height, dtype=np.float64)[:, None] + 0.5
    x = np.arange(width, dtype=np.float64)[None, :] + 0.5
    return y, x


def _box(y: _F64, x: _F64, y0: float, y1: float, x0: float, x1: float) -> _F64:
    """Anti-aliased coverage (H, W) in [0, 1] of the box [y0, y1) x [x0, x1) in pixels."""
    cy = np.clip(np.minimum(y - y0 + 0.5, y1 - y + 0.5), 0.0, 1.0)
    cx = np.clip(np.minimum(x - x0 + 0.5, x1 - x + 0.5), 0.0, 1.0)
    coverage: _F64 = cy * cx
    return coverage


def _ellipse(y: _F64, x: _F64, cy: float, cx: float, ry: float, rx: float) -> _F64:
    """Anti-aliased coverage (H, W) in [0, 1] of an axis-aligned ellipse (radii in pixels)."""
    d = np.sqrt(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2)
    return np.clip((1.0 - d) * min(rx, ry) + 0.5, 0.0, 1.0)


def _paint(image: _F64, mask: _F64, colour: npt.ArrayLike) -> None:
    """Alpha-composite ``colour`` (3,) or (H, W, 3) onto ``image`` (H, W, 3) in place."""
    m = mask[..., None]
    image *= 1.0 - m
    image += m * np.asarray(colour, dtype=np.float64)


def _fractal_noise(
    rng: np.random.Generator, height: int, width: int, beta: float, cutoff: float
) -> _F64:
    """Band-limited 1/f**beta noise, shape (H, W), float64, zero mean and unit std."""
    spectrum = np.fft.rfft2(rng.standard_normal((height, width)))
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    amplitude = np.maximum(f, 1.0 / max(height, width)) ** (-beta) * np.exp(-((f / cutoff) ** 2))
    field = np.fft.irfft2(spectrum * amplitude, s=(height, width))
    field -= field.mean()
    std = field.std()
    return field / std if std > 0 else field


def _scene_chart(height: int, width: int) -> _F64:
    y, x = _coords(height, width)
    # Smooth illumination falloff across the grey background (brightest upper left).
    r2 = ((y - 0.3 * height) / height) ** 2 + ((x - 0.35 * width) / width) ** 2
    falloff = 1.0 / (1.0 + 1.6 * r2) ** 2
    image = np.repeat((_CHART_BACKGROUND * falloff)[..., None], 3, axis=2)
    patches = chart_patches(height, width)
    size = patches[0][1] - patches[0][0]
    border = max(2, size // 6)
    y0 = min(p[0] for p in patches) - border
    y1 = max(p[1] for p in patches) + border
    x0 = min(p[2] for p in patches) - border
    x1 = max(p[3] for p in patches) + border
    image[max(y0, 0) : y1, max(x0, 0) : x1] = _CHART_CARD
    for py0, py1, px0, px1, rgb in patches:
        image[py0:py1, px0:px1] = rgb
    return image


def _scene_window(height: int, width: int, rng: np.random.Generator) -> _F64:
    y, x = _coords(height, width)
    h, w = float(height), float(width)
    horizon = 0.74 * h
    # Window opening (in pixels) and a soft light source at its centre.
    wy0, wy1, wx0, wx1 = 0.10 * h, 0.60 * h, 0.50 * w, 0.86 * w
    wcy, wcx = 0.5 * (wy0 + wy1), 0.5 * (wx0 + wx1)
    dist2 = ((y - wcy) / h) ** 2 + ((x - wcx) / w) ** 2
    glow = np.exp(-dist2 / 0.08)
    wall_colour = np.array([0.9, 0.8, 0.65])
    wall = (0.004 + 0.09 * glow + 0.01 * (1.0 - y / h))[..., None] * wall_colour
    floor_colour = np.array([0.55, 0.38, 0.24])
    floor = 0.003 + 0.05 * np.exp(-(((x - wcx) / w) ** 2) / 0.05) * ((y - horizon) / h + 0.1)
    image: _F64 = np.where(y[..., None] < horizon, wall, floor[..., None] * floor_colour)
    # Deep shadow in the left corner.
    corner = np.clip(1.0 - x / (0.35 * w), 0.0, 1.0) ** 2
    image *= (1.0 - 0.8 * corner)[..., None]

    # Sunlit patch on the floor (a trapezoid under the window).
    t = np.clip((y - horizon) / (h - horizon), 0.0, 1.0)
    left = wx0 - 0.18 * w * t
    right = wx1 - 0.05 * w * t
    pool = np.clip(np.minimum(x - left, right - x) / 6.0, 0.0, 1.0) * np.clip(
        (y - horizon - 0.03 * h) / 4.0, 0.0, 1.0
    )
    _paint(image, 0.85 * pool, np.array([1.0, 0.88, 0.7]) * 0.55)

    # The view: sky gradient (well above saturation) with sunlit foliage along the bottom.
    view = np.empty((height, width, 3))
    frac = np.clip((y - wy0) / (wy1 - wy0), 0.0, 1.0)[..., None]
    view[:] = (1.0 - frac) * np.array([1.5, 2.3, 3.9]) + frac * np.array([2.8, 3.2, 3.6])
    ridge = wy0 + (wy1 - wy0) * (0.62 + 0.12 * np.sin(x / w * 19.0) + 0.05 * np.sin(x / w * 53.0))
    leaves = 0.5 + 0.5 * np.tanh(1.5 * _fractal_noise(rng, height, width, 1.2, 0.15))
    foliage = (0.35 + 0.9 * leaves)[..., None] * np.array([0.55, 0.85, 0.3])
    _paint(view, np.clip(y - ridge + 0.5, 0.0, 1.0), foliage)
    _paint(image, _box(y, x, wy0, wy1, wx0, wx1), view)
    # Frame and mullions (dark, back-lit) and a lit sill.
    frame = 0.012 * w
    for box in (
        (wy0 - frame, wy0 + frame, wx0 - frame, wx1 + frame),
        (wy1 - frame, wy1 + frame, wx0 - frame, wx1 + frame),
        (wy0 - frame, wy1 + frame, wx0 - frame, wx0 + frame),
        (wy0 - frame, wy1 + frame, wx1 - frame, wx1 + frame),
        (wy0, wy1, wcx - frame / 2, wcx + frame / 2),
        (wcy - frame / 2, wcy + frame / 2, wx0, wx1),
    ):
        _paint(image, _box(y, x, *box), [0.012, 0.010, 0.008])
    _paint(image, _box(y, x, wy1, wy1 + 0.025 * h, wx0 - 0.02 * w, wx1 + 0.02 * w), [0.3] * 3)

    # Furniture: a table in the light pool, a vase on it, a picture on the left wall.
    table_top = 0.66 * h
    _paint(
        image, _box(y, x, table_top, table_top + 0.03 * h, 0.2 * w, 0.55 * w), [0.05, 0.03, 0.02]
    )
    for leg_x in (0.22 * w, 0.52 * w):
        _paint(
            image, _box(y, x, table_top, 0.9 * h, leg_x, leg_x + 0.015 * w), [0.02, 0.012, 0.008]
        )
    vase_shade = np.clip((x - 0.36 * w) / (0.06 * w), -1.0, 1.0)[..., None]
    vase = (0.04 + 0.06 * (1.0 + vase_shade)) * np.array([0.9, 0.25, 0.18])
    _paint(image, _ellipse(y, x, table_top - 0.07 * h, 0.40 * w, 0.07 * h, 0.04 * w), vase)
    _paint(image, _box(y, x, 0.22 * h, 0.46 * h, 0.12 * w, 0.32 * w), [0.02, 0.018, 0.015])
    _paint(image, _box(y, x, 0.24 * h, 0.44 * h, 0.135 * w, 0.305 * w), [0.03, 0.045, 0.06])
    _paint(image, _ellipse(y, x, 0.31 * h, 0.22 * w, 0.05 * h, 0.05 * w), [0.08, 0.06, 0.02])
    return image


def _scene_gradient(height: int, width: int) -> _F64:
    _, x = _coords(height, width)
    ramp = 2.0 ** (-7.0 + 8.0 * (x - 0.5) / max(width - 1, 1))  # 2**-7 .. 2**1 (clips)
    image = np.empty((height, width, 3))
    ramp_end = round(0.2 * height)
    wedge_end = round(0.4 * height)
    image[:ramp_end] = ramp[..., None]
    # Eight flat steps, one stop apart, 2**-7 .. 2**0.
    step = np.minimum((np.arange(width) * 8) // width, 7)
    image[ramp_end:wedge_end] = (2.0 ** (step - 7.0))[None, :, None]
    bars = (
        (0.85, 0.12, 0.10),  # red
        (0.85, 0.55, 0.08),  # orange
        (0.15, 0.75, 0.15),  # green
        (0.10, 0.60, 0.80),  # cyan
        (0.12, 0.15, 0.85),  # blue
        (0.75, 0.15, 0.70),  # magenta
    )
    edges = np.linspace(wedge_end, height, len(bars) + 1).round().astype(int)
    for (e0, e1), colour in zip(itertools.pairwise(edges), bars, strict=True):
        image[e0:e1] = ramp[0][None, :, None] * np.asarray(colour)[None, None, :]
    return image


def _scene_texture(height: int, width: int, rng: np.random.Generator) -> _F64:
    y, x = _coords(height, width)
    h, w = float(height), float(width)
    # Log-normal 1/f luminance (several stops), two earthy colours mixed by a smooth field.
    lum = 0.09 * np.exp(0.9 * _fractal_noise(rng, height, width, 1.1, 0.2))
    grain = 1.0 + 0.15 * _fractal_noise(rng, height, width, 0.3, 0.35)
    mix = 0.5 + 0.5 * np.tanh(1.2 * _fractal_noise(rng, height, width, 1.6, 0.05))
    moss = np.array([0.45, 0.62, 0.22])
    earth = np.array([0.75, 0.48, 0.28])
    image: _F64 = (lum * grain)[..., None] * (
        mix[..., None] * moss + (1.0 - mix[..., None]) * earth
    )

    # Shaded stones (spheres lit from the upper left, with a clipping specular highlight).
    for cy, cx, radius, albedo in (
        (0.30, 0.22, 0.13, (0.50, 0.48, 0.45)),
        (0.68, 0.70, 0.16, (0.38, 0.40, 0.44)),
        (0.25, 0.80, 0.08, (0.60, 0.50, 0.40)),
    ):
        ry = rx = radius * h
        py, px = cy * h, cx * w
        dy, dx = (y - py) / ry, (x - px) / rx
        nz = np.sqrt(np.clip(1.0 - dy**2 - dx**2, 0.0, 1.0))
        light = np.array([-0.5, -0.5, 0.707])
        diffuse = np.clip(-dy * light[0] - dx * light[1] + nz * light[2], 0.0, 1.0)
        spec = np.clip(-dy * light[0] - dx * light[1] + nz * light[2], 0.0, 1.0) ** 60
        shade = (0.03 + 0.5 * diffuse)[..., None] * np.asarray(albedo) + 3.0 * spec[..., None]
        _paint(image, _ellipse(y, x, py, px, ry, rx), shade)
    # A flat painted board and a flat tile (large uniform regions for measurements).
    _paint(image, _box(y, x, 0.62 * h, 0.90 * h, 0.08 * w, 0.40 * w), [0.20, 0.07, 0.05])
    _paint(image, _box(y, x, 0.68 * h, 0.84 * h, 0.14 * w, 0.26 * w), [0.30, 0.30, 0.30])
    return image


def demo_scene(
    kind: str, height: int = 424, width: int = 640, seed: int = 0
) -> npt.NDArray[np.float32]:
    """Procedural HDR test scene with known radiance.

    Parameters
    ----------
    kind : str
        One of :data:`DEMO_SCENES`:

        ``"chart"``
            ColorChecker-like 6 x 4 grid of flat patches (see :func:`chart_patches`) on a black
            card, over a mid-grey background with a smooth illumination falloff. Max ~0.72.
        ``"window"``
            Dark interior (deep shadows ~0.001-0.01) with a bright window: sky 1.5-3.9, i.e.
            up to ~4x saturation at EV 0, sunlit foliage, a light pool, some furniture.
        ``"gradient"``
            Top 20 %: smooth horizontal grey ramp 2**-7 .. 2**1 (8 stops, clips at the right);
            next 20 %: eight flat one-stop grey steps 2**-7 .. 2**0 (80 px wide at the default
            size); bottom: six colour bars following the same ramp.
        ``"texture"``
            Band-limited log-normal 1/f texture (moss / earth) with three shaded stones (with
            clipping specular highlights) and two flat rectangles.
    height, width : int
        Output size in pixels (>= 16 each; the chart needs >= 212 x 318 for 40 px patches).
    seed : int
        Seed for the random textures ("window", "texture"); "chart" and "gradient" do not
        depend on it.

    Returns
    -------
    np.ndarray
        Shape (height, width, 3), float32, linear scene radiance in linear sRGB primaries,
        all values >= 0 (1.0 = sensor saturation at EV 0 with ``exposure_gain = 1``).

    Raises
    ------
    ValueError
        For an unknown ``kind`` or a size below 16 px.
    """
    if height < 16 or width < 16:
        msg = f"scene size must be at least 16x16, got {height}x{width}"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    if kind == "chart":
        image = _scene_chart(height, width)
    elif kind == "window":
        image = _scene_window(height, width, rng)
    elif kind == "gradient":
        image = _scene_gradient(height, width)
    elif kind == "texture":
        image = _scene_texture(height, width, rng)
    else:
        msg = f"unknown scene {kind!r}; expected one of {DEMO_SCENES}"
        raise ValueError(msg)
    out: npt.NDArray[np.float32] = np.maximum(image, 0.0).astype(np.float32)
    return out


# --------------------------------------------------------------------------------------------
# Demo data set
# --------------------------------------------------------------------------------------------

# One simulated camera per demo scene: different CFA layouts, bit depths, neutrals, EXIF data.
_DEMO_CAMERAS: dict[str, dict[str, Any]] = {
    "chart": {
        "cfa": "RGGB",
        "black_level": 256,
        "white_level": 4095,
        "as_shot_neutral": (0.5, 1.0, 0.6),
        "model": "Synthetic Bayer A",
        "exposure_time": 1 / 125,
        "iso": 100,
        "f_number": 8.0,
        "datetime": "2026:01:01 12:00:00",
        "noise_sigma": 0.0,
    },
    "window": {
        "cfa": "BGGR",
        "black_level": 1024,
        "white_level": 16383,
        "as_shot_neutral": (0.45, 1.0, 0.72),
        "model": "Synthetic Bayer B",
        "exposure_time": 1 / 30,
        "iso": 400,
        "f_number": 4.0,
        "datetime": "2026:01:02 17:30:00",
        "noise_sigma": 3.0,
    },
    "gradient": {
        "cfa": "GRBG",
        "black_level": 128,
        "white_level": 4095,
        "as_shot_neutral": None,
        "sensor_neutral": (0.55, 1.0, 0.65),
        "model": "Synthetic Bayer C",
        "exposure_time": 1 / 500,
        "iso": 200,
        "f_number": 5.6,
        "datetime": "2026:01:03 09:15:00",
        "noise_sigma": 1.0,
    },
    "texture": {
        "cfa": "GBRG",
        "black_level": 512,
        "white_level": 16383,
        "as_shot_neutral": (0.6, 1.0, 0.5),
        "model": "Synthetic Bayer D",
        "exposure_time": 1 / 60,
        "iso": 800,
        "f_number": 2.8,
        "datetime": "2026:01:04 14:45:00",
        "noise_sigma": 6.0,
    },
}


def write_demo_set(
    out_dir: str | os.PathLike[str], height: int = 424, width: int = 640
) -> list[Path]:
    """Write one synthetic DNG per demo scene, each from a differently configured camera.

    The cameras differ in CFA layout (RGGB, BGGR, GRBG, GBRG), bit depth / black level, native
    neutral, exposure time, ISO, f-number and date; the "gradient" file has no AsShotNeutral
    (no camera white balance). The "chart" file is noise free. The output is deterministic.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Output folder, created if missing.
    height, width : int
        Image size in pixels.

    Returns
    -------
    list of pathlib.Path
        The written files ``synthetic_<scene>.dng``, in :data:`DEMO_SCENES` order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for index, scene in enumerate(DEMO_SCENES):
        camera = _DEMO_CAMERAS[scene]
        path = out / f"synthetic_{scene}.dng"
        write_dng(path, demo_scene(scene, height, width, seed=index), seed=index, **camera)
        paths.append(path)
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m expokit.core.synthetic OUT_DIR", file=sys.stderr)
        sys.exit(2)
    for written in write_demo_set(sys.argv[1]):
        print(written)


def feature_texture(width: int, height: int, seed: int = 0) -> npt.NDArray[np.float32]:
    """Linear-light RGB texture in ``[0.03, 0.8]``, ``(height, width, 3)`` float32: multi-scale
    noise and sharp discs and boxes, rich in features everywhere (what a feature-based
    alignment check needs; the moss of ``demo_scene("texture")`` is too smooth at live-view
    size)."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.float32)
    for octave in (4, 8, 16, 32, 64):
        small = rng.random((height // octave + 2, width // octave + 2, 3)).astype(np.float32)
        img += cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC) / 5
    canvas = np.zeros_like(img)
    for _ in range(int(width * height / 1200)):
        colour = tuple(float(c) for c in rng.random(3))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        if rng.random() < 0.5:
            cv2.circle(canvas, centre, int(rng.integers(3, 30)), colour, -1)
        else:
            size = rng.integers(4, 40, 2)
            corner = (centre[0] + int(size[0]), centre[1] + int(size[1]))
            cv2.rectangle(canvas, centre, corner, colour, -1)
    img = 0.5 * img + 0.5 * canvas
    img = (img - img.min()) / (img.max() - img.min())
    return np.asarray(0.03 + 0.77 * img, np.float32)
