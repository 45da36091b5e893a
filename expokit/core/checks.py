"""Range checks of settings, one wording for every typed config.

Each check returns the value unchanged or raises :class:`ValueError` whose message names the
setting, the rule and the value (``"max roll must be a finite number > 0 (deg), got -1"``);
configs call them from ``__post_init__`` and the command line turns the error into a usage
error. NaN never passes a check, and a bool is not a number here.
"""

from __future__ import annotations

import math


def _number(name: str, value: object, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number{unit}, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number{unit}, got {value}")
    return float(value)


def _unit(unit: str) -> str:
    return f" ({unit})" if unit else ""


def finite(name: str, value: float, unit: str = "") -> float:
    """``value`` when it is a finite number (not NaN or infinite)."""
    return _number(name, value, _unit(unit))


def positive(name: str, value: float, unit: str = "") -> float:
    """``value`` when it is a finite number > 0."""
    number = _number(name, value, _unit(unit))
    if number <= 0:
        raise ValueError(f"{name} must be a finite number > 0{_unit(unit)}, got {value}")
    return value


def in_range(
    name: str,
    value: float,
    low: float,
    high: float,
    unit: str = "",
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` when it lies between ``low`` and ``high`` (each end closed unless told
    open), written as interval notation in the message: ``(0, 1]``."""
    number = _number(name, value, _unit(unit))
    above = number > low if low_open else number >= low
    below = number < high if high_open else number <= high
    if not (above and below):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}{_unit(unit)}, got {value}")
    return value


def whole(name: str, value: int, minimum: int, maximum: int | None = None) -> int:
    """``value`` when it is an integer (not a bool) >= ``minimum`` (and <= ``maximum``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value
