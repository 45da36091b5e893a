"""Multi-EV rendering from RAW: demosaic once, derive every EV by an exact linear scale.

:func:`render_raw` is the pure per-file function (the same under every executor);
:func:`render_batch` plans, skips finished work, runs, and writes the manifest.

Output folder
-------------
``<out>/manifest.parquet``
    One row per output (and per failed RAW); see :mod:`expokit.curation.rendering.render_manifest`.
``<out>/render_params.json``
    Render parameters, library versions and their hash (same for every run into ``<out>``).
``<out>/runs/<run_id>.json``
    One sidecar per run: parameters, inputs, counts, failures, timing.
``<out>/.expokit/records/<name>.json``
    Per-RAW completion records, written after all outputs of that RAW: the source of the
    manifest and of resume/skip decisions.
``<out>/.expokit/root.json``, ``<out>/.expokit/lock``
    The folder is an expokit root of kind ``render`` (:func:`expokit.core.roots.claim_root`):
    a folder holding files expokit did not write is refused (unless empty), an earlier
    render folder is reused (one from before markers is adopted by ``render_params.json``),
    and one render at a time writes into it (:class:`expokit.core.lock.RootLock`).

Output names are derived from RAW file names by :func:`~.render_layout.assign_names`
and checked as safe names; every file is written through
:func:`expokit.core.paths.resolve_inside`, so nothing lands outside ``<out>``.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from expokit import __version__
from expokit.core.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    read_json_object,
    remove_stale_temp_files,
)
from expokit.core.errors import ExpokitError, InputFileError, OutputError
from expokit.core.ev import ev_token
from expokit.core.hashing import sha256_bytes, sha256_file
from expokit.core.lock import RootLock
from expokit.core.parallel import map_unordered, native_threads
from expokit.core.paths import PathEscapeError, check_name, resolve_inside
from expokit.core.roots import claim_root
from expokit.core.runs import (
    DISK_FULL,
    RECORD_VERSION,
    RECORDS_DIR,
    RUNS_DIR,
    RenderRecord,
    RunSummary,
    new_run_id,
    output_error_kind,
    read_record,
    record_files,
    utc_timestamp,
    write_record,
    write_run_sidecar,
)
from expokit.core.runs import record_path as _record_path
from expokit.core.transfer import LUMA_RGB, apply_luts, exposure_lut
from expokit.curation.rendering.config import MeterSpec, OutputFormat, RenderConfig
from expokit.curation.rendering.raw_decode import (
    RAW_EXTENSIONS,
    DecodedRaw,
    decode_raw,
    library_versions,
)
from expokit.curation.rendering.render_layout import assign_names, gt_relpath, output_relpath
from expokit.curation.rendering.render_manifest import write_render_manifest

MANIFEST_FILE = "manifest.parquet"
PARAMS_FILE = "render_params.json"


# --------------------------------------------------------------------------- pure core


def meter_offset(linear: npt.NDArray[np.uint16], meter: MeterSpec) -> float:
    """EV offset that brings ``meter.statistic`` of the luminance to ``meter.target``.

    Parameters
    ----------
    linear
        ``(H, W, 3)`` uint16 linear RGB, 65535 = saturation.

    Raises
    ------
    ValueError
        If the statistic is zero (a black image cannot be metered).
    """
    step = max(1, min(linear.shape[:2]) // 512)
    sample = linear[::step, ::step].reshape(-1, 3).astype(np.float64) / 65535.0
    luminance = sample @ LUMA_RGB  # linear RGB -> Y
    stat = float(np.median(luminance) if meter.statistic == "median" else np.mean(luminance))
    if not stat > 0:
        raise ValueError(f"cannot meter: the {meter.statistic} luminance at EV 0 is 0")
    return math.log2(meter.target / stat)


def render_arrays(
    linear: npt.NDArray[np.uint16], config: RenderConfig, base_offset: float = 0.0
) -> Iterator[tuple[float, OutputFormat, npt.NDArray[np.integer]]]:
    """Yield ``(ev, format, image)`` for every EV and format of ``config``.

    ``image`` is ``(H, W, 3)`` in OpenCV's BGR order, uint8 for 8-bit formats and uint16
    for 16-bit ones: ``T(clip(linear / 65535 * 2**(ev + base_offset), 0, 1))`` quantised,
    with ``T`` the sRGB transfer function or the identity (a lookup table per EV and format).
    All EVs of one format are computed together (see :func:`apply_luts`), so they are held
    in memory at once: ``len(evs) * H * W * 3`` bytes (times 2 for 16-bit formats).
    """
    threads = native_threads()
    for fmt in config.formats:
        luts = [
            exposure_lut(2.0 ** (ev + base_offset), fmt.bits, fmt.transfer) for ev in config.evs
        ]
        images = apply_luts(linear, luts, reverse_channels=True, threads=threads)
        yield from ((ev, fmt, image) for ev, image in zip(config.evs, images, strict=True))


def encode_image(image: npt.NDArray[np.integer], fmt: OutputFormat, config: RenderConfig) -> bytes:
    """Encode a BGR image with OpenCV using the encoder settings of ``config``."""
    import cv2

    if fmt is OutputFormat.JPG:
        ext, params = (
            ".jpg",
            [
                cv2.IMWRITE_JPEG_QUALITY,
                config.jpeg_quality,
                cv2.IMWRITE_JPEG_OPTIMIZE,
                0,
                cv2.IMWRITE_JPEG_PROGRESSIVE,
                0,
                cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
            ],
        )
    elif fmt.suffix.endswith(".png"):
        ext, params = ".png", [cv2.IMWRITE_PNG_COMPRESSION, config.png_compression]
    else:
        ext, params = ".tif", [cv2.IMWRITE_TIFF_COMPRESSION, cv2.IMWRITE_TIFF_COMPRESSION_LZW]
    ok, buffer = cv2.imencode(ext, image, params)
    if not ok:
        raise OutputError(f"OpenCV could not encode a {fmt.value} image")
    return bytes(buffer.tobytes())


# --------------------------------------------------------------------------- per-file job


@dataclass(frozen=True)
class RenderTask:
    """Everything :func:`render_raw` needs; picklable for process pools and Ray."""

    raw_path: str
    name: str
    out_root: str
    config: RenderConfig
    params_hash: str
    run_id: str
    durable: bool = True


def record_path(out_root: str | Path, name: str) -> Path:
    """Completion record of output ``name`` (a safe name) below ``out_root``."""
    return _record_path(out_root, name, "output name")


def _base_row(task: RenderTask, raw_sha: str | None) -> dict[str, Any]:
    versions = library_versions()
    return {
        "name": task.name,
        "raw_path": task.raw_path,
        "raw_sha256": raw_sha,
        "params_hash": task.params_hash,
        "rawpy_version": versions["rawpy"],
        "libraw_version": versions["libraw"],
        "expokit_version": __version__,
        "run_id": task.run_id,
    }


def _output_row(
    base: dict[str, Any],
    decoded: DecodedRaw,
    offset: float,
    ev: float,
    fmt: OutputFormat,
    role: str,
    relpath: str,
    data: bytes,
) -> dict[str, Any]:
    meta = decoded.metadata
    height, width = decoded.linear.shape[:2]
    return {
        **base,
        "camera_make": meta.camera_make,
        "camera_model": meta.camera_model,
        "exposure_time_s": meta.exposure_time_s,
        "iso": meta.iso,
        "f_number": meta.f_number,
        "captured_at": meta.captured_at,
        "raw_type": meta.raw_type,
        "ev": ev,
        "ev_token": ev_token(ev),
        "base_ev_offset": offset,
        "role": role,
        "output_path": relpath,
        "output_sha256": sha256_bytes(data),
        "output_format": fmt.value,
        "bits": fmt.bits,
        "transfer": fmt.transfer,
        "width": width,
        "height": height,
        "wb_source": decoded.wb_source,
        "wb_multipliers": ",".join(f"{m:.6g}" for m in decoded.wb_multipliers),
        "status": "ok",
        "error": None,
        "notes": "; ".join(decoded.notes) or None,
    }


def render_raw(task: RenderTask) -> RenderRecord:
    """Render one RAW to every EV and format; write outputs, then its completion record.

    Never raises for a bad input or a failed write: the returned record has
    ``status="failed"``, an ``error`` naming the file and the problem, and
    ``error_kind`` ``"input"``, ``"output"`` or ``"disk_full"``.
    """
    out_root = Path(task.out_root)
    raw_path = Path(task.raw_path)
    config = task.config
    raw_size: int | None = None
    raw_mtime_ns: int | None = None
    raw_sha: str | None = None
    rows: list[dict[str, Any]] = []
    failure: tuple[str, str] | None = None  # (error, error_kind)
    try:
        stat = raw_path.stat()
        raw_size, raw_mtime_ns = stat.st_size, stat.st_mtime_ns
        raw_sha = sha256_file(raw_path)
        decoded = decode_raw(
            raw_path,
            white_balance=config.white_balance,
            demosaic=config.demosaic,
            sanity_checks=config.sanity_checks,
        )
        try:
            offset = meter_offset(decoded.linear, config.meter) if config.meter else 0.0
        except ValueError as exc:
            raise InputFileError(raw_path, str(exc)) from None
        base = _base_row(task, raw_sha)
        gt_path = gt_relpath(task.name, config.layout)
        rendered = list(render_arrays(decoded.linear, config, offset))
        # cv2.imencode releases the GIL: encode the EVs in parallel, write them in order.
        with ThreadPoolExecutor(max_workers=native_threads()) as pool:
            encoded = list(pool.map(lambda item: encode_image(item[2], item[1], config), rendered))
        for (ev, fmt, _), data in zip(rendered, encoded, strict=True):
            relpath = output_relpath(task.name, ev, fmt, config.layout)
            atomic_write_bytes(resolve_inside(out_root, relpath, "output"), data, task.durable)
            rows.append(_output_row(base, decoded, offset, ev, fmt, "input", relpath, data))
            if gt_path and ev_token(ev) == ev_token(config.gt_ev):
                target = resolve_inside(out_root, gt_path, "output")
                atomic_write_bytes(target, data, task.durable)
                rows.append(_output_row(base, decoded, offset, ev, fmt, "gt", gt_path, data))
    except InputFileError as exc:
        failure = (str(exc), "input")
    except (OutputError, PathEscapeError) as exc:
        failure = (f"{raw_path}: {exc}", output_error_kind(exc))
    except OSError as exc:
        failure = (f"{raw_path}: cannot read: {exc}", "input")
    if failure is not None:
        rows = [{**_base_row(task, raw_sha), "status": "failed", "error": failure[0]}]
    record = RenderRecord(
        record_version=RECORD_VERSION,
        name=task.name,
        raw_path=task.raw_path,
        params_hash=task.params_hash,
        run_id=task.run_id,
        status="ok" if failure is None else "failed",
        error=None if failure is None else failure[0],
        error_kind=None if failure is None else failure[1],
        rows=rows,
        raw_size=raw_size,
        raw_mtime_ns=raw_mtime_ns,
        raw_sha256=raw_sha,
    )
    try:
        write_record(record_path(out_root, task.name), record, task.durable)
    except (OutputError, PathEscapeError, OSError) as exc:
        if record.status == "ok":
            kind = output_error_kind(exc)
            record = replace(record, status="failed", error=f"{raw_path}: {exc}", error_kind=kind)
    return record


def _crashed_record(task: RenderTask, exc: BaseException) -> RenderRecord:
    """Record for a task whose worker raised unexpectedly or died (not written)."""
    error = f"{task.raw_path}: render crashed: {type(exc).__name__}: {exc}"
    return RenderRecord(
        record_version=RECORD_VERSION,
        name=task.name,
        raw_path=task.raw_path,
        params_hash=task.params_hash,
        run_id=task.run_id,
        status="failed",
        error=error,
        error_kind="crash",
        rows=[{**_base_row(task, None), "status": "failed", "error": error}],
    )


# --------------------------------------------------------------------------- batch driver


def discover_raw_files(inputs: Sequence[str | Path]) -> tuple[list[Path], int]:
    """Expand files and folders (recursively) into RAW files, by extension, case-insensitive.

    Returns
    -------
    tuple
        ``(raw_files, ignored)``: sorted unique absolute paths, and how many non-RAW files
        inside the folders were ignored.

    Raises
    ------
    InputFileError
        For a path that does not exist, or a file given explicitly whose extension is not a
        RAW extension.
    """
    found: set[Path] = set()
    ignored = 0
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            for child in path.rglob("*"):
                if child.is_file() and not child.name.startswith("."):
                    if child.suffix.lower() in RAW_EXTENSIONS:
                        found.add(child.resolve())
                    else:
                        ignored += 1
        elif path.is_file():
            if path.suffix.lower() not in RAW_EXTENSIONS:
                raise InputFileError(
                    path,
                    f"unknown RAW extension {path.suffix or '(none)'!r}; known: "
                    + " ".join(sorted(RAW_EXTENSIONS)),
                )
            found.add(path.resolve())
        else:
            raise InputFileError(path, "no such file or folder")
    return sorted(found), ignored


@dataclass(kw_only=True)
class RenderSummary(RunSummary):
    """What a batch did, for the command line and for callers.

    ``failures`` holds ``(raw_path, error)`` pairs.
    """

    manifest_path: Path
    params_path: Path
    run_path: Path
    rendered: int = 0
    outputs: int = 0
    stale_temp_removed: int = 0

    def report(self) -> list[tuple[str, bool]]:
        """Lines for a person: ``(text, is_problem)``; counts, where things are, failures."""
        lines = [
            (
                f"rendered {self.rendered} RAW file(s), skipped {self.skipped} already done, "
                f"{len(self.failures)} failed; {self.outputs} outputs",
                False,
            ),
            (f"outputs:  {self.out_dir}", False),
            (f"manifest: {self.manifest_path}", False),
            (f"params:   {self.params_path}", False),
            (f"run log:  {self.run_path}", False),
        ]
        return lines + self.problem_lines()


def _is_complete(record: RenderRecord | None, raw: Path, params_hash: str, out: Path) -> bool:
    """True when ``record`` proves ``raw`` was rendered with ``params_hash`` and nothing is lost."""
    if record is None or record.status != "ok" or record.params_hash != params_hash:
        return False
    if record.raw_path != str(raw):
        return False
    try:
        stat = raw.stat()
    except OSError:
        return False
    if (record.raw_size, record.raw_mtime_ns) != (stat.st_size, stat.st_mtime_ns):
        return False
    try:
        # The rows are render-manifest rows (plain dicts): a damaged one fails here.
        return all(
            resolve_inside(out, row["output_path"], "output").is_file() for row in record.rows
        )
    except (PathEscapeError, KeyError, TypeError):
        return False  # a damaged or crafted record: render again, never trust its paths


def _check_params_compatible(out: Path, params_hash: str) -> None:
    import json

    params_file = out / PARAMS_FILE
    if not params_file.exists() or not record_files(out / RECORDS_DIR):
        return
    try:
        previous = json.loads(params_file.read_text()).get("params_hash")
    except (OSError, ValueError):
        return
    if previous != params_hash:
        raise ExpokitError(
            f"{out} already holds renders made with other parameters (hash {previous}, now "
            f"{params_hash}; see {params_file}). Render into a new --out folder, or delete "
            "that one, so outputs of different parameters never mix."
        )


def render_batch(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    config: RenderConfig,
    *,
    workers: int = 1,
    executor: str = "local",
    progress: bool = True,
    durable: bool = True,
) -> RenderSummary:
    """Render every RAW under ``inputs`` into ``out_dir``; skip RAWs already done.

    Bad files are recorded as failures and the batch goes on; a full disk stops it. The
    manifest is rewritten (atomically) from all completion records at the end.

    Raises
    ------
    ExpokitError
        Before any work: no inputs, unusable output folder (a file, or a folder expokit
        did not make), parameters that differ from an earlier render into the same folder,
        name clashes.
    RootInUseError
        Another render is writing into ``out_dir``.
    """
    started = time.time()
    files, ignored = discover_raw_files(inputs)
    if not files:
        raise ExpokitError(
            "no RAW files found in "
            + ", ".join(map(str, inputs))
            + (f" ({ignored} non-RAW files ignored)" if ignored else "")
        )
    out = claim_root(out_dir, "render", what="render output folder (--out)").resolve()
    with RootLock(out, "expokit render"):
        return _render_locked(files, out, config, started, workers, executor, progress, durable)


def _render_locked(
    files: list[Path],
    out: Path,
    config: RenderConfig,
    started: float,
    workers: int,
    executor: str,
    progress: bool,
    durable: bool,
) -> RenderSummary:
    """The body of :func:`render_batch`, run while ``out`` is locked.

    Parameters
    ----------
    files
        Absolute RAW paths, sorted and unique (from :func:`discover_raw_files`).
    out
        The claimed, locked, resolved render folder.
    config
        Render parameters.
    started
        Start of the batch, seconds since the epoch (``time.time()``).
    workers, executor, progress
        Passed to :func:`expokit.core.parallel.map_unordered`.
    durable
        fsync every file written.

    Returns
    -------
    RenderSummary
        Counts, paths, failures and, for a full disk, why the batch stopped.

    Raises
    ------
    ExpokitError
        Before any RAW is rendered: other parameters than an earlier render into ``out``,
        unsafe or clashing output names.
    """
    summary = RenderSummary(
        out_dir=out,
        manifest_path=out / MANIFEST_FILE,
        params_path=out / PARAMS_FILE,
        run_path=out / RUNS_DIR,
    )
    summary.stale_temp_removed = remove_stale_temp_files(out)
    params_hash = config.params_hash()
    _check_params_compatible(out, params_hash)
    names = _checked_names(files, out, config)
    _write_params(summary.params_path, config, params_hash, durable)
    run_id = new_run_id()
    summary.run_path = out / RUNS_DIR / f"{run_id}.json"
    tasks, summary.skipped = _plan_tasks(files, names, out, config, params_hash, run_id, durable)
    run_info = _run_info(run_id, started, config, params_hash, files, tasks, workers, executor)
    write_run_sidecar(summary.run_path, run_info, durable)
    _run_tasks(tasks, summary, workers, executor, progress)
    rows = _manifest_rows(out / RECORDS_DIR)
    summary.outputs = sum(1 for r in rows if r.get("status") == "ok")
    try:
        write_render_manifest(summary.manifest_path, rows)
    except OutputError as exc:
        summary.aborted = (summary.aborted or "") + f" manifest not written: {exc}"
    _finish_run_info(summary, run_info, started, durable)
    return summary


def _checked_names(files: list[Path], out: Path, config: RenderConfig) -> dict[Path, str]:
    """Output name of every RAW, checked safe and not used in ``out`` by another RAW.

    Creates ``out/.expokit/records/`` on the way.

    Parameters
    ----------
    files
        Absolute RAW paths.
    out
        The render folder.
    config
        Render parameters; ``config.layout`` decides the names.

    Returns
    -------
    dict
        ``{raw_path: name}`` for every path of ``files``.

    Raises
    ------
    ExpokitError
        A name that is not a safe file name, or a name whose completion record in ``out``
        belongs to another RAW file.
    """
    names = assign_names(files, config.layout)
    for raw, name in names.items():  # layout names are sanitised; a name is never a path
        check_name(name, "output name", where=str(raw))
    (out / RECORDS_DIR).mkdir(parents=True, exist_ok=True)
    for raw, name in names.items():
        # Read as JSON, not as a RenderRecord: a record that no longer fits its model still
        # says which RAW owns the name, and its outputs must not be overwritten by another.
        previous = read_json_object(record_path(out, name))
        if previous and previous.get("raw_path") not in (None, str(raw)):
            raise ExpokitError(
                f"output name {name!r} for {raw} is already used in {out} by "
                f"{previous.get('raw_path')}; render it into another --out folder"
            )
    return names


def _write_params(path: Path, config: RenderConfig, params_hash: str, durable: bool) -> None:
    """Write ``render_params.json``: parameters, library versions and their hash.

    Parameters
    ----------
    path
        ``<out>/render_params.json``; replaced atomically.
    config
        Render parameters (stored as :meth:`RenderConfig.to_dict`).
    params_hash
        ``config.params_hash()``.
    durable
        fsync the file.
    """
    atomic_write_json(
        path,
        {
            "params_hash": params_hash,
            "config": config.to_dict(),
            "libraries": library_versions(),
            "expokit_version": __version__,
        },
        durable,
    )


def _plan_tasks(
    files: list[Path],
    names: dict[Path, str],
    out: Path,
    config: RenderConfig,
    params_hash: str,
    run_id: str,
    durable: bool,
) -> tuple[list[RenderTask], int]:
    """Tasks for the RAWs not yet rendered with ``params_hash``, largest file first.

    Parameters
    ----------
    files
        Absolute RAW paths.
    names
        Output name of every path of ``files`` (from :func:`_checked_names`).
    out
        The render folder.
    config, params_hash, run_id, durable
        Copied into every :class:`RenderTask`.

    Returns
    -------
    tuple
        ``(tasks, skipped)``: tasks sorted by RAW file size in bytes, descending (so a big
        file does not finish alone at the end of a parallel batch), and how many RAWs
        have a complete record (:func:`_is_complete`) and are skipped.
    """
    tasks: list[RenderTask] = []
    skipped = 0
    for raw in files:
        name = names[raw]
        found = read_record(out, name, "output name")
        record = found if isinstance(found, RenderRecord) else None  # a scene's: not ours
        if _is_complete(record, raw, params_hash, out):
            skipped += 1
            continue
        tasks.append(RenderTask(str(raw), name, str(out), config, params_hash, run_id, durable))
    tasks.sort(key=lambda t: -Path(t.raw_path).stat().st_size)
    return tasks, skipped


def _run_info(
    run_id: str,
    started: float,
    config: RenderConfig,
    params_hash: str,
    files: list[Path],
    tasks: list[RenderTask],
    workers: int,
    executor: str,
) -> dict[str, Any]:
    """The run sidecar ``runs/<run_id>.json`` as written when the run starts.

    Parameters
    ----------
    run_id
        From :func:`expokit.core.runs.new_run_id`.
    started
        Start of the batch, seconds since the epoch.
    config, params_hash
        Render parameters and their hash.
    files
        Every RAW of the batch; ``tasks`` those to render in this run.
    workers, executor
        How the tasks run.

    Returns
    -------
    dict
        JSON-ready sidecar with ``status="running"``; :func:`_finish_run_info` completes it.
    """
    return {
        "run_id": run_id,
        "status": "running",
        "started": utc_timestamp(started),
        "command": sys.argv,
        "params_hash": params_hash,
        "config": config.to_dict(),
        "libraries": library_versions(),
        "expokit_version": __version__,
        "workers": workers,
        "executor": executor,
        "inputs": [str(f) for f in files],
        "to_render": [t.raw_path for t in tasks],
    }


def _run_tasks(
    tasks: list[RenderTask],
    summary: RenderSummary,
    workers: int,
    executor: str,
    progress: bool,
) -> None:
    """Render ``tasks`` with :func:`render_raw`; count results into ``summary``.

    A failed RAW is added to ``summary.failures`` and the batch goes on; a full disk sets
    ``summary.aborted`` and stops the batch (tasks not started are not rendered).

    Parameters
    ----------
    tasks
        What to render.
    summary
        Updated in place: ``rendered``, ``failures``, ``aborted``.
    workers, executor, progress
        Passed to :func:`expokit.core.parallel.map_unordered`.
    """
    results = map_unordered(
        render_raw,
        tasks,
        workers=workers,
        executor=executor,
        on_error=_crashed_record,
        desc="render",
        progress=progress,
    )
    for _, record in results:
        if record.status == "ok":
            summary.rendered += 1
            continue
        summary.failures.append((record.raw_path, str(record.error)))
        if record.error_kind == DISK_FULL:
            summary.aborted = f"stopped: {record.error}"
            results.close()
            break


def _manifest_rows(records_dir: Path) -> list[dict[str, Any]]:
    """Manifest rows of every completion record in ``records_dir``, in a stable order.

    Parameters
    ----------
    records_dir
        ``<out>/.expokit/records``; unreadable or empty records are left out.

    Returns
    -------
    list of dict
        Rows sorted by ``(name, role, ev, output_format)``, failed RAWs included (their one
        row has ``status="failed"``).
    """
    rows: list[dict[str, Any]] = []
    for path in record_files(records_dir):
        stored = read_json_object(path)
        if stored:
            rows.extend(stored.get("rows", []))
    rows.sort(
        key=lambda r: (
            r["name"],
            r.get("role") or "",
            r.get("ev") or 0.0,
            r.get("output_format") or "",
        )
    )
    return rows


def _finish_run_info(
    summary: RenderSummary, run_info: dict[str, Any], started: float, durable: bool
) -> None:
    """Complete the run sidecar from ``summary`` and write it to ``summary.run_path``.

    Parameters
    ----------
    summary
        The finished batch.
    run_info
        The sidecar from :func:`_run_info`; updated in place with the status (``ok``,
        ``failed`` or ``aborted``), finish time, duration in seconds and counts.
    started
        Start of the batch, seconds since the epoch.
    durable
        fsync the file.

    Notes
    -----
    A failed write (a full disk) is ignored: its message is already in the summary.
    """
    run_info.update(
        status="aborted" if summary.aborted else ("failed" if summary.failures else "ok"),
        finished=utc_timestamp(),
        seconds=round(time.time() - started, 3),
        rendered=summary.rendered,
        skipped=summary.skipped,
        failures=[{"raw_path": p, "error": e} for p, e in summary.failures],
        aborted=summary.aborted,
    )
    with contextlib.suppress(OutputError):
        write_run_sidecar(summary.run_path, run_info, durable)
