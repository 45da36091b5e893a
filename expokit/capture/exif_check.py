"""Compare the exposure a file's EXIF reports with the exposure that was requested.

Cameras sometimes ignore a setting (wrong mode dial, a setting locked by the body); the
journal flags such shots instead of letting them pass silently.
"""

from __future__ import annotations

import math
from typing import Any

from expokit.capture.exposure import f_number, iso_value, shutter_seconds
from expokit.core.exif import read_exif_tags


def _as_number(value: Any) -> float | None:
    """exifread gives Ratio objects, ints, or (num, den) tuples depending on the writer."""
    try:
        if hasattr(value, "num"):
            return float(value.num) / float(value.den)
        if isinstance(value, tuple) and len(value) == 2:
            return float(value[0]) / float(value[1])
        if isinstance(value, tuple) and len(value) == 1:
            return float(value[0])
        return float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def read_exposure(data: bytes) -> dict[str, float]:
    """``exposure_time_s``, ``f_number`` and ``iso`` from EXIF bytes (JPEG, TIFF-based RAW)."""
    tags = read_exif_tags(data)
    found: dict[str, float] = {}
    for key, out in (
        ("EXIF ExposureTime", "exposure_time_s"),
        ("EXIF FNumber", "f_number"),
        ("EXIF ISOSpeedRatings", "iso"),
        ("EXIF PhotographicSensitivity", "iso"),
        ("Image ExposureTime", "exposure_time_s"),
        ("Image FNumber", "f_number"),
        ("Image ISOSpeedRatings", "iso"),
    ):
        if key in tags and out not in found:
            value = tags[key].values[0] if tags[key].values else None
            if value is None:
                continue
            number = _as_number(value)
            if number is not None and math.isfinite(number) and number > 0:
                found[out] = number
    return found


def check_exposure(data: bytes, requested: dict[str, str], tolerance_ev: float) -> dict[str, Any]:
    """Compare EXIF with the requested ``shutter``/``aperture``/``iso`` (generic names).

    Returns
    -------
    dict
        ``{"ok": bool | None, "exif": {...}, "mismatches": [...], "unchecked": [...]}``;
        ``ok`` is ``None`` when nothing could be compared (no EXIF, or auto settings).
    """
    if not (math.isfinite(tolerance_ev) and tolerance_ev >= 0):  # nan/inf would pass all
        raise ValueError(f"tolerance_ev = {tolerance_ev!r} must be a finite number of EV >= 0")
    exif = read_exposure(data)
    parsers = {
        "shutter": ("exposure_time_s", shutter_seconds, 1.0),
        "aperture": ("f_number", f_number, 2.0),  # f-number counts twice in EV
        "iso": ("iso", iso_value, 1.0),
    }
    mismatches, unchecked = [], []
    compared = 0
    for setting, (key, parse, weight) in parsers.items():
        if setting not in requested:
            continue
        try:
            want = parse(requested[setting])
        except ValueError:
            unchecked.append(setting)  # "Auto" and the like
            continue
        if key not in exif:
            unchecked.append(setting)
            continue
        compared += 1
        error_ev = weight * abs(math.log2(exif[key] / want))
        if error_ev > tolerance_ev:
            mismatches.append(
                {"setting": setting, "requested": requested[setting], "exif": exif[key],
                 "error_ev": round(error_ev, 3)}
            )  # fmt: skip
    ok = None if compared == 0 else not mismatches
    return {"ok": ok, "exif": exif, "mismatches": mismatches, "unchecked": unchecked}
