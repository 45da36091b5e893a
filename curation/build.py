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
"""

from __future__ import annotations

import json
import math
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
from expokit.core.parallel import map_unordered, native_threads
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


# --------------------------------------------------------------------------- records


def record_path(out_root: str | Path, scene_id: str) -> Path:
    """Where the completion record of ``scene_id`` lives."""
    return Path(out_root) / RECORDS_DIR / f"{scene_id}.json"


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
        file = out_root / relpath
        try:
            if sha256_file(file) != digest:
                return False
        except OSError:
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
        atomic_write_bytes(Path(task.out_root) / relpath, data, task.durable)
        state.outputs[relpath] = digest
    return digest


def process_pair(
    task: SceneTask, pair: PairSpec, calibration: Any, state: _SceneState
) -> dict[str, Any]:
    """Align, measure and write one pair; return its manifest row (without flags/split).

    Private keys (``_frame_w``, ``_frame_h``, ``_target_luma``) carry what assembly needs
    and are not written to the manifest.
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
        "_target_luma": mean_luminance(b, valid, transfer),
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
    intact outputs) is returned as is with ``skipped=True``.
    """
    import cv2

    # Pool workers get OMP_NUM_THREADS = cpus // workers; OpenCV's own pool ignores it, and
    # N workers each running DIS/ECC on every core would oversubscribe the machine.
    cv2.setNumThreads(native_threads())
    started = time.perf_counter()
    spec = task.spec
    out = Path(task.out_root)
    path = record_path(out, spec.scene_id)
    previous = read_json_object(path)
    record: dict[str, Any] = {
        "record_version": RECORD_VERSION,
        "scene_id": spec.scene_id,
        "source": spec.source,
        "params_hash": task.params_hash,
        "run_id": task.run_id,
        "expokit_version": __version__,
        "status": "ok",
        "error": None,
        "error_kind": None,
        "key": None,
        "inputs": [],
        "rows": [],
        "outputs": {},
    }
    state = _SceneState()
    try:
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
    finally:
        for reader in state.readers.values():
            reader.close()
    if record["status"] == "failed":
        record["rows"] = []
    record["seconds"] = round(time.perf_counter() - started, 4)
    try:
        atomic_write_json(path, record, task.durable)
    except OutputError as exc:
        if record["status"] == "ok":
            record.update(
                status="failed", error=f"scene {spec.scene_id}: {exc}", error_kind="output"
            )
    return record


def _crashed_record(task: SceneTask, exc: BaseException) -> dict[str, Any]:
    """Record for a scene whose worker raised unexpectedly or died."""
    return {
        "record_version": RECORD_VERSION,
        "scene_id": task.spec.scene_id,
        "source": task.spec.source,
        "status": "failed",
        "error": f"scene {task.spec.scene_id}: build crashed: {type(exc).__name__}: {exc}",
        "error_kind": "crash",
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
    pairs: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
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
        lines = [
            (
                f"built {self.built} scene(s), skipped {self.skipped} already done, "
                f"{len(self.failures)} failed; {self.pairs} pairs in {self.seconds:.1f} s",
                False,
            ),
            (f"splits (pairs): {splits}", False),
            (f"flagged pairs:  {flags}", False),
            (f"dataset:  {self.out_dir}", False),
        ]
        if self.csv_path:
            lines.append((f"csv:      {self.csv_path}", False))
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
        No sources, a source that cannot be used, or two scenes with one id.
    """
    if not sources:
        raise ExpokitError("no source folders given")
    scenes: list[SceneSpec] = []
    provenance: list[dict[str, Any]] = []
    owner: dict[str, str] = {}
    for source in sources:
        found = discover(source, config, rig_calibration=rig_calibration, sync_files=sync_files)
        for spec in found.scenes:
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
    """Manifest frame from scene rows: flags from ``config.qa``, split by scene, sorted."""
    from expokit.curation.dataset import manifest_frame
    from expokit.curation.qa import flags_for

    finished: list[Mapping[str, Any]] = []
    for row in rows:
        frame_area = float(row.get("_frame_w") or 0) * float(row.get("_frame_h") or 0)
        fraction = (
            float(row["valid_w"]) * float(row["valid_h"]) / frame_area if frame_area > 0 else None
        )
        flags = flags_for(row, config.qa, fraction)
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        finished.append({**clean, "flags": ",".join(flags), "split": splits[row["scene_id"]]})
    finished.sort(key=lambda r: str(r["pair_id"]))
    return manifest_frame(finished)


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


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
) -> BuildSummary:
    """Build (or update) the dataset root ``out_dir`` from ``sources``.

    Bad scenes are recorded as failures (the error names the scene and the file) and the
    batch goes on; their rows are left out of the manifest and listed in info.json. A full
    disk stops the batch.

    Raises
    ------
    ExpokitError
        Before any work: unusable sources or output folder, clashing scene ids, a split spec
        that cannot place every scene.
    """
    from expokit.curation.card import write_card
    from expokit.curation.dataset import export_csv, load_dataset, new_info, write_dataset
    from expokit.curation.splits import assign_splits, check_disjoint

    config = config or BuildConfig()
    started = time.perf_counter()
    scenes, provenance = discover_all(
        sources, config, rig_calibration=rig_calibration, sync_files=sync_files
    )
    splits = assign_splits([s.scene_id for s in scenes], config.splits)  # fails before work
    out = ensure_writable_dir(out_dir).resolve()
    summary = BuildSummary(out_dir=out, scenes=len(scenes))
    remove_stale_temp_files(out)
    params_hash = config.params_hash()
    run_id = new_run_id()
    records: dict[str, dict[str, Any]] = {}
    tasks: list[SceneTask] = []
    for spec in scenes:
        previous = read_json_object(record_path(out, spec.scene_id))
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
    rows: list[dict[str, Any]] = []
    for spec in scenes:
        found = records.get(spec.scene_id)
        if found is None:
            continue
        record = found
        if record.get("status") != "ok":
            summary.failures.append((spec.scene_id, str(record.get("error"))))
            continue
        rows += record.get("rows", [])
    manifest = assemble_manifest(rows, splits, config)
    check_disjoint(manifest)
    summary.pairs = len(manifest)
    summary.split_counts = {str(k): int(v) for k, v in manifest.groupby("split").size().items()}
    for flags in manifest["flags"].dropna():
        for flag in filter(None, str(flags).split(",")):
            summary.flag_counts[flag] = summary.flag_counts.get(flag, 0) + 1
    info = new_info(splits=config.splits.to_dict(), qa_thresholds=config.qa.to_dict())
    info["provenance"]["sources"] = provenance
    info["provenance"]["build"] = {
        "run_id": run_id,
        "params_hash": params_hash,
        "config": config.to_dict(),
        "scenes": len(scenes),
        "built": summary.built,
        "skipped": summary.skipped,
        "failures": [{"scene_id": s, "error": e} for s, e in summary.failures],
        "scene_splits": {
            split: sorted(s for s, v in splits.items() if v == split)
            for split in sorted(set(splits.values()))
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
    summary.seconds = time.perf_counter() - started
    return summary
