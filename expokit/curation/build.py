"""``expokit curate build``: turn sources into a dataset root (format v1).

:func:`build_scene` is the pure, idempotent per-scene step (the same under every executor):
it reads a :class:`~expokit.curation.sources.SceneSpec`, aligns and measures every pair,
writes the images atomically under ``images/<scene_id>/`` and a completion record under
``.expokit/records/<scene_id>.json``. :func:`build_dataset` discovers the scenes, skips
those whose record proves they are done, runs the rest (in process, on a spawn pool, or on
Ray), then assembles flags, splits, ``meta/info.json`` and ``manifest.parquet``.

Per pair (see :mod:`expokit.curation.align` and :mod:`expokit.curation.qa`)
---------------------------------------------------------------------------
1. read input and target (RAW files are decoded to 16-bit sRGB, movie frames by index);
2. capture pairs: flip and warp the test image with the rig homography; optionally refine
   by ECC (any source) and compose, so the raw input is resampled once;
3. downscale (``max_side``), find the largest valid rectangle, crop to it (``crop``);
4. fit the linear gain ``target / input`` on valid, unclipped pixels (stored, not applied);
5. QA: PSNR/SSIM of the gain-normalised input vs the target inside the valid mask, the DIS
   flow residual, clipping fractions; per video clip, flicker;
6. write input, target (once per scene when it is shared and uncropped) and, when the input
   was resampled, the valid mask (8-bit PNG, 255 = valid).

Coordinates
-----------
``homography`` is in source pixels (the rig convention for capture pairs: flipped,
undistorted test pixels to undistorted reference pixels; input to target pixels otherwise).
``valid_x/y/w/h``, ``width``/``height`` and ``alignment_residual_px`` are in pixels of the
stored (possibly downscaled) reference frame; with ``crop`` the stored images are the valid
rectangle.

Skipping
--------
A scene's record key is a hash of its spec, the SHA-256 of every input file (and of the rig
calibration and sync.json it uses) and :meth:`BuildConfig.params_hash`. A scene is skipped
when its record has that key and every output it lists still has its recorded SHA-256.
Input hashes are reused from the record while a file's size and mtime are unchanged.
QA thresholds and splits are applied at assembly, so changing them re-processes nothing.

Rebuilds
--------
A build into an existing dataset is incremental: it adds or updates the scenes of the
given sources and keeps every other scene with its images, rows and split (their rows come
from their completion records, so current QA thresholds re-flag them). Provenance sources
accumulate. Removing scenes is explicit (``remove_scenes``): their rows go, and of their
files only those listed in their completion record, inside the root and with the recorded
SHA-256, are deleted (anything else is left and reported). A scene id already in the
dataset from another source is an error, and two scenes holding an image input with the
same SHA-256 (one capture under two names: a train/test leak) fail the later one.

Roots and locks
---------------
The output folder is claimed as a ``dataset`` root (a non-empty folder expokit did not make
is refused) and locked for the whole build (:class:`~expokit.core.lock.RootLock`), so a
second build into it stops with "in use by pid N"; stale temporary files are removed only
under the lock. Every file written below the root is resolved with symlinks followed and
must stay inside it (a scene folder linked elsewhere fails its scene).

Test fault hook
---------------
When the environment variable ``EXPOKIT_FAULT_KILL_SCENE`` equals a scene id,
:func:`build_scene` kills its own process with SIGKILL before building that scene (as an
out-of-memory kill would); the tests use it to prove a dead worker is named and the other
scenes finish. Never set it outside tests.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from expokit import __version__
from expokit.core.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    ensure_writable_dir,
    read_json_object,
    remove_stale_temp_files,
)
from expokit.core.errors import ExpokitError, InputFileError, OutputError
from expokit.core.hashing import sha256_bytes, sha256_file, stable_hash
from expokit.core.lock import RootLock
from expokit.core.parallel import WorkerDiedError, map_unordered, native_threads
from expokit.core.paths import PathEscapeError, check_name, resolve_inside
from expokit.core.roots import claim_root
from expokit.curation.build_config import BuildConfig
from expokit.curation.sources import (
    FrameReader,
    ImageRef,
    LoadedImage,
    PairSpec,
    SceneSpec,
    discover,
    load_image,
)

RECORDS_DIR = ".expokit/records"
RECORD_VERSION = 1
IMAGES_DIR = "images"
#: Test fault hook: the scene whose build kills its own process (see the module docstring).
FAULT_KILL_SCENE_ENV = "EXPOKIT_FAULT_KILL_SCENE"
LOCK_PURPOSE = "expokit curate build"


# --------------------------------------------------------------------------- records


def record_path(out_root: str | Path, scene_id: str) -> Path:
    """Where the completion record of ``scene_id`` lives.

    Raises
    ------
    UnsafeNameError
        ``scene_id`` is not a safe path component.
    PathEscapeError
        The records folder resolves outside ``out_root`` (a symlink leaves the root).
    """
    name = check_name(scene_id, "scene id")
    return resolve_inside(out_root, f"{RECORDS_DIR}/{name}.json", "completion record")


def read_record(out_root: str | Path, scene_id: str) -> dict[str, Any] | None:
    """The completion record of ``scene_id``, or ``None`` (missing, unreadable, or its path
    leaves the root: the scene is then built, and fails with a clear message)."""
    try:
        return read_json_object(record_path(out_root, scene_id))
    except ExpokitError:  # UnsafeNameError, PathEscapeError
        return None


def scene_key(spec: SceneSpec, input_sha256: dict[str, str], params_hash: str) -> str:
    """Hash of the scene spec, its inputs' SHA-256 and the build parameters."""
    return stable_hash(
        {
            "spec": spec.to_dict(),
            "inputs": dict(sorted(input_sha256.items())),
            "params": params_hash,
            "record_version": RECORD_VERSION,
        },
        length=32,
    )


def outputs_intact(record: dict[str, Any], out_root: Path) -> bool:
    """Every output of ``record`` exists with its recorded SHA-256."""
    outputs = record.get("outputs")
    if not isinstance(outputs, dict):
        return False
    for relpath, digest in outputs.items():
        try:
            if sha256_file(resolve_inside(out_root, relpath, "output file")) != digest:
                return False
        except (OSError, PathEscapeError):
            return False
    return True


def _recorded_inputs(record: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if not record:
        return {}
    return {str(i.get("path")): i for i in record.get("inputs", []) if isinstance(i, dict)}


def input_hashes(
    spec: SceneSpec, previous: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Size, mtime and SHA-256 of every input of ``spec``.

    A file whose size and mtime match ``previous``'s record reuses its recorded hash.

    Raises
    ------
    InputFileError
        An input file that does not exist or cannot be read.
    """
    known = _recorded_inputs(previous)
    infos, hashes = [], {}
    for name in spec.input_files():
        path = Path(name)
        try:
            stat = path.stat()
        except OSError:
            raise InputFileError(path, "no such file") from None
        old = known.get(name)
        if old and (old.get("size"), old.get("mtime_ns")) == (stat.st_size, stat.st_mtime_ns):
            digest = str(old["sha256"])
        else:
            try:
                digest = sha256_file(path)
            except OSError as exc:
                raise InputFileError(path, f"cannot read: {exc}") from None
        infos.append(
            {"path": name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
        )
        hashes[name] = digest
    return infos, hashes


def is_done(spec: SceneSpec, record: dict[str, Any] | None, params_hash: str, out: Path) -> bool:
    """True when ``record`` proves ``spec`` is built with ``params_hash`` (stat-cheap inputs)."""
    if not record or record.get("status") != "ok" or record.get("record_version") != RECORD_VERSION:
        return False
    known = _recorded_inputs(record)
    if set(known) != set(spec.input_files()):
        return False
    for name, info in known.items():
        try:
            stat = Path(name).stat()
        except OSError:
            return False
        if (info.get("size"), info.get("mtime_ns")) != (stat.st_size, stat.st_mtime_ns):
            return False
    hashes = {name: str(info["sha256"]) for name, info in known.items()}
    if record.get("key") != scene_key(spec, hashes, params_hash):
        return False
    return outputs_intact(record, out)


# --------------------------------------------------------------------------- per scene


@dataclass(frozen=True)
class SceneTask:
    """Everything :func:`build_scene` needs; picklable for process pools and Ray."""

    spec: SceneSpec
    out_root: str
    config: BuildConfig
    params_hash: str
    run_id: str
    durable: bool = True


class SceneError(InputFileError):
    """A scene cannot be built; the message names the scene and the file."""


def _encode(image: npt.NDArray[Any], ext: str, config: BuildConfig) -> bytes:
    import cv2

    if ext == ".jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality, cv2.IMWRITE_JPEG_OPTIMIZE, 0]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, config.png_compression]
    ok, buffer = cv2.imencode(ext, image, params)
    if not ok:
        raise OutputError(f"OpenCV could not encode a {ext} image")
    return bytes(buffer.tobytes())


def _harmonise(
    inp: LoadedImage, tgt: LoadedImage
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], str]:
    """Input and target at one bit depth and transfer (the target's transfer; 16-bit wins)."""
    from expokit.curation.align import bits_of, from_linear, to_linear

    a, b = inp.pixels, tgt.pixels
    bits = max(bits_of(a), bits_of(b))
    if inp.transfer != tgt.transfer or bits_of(a) != bits:
        a = from_linear(to_linear(a, inp.transfer), bits, tgt.transfer)
    if bits_of(b) != bits:
        b = from_linear(to_linear(b, tgt.transfer), bits, tgt.transfer)
    return a, b, tgt.transfer


@dataclass
class _SceneState:
    """Per-scene working state: caches and what was written."""

    readers: dict[str, FrameReader] = field(default_factory=dict)
    targets: dict[str, LoadedImage] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)


def _load(ref: ImageRef, state: _SceneState, cache: bool) -> LoadedImage:
    if cache and ref.label in state.targets:
        return state.targets[ref.label]
    loaded = load_image(ref, state.readers)
    if cache:
        state.targets[ref.label] = loaded
    return loaded


def _write(task: SceneTask, state: _SceneState, relpath: str, data: bytes) -> str:
    digest = sha256_bytes(data)
    if state.outputs.get(relpath) != digest:
        # Resolved with symlinks followed: an images/<scene> link leaving the root fails
        # the scene (PathEscapeError) instead of being written through.
        target = resolve_inside(task.out_root, relpath, "output file")
        atomic_write_bytes(target, data, task.durable)
        state.outputs[relpath] = digest
    return digest


def process_pair(
    task: SceneTask, pair: PairSpec, calibration: Any, state: _SceneState
) -> dict[str, Any]:
    """Align, measure and write one pair; return its manifest row (without flags/split).

    Private keys carry what assembly needs and are not written to the manifest:
    ``_frame_w``/``_frame_h`` (the stored reference frame before any crop), ``_crop_x``/
    ``_crop_y`` (where the crop sits in that frame), ``_target_luma`` (flicker) and
    ``_exif_mismatch`` (the capture journal's EXIF check, for the ``exif_mismatch`` flag).

    ``valid_x/y/w/h`` are in pixels of the stored images: with ``crop`` the stored images
    are the valid rectangle, so it is ``(0, 0, width, height)``.
    """
    from expokit.curation.align import (
        align_pair,
        bits_of,
        downscale,
        fit_gain,
        flow_residual,
        normalise_exposure,
        valid_rectangle,
    )
    from expokit.curation.qa import mean_luminance, pair_figures

    spec, config = task.spec, task.config
    tgt = _load(pair.target, state, cache=spec.shared_target)
    inp = _load(pair.input, state, cache=False)
    a, b, transfer = _harmonise(inp, tgt)
    bits = bits_of(b)
    levels = config.clip_levels(bits)
    rig = calibration if spec.source == "capture" else None
    target_full = b

    def measure(aligned: Any) -> tuple[Any, ...]:
        """Downscale, crop, fit the gain and measure the residual of one alignment."""
        (a2, b2), valid2, _ = downscale([aligned.image, target_full], aligned.valid,
                                        config.max_side)  # fmt: skip
        rect = valid_rectangle(valid2)
        frame = valid2.shape
        if config.crop:
            x0, y0, w0, h0 = rect
            a2, b2, valid2 = (m[y0 : y0 + h0, x0 : x0 + w0] for m in (a2, b2, valid2))
        gain2 = fit_gain(a2, b2, valid2, levels, transfer)
        normalised2 = normalise_exposure(a2, gain2, transfer)
        residual2 = flow_residual(normalised2, b2, valid2, levels, config.flow_max_side)
        return aligned, a2, b2, valid2, rect, frame, gain2, normalised2, residual2

    plain = measure(align_pair(a, b, rig))
    chosen = plain
    if config.ecc_refine:
        refined = align_pair(
            a, b, rig, ecc=True, ecc_max_side=config.ecc_max_side,
            ecc_motions=config.ecc_motions, ecc_max_shift=config.ecc_max_shift,
        )  # fmt: skip
        if refined.ecc is not None and refined.ecc.motion != "identity":
            candidate = measure(refined)
            # ECC can converge to a motion that fits worse (e.g. clipped, already aligned
            # pairs): keep it only when the measured residual does not get worse.
            if candidate[-1] <= plain[-1]:
                chosen = candidate
        elif refined.ecc is not None:
            chosen = (refined, *plain[1:])  # identity: same images, ECC figures recorded
    aligned, a, b, valid, (x, y, w, h), (frame_h, frame_w), gain, normalised, residual = chosen
    figures = pair_figures(normalised, a, b, valid, levels)

    ext = ".png" if bits == 16 or config.image_format == "png" else ".jpg"
    folder = f"{IMAGES_DIR}/{spec.scene_id}"
    input_rel = f"{folder}/{pair.stem}_input{ext}"
    input_sha = _write(task, state, input_rel, _encode(np.ascontiguousarray(a), ext, config))
    # The stored target is the same for every pair of the scene unless a crop cut it.
    full_target = not config.crop or (w, h) == (frame_w, frame_h)
    target_stem = spec.scene_id if spec.shared_target and full_target else pair.stem
    target_rel = f"{folder}/{target_stem}_target{ext}"
    if target_rel in state.outputs and target_stem != pair.stem:
        target_sha = state.outputs[target_rel]  # the shared target, written by an earlier pair
    else:
        target_sha = _write(task, state, target_rel, _encode(np.ascontiguousarray(b), ext, config))
    mask_rel = None
    if aligned.resampled:
        mask_rel = f"{folder}/{pair.stem}_mask.png"
        mask = np.ascontiguousarray(valid.astype(np.uint8) * 255)
        _write(task, state, mask_rel, _encode(mask, ".png", config))
    homography = (
        None if aligned.homography is None else json.dumps(np.asarray(aligned.homography).tolist())
    )
    meta_in, meta_t = inp.metadata, tgt.metadata
    crop_x, crop_y = (x, y) if config.crop else (0, 0)
    if config.crop:
        x, y = 0, 0  # the stored images start at the crop's corner
    exif_mismatch = "; ".join(
        text for text in (pair.input.exif_mismatch, pair.target.exif_mismatch) if text
    )
    return {
        "pair_id": f"{spec.scene_id}/{spec.clip_id or '-'}/{pair.stem}",
        "scene_id": spec.scene_id,
        "clip_id": spec.clip_id,
        "frame_index": pair.frame_index,
        "source": spec.source,
        "input_role": pair.input.role,
        "target_role": pair.target.role,
        "input_ev": pair.input.ev,
        "target_ev": pair.target.ev,
        "input_exposure_time_s": meta_in.get("exposure_time_s"),
        "input_iso": meta_in.get("iso"),
        "input_f_number": meta_in.get("f_number"),
        "target_exposure_time_s": meta_t.get("exposure_time_s"),
        "target_iso": meta_t.get("iso"),
        "target_f_number": meta_t.get("f_number"),
        "input_path": input_rel,
        "target_path": target_rel,
        "mask_path": mask_rel,
        "input_sha256": input_sha,
        "target_sha256": target_sha,
        "source_input": pair.input.label,
        "source_target": pair.target.label,
        "width": int(b.shape[1]),
        "height": int(b.shape[0]),
        "homography": homography,
        "ecc_correlation": None if aligned.ecc is None else float(aligned.ecc.correlation),
        "alignment_residual_px": residual,
        "photometric_gain": gain,
        "valid_x": x,
        "valid_y": y,
        "valid_w": w,
        "valid_h": h,
        **figures,
        "flicker": None,
        "_frame_w": frame_w,
        "_frame_h": frame_h,
        "_crop_x": crop_x,
        "_crop_y": crop_y,
        "_target_luma": mean_luminance(b, valid, transfer),
        "_exif_mismatch": exif_mismatch or None,
    }


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


def _process_scene(task: SceneTask, state: _SceneState) -> list[dict[str, Any]]:
    from expokit.curation.align import AlignmentError
    from expokit.curation.qa import flicker

    spec = task.spec
    if spec.problem:
        raise SceneError(spec.scene_id, spec.problem)
    if not spec.pairs:
        raise SceneError(spec.scene_id, f"{spec.source_root}: no pairs found for this scene")
    calibration = None
    if spec.source == "capture" and spec.calibration:
        from expokit.calibration.geometry import load_rig_calibration

        calibration = load_rig_calibration(spec.calibration)
    if spec.video:
        _check_frame_counts(spec)
    rows = []
    for pair in spec.pairs:
        try:
            rows.append(process_pair(task, pair, calibration, state))
        except AlignmentError as exc:
            raise SceneError(
                spec.scene_id, f"{pair.input.label} vs {pair.target.label}: {exc}"
            ) from None
    if spec.video:
        value = flicker([r["_target_luma"] for r in rows])
        for row in rows:
            row["flicker"] = value
    return rows


def build_scene(task: SceneTask) -> dict[str, Any]:
    """Build one scene; write its images, then its completion record; return the record.

    Never raises for a bad input: the record then has ``status="failed"`` and an ``error``
    ``"scene <id>: <file>: <problem>"``. A scene whose record already matches (same key,
    intact outputs) is returned as is with ``skipped=True``. Every file is written inside
    ``task.out_root`` (a link leaving it fails the scene).

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
    record: dict[str, Any] = {
        "record_version": RECORD_VERSION,
        "scene_id": spec.scene_id,
        "source": spec.source,
        "source_root": spec.source_root,
        "params_hash": task.params_hash,
        "run_id": task.run_id,
        "expokit_version": __version__,
        "status": "ok",
        "error": None,
        "error_kind": None,
        "key": None,
        "inputs": [],
        "origins": [{"path": p, "sha256": d} for p, d in spec.origins],
        "rows": [],
        "outputs": {},
    }
    state = _SceneState()
    path: Path | None = None
    try:
        path = record_path(out, spec.scene_id)
        previous = read_json_object(path)
        if not spec.problem:
            record["inputs"], hashes = input_hashes(spec, previous)
            record["key"] = scene_key(spec, hashes, task.params_hash)
            if (
                previous
                and previous.get("status") == "ok"
                and previous.get("key") == record["key"]
                and outputs_intact(previous, out)
            ):
                return {**previous, "skipped": True}
        record["rows"] = _process_scene(task, state)
        record["outputs"] = dict(sorted(state.outputs.items()))
    except SceneError as exc:
        record.update(
            status="failed", error=f"scene {spec.scene_id}: {exc.problem}", error_kind="input"
        )
    except InputFileError as exc:
        record.update(status="failed", error=f"scene {spec.scene_id}: {exc}", error_kind="input")
    except OutputError as exc:
        kind = "disk_full" if "disk full" in str(exc) else "output"
        record.update(status="failed", error=f"scene {spec.scene_id}: {exc}", error_kind=kind)
    except PathEscapeError as exc:
        record.update(status="failed", error=f"scene {spec.scene_id}: {exc}", error_kind="output")
    finally:
        for reader in state.readers.values():
            reader.close()
    if record["status"] == "failed":
        record["rows"] = []
    record["seconds"] = round(time.perf_counter() - started, 4)
    if path is None:
        return record  # the record itself would leave the root: nothing is written
    try:
        atomic_write_json(path, record, task.durable)
    except OutputError as exc:
        if record["status"] == "ok":
            record.update(
                status="failed", error=f"scene {spec.scene_id}: {exc}", error_kind="output"
            )
    return record


def _crashed_record(task: SceneTask, exc: BaseException) -> dict[str, Any]:
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
    return {
        "record_version": RECORD_VERSION,
        "scene_id": scene,
        "source": task.spec.source,
        "source_root": task.spec.source_root,
        "status": "failed",
        "error": error,
        "error_kind": kind,
        "inputs": [],
        "rows": [],
        "outputs": {},
    }


# --------------------------------------------------------------------------- batch driver


@dataclass
class BuildSummary:
    """What a build did, for the command line and for callers."""

    out_dir: Path
    scenes: int = 0
    built: int = 0
    skipped: int = 0
    kept: int = 0
    pairs: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    removed: list[tuple[str, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    flag_counts: dict[str, int] = field(default_factory=dict)
    split_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    aborted: str | None = None
    csv_path: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failures and self.aborted is None

    def report(self) -> list[tuple[str, bool]]:
        """Lines for a person: ``(text, is_problem)``."""
        flags = ", ".join(f"{k} {v}" for k, v in self.flag_counts.items()) or "none"
        splits = ", ".join(f"{k} {v}" for k, v in self.split_counts.items()) or "none"
        kept = f", kept {self.kept} from earlier builds" if self.kept else ""
        lines = [
            (
                f"built {self.built} scene(s), skipped {self.skipped} already done, "
                f"{len(self.failures)} failed{kept}; {self.pairs} pairs in {self.seconds:.1f} s",
                False,
            ),
            (f"splits (pairs): {splits}", False),
            (f"flagged pairs:  {flags}", False),
            (f"dataset:  {self.out_dir}", False),
        ]
        if self.csv_path:
            lines.append((f"csv:      {self.csv_path}", False))
        lines += [(f"removed scene {s}: {n} file(s) deleted", False) for s, n in self.removed]
        lines += [(f"note: {note}", False) for note in self.notes]
        lines += [(f"failed: {error}", True) for _, error in self.failures]
        if self.aborted:
            lines.append((f"aborted: {self.aborted}", True))
        return lines


def discover_all(
    sources: Sequence[str | Path],
    config: BuildConfig,
    *,
    rig_calibration: str | Path | None = None,
    sync_files: Sequence[str | Path] = (),
) -> tuple[list[SceneSpec], list[dict[str, Any]]]:
    """Scenes of every source, in order, and each source's provenance.

    Raises
    ------
    ExpokitError
        No sources, a source that cannot be used, two scenes with one id, or a scene or
        clip id that is not a safe path component.
    """
    if not sources:
        raise ExpokitError("no source folders given")
    scenes: list[SceneSpec] = []
    provenance: list[dict[str, Any]] = []
    owner: dict[str, str] = {}
    for source in sources:
        found = discover(source, config, rig_calibration=rig_calibration, sync_files=sync_files)
        for spec in found.scenes:
            # Scene ids become images/<scene_id>/ and record names: checked where they enter.
            check_name(spec.scene_id, "scene id", where=str(source))
            if spec.clip_id is not None:
                check_name(spec.clip_id, "clip id", where=str(source))
            if spec.scene_id in owner:
                raise ExpokitError(
                    f"scene id {spec.scene_id!r} comes from {owner[spec.scene_id]} and from "
                    f"{source}; build them into separate datasets or rename one"
                )
            owner[spec.scene_id] = str(source)
        scenes += found.scenes
        provenance.append(found.provenance)
    return scenes, provenance


def assemble_manifest(
    rows: list[dict[str, Any]], splits: dict[str, str], config: BuildConfig
) -> Any:
    """Manifest frame from scene rows: flags from ``config.qa``, split by scene, sorted.

    Rows carrying ``_keep_flags`` (kept from an earlier manifest without a usable record,
    so without the frame size the flags need) keep their flags.
    """
    from expokit.curation.dataset import manifest_frame
    from expokit.curation.qa import flags_for

    finished: list[Mapping[str, Any]] = []
    for row in rows:
        frame_area = float(row.get("_frame_w") or 0) * float(row.get("_frame_h") or 0)
        fraction = (
            float(row["valid_w"]) * float(row["valid_h"]) / frame_area if frame_area > 0 else None
        )
        flags = (
            str(row.get("flags") or "")
            if row.get("_keep_flags")
            else ",".join(flags_for(row, config.qa, fraction))
        )
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        finished.append({**clean, "flags": flags, "split": splits[row["scene_id"]]})
    finished.sort(key=lambda r: str(r["pair_id"]))
    return manifest_frame(finished)


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


# --------------------------------------------------------------------------- existing dataset


@dataclass
class ExistingDataset:
    """What an incremental build keeps from the dataset already in its root."""

    info: dict[str, Any] = field(default_factory=dict)
    #: scene id -> its manifest rows (plain dicts, nulls as ``None``)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: scene id -> its split in the manifest
    splits: dict[str, str] = field(default_factory=dict)


def load_existing(out: Path) -> ExistingDataset:
    """The dataset already in ``out`` (empty when there is none yet).

    Raises
    ------
    ExpokitError
        ``out`` holds a dataset that cannot be read: building over it would drop its scenes.
    """
    from expokit.curation.dataset import INFO_FILE, MANIFEST_FILE, DatasetError, load_dataset

    if not (out / INFO_FILE).exists() and not (out / MANIFEST_FILE).exists():
        return ExistingDataset()
    try:
        dataset = load_dataset(out)
    except (DatasetError, PathEscapeError) as exc:
        raise ExpokitError(
            f"{out} holds a dataset that cannot be read ({exc}); a build would drop its "
            "scenes: repair it (expokit curate validate) or choose another --out"
        ) from None
    frame = dataset.manifest
    plain = frame.astype(object).where(frame.notna(), None)
    existing = ExistingDataset(info=dataset.info)
    for item in plain.to_dict("records"):
        row = {str(k): v for k, v in item.items()}
        scene = str(row["scene_id"])
        existing.rows.setdefault(scene, []).append(row)
        existing.splits.setdefault(scene, str(row["split"]))
    return existing


def recorded_scene_ids(out: Path) -> set[str]:
    """Scene ids that have a completion record in ``out`` (built or failed earlier)."""
    from expokit.core.paths import is_safe_name

    try:
        folder = resolve_inside(out, RECORDS_DIR, "records folder")
    except PathEscapeError:
        return set()
    if not folder.is_dir():
        return set()
    return {p.stem for p in folder.glob("*.json") if is_safe_name(p.stem)}


def _files_root(paths: Sequence[str]) -> str | None:
    """Common folder of a scene's own image files (calibration/sync json left out)."""
    files = [p.split("#frame=", 1)[0] for p in paths if not p.lower().endswith(".json")]
    files = [p for p in files if Path(p).is_absolute()]
    if not files:
        return None
    try:
        return os.path.commonpath(files)
    except ValueError:
        return None


def _earlier_origin(
    record: Mapping[str, Any] | None, rows: Sequence[Mapping[str, Any]]
) -> tuple[str | None, str | None]:
    """``(source root, folder of its files)`` of a scene of an earlier build."""
    root = record.get("source_root") if record else None
    inputs = [str(i.get("path")) for i in (record or {}).get("inputs", []) if isinstance(i, dict)]
    if not inputs:
        inputs = [str(r[c]) for r in rows for c in ("source_input", "source_target") if r.get(c)]
    return (root if isinstance(root, str) else None), _files_root(inputs)


def check_scene_owners(scenes: Sequence[SceneSpec], existing: ExistingDataset, out: Path) -> None:
    """Refuse a scene id that the dataset already holds from another source.

    The same scene re-built (same source root, or the same files reached through another
    root) is an update.

    Raises
    ------
    ExpokitError
        Naming the scene, the new source and the source that owns it.
    """
    for spec in scenes:
        rows = existing.rows.get(spec.scene_id)
        if rows is None:
            continue
        old_root, old_files = _earlier_origin(read_record(out, spec.scene_id), rows)
        own = set(spec.input_files()) - {f for f in (spec.calibration, spec.sync) if f}
        if old_root == spec.source_root or (
            old_files is not None and old_files == _files_root(sorted(own))
        ):
            continue
        raise ExpokitError(
            f"scene id {spec.scene_id!r} from {spec.source_root} is already in {out} from "
            f"{old_root or old_files or 'another source'}; rename one, build into another "
            f"dataset, or remove the old scene first (--remove-scene {spec.scene_id})"
        )


def find_duplicate_inputs(
    inputs: Mapping[str, Sequence[Mapping[str, Any]]], order: Sequence[str]
) -> dict[str, str]:
    """Scenes holding an image input with the same SHA-256 as an input of another scene.

    One capture under two names would put the same content in two scenes, possibly in
    train and test. Scenes are taken in ``order`` (kept scenes first); a scene sharing
    content with an earlier accepted one is refused. Calibration and sync ``.json`` files,
    which scenes legitimately share, are ignored.

    Parameters
    ----------
    inputs
        ``{scene_id: [{"path": ..., "sha256": ...}, ...]}`` (the records' ``inputs``).
    order
        Scene ids, earlier first.

    Returns
    -------
    dict
        ``{refused scene_id: message naming both scenes and files}``.
    """
    seen: dict[str, tuple[str, str]] = {}
    refused: dict[str, str] = {}
    for scene in order:
        own: dict[str, tuple[str, str]] = {}
        clash: tuple[str, str, str, str] | None = None
        for item in inputs.get(scene, ()):
            path, digest = str(item.get("path")), item.get("sha256")
            if not isinstance(digest, str) or path.lower().endswith(".json"):
                continue
            other = seen.get(digest)
            if other is not None and clash is None:
                clash = (path, digest, *other)
            own.setdefault(digest, (scene, path))
        if clash is None:
            for digest, value in own.items():
                seen.setdefault(digest, value)
            continue
        path, digest, other_scene, other_path = clash
        refused[scene] = (
            f"scene {scene}: {path} has the same content (SHA-256 {digest[:12]}...) as "
            f"{other_path} of scene {other_scene}: one capture under two names would leak "
            f"between splits; keep one (drop the copy from its source, or --remove-scene)"
        )
    return refused


def remove_scene_files(
    out: Path, scene_id: str, rows: Sequence[Mapping[str, Any]]
) -> tuple[int, list[str]]:
    """Delete the files a build wrote for ``scene_id``; return ``(deleted, notes)``.

    Only files listed in the scene's completion record (or, without one, its manifest rows
    with their SHA-256) are candidates, and only those inside ``out`` whose content still
    has the recorded SHA-256 are deleted; every other one is left and described in
    ``notes``. The record itself and the emptied ``images/<scene_id>/`` folder go too.
    """
    path = record_path(out, scene_id)
    record = read_json_object(path)
    files: dict[str, str | None] = {}
    if record is not None and isinstance(record.get("outputs"), dict):
        files = {str(k): str(v) for k, v in record["outputs"].items()}
    else:
        for row in rows:
            for column, digest in (("input_path", "input_sha256"), ("target_path", "target_sha256"),
                                   ("mask_path", None)):  # fmt: skip
                if row.get(column):
                    files[str(row[column])] = (
                        str(row[digest]) if digest and row.get(digest) else None
                    )
    deleted, notes = 0, []
    for relpath, digest in sorted(files.items()):
        try:
            file = resolve_inside(out, relpath, "file")
        except PathEscapeError as exc:
            notes.append(f"scene {scene_id}: left {relpath}: {exc}")
            continue
        if file.is_symlink():
            notes.append(f"scene {scene_id}: left {relpath}: a link, not a file the build wrote")
            continue
        if not file.exists():
            continue
        try:
            same = digest is not None and sha256_file(file) == digest
        except OSError as exc:
            notes.append(f"scene {scene_id}: left {relpath}: cannot read it: {exc}")
            continue
        if not same:
            reason = "no recorded SHA-256" if digest is None else "changed since it was built"
            notes.append(f"scene {scene_id}: left {relpath}: {reason}")
            continue
        try:
            file.unlink()
            deleted += 1
        except OSError as exc:
            notes.append(f"scene {scene_id}: left {relpath}: cannot delete it: {exc}")
    with contextlib.suppress(OSError, PathEscapeError):
        folder = resolve_inside(out, f"{IMAGES_DIR}/{scene_id}", "scene folder")
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()
    with contextlib.suppress(OSError):
        path.unlink()
    return deleted, notes


def rows_intact(out: Path, rows: Sequence[Mapping[str, Any]]) -> bool:
    """Every input and target file of manifest ``rows`` is inside ``out`` with its SHA-256,
    and every mask exists."""
    checks = (("input_path", "input_sha256"), ("target_path", "target_sha256"))
    for row in rows:
        try:
            for column, digest in checks:
                file = resolve_inside(out, str(row[column]), "dataset file")
                if sha256_file(file) != row.get(digest):
                    return False
            mask = row.get("mask_path")
            if mask and not resolve_inside(out, str(mask), "dataset file").is_file():
                return False
        except (OSError, PathEscapeError):
            return False
    return True


def kept_scene_rows(
    out: Path, kept: Mapping[str, Sequence[Mapping[str, Any]]]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """Rows and recorded inputs of the scenes an incremental build keeps.

    A kept scene's rows come from its completion record when that record lists the same
    pairs as the manifest (it carries the frame size, so current QA thresholds re-flag
    them); otherwise the manifest rows are kept as they are, flags included.

    Returns
    -------
    tuple
        ``({scene_id: rows}, {scene_id: recorded inputs})``.
    """
    scene_rows: dict[str, list[dict[str, Any]]] = {}
    scene_inputs: dict[str, list[dict[str, Any]]] = {}
    for scene, rows in sorted(kept.items()):
        record = read_record(out, scene) or {}
        recorded = record.get("rows") if record.get("status") == "ok" else None
        listed = sorted(str(r["pair_id"]) for r in rows)
        if isinstance(recorded, list) and listed == sorted(
            str(r.get("pair_id")) for r in recorded if isinstance(r, dict)
        ):
            scene_rows[scene] = [dict(r) for r in recorded]
        else:
            scene_rows[scene] = [{**r, "_keep_flags": True} for r in rows]
        scene_inputs[scene] = [*(record.get("inputs") or []), *(record.get("origins") or [])]
    return scene_rows, scene_inputs


def _merge_sources(
    earlier: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Earlier provenance sources, updated in place by new ones with the same ``path``,
    then the new ones."""
    merged: dict[str, dict[str, Any]] = {}
    for entry in [*earlier, *new]:
        if isinstance(entry, Mapping):
            merged[str(entry.get("path"))] = dict(entry)
    return list(merged.values())


# --------------------------------------------------------------------------- build


def build_dataset(
    sources: Sequence[str | Path],
    out_dir: str | Path,
    config: BuildConfig | None = None,
    *,
    rig_calibration: str | Path | None = None,
    sync_files: Sequence[str | Path] = (),
    workers: int = 1,
    executor: str = "local",
    progress: bool = True,
    durable: bool = True,
    csv: bool = False,
    remove_scenes: Sequence[str] = (),
) -> BuildSummary:
    """Build (or update) the dataset root ``out_dir`` from ``sources``.

    An existing dataset is updated incrementally: the scenes of ``sources`` are added or
    re-built, every other scene is kept with its images, rows and split, and provenance
    sources accumulate. ``remove_scenes`` removes scenes explicitly (``sources`` may then be
    empty). Bad scenes are recorded as failures (the error names the scene and the file)
    and the batch goes on; their rows are left out of the manifest and listed in info.json.
    A full disk stops the batch. The root is claimed and locked for the whole build.

    Raises
    ------
    ExpokitError
        Before any work: unusable sources or output folder (not empty and not made by
        expokit, or in use by another build), clashing scene ids, unknown ids to remove, a
        split spec that cannot place every scene or names unknown scenes.
    """
    config = config or BuildConfig()
    started = time.perf_counter()
    removing = sorted({check_name(s, "scene id", where="--remove-scene") for s in remove_scenes})
    if sources or not removing:
        scenes, provenance = discover_all(
            sources, config, rig_calibration=rig_calibration, sync_files=sync_files
        )
    else:
        scenes, provenance = [], []
    claim_root(out_dir, "dataset", what="dataset folder (--out)")
    out = ensure_writable_dir(out_dir).resolve()
    with RootLock(out, LOCK_PURPOSE):
        return _build_locked(
            scenes, provenance, out, config, removing, started,
            workers=workers, executor=executor, progress=progress, durable=durable, csv=csv,
        )  # fmt: skip


def _build_locked(
    scenes: list[SceneSpec],
    provenance: list[dict[str, Any]],
    out: Path,
    config: BuildConfig,
    removing: list[str],
    started: float,
    *,
    workers: int,
    executor: str,
    progress: bool,
    durable: bool,
    csv: bool,
) -> BuildSummary:
    """:func:`build_dataset` once the root is claimed and locked."""
    from expokit.curation.card import CARD_FILE, write_card
    from expokit.curation.dataset import (
        INFO_FILE,
        MANIFEST_FILE,
        export_csv,
        load_dataset,
        new_info,
        write_dataset,
    )
    from expokit.curation.splits import assign_splits, check_disjoint

    existing = load_existing(out)
    current = {s.scene_id for s in scenes}
    unknown = [s for s in removing if s not in existing.rows and s not in recorded_scene_ids(out)]
    if unknown:
        raise ExpokitError(
            f"--remove-scene: {out} has no scene {', '.join(unknown)} "
            f"({len(existing.rows)} scene(s) in its manifest); nothing was changed"
        )
    also_built = sorted(set(removing) & current)
    if also_built:
        raise ExpokitError(
            f"--remove-scene {', '.join(also_built)}: still found in the given sources; drop "
            "it from the source, or build without --remove-scene to update it"
        )
    check_scene_owners(scenes, existing, out)
    kept = {s: rows for s, rows in existing.rows.items() if s not in current and s not in removing}
    splits = assign_splits(
        current, config.splits, kept={s: existing.splits[s] for s in kept}, removed=removing
    )  # fails before work
    for relpath in (MANIFEST_FILE, INFO_FILE, CARD_FILE, "manifest.csv", RECORDS_DIR, IMAGES_DIR):
        resolve_inside(out, relpath, "dataset file")  # no write may follow a link out
    summary = BuildSummary(out_dir=out, scenes=len(scenes), kept=len(kept))
    summary.notes += [str(n) for entry in provenance for n in entry.get("notes") or []]
    remove_stale_temp_files(out)  # under the lock: no other build's in-flight files
    params_hash = config.params_hash()
    run_id = new_run_id()
    records: dict[str, dict[str, Any]] = {}
    tasks: list[SceneTask] = []
    for spec in scenes:
        previous = read_record(out, spec.scene_id)
        if previous is not None and is_done(spec, previous, params_hash, out):
            records[spec.scene_id] = previous
            summary.skipped += 1
        else:
            tasks.append(SceneTask(spec, str(out), config, params_hash, run_id, durable))
    # Biggest scenes first so a long one does not finish alone at the end of a parallel batch.
    tasks.sort(key=lambda t: (-len(t.spec.pairs), t.spec.scene_id))
    results = map_unordered(
        build_scene, tasks, workers=workers, executor=executor, on_error=_crashed_record,
        desc="build", unit="scene", progress=progress,
    )  # fmt: skip
    for _, record in results:
        records[record["scene_id"]] = record
        if record.get("status") != "ok":
            if record.get("error_kind") == "disk_full":
                summary.aborted = f"stopped: {record['error']}"
                results.close()
                break
            continue
        if record.get("skipped"):
            summary.skipped += 1
        else:
            summary.built += 1
    scene_rows, scene_inputs = kept_scene_rows(out, kept)
    for spec in sorted(scenes, key=lambda s: s.scene_id):
        found = records.get(spec.scene_id)
        if found is None:
            continue
        if found.get("status") != "ok":
            summary.failures.append((spec.scene_id, str(found.get("error"))))
            earlier_rows = existing.rows.get(spec.scene_id)
            if earlier_rows and rows_intact(out, earlier_rows):
                # A failed rebuild must not cost the scene its earlier, still intact build.
                scene_rows[spec.scene_id] = [{**r, "_keep_flags": True} for r in earlier_rows]
                summary.notes.append(
                    f"scene {spec.scene_id}: its rebuild failed; the dataset keeps its earlier "
                    "build (a re-run retries it)"
                )
            continue
        scene_rows[spec.scene_id] = list(found.get("rows", []))
        scene_inputs[spec.scene_id] = [
            *(found.get("inputs") or []),
            *(found.get("origins") or []),
        ]
    order = [*sorted(kept), *sorted(s for s in scene_rows if s not in kept)]
    for scene, error in find_duplicate_inputs(scene_inputs, order).items():
        del scene_rows[scene]
        summary.failures.append((scene, error))
    summary.failures.sort()
    rows = [row for scene in sorted(scene_rows) for row in scene_rows[scene]]
    manifest = assemble_manifest(rows, splits, config)
    check_disjoint(manifest)
    summary.pairs = len(manifest)
    summary.split_counts = {str(k): int(v) for k, v in manifest.groupby("split").size().items()}
    for flags in manifest["flags"].dropna():
        for flag in filter(None, str(flags).split(",")):
            summary.flag_counts[flag] = summary.flag_counts.get(flag, 0) + 1
    in_dataset = {s: v for s, v in splits.items() if s in scene_rows}
    info = new_info(splits=config.splits.to_dict(), qa_thresholds=config.qa.to_dict())
    for key in ("name", "license", "citation", "description"):  # set by people: kept
        if key in existing.info:
            info[key] = existing.info[key]
    recorded = existing.info.get("provenance")
    earlier: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    if earlier.get("created"):
        info["provenance"]["updated"] = info["provenance"]["created"]
        info["provenance"]["created"] = earlier["created"]
    for entry in provenance:
        entry.update(build_params_hash=params_hash, run_id=run_id)
    info["provenance"]["sources"] = _merge_sources(earlier.get("sources") or [], provenance)
    info["provenance"]["build"] = {
        "run_id": run_id,
        "params_hash": params_hash,
        "config": config.to_dict(),
        "scenes": len(in_dataset),
        "scenes_from_sources": len(scenes),
        "built": summary.built,
        "skipped": summary.skipped,
        "kept": summary.kept,
        "removed": removing,
        "failures": [{"scene_id": s, "error": e} for s, e in summary.failures],
        "scene_splits": {
            split: sorted(s for s, v in in_dataset.items() if v == split)
            for split in sorted(set(in_dataset.values()))
        },
    }
    info["path_templates"] = {
        **info["path_templates"],
        "shared_target": "images/{scene_id}/{scene_id}_target{ext}",
    }
    try:
        write_dataset(out, info, manifest)
        write_card(out)  # README.md: counts, EVs, QA summary, licence, citation
        if csv:
            summary.csv_path = export_csv(load_dataset(out), out / "manifest.csv")
    except OutputError as exc:
        summary.aborted = (summary.aborted or "") + f" dataset not written: {exc}"
    else:
        # Only once the manifest no longer lists them may their files go.
        for scene in removing:
            deleted, notes = remove_scene_files(out, scene, existing.rows.get(scene, []))
            summary.removed.append((scene, deleted))
            summary.notes += notes
    summary.seconds = time.perf_counter() - started
    return summary
