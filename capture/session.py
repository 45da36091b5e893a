"""A capture session: a folder with the resolved rig config, the journal and the files.

Layout::

    <output_root>/<session_id>/
        rig.json          resolved RigConfig (what was really used)
        journal.jsonl     append-only event log (see expokit.capture.journal)
        files/            downloaded images and movies, named by the rig's template

The session state (which shots are planned, which role files are downloaded, which shots are
done) is derived from the journal alone, so a session killed at any point can be resumed:
planned shots keep their index, finished downloads are never repeated, and a file that was
written but not yet journaled is adopted rather than overwritten.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expokit.capture.journal import Journal, read_journal
from expokit.capture.rig_config import RigConfig
from expokit.core.atomic import atomic_write_json, ensure_writable_dir, remove_stale_temp_files
from expokit.core.errors import ExpokitError
from expokit.curation.ev import ev_token

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
    downloaded: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)
    torn_lines: int = 0

    @property
    def pending(self) -> list[ShotPlan]:
        return [p for i, p in sorted(self.plans.items()) if i not in self.done]

    @property
    def next_index(self) -> int:
        return max(self.plans, default=0) + 1


class Session:
    """An open session folder with its journal."""

    def __init__(self, root: Path, config: RigConfig, journal: Journal) -> None:
        self.root = root
        self.config = config
        self.journal = journal

    @property
    def session_id(self) -> str:
        return self.root.name

    @property
    def files_dir(self) -> Path:
        return self.root / FILES_DIR

    @classmethod
    def create(cls, config: RigConfig, name: str | None = None) -> Session:
        """Make a new, uniquely named session folder under the rig's output root."""
        root_dir = ensure_writable_dir(config.output_root)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = f"{stamp}-{_safe(name)}" if name else stamp
        root = root_dir / base
        suffix = 1
        while root.exists():  # never reuse (and so never overwrite) a session folder
            suffix += 1
            root = root_dir / f"{base}-{suffix}"
        (root / FILES_DIR).mkdir(parents=True)
        atomic_write_json(root / CONFIG_FILE, config.to_dict())
        session = cls(root, config, Journal(root / JOURNAL_FILE))
        session.journal.append("session_started", session=root.name, rig=config.to_dict())
        return session

    @classmethod
    def open(cls, path: str | Path) -> Session:
        """Reopen an existing session folder (for ``expokit capture resume``)."""
        root = Path(path)
        config_file = root / CONFIG_FILE
        if not config_file.is_file() or not (root / JOURNAL_FILE).is_file():
            raise ExpokitError(f"{root}: not a capture session (no {CONFIG_FILE} / {JOURNAL_FILE})")
        data = json.loads(config_file.read_text())
        config = RigConfig.from_dict(data)
        session = cls(root, config, Journal(root / JOURNAL_FILE))
        removed = remove_stale_temp_files(root / FILES_DIR)
        session.journal.append("session_resumed", session=root.name, stale_temp_removed=removed)
        return session

    def state(self) -> SessionState:
        """Replay the journal."""
        events, torn = read_journal(self.root / JOURNAL_FILE)
        state = SessionState(torn_lines=torn)
        for event in events:
            kind = event["event"]
            if kind == "planned":
                plan = ShotPlan(event["index"], event["kind"], event["roles"], event.get("seconds"))
                state.plans[plan.index] = plan
            elif kind == "downloaded":
                state.downloaded[(event["index"], event["role"])] = event
            elif kind == "shot_done":
                state.done.add(event["index"])
        return state

    def plan(
        self, kind: str, role_plans: list[dict[str, dict[str, Any]]], seconds: float | None = None
    ) -> list[ShotPlan]:
        """Journal new shots with consecutive indices after the last planned one."""
        start = self.state().next_index
        plans = []
        for offset, roles in enumerate(role_plans):
            plan = ShotPlan(start + offset, kind, roles, seconds)
            self.journal.append("planned", **plan.to_dict())
            plans.append(plan)
        return plans

    def filename(self, plan: ShotPlan, role: str, ext: str) -> str:
        """File name for ``role`` of ``plan`` from the rig's template (extension lower-cased)."""
        ev = float(plan.roles[role].get("ev", 0.0))
        return self.config.filename_template.format(
            session=self.session_id, index=plan.index, role=role, ev_token=ev_token(ev),
            ext=ext.lower(), kind=plan.kind, serial=self.config.roles[role].serial,
        )  # fmt: skip

    def orphan_for(self, plan: ShotPlan, role: str) -> Path | None:
        """A file for ``role`` of ``plan`` on disk that the journal does not know (written
        just before a crash), matched by the template with any extension."""
        stem = Path(self.filename(plan, role, ".x")).stem
        matches = sorted(self.files_dir.glob(f"{glob_escape(stem)}.*"))
        return matches[0] if matches else None

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def close(self) -> None:
        self.journal.close()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "session"


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)
