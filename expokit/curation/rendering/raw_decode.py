"""One LibRaw pass from a RAW file to linear 16-bit RGB, with every parameter explicit.

rawpy's defaults are wrong for exposure ladders: ``no_auto_bright=False`` rescales each
frame to its own histogram and ``adjust_maximum_thr=0.75`` moves the white level per file,
so an EV -1.5/-1/0 set comes out with nearly equal means. Here auto-brightening is off, the
white level is the file's, gamma is ``(1, 1)`` and the white balance is passed explicitly
and recorded, so the output is proportional to scene radiance up to saturation.

References
----------
LibRaw API notes, "Output parameters" (``no_auto_bright``, ``adjust_maximum_thr``,
``user_wb``, ``gamm``): https://www.libraw.org/docs/API-datastruct.html
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from expokit.core.errors import InputFileError
from expokit.core.exif import read_exif_tags

#: File extensions LibRaw reads (lower case, with the dot).
RAW_EXTENSIONS: frozenset[str] = frozenset(
    (
        ".3fr .ari .arw .bay .braw .cap .cr2 .cr3 .crw .dcr .dcs .dng .drf .eip .erf .fff .gpr "
        ".iiq .k25 .kdc .mdc .mef .mos .mrw .nef .nrw .orf .pef .ptx .pxn .r3d .raf .raw .rw2 "
        ".rwl .rwz .sr2 .srf .srw .x3f"
    ).split()
)

#: Fewer stored bytes per raw pixel than this cannot hold an image, even losslessly
#: compressed (real files: 0.2-2 bytes/pixel); stubs whose data were stripped have ~0.001.
MIN_BYTES_PER_PIXEL = 0.05
#: Correlation of horizontally adjacent same-colour raw samples below this is noise.
MIN_NEIGHBOUR_CORRELATION = 0.1
#: EV 0 renders with more saturated pixels than this are rejected as "white".
MAX_SATURATED_FRACTION = 0.98


def library_versions() -> dict[str, str]:
    """Versions of rawpy and LibRaw (part of every render's parameter hash)."""
    import rawpy

    return {"rawpy": rawpy.__version__, "libraw": ".".join(map(str, rawpy.libraw_version))}


@dataclass(frozen=True)
class RawMetadata:
    """What the RAW file says about the shot. ``None`` where the file does not say."""

    camera_make: str | None
    camera_model: str | None
    exposure_time_s: float | None
    iso: float | None
    f_number: float | None
    focal_length_mm: float | None
    captured_at: str | None
    raw_type: str
    cfa_pattern: str | None
    raw_width: int
    raw_height: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DecodedRaw:
    """A demosaicked RAW.

    Attributes
    ----------
    linear
        Shape ``(H, W, 3)``, uint16, RGB in linear sRGB/Rec. 709 primaries; ``65535`` is the
        sensor saturation level after white balance (EV 0 as shot).
    """

    linear: npt.NDArray[np.uint16]
    metadata: RawMetadata
    wb_source: str
    wb_multipliers: tuple[float, float, float, float]
    white_level: int
    notes: tuple[str, ...]


def _valid_multipliers(values: Any) -> bool:
    first3 = [float(v) for v in list(values)[:3]]
    return len(first3) == 3 and all(math.isfinite(v) and v > 0 for v in first3)


def choose_white_balance(raw: Any, policy: str) -> tuple[str, tuple[float, float, float, float]]:
    """Pick white-balance multipliers by ``policy`` and say where they came from.

    ``"camera"`` uses the as-shot multipliers; files without them (LibRaw reports
    ``camera_whitebalance[0] == -1``, e.g. the Canon D30 CRW) fall back to ``"daylight"``,
    LibRaw's D65 multipliers derived from the colour matrix, then to ``"unity"``.

    Returns
    -------
    tuple
        ``(source, (r, g, b, g2))`` where ``source`` is ``"camera"``, ``"daylight"``,
        ``"unity"``, or ``"daylight (no camera WB in file)"`` / ``"unity (no camera or
        daylight WB in file)"`` for fallbacks.
    """
    camera = [float(v) for v in raw.camera_whitebalance]
    daylight = [float(v) for v in raw.daylight_whitebalance]
    unity = (1.0, 1.0, 1.0, 1.0)

    def as4(values: list[float]) -> tuple[float, float, float, float]:
        g2 = values[3] if len(values) > 3 and values[3] > 0 else values[1]
        return (values[0], values[1], values[2], g2)

    if policy == "camera":
        if _valid_multipliers(camera):
            return "camera", as4(camera)
        if _valid_multipliers(daylight):
            return "daylight (no camera WB in file)", as4(daylight)
        return "unity (no camera or daylight WB in file)", unity
    if policy == "daylight":
        if _valid_multipliers(daylight):
            return "daylight", as4(daylight)
        return "unity (no daylight WB in file)", unity
    if policy == "unity":
        return "unity", unity
    raise ValueError(f"unknown white-balance policy {policy!r}")


def libraw_params(
    wb: tuple[float, float, float, float], demosaic: str, user_sat: int | None = None
) -> dict[str, Any]:
    """Every ``rawpy.RawPy.postprocess`` argument the renderer sets, explicitly.

    Gamma ``(1, 1)`` and ``output_bps=16`` give linear 16-bit output; ``no_auto_bright`` and
    ``adjust_maximum_thr=0`` keep the file's own scaling so EVs stay exact.
    """
    import rawpy

    params: dict[str, Any] = {
        "demosaic_algorithm": getattr(rawpy.DemosaicAlgorithm, demosaic),
        "half_size": False,
        "four_color_rgb": False,
        "dcb_iterations": 0,
        "dcb_enhance": False,
        "fbdd_noise_reduction": rawpy.FBDDNoiseReductionMode.Off,
        "noise_thr": None,
        "median_filter_passes": 0,
        "use_camera_wb": False,
        "use_auto_wb": False,
        "user_wb": list(wb),
        "output_color": rawpy.ColorSpace.sRGB,
        "output_bps": 16,
        "user_flip": None,
        "user_black": None,
        "user_sat": user_sat,
        "no_auto_bright": True,
        "auto_bright_thr": None,
        "adjust_maximum_thr": 0.0,
        "bright": 1.0,
        "highlight_mode": rawpy.HighlightMode.Clip,
        "exp_shift": None,
        "exp_preserve_highlights": 0.0,
        "no_auto_scale": False,
        "gamma": (1.0, 1.0),
        "chromatic_aberration": None,
        "bad_pixels_path": None,
    }
    return params


def _describe_libraw_error(exc: Exception) -> str:
    kind = type(exc).__name__
    detail = exc.args[0] if exc.args else ""
    if isinstance(detail, bytes):
        detail = detail.decode(errors="replace")
    explanations = {
        "LibRawFileUnsupportedError": "not a RAW format LibRaw can decode (or not a RAW file)",
        "LibRawDataError": "corrupt RAW data",
        "LibRawIOError": "file truncated or unreadable",
        "LibRawTooBigError": "image too large for LibRaw",
        "LibRawRequestForNonexistentImageError": "no image in the file",
        "LibRawOutOfOrderCallError": "LibRaw call out of order",
        "LibRawMemoryError": "LibRaw ran out of memory",
    }
    text = explanations.get(kind, "LibRaw could not decode it")
    return f"{text} ({kind}: {detail})" if detail else f"{text} ({kind})"


def _camera_make_model(path: Path) -> tuple[str | None, str | None]:
    tags = read_exif_tags(path)
    if not tags:
        return None, None
    make = str(tags["Image Make"]).strip() if "Image Make" in tags else None
    model = str(tags["Image Model"]).strip() if "Image Model" in tags else None
    if model is None:  # DNG UniqueCameraModel (tag 50708), e.g. Blackmagic cinema DNGs
        for key in ("Image UniqueCameraModel", "Image Tag 0xC614"):
            if key in tags:
                model = str(tags[key]).strip()
                break
    return make or None, model or None


def read_metadata(raw: Any, path: Path) -> RawMetadata:
    """Shot metadata from LibRaw (exposure, ISO, aperture, time) and EXIF (make, model)."""
    other = raw.other

    def positive(value: float) -> float | None:
        return float(value) if value and math.isfinite(value) and value > 0 else None

    timestamp = other.timestamp
    captured_at = None
    if isinstance(timestamp, dt.datetime) and timestamp.year > 1970:
        captured_at = timestamp.isoformat()
    pattern = raw.raw_pattern
    cfa = None
    if pattern is not None:
        desc = raw.color_desc.decode()
        cfa = "".join(desc[int(i)] for i in np.asarray(pattern).ravel())
    make, model = _camera_make_model(path)
    return RawMetadata(
        camera_make=make,
        camera_model=model,
        exposure_time_s=positive(other.shutter_speed),
        iso=positive(other.iso_speed),
        f_number=positive(other.aperture),
        focal_length_mm=positive(other.focal_length),
        captured_at=captured_at,
        raw_type=raw.raw_type.name,
        cfa_pattern=cfa,
        raw_width=int(raw.sizes.raw_width),
        raw_height=int(raw.sizes.raw_height),
    )


def _check_raw_data(raw: Any, path: Path) -> None:
    """Reject stubs whose image data are missing: too few bytes, blank data, or noise."""
    pixels = int(raw.sizes.raw_width) * int(raw.sizes.raw_height)
    size = path.stat().st_size
    if pixels and size / pixels < MIN_BYTES_PER_PIXEL:
        raise InputFileError(
            path,
            f"image data missing or truncated: the file has {size} bytes for "
            f"{raw.sizes.raw_width}x{raw.sizes.raw_height} raw pixels "
            f"({size / pixels:.4f} bytes/pixel, a real RAW has > {MIN_BYTES_PER_PIXEL})",
        )
    if raw.raw_type.name != "Flat":
        return
    data = raw.raw_image_visible
    # One CFA colour, subsampled: neighbours 2 px apart share a colour.
    plane = data[0::2, 0::2][:: max(1, data.shape[0] // 1024), :: max(1, data.shape[1] // 1024)]
    plane = plane.astype(np.float64)
    black = float(np.max(raw.black_level_per_channel))
    if plane.max() <= black + 1:
        raise InputFileError(path, "raw data are blank (every sample at or below the black level)")
    left, right = plane[:, :-1].ravel(), plane[:, 1:].ravel()
    if left.std() == 0 or right.std() == 0:
        raise InputFileError(path, "raw data are constant: no image in the file")
    correlation = float(np.corrcoef(left, right)[0, 1])
    if correlation < MIN_NEIGHBOUR_CORRELATION:
        raise InputFileError(
            path,
            f"raw data look like noise, not an image (neighbouring samples correlate "
            f"{correlation:.2f} < {MIN_NEIGHBOUR_CORRELATION})",
        )


def _stack_white_level(raw: Any, path: Path) -> tuple[int | None, str | None]:
    """For non-Bayer data: use the data maximum when the stated white level is below it."""
    try:
        data = np.asarray(raw.raw_image)
    except Exception:
        return None, None
    stated = int(raw.white_level)
    actual = int(data.max()) if data.size else 0
    if actual > stated * 1.01:
        note = (
            f"{path.name}: stated white level {stated} is below the data maximum {actual}; "
            f"using {actual} so the render is not clipped white"
        )
        return actual, note
    return None, None


def decode_raw(
    path: str | Path,
    *,
    white_balance: str = "camera",
    demosaic: str = "AHD",
    sanity_checks: bool = True,
) -> DecodedRaw:
    """Decode ``path`` once into linear 16-bit RGB (see :class:`DecodedRaw`).

    Raises
    ------
    InputFileError
        Naming the file and the problem: LibRaw cannot decode it, its image data are
        missing/blank/noise, or the render is entirely white or black.
    """
    import rawpy

    file = Path(path)
    if not file.is_file():
        raise InputFileError(file, "no such file")
    notes: list[str] = []
    try:
        with rawpy.imread(str(file)) as raw:
            if sanity_checks:
                _check_raw_data(raw, file)
            metadata = read_metadata(raw, file)
            wb_source, wb = choose_white_balance(raw, white_balance)
            user_sat = None
            if raw.raw_type.name != "Flat":
                notes.append(f"non-Bayer ({raw.raw_type.name}) data: rendered without demosaic")
                user_sat, note = _stack_white_level(raw, file)
                if note:
                    notes.append(note)
            linear = np.asarray(
                raw.postprocess(**libraw_params(wb, demosaic, user_sat)), dtype=np.uint16
            )
            white_level = int(user_sat if user_sat is not None else raw.white_level)
    except InputFileError:
        raise
    except rawpy.LibRawError as exc:
        raise InputFileError(file, _describe_libraw_error(exc)) from None
    except (OSError, MemoryError) as exc:
        raise InputFileError(file, f"cannot read: {exc}") from None
    if linear.ndim != 3 or linear.shape[2] != 3:
        raise InputFileError(file, f"LibRaw returned shape {linear.shape}, expected (H, W, 3)")
    if sanity_checks:
        _check_render(linear, file)
    return DecodedRaw(
        linear=linear,
        metadata=metadata,
        wb_source=wb_source,
        wb_multipliers=wb,
        white_level=white_level,
        notes=tuple(notes),
    )


def _check_render(linear: npt.NDArray[np.uint16], path: Path) -> None:
    """Reject renders that are entirely white or black at EV 0."""
    sample = linear[:: max(1, linear.shape[0] // 512), :: max(1, linear.shape[1] // 512)]
    saturated = float(np.mean(np.any(sample >= 65535, axis=2)))
    if saturated > MAX_SATURATED_FRACTION:
        raise InputFileError(
            path,
            f"renders white: {saturated:.1%} of pixels saturate at EV 0 (stated white level "
            "below the data, or a non-linear/log encoding LibRaw cannot undo)",
        )
    if int(sample.max()) < 64:
        raise InputFileError(path, "renders black: no pixel above 0.1% of full scale at EV 0")
