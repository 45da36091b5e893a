"""``expokit curate build``, the batch driver: turn sources into a dataset root.

:func:`build_dataset` discovers the scenes, skips those whose record proves they are done,
runs the rest through :func:`~expokit.curation.build.scene.build_scene` (in process, on a
spawn pool, or on Ray), then assembles flags, splits, ``meta/info.json`` and
``manifest.parquet``.

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
accumulate. A scene whose rebuild fails (bad input, full disk, a link out of the root, a
crash) keeps its earlier rows, and its earlier files: a scene's new files are written to
temporary names and renamed into place only once all of them are written. Removing
scenes is explicit (``remove_scenes``): their rows go, and of their files only those
listed in their completion record (or their manifest rows), inside the root and with the
recorded SHA-256, are deleted (anything else is left and reported). A scene id already in the
dataset from another source is an error, and two scenes holding an image input with the
same SHA-256 (one capture under two names: a train/test leak) fail the later one.

Roots and locks
---------------
The output folder is claimed as a ``dataset`` root (a non-empty folder expokit did not make
is refused) and locked for the whole build (:class:`~expokit.core.lock.RootLock`), so a
second build into it stops with "in use by pid N"; stale temporary files are removed only
under the lock. Every file written below the root is resolved with symlinks followed and
must stay inside it (a scene folder linked elsewhere fails its scene).

"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expokit.core.atomic import (
    ensure_writable_dir,
    remove_stale_temp_files,
)
from expokit.core.errors import ExpokitError, OutputError
from expokit.core.hashing import sha256_file
from expokit.core.lock import RootLock
from expokit.core.parallel import map_unordered
from expokit.core.paths import PathEscapeError, check_name, resolve_inside
from expokit.core.roots import claim_root
from expokit.core.runs import (
    DISK_FULL,
    RECORDS_DIR,
    BuildRecord,
    InputRecord,
    OriginRecord,
    RunSummary,
    new_run_id,
    recorded_names,
)
from expokit.curation.build.config import BuildConfig
from expokit.curation.build.pair import BuiltPair
from expokit.curation.build.qa import flags_for, group_figures
from expokit.curation.build.record import SceneRecord, is_done, read_record, record_path
from expokit.curation.build.scene import build_scene, crashed_record
from expokit.curation.build.sources import (
    SceneSpec,
    discover,
)
from expokit.curation.build.splits import assign_splits, check_disjoint
from expokit.curation.build.task import IMAGES_DIR, SceneTask
from expokit.curation.dataset.card import CARD_FILE, write_card
from expokit.curation.dataset.format import (
    INFO_FILE,
    MANIFEST_FILE,
    DatasetError,
    DatasetInfo,
    export_csv,
    load_dataset,
    manifest_frame,
    write_dataset,
)
from expokit.curation.dataset.pair_row import PairRow, PairRowError

if TYPE_CHECKING:
    from expokit.curation.dataset.format import DatasetInfo

LOCK_PURPOSE = "expokit curate build"

#: One pair of the new manifest: a :class:`BuiltPair` (built now, or kept with its
#: completion record: current QA thresholds flag it), or a bare :class:`PairRow` kept
#: from the earlier manifest without a usable record (no frame size: its flags are kept).
SceneRow = BuiltPair | PairRow

#: A file a scene's inputs are or derive from (duplicate content is refused across scenes).
SceneInput = InputRecord | OriginRecord


# --------------------------------------------------------------------------- batch driver


@dataclass(kw_only=True)
class BuildSummary(RunSummary):
    """What a build did, for the command line and for callers.

    ``failures`` holds ``(scene_id, error)`` pairs.
    """

    scenes: int = 0
    built: int = 0
    kept: int = 0
    pairs: int = 0
    removed: list[tuple[str, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    flag_counts: dict[str, int] = field(default_factory=dict)
    split_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    csv_path: Path | None = None

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
        return lines + self.problem_lines()


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
    rows: Sequence[SceneRow], splits: Mapping[str, str], config: BuildConfig
) -> Any:
    """Manifest frame from scene rows: the figures over pairs (gain groups, clips) and the
    flags from ``config.qa``, split by scene, sorted.

    Figures over pairs are computed from every row given (earlier scenes included), so a
    new scene is judged against the same rig. A bare :class:`PairRow` (kept from an earlier
    manifest without a usable record, so without the frame size the flags need) keeps its
    flags. The rows become the frame here, at the last step.
    """
    # The QA functions work on flat dicts; a built pair's carries its assembly keys
    # (``_exif_mismatch`` raises a flag) and group_figures adds ``_gain_spread_ev``.
    flat = [entry.to_json() if isinstance(entry, BuiltPair) else entry.to_dict() for entry in rows]
    group_figures(flat, config.qa)
    finished: list[PairRow] = []
    for entry, figures in zip(rows, flat, strict=True):
        if isinstance(entry, BuiltPair):
            row = entry.row
            frame_area = float(entry.assembly.frame_w) * float(entry.assembly.frame_h)
            fraction = (
                float(row.valid_w or 0) * float(row.valid_h or 0) / frame_area
                if frame_area > 0
                else None
            )
            flags = ",".join(flags_for(figures, config.qa, fraction))
        else:
            row = entry
            flags = str(row.qa_flags or "")
        finished.append(
            replace(
                row, gain_deviation_ev=figures["gain_deviation_ev"],
                gain_instability_ev=figures["gain_instability_ev"],
                target_flicker=figures["target_flicker"], qa_flags=flags,
                split=splits[row.scene_id],
            )
        )  # fmt: skip
    finished.sort(key=lambda r: r.pair_id)
    return manifest_frame([_nan_as_null(row.to_dict()) for row in finished])


def _nan_as_null(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with NaN figures as ``None`` (null in the manifest)."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}


# --------------------------------------------------------------------------- existing dataset


@dataclass
class ExistingDataset:
    """What an incremental build keeps from the dataset already in its root."""

    #: its ``meta/info.json`` (None when there is no dataset yet)
    info: DatasetInfo | None = None
    #: scene id -> its manifest rows
    rows: dict[str, list[PairRow]] = field(default_factory=dict)
    #: scene id -> its split in the manifest
    splits: dict[str, str] = field(default_factory=dict)


def load_existing(out: Path) -> ExistingDataset:
    """The dataset already in ``out`` (empty when there is none yet).

    Raises
    ------
    ExpokitError
        ``out`` holds a dataset that cannot be read: building over it would drop its scenes.
    """
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
    where = out / MANIFEST_FILE
    try:
        rows = [
            PairRow.from_dict({str(k): v for k, v in item.items()}, f"{where} row {index}")
            for index, item in enumerate(plain.to_dict("records"))
        ]
    except PairRowError as exc:
        raise ExpokitError(
            f"{out} holds a dataset that cannot be read ({exc}); a build would drop its "
            "scenes: repair it (expokit curate validate) or choose another --out"
        ) from None
    for row in rows:
        existing.rows.setdefault(row.scene_id, []).append(row)
        existing.splits.setdefault(row.scene_id, str(row.split))
    return existing


def recorded_scene_ids(out: Path) -> set[str]:
    """Scene ids that have a completion record in ``out`` (built or failed earlier)."""
    return recorded_names(out)


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
    record: BuildRecord | None, rows: Sequence[PairRow]
) -> tuple[str | None, str | None]:
    """``(source root, folder of its files)`` of a scene of an earlier build."""
    root = record.source_root if record else None
    inputs = [i.path for i in record.inputs] if record else []
    if not inputs:
        inputs = [p for r in rows for p in (r.source_input, r.source_target) if p]
    return root, _files_root(inputs)


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
        earlier = read_record(out, spec.scene_id)
        old_root, old_files = _earlier_origin(earlier.record if earlier else None, rows)
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
    inputs: Mapping[str, Sequence[SceneInput]], order: Sequence[str]
) -> dict[str, str]:
    """Scenes holding an image input with the same SHA-256 as an input of another scene.

    One capture under two names would put the same content in two scenes, possibly in
    train and test. Scenes are taken in ``order`` (kept scenes first); a scene sharing
    content with an earlier accepted one is refused. Calibration and sync ``.json`` files,
    which scenes legitimately share, are ignored.

    Parameters
    ----------
    inputs
        ``{scene_id: [input or origin, ...]}`` (the records' ``inputs`` and ``origins``).
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
            path, digest = item.path, item.sha256
            if path.lower().endswith(".json"):
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


def remove_scene_files(out: Path, scene_id: str, rows: Sequence[PairRow]) -> tuple[int, list[str]]:
    """Delete the files a build wrote for ``scene_id``; return ``(deleted, notes)``.

    Only files listed in the scene's completion record (or, without one, its manifest rows
    with their SHA-256) are candidates, and only those inside ``out`` whose content still
    has the recorded SHA-256 are deleted; every other one is left and described in
    ``notes``. The record itself and the emptied ``images/<scene_id>/`` folder go too.
    """
    path = record_path(out, scene_id)
    record = read_record(out, scene_id)
    files: dict[str, str | None] = {}
    # A failed rebuild's record lists no outputs although its earlier rows were kept
    # (merge_scene_rows): only an ok record says which files the scene's rows use.
    if record is not None and record.ok:
        files = dict(record.record.outputs)
    else:
        for row in rows:
            files[row.input_path] = row.input_sha256 or None
            files[row.target_path] = row.target_sha256 or None
            if row.mask_path:
                files[row.mask_path] = None
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


def rows_intact(out: Path, rows: Sequence[PairRow]) -> bool:
    """Every input and target file of manifest ``rows`` is inside ``out`` with its SHA-256,
    and every mask exists."""
    for row in rows:
        try:
            for relpath, digest in (
                (row.input_path, row.input_sha256), (row.target_path, row.target_sha256),
            ):  # fmt: skip
                file = resolve_inside(out, relpath, "dataset file")
                if sha256_file(file) != digest:
                    return False
            mask = row.mask_path
            if mask and not resolve_inside(out, mask, "dataset file").is_file():
                return False
        except (OSError, PathEscapeError):
            return False
    return True


def kept_scene_rows(
    out: Path, kept: Mapping[str, Sequence[PairRow]]
) -> tuple[dict[str, list[SceneRow]], dict[str, list[SceneInput]]]:
    """Rows and recorded inputs of the scenes an incremental build keeps.

    A kept scene's rows come from its completion record when that record lists the same
    pairs as the manifest (it carries the frame size, so current QA thresholds re-flag
    them); otherwise the manifest rows are kept as they are, flags included.

    Returns
    -------
    tuple
        ``({scene_id: rows}, {scene_id: recorded inputs and origins})``.
    """
    scene_rows: dict[str, list[SceneRow]] = {}
    scene_inputs: dict[str, list[SceneInput]] = {}
    for scene, rows in sorted(kept.items()):
        found = read_record(out, scene)
        listed = sorted(r.pair_id for r in rows)
        if found is not None and found.ok and listed == sorted(p.row.pair_id for p in found.pairs):
            scene_rows[scene] = list(found.pairs)
        else:
            scene_rows[scene] = list(rows)
        scene_inputs[scene] = [*found.record.inputs, *found.record.origins] if found else []
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
    empty). Bad scenes are recorded as failures (the error names the scene and the file,
    info.json lists them) and the batch goes on; a failed new scene has no rows, a scene
    already in the dataset keeps its earlier rows and files (its new files are staged and
    only replace the earlier ones once the whole scene succeeded). A full disk stops the
    batch; the scenes it did not reach keep their rows too. The root is claimed and locked
    for the whole build.

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
    """:func:`build_dataset` once the root is claimed and locked.

    Runs the steps in order: :func:`plan_build` (checks, kept scenes, splits: fails before
    any work), :func:`plan_scenes`, :func:`run_scene_tasks`, :func:`merge_scene_rows`,
    :func:`assemble_build_manifest`, :func:`build_info`, :func:`write_build_outputs`; the
    summary reports what each did.
    """
    plan = plan_build(scenes, out, config, removing)
    summary = BuildSummary(out_dir=out, scenes=len(scenes), kept=len(plan.kept))
    summary.notes += [str(n) for entry in provenance for n in entry.get("notes") or []]
    remove_stale_temp_files(out)  # under the lock: no other build's in-flight files
    params_hash = config.params_hash()
    run_id = new_run_id()
    scene_plan = plan_scenes(scenes, out, config, params_hash, run_id, durable)
    summary.skipped += len(scene_plan.done)
    run = run_scene_tasks(scene_plan.tasks, workers=workers, executor=executor, progress=progress)
    summary.built += run.built
    summary.skipped += run.skipped
    summary.aborted = run.aborted
    records = {**scene_plan.done, **run.records}
    merged = merge_scene_rows(scenes, records, plan, out)
    summary.failures += merged.failures
    summary.notes += merged.notes
    manifest = assemble_build_manifest(merged.scene_rows, plan.splits, config)
    counts = manifest_counts(manifest)
    summary.pairs = counts.pairs
    summary.split_counts = counts.split_counts
    summary.flag_counts = counts.flag_counts
    info = build_info(
        plan, provenance, config, summary, params_hash=params_hash, run_id=run_id,
        in_dataset=merged.scene_rows.keys(), removing=removing,
    )  # fmt: skip
    written = write_build_outputs(out, info, manifest, plan.existing, removing, csv=csv)
    if written.error is not None:
        summary.aborted = (summary.aborted or "") + f" dataset not written: {written.error}"
    summary.csv_path = written.csv_path
    summary.removed += written.removed
    summary.notes += written.notes
    summary.seconds = time.perf_counter() - started
    return summary


@dataclass(frozen=True)
class BuildPlan:
    """What a build keeps, removes and where every scene goes; decided before any work.

    Attributes
    ----------
    existing
        The dataset already in the root (empty when there is none).
    kept
        ``{scene_id: manifest rows}`` of the existing scenes neither re-built nor removed.
    splits
        ``{scene_id: split}`` of every scene built or kept.
    """

    existing: ExistingDataset
    kept: dict[str, list[PairRow]]
    splits: dict[str, str]


def plan_build(
    scenes: Sequence[SceneSpec], out: Path, config: BuildConfig, removing: Sequence[str]
) -> BuildPlan:
    """Check the request against the dataset in ``out`` and decide kept scenes and splits.

    Raises
    ------
    ExpokitError
        A scene to remove that the dataset does not hold, or that the sources still give;
        a scene id the dataset holds from another source; a split spec that cannot place
        every scene; a dataset file path that leaves the root through a link.
    """
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
        current, config.splits, kept={s: existing.splits[s] for s in kept}, removed=list(removing)
    )  # fails before work
    for relpath in (MANIFEST_FILE, INFO_FILE, CARD_FILE, "manifest.csv", RECORDS_DIR, IMAGES_DIR):
        resolve_inside(out, relpath, "dataset file")  # no write may follow a link out
    return BuildPlan(existing=existing, kept=kept, splits=splits)


@dataclass(frozen=True)
class ScenePlan:
    """Which scenes of the sources are built and which are already done.

    Attributes
    ----------
    tasks
        Scenes to build, biggest (most pairs) first, then by scene id.
    done
        ``{scene_id: completion record}`` of the scenes whose record proves them built
        with the current parameters (skipped).
    """

    tasks: list[SceneTask]
    done: dict[str, SceneRecord]


def plan_scenes(
    scenes: Sequence[SceneSpec],
    out: Path,
    config: BuildConfig,
    params_hash: str,
    run_id: str,
    durable: bool,
) -> ScenePlan:
    """Split ``scenes`` into those to build and those already done (:func:`is_done`)."""
    done: dict[str, SceneRecord] = {}
    tasks: list[SceneTask] = []
    for spec in scenes:
        previous = read_record(out, spec.scene_id)
        if previous is not None and is_done(spec, previous.record, params_hash, out):
            done[spec.scene_id] = previous
        else:
            tasks.append(SceneTask(spec, str(out), config, params_hash, run_id, durable))
    # Biggest scenes first so a long one does not finish alone at the end of a parallel batch.
    tasks.sort(key=lambda t: (-len(t.spec.pairs), t.spec.scene_id))
    return ScenePlan(tasks=tasks, done=done)


@dataclass(frozen=True)
class SceneRunOutcome:
    """What running the scene tasks gave.

    Attributes
    ----------
    records
        ``{scene_id: completion record}`` of every scene that finished (ok or failed),
        including crashed and dead workers; scenes not reached after a full disk are absent.
    built, skipped
        Scenes built, and scenes whose worker found them already done.
    aborted
        ``"stopped: <error>"`` when a full disk stopped the batch, else ``None``.
    """

    records: dict[str, SceneRecord]
    built: int
    skipped: int
    aborted: str | None


def run_scene_tasks(
    tasks: Sequence[SceneTask], *, workers: int, executor: str, progress: bool
) -> SceneRunOutcome:
    """Run :func:`build_scene` on every task (in process, on a pool or on Ray).

    A scene that fails is recorded and the batch goes on; a full disk stops it (the
    scenes not yet finished are left out).
    """
    records: dict[str, SceneRecord] = {}
    built = skipped = 0
    aborted: str | None = None
    results = map_unordered(
        build_scene, list(tasks), workers=workers, executor=executor, on_error=crashed_record,
        desc="build", unit="scene", progress=progress,
    )  # fmt: skip
    for _, result in results:
        records[result.scene_id] = result
        if not result.ok:
            if result.record.error_kind == DISK_FULL:
                aborted = f"stopped: {result.record.error}"
                results.close()
                break
            continue
        if result.skipped:
            skipped += 1
        else:
            built += 1
    return SceneRunOutcome(records=records, built=built, skipped=skipped, aborted=aborted)


@dataclass(frozen=True)
class MergedRows:
    """The rows the new manifest holds, per scene, and what was refused.

    Attributes
    ----------
    scene_rows
        ``{scene_id: rows}`` of kept and built scenes: :class:`BuiltPair` from the
        completion records, bare :class:`PairRow` for rows kept without one (their flags
        are kept).
    failures
        ``(scene_id, error)`` of failed scenes and of scenes refused for duplicate
        content, sorted.
    notes
        Lines for a person (a failed rebuild that keeps the earlier build).
    """

    scene_rows: dict[str, list[SceneRow]]
    failures: list[tuple[str, str]]
    notes: list[str]


def merge_scene_rows(
    scenes: Sequence[SceneSpec],
    records: Mapping[str, SceneRecord],
    plan: BuildPlan,
    out: Path,
) -> MergedRows:
    """Rows of the kept scenes and of the scenes just built or skipped.

    A failed scene is a failure, and a scene with earlier rows that did not build (it
    failed for any reason, input or output side, or a full disk stopped the batch before
    it) keeps those rows: only ``--remove-scene`` removes rows. A failed build never
    replaces the earlier files (:func:`_write` stages them), so they are intact unless
    something else changed them; a note then says so and ``validate`` names the files. A
    scene holding an input with the same SHA-256 as an earlier scene's (kept scenes first)
    is refused (:func:`find_duplicate_inputs`).
    """
    failures: list[tuple[str, str]] = []
    notes: list[str] = []
    scene_rows, scene_inputs = kept_scene_rows(out, plan.kept)
    for spec in sorted(scenes, key=lambda s: s.scene_id):
        found = records.get(spec.scene_id)
        if found is None or not found.ok:
            if found is not None:
                failures.append((spec.scene_id, str(found.record.error)))
            earlier_rows = plan.existing.rows.get(spec.scene_id)
            if earlier_rows:
                scene_rows[spec.scene_id] = list(earlier_rows)  # bare rows: flags kept
                notes.append(_kept_note(spec.scene_id, found is not None, out, earlier_rows))
            continue
        scene_rows[spec.scene_id] = list(found.pairs)
        scene_inputs[spec.scene_id] = [*found.record.inputs, *found.record.origins]
    order = [*sorted(plan.kept), *sorted(s for s in scene_rows if s not in plan.kept)]
    for scene, error in find_duplicate_inputs(scene_inputs, order).items():
        del scene_rows[scene]
        failures.append((scene, error))
    failures.sort()
    return MergedRows(scene_rows=scene_rows, failures=failures, notes=notes)


def _kept_note(scene: str, failed: bool, out: Path, rows: Sequence[PairRow]) -> str:
    """The note for a scene that keeps its earlier rows because it was not rebuilt."""
    why = "its rebuild failed" if failed else "the batch stopped before its rebuild"
    if rows_intact(out, rows):
        return f"scene {scene}: {why}; the dataset keeps its earlier build (a re-run retries it)"
    return (
        f"scene {scene}: {why}; the dataset keeps its earlier rows, but some of their files "
        "are missing, changed or outside the root (expokit curate validate names them; a "
        "re-run retries it)"
    )


def assemble_build_manifest(
    scene_rows: Mapping[str, Sequence[SceneRow]], splits: Mapping[str, str], config: BuildConfig
) -> Any:
    """The manifest frame of ``scene_rows`` (scenes in id order; see
    :func:`assemble_manifest`), checked to share no content across splits.

    Raises
    ------
    ExpokitError
        One file or scene in two splits (:func:`~expokit.curation.build.splits.check_disjoint`).
    """
    rows = [row for scene in sorted(scene_rows) for row in scene_rows[scene]]
    manifest = assemble_manifest(rows, splits, config)
    check_disjoint(manifest)
    return manifest


@dataclass(frozen=True)
class ManifestCounts:
    """Pair counts of a manifest, for the summary: total, per split, per flag."""

    pairs: int
    split_counts: dict[str, int]
    flag_counts: dict[str, int]


def manifest_counts(manifest: Any) -> ManifestCounts:
    """Pairs in ``manifest`` (a manifest frame), per split and per flag (a pair with two
    flags counts under each; flags in order of first appearance)."""
    flag_counts: dict[str, int] = {}
    for flags in manifest["qa_flags"].dropna():
        for flag in filter(None, str(flags).split(",")):
            flag_counts[flag] = flag_counts.get(flag, 0) + 1
    return ManifestCounts(
        pairs=len(manifest),
        split_counts={str(k): int(v) for k, v in manifest.groupby("split").size().items()},
        flag_counts=flag_counts,
    )


def build_info(
    plan: BuildPlan,
    provenance: Sequence[dict[str, Any]],
    config: BuildConfig,
    summary: BuildSummary,
    *,
    params_hash: str,
    run_id: str,
    in_dataset: Iterable[str],
    removing: Sequence[str],
) -> DatasetInfo:
    """The new ``meta/info.json``: the earlier one's human fields (name, licence, citation,
    description) and creation time kept, provenance sources merged, this build described.

    ``provenance`` entries get this build's ``build_params_hash`` and ``run_id`` (in place).
    ``in_dataset`` holds the scene ids the manifest holds; ``summary`` gives the counts
    and failures.
    """
    from dataclasses import replace

    earlier_info = plan.existing.info or DatasetInfo()
    present = set(in_dataset)
    scene_splits = {s: v for s, v in plan.splits.items() if s in present}
    fresh = DatasetInfo.new(splits=config.splits.to_dict(), qa_thresholds=config.qa.to_dict())
    on_disk = earlier_info.to_json()
    # Set by people: kept as written (a null too, hence keys_read).
    human = [key for key in ("name", "license", "citation", "description") if key in on_disk]
    info = DatasetInfo.new(
        splits=fresh.splits, qa_thresholds=fresh.qa_thresholds,
        **{key: on_disk[key] for key in human},
        keys_read=(*fresh.to_json(), *human),
    )  # fmt: skip
    recorded = earlier_info.provenance
    earlier: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    made = dict(info.provenance or {})
    if earlier.get("created"):
        made["updated"] = made["created"]
        made["created"] = earlier["created"]
    for entry in provenance:
        entry.update(build_params_hash=params_hash, run_id=run_id)
    made["sources"] = _merge_sources(earlier.get("sources") or [], provenance)
    made["build"] = {
        "run_id": run_id,
        "params_hash": params_hash,
        "config": config.to_dict(),
        "scenes": len(scene_splits),
        "scenes_from_sources": summary.scenes,
        "built": summary.built,
        "skipped": summary.skipped,
        "kept": summary.kept,
        "removed": list(removing),
        "failures": [{"scene_id": s, "error": e} for s, e in summary.failures],
        "scene_splits": {
            split: sorted(s for s, v in scene_splits.items() if v == split)
            for split in sorted(set(scene_splits.values()))
        },
    }
    templates = {
        **(info.path_templates or {}),
        "shared_target": "images/{scene_id}/{scene_id}_target{ext}",
    }
    return replace(info, provenance=made, path_templates=templates)


@dataclass(frozen=True)
class WriteOutcome:
    """What writing the dataset files did.

    Attributes
    ----------
    error
        Why the dataset files were not (all) written, else ``None`` (then nothing was
        removed).
    csv_path
        The ``manifest.csv`` written, if asked for.
    removed
        ``(scene_id, files deleted)`` of each removed scene.
    notes
        Files of removed scenes that were left, and why.
    """

    error: OutputError | None = None
    csv_path: Path | None = None
    removed: list[tuple[str, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def write_build_outputs(
    out: Path,
    info: DatasetInfo,
    manifest: Any,
    existing: ExistingDataset,
    removing: Sequence[str],
    *,
    csv: bool,
) -> WriteOutcome:
    """Write ``manifest.parquet`` and ``meta/info.json``, the dataset card, optionally
    ``manifest.csv``; then, only once the manifest no longer lists them, delete the files
    of the removed scenes (:func:`remove_scene_files`).

    An :class:`OutputError` (disk full included) is returned, not raised.
    """
    csv_path: Path | None = None
    try:
        write_dataset(out, info, manifest)
        write_card(out)  # README.md: counts, EVs, QA summary, licence, citation
        if csv:
            csv_path = export_csv(load_dataset(out), out / "manifest.csv")
    except OutputError as exc:
        return WriteOutcome(error=exc)
    removed: list[tuple[str, int]] = []
    left: list[str] = []
    for scene in removing:
        deleted, notes = remove_scene_files(out, scene, existing.rows.get(scene, []))
        removed.append((scene, deleted))
        left += notes
    return WriteOutcome(csv_path=csv_path, removed=removed, notes=left)
