"""Exports of a format-v1 dataset to the folder layouts that peers' code reads.

Layouts
-------
``msec``
    ``training|validation|testing/INPUT_IMAGES/<name>_<token>.JPG`` and
    ``GT_IMAGES/<name>.jpg`` (Afifi et al., CVPR 2021), plus
    ``testing/expert_c_testing_set/<name>.jpg`` because most peer evaluation scripts hard-code
    that folder. Tokens ``N1.5 N1 0 P1 P1.5`` come from ``input_ev - target_ev`` rounded to
    the nearest MSEC EV; rows farther than ``ev_tolerance`` from every token are skipped.
    Names are ``<unique>_EXPK``: exactly one ``_``, the unique part first and free of ``_``,
    so MSEC (GT = input name minus its last ``_`` field), UEC (group key = name minus its
    last two ``_`` fields) and RECNet (EV bucket = last ``_`` token) parse them, and no name
    is a prefix of another (MSEC globs ``<name>*``).
``dime``
    ``np/{train,test}/{LQ,GT}/<%03d>/<frame>.png`` (VECNet/DIME): per clip, LQ and GT hold
    identical sorted lists of zero-padded frame names, because DIME pairs frames by sorted
    position and asserts equal counts. Clips need at least :data:`DIME_MIN_FRAMES` frames.
    DIME has no validation folder: the ``val`` split is skipped unless ``dime_val="test"``.
    Frames are written as 8-bit PNG (DIME's loaders read 8-bit images). The finished tree is
    checked against VECNet's data code (:func:`check_dime_peers`); a test split of exactly 10
    clips is an error (VECNet's ``test.py`` divides by ``clips - 10``).
``sequences``
    ``<split>/<scene>/<rank>_<token>[_target].<ext>``: one folder per scene (per clip frame for
    video) with its distinct exposures sorted by EV (the target file marked ``_target``),
    copied byte for byte; ``sequences.csv`` lists them with EV, role and source. Scenes whose
    EVs are ranks (``ev_basis: rank``) need ``rank_map`` (as for ``msec``).
``paired``
    ``<split>/lq/<name>.png`` and ``<split>/gt/<name>.png``: per row its input and its target
    under one name (a target shared by several inputs is written once per input), 8-bit PNG,
    plus ``<split>/meta_info.txt``; BasicSR's ``PairedImageDataset`` and LOL-style loaders
    pair the folders by file name (checked by :func:`check_paired_peers`).

Every source file is read once (through a path that must stay inside the dataset: an image
symlinked out of it is refused), its SHA-256 checked against the manifest, then copied or
converted; a mismatch, a missing or an undecodable file skips that item with an error naming
the row and the file. A dataset card (``README.md``) is written beside the data.

Trust rules for the output folder:

* it is claimed as an expokit export folder (``.expokit/root.json``; a non-empty folder
  expokit did not make is refused) and locked for the whole export
  (:class:`~expokit.core.lock.RootLock`);
* every file is announced in ``.expokit/export-progress.jsonl`` (path and SHA-256, fsynced)
  before it is written atomically, and ``export.json`` (listing every file with its SHA-256)
  is written last; a killed export is completed by running the same command again;
* a later export removes files of earlier (finished or killed) exports that it no longer
  produces, but only files inside the folder whose SHA-256 still equals the recorded one;
  anything else is left in place and reported (``ExportSummary.kept``);
* split, scene and clip values that become folder names must be safe names
  (:func:`~expokit.core.paths.check_name`) and every written path resolves inside the folder.

Modules
-------
This module is the driver (:func:`export_dataset`: checks, lock, progress journal, cleanup
of earlier exports, ``export.json``); the layouts are in
:mod:`expokit.curation.export.layouts` (one function per layout, planning -> writing ->
checking), the peers' loader rules in :mod:`expokit.curation.export.peers` and the
``export.json`` record (its one reader and writer) in :mod:`expokit.curation.export.record`.
Import each name from the module that defines it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from expokit import __version__
from expokit.core.atomic import TEMP_PREFIX, remove_stale_temp_files
from expokit.core.errors import OutputError
from expokit.core.hashing import sha256_file
from expokit.core.lock import RootLock
from expokit.core.paths import (
    TRACKED_ROOT_FOLDERS,
    PathEscapeError,
    output_folder_placement,
    resolve_inside,
    symlinks_leaving,
)
from expokit.core.roots import STATE_DIR, claim_root
from expokit.curation.dataset.format import (
    MANIFEST_FILE,
    Dataset,
    check_not_being_written,
    load_dataset,
)
from expokit.curation.dataset.selection import PairSelection
from expokit.curation.dataset.validate import check_split_disjoint
from expokit.curation.export.layouts import (
    DEFAULT_EV_TOLERANCE,
    RANK_MAPS,
    ExportError,
    ExportSummary,
    ExportWriter,
    check_dime_export,
    check_msec_export,
    check_paired_export,
    export_dime,
    export_msec,
    export_paired,
    export_sequences,
    rank_scenes,
)
from expokit.curation.export.record import (
    EXPORT_RECORD,
    ExportedDataset,
    ExportOptions,
    ExportRecord,
    ExportRecordError,
    RankMapRecord,
    SelectionRecord,
    read_export_record,
    write_export_record,
)

__all__ = [
    "CARD_FILE",
    "DIME_VAL_CHOICES",
    "LAYOUTS",
    "PROGRESS_JOURNAL",
    "RANK_MAP_LAYOUTS",
    "export_dataset",
]

LAYOUTS: tuple[str, ...] = ("msec", "dime", "sequences", "paired")
DIME_VAL_CHOICES = ("skip", "test")
CARD_FILE = "README.md"
#: Layouts whose file names carry EV tokens, so rank EVs need ``--rank-map`` there.
RANK_MAP_LAYOUTS = ("msec", "sequences")
#: Append-only journal of the files an export is writing (``{"file", "sha256"}`` per line).
PROGRESS_JOURNAL = f"{STATE_DIR}/export-progress.jsonl"
_SHA256 = re.compile(r"[0-9a-f]{64}")

#: The checking step of each layout, run on the finished folder (after the cleanup, so
#: stray files of others count too).
_CHECKS: dict[str, Callable[[Path, ExportSummary], None]] = {
    "msec": check_msec_export,
    "dime": check_dime_export,
    "paired": check_paired_export,
}


# --------------------------------------------------------------------------- progress journal


class _Journal:
    """The progress journal of the running export: one fsynced JSON line per file, written
    before the file itself, so a killed export's leftovers are known to be expokit's."""

    def __init__(self, out: Path) -> None:
        self.path = out / PROGRESS_JOURNAL
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")

    def announce(self, rel: str, sha256: str) -> None:
        import os

        self._handle.write(json.dumps({"file": rel, "sha256": sha256}) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def _read_journal(path: Path) -> dict[str, set[str]]:
    """file -> SHA-256s announced in a progress journal (missing journal: empty).

    The last line may be cut short by a kill and is ignored; any other bad line means the
    journal was edited, which is an error naming the file and line.
    """
    found: dict[str, set[str]] = defaultdict(set)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        return found
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path}: unreadable export progress journal: {exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            rel, digest = entry["file"], entry["sha256"]
            if not isinstance(rel, str) or not isinstance(digest, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            if number == len(lines) or (number == len(lines) - 1 and not lines[-1]):
                continue  # the line a kill cut short
            raise ExportError(
                f"{path}, line {number}: not a progress entry "
                '({"file": ..., "sha256": ...}); the journal was edited, remove it and the '
                "folder's files by hand or export into a new folder"
            ) from None
        found[rel].add(digest)
    return found


def _read_record(out: Path) -> dict[str, set[str]]:
    """file -> SHA-256 listed by the ``export.json`` of an earlier export (none: empty).

    Raises
    ------
    ExportError
        The record does not validate (:func:`read_export_record`; the message names the
        file and the field).
    """
    record = out / EXPORT_RECORD
    if not record.exists():
        return {}
    try:
        files = read_export_record(record).files
    except ExportRecordError as exc:
        raise ExportError(f"{exc}; remove it or export into a new folder") from None
    return {k: {v} for k, v in files.items()}


def _check_out(out: Path, dataset_root: Path) -> None:
    """Refuse the dataset root, its data folders, a folder holding the dataset, and folders
    expokit did not make (claims ``out`` as an export folder otherwise)."""
    placement = output_folder_placement(out, dataset_root)
    if placement.relation == "same":
        raise ExportError(f"{out}: exporting into the dataset root itself is not allowed")
    if placement.inside is not None:
        first = placement.inside.parts[0]
        if first in TRACKED_ROOT_FOLDERS or first in ("meta", "manifest.parquet"):
            raise ExportError(
                f"{out} is inside the dataset's own files ({first}/); choose a folder outside them"
            )
    if placement.relation == "holds":
        raise ExportError(f"{out} contains the dataset {dataset_root}; choose another folder")
    try:
        claim_root(out, "export", what="export folder")
    except OutputError as exc:
        raise ExportError(str(exc)) from None


def _cleanup(out: Path, ours: dict[str, set[str]], summary: ExportSummary) -> None:
    """Remove files of earlier exports that this one did not write; report the rest.

    A file is removed only when its path stays inside ``out`` (no ``..``, not absolute, no
    symlink leaving) and its current SHA-256 is one expokit recorded for it. Everything
    else is left in place and listed in ``summary.kept``.
    """
    for rel in sorted(set(ours) - set(summary.files)):
        try:
            path = resolve_inside(out, rel, what="listed file")
        except PathEscapeError as exc:
            summary.kept.append(f"{rel}: not removed: {exc}")
            continue
        if path.is_symlink() or not path.exists():
            if path.is_symlink():
                summary.kept.append(f"{rel}: not removed: it is a symbolic link")
            continue
        if not path.is_file():
            summary.kept.append(f"{rel}: not removed: not a file")
            continue
        digests = {d.lower() for d in ours[rel] if _SHA256.fullmatch(d.lower())}
        if not digests:
            summary.kept.append(f"{rel}: not removed: the record holds no valid SHA-256 for it")
            continue
        if sha256_file(path) not in digests:
            summary.kept.append(
                f"{rel}: not removed: changed since expokit wrote it (SHA-256 differs)"
            )
            continue
        path.unlink()
        summary.removed.append(rel)
    # Files nobody recorded: expokit never wrote them, so they are not its to delete.
    recorded = set(ours) | set(summary.files)
    for path in _files_below(out):
        rel = path.relative_to(out).as_posix()
        if rel not in recorded and rel != EXPORT_RECORD:
            summary.kept.append(
                f"{rel}: not written by expokit (left in place; peers' loaders may read it)"
            )


def _files_below(out: Path) -> list[Path]:
    """Every file and link below ``out`` except expokit's state and temporary files."""
    import os

    found = []
    for dirpath, dirnames, filenames in os.walk(out, followlinks=False):
        folder = Path(dirpath)
        if folder == out:
            dirnames[:] = [d for d in dirnames if d != STATE_DIR]
        found += [folder / d for d in dirnames if (folder / d).is_symlink()]
        found += [folder / f for f in filenames if not f.startswith(TEMP_PREFIX)]
    return sorted(found)


def _remove_empty_dirs(out: Path) -> None:
    """Remove empty folders below ``out`` (never following links, never the state folder)."""
    import os

    for dirpath, _, _ in os.walk(out, topdown=False, followlinks=False):
        folder = Path(dirpath)
        if folder == out or STATE_DIR in folder.relative_to(out).parts[:1]:
            continue
        if not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()


def export_dataset(
    root: str | Path | Dataset,
    out: str | Path,
    layout: str,
    *,
    jpeg_quality: int = 95,
    dime_val: str = "skip",
    ev_tolerance: float = DEFAULT_EV_TOLERANCE,
    progress: bool = True,
    durable: bool = False,
    rank_map: str | None = None,
    allow_partial: bool = False,
    selection: PairSelection | None = None,
) -> ExportSummary:
    """Export a dataset to ``out`` in ``layout`` (``msec``, ``dime``, ``sequences``, ``paired``).

    The folder is claimed as an expokit export folder (``.expokit/root.json``) and locked for
    the whole run. Every file is announced in ``.expokit/export-progress.jsonl`` (path and
    SHA-256, fsynced) before it is written, and ``export.json`` is written last. Re-running
    the same command after a kill completes the export: files of the earlier run that this
    one does not produce are removed, but only when they are inside ``out`` and their
    SHA-256 is one expokit recorded; anything else is kept and listed in ``summary.kept``.

    Parameters
    ----------
    root
        Dataset root (loaded and validated with :func:`load_dataset`) or a loaded Dataset.
    out
        Output folder: new, empty, or an earlier (finished or killed) export.
    layout
        One of :data:`LAYOUTS`.
    jpeg_quality
        Quality of JPEGs encoded for ``msec`` (JPEG sources are copied unchanged).
    dime_val
        ``"skip"`` (default) leaves the val split out of ``dime``; ``"test"`` adds it to test.
    ev_tolerance
        Largest distance in EV between ``input_ev - target_ev`` and an MSEC token.
    progress
        Show a progress bar.
    durable
        fsync every image. Off by default: each file is still replaced atomically, the
        progress journal is always fsynced, and ``export.json`` (always durable) is written
        last as the record of a complete export.
    rank_map
        ``msec`` and ``sequences``: how scenes whose EVs are ranks (:func:`rank_scenes`)
        become tokens; one of :data:`RANK_MAPS` (``"nearest5"``; other ranks are skipped).
        Without it such a dataset is refused. The mapping is written in ``export.json``
        (``options.rank_map``) and the card.
    allow_partial
        ``msec``: a scene lacking one of the five inputs is still not written, but is a
        skipped item, not an error (``summary.ok`` stays True).
    selection
        Export only the pairs this QA-flag selection keeps (``--passed-only`` /
        ``--exclude-flags``, the rule ``train`` and ``eval`` use); recorded in
        ``export.json`` (``options.selection``) and the card. A layout that needs whole
        scenes (``msec``'s five inputs) then reports the scenes the selection broke.

    Returns
    -------
    ExportSummary
        Files written and rows skipped or failed; ``summary.ok`` is False if any failed.

    Raises
    ------
    ExportError, DatasetError, OutputError, RootInUseError
        Unknown layout, unreadable dataset, a scene in two splits, an output folder that
        cannot be used (foreign, inside the dataset, links leaving it), a malformed earlier
        record, or another export running into the same folder.
    """
    _check_options(layout, dime_val, jpeg_quality, rank_map)
    if not isinstance(root, Dataset):
        check_not_being_written(Path(root), "exporting it")
    dataset = root if isinstance(root, Dataset) else load_dataset(root)
    _check_dataset(dataset, layout, rank_map)
    chosen = selection or PairSelection()
    rows_total = len(dataset.manifest)
    if not chosen.everything:
        kept = chosen.apply(dataset.manifest)
        if kept.empty:
            raise ExportError(
                f"{dataset.root}: {chosen.describe()} keeps none of its {rows_total} pairs"
            )
        dataset = dataclasses.replace(dataset, manifest=kept.reset_index(drop=True))
    out_dir = Path(out)
    _check_out(out_dir, dataset.root)
    with RootLock(out_dir, "expokit curate export"):
        ours = _earlier_files(out_dir)
        summary = ExportSummary(layout=layout, out=out_dir, rows_total=rows_total)
        if not chosen.everything:
            summary.notes.append(
                f"pairs chosen by QA flags: {chosen.describe()}, {len(dataset.manifest)} of "
                f"{rows_total} pairs"
            )
        _write_layout(
            dataset,
            summary,
            layout,
            jpeg_quality=jpeg_quality,
            dime_val=dime_val,
            ev_tolerance=ev_tolerance,
            progress=progress,
            durable=durable,
            rank_map=rank_map,
            allow_partial=allow_partial,
        )
        _cleanup(out_dir, ours, summary)
        _remove_empty_dirs(out_dir)
        if layout in _CHECKS:
            _CHECKS[layout](out_dir, summary)
        mapping = _rank_map_record(dataset, layout, rank_map)
        _write_record(
            dataset, summary, jpeg_quality, dime_val, ev_tolerance, mapping, allow_partial,
            chosen,
        )  # fmt: skip
        # export.json now records every file; the journal's work is done.
        (out_dir / PROGRESS_JOURNAL).unlink(missing_ok=True)
        return summary


def _check_options(layout: str, dime_val: str, jpeg_quality: int, rank_map: str | None) -> None:
    """Raise :class:`ExportError` for an unknown layout, ``dime_val`` or rank map, or a
    JPEG quality outside 1..100."""
    if layout not in LAYOUTS:
        raise ExportError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if dime_val not in DIME_VAL_CHOICES:
        raise ExportError(f"dime_val must be one of {', '.join(DIME_VAL_CHOICES)}")
    if not 1 <= jpeg_quality <= 100:
        raise ExportError(f"jpeg_quality must be 1..100, got {jpeg_quality}")
    if rank_map is not None and rank_map not in RANK_MAPS:
        raise ExportError(f"unknown rank map {rank_map!r}; choose one of {', '.join(RANK_MAPS)}")


def _check_dataset(dataset: Dataset, layout: str, rank_map: str | None) -> None:
    """Refuse rank EVs without a rank map (for layouts that name files by EV) and a scene
    in two splits (:class:`ExportError`)."""
    if layout in RANK_MAP_LAYOUTS and rank_map is None:
        ranked = rank_scenes(dataset)
        if ranked:
            # A rank is exposure order, not EV: turning it into N1/P1 silently would lie.
            shown = ", ".join(ranked[:10]) + (
                f" and {len(ranked) - 10} more" if len(ranked) > 10 else ""
            )
            raise ExportError(
                f"{dataset.root}: {len(ranked)} scene(s) have EVs that are exposure ranks, not "
                f"measurements (ev_basis: rank; no EXIF exposure times): {shown}. The "
                f"{layout} layout names files by EV tokens, which name EV steps; map ranks "
                "explicitly with --rank-map nearest5 (the five exposures nearest the target "
                "by rank -> N1.5 N1 0 P1 P1.5)"
            )
    overlap = check_split_disjoint(dataset.manifest)
    if overlap:
        # Exporting would put one scene in training and test data: refuse, do not guess.
        raise ExportError(
            "; ".join(p.message for p in overlap)
            + f" (run `expokit curate validate {dataset.root}`)"
        )


def _earlier_files(out_dir: Path) -> dict[str, set[str]]:
    """file -> SHA-256s that earlier exports (finished: ``export.json``; killed: the
    progress journal) provably wrote into the locked ``out_dir``; removes a killed run's
    temporary files. Refuses a folder holding symbolic links that leave it."""
    leaving = symlinks_leaving(out_dir)
    if leaving:
        shown = ", ".join(str(p.relative_to(out_dir.resolve())) for p in leaving[:5])
        raise ExportError(
            f"{out_dir} holds symbolic links that leave it ({shown}); expokit will not write "
            "through them: remove them"
        )
    ours = _read_record(out_dir)
    for rel, digests in _read_journal(out_dir / PROGRESS_JOURNAL).items():
        ours.setdefault(rel, set()).update(digests)
    remove_stale_temp_files(out_dir)  # a killed run's temporary files (live writers' kept)
    return ours


def _write_layout(
    dataset: Dataset,
    summary: ExportSummary,
    layout: str,
    *,
    jpeg_quality: int,
    dime_val: str,
    ev_tolerance: float,
    progress: bool,
    durable: bool,
    rank_map: str | None,
    allow_partial: bool,
) -> None:
    """Run ``layout``'s planning and writing steps, then write the dataset card, every file
    announced in the progress journal first."""
    journal = _Journal(summary.out)
    try:
        writer = ExportWriter(dataset, summary, jpeg_quality, durable, journal)
        if layout == "msec":
            export_msec(dataset, writer, ev_tolerance, progress, rank_map, allow_partial)
        elif layout == "dime":
            export_dime(dataset, writer, dime_val, progress)
        elif layout == "paired":
            export_paired(dataset, writer, progress)
        else:
            export_sequences(dataset, writer, progress, rank_map)

        from expokit.curation.dataset.card import render_card

        card = render_card(dataset, export=summary.as_card_section())
        writer.write_text(CARD_FILE, card)
    finally:
        journal.close()


def _rank_map_record(dataset: Dataset, layout: str, rank_map: str | None) -> RankMapRecord | None:
    """``options.rank_map`` of ``export.json``: the mapping applied, or None."""
    if layout not in RANK_MAP_LAYOUTS or rank_map is None:
        return None
    return RankMapRecord(
        name=rank_map,
        ranks={f"{r:+d}": t for r, t in RANK_MAPS[rank_map].items()},
        scenes=tuple(rank_scenes(dataset)),
        rule="rank difference to the target (rank 0) -> MSEC token; other ranks skipped",
    )


def _write_record(
    dataset: Dataset,
    summary: ExportSummary,
    jpeg_quality: int,
    dime_val: str,
    ev_tolerance: float,
    rank_map: RankMapRecord | None = None,
    allow_partial: bool = False,
    selection: PairSelection | None = None,
) -> None:
    chosen = selection or PairSelection()
    record = ExportRecord(
        layout=summary.layout,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        expokit_version=__version__,
        dataset=ExportedDataset(
            root=str(dataset.root.resolve()),
            name=dataset.info.name,
            format_version=dataset.info.format_version,
            # The manifest that was read, not whatever the file holds by now.
            manifest_sha256=dataset.manifest_sha256 or sha256_file(dataset.root / MANIFEST_FILE),
        ),
        options=ExportOptions(
            jpeg_quality=jpeg_quality,
            dime_val=dime_val,
            ev_tolerance=ev_tolerance,
            rank_map=rank_map,
            allow_partial=allow_partial,
            selection=SelectionRecord(chosen.exclude_flags, chosen.passed_only),
        ),
        counts={
            "rows_total": summary.rows_total,
            "rows_exported": summary.rows_exported,
            "groups_exported": summary.groups_exported,
            "files": len(summary.files),
            **summary.counts_by_reason(),
        },
        notes=tuple(summary.notes),
        issues=tuple(summary.issues),
        kept=tuple(summary.kept),
        removed=tuple(summary.removed),
        files=dict(sorted(summary.files.items())),
    )
    write_export_record(record, summary.out / EXPORT_RECORD)
