"""Folders expokit owns: a marker file says which kind of root a folder is.

Every command that writes a tree of files (a capture session, a render folder, a dataset,
an export) claims its output folder first with :func:`claim_root`:

* a new or empty folder gets the marker ``.expokit/root.json`` (``{"kind": ...}``);
* a folder with a marker of the same kind is reused (re-runs update it);
* a folder with another kind's marker, or a non-empty folder without a marker, is refused,
  so expokit never writes into (or cleans up) a folder it did not make.

Folders made by expokit before markers existed are recognised by their own files
(``legacy`` names, e.g. ``meta/info.json`` for a dataset) and adopted.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from expokit import __version__
from expokit.core.atomic import TEMP_PREFIX, atomic_write_json
from expokit.core.errors import OutputError

RootKind = Literal[
    "dataset", "render", "export", "session", "calibration", "simulation", "run", "inference",
    "evaluation",
]  # fmt: skip
STATE_DIR = ".expokit"
MARKER_FILE = f"{STATE_DIR}/root.json"

#: Files by which roots written before the marker existed are recognised.
LEGACY_MARKERS: dict[str, tuple[str, ...]] = {
    "dataset": ("meta/info.json", ".expokit/records"),
    "render": ("render_params.json",),
    "export": ("export.json",),
    "session": ("rig.json", "journal.jsonl"),
    "calibration": ("rig_calibration.json",),
    "simulation": ("truth.json",),
    "run": (),  # training runs (expokit train) always had a marker
    "inference": (),  # expokit infer output folders always had a marker
    "evaluation": (),  # expokit eval output folders always had a marker
}


def root_kind(folder: str | Path) -> str | None:
    """The kind recorded in ``folder``'s marker, or ``None`` (no marker or unreadable)."""
    try:
        data = json.loads((Path(folder) / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kind = data.get("kind") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else None


def is_expokit_root(folder: str | Path) -> bool:
    """True when ``folder`` has a marker or the files of a legacy expokit root."""
    path = Path(folder)
    if root_kind(path) is not None:
        return True
    return any((path / name).exists() for names in LEGACY_MARKERS.values() for name in names[:1])


def _visible_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(TEMP_PREFIX))


def claim_root(
    folder: str | Path,
    kind: RootKind,
    *,
    legacy: Sequence[str] | None = None,
    what: str = "output folder",
) -> Path:
    """Make ``folder`` an expokit root of ``kind`` or prove it already is one; return it.

    Parameters
    ----------
    folder
        The output folder (created when missing, with its parents).
    kind
        What the folder holds.
    legacy
        File names that identify a root of this kind written before markers existed
        (default: :data:`LEGACY_MARKERS` for ``kind``); any one present adopts the folder.

    Raises
    ------
    OutputError
        ``folder`` is a file, is a symlink, is another kind of expokit root, or is not
        empty and was not made by expokit.
    """
    path = Path(folder)
    if path.is_symlink():
        raise OutputError(f"{what} {path} is a symbolic link; give the real folder")
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} exists and is a file, not a folder")
    found = root_kind(path) if path.is_dir() else None
    if found == kind:
        return path
    if found is not None:
        raise OutputError(
            f"{what} {path} is an expokit {found} folder, not a {kind} folder; "
            "choose another folder"
        )
    if path.is_dir():
        entries = _visible_entries(path)
        names = LEGACY_MARKERS.get(kind, ()) if legacy is None else tuple(legacy)
        adopted = any((path / name).exists() for name in names)
        if entries and not adopted:
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise OutputError(
                f"{what} {path} is not empty and was not made by expokit (it holds {shown}); "
                "choose an empty or new folder"
            )
    _write_marker(path, kind)
    return path


def _write_marker(path: Path, kind: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create the folder: {exc.strerror or exc}") from None
    atomic_write_json(
        path / MARKER_FILE,
        {
            "kind": kind,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "expokit_version": __version__,
        },
    )
