"""The session journal: an append-only JSON-lines file that survives crashes.

Every event is one line, written with a single ``write`` on an ``O_APPEND`` descriptor and
fsynced before :meth:`Journal.append` returns, so a crash loses at most the event being
written. A torn last line (power loss mid-write) is terminated, never rewritten, when the
journal is reopened, and readers skip it; nothing in the file is ever modified.

Events (``event`` field): the names of :data:`EVENTS`, the one list of them;
:meth:`Journal.append` refuses any other, so no writer can invent a kind a reader does not
know.

:func:`read_events` is the one reader: each line becomes a typed record
(:class:`PlannedEvent`, :class:`TriggeredEvent`, :class:`DownloadedEvent`,
:class:`ExifCheckEvent`, :class:`ShotDoneEvent`, else a plain :class:`JournalEvent`) whose
fields are checked on load; a line lacking a field its kind needs (a ``downloaded`` event
without ``index``) raises :class:`JournalError` naming the journal, the line and the field.
Session resume, ``calibrate pair-stills`` and ``curate build`` all read through it;
:func:`read_journal` gives the same validated events as dicts.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expokit.core.errors import InputFileError
from expokit.core.paths import PathEscapeError, resolve_inside

#: Folder beside the journal that its ``file`` fields are relative to.
FILES_DIR = "files"

#: Every kind of journal event, with what it records.
EVENTS: dict[str, str] = {
    "session_started": "a session folder was created (session, rig)",
    "session_resumed": "a session was reopened (session, stale_temp_removed)",
    "settings_applied": "a role's settings were applied and read back (index, role, settings)",
    "planned": "a shot was planned (index, kind, roles, seconds)",
    "triggered": "a camera fired (index, role, wall_before, movie)",
    "file_added": "a camera reported a new file (index, role)",
    "downloaded": "a shot's file is in files/ (index, role, file)",
    "exif_check": "what EXIF says the camera did (index, role, ok, exif, mismatches)",
    "retry": "an operation is retried (index, role, error)",
    "error": "an operation failed for good (index, role, error)",
    "reconnected": "a camera came back on another port (role, port)",
    "shot_done": "every role of a shot is downloaded (index)",
    "command_finished": "a shooting command ended (kind, shots_done, shots_failed)",
    "rig_calibrated": "align live's calibrate key calibrated the rig (shots, calibration, ...)",
    "calibration_failed": "align live's calibrate key failed (shots, error)",
}


class Journal:
    """Append-only, fsynced JSON-lines log. Thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        existing, _ = read_events(self.path) if self.path.exists() else ([], 0)
        self._seq = max((e.seq for e in existing), default=0)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if self.path.stat().st_size and not _ends_with_newline(self.path):
            os.write(self._fd, b"\n")  # terminate a torn line left by a crash
            os.fsync(self._fd)

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one event (with ``seq``, wall and monotonic time) and fsync; return it.

        Raises
        ------
        ValueError
            ``event`` is not one of :data:`EVENTS` (a programming error).
        """
        if event not in EVENTS:
            raise ValueError(f"unknown journal event {event!r} (events: {', '.join(EVENTS)})")
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
    """All complete events of a journal as dicts and the number of torn lines skipped.

    The same reader as :func:`read_events` (every event validated), for callers that want
    the journal's own fields; :attr:`JournalEvent.data` of each typed event.
    """
    events, skipped = read_events(path)
    return [event.data for event in events], skipped


def read_events(path: str | Path) -> tuple[list[JournalEvent], int]:
    """All complete events of a journal as typed records, and the number of unreadable
    (torn) lines skipped.

    A line that is not a JSON object with an ``event`` field is skipped as torn (a crash
    mid-write); a line that is one, but lacks a field its kind needs or has one of the
    wrong type, is refused: the journal was damaged or edited, and guessing would pair the
    wrong files.

    Raises
    ------
    JournalError
        Naming the journal, the line, the event and the field.
    PathEscapeError
        An event's ``file`` is not a path inside the session's ``files/`` folder; the
        message names the journal and the line.
    """
    journal = Path(path)
    files_dir = journal.parent / FILES_DIR
    events: list[JournalEvent] = []
    skipped = 0
    try:
        with journal.open("rb") as handle:
            lines = list(handle)
    except OSError as exc:
        raise JournalError(journal, f"cannot read: {exc.strerror or exc}") from None
    for line_number, raw in enumerate(lines, start=1):
        if not raw.endswith(b"\n"):
            skipped += 1  # torn last line: the process died mid-write
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            skipped += 1
            continue
        if not isinstance(entry, dict) or "event" not in entry:
            skipped += 1
            continue
        if "file" in entry:
            _check_file_field(entry["file"], files_dir, journal, line_number)
        events.append(parse_event(entry, journal, line_number))
    return events, skipped


class JournalError(InputFileError):
    """A journal line has a missing or wrong-typed field; names the file, line and field."""


@dataclass(frozen=True, kw_only=True)
class JournalEvent:
    """One journal line: its kind, sequence number, wall time and all its fields."""

    event: str
    seq: int = 0
    t_wall: str | None = None
    line: int = 0
    data: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, kw_only=True)
class ShotEvent(JournalEvent):
    """An event about one planned shot (``index``) and, for most kinds, one ``role``."""

    index: int


@dataclass(frozen=True, kw_only=True)
class PlannedEvent(ShotEvent):
    """``planned``: a shot's kind and, per role, ``{"ev": float, "settings": {...}}``."""

    kind: str
    roles: dict[str, dict[str, Any]]
    seconds: float | None = None

    def role_ev(self, role: str) -> float | None:
        """Planned EV of ``role`` (``None`` when the plan has none)."""
        ev = self.roles.get(role, {}).get("ev")
        return None if ev is None else float(ev)


@dataclass(frozen=True, kw_only=True)
class TriggeredEvent(ShotEvent):
    """``triggered``: a camera fired (``movie``: ``start``/``stop`` for video); ``wall_before``
    the host wall time just before the trigger (ISO text or epoch seconds)."""

    role: str
    wall_before: str | float | None = None
    movie: str | None = None


@dataclass(frozen=True, kw_only=True)
class DownloadedEvent(ShotEvent):
    """``downloaded``: the file of ``role`` of shot ``index`` is in ``files/<file>``."""

    role: str
    file: str


@dataclass(frozen=True, kw_only=True)
class ExifCheckEvent(ShotEvent):
    """``exif_check``: what EXIF says the camera did (``exif``) against the request;
    ``ok`` is ``False`` on a mismatch (``mismatches``), ``None`` when unknown."""

    role: str
    ok: bool | None = None
    exif: dict[str, Any] | None = None
    mismatches: list[Any] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class ShotDoneEvent(ShotEvent):
    """``shot_done``: every role of shot ``index`` is downloaded."""


_MISSING = object()


class _Fields:
    """Typed access to one journal line's fields; errors name journal, line, event, field."""

    def __init__(self, entry: dict[str, Any], journal: Path, line: int) -> None:
        self.entry, self.journal, self.line = entry, journal, line

    def fail(self, name: str, problem: str) -> JournalError:
        return JournalError(
            self.journal,
            f"line {self.line} ({self.entry.get('event')!s} event): field '{name}' {problem}",
        )

    def get(self, name: str, kinds: type | tuple[type, ...], what: str, required: bool) -> Any:
        value = self.entry.get(name, _MISSING)
        if value is _MISSING or (value is None and not required):
            if required:
                raise self.fail(name, f"is missing (it must be {what})")
            return None
        if isinstance(value, bool) and bool not in (
            kinds if isinstance(kinds, tuple) else (kinds,)
        ):
            raise self.fail(name, f"= {value!r} must be {what}")
        if not isinstance(value, kinds):
            raise self.fail(name, f"= {value!r} must be {what}")
        return value

    def index(self) -> int:
        value: int = self.get("index", int, "a shot number (an integer >= 1)", True)
        if value < 1:
            raise self.fail("index", f"= {value!r} must be a shot number (an integer >= 1)")
        return value

    def text(self, name: str, required: bool = True) -> Any:
        value = self.get(name, str, "text", required)
        if required and not value:
            raise self.fail(name, "is empty")
        return value


def parse_event(entry: dict[str, Any], journal: Path, line: int) -> JournalEvent:
    """One journal line (a JSON object with an ``event`` field) as its typed record.

    Kinds other than ``planned``, ``triggered``, ``downloaded``, ``exif_check`` and
    ``shot_done`` (which no reader needs fields of) become a plain :class:`JournalEvent`.

    Raises
    ------
    JournalError
        A field the kind needs is missing or has the wrong type.
    """
    fields = _Fields(entry, journal, line)
    event = fields.text("event")
    seq = fields.get("seq", int, "an integer", False) or 0
    t_wall = fields.get("t_wall", str, "ISO date-time text", False)
    base: dict[str, Any] = {"event": event, "seq": seq, "t_wall": t_wall, "line": line,
                            "data": entry}  # fmt: skip
    if event == "planned":
        roles = fields.get("roles", dict, "a table of roles", True)
        for role, plan in roles.items():
            if not isinstance(plan, dict):
                raise fields.fail(f"roles.{role}", f"= {plan!r} must be a table (ev, settings)")
            ev = plan.get("ev")
            if ev is not None and (isinstance(ev, bool) or not isinstance(ev, int | float)):
                raise fields.fail(f"roles.{role}.ev", f"= {ev!r} must be a number")
        seconds = fields.get("seconds", (int, float), "a number of seconds", False)
        return PlannedEvent(
            **base, index=fields.index(), kind=fields.text("kind"), roles=roles,
            seconds=None if seconds is None else float(seconds),
        )  # fmt: skip
    if event == "triggered":
        wall = fields.get("wall_before", (str, int, float), "a time", False)
        return TriggeredEvent(
            **base, index=fields.index(), role=fields.text("role"), wall_before=wall,
            movie=fields.text("movie", required=False),
        )  # fmt: skip
    if event == "downloaded":
        return DownloadedEvent(
            **base, index=fields.index(), role=fields.text("role"), file=fields.text("file")
        )
    if event == "exif_check":
        return ExifCheckEvent(
            **base, index=fields.index(), role=fields.text("role"),
            ok=fields.get("ok", bool, "true or false", False),
            exif=fields.get("exif", dict, "a table", False),
            mismatches=fields.get("mismatches", list, "a list", False) or [],
        )  # fmt: skip
    if event == "shot_done":
        return ShotDoneEvent(**base, index=fields.index())
    return JournalEvent(**base)


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
