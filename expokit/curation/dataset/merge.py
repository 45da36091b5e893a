"""``curate merge``: several datasets into one new dataset root.

:func:`merge_datasets` plans the whole merge before it writes anything: every input is
loaded (and must not be in the middle of a build), its scene ids (optionally renamed with
the input's folder name, ``--rename-scenes``) must be unique across the inputs, every pair
id too, and no two inputs may put different bytes at one image path. Then each image is
read once, its SHA-256 checked against its manifest, and copied atomically; the manifest and
``meta/info.json`` (whose ``provenance.merged_from`` lists the inputs) are written last, so a
folder without ``info.json`` is never mistaken for a dataset. Any failure removes what the
merge wrote: no half dataset is left behind.

A scene keeps its split, so the splits stay disjoint by scene as they were in each input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expokit.core.atomic import atomic_path, remove_stale_temp_files
from expokit.core.errors import ExpokitError, OutputError
from expokit.core.hashing import sha256_bytes
from expokit.core.lock import RootLock
from expokit.core.paths import is_safe_name, output_folder_placement, resolve_inside
from expokit.core.progress import show_progress
from expokit.core.roots import claim_root
from expokit.curation.dataset.card import CARD_FILE, write_card
from expokit.curation.dataset.format import (
    INFO_FILE,
    MANIFEST_FILE,
    Dataset,
    DatasetInfo,
    check_not_being_written,
    load_dataset,
    write_dataset,
)
from expokit.curation.dataset.validate import check_split_disjoint

__all__ = ["LOCK_PURPOSE", "MergeError", "MergeSummary", "merge_datasets"]

LOCK_PURPOSE = "expokit curate merge"
#: Manifest path column -> the SHA-256 column that proves its file (masks have none).
_HASHED_PATHS = {"input_path": "input_sha256", "target_path": "target_sha256", "mask_path": None}


class MergeError(ExpokitError):
    """The datasets cannot be merged (clashing scene or pair ids, a changed file, bad output)."""


@dataclass(frozen=True)
class MergedSource:
    """One input of a merge, as ``provenance.merged_from`` of the new info.json lists it.

    Attributes
    ----------
    root
        Absolute path of the input dataset root.
    name
        Its ``info.json`` name (None when unset).
    manifest_sha256
        SHA-256 of the manifest bytes that were read.
    pairs, scenes
        Rows and distinct scene ids taken from it.
    scene_prefix
        What was put before its scene and pair ids (``--rename-scenes``), or ``""``.
    """

    root: str
    name: str | None
    manifest_sha256: str | None
    pairs: int
    scenes: int
    scene_prefix: str = ""


@dataclass(frozen=True)
class MergeSummary:
    """What :func:`merge_datasets` wrote: the new root, its counts and its sources."""

    out: Path
    pairs: int
    scenes: int
    files: int
    by_split: dict[str, int]
    sources: tuple[MergedSource, ...]


@dataclass(frozen=True)
class _Copy:
    """One image to copy: from ``source`` (a root-relative path of ``dataset``) to ``rel``
    in the new root, checked against ``sha256`` (None: the manifest records none)."""

    dataset: Dataset
    source: str
    rel: str
    sha256: str | None


def _missing(value: Any) -> bool:
    """True for a null manifest value (None, NaN or pandas' NA)."""
    import pandas as pd

    return value is None or bool(pd.isna(value))


def _scene_prefix(dataset: Dataset, rename: bool) -> str:
    """``<input folder name>-`` when renaming, else ``""``; the folder name must be a safe
    name, since it becomes part of every scene id (and so of folder names)."""
    if not rename:
        return ""
    prefix = f"{dataset.root.resolve().name}-"
    if not is_safe_name(prefix + "x"):
        raise MergeError(
            f"{dataset.root}: folder name {dataset.root.resolve().name!r} cannot prefix scene "
            "ids (use letters, digits, '.', '_' and '-'); rename the folder or merge without "
            "--rename-scenes"
        )
    return prefix


def _renamed_path(rel: str, scene: str, prefix: str) -> str:
    """``images/<scene>/x`` -> ``images/<prefix><scene>/x`` (other paths are kept as they
    are; a clash between inputs is then found by :func:`_plan_copies`)."""
    folder = f"images/{scene}/"
    return f"images/{prefix}{rel[len('images/') :]}" if prefix and rel.startswith(folder) else rel


def _check_unique(
    inputs: list[tuple[Dataset, str]], column: str, what: str, rename_hint: bool
) -> None:
    """Raise :class:`MergeError` when a (prefixed) ``column`` value occurs in two inputs."""
    owner: dict[str, Path] = {}
    for dataset, prefix in inputs:
        for value in sorted({str(v) for v in dataset.manifest[column].dropna()}):
            key = prefix + value
            if key in owner:
                hint = (
                    "; --rename-scenes prefixes each input's scene ids with its folder name"
                    if rename_hint
                    else ""
                )
                raise MergeError(
                    f"{what} {key!r} is in both {owner[key]} and {dataset.root}: scene ids "
                    f"must be unique in the merged dataset{hint}"
                )
            owner[key] = dataset.root


def _renamed_rows(dataset: Dataset, prefix: str) -> Any:
    """The input's manifest with ``prefix`` before scene and pair ids and scene folders."""
    frame = dataset.manifest.copy()
    if not prefix:
        return frame
    scenes = frame["scene_id"].astype(str)
    for column in _HASHED_PATHS:
        frame[column] = [
            None if _missing(value) else _renamed_path(str(value), scene, prefix)
            for value, scene in zip(frame[column].astype(object), scenes, strict=True)
        ]
    frame["scene_id"] = prefix + scenes
    frame["pair_id"] = prefix + frame["pair_id"].astype(str)
    return frame


def _plan_copies(inputs: list[tuple[Dataset, Any]]) -> list[_Copy]:
    """Every distinct image of the merged manifests, once (``inputs``: each dataset with
    its renamed manifest, row for row); raises :class:`MergeError` when two inputs put
    different files at one path (same path and same SHA-256: copied once)."""
    planned: dict[str, _Copy] = {}
    for dataset, renamed in inputs:
        original = dataset.manifest
        for column, sha_column in _HASHED_PATHS.items():
            sources = original[column].astype(object).tolist()
            targets = renamed[column].astype(object).tolist()
            hashes = [None] * len(sources) if sha_column is None else original[sha_column].tolist()
            for source, rel, digest in zip(sources, targets, hashes, strict=True):
                if _missing(source):
                    continue
                copy = _Copy(dataset, str(source), str(rel), None if _missing(digest) else digest)
                earlier = planned.get(copy.rel)
                if earlier is None:
                    planned[copy.rel] = copy
                elif earlier.dataset is not dataset and (
                    earlier.sha256 is None or earlier.sha256 != copy.sha256
                ):
                    raise MergeError(
                        f"{copy.rel} is a file of both {earlier.dataset.root} and "
                        f"{dataset.root} (not provably the same bytes); merge with "
                        "--rename-scenes or rename one dataset's images"
                    )
    return list(planned.values())


def _merged_info(inputs: list[Dataset], sources: list[MergedSource]) -> DatasetInfo:
    """A fresh info.json for the merge: the inputs in ``provenance.merged_from``, their
    ``provenance.sources`` concatenated, and the fields every input agrees on."""

    def shared(field: str) -> Any:
        values = [getattr(d.info, field) for d in inputs]
        return values[0] if all(v == values[0] for v in values) else None

    fresh = DatasetInfo.new()
    provenance = {
        **(fresh.provenance or {}),
        "sources": [s for d in inputs for s in d.info.sources],
        "merged_from": [dataclasses.asdict(s) for s in sources],
    }
    names = [d.info.name or d.root.resolve().name for d in inputs]
    return dataclasses.replace(
        fresh,
        provenance=provenance,
        splits={"method": "merged: each scene keeps the split it had in its input"},
        qa_thresholds=shared("qa_thresholds"),
        license=shared("license"),
        name="merge of " + ", ".join(names),
    )


def _check_out(out: Path, roots: list[Path]) -> None:
    """Refuse an output inside, equal to or holding an input, or already holding a dataset;
    claim it as a dataset folder otherwise."""
    for root in roots:
        placement = output_folder_placement(out, root)
        if placement.relation != "apart":
            raise MergeError(f"{out}: the merged dataset must be outside every input ({root})")
    if (out / INFO_FILE).exists():
        raise MergeError(f"{out} already holds a dataset ({INFO_FILE}); merge into a new folder")
    try:
        claim_root(out, "dataset", what="merged dataset folder (--out)")
    except OutputError as exc:
        raise MergeError(str(exc)) from None


def merge_datasets(
    roots: Sequence[str | Path],
    out: str | Path,
    *,
    rename_scenes: bool = False,
    progress: bool = True,
    durable: bool = False,
) -> MergeSummary:
    """Merge the datasets at ``roots`` into a new dataset root ``out``.

    Parameters
    ----------
    roots
        Two or more dataset roots (format v1 or v2; the result is v2).
    out
        New or empty folder for the merged dataset (outside every input).
    rename_scenes
        Prefix every scene id and pair id of each input with ``<its folder name>-`` (and
        its ``images/<scene>/`` folders likewise), so inputs sharing scene ids can merge.
    progress
        Show a progress bar (one step per file).
    durable
        fsync every image (manifest and info.json are always durable).

    Returns
    -------
    MergeSummary
        The new root, its counts and the inputs.

    Raises
    ------
    MergeError
        Fewer than two inputs, one root given twice, a scene or pair id in two inputs, a
        scene in two splits, two inputs with different files at one path, a file whose
        SHA-256 is not the manifest's, or an unusable output folder. Nothing stays written.
    DatasetError, RootInUseError
        An input does not load, or another process writes an input or ``out``.
    """
    folders = [Path(r) for r in roots]
    if len(folders) < 2:
        raise MergeError("merge needs at least two datasets")
    resolved = [f.resolve() for f in folders]
    repeated = sorted({str(r) for r in resolved if resolved.count(r) > 1})
    if repeated:
        raise MergeError(f"{repeated[0]} is given twice; each dataset is merged once")
    for folder in folders:
        check_not_being_written(folder, "merging it")
    datasets = [load_dataset(f) for f in folders]
    with_prefix = [(d, _scene_prefix(d, rename_scenes)) for d in datasets]
    _check_unique(with_prefix, "scene_id", "scene id", rename_hint=not rename_scenes)
    _check_unique(with_prefix, "pair_id", "pair id", rename_hint=not rename_scenes)
    renamed = [(d, _renamed_rows(d, prefix)) for d, prefix in with_prefix]
    import pandas as pd

    merged = pd.concat([frame for _, frame in renamed], ignore_index=True)
    overlap = check_split_disjoint(merged)
    if overlap:
        raise MergeError("; ".join(p.message for p in overlap))
    copies = _plan_copies(renamed)
    sources = [
        MergedSource(
            root=str(d.root.resolve()),
            name=d.info.name,
            manifest_sha256=d.manifest_sha256,
            pairs=len(d.manifest),
            scenes=int(d.manifest["scene_id"].nunique()),
            scene_prefix=prefix,
        )
        for d, prefix in with_prefix
    ]
    out_dir = Path(out)
    _check_out(out_dir, folders)
    with RootLock(out_dir, LOCK_PURPOSE):
        remove_stale_temp_files(out_dir)  # a killed merge's temporary files
        written: list[Path] = []
        try:
            for copy in show_progress(copies, desc="merge", unit="file", enabled=progress):
                _copy_file(copy, out_dir, durable, written.append)
            written += [out_dir / MANIFEST_FILE, out_dir / INFO_FILE, out_dir / CARD_FILE]
            write_dataset(out_dir, _merged_info(datasets, sources), merged)
            write_card(out_dir)
        except BaseException:
            # No half dataset: remove everything this merge wrote (info.json included).
            _remove(out_dir, written)
            raise
    by_split = merged.groupby("split", dropna=False).size()
    return MergeSummary(
        out=out_dir,
        pairs=len(merged),
        scenes=int(merged["scene_id"].nunique()),
        files=len(copies),
        by_split={str(k): int(v) for k, v in by_split.items()},
        sources=tuple(sources),
    )


def _copy_file(copy: _Copy, out: Path, durable: bool, record: Callable[[Path], None]) -> None:
    """Copy one image after checking its SHA-256; ``record`` gets the target before it is
    written, so a failure can remove it."""
    where = f"{copy.dataset.root}: {copy.source}"
    try:
        data = copy.dataset.path(copy.source).read_bytes()
    except (OSError, ExpokitError) as exc:
        raise MergeError(f"{where}: cannot read it: {exc}") from None
    if copy.sha256 is not None and sha256_bytes(data) != copy.sha256:
        raise MergeError(
            f"{where}: SHA-256 differs from the manifest (the file changed after the dataset "
            "was built); nothing was merged"
        )
    target = resolve_inside(out, copy.rel, what="merged file")
    record(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, durable=durable) as tmp:
        tmp.write_bytes(data)


def _remove(out: Path, written: list[Path]) -> None:
    """Remove ``written`` files and the folders that are empty after it (never ``out``)."""
    for path in written:
        path.unlink(missing_ok=True)
    for folder in sorted({p.parent for p in written}, key=lambda p: len(p.parts), reverse=True):
        while folder != out and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
