"""Atomic, durable file writes: write a temporary file beside the target, fsync, rename.

A process killed at any point leaves either the old file or the complete new one, never a
partial file. Temporary files carry :data:`TEMP_PREFIX` so a later run can remove leftovers
(:func:`remove_stale_temp_files`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from expokit.core.errors import OutputError, is_disk_full

TEMP_PREFIX = ".~expokit-"


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not supported on every platform/filesystem.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def describe_os_error(exc: OSError, path: Path) -> str:
    """One-line, user-facing description of a failed write to ``path``."""
    if is_disk_full(exc):
        return f"disk full while writing {path}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {path}: permission denied or read-only file system"
    if exc.errno == errno.ENOTDIR:
        return f"cannot write {path}: a parent of it is a file, not a folder"
    return f"cannot write {path}: {exc.strerror or exc}"


@contextlib.contextmanager
def atomic_path(path: str | Path, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    Missing parent folders are created. The temporary name keeps the target's extension
    (encoders such as ``cv2.imwrite`` pick the format from it). On any exception the
    temporary file is removed and ``path`` is untouched. ``OSError`` from writing is
    re-raised as :class:`OutputError` with a clear message (disk full, read-only, ...).
    """
    target = Path(path)
    # The writer's pid in the name lets a later cleanup spare files of live writers.
    tmp = target.with_name(f"{TEMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}-{target.name}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        tmp.replace(target)
        if durable:
            _fsync_dir(target.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError(describe_os_error(exc, target)) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, durable) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str, durable: bool = True) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), durable)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) as ``None``, so it is strict JSON."""
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def atomic_write_json(path: str | Path, obj: Any, durable: bool = True) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", durable)


def read_json_object(path: str | Path) -> dict[str, Any] | None:
    """The JSON object stored in ``path``, or ``None`` when it is missing, unreadable or not an
    object (callers then redo the work the file would have recorded)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def temp_file_writer(name: str) -> int | None:
    """The pid embedded in a temporary file name, or ``None`` (older names carry none)."""
    head = name[len(TEMP_PREFIX) :].split("-", 1)[0]
    return int(head) if name.startswith(TEMP_PREFIX) and head.isdigit() else None


def remove_stale_temp_files(root: str | Path) -> int:
    """Delete temporary files left below ``root`` by killed runs; return how many.

    Files of writers that are still alive (their pid is in the name) are kept, so a
    cleanup never deletes another run's in-flight file. Symlinks are never followed.
    """
    removed = 0
    for tmp in Path(root).rglob(f"{TEMP_PREFIX}*"):
        if tmp.is_symlink() or not tmp.is_file():
            continue
        pid = temp_file_writer(tmp.name)
        if pid is not None and _pid_alive(pid):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed += 1
    return removed


def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` if needed and prove it is writable by writing a probe file.

    Raises
    ------
    OutputError
        If ``path`` is a file, cannot be created, or cannot be written.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output folder {folder} exists and is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f"{TEMP_PREFIX}probe-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(
            f"output folder {folder} is not usable: {describe_os_error(exc, folder)}"
        ) from exc
    return folder
