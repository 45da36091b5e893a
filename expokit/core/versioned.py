"""Reading versioned JSON files (``rig_calibration.json``, ``sync.json``) with one set of checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def read_versioned_json(
    path: Path, *, version: int, kind: str, error: Callable[[Path, str], Exception]
) -> dict[str, Any]:
    """The JSON object in ``path`` after checking its ``format_version`` is ``version``.

    Raises
    ------
    Exception
        ``error(path, problem)`` for a missing file, unreadable or non-JSON content, no
        ``format_version``, or another version (the message names the version found).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(path, "no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise error(path, f"not a readable {kind}: not a JSON file ({exc})") from None
    if not isinstance(data, dict) or "format_version" not in data:
        raise error(path, f"not a {kind} (no format_version)")
    found = data["format_version"]
    if found != version:
        raise error(
            path,
            f"{kind} format_version {found!r} is not supported (this expokit reads version "
            f"{version})",
        )
    return data
