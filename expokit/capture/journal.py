"""The session journal: an append-only JSON-lines file that survives crashes.

Every event is one line, written with a single ``write`` on an ``O_APPEND`` descriptor and
fsynced before :meth:`Journal.append` returns, so a crash loses at most the event being
written. A torn last line (power loss mid-write) is terminated, never rewritten, when the
journal is reopened, and readers skip it; nothing in the file is ever modified.

Events (``event`` field): ``session_started``, ``session_resumed``, ``settings_applied``,
``planned``, ``triggered``, ``file_added``, ``downloaded``, ``exif_check``, ``retry``,
``error``, ``reconnected``, ``shot_done``, ``command_finished``.

A ``file`` field names a file in the session's ``files/`` folder (beside the journal).
:func:`read_journal` refuses a journal whose ``file`` would leave that folder (``..``, an
absolute path, a symlink pointing out), naming the journal and the line, so no reader of
a journal (resume, ``curate build``, ``calibrate pair-stills``) opens a file outside it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from expokit.core.paths import PathEscapeError, resolve_inside

#: Folder beside the journal that its ``file`` fields are relative to.
FILES_DIR = "files"


class Journal:
    """Append-only, fsynced JSON-lines log. Thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        existing, _ = read_journal(self.path) if self.path.exists() else ([], 0)
        self._seq = max((int(e.get("seq", 0)) for e in existing), default=0)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if self.path.stat().st_size and not _ends_with_newline(self.path):
            os.write(self._fd, b"\n")  # terminate a torn line left by a crash
            os.fsync(self._fd)

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one event (with ``seq``, wall and monotonic time) and fsync; return it."""
        with self._lock:
            self._seq += 1
            entry = {
                "seq": self._seq,
                "event": event,
                "t_wall": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
                "t_mono": time.monotonic(),
                **fields,
            }
            line = (json.dumps(entry, default=str, sort_keys=False) + "\n").encode()
            os.write(self._fd, line)
            os.fsync(self._fd)
            return entry

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def read_journal(path: str | Path) -> tuple[list[dict[str, Any]], int]:
    """All complete events of a journal and the number of unreadable (torn) lines skipped.

    Raises
    ------
    PathEscapeError
        An event's ``file`` is not a path inside the session's ``files/`` folder; the
        message names the journal and the line.
    """
    journal = Path(path)
    files_dir = journal.parent / FILES_DIR
    events: list[dict[str, Any]] = []
    skipped = 0
    with journal.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                skipped += 1  # torn last line: the process died mid-write
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                skipped += 1
                continue
            if isinstance(entry, dict) and "event" in entry:
                if "file" in entry:
                    _check_file_field(entry["file"], files_dir, journal, line_number)
                events.append(entry)
            else:
                skipped += 1
    return events, skipped


def _check_file_field(value: object, files_dir: Path, journal: Path, line_number: int) -> None:
    try:
        if not isinstance(value, str):
            raise PathEscapeError(f"file {value!r} is not text")
        resolve_inside(files_dir, value, "file")
    except PathEscapeError as exc:
        raise PathEscapeError(
            f"{journal}, line {line_number}: {exc}; the journal may only name files inside "
            f"{files_dir}"
        ) from None
