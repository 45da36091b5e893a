"""One writer per root: an advisory lock file, released by the OS when its process dies.

``.expokit/lock`` is locked with ``flock`` (``msvcrt.locking`` on Windows) for as long as
the command runs, and holds who took it (pid, host, command, time) so a second writer is
told ``"<root> is in use by pid N (expokit curate build) since T"``. A process killed with
``kill -9`` loses its lock at once (the kernel drops it), so a stale lock file is simply
taken over: no pid guessing, no manual cleanup.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import sys
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from expokit.core.errors import ExpokitError

LOCK_FILE = ".expokit/lock"

#: Descriptors of the locks this process holds (see :func:`_drop_locks_in_child`).
_HELD: set[int] = set()


def _drop_locks_in_child() -> None:
    """After ``fork``: point the child's copies of held lock descriptors at ``/dev/null``.

    ``flock`` belongs to the open file, which a forked child (a DataLoader or pool worker)
    shares; a child that outlives its parent's ``kill -9`` by a second would keep the root
    locked and refuse an immediate resume. Unlocking would unlock the parent too, so the
    child's descriptor is replaced instead; the parent keeps its lock.
    """
    if not _HELD:
        return
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in list(_HELD):
            with contextlib.suppress(OSError):
                os.dup2(null, fd)
    finally:
        os.close(null)
    _HELD.clear()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_drop_locks_in_child)


class RootInUseError(ExpokitError):
    """Another process holds the root's lock."""


def _try_lock(handle: IO[bytes]) -> bool:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _unlock(handle: IO[bytes]) -> None:
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        with contextlib.suppress(OSError):
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    with contextlib.suppress(OSError):
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def lock_holder(root: str | Path) -> dict[str, Any] | None:
    """What the lock file of ``root`` says about its last holder (may be stale)."""
    try:
        data = json.loads((Path(root) / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class RootLock:
    """Exclusive lock on a root folder for one command; a context manager.

    Parameters
    ----------
    root
        The folder (created if missing).
    purpose
        What the holder does, shown to a second writer (``"expokit curate build"``).

    Raises
    ------
    RootInUseError
        On enter, when another live process holds the lock.
    """

    def __init__(self, root: str | Path, purpose: str) -> None:
        self.root = Path(root)
        self.purpose = purpose
        self._handle: IO[bytes] | None = None

    @property
    def path(self) -> Path:
        return self.root / LOCK_FILE

    def acquire(self) -> RootLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Opened without truncation: the holder's record must survive a failed attempt.
        handle = open(self.path, "a+b")  # noqa: SIM115 - held open for the lock's lifetime
        if not _try_lock(handle):
            handle.close()
            holder = lock_holder(self.root) or {}
            raise RootInUseError(
                f"{self.root} is in use by pid {holder.get('pid', '?')} "
                f"({holder.get('purpose', 'another expokit command')}"
                f"{' on ' + str(holder['host']) if holder.get('host') else ''}) since "
                f"{holder.get('since', '?')}; wait for it to finish or stop it"
            )
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "purpose": self.purpose,
            "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(record).encode())
        handle.flush()
        self._handle = handle
        _HELD.add(handle.fileno())
        return self

    def release(self) -> None:
        if self._handle is None:
            return
        _HELD.discard(self._handle.fileno())
        _unlock(self._handle)
        self._handle.close()
        self._handle = None

    def __enter__(self) -> RootLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
