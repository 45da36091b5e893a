"""One path policy for every file expokit reads or writes below a root folder.

Three rules, applied where paths enter (configs, manifests, journals, names) and again
where files are opened:

1. **Names that become path components** (scene ids, clip ids, split names, session
   names, template fields) match :data:`SAFE_NAME`: letters, digits, ``.``, ``_`` and
   ``-``, starting with a letter or digit, at most 128 characters. ``..``, ``/``, ``\\``,
   NUL and whitespace can therefore never reach a path. :func:`check_name` enforces it.
2. **Relative paths from data** (manifest columns, export records, journals) are POSIX,
   relative, without ``..`` and, once resolved with symlinks followed, still inside their
   root: :func:`resolve_inside`. A symlink whose target leaves the root is refused; a
   symlink that stays inside is allowed.
3. **Output paths given by a person** (``--out``, ``--json``) may not be one of the
   command's own inputs nor a file that an expokit root tracks: :func:`check_output_file`;
   output folders are placed against the data they must not mix with by
   :func:`output_folder_placement`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from expokit.core.errors import ExpokitError, OutputError
from expokit.core.roots import is_expokit_root

#: Names that become one path component.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

#: Files inside an expokit root that no ``--out``/``--json`` path may replace.
TRACKED_ROOT_FILES = (
    "manifest.parquet",
    "meta/info.json",
    "journal.jsonl",
    "rig.json",
    "export.json",
    "render_params.json",
    "rig_calibration.json",
)
#: Folders of an expokit root whose files are data, never report outputs.
TRACKED_ROOT_FOLDERS = ("images", "files", ".expokit", "INPUT_IMAGES", "GT_IMAGES", "np")


class UnsafeNameError(ExpokitError):
    """A name that would become a path component contains characters outside SAFE_NAME."""


class PathEscapeError(ExpokitError):
    """A path from data or a config leaves its root (``..``, absolute, or a symlink)."""


def is_safe_name(value: object) -> bool:
    """True when ``value`` is a str that may become one path component."""
    return (
        isinstance(value, str)
        and SAFE_NAME.fullmatch(value) is not None
        and value
        not in {
            ".",
            "..",
        }
    )


def check_name(value: object, what: str, *, where: str = "") -> str:
    """Return ``value`` when it is a safe path component, else raise :class:`UnsafeNameError`.

    Parameters
    ----------
    value
        The candidate name (scene id, split, clip id, session name, ...).
    what
        What the name is, for the message (``"split name"``).
    where
        Where it came from (a file, an option), for the message.
    """
    if is_safe_name(value):
        return str(value)
    origin = f" in {where}" if where else ""
    raise UnsafeNameError(
        f"{what} {value!r}{origin} is not allowed: use letters, digits, '.', '_' and '-' "
        "(starting with a letter or digit, at most 128 characters)"
    )


def safe_component(text: str, fallback: str = "x") -> str:
    """``text`` turned into a safe path component (unsafe runs become ``-``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    cleaned = re.sub(r"^[._-]+", "", cleaned)[:128]
    return cleaned if is_safe_name(cleaned) else fallback


def check_relative(value: object, what: str = "path") -> PurePosixPath:
    """``value`` as a relative POSIX path without ``..``, absolute parts, NUL or backslashes."""
    if not isinstance(value, str) or not value:
        raise PathEscapeError(f"{what} {value!r} is empty or not text")
    if "\x00" in value:
        raise PathEscapeError(f"{what} {value!r} contains a NUL byte")
    pure = PurePosixPath(value)
    if pure.is_absolute() or "\\" in value or (len(value) > 1 and value[1] == ":"):
        raise PathEscapeError(f"{what} {value!r} is absolute; it must be relative to its root")
    if ".." in pure.parts:
        raise PathEscapeError(f"{what} {value!r} leaves its root ('..')")
    return pure


def resolve_inside(root: str | Path, relative: str | Path, what: str = "path") -> Path:
    """Absolute path of ``relative`` below ``root`` after following symlinks.

    The path need not exist. Raises :class:`PathEscapeError` when it is absolute, holds
    ``..``, or resolves (through a symlink anywhere along it) outside ``root``.
    """
    text = relative.as_posix() if isinstance(relative, Path) else relative
    pure = check_relative(text, what)
    base = Path(root).resolve()
    candidate = base.joinpath(*pure.parts)
    resolved = candidate.resolve()
    if resolved != base and not resolved.is_relative_to(base):
        raise PathEscapeError(
            f"{what} {str(relative)!r} resolves to {resolved}, outside {base} (a symlink leaves "
            "the folder); expokit only follows links that stay inside it"
        )
    return candidate


def symlinks_leaving(root: str | Path) -> list[Path]:
    """Every symlink below ``root`` whose target resolves outside it (sorted)."""
    base = Path(root).resolve()
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            if path.is_symlink():
                target = path.resolve()
                if target != base and not target.is_relative_to(base):
                    found.append(path)
    return sorted(found)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def find_root_above(path: Path) -> Path | None:
    """The nearest folder at or above ``path`` that is an expokit root (dataset, render,
    export, session), or ``None``."""
    for folder in [path, *path.parents]:
        if folder.is_dir() and is_expokit_root(folder):
            return folder
    return None


def check_output_file(
    path: str | Path,
    *,
    inputs: Iterable[str | Path] = (),
    what: str = "output file",
    is_own_output: Callable[[Path], bool] | None = None,
) -> Path:
    """Check that writing ``path`` cannot destroy data; return it.

    Refused, with :class:`OutputError`:

    * ``path`` is one of ``inputs`` (same file, through any link);
    * ``path`` is a folder, or a file an expokit root tracks (its manifest, info.json,
      journal, rig.json, export record, a file under ``images/``, ``files/``, ...);
    * ``path`` exists and ``is_own_output(path)`` is not true (the file is not an earlier
      output of the same command, so it may be something a person needs).
    """
    target = Path(path)
    for source in inputs:
        if _same_file(target, Path(source)):
            raise OutputError(f"{what} {target} is one of this command's inputs; choose another")
    if target.is_dir():
        raise OutputError(f"{what} {target} is a folder; give a file name")
    resolved = target.resolve()
    root = find_root_above(resolved.parent)
    if root is not None:
        rel = resolved.relative_to(root.resolve()).as_posix()
        tracked = rel in TRACKED_ROOT_FILES or rel.split("/", 1)[0] in TRACKED_ROOT_FOLDERS
        if tracked:
            raise OutputError(
                f"{what} {target} is a file of the expokit folder {root} ({rel}); "
                "choose a path outside its tracked files"
            )
    if target.exists() and (is_own_output is None or not is_own_output(target)):
        raise OutputError(
            f"{what} {target} exists and is not an earlier output of this command; "
            "remove it or choose another path"
        )
    return target


@dataclass(frozen=True)
class FolderPlacement:
    """Where an output folder lies relative to a root folder (both resolved).

    Attributes
    ----------
    relation
        ``"same"`` (the root itself), ``"inside"`` (below the root), ``"holds"`` (the root
        lies below it) or ``"apart"``.
    inside
        For ``"inside"``: the output folder relative to the root (its first part says which
        of the root's folders it is in); else None.
    """

    relation: Literal["same", "inside", "holds", "apart"]
    inside: PurePosixPath | None = None


def output_folder_placement(out: str | Path, root: str | Path) -> FolderPlacement:
    """Where output folder ``out`` lies relative to ``root`` (e.g. a dataset).

    The one rule for output folders given by a person: both paths are resolved (symlinks
    followed) before they are compared, so a link to the root or into it is caught. Each
    command decides what it refuses (an export may go to a folder of its own inside a
    dataset, a training run may not) and words its own message.

    Parameters
    ----------
    out
        The output folder (need not exist yet).
    root
        The folder it must not mix with.

    Returns
    -------
    FolderPlacement
        ``same``, ``inside`` (with the relative path), ``holds`` or ``apart``.
    """
    target, base = Path(out).resolve(), Path(root).resolve()
    if target == base:
        return FolderPlacement("same")
    if target.is_relative_to(base):
        return FolderPlacement("inside", PurePosixPath(target.relative_to(base).as_posix()))
    if base.is_relative_to(target):
        return FolderPlacement("holds")
    return FolderPlacement("apart")
