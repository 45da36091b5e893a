"""Run ids, completion records and run summaries shared by the batch stages.

``expokit render`` (:mod:`expokit.curation.rendering.render`) and ``expokit curate build``
(:mod:`expokit.curation.build.driver`) both work in an output root claimed by
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from expokit.core.atomic import TEMP_PREFIX, atomic_write_json, read_json_object
from expokit.core.errors import ExpokitError, InputFileError, is_disk_full
from expokit.core.paths import PathEscapeError, check_name, is_safe_name, resolve_inside
from expokit.core.schema import from_json, to_json

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


class RecordFileError(InputFileError):
    """A completion record or run sidecar does not fit its model (names file and field)."""


#: ``status`` of a completion record.
RecordStatus = Literal["ok", "failed"]


@dataclass(frozen=True)
class RenderRecord:
    """Completion record of one RAW of ``expokit curate render``
    (``<out>/.expokit/records/<name>.json``).

    Attributes
    ----------
    record_version
        :data:`RECORD_VERSION`.
    name
        Output name of the RAW (a safe path component).
    raw_path
        The RAW file rendered.
    params_hash
        Hash of the render parameters (a re-run with other parameters renders again).
    run_id
        Run that wrote the record (:func:`new_run_id`).
    status
        ``"ok"`` or ``"failed"``.
    error, error_kind
        What went wrong (``null`` when ok); ``error_kind`` is ``"input"``, ``"output"``,
        ``"disk_full"``, ``"crash"`` or ``"worker_died"``.
    rows
        Manifest rows of the outputs (one ``status="failed"`` row for a failed RAW).
    raw_size, raw_mtime_ns, raw_sha256
        Size (bytes), mtime (ns) and SHA-256 of the RAW, when it could be read.
    """

    record_version: int
    name: str
    raw_path: str
    params_hash: str
    run_id: str
    status: RecordStatus
    error: str | None
    error_kind: str | None
    rows: list[dict[str, Any]]
    # Absent from the file (not null) when the RAW could not be read that far.
    raw_size: int | None = field(default=None, metadata={"omit_if_default": True})
    raw_mtime_ns: int | None = field(default=None, metadata={"omit_if_default": True})
    raw_sha256: str | None = field(default=None, metadata={"omit_if_default": True})


@dataclass(frozen=True)
class InputRecord:
    """One input file of a built scene: path, size (bytes), mtime (ns) and SHA-256."""

    path: str
    size: int
    mtime_ns: int
    sha256: str


@dataclass(frozen=True)
class OriginRecord:
    """A file a scene's inputs were derived from (a RAW of a render): path and SHA-256."""

    path: str
    sha256: str


@dataclass(frozen=True)
class BuildRecord:
    """Completion record of one scene of ``expokit curate build``
    (``<dataset>/.expokit/records/<scene_id>.json``).

    Attributes
    ----------
    record_version
        :data:`RECORD_VERSION`.
    scene_id
        The scene (a safe path component).
    source, source_root
        Source kind (``capture``, ``render``, ...) and its root folder.
    status
        ``"ok"`` or ``"failed"``.
    error, error_kind
        What went wrong (``null`` when ok); ``error_kind`` is ``"input"``, ``"output"``,
        ``"disk_full"``, ``"crash"`` or ``"worker_died"``.
    inputs
        The scene's input files (size, mtime, SHA-256).
    rows
        Manifest rows of the scene's pairs.
    outputs
        ``{output path relative to the root: SHA-256}``.
    params_hash, run_id, expokit_version
        Build parameters' hash, the run and the version that wrote it (absent in the
        record of a crashed scene).
    key
        Hash of spec, inputs and parameters: an equal key with intact outputs is skipped.
    origins
        Files the inputs derive from.
    seconds
        Time the scene took, seconds.
    """

    record_version: int
    scene_id: str
    source: str
    source_root: str
    status: RecordStatus
    error: str | None
    error_kind: str | None
    inputs: list[InputRecord]
    rows: list[dict[str, Any]]
    outputs: dict[str, str]
    params_hash: str | None = None
    run_id: str | None = None
    expokit_version: str | None = None
    key: str | None = None
    origins: list[OriginRecord] = field(default_factory=list)
    seconds: float | None = None


@dataclass(frozen=True)
class RunFailure:
    """A RAW that failed in a run, and why."""

    raw_path: str
    error: str


@dataclass(frozen=True)
class RunSidecar:
    """Per-run sidecar ``<out>/runs/<run_id>.json`` of ``expokit curate render``: written
    with ``status="running"`` when the run starts, completed when it ends.

    Attributes
    ----------
    run_id
        :func:`new_run_id`.
    status
        ``"running"``, then ``"ok"``, ``"failed"`` or ``"aborted"``.
    started, finished
        UTC times ``YYYY-MM-DDTHH:MM:SSZ`` (:func:`utc_timestamp`).
    command
        The command line.
    params_hash, config
        Hash and value of the render parameters.
    libraries
        Versions of the decoding libraries.
    expokit_version
        Version that ran.
    workers, executor
        Parallelism.
    inputs, to_render
        RAW files given / still to render.
    seconds
        Duration, seconds.
    rendered, skipped
        RAWs rendered / skipped (already done).
    failures
        RAWs that failed.
    aborted
        Why the run stopped early (``null``: it did not).
    """

    run_id: str
    status: Literal["running", "ok", "failed", "aborted"]
    started: str
    command: list[str]
    params_hash: str
    config: dict[str, Any]
    libraries: dict[str, str]
    expokit_version: str
    workers: int
    executor: str
    inputs: list[str]
    to_render: list[str]
    finished: str | None = None
    seconds: float | None = None
    rendered: int | None = None
    skipped: int | None = None
    failures: list[RunFailure] = field(default_factory=list)
    aborted: str | None = None


RecordModel = RenderRecord | BuildRecord


def record_model(record: Mapping[str, Any]) -> type[RenderRecord] | type[BuildRecord]:
    """The model of a completion record: :class:`BuildRecord` when it has a ``scene_id``,
    else :class:`RenderRecord`."""
    return BuildRecord if "scene_id" in record else RenderRecord


def _check_version(path: Path, data: object, what: str) -> None:
    if isinstance(data, dict) and "record_version" in data:
        found = data["record_version"]
        if isinstance(found, bool) or found != RECORD_VERSION:
            raise RecordFileError(
                path,
                f"{what} record_version {found!r} is not supported (this expokit reads "
                f"version {RECORD_VERSION})",
            )


def parse_record(data: object, path: str | Path) -> RecordModel:
    """Validate a decoded completion record read from ``path``.

    Raises
    ------
    RecordFileError
        Not a JSON object, another ``record_version``, or a field that is missing, unknown
        or of the wrong type (naming ``path`` and the field).
    """
    source = Path(path)
    if not isinstance(data, dict):
        raise RecordFileError(source, "completion record: expected a JSON object")
    _check_version(source, data, "completion record")
    model = record_model(data)
    return from_json(model, data, source, error=RecordFileError, kind="completion record")


def load_record(path: str | Path) -> RecordModel:
    """The completion record in ``path``, validated (:func:`parse_record`).

    Raises
    ------
    RecordFileError
        Missing, not JSON, or invalid; the message names the file and the field.
    """
    return parse_record(_read_json(Path(path), "completion record"), path)


def _read_json(path: Path, what: str) -> object:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordFileError(path, "no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecordFileError(path, f"not a readable {what}: not JSON ({exc})") from None


def read_record(
    out_root: str | Path, name: str, what: str, *, record_what: str = "path"
) -> RecordModel | None:
    """The completion record of ``name``, validated and typed by its model, or ``None``.

    ``None`` when it is missing, unreadable, not a JSON object, does not fit its model
    (:func:`load_record`), or its path is unsafe or leaves the root: the unit is then done
    again (and fails there with a clear message).
    """
    try:
        path = record_path(out_root, name, what, record_what=record_what)
    except ExpokitError:  # UnsafeNameError, PathEscapeError
        return None
    data = read_json_object(path)
    if data is None:
        return None
    try:
        return parse_record(data, path)
    except RecordFileError:
        return None


def write_record(path: Path, record: RecordModel, durable: bool = True) -> None:
    """Write ``record`` to ``path`` atomically (temporary file, fsync, rename).

    The one writer of completion records. The JSON is :func:`~expokit.core.schema.to_json`
    of the model (keys sorted by the writer), checked against the model first: a frozen
    dataclass does not check its field types, and a record that does not fit is a bug.

    Raises
    ------
    ValueError
        ``record`` does not fit its model.
    OutputError
        The file cannot be written (disk full, permissions).
    """
    document = to_json(record)
    try:
        parse_record(document, path)
    except RecordFileError as exc:
        raise ValueError(f"refusing to write an invalid completion record: {exc}") from None
    atomic_write_json(path, document, durable)


def parse_run_sidecar(data: object, path: str | Path) -> RunSidecar:
    """Validate a decoded run sidecar read from ``path``.

    Raises
    ------
    RecordFileError
        Not a JSON object or a field missing, unknown or of the wrong type.
    """
    return from_json(RunSidecar, data, Path(path), error=RecordFileError, kind="run sidecar")


def read_run_sidecar(path: str | Path) -> RunSidecar:
    """The run sidecar in ``path``, validated (the one reader).

    Raises
    ------
    RecordFileError
        Missing, not JSON, or invalid; names the file and the field.
    """
    return parse_run_sidecar(_read_json(Path(path), "run sidecar"), path)


def write_run_sidecar(path: Path, sidecar: dict[str, Any], durable: bool = True) -> None:
    """Write a run sidecar atomically after checking it fits :class:`RunSidecar` (the one
    writer).

    Raises
    ------
    ValueError
        ``sidecar`` does not fit the model (a bug).
    OutputError
        The file cannot be written.
    """
    try:
        parse_run_sidecar(sidecar, path)
    except RecordFileError as exc:
        raise ValueError(f"refusing to write an invalid run sidecar: {exc}") from None
    atomic_write_json(path, sidecar, durable)


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
