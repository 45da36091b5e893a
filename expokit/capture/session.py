"""A capture session: a folder with the resolved rig config, the journal and the files.

Layout::

    <output_root>/<session_id>/
        rig.json          resolved RigConfig (what was really used)
        journal.jsonl     append-only event log (see expokit.capture.journal)
        files/            downloaded images and movies, named by the rig's template
        .expokit/         root marker (kind "session") and the writer's lock

A session is an expokit root: it is created as a new folder (an existing one is never
reused) and an open :class:`Session` holds its :class:`~expokit.core.lock.RootLock` until
:meth:`Session.close`, so a second command writing into it (two ``capture resume``) is
refused with "in use by pid N". Every file name comes from the rig's checked template and
is resolved inside ``files/`` before it is written or read.

The session state (which shots are planned, which role files are downloaded, which shots are
done) is derived from the journal alone, so a session killed at any point can be resumed:
planned shots keep their index, finished downloads are never repeated, and a file that was
written but not yet journaled is adopted rather than overwritten.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expokit.capture.journal import (
    DownloadedEvent,
    Journal,
    Planned,
    PlannedEvent,
    SessionResumed,
    SessionStarted,
    ShotDoneEvent,
    read_events,
)
from expokit.capture.rig_config import RigConfig, read_rig_json
from expokit.core.atomic import atomic_write_json, ensure_writable_dir, remove_stale_temp_files
from expokit.core.errors import ExpokitError, OutputError
from expokit.core.ev import ev_token
from expokit.core.lock import RootLock
from expokit.core.paths import check_name, resolve_inside
from expokit.core.roots import claim_root

#: Shot kinds a session plans. ``calibration``: stills shot for ``expokit calibrate
#: geometry`` (a board or the scene seen by both cameras), never dataset pairs.
SHOT_KINDS: tuple[str, ...] = ("pair", "bracket", "video", "calibration")
CALIBRATION_KIND = "calibration"
CONFIG_FILE = "rig.json"
JOURNAL_FILE = "journal.jsonl"
FILES_DIR = "files"


@dataclass
class ShotPlan:
    """One planned shot: an index and, per role, the EV and the settings to use."""

    index: int
    kind: str
    roles: dict[str, dict[str, Any]]
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "roles": self.roles,
            "seconds": self.seconds,
        }


@dataclass
class SessionState:
    """What the journal says has happened."""

    plans: dict[int, ShotPlan] = field(default_factory=dict)
    downloaded: dict[tuple[int, str], DownloadedEvent] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)
    torn_lines: int = 0

    @property
    def pending(self) -> list[ShotPlan]:
        return [p for i, p in sorted(self.plans.items()) if i not in self.done]

    @property
    def next_index(self) -> int:
        return max(self.plans, default=0) + 1


class Session:
    """An open session folder with its journal and, while open, its root lock."""

    def __init__(
        self, root: Path, config: RigConfig, journal: Journal, lock: RootLock | None = None
    ) -> None:
        self.root = root
        self.config = config
        self.journal = journal
        self.lock = lock

    @property
    def session_id(self) -> str:
        return self.root.name

    @property
    def files_dir(self) -> Path:
        return self.root / FILES_DIR

    @classmethod
    def create(
        cls, config: RigConfig, name: str | None = None, purpose: str = "expokit capture"
    ) -> Session:
        """Make a new, uniquely named session folder under the rig's output root and lock it.

        Parameters
        ----------
        config
            The rig (its ``output_root`` receives the session folder).
        name
            Appended to the time stamp; must be a safe name (``check_name``).
        purpose
            Shown to a second writer that finds the session locked.

        Raises
        ------
        UnsafeNameError
            ``name`` has characters that may not appear in a folder name.
        """
        base = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        if name:
            base = check_name(
                f"{base}-{check_name(name, 'session name', where='--session')}",
                "session folder name",
                where="--session",
            )
        root_dir = ensure_writable_dir(config.output_root)
        root = root_dir / base
        suffix = 1
        while True:  # mkdir without exist_ok: a session folder is never reused
            try:
                root.mkdir()
                break
            except FileExistsError:
                suffix += 1
                root = root_dir / f"{base}-{suffix}"
            except OSError as exc:
                raise OutputError(f"cannot create session folder {root}: {exc}") from None
        return cls.start(root, config, purpose)

    @classmethod
    def start(
        cls,
        root: Path,
        config: RigConfig,
        purpose: str,
        *,
        what: str = "session folder",
        simulated: bool = False,
    ) -> Session:
        """Make the new (or empty) folder ``root`` a locked session: claim it as a session
        root, lock it, make ``files/``, write ``rig.json`` and journal ``session_started``.

        The one session start of :meth:`create` and ``expokit simulate`` (``simulated``:
        journaled as such). On any failure the lock is released before raising.

        Parameters
        ----------
        what
            How an error names the folder (``claim_root``).
        """
        claim_root(root, "session", what=what)
        lock = RootLock(root, purpose).acquire()
        journal: Journal | None = None
        try:
            (root / FILES_DIR).mkdir(exist_ok=True)
            atomic_write_json(root / CONFIG_FILE, config.to_dict())
            journal = Journal(root / JOURNAL_FILE)
            journal.append(
                SessionStarted(session=root.name, rig=config.to_dict(), simulated=simulated)
            )
        except BaseException:
            if journal is not None:
                journal.close()
            lock.release()
            raise
        return cls(root, config, journal, lock)

    @classmethod
    def open(cls, path: str | Path, purpose: str = "expokit capture resume") -> Session:
        """Reopen and lock an existing session folder (for ``expokit capture resume``).

        Raises
        ------
        RootInUseError
            Another process has the session open.
        RigConfigError
            ``rig.json`` is unreadable, truncated, not an object or has a bad key.
        JournalError
            A journal line lacks a field its event needs (naming the journal, line, field).
        PathEscapeError
            A journal line names a file outside the session's ``files/`` folder.
        """
        root = Path(path)
        config_file = root / CONFIG_FILE
        if not config_file.is_file() or not (root / JOURNAL_FILE).is_file():
            raise ExpokitError(f"{root}: not a capture session (no {CONFIG_FILE} / {JOURNAL_FILE})")
        claim_root(root, "session", what="session folder")  # adopts sessions made before markers
        lock = RootLock(root, purpose).acquire()
        try:
            config = read_rig_json(config_file)
            session = cls(root, config, Journal(root / JOURNAL_FILE), lock)
            removed = remove_stale_temp_files(root / FILES_DIR)
            session.journal.append(SessionResumed(session=root.name, stale_temp_removed=removed))
        except BaseException:
            lock.release()
            raise
        return session

    def state(self) -> SessionState:
        """Replay the journal."""
        events, torn = read_events(self.root / JOURNAL_FILE)
        state = SessionState(torn_lines=torn)
        for event in events:
            if isinstance(event, PlannedEvent):
                plan = ShotPlan(event.index, event.kind, event.roles, event.seconds)
                state.plans[plan.index] = plan
            elif isinstance(event, DownloadedEvent):
                state.downloaded[(event.index, event.role)] = event
            elif isinstance(event, ShotDoneEvent):
                state.done.add(event.index)
        return state

    def plan(
        self, kind: str, role_plans: list[dict[str, dict[str, Any]]], seconds: float | None = None
    ) -> list[ShotPlan]:
        """Journal new shots with consecutive indices after the last planned one."""
        if kind not in SHOT_KINDS:
            raise ExpokitError(f"unknown shot kind {kind!r} (kinds: {', '.join(SHOT_KINDS)})")
        start = self.state().next_index
        plans = []
        for offset, roles in enumerate(role_plans):
            plan = ShotPlan(start + offset, kind, roles, seconds)
            self.journal.append(Planned(**plan.to_dict()))
            plans.append(plan)
        return plans

    def filename(self, plan: ShotPlan, role: str, ext: str) -> str:
        """File name for ``role`` of ``plan`` from the rig's template (extension lower-cased).

        Raises
        ------
        UnsafeNameError
            The name is not one safe path component (an extension with odd characters).
        """
        ev = float(plan.roles[role].get("ev", 0.0))
        name = self.config.filename_template.format(
            session=self.session_id, index=plan.index, role=role, ev_token=ev_token(ev),
            ext=ext.lower(), kind=plan.kind, serial=self.config.roles[role].serial,
        )  # fmt: skip
        return check_name(name, "file name", where=f"{self.root / CONFIG_FILE} filename_template")

    def file_path(self, name: str) -> Path:
        """Path of ``name`` inside ``files/``; :class:`PathEscapeError` if it would leave it
        (``..``, absolute, or a symlink pointing out of the folder)."""
        return resolve_inside(self.files_dir, name, "session file")

    def orphan_for(self, plan: ShotPlan, role: str) -> Path | None:
        """A file for ``role`` of ``plan`` on disk that the journal does not know (written
        just before a crash), matched by the template with any extension. Symlinks are
        never adopted: the session only trusts files it wrote."""
        stem = Path(self.filename(plan, role, ".x")).stem
        matches = sorted(
            p for p in self.files_dir.glob(f"{glob_escape(stem)}.*") if not p.is_symlink()
        )
        return self.file_path(matches[0].name) if matches else None

    def close(self) -> None:
        """Close the journal and release the session's lock."""
        self.journal.close()
        if self.lock is not None:
            with contextlib.suppress(OSError):
                self.lock.release()
            self.lock = None


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)
