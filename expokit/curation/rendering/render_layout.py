"""Output names and folders for rendered EV sets.

Layouts
-------
``sequence``
    ``<out>/<name>/<name>_<token><suffix>``: one folder per RAW, every EV and format.
``msec``
    ``<out>/INPUT_IMAGES/<name>_<token>.JPG`` (upper-case extension) and
    ``<out>/GT_IMAGES/<name>.jpg`` (lower case), the layout parsed by the MSEC (Afifi et al.
    2021), UEC and RECNet loaders.

Names in the ``msec`` layout follow MSEC's own ``a0001-jmac_DSC1459`` pattern: a unique part
without ``_``, one ``_``, then a tag (the RAW extension). UEC groups files by the name minus
its last two ``_`` fields and MSEC's patch extraction globs ``<name>*``, so the unique part
must come first and no name may be a prefix of another.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from pathlib import Path

from expokit.core.errors import ExpokitError
from expokit.core.ev import ev_token
from expokit.curation.rendering.config import OutputFormat

_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def _clean(text: str) -> str:
    return _UNSAFE.sub("-", text).strip("-.") or "raw"


def assign_names(raw_paths: Sequence[Path], layout: str) -> dict[Path, str]:
    """Give every RAW a unique, file-system-safe output name.

    The name is the file stem; files whose stems collide get their parent folder names
    prepended until they differ. In the ``msec`` layout ``_`` is replaced by ``-`` in the
    unique part and ``_<EXT>`` is appended (``IMG_0001.CR2`` -> ``IMG-0001_CR2``).

    Raises
    ------
    ExpokitError
        If names still collide or one ``msec`` name is a prefix of another.
    """
    depth = 0
    while True:
        names = {p: _name_at_depth(p, depth, layout) for p in raw_paths}
        counts: dict[str, int] = {}
        for name in names.values():
            counts[name.lower()] = counts.get(name.lower(), 0) + 1
        if all(c == 1 for c in counts.values()):
            break
        depth += 1
        if depth > 8:
            clash = sorted(str(p) for p, n in names.items() if counts[n.lower()] > 1)
            raise ExpokitError(f"cannot give distinct output names to: {', '.join(clash)}")
    if layout == "msec":
        ordered = sorted(names.values())
        for shorter, longer in itertools.pairwise(ordered):
            if longer.startswith(shorter):
                raise ExpokitError(
                    f"msec names {shorter!r} and {longer!r}: one is a prefix of the other, "
                    "which MSEC's <name>* globbing cannot tell apart"
                )
    return names


def _name_at_depth(path: Path, depth: int, layout: str) -> str:
    parts = (
        [*path.parent.parts[len(path.parent.parts) - depth :], path.stem] if depth else [path.stem]
    )
    if layout == "msec":
        unique = "-".join(_clean(p).replace("_", "-") for p in parts)
        return f"{unique}_{path.suffix.lstrip('.').upper() or 'RAW'}"
    return "-".join(_clean(p) for p in parts)


def output_relpath(name: str, ev: float, fmt: OutputFormat, layout: str) -> str:
    """Path, relative to the output root, of the render of ``name`` at ``ev`` in ``fmt``."""
    token = ev_token(ev)
    if layout == "msec":
        return f"INPUT_IMAGES/{name}_{token}.JPG"
    return f"{name}/{name}_{token}{fmt.suffix}"


def gt_relpath(name: str, layout: str) -> str | None:
    """Ground-truth path relative to the output root (``msec`` layout only)."""
    return f"GT_IMAGES/{name}.jpg" if layout == "msec" else None
