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
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from expokit.core.atomic import (
    TEMP_PREFIX,
    atomic_path,
    atomic_write_json,
    remove_stale_temp_files,
)
from expokit.core.errors import ExpokitError, OutputError
from expokit.core.ev import MSEC_LADDER, ev_token
from expokit.core.hashing import sha256_bytes, sha256_file
from expokit.core.lock import RootLock
from expokit.core.paths import (
    TRACKED_ROOT_FOLDERS,
    PathEscapeError,
    UnsafeNameError,
    check_name,
    resolve_inside,
    symlinks_leaving,
)
from expokit.core.roots import STATE_DIR, claim_root
from expokit.curation.dataset import Dataset, check_not_being_written, load_dataset

LAYOUTS: tuple[str, ...] = ("msec", "dime", "sequences")
MSEC_SPLIT_FOLDERS = {"train": "training", "val": "validation", "test": "testing"}
#: The tag after the single ``_`` of every MSEC name (MSEC's own names carry a camera file id).
MSEC_TAG = "EXPK"
MSEC_EXPERT_FOLDER = "expert_c_testing_set"
DIME_MIN_FRAMES = 5
DIME_VAL_CHOICES = ("skip", "test")
EXPORT_RECORD = "export.json"
CARD_FILE = "README.md"
DEFAULT_EV_TOLERANCE = 0.25
#: ``--rank-map`` choices: rank difference to the target -> MSEC token (the target is ``0``).
#: ``nearest5``: the five exposures nearest the target by rank, two darker and two brighter.
RANK_MAPS: dict[str, dict[int, str]] = {
    "nearest5": {-2: "N1.5", -1: "N1", 0: "0", 1: "P1", 2: "P1.5"},
}
#: Layouts whose file names carry EV tokens, so rank EVs need ``--rank-map`` there.
RANK_MAP_LAYOUTS = ("msec", "sequences")

_JPEG_SUFFIXES = {".jpg", ".jpeg"}
_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")


class ExportError(ExpokitError):
    """An export cannot start (bad layout, unusable output folder, unreadable dataset)."""


@dataclass(frozen=True)
class ExportIssue:
    """One row or file the export left out, and why.

    ``kind`` is ``"skipped"`` for rows a layout cannot represent (by design: an EV with no
    MSEC token, a clip too short for DIME) and ``"error"`` for bad data (missing, corrupt or
    changed files, inconsistent clips).
    """

    kind: Literal["skipped", "error"]
    reason: str
    message: str
    pair_id: str | None = None
    file: str | None = None

    def __str__(self) -> str:
        where = " ".join(
            part
            for part in (
                f"[{self.pair_id}]" if self.pair_id else "",
                self.file or "",
            )
            if part
        )
        return f"{self.kind}: {where + ': ' if where else ''}{self.message}"


@dataclass
class ExportSummary:
    """What an export wrote (``files``: path relative to ``out`` -> SHA-256) and left out."""

    layout: str
    out: Path
    rows_total: int
    rows_exported: int = 0
    groups_exported: int = 0
    files: dict[str, str] = field(default_factory=dict)
    issues: list[ExportIssue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Files in ``out`` this export neither wrote nor removed, each with the reason (not
    #: provably written by expokit, changed since, or a listed path outside ``out``).
    kept: list[str] = field(default_factory=list)
    #: Files of earlier (finished or killed) exports removed because this one no longer
    #: produces them (their SHA-256 still matched what expokit recorded).
    removed: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[ExportIssue]:
        return [i for i in self.issues if i.kind == "error"]

    @property
    def skipped(self) -> list[ExportIssue]:
        return [i for i in self.issues if i.kind == "skipped"]

    @property
    def ok(self) -> bool:
        """True when no item failed (rows skipped by design do not count)."""
        return not self.errors

    def counts_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for issue in self.issues:
            counts[f"{issue.kind}:{issue.reason}"] += 1
        return dict(sorted(counts.items()))

    def as_card_section(self) -> dict[str, Any]:
        """The mapping :func:`expokit.curation.card.render_card` shows for an export."""
        return {
            "layout": self.layout,
            "rows_total": self.rows_total,
            "rows_exported": self.rows_exported,
            "groups_exported": self.groups_exported,
            "files": len(self.files),
            "issues": self.counts_by_reason(),
            "notes": list(self.notes),
        }


class _SkipItem(Exception):
    """Internal: abandon the current item, carrying the issue to record."""

    def __init__(self, issue: ExportIssue) -> None:
        super().__init__(issue.message)
        self.issue = issue


# --------------------------------------------------------------------------- helpers


def clean_name(text: str) -> str:
    """``text`` reduced to ``[A-Za-z0-9-]`` (runs of anything else become one ``-``).

    ``_`` separates name fields in MSEC-style loaders and ``.`` confuses loaders that split
    the extension at the first dot, so both become ``-``.
    """
    return _UNSAFE.sub("-", text).strip("-") or "scene"


def to_uint8(image: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """An OpenCV image as 8-bit, 3-channel BGR (16-bit scaled by 1/257, alpha dropped).

    Peer loaders for JPEG/PNG expect 8-bit colour; grey images are repeated to three
    channels so every exported image has the same shape.
    """
    import cv2

    array = np.asarray(image)
    if array.dtype == np.uint16:
        array = np.round(array.astype(np.float32) / 257.0).astype(np.uint8)
    elif array.dtype.kind == "f":
        array = np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ValueError(f"unsupported image dtype {array.dtype}")
    if array.ndim == 2:
        return np.asarray(cv2.cvtColor(array, cv2.COLOR_GRAY2BGR))
    if array.shape[2] == 4:
        return np.ascontiguousarray(array[..., :3])
    if array.shape[2] == 1:
        return np.asarray(cv2.cvtColor(array[..., 0], cv2.COLOR_GRAY2BGR))
    return array


def nearest_msec_token(relative_ev: float, tolerance: float = DEFAULT_EV_TOLERANCE) -> str | None:
    """MSEC token nearest to ``relative_ev``, or None when none is within ``tolerance`` EV.

    >>> nearest_msec_token(-1.4), nearest_msec_token(-0.5), nearest_msec_token(1.5)
    ('N1.5', None, 'P1.5')
    """
    if relative_ev is None or not math.isfinite(relative_ev):
        return None
    nearest = min(MSEC_LADDER, key=lambda ev: abs(ev - relative_ev))
    return ev_token(nearest) if abs(nearest - relative_ev) <= tolerance + 1e-9 else None


def check_msec_names(names: Iterable[str]) -> None:
    """Raise :class:`ExportError` unless every name has exactly one ``_`` after a non-empty
    unique part and none is a prefix of another (case-insensitively)."""
    ordered = sorted(n.lower() for n in names)
    for name in ordered:
        unique, sep, tag = name.partition("_")
        if not sep or not unique or not tag or "_" in tag:
            raise ExportError(f"msec name {name!r} must be <unique>_<tag> with exactly one '_'")
    for shorter, longer in itertools.pairwise(ordered):
        if longer.startswith(shorter):
            raise ExportError(
                f"msec names {shorter!r} and {longer!r}: one is a prefix of the other "
                "(MSEC globs <name>*)"
            )


def _is_na(value: Any) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def _text(value: Any) -> str | None:
    return None if _is_na(value) else str(value)


def _group_base(scene: str, clip: str | None, frame: int | None) -> str:
    base = clean_name(scene)
    if clip is not None:
        base += f"-{clean_name(clip)}"
    if frame is not None:
        base += f"-f{frame:05d}"
    return base


def unique_names(bases: dict[Any, str]) -> dict[Any, str]:
    """Make ``bases`` (key -> base name) unique case-insensitively by appending ``-2``, ``-3``.

    Keys are visited in sorted string order so the result does not depend on row order.
    """
    taken: set[str] = set(b.lower() for b in bases.values())
    seen: set[str] = set()
    out: dict[Any, str] = {}
    for key in sorted(bases, key=str):
        name = bases[key]
        if name.lower() in seen:
            n = 2
            while f"{name}-{n}".lower() in taken or f"{name}-{n}".lower() in seen:
                n += 1
            name = f"{name}-{n}"
        seen.add(name.lower())
        out[key] = name
    return out


class _Writer:
    """Reads verified sources from the dataset and writes outputs atomically into ``out``.

    Every file is announced in the progress journal (path and SHA-256, fsynced) *before* it
    is written, so whatever a killed export leaves behind is provably expokit's and a re-run
    may remove it.
    """

    def __init__(
        self,
        dataset: Dataset,
        summary: ExportSummary,
        jpeg_quality: int,
        durable: bool,
        journal: _Journal | None = None,
    ) -> None:
        self.dataset = dataset
        self.summary = summary
        self.jpeg_quality = jpeg_quality
        self.durable = durable
        self.journal = journal

    def read(self, rel: str | None, expected_sha: str | None, pair_id: str) -> bytes:
        """Bytes of the manifest file ``rel``, after checking them against ``expected_sha``."""
        if rel is None:
            raise _SkipItem(ExportIssue("error", "no-path", "no file recorded", pair_id))
        try:
            path = self.dataset.path(rel)
            data = path.read_bytes()
        except FileNotFoundError:
            raise _SkipItem(
                ExportIssue("error", "missing-file", "file does not exist", pair_id, rel)
            ) from None
        except PathEscapeError as exc:
            # A link out of the dataset: its bytes are not the dataset's, never copy them.
            raise _SkipItem(
                ExportIssue("error", "symlink-outside-root", str(exc), pair_id, rel)
            ) from None
        except (OSError, ExpokitError) as exc:
            raise _SkipItem(ExportIssue("error", "unreadable", str(exc), pair_id, rel)) from None
        if expected_sha is None:
            raise _SkipItem(
                ExportIssue("error", "no-sha256", "manifest records no SHA-256", pair_id, rel)
            )
        actual = sha256_bytes(data)
        if actual != expected_sha:
            raise _SkipItem(
                ExportIssue(
                    "error",
                    "sha256-mismatch",
                    f"SHA-256 is {actual[:12]}…, manifest says {expected_sha[:12]}…: "
                    "the file changed after the dataset was built",
                    pair_id,
                    rel,
                )
            )
        return data

    def decode(self, data: bytes, rel: str, pair_id: str) -> npt.NDArray[Any]:
        import cv2

        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise _SkipItem(
                ExportIssue("error", "corrupt-image", "OpenCV cannot decode it", pair_id, rel)
            )
        return np.asarray(image)

    def encode(self, data: bytes, rel: str, pair_id: str, fmt: Literal["jpg", "png"]) -> bytes:
        """``data`` as 8-bit ``fmt``; JPEG sources are kept byte for byte for ``jpg``."""
        import cv2

        if fmt == "jpg" and Path(rel).suffix.lower() in _JPEG_SUFFIXES:
            return data  # already an 8-bit JPEG: re-encoding would only lose quality
        image = to_uint8(self.decode(data, rel, pair_id))
        params = (
            [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality]
            if fmt == "jpg"
            else [cv2.IMWRITE_PNG_COMPRESSION, 1]
        )
        ok, buffer = cv2.imencode(f".{fmt}", image, params)
        if not ok:
            raise _SkipItem(ExportIssue("error", "encode", f"cannot encode as {fmt}", pair_id, rel))
        return buffer.tobytes()

    def write(self, rel: str, data: bytes) -> None:
        # Raises PathEscapeError (the export stops) rather than write through a link out.
        target = resolve_inside(self.summary.out, rel, what="export file")
        digest = sha256_bytes(data)
        if self.journal is not None:
            self.journal.announce(rel, digest)
        with atomic_path(target, durable=self.durable) as tmp:
            tmp.write_bytes(data)
        self.summary.files[rel] = digest

    def write_text(self, rel: str, text: str) -> None:
        self.write(rel, text.encode("utf-8"))


# --------------------------------------------------------------------------- msec


def _records(dataset: Dataset) -> list[dict[str, Any]]:
    """Manifest rows as dicts (nulls as None): simpler and faster than ``iterrows``."""
    frame = dataset.manifest
    return [
        {str(k): (None if _is_na(v) else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def _frame_of(row: dict[str, Any]) -> int | None:
    return None if row["frame_index"] is None else int(row["frame_index"])


def rank_scenes(dataset: Dataset) -> list[str]:
    """Scenes whose EVs are exposure ranks, not measurements (``ev_basis: rank``).

    A ``sequences`` source without EXIF exposure times records ``ev_basis: ["rank"]`` in
    info.json's provenance and sets ``input_ev`` to the rank difference to the target. Per
    scene, a ``sequences`` row with no input or target exposure time is such a row (an EXIF
    basis needs the exposure time of every file of the scene).
    """
    frame = dataset.manifest
    if frame.empty:
        return []
    sequences = frame[frame["source"] == "sequences"]
    rank = sequences[
        sequences["input_exposure_time_s"].isna() | sequences["target_exposure_time_s"].isna()
    ]
    return sorted({str(s) for s in rank["scene_id"].tolist()})


def _relative_ev(row: dict[str, Any]) -> float | None:
    """``input_ev - target_ev``; an MSEC import's target is the EV-0 retouch (null target_ev)."""
    if row["input_ev"] is None:
        return None
    if row["target_ev"] is None:
        return float(row["input_ev"]) if row["source"] == "msec" else None
    return float(row["input_ev"]) - float(row["target_ev"])


def _msec(
    dataset: Dataset,
    writer: _Writer,
    tolerance: float,
    progress: bool,
    rank_map: str | None = None,
    allow_partial: bool = False,
) -> None:
    from tqdm import tqdm

    from expokit.core.ev import parse_ev_token

    rows = _records(dataset)
    summary = writer.summary
    ranked = set(rank_scenes(dataset)) if rank_map is not None else set()
    groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        split = row["split"]
        if split not in MSEC_SPLIT_FOLDERS:
            summary.issues.append(
                ExportIssue(
                    "skipped",
                    "split",
                    f"split {split!r} has no MSEC folder (train, val, test)",
                    row["pair_id"],
                )
            )
            continue
        key = (split, str(row["scene_id"]), row["clip_id"], _frame_of(row), row["target_path"])
        groups[key].append(index)

    # One MSEC scene per (scene, clip, frame, target); several targets get -t1, -t2, ...
    targets_per_key: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for key in groups:
        targets_per_key[key[:4]].append(str(key[4]))
    bases: dict[tuple[Any, ...], str] = {}
    for key in groups:
        base = _group_base(key[1], key[2], key[3])
        siblings = sorted(targets_per_key[key[:4]])
        if len(siblings) > 1:
            base += f"-t{siblings.index(str(key[4])) + 1}"
        bases[key] = base
    names = {k: f"{v}_{MSEC_TAG}" for k, v in unique_names(bases).items()}
    check_msec_names(names.values())

    tokens = tuple(ev_token(ev) for ev in MSEC_LADDER)
    small = from_target = 0
    incomplete: list[str] = []
    bar = tqdm(sorted(groups, key=str), desc="export msec", unit="scene", disable=not progress)
    for key in bar:
        split_folder = MSEC_SPLIT_FOLDERS[key[0]]
        name = names[key]
        by_rank = key[1] in ranked
        # token -> (distance in EV, row index, column): the file that becomes <name>_<token>
        chosen: dict[str, tuple[float, int, str]] = {}
        for index in groups[key]:
            row = rows[index]
            relative = _relative_ev(row)
            if relative is None:
                summary.issues.append(
                    ExportIssue(
                        "skipped",
                        "no-ev",
                        "input_ev or target_ev is null",
                        row["pair_id"],
                        row["input_path"],
                    )
                )
                continue
            if by_rank:
                token = RANK_MAPS[str(rank_map)].get(round(relative))
                if token is None or abs(relative - round(relative)) > 1e-6:
                    summary.issues.append(
                        ExportIssue(
                            "skipped",
                            "rank-not-mapped",
                            f"input is rank {relative:+g} from the target; --rank-map "
                            f"{rank_map} maps only ranks -2..+2",
                            row["pair_id"],
                            row["input_path"],
                        )
                    )
                    continue
            else:
                token = nearest_msec_token(relative, tolerance)
            if token is None:
                summary.issues.append(
                    ExportIssue(
                        "skipped",
                        "ev-not-representable",
                        f"input is {relative:+.2f} EV from the target; no MSEC token "
                        f"(N1.5 N1 0 P1 P1.5) within {tolerance:g} EV",
                        row["pair_id"],
                        row["input_path"],
                    )
                )
                continue
            distance = abs(relative - parse_ev_token(token)) if not by_rank else 0.0
            if token in chosen:
                # Two inputs round to one token: keep the closer, report the other.
                kept, dropped = (
                    (chosen[token][1], index)
                    if chosen[token][0] <= distance
                    else (index, chosen[token][1])
                )
                summary.issues.append(
                    ExportIssue(
                        "skipped",
                        "token-taken",
                        f"token {token} of this scene is taken by "
                        f"{rows[kept]['pair_id']}, whose EV is closer to it",
                        rows[dropped]["pair_id"],
                        rows[dropped]["input_path"],
                    )
                )
                if kept == chosen[token][1]:
                    continue
            chosen[token] = (distance, index, "input")
        first = rows[min(groups[key])]
        if "0" not in chosen and first["target_ev"] is not None:
            # The target is an exposure (render, sequence, capture): it is the EV-0 input.
            chosen["0"] = (0.0, min(groups[key]), "target")
        missing = [t for t in tokens if t not in chosen]
        if missing:
            incomplete.append(key[1])
            summary.issues.append(
                ExportIssue(
                    "skipped" if allow_partial else "error",
                    "incomplete-scene",
                    f"scene {key[1]!r} ({name}) lacks input(s) {' '.join(missing)} of "
                    f"N1.5 N1 0 P1 P1.5: not written (MSEC, UEC and RECNet need all five)"
                    + ("" if allow_partial else "; --allow-partial exports the other scenes"),
                    first["pair_id"],
                )
            )
            continue
        # Read and encode everything first (every bad file reported): a scene is written
        # whole or not at all.
        failures: list[ExportIssue] = []
        gt_jpeg = b""
        try:
            gt_data = writer.read(first["target_path"], first["target_sha256"], first["pair_id"])
            gt_jpeg = writer.encode(gt_data, first["target_path"], first["pair_id"], "jpg")
        except _SkipItem as skip:
            failures.append(skip.issue)
        inputs: dict[str, bytes] = {}
        for token in tokens:
            _, index, column = chosen[token]
            row = rows[index]
            if column == "target":
                inputs[token] = gt_jpeg
                continue
            try:
                data = writer.read(row["input_path"], row["input_sha256"], row["pair_id"])
                inputs[token] = writer.encode(data, row["input_path"], row["pair_id"], "jpg")
            except _SkipItem as skip:
                failures.append(skip.issue)
        if failures:
            summary.issues += failures
            continue
        for token in tokens:
            writer.write(f"{split_folder}/INPUT_IMAGES/{name}_{token}.JPG", inputs[token])
        writer.write(f"{split_folder}/GT_IMAGES/{name}.jpg", gt_jpeg)
        if key[0] == "test":
            writer.write(f"{split_folder}/{MSEC_EXPERT_FOLDER}/{name}.jpg", gt_jpeg)
        summary.rows_exported += sum(1 for t in tokens if chosen[t][2] == "input")
        summary.groups_exported += 1
        from_target += chosen["0"][2] == "target"
        sides = [first["width"], first["height"]]
        small += all(v is not None for v in sides) and min(int(v) for v in sides) < 384
    if incomplete:
        summary.notes.append(
            f"{len(incomplete)} scene(s) lacked one of the five MSEC inputs and were not "
            f"written{' (--allow-partial)' if allow_partial else ''}: "
            + ", ".join(sorted(set(incomplete))[:20])
        )
    if from_target:
        summary.notes.append(
            f"{from_target} scene(s) use their target (an EV-0 exposure) as the _0 input, so "
            "<name>_0.JPG and GT_IMAGES/<name>.jpg are the same image"
        )
    if ranked:
        mapping = ", ".join(f"rank {r:+d} -> {t}" for r, t in RANK_MAPS[str(rank_map)].items())
        summary.notes.append(
            f"rank EVs mapped with --rank-map {rank_map} for {len(ranked)} scene(s) whose "
            f"exposures have no measured EV (ev_basis: rank): {mapping}, rank 0 = the target; "
            "the tokens name exposure order, not measured EV steps"
        )
    if small:
        summary.notes.append(
            f"{small} scene(s) have a short side under 384 px; RECNet's training crops "
            "384x384 patches and needs at least that"
        )
    summary.notes.append(
        f"names are <scene>[-<clip>-f<frame>]_{MSEC_TAG}; tokens from input_ev - target_ev "
        f"rounded to the nearest MSEC EV within {tolerance:g} EV; JPEG sources copied "
        "unchanged, others encoded at the chosen JPEG quality"
    )


# --------------------------------------------------------------------------- msec peer check


def _peer_files(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _image_size(path: Path) -> tuple[int, int] | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return (int(image.size[0]), int(image.size[1]))
    except (OSError, UnidentifiedImageError):
        return None


def check_msec_peers(out: str | Path) -> list[str]:
    """Problems a peer's loader would hit in the MSEC export at ``out`` (empty: none).

    The rules are those of the peers' own code (``docs``: field notes "Peers' loaders"):

    * ``training``, ``validation`` and ``testing`` each hold ``INPUT_IMAGES`` and
      ``GT_IMAGES``; ``testing`` also ``expert_c_testing_set`` (RECNet and UEC refuse a
      layout without ``testing/INPUT_IMAGES``; evaluation scripts hard-code expert C);
    * MSEC: every input is ``<name>_<EV>.JPG`` with EV in ``N1.5 N1 0 P1 P1.5``; its GT is
      the name minus the last ``_`` field plus ``.jpg`` in ``GT_IMAGES`` (and, for testing,
      in ``expert_c_testing_set``); no GT without inputs; the glob ``<name>*`` in
      ``INPUT_IMAGES`` finds exactly that scene's inputs (no name is a prefix of another);
    * UEC: files grouped by ``"_".join(file.split("_")[:-2]) + "_"`` form groups of exactly
      five, one per EV suffix, all of one image size;
    * RECNet: bucketing by the last ``_`` token, each of the five buckets holds every scene
      of the split (``0`` included).
    """
    root = Path(out)
    problems: list[str] = []
    tokens = [ev_token(ev) for ev in MSEC_LADDER]
    for split_folder in MSEC_SPLIT_FOLDERS.values():
        needed = ["INPUT_IMAGES", "GT_IMAGES"]
        if split_folder == "testing":
            needed.append(MSEC_EXPERT_FOLDER)
        for sub in needed:
            if not (root / split_folder / sub).is_dir():
                problems.append(
                    f"{split_folder}/{sub}/ is missing (the peers' loaders need it; a split "
                    "with no scene: rebuild the dataset so every split gets one)"
                )
        inputs_dir = root / split_folder / "INPUT_IMAGES"
        files = _peer_files(inputs_dir)
        if (root / split_folder / "INPUT_IMAGES").is_dir() and not files:
            problems.append(f"{split_folder}/INPUT_IMAGES/ holds no images")
        gts = set(_peer_files(root / split_folder / "GT_IMAGES"))
        experts = set(_peer_files(root / split_folder / MSEC_EXPERT_FOLDER))
        scenes: set[str] = set()
        buckets: dict[str, set[str]] = defaultdict(set)
        for file in files:
            stem, _, suffix = file.rpartition(".")
            name, _, token = stem.rpartition("_")
            if suffix != "JPG" or token not in tokens or not name:
                problems.append(
                    f"{split_folder}/INPUT_IMAGES/{file}: not <name>_<EV>.JPG with EV in "
                    f"{' '.join(tokens)}"
                )
                continue
            scenes.add(name)
            buckets[token].add(name)  # RECNet: bucket = last "_" token
            gt = "_".join(stem.split("_")[:-1]) + ".jpg"  # MSEC's GT rule
            if gt not in gts:
                problems.append(f"{split_folder}/INPUT_IMAGES/{file}: no GT_IMAGES/{gt}")
            if split_folder == "testing" and gt not in experts:
                problems.append(f"{split_folder}/INPUT_IMAGES/{file}: no {MSEC_EXPERT_FOLDER}/{gt}")
        for gt in sorted(gts):
            if gt.rsplit(".", 1)[0] not in scenes:
                problems.append(f"{split_folder}/GT_IMAGES/{gt}: a GT without inputs")
        # MSEC globs <name>* in INPUT_IMAGES: it must find that scene's five inputs only.
        for name in sorted(scenes):
            found = [f for f in files if f.startswith(name)]
            if len(found) != len(tokens) or any(not f.startswith(name + "_") for f in found):
                problems.append(
                    f"{split_folder}: glob {name}* finds {len(found)} file(s), not its "
                    f"{len(tokens)} inputs (a scene name is a prefix of another)"
                )
        # UEC: group key = file name minus its last two "_" fields, five per group.
        groups: dict[str, list[str]] = defaultdict(list)
        for file in files:
            groups["_".join(file.split("_")[:-2]) + "_"].append(file)
        for group, members in sorted(groups.items()):
            suffixes = sorted(f.rsplit("_", 1)[-1] for f in members)
            if suffixes != sorted(f"{t}.JPG" for t in tokens):
                problems.append(
                    f"{split_folder}: UEC group {group!r} has {len(members)} file(s) "
                    f"({' '.join(suffixes)}), not one of each of N1.5 N1 0 P1 P1.5"
                )
            sizes = {_image_size(inputs_dir / f) for f in members}
            if len(sizes) != 1 or None in sizes:
                shown = ", ".join("unreadable" if z is None else f"{z[0]}x{z[1]}" for z in sizes)
                problems.append(
                    f"{split_folder}: UEC group {group!r} has image sizes {shown}; UEC does "
                    "not resize, every EV of a scene needs one size"
                )
        # RECNet: compares per-EV buckets; every bucket must hold every scene.
        for token in tokens:
            if scenes and buckets[token] != scenes:
                lacking = sorted(scenes - buckets[token])
                problems.append(
                    f"{split_folder}: RECNet bucket {token!r} lacks {len(lacking)} scene(s) "
                    f"({', '.join(lacking[:5])})"
                )
    return problems


# --------------------------------------------------------------------------- dime peer check

#: Frame suffixes VECNet's ``read_img2`` decodes (``data/util.py``: ``.npy`` via ``np.load``,
#: ``.png``/``.jpg`` via ``cv2.imread``; anything else leaves ``img`` unbound and crashes).
DIME_READABLE_SUFFIXES = (".png", ".jpg", ".npy")
#: Test clip ids VECNet's ``test.py`` hard-codes as over-exposed (line 53); it divides the
#: "under" sums by ``len(test clips) - len(this list)`` (lines 110-111).
VECNET_OVER_CLIPS = ("091", "110", "111", "112", "113", "114", "116", "117", "118", "119")
DIME_SPLITS = ("train", "test")
_DIME_CLIP = re.compile(r"\d{3,}")
_DIME_FRAME = re.compile(r"\d+")


def _vecnet_glob(folder: Path) -> list[Path]:
    """VECNet's ``glob_file_list``: ``sorted(glob.glob(os.path.join(root, '*')))`` (names
    starting with ``.`` are not matched)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=str)


def _frame_size(path: Path) -> tuple[int, ...] | None:
    if path.suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None
        return tuple(int(v) for v in array.shape[:2][::-1])
    return _image_size(path)


def _dime_split_problems(
    split_dir: Path, split: str, suffixes: tuple[str, ...]
) -> tuple[list[str], int]:
    """Problems of one ``np/<split>`` folder and its number of (LQ, GT) clip pairs."""
    problems: list[str] = []
    where = f"np/{split}"
    lq_root, gt_root = split_dir / "LQ", split_dir / "GT"
    for sub in (lq_root, gt_root):
        if not sub.is_dir():
            problems.append(f"{where}/{sub.name}/ is missing (VECNet reads LQ and GT side by side)")
    if problems:
        return problems, 0
    lq_clips, gt_clips = _vecnet_glob(lq_root), _vecnet_glob(gt_root)
    for side, entries in (("LQ", lq_clips), ("GT", gt_clips)):
        for entry in entries:
            if not entry.is_dir():
                problems.append(
                    f"{where}/{side}/{entry.name}: a stray file; VECNet takes every entry of "
                    f"{side}/ as a clip folder"
                )
            elif not _DIME_CLIP.fullmatch(entry.name):
                problems.append(
                    f"{where}/{side}/{entry.name}: clip folders are zero-padded numbers (%03d)"
                )
    lq_names = [p.name for p in lq_clips if p.is_dir()]
    gt_names = [p.name for p in gt_clips if p.is_dir()]
    if lq_names != gt_names:
        only_lq = sorted(set(lq_names) - set(gt_names))
        only_gt = sorted(set(gt_names) - set(lq_names))
        problems.append(
            f"{where}: LQ and GT clip folders differ (only in LQ: {', '.join(only_lq) or '-'}; "
            f"only in GT: {', '.join(only_gt) or '-'}); VECNet pairs them by sorted position"
        )
    for clip in sorted(set(lq_names) & set(gt_names)):
        lq_frames = _vecnet_glob(lq_root / clip)
        gt_frames = _vecnet_glob(gt_root / clip)
        clip_where = f"{where}/{{LQ,GT}}/{clip}"
        bad = False
        for side, frames in (("LQ", lq_frames), ("GT", gt_frames)):
            for frame in frames:
                if not frame.is_file() or frame.suffix not in suffixes:
                    bad = True
                    problems.append(
                        f"{where}/{side}/{clip}/{frame.name}: a stray entry; frames are "
                        f"{'/'.join(suffixes)} files (VECNet reads every entry as a frame and "
                        "fails on anything it cannot decode)"
                    )
        lq = [p.name for p in lq_frames]
        gt = [p.name for p in gt_frames]
        if lq != gt:
            problems.append(
                f"{clip_where}: LQ ({len(lq)} frames) and GT ({len(gt)}) hold different frame "
                f"names (first difference: "
                f"{next((a, b) for a, b in itertools.zip_longest(lq, gt) if a != b)}); VECNet "
                "pairs frames by sorted position"
            )
            bad = True
        stems = [name.rsplit(".", 1)[0] for name in lq]
        if not all(_DIME_FRAME.fullmatch(s) for s in stems) or len({len(s) for s in stems}) > 1:
            problems.append(
                f"{clip_where}: frame names are not zero-padded numbers of one width, so "
                "their sorted order need not be frame order"
            )
        if min(len(lq), len(gt)) < DIME_MIN_FRAMES:
            problems.append(
                f"{clip_where}: {min(len(lq), len(gt))} frame(s); VECNet needs >= "
                f"{DIME_MIN_FRAMES} (5-frame windows, padding new_info reads index 4)"
            )
            bad = True
        if bad:
            continue
        sizes: dict[tuple[int, ...] | None, list[str]] = defaultdict(list)
        for side, frames in (("LQ", lq_frames), ("GT", gt_frames)):
            for frame in frames:
                sizes[_frame_size(frame)].append(f"{side}/{frame.name}")
        if None in sizes:
            problems.append(f"{clip_where}: unreadable frame(s) {', '.join(sizes[None][:3])}")
        elif len(sizes) > 1:
            shown = "; ".join(
                f"{'x'.join(map(str, size))}: {len(files)} ({files[0]})"
                for size, files in sizes.items()
                if size is not None
            )
            problems.append(
                f"{clip_where}: frames differ in size ({shown}); LQ and GT frames of a clip "
                "must all have one size"
            )
    return problems, len(set(lq_names) & set(gt_names))


def check_dime_peers(
    out: str | Path, *, suffixes: tuple[str, ...] = (".png",)
) -> tuple[list[str], list[str]]:
    """Problems VECNet's own data code would hit in the DIME export at ``out``.

    Returns ``(errors, warnings)``. The rules are those of VECNet's code
    (github.com/kravrolens/VECNet, ``data/VEC_dataset.py``, ``data/util.py``, ``test.py``):

    * clip folders ``np/{train,test}/{LQ,GT}/<%03d>/`` are listed with
      ``sorted(glob(root/'*'))`` and paired with ``zip`` by sorted position, so LQ and GT hold
      the same clip names and nothing else (a stray file becomes a "clip");
    * the frames of a clip are paired by sorted position too, and VECNet asserts equal
      counts: LQ and GT hold identical, zero-padded frame names, each a frame file
      (``suffixes``: PNG for expokit's export; VECNet reads ``.png``, ``.jpg``, ``.npy``);
    * at least :data:`DIME_MIN_FRAMES` frames per clip (``N_frames: 5`` with
      ``padding: new_info`` reads frame index 4 for the first frame of a clip);
    * one frame size per clip, LQ and GT alike;
    * the test split must not hold exactly 10 clips: ``test.py`` divides the per-clip
      "under" averages by ``len(clips) - 10`` (lines 110-111; ten hard-coded over-exposed ids
      on line 53).

    Warnings: a split folder absent (``test.py`` then divides by zero clips, line 106), fewer
    than 10 test clips (a negative divisor: meaningless "under" scores), test clips whose
    numbers VECNet's ``test.py`` counts as over-exposed (:data:`VECNET_OVER_CLIPS`).
    """
    root = Path(out)
    errors: list[str] = []
    warnings: list[str] = []
    counts: dict[str, int] = {}
    for split in DIME_SPLITS:
        split_dir = root / "np" / split
        if not split_dir.is_dir():
            warnings.append(
                f"np/{split}/ is missing: VECNet's "
                + (
                    "train.py has nothing to train on"
                    if split == "train"
                    else "test.py then divides by zero test clips (test.py line 106) and "
                    "train.py validates on np/test"
                )
            )
            continue
        problems, counts[split] = _dime_split_problems(split_dir, split, suffixes)
        errors += problems
    tests = counts.get("test")
    if tests == len(VECNET_OVER_CLIPS):
        errors.append(
            f"np/test holds exactly {tests} clips: VECNet's test.py divides the under-exposure "
            f"averages by (number of test clips - {len(VECNET_OVER_CLIPS)}) (test.py lines "
            "110-111), a division by zero; move a clip between splits or add one"
        )
    elif tests is not None and tests < len(VECNET_OVER_CLIPS):
        warnings.append(
            f"np/test holds {tests} clip(s): VECNet's test.py divides the under-exposure "
            f"averages by ({tests} - {len(VECNET_OVER_CLIPS)}) (lines 110-111), so its "
            "PSNR-under/SSIM-under are meaningless (its overall PSNR/SSIM are fine)"
        )
    if tests:
        over = sorted(
            p.name for p in _vecnet_glob(root / "np/test/GT") if p.name in VECNET_OVER_CLIPS
        )
        if over:
            warnings.append(
                f"np/test clips {', '.join(over)} are on VECNet's hard-coded over-exposed list "
                "(test.py line 53): its PSNR-over/SSIM-over count them as over-exposed"
            )
    return errors, warnings


# --------------------------------------------------------------------------- dime


def _dime(dataset: Dataset, writer: _Writer, dime_val: str, progress: bool) -> None:
    from tqdm import tqdm

    rows = _records(dataset)
    summary = writer.summary
    split_map = {"train": "train", "test": "test"}
    if dime_val == "test":
        split_map["val"] = "test"
    clips: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        if row["clip_id"] is None or row["frame_index"] is None:
            summary.issues.append(
                ExportIssue(
                    "skipped",
                    "not-a-frame",
                    "not a video frame (no clip_id or frame_index); DIME exports clips only",
                    row["pair_id"],
                )
            )
            continue
        split = row["split"]
        if split not in split_map:
            reason = (
                "val is skipped (DIME has no validation folder; dime_val='test' puts it in test)"
                if split == "val"
                else f"split {split!r} has no DIME folder (train, test)"
            )
            summary.issues.append(ExportIssue("skipped", "split", reason, row["pair_id"]))
            continue
        clips[(str(split), str(row["scene_id"]), str(row["clip_id"]))].append(index)

    # Clip folders are numbered over all splits so one number means one clip everywhere.
    order = sorted(clips, key=lambda k: (k[1], k[2], k[0]))
    numbers = {key: i for i, key in enumerate(order)}
    width = max(3, len(str(len(order))))
    index_lines = ["clip,split,dime_split,scene_id,clip_id,frames,first_frame"]
    for key in tqdm(order, desc="export dime", unit="clip", disable=not progress):
        split, scene, clip = key
        members = sorted(clips[key], key=lambda i: int(rows[i]["frame_index"]))
        first_id = rows[members[0]]["pair_id"]
        indices = [int(rows[i]["frame_index"]) for i in members]
        if len(set(indices)) != len(indices):
            dupes = sorted({i for i in indices if indices.count(i) > 1})
            summary.issues.append(
                ExportIssue(
                    "error",
                    "frame-count-mismatch",
                    f"clip {scene}/{clip}: frame_index {dupes} appears more than once, so "
                    "LQ and GT would hold different frame counts",
                    first_id,
                )
            )
            continue
        if len(indices) < DIME_MIN_FRAMES:
            summary.issues.append(
                ExportIssue(
                    "skipped",
                    "short-clip",
                    f"clip {scene}/{clip} has {len(indices)} "
                    f"frame(s); DIME needs >= {DIME_MIN_FRAMES}",
                    first_id,
                )
            )
            continue
        folder = f"{numbers[key]:0{width}d}"
        dime_split = split_map[split]
        lq_dir, gt_dir = f"np/{dime_split}/LQ/{folder}", f"np/{dime_split}/GT/{folder}"
        digits = max(5, len(str(max(indices))))
        written: list[str] = []
        try:
            for index, frame_index in zip(members, indices, strict=True):
                row = rows[index]
                name = f"{frame_index:0{digits}d}.png"
                for column, sha, target in (
                    ("input_path", "input_sha256", lq_dir),
                    ("target_path", "target_sha256", gt_dir),
                ):
                    data = writer.read(row[column], row[sha], row["pair_id"])
                    writer.write(
                        f"{target}/{name}", writer.encode(data, row[column], row["pair_id"], "png")
                    )
                    written.append(f"{target}/{name}")
            lq = sorted(p.name for p in (summary.out / lq_dir).iterdir())
            gt = sorted(p.name for p in (summary.out / gt_dir).iterdir())
            if lq != gt or len(lq) < DIME_MIN_FRAMES:
                raise _SkipItem(
                    ExportIssue(
                        "error",
                        "frame-count-mismatch",
                        f"clip {scene}/{clip}: LQ has {len(lq)} frames, GT {len(gt)}",
                        first_id,
                        lq_dir,
                    )
                )
        except _SkipItem as skip:
            # A clip is only usable whole: remove what was written for it (only that;
            # empty folders go at the end of the export).
            summary.issues.append(skip.issue)
            for rel in written:
                summary.files.pop(rel, None)
                (summary.out / rel).unlink(missing_ok=True)
            continue
        summary.rows_exported += len(indices)
        summary.groups_exported += 1
        index_lines.append(
            f"{folder},{split},{dime_split},{_csv(scene)},{_csv(clip)},{len(indices)},{indices[0]}"
        )
    writer.write_text("dime_clips.csv", "\n".join(index_lines) + "\n")
    summary.notes.append(
        f"clip folders numbered over all splits (see dime_clips.csv); val split "
        f"{'exported into test' if dime_val == 'test' else 'skipped'}; frames as 8-bit PNG "
        f"named by zero-padded frame_index; clips with < {DIME_MIN_FRAMES} frames skipped"
    )


def _rank_token(relative: float, rank_map: str) -> str | None:
    """The ``rank_map`` token of a rank difference to the target (None: not mapped)."""
    if abs(relative - round(relative)) > 1e-6:
        return None
    return RANK_MAPS[rank_map].get(round(relative))


def _csv(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


# --------------------------------------------------------------------------- sequences


@dataclass
class _Exposure:
    ev: float | None
    sha256: str | None
    roles: set[str] = field(default_factory=set)
    pair_ids: list[str] = field(default_factory=list)
    #: The file-name token when it is not ``ev_token(ev)`` (a rank mapped by ``--rank-map``).
    token: str | None = None


def _sequences(
    dataset: Dataset, writer: _Writer, progress: bool, rank_map: str | None = None
) -> None:
    from tqdm import tqdm

    rows = _records(dataset)
    summary = writer.summary
    ranked = set(rank_scenes(dataset)) if rank_map is not None else set()
    unmapped: set[str] = set()
    # (split, scene, clip, frame) -> file -> exposure; a file used by several rows once.
    groups: dict[tuple[Any, ...], dict[str, _Exposure]] = defaultdict(dict)
    refused: set[str] = set()
    for row in rows:
        split = row["split"] or "unsplit"
        try:
            # The split becomes the top folder: '../../evil' must not leave --out.
            check_name(split, "split", where=f"row {row['pair_id']}")
        except UnsafeNameError as exc:
            summary.issues.append(ExportIssue("error", "unsafe-name", str(exc), row["pair_id"]))
            refused.add(str(row["pair_id"]))
            continue
        key = (split, str(row["scene_id"]), row["clip_id"], _frame_of(row))
        by_rank = str(row["scene_id"]) in ranked
        for role in ("input", "target"):
            path = row[f"{role}_path"]
            if path is None:
                continue
            ev = row[f"{role}_ev"]
            token = None
            if by_rank:
                # The rank difference to the target, named only through the explicit map.
                relative = 0.0 if role == "target" else _relative_ev(row)
                token = None if relative is None else _rank_token(relative, str(rank_map))
                if token is None:
                    summary.issues.append(
                        ExportIssue(
                            "skipped",
                            "rank-not-mapped",
                            f"{role} is rank {relative if relative is not None else 'NA'} "
                            f"from the target; --rank-map {rank_map} maps only ranks -2..+2",
                            row["pair_id"],
                            path,
                        )
                    )
                    unmapped.add(str(row["pair_id"]))
                    continue
            entry = groups[key].setdefault(
                path,
                _Exposure(None if ev is None else float(ev), row[f"{role}_sha256"], token=token),
            )
            entry.roles.add(role)
            entry.pair_ids.append(str(row["pair_id"]))
    folders = unique_names({key: _group_base(key[1], key[2], key[3]) for key in groups})
    lines = ["split,folder,file,rank,ev,role,pair_ids,source"]
    failed: set[str] = set()
    for key in tqdm(
        sorted(groups, key=str), desc="export sequences", unit="scene", disable=not progress
    ):
        # Darkest first; at equal EV the input before the target, then by path.
        exposures = sorted(
            groups[key].items(),
            key=lambda item: (
                item[1].ev is None,
                item[1].ev or 0.0,
                "target" in item[1].roles,
                item[0],
            ),
        )
        width = max(2, len(str(len(exposures))))
        exported = 0
        for rank, (path, exposure) in enumerate(exposures, start=1):
            token = exposure.token or (ev_token(exposure.ev) if exposure.ev is not None else "NA")
            # The target keeps a "_target" mark: it may be another camera's frame at an EV
            # an input also has, and a person browsing the folder should see which it is.
            mark = "_target" if "target" in exposure.roles else ""
            name = f"{rank:0{width}d}_{token}{mark}{Path(path).suffix.lower()}"
            try:
                data = writer.read(path, exposure.sha256, exposure.pair_ids[0])
            except _SkipItem as skip:
                summary.issues.append(skip.issue)
                failed.update(exposure.pair_ids)
                continue
            writer.write(f"{key[0]}/{folders[key]}/{name}", data)
            exported += 1
            lines.append(
                f"{key[0]},{folders[key]},{name},{rank},"
                f"{'' if exposure.ev is None else exposure.ev},{'+'.join(sorted(exposure.roles))},"
                f"{_csv(' '.join(exposure.pair_ids))},{_csv(path)}"
            )
        summary.groups_exported += bool(exported)
    failed |= refused | unmapped
    summary.rows_exported = sum(1 for row in rows if str(row["pair_id"]) not in failed)
    writer.write_text("sequences.csv", "\n".join(lines) + "\n")
    if ranked:
        mapping = ", ".join(f"rank {r:+d} -> {t}" for r, t in RANK_MAPS[str(rank_map)].items())
        summary.notes.append(
            f"rank EVs mapped with --rank-map {rank_map} for {len(ranked)} scene(s) whose "
            f"exposures have no measured EV (ev_basis: rank): {mapping}, rank 0 = the target; "
            "the tokens in their file names name exposure order, not measured EV steps (the "
            "ev column of sequences.csv holds the rank); other ranks skipped"
        )
    summary.notes.append(
        "one folder per scene (per clip frame for video) under its split; files "
        "<rank>_<EV token>[_target].<ext> sorted by EV, copied unchanged; sequences.csv maps "
        "them to rows"
    )


# --------------------------------------------------------------------------- driver

#: Append-only journal of the files an export is writing (``{"file", "sha256"}`` per line).
PROGRESS_JOURNAL = f"{STATE_DIR}/export-progress.jsonl"
_SHA256 = re.compile(r"[0-9a-f]{64}")


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
        The record is not JSON, not an object, or its ``files`` is not an object of
        strings (the message names the file).
    """
    record = out / EXPORT_RECORD
    if not record.exists():
        return {}
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ExportError(f"{record}: not a valid export record (not JSON: {exc})") from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise ExportError(
            f'{record}: not a valid export record (needs an object with "files": '
            "{path: sha256}); remove it or export into a new folder"
        )
    return {k: {v} for k, v in files.items()}


def _check_out(out: Path, dataset_root: Path) -> None:
    """Refuse the dataset root, its data folders, a folder holding the dataset, and folders
    expokit did not make (claims ``out`` as an export folder otherwise)."""
    dataset = dataset_root.resolve()
    target = out.resolve()
    if target == dataset:
        raise ExportError(f"{out}: exporting into the dataset root itself is not allowed")
    if target.is_relative_to(dataset):
        first = target.relative_to(dataset).parts[0]
        if first in TRACKED_ROOT_FOLDERS or first in ("meta", "manifest.parquet"):
            raise ExportError(
                f"{out} is inside the dataset's own files ({first}/); choose a folder outside them"
            )
    if dataset.is_relative_to(target):
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
) -> ExportSummary:
    """Export a dataset to ``out`` in ``layout`` (``msec``, ``dime`` or ``sequences``).

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
    if layout not in LAYOUTS:
        raise ExportError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if dime_val not in DIME_VAL_CHOICES:
        raise ExportError(f"dime_val must be one of {', '.join(DIME_VAL_CHOICES)}")
    if not 1 <= jpeg_quality <= 100:
        raise ExportError(f"jpeg_quality must be 1..100, got {jpeg_quality}")
    if rank_map is not None and rank_map not in RANK_MAPS:
        raise ExportError(f"unknown rank map {rank_map!r}; choose one of {', '.join(RANK_MAPS)}")
    if not isinstance(root, Dataset):
        check_not_being_written(Path(root), "exporting it")
    dataset = root if isinstance(root, Dataset) else load_dataset(root)
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
    from expokit.curation.validate import check_split_disjoint

    overlap = check_split_disjoint(dataset.manifest)
    if overlap:
        # Exporting would put one scene in training and test data: refuse, do not guess.
        raise ExportError(
            "; ".join(p.message for p in overlap)
            + f" (run `expokit curate validate {dataset.root}`)"
        )
    out_dir = Path(out)
    _check_out(out_dir, dataset.root)
    with RootLock(out_dir, "expokit curate export"):
        return _export_locked(
            dataset,
            out_dir,
            layout,
            jpeg_quality,
            dime_val,
            ev_tolerance,
            progress,
            durable,
            rank_map=rank_map,
            allow_partial=allow_partial,
        )


def _export_locked(
    dataset: Dataset,
    out_dir: Path,
    layout: str,
    jpeg_quality: int,
    dime_val: str,
    ev_tolerance: float,
    progress: bool,
    durable: bool,
    *,
    rank_map: str | None = None,
    allow_partial: bool = False,
) -> ExportSummary:
    """The export proper, with ``out_dir`` claimed and locked."""
    leaving = symlinks_leaving(out_dir)
    if leaving:
        shown = ", ".join(str(p.relative_to(out_dir.resolve())) for p in leaving[:5])
        raise ExportError(
            f"{out_dir} holds symbolic links that leave it ({shown}); expokit will not write "
            "through them: remove them"
        )
    # What earlier exports (finished: export.json; killed: the journal) provably wrote.
    ours = _read_record(out_dir)
    for rel, digests in _read_journal(out_dir / PROGRESS_JOURNAL).items():
        ours.setdefault(rel, set()).update(digests)
    remove_stale_temp_files(out_dir)  # a killed run's temporary files (live writers' kept)
    summary = ExportSummary(layout=layout, out=out_dir, rows_total=len(dataset.manifest))
    journal = _Journal(out_dir)
    try:
        writer = _Writer(dataset, summary, jpeg_quality, durable, journal)
        if layout == "msec":
            _msec(dataset, writer, ev_tolerance, progress, rank_map, allow_partial)
        elif layout == "dime":
            _dime(dataset, writer, dime_val, progress)
        else:
            _sequences(dataset, writer, progress, rank_map)

        from expokit.curation.card import render_card

        card = render_card(dataset, export=summary.as_card_section())
        writer.write_text(CARD_FILE, card)
    finally:
        journal.close()
    _cleanup(out_dir, ours, summary)
    _remove_empty_dirs(out_dir)
    if layout == "msec":
        # What the peers' loaders will see, stray files of others included.
        summary.issues += [
            ExportIssue("error", "peer-convention", problem)
            for problem in check_msec_peers(out_dir)
        ]
    elif layout == "dime":
        # What VECNet's data code will see, stray files of others included.
        errors, warnings = check_dime_peers(out_dir)
        summary.issues += [ExportIssue("error", "peer-convention", p) for p in errors]
        summary.notes += [f"warning: {w}" for w in warnings]
    mapping = None
    if layout in RANK_MAP_LAYOUTS and rank_map is not None:
        mapping = {
            "name": rank_map,
            "ranks": {f"{r:+d}": t for r, t in RANK_MAPS[rank_map].items()},
            "scenes": rank_scenes(dataset),
            "rule": "rank difference to the target (rank 0) -> MSEC token; other ranks skipped",
        }
    _write_record(dataset, summary, jpeg_quality, dime_val, ev_tolerance, mapping, allow_partial)
    # export.json now records every file; the journal's work is done.
    (out_dir / PROGRESS_JOURNAL).unlink(missing_ok=True)
    return summary


def _write_record(
    dataset: Dataset,
    summary: ExportSummary,
    jpeg_quality: int,
    dime_val: str,
    ev_tolerance: float,
    rank_map: dict[str, Any] | None = None,
    allow_partial: bool = False,
) -> None:
    from expokit import __version__
    from expokit.curation.dataset import MANIFEST_FILE

    record = {
        "layout": summary.layout,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "expokit_version": __version__,
        "dataset": {
            "root": str(dataset.root.resolve()),
            "name": dataset.info.get("name"),
            "format_version": dataset.info.get("format_version"),
            # The manifest that was read, not whatever the file holds by now.
            "manifest_sha256": dataset.manifest_sha256 or sha256_file(dataset.root / MANIFEST_FILE),
        },
        "options": {
            "jpeg_quality": jpeg_quality,
            "dime_val": dime_val,
            "ev_tolerance": ev_tolerance,
            "rank_map": rank_map,
            "allow_partial": allow_partial,
        },
        "counts": {
            "rows_total": summary.rows_total,
            "rows_exported": summary.rows_exported,
            "groups_exported": summary.groups_exported,
            "files": len(summary.files),
            **summary.counts_by_reason(),
        },
        "notes": summary.notes,
        "issues": [vars(i) for i in summary.issues],
        "kept": summary.kept,
        "removed": summary.removed,
        "files": dict(sorted(summary.files.items())),
    }
    atomic_write_json(summary.out / EXPORT_RECORD, record)
