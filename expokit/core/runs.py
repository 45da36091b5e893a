"""Run ids, completion records and run summaries shared by the batch stages.

``expokit render`` (:mod:`expokit.curation.rendering.render`) and ``expokit curate build``
(:mod:`expokit.curation.build`) both work in an output root claimed by
:func:`expokit.core.roots.claim_root`, both tag what they write with a run id, and both
write one completion record per unit of work (a RAW file, a scene) that proves the unit is
done and drives resume/skip. This module holds those shared pieces, so the two stages
agree on the id format, the record location and the summary they hand to the CLI.

On disk
-------
``<root>/.expokit/records/<name>.json``
    The completion record of unit ``name`` (a safe path component), a JSON object with
    ``record_version`` (:data:`RECORD_VERSION`), ``run_id``, ``params_hash``, ``status``
    (``"ok"`` or ``"failed"``), ``error``, ``error_kind`` and stage-specific fields. It is
    written atomically, after every output of the unit.
``<root>/runs/<run_id>.json``
    A per-run sidecar (render only): parameters, inputs, counts, failures, timing.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expokit.core.atomic import TEMP_PREFIX, atomic_write_json, read_json_object
from expokit.core.errors import ExpokitError, is_disk_full
from expokit.core.paths import PathEscapeError, check_name, is_safe_name, resolve_inside

#: Folder (relative to the output root) of the completion records.
RECORDS_DIR = ".expokit/records"
#: Folder (relative to the output root) of the per-run sidecars.
RUNS_DIR = "runs"
#: ``record_version`` written into every completion record.
RECORD_VERSION = 1

#: ``error_kind`` of a record whose unit failed because the disk is full: the batch stops.
DISK_FULL = "disk_full"


def new_run_id() -> str:
    """A new run id: UTC time to the second, ``-``, 6 random hex digits.

    Example: ``"20261129T061415Z-3fa2c1"``. Ids sort by start time; the random part keeps
    two runs started in the same second apart.
    """
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def utc_timestamp(seconds: float | None = None) -> str:
    """``seconds`` since the epoch (default: now) as ``YYYY-MM-DDTHH:MM:SSZ`` in UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def record_path(out_root: str | Path, name: str, what: str, *, record_what: str = "path") -> Path:
    """Where the completion record of unit ``name`` lives below ``out_root``.

    Parameters
    ----------
    out_root
        The output root (a render folder, a dataset root).
    name
        The unit's name (an output name, a scene id); must be a safe path component.
    what
        What ``name`` is, for the error message (``"scene id"``).
    record_what
        What the record path is, for the message of a path that leaves the root.

    Raises
    ------
    UnsafeNameError
        ``name`` is not a safe path component.
    PathEscapeError
        The records folder resolves outside ``out_root`` (a symlink leaves the root).
    """
    safe = check_name(name, what)
    return resolve_inside(out_root, f"{RECORDS_DIR}/{safe}.json", record_what)


def read_record(
    out_root: str | Path, name: str, what: str, *, record_what: str = "path"
) -> dict[str, Any] | None:
    """The completion record of ``name``, or ``None``.

    ``None`` when it is missing, unreadable, not a JSON object, or its path is unsafe or
    leaves the root: the unit is then done again (and fails there with a clear message).
    """
    try:
        return read_json_object(record_path(out_root, name, what, record_what=record_what))
    except ExpokitError:  # UnsafeNameError, PathEscapeError
        return None


def write_record(path: Path, record: dict[str, Any], durable: bool = True) -> None:
    """Write ``record`` to ``path`` atomically (temporary file, fsync, rename).

    Raises
    ------
    OutputError
        The file cannot be written (disk full, permissions).
    """
    atomic_write_json(path, record, durable)


def record_files(records_dir: Path) -> list[Path]:
    """Completion records in ``records_dir``, sorted (not temporary files of atomic writes)."""
    return sorted(p for p in records_dir.glob("*.json") if not p.name.startswith(TEMP_PREFIX))


def recorded_names(out_root: Path) -> set[str]:
    """Names of the units that have a completion record below ``out_root`` (done or failed).

    Empty when the records folder is missing or leaves the root.
    """
    try:
        folder = resolve_inside(out_root, RECORDS_DIR, "records folder")
    except PathEscapeError:
        return set()
    if not folder.is_dir():
        return set()
    return {p.stem for p in folder.glob("*.json") if is_safe_name(p.stem)}


def output_error_kind(exc: BaseException) -> str:
    """``error_kind`` of a failed write: :data:`DISK_FULL` or ``"output"``.

    Decided by the ``errno`` of the ``OSError`` behind ``exc`` (:func:`is_disk_full`).
    """
    return DISK_FULL if is_disk_full(exc) else "output"


@dataclass(kw_only=True)
class RunSummary:
    """What a batch run did, for the command line and for callers (base of the stages' own).

    ``failures`` holds ``(unit, error)`` pairs; ``aborted`` says why the run stopped early
    (a full disk, an unwritable manifest), or is ``None``.
    """

    out_dir: Path
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    aborted: str | None = None

    @property
    def ok(self) -> bool:
        """No unit failed and the run was not aborted."""
        return not self.failures and self.aborted is None

    def problem_lines(self) -> list[tuple[str, bool]]:
        """``(text, True)`` lines for every failure and the abort reason."""
        lines = [(f"failed: {error}", True) for _, error in self.failures]
        if self.aborted:
            lines.append((f"aborted: {self.aborted}", True))
        return lines

    def report(self) -> list[tuple[str, bool]]:
        """Lines for a person: ``(text, is_problem)``."""
        return [(f"output: {self.out_dir}", False), *self.problem_lines()]
