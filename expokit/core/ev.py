"""EV ladders and their file-name tokens.

MSEC (Afifi et al., CVPR 2021) names inputs ``<name>_<token>.JPG`` with tokens ``N1.5``,
``N1``, ``0``, ``P1``, ``P1.5`` for EV -1.5, -1, 0, +1, +1.5; UEC and RECNet parse the same
tokens. :func:`ev_token` generalises this to any ladder.
"""

from __future__ import annotations

import math
import re

#: The MSEC ladder (EV relative to the base exposure).
MSEC_LADDER: tuple[float, ...] = (-1.5, -1.0, 0.0, 1.0, 1.5)

#: Largest |EV| accepted: 2**12 already turns saturation into a 12-bit black level.
MAX_ABS_EV = 12.0

_TOKEN_RE = re.compile(r"^(?:0|[NP](?:\d+)(?:\.\d{1,2})?)$")


def ev_token(ev: float) -> str:
    """File-name token of ``ev``: ``0``, ``N1.5``, ``P1``, ``P0.33`` (at most 2 decimals).

    >>> [ev_token(e) for e in (-1.5, -1, 0, 1, 1.5)]
    ['N1.5', 'N1', '0', 'P1', 'P1.5']
    """
    if not math.isfinite(ev):
        raise ValueError(f"EV must be finite, got {ev}")
    magnitude = f"{abs(ev):.2f}".rstrip("0").rstrip(".")
    if magnitude in ("0", ""):
        return "0"
    return ("N" if ev < 0 else "P") + magnitude


def parse_ev_token(token: str) -> float:
    """Inverse of :func:`ev_token`: ``"N1.5"`` -> ``-1.5``."""
    if not _TOKEN_RE.match(token):
        raise ValueError(f"not an EV token: {token!r} (expected e.g. N1.5, N1, 0, P1, P1.5)")
    if token == "0":
        return 0.0
    value = float(token[1:])
    return -value if token[0] == "N" else value


def parse_ev_list(text: str) -> tuple[float, ...]:
    """Parse a comma-separated EV ladder such as ``"-1.5,-1,0,+1,+1.5"`` or ``"N1.5,0,P1"``.

    Raises
    ------
    ValueError
        On an unparsable entry, a non-finite or too large value, or two EVs that share a token.
    """
    values: list[float] = []
    for raw_item in text.split(","):
        item = raw_item.strip()
        if not item:
            continue
        try:
            value = parse_ev_token(item) if item[0] in "NP" else float(item)
        except ValueError:
            raise ValueError(f"cannot read EV {item!r} in {text!r}") from None
        values.append(value)
    return validate_ladder(values)


def validate_ladder(values: tuple[float, ...] | list[float]) -> tuple[float, ...]:
    """Check a ladder: non-empty, finite, ``|EV| <= MAX_ABS_EV``, tokens unique. Sorted copy."""
    if not values:
        raise ValueError("the EV ladder is empty")
    for value in values:
        if not math.isfinite(value) or abs(value) > MAX_ABS_EV:
            raise ValueError(f"EV {value} is out of range (|EV| <= {MAX_ABS_EV:g})")
    tokens = [ev_token(v) for v in values]
    duplicates = sorted({t for t in tokens if tokens.count(t) > 1})
    if duplicates:
        raise ValueError(f"EV ladder repeats {', '.join(duplicates)} (at 2-decimal precision)")
    return tuple(sorted(float(v) for v in values))
