"""The session journal: an append-only JSON-lines file that survives crashes.

Every event is one line, written with a single ``write`` on an ``O_APPEND`` descriptor and
fsynced before :meth:`Journal.append` returns, so a crash loses at most the event being
written. A torn last line (power loss mid-write) is terminated, never rewritten, when the
journal is reopened, and readers skip it; nothing in the file is ever modified.

Events (``event`` field): each kind is one payload class (:data:`PAYLOADS`: a frozen
dataclass of what the event records, e.g. :class:`Downloaded`), and :data:`EVENTS` is made
from them. :meth:`Journal.append` takes one payload, so no writer can invent a kind or
misspell a field a reader needs; the line is the header (``seq``, ``event``, ``t_wall``,
``t_mono``) then the payload's fields in class order.

:func:`read_events` is the one reader: each line becomes a typed record, the header plus
the same payload class (:class:`PlannedEvent`, :class:`TriggeredEvent`,
:class:`DownloadedEvent`, :class:`ExifCheckEvent`, :class:`ShotDoneEvent`, else a plain
:class:`JournalEvent`) whose fields are checked on load against the payload's annotations;
a line lacking a field its kind needs (a ``downloaded`` event without ``index``) raises
:class:`JournalError` naming the journal, the line and the field.
Session resume, ``calibrate pair-stills`` and ``curate build`` all read through it;
:func:`read_journal` gives the same validated events as dicts.

A ``file`` field names a file in the session's ``files/`` folder (beside the journal).
:func:`read_journal` refuses a journal whose ``file`` would leave that folder (``..``, an
absolute path, a symlink pointing out), naming the journal and the line, so no reader of
a journal (resume, ``curate build``, ``calibrate pair-stills``) opens a file outside it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import threading
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

from expokit.core.errors import InputFileError
from expokit.core.paths import PathEscapeError, resolve_inside

#: Folder beside the journal that its ``file`` fields are relative to.
FILES_DIR = "files"


def _omitted(default: Any = None) -> Any:
    """A payload field left out of the written line while it holds ``default`` (the
    writers that predate typed payloads did not write it then)."""
    return field(default=default, metadata={"omit_if_default": True})


@dataclass(frozen=True, kw_only=True)
class JournalPayload:
    """What one journal event records besides its header (seq, event, t_wall, t_mono).

    Each subclass is one kind of :data:`EVENTS` (its ``EVENT``); fields without a default
    must be written, fields declared with ``_omitted`` are left out of the line while they
    hold their default, and the line's keys follow the field order.
    """

    EVENT: ClassVar[str] = ""

    def fields(self) -> dict[str, Any]:
        """The event's fields in line order, defaults of omittable fields left out."""
        out: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.metadata.get("omit_if_default") and value == item.default:
                continue
            out[item.name] = value
        return out


@dataclass(frozen=True, kw_only=True)
class ShotPayload(JournalPayload):
    """An event about one planned shot (``index``, 1-based)."""

    index: int


@dataclass(frozen=True, kw_only=True)
class SessionStarted(JournalPayload):
    """A session folder was created: its name and the resolved rig (``rig.json``)."""

    EVENT: ClassVar[str] = "session_started"
    session: str
    rig: dict[str, Any]
    simulated: bool = _omitted(False)


@dataclass(frozen=True, kw_only=True)
class SessionResumed(JournalPayload):
    """A session was reopened; ``stale_temp_removed`` temporary files of killed runs deleted."""

    EVENT: ClassVar[str] = "session_resumed"
    session: str
    stale_temp_removed: int


@dataclass(frozen=True, kw_only=True)
class SettingsApplied(ShotPayload):
    """A role's settings were applied; ``mismatches`` what the camera read back otherwise."""

    EVENT: ClassVar[str] = "settings_applied"
    role: str
    settings: dict[str, Any]
    mismatches: list[Any]
    #: The body's model as the camera reports it (gphoto2's summary), for the dataset card.
    camera: str | None = _omitted()


@dataclass(frozen=True, kw_only=True)
class Planned(ShotPayload):
    """A shot was planned: its kind and, per role, ``{"ev": float, "settings": {...}}``."""

    EVENT: ClassVar[str] = "planned"
    kind: str
    roles: dict[str, dict[str, Any]]
    seconds: float | None = None

    def role_ev(self, role: str) -> float | None:
        """Planned EV of ``role`` (``None`` when the plan has none)."""
        ev = self.roles.get(role, {}).get("ev")
        return None if ev is None else float(ev)


@dataclass(frozen=True, kw_only=True)
class Triggered(ShotPayload):
    """A camera fired (monotonic ``t_*`` s, ``wall_before`` ISO or epoch, ``movie``)."""

    EVENT: ClassVar[str] = "triggered"
    role: str
    t_before: float
    t_after: float | None = _omitted()
    wall_before: str | float | None = _omitted()
    attempt: int | None = _omitted()
    trigger: str | None = _omitted()
    movie: str | None = _omitted()
    simulated: bool = _omitted(False)


@dataclass(frozen=True, kw_only=True)
class FileAdded(ShotPayload):
    """A camera reported a new file (``camera_file``, its path on the camera)."""

    EVENT: ClassVar[str] = "file_added"
    role: str
    camera_file: str


@dataclass(frozen=True, kw_only=True)
class Downloaded(ShotPayload):
    """A shot's file is in ``files/<file>`` (``recovered``: adopted after a crash)."""

    EVENT: ClassVar[str] = "downloaded"
    role: str
    file: str
    size: int | None = _omitted()
    sha256: str | None = _omitted()
    camera_file: str | None = _omitted()
    attempts: int | None = _omitted()
    synchronized: bool | None = _omitted()
    recovered: bool = _omitted(False)


@dataclass(frozen=True, kw_only=True)
class ExifCheck(ShotPayload):
    """What EXIF says the camera did (``ok``: ``False`` on a mismatch, ``None`` unknown)."""

    EVENT: ClassVar[str] = "exif_check"
    role: str
    file: str | None = None
    ok: bool | None = None
    exif: dict[str, Any] | None = None
    mismatches: list[Any] = field(default_factory=list)
    unchecked: list[Any] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Retry(ShotPayload):
    """An operation is retried after ``error`` (camera ``code``) in ``pause_s`` seconds."""

    EVENT: ClassVar[str] = "retry"
    role: str
    error: str
    code: int | None
    attempt: int
    pause_s: float


@dataclass(frozen=True, kw_only=True)
class Error(ShotPayload):
    """An operation failed (``kind`` ``disconnected``: the camera went away)."""

    EVENT: ClassVar[str] = "error"
    role: str
    error: str
    attempt: int | None = _omitted()
    kind: str | None = _omitted()


@dataclass(frozen=True, kw_only=True)
class Reconnected(JournalPayload):
    """A camera came back on another ``port``."""

    EVENT: ClassVar[str] = "reconnected"
    role: str
    port: str


@dataclass(frozen=True, kw_only=True)
class ShotDone(ShotPayload):
    """Every role of shot ``index`` is downloaded (``adopted``: all from a crashed run)."""

    EVENT: ClassVar[str] = "shot_done"
    adopted: bool = _omitted(False)
    scene_time_s: float | None = _omitted()


@dataclass(frozen=True, kw_only=True)
class CommandFinished(JournalPayload):
    """A shooting command ended: shots done and the indices of the failed ones."""

    EVENT: ClassVar[str] = "command_finished"
    kind: str
    shots_done: int
    shots_failed: list[int]


@dataclass(frozen=True, kw_only=True)
class RigCalibrated(JournalPayload):
    """Align live's calibrate key calibrated the rig (record: ``calibration``)."""

    EVENT: ClassVar[str] = "rig_calibrated"
    shots: list[int]
    calibration: str
    flip: str
    method: str
    inliers: int
    reprojection_rms: float
    parallax_px: float | None


@dataclass(frozen=True, kw_only=True)
class CalibrationFailed(JournalPayload):
    """Align live's calibrate key failed (``error``, one line)."""

    EVENT: ClassVar[str] = "calibration_failed"
    shots: list[int]
    error: str


#: The payload class of every kind of journal event.
PAYLOADS: tuple[type[JournalPayload], ...] = (
    SessionStarted, SessionResumed, SettingsApplied, Planned, Triggered, FileAdded,
    Downloaded, ExifCheck, Retry, Error, Reconnected, ShotDone, CommandFinished,
    RigCalibrated, CalibrationFailed,
)  # fmt: skip

#: Every kind of journal event, with what it records (from its payload class, so the two
#: cannot drift).
EVENTS: dict[str, str] = {
    payload.EVENT: (payload.__doc__ or "").strip().splitlines()[0]
    + f" ({', '.join(f.name for f in dataclasses.fields(payload))})"
    for payload in PAYLOADS
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

    def append(self, payload: JournalPayload) -> dict[str, Any]:
        """Write one event (with ``seq``, wall and monotonic time) and fsync; return it.

        Raises
        ------
        ValueError
            ``payload`` is not of a kind of :data:`EVENTS` (a programming error).
        """
        if type(payload) not in PAYLOADS:
            raise ValueError(
                f"unknown journal event payload {type(payload).__name__} "
                f"(events: {', '.join(EVENTS)})"
            )
        with self._lock:
            self._seq += 1
            entry = {
                "seq": self._seq,
                "event": payload.EVENT,
                "t_wall": dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"),
                "t_mono": time.monotonic(),
                **payload.fields(),
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
    """One journal line: its header (kind, sequence number, wall and monotonic time), its
    line number and all its fields (``data``)."""

    event: str
    seq: int = 0
    t_wall: str | None = None
    t_mono: float | None = None
    line: int = 0
    data: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, kw_only=True)
class ShotEvent(JournalEvent, ShotPayload):
    """A read event about one planned shot (``index``)."""


@dataclass(frozen=True, kw_only=True)
class PlannedEvent(ShotEvent, Planned):
    """A read ``planned`` line: header + :class:`Planned`."""


@dataclass(frozen=True, kw_only=True)
class TriggeredEvent(ShotEvent, Triggered):
    """A read ``triggered`` line: header + :class:`Triggered`."""


@dataclass(frozen=True, kw_only=True)
class DownloadedEvent(ShotEvent, Downloaded):
    """A read ``downloaded`` line: header + :class:`Downloaded`."""


@dataclass(frozen=True, kw_only=True)
class ExifCheckEvent(ShotEvent, ExifCheck):
    """A read ``exif_check`` line: header + :class:`ExifCheck`."""


@dataclass(frozen=True, kw_only=True)
class ShotDoneEvent(ShotEvent, ShotDone):
    """A read ``shot_done`` line: header + :class:`ShotDone`."""


#: The typed record of each kind whose fields readers use; other kinds are read as a plain
#: :class:`JournalEvent` (their fields in ``data``).
RECORDS: dict[str, type[JournalEvent]] = {
    record.EVENT: record
    for record in (PlannedEvent, TriggeredEvent, DownloadedEvent, ExifCheckEvent, ShotDoneEvent)
}

_HEADER = frozenset(f.name for f in dataclasses.fields(JournalEvent))
_MISSING = object()
_TYPE_WORDS: dict[type, str] = {
    int: "an integer", float: "a number", str: "text", bool: "true or false",
    dict: "a table", list: "a list",
}  # fmt: skip


def _declared_types(hint: Any) -> tuple[type, ...]:
    """The runtime types a payload field's annotation allows (``dict[str, Any]``: dict)."""
    if get_origin(hint) in (Union, types.UnionType):
        return tuple(kind for arg in get_args(hint) for kind in _declared_types(arg))
    if hint is Any:
        return (object,)
    if hint is None or hint is type(None):
        return (type(None),)
    origin = get_origin(hint)
    return (origin if isinstance(origin, type) else hint,)


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

    def payload(self, record: type[JournalEvent]) -> dict[str, Any]:
        """The payload fields of ``record`` from this line, each checked against its
        annotation (required ones present, required text not empty); an absent or null
        optional field keeps its default."""
        hints = get_type_hints(record)
        out: dict[str, Any] = {}
        for item in dataclasses.fields(record):
            if item.name in _HEADER:
                continue
            required = (
                item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
            )
            if item.name == "index":
                out["index"] = self.index()
                continue
            declared = _declared_types(hints[item.name])
            accepted = declared + ((int,) if float in declared else ())  # JSON 1 is 1.0
            what = " or ".join(_TYPE_WORDS[k] for k in declared if k in _TYPE_WORDS)
            value = self.get(item.name, accepted, what or "a value", required)
            if value is None and not required:
                continue
            if declared == (str,) and required and not value:
                raise self.fail(item.name, "is empty")
            if isinstance(value, int) and not isinstance(value, bool) and int not in declared:
                value = float(value)
            out[item.name] = value
        return out


def parse_event(entry: dict[str, Any], journal: Path, line: int) -> JournalEvent:
    """One journal line (a JSON object with an ``event`` field) as its typed record.

    Kinds other than those of :data:`RECORDS` (which no reader needs fields of) become a
    plain :class:`JournalEvent`.

    Raises
    ------
    JournalError
        A field the kind needs is missing or has the wrong type.
    """
    fields = _Fields(entry, journal, line)
    event = fields.text("event")
    seq = fields.get("seq", int, "an integer", False) or 0
    t_wall = fields.get("t_wall", str, "ISO date-time text", False)
    t_mono = fields.get("t_mono", (int, float), "a number", False)
    header: dict[str, Any] = {"event": event, "seq": seq, "t_wall": t_wall, "t_mono": t_mono,
                              "line": line, "data": entry}  # fmt: skip
    record = RECORDS.get(event)
    if record is None:
        return JournalEvent(**header)
    payload = fields.payload(record)
    if record is PlannedEvent:
        for role, plan in payload["roles"].items():
            if not isinstance(plan, dict):
                raise fields.fail(f"roles.{role}", f"= {plan!r} must be a table (ev, settings)")
            ev = plan.get("ev")
            if ev is not None and (isinstance(ev, bool) or not isinstance(ev, int | float)):
                raise fields.fail(f"roles.{role}.ev", f"= {ev!r} must be a number")
    return record(**header, **payload)


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
