"""One scene of ``curate build``: :func:`build_scene` is the pure, idempotent per-scene step
(the same under every executor). It reads a :class:`~expokit.curation.build.sources.SceneSpec`,
runs every pair through :mod:`expokit.curation.build.pair`, commits the images under
``images/<scene_id>/`` and writes a completion record
(:mod:`expokit.curation.build.record`).

Test fault hook
---------------
When the environment variable ``EXPOKIT_FAULT_KILL_SCENE`` equals a scene id,
:func:`build_scene` kills its own process with SIGKILL before building that scene (as an
out-of-memory kill would); the tests use it to prove a dead worker is named and the other
scenes finish. Never set it outside tests.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path

from expokit import __version__
from expokit.calibration.rig_calibration import read_rig_calibration
from expokit.core.errors import InputFileError, OutputError
from expokit.core.parallel import WorkerDiedError, native_threads
from expokit.core.paths import PathEscapeError
from expokit.core.runs import (
    RECORD_VERSION,
    BuildRecord,
    InputRecord,
    OriginRecord,
    output_error_kind,
    write_record,
)
from expokit.curation.build.align import AlignmentError
from expokit.curation.build.pair import BuiltPair, process_pair
from expokit.curation.build.record import (
    SceneRecord,
    input_hashes,
    outputs_intact,
    read_record,
    record_path,
    scene_key,
)
from expokit.curation.build.sources import (
    FrameReader,
    SceneSpec,
)
from expokit.curation.build.task import SceneError, SceneState, SceneTask

#: Test fault hook: the scene whose build kills its own process (see the module docstring).
FAULT_KILL_SCENE_ENV = "EXPOKIT_FAULT_KILL_SCENE"


def _check_frame_counts(spec: SceneSpec) -> None:
    """A movie that decodes another number of frames than sync.json says: LQ/GT mismatch."""
    for movie, expected in spec.expected_frames:
        actual = FrameReader(movie).count()
        if actual != expected:
            raise InputFileError(
                movie,
                f"decodes {actual} frames but {spec.sync} maps {expected} "
                "(LQ/GT frame-count mismatch)",
            )


def _process_scene(task: SceneTask, state: SceneState) -> list[BuiltPair]:
    spec = task.spec
    if spec.problem:
        raise SceneError(spec.scene_id, spec.problem)
    if not spec.pairs:
        raise SceneError(spec.scene_id, f"{spec.source_root}: no pairs found for this scene")
    calibration = None
    if spec.source == "capture" and spec.calibration:
        calibration = read_rig_calibration(spec.calibration)
    if spec.video:
        _check_frame_counts(spec)
    pairs = []
    for pair in spec.pairs:
        try:
            pairs.append(process_pair(task, pair, calibration, state))
        except AlignmentError as exc:
            raise SceneError(
                spec.scene_id, f"{pair.input.label} vs {pair.target.label}: {exc}"
            ) from None
    return pairs


def build_scene(task: SceneTask) -> SceneRecord:
    """Build one scene; write its images, then its completion record; return the record.

    Never raises for a bad input: the record then has ``status="failed"`` and an ``error``
    ``"scene <id>: <file>: <problem>"``. A scene whose record already matches (same key,
    intact outputs) is returned as read, with ``skipped=True``. Every file is written
    inside ``task.out_root`` (a link leaving it fails the scene).

    Test fault hook: when ``EXPOKIT_FAULT_KILL_SCENE`` equals the scene id, the process
    kills itself with SIGKILL first (see the module docstring).
    """
    import cv2

    if os.environ.get(FAULT_KILL_SCENE_ENV) == task.spec.scene_id:
        os.kill(os.getpid(), signal.SIGKILL)
    # Pool workers get OMP_NUM_THREADS = cpus // workers; OpenCV's own pool ignores it, and
    # N workers each running DIS/ECC on every core would oversubscribe the machine.
    cv2.setNumThreads(native_threads())
    started = time.perf_counter()
    spec = task.spec
    out = Path(task.out_root)
    inputs: list[InputRecord] = []
    key: str | None = None
    pairs: list[BuiltPair] = []
    outputs: dict[str, str] = {}
    failure: tuple[str, str] | None = None  # (error, error_kind)
    state = SceneState()
    path: Path | None = None
    try:
        path = record_path(out, spec.scene_id)
        previous = read_record(out, spec.scene_id)
        if not spec.problem:
            inputs, hashes = input_hashes(spec, previous.record if previous else None)
            key = scene_key(spec, hashes, task.params_hash)
            if (
                previous
                and previous.ok
                and previous.record.key == key
                and outputs_intact(previous.record, out)
            ):
                return replace(previous, skipped=True)
        with state.commit:  # renames the staged files on success, removes them on failure
            pairs = _process_scene(task, state)
        outputs = dict(sorted(state.outputs.items()))
    except SceneError as exc:
        failure = (f"scene {spec.scene_id}: {exc.problem}", "input")
    except InputFileError as exc:
        failure = (f"scene {spec.scene_id}: {exc}", "input")
    except OutputError as exc:
        failure = (f"scene {spec.scene_id}: {exc}", output_error_kind(exc))
    except PathEscapeError as exc:
        failure = (f"scene {spec.scene_id}: {exc}", "output")
    finally:
        for reader in state.readers.values():
            reader.close()
    if failure is not None:
        pairs = []
    record = BuildRecord(
        record_version=RECORD_VERSION,
        scene_id=spec.scene_id,
        source=spec.source,
        source_root=spec.source_root,
        status="ok" if failure is None else "failed",
        error=None if failure is None else failure[0],
        error_kind=None if failure is None else failure[1],
        inputs=inputs,
        rows=[pair.to_json() for pair in pairs],
        outputs=outputs,
        params_hash=task.params_hash,
        run_id=task.run_id,
        expokit_version=__version__,
        key=key,
        origins=[OriginRecord(p, d) for p, d in spec.origins],
        seconds=round(time.perf_counter() - started, 4),
    )
    if path is None:
        # the record itself would leave the root: nothing is written
        return SceneRecord(record, tuple(pairs))
    try:
        write_record(path, record, task.durable)
    except OutputError as exc:
        if record.status == "ok":
            record = replace(
                record, status="failed", error=f"scene {spec.scene_id}: {exc}", error_kind="output"
            )
    return SceneRecord(record, tuple(pairs))


def crashed_record(task: SceneTask, exc: BaseException) -> SceneRecord:
    """Record for a scene whose build raised unexpectedly or whose worker process died.

    A dead worker (:class:`~expokit.core.parallel.WorkerDiedError`, pinned on this scene
    by :func:`~expokit.core.parallel.map_unordered`) is named as such with its signal, so
    an out-of-memory kill reads as one; nothing is written (a re-run builds the scene).
    """
    scene = task.spec.scene_id
    if isinstance(exc, WorkerDiedError):
        error = (
            f"scene {scene}: {exc}; the other scenes were not affected, re-run to retry it "
            "(fewer --workers or a smaller --max-side if it ran out of memory)"
        )
        kind = "worker_died"
    else:
        error = f"scene {scene}: build crashed: {type(exc).__name__}: {exc}"
        kind = "crash"
    record = BuildRecord(
        record_version=RECORD_VERSION,
        scene_id=scene,
        source=task.spec.source,
        source_root=task.spec.source_root,
        status="failed",
        error=error,
        error_kind=kind,
        inputs=[],
        rows=[],
        outputs={},
    )
    return SceneRecord(record, ())
