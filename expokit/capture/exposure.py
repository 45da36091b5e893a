"""Exposure arithmetic on camera setting strings (shutter "1/125", aperture "8", ISO "100").

EV here is the photographic exposure of the image: doubling the exposure time, halving the
f-number squared or doubling ISO each add +1 EV of image brightness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: Shutter speeds a camera offers, fastest first (the fake backend's choices; the test
#: shutter of a simulated rig is the nearest of them).
SHUTTER_CHOICES = (
    "1/4000", "1/2000", "1/1000", "1/500", "1/250", "1/125", "1/60", "1/30", "1/15", "1/8",
    "1/4", "1/2", "1", "2", "4", "8", "15", "30",
)  # fmt: skip


def shutter_seconds(text: str) -> float:
    """``"1/125"`` -> 0.008, ``"2"`` -> 2.0, ``"0.5s"`` -> 0.5, ``'1"'`` -> 1.0."""
    value = text.strip().rstrip("s").rstrip('"').strip()
    try:
        if "/" in value:
            num, den = value.split("/", 1)
            seconds = float(num) / float(den)
        else:
            seconds = float(value)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"not a shutter speed: {text!r}") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"not a shutter speed: {text!r}")
    return seconds


def f_number(text: str) -> float:
    """``"8"``, ``"f/8"``, ``"F8.0"`` -> 8.0."""
    value = text.strip().lower().removeprefix("f/").removeprefix("f")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"not an aperture: {text!r}") from None
    if not number > 0:
        raise ValueError(f"not an aperture: {text!r}")
    return number


def iso_value(text: str) -> float:
    """``"100"`` -> 100.0 (``"Auto"`` is not a number: ValueError)."""
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"not an ISO value: {text!r}") from None
    if not number > 0:
        raise ValueError(f"not an ISO value: {text!r}")
    return number


def nearest_shutter(target_seconds: float, choices: Sequence[str]) -> tuple[str, float]:
    """The choice closest to ``target_seconds`` in EV, and its error in EV (signed)."""
    best: tuple[str, float] | None = None
    for choice in choices:
        try:
            seconds = shutter_seconds(choice)
        except ValueError:
            continue  # "bulb", "Auto", ...
        error = math.log2(seconds / target_seconds)
        if best is None or abs(error) < abs(best[1]):
            best = (choice, error)
    if best is None:
        raise ValueError("the camera offers no numeric shutter speeds")
    return best
