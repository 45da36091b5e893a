"""The four export layouts, each as planning -> writing -> checking steps.

Every layout is one public function (:func:`export_msec`, :func:`export_dime`,
:func:`export_sequences`, :func:`export_paired`) that reads the manifest rows, *plans* (which
rows go where, under which names; rows a layout cannot hold become :class:`ExportIssue`
items), *writes* (every source read once through :class:`ExportWriter`, its SHA-256 checked,
then copied or converted and written atomically) and *checks* what it wrote
(:func:`check_msec_export`, :func:`check_dime_export`, :func:`check_paired_export`, run by the
driver once the folder is final). The driver
(:func:`expokit.curation.export.driver.export_dataset`) owns the lock, the progress journal, the
cleanup of earlier exports and ``export.json``.

A layout adds to the :class:`ExportSummary` it is given, in a fixed order (rows in manifest
order, groups in sorted order), so two exports of one dataset write identical records.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from expokit.core.atomic import atomic_path
from expokit.core.errors import ExpokitError
from expokit.core.ev import MSEC_LADDER, ev_token, parse_ev_token
from expokit.core.hashing import sha256_bytes
from expokit.core.paths import PathEscapeError, UnsafeNameError, check_name, resolve_inside
from expokit.core.progress import show_progress
from expokit.curation.dataset.format import Dataset
from expokit.curation.export.peers import (
    DIME_MIN_FRAMES,
    MSEC_EXPERT_FOLDER,
    MSEC_SPLIT_FOLDERS,
    PAIRED_META_INFO,
    check_dime_peers,
    check_msec_peers,
    check_paired_peers,
)

#: The tag after the single ``_`` of every MSEC name (MSEC's own names carry a camera file id).
MSEC_TAG = "EXPK"
#: The five MSEC input tokens, darkest first (``N1.5 N1 0 P1 P1.5``).
MSEC_TOKENS: tuple[str, ...] = tuple(ev_token(ev) for ev in MSEC_LADDER)
DEFAULT_EV_TOLERANCE = 0.25
#: ``--rank-map`` choices: rank difference to the target -> MSEC token (the target is ``0``).
#: ``nearest5``: the five exposures nearest the target by rank, two darker and two brighter.
RANK_MAPS: dict[str, dict[int, str]] = {
    "nearest5": {-2: "N1.5", -1: "N1", 0: "0", 1: "P1", 2: "P1.5"},
}
#: Shortest image side RECNet's training crops need (384x384 patches), in pixels.
RECNET_MIN_SIDE = 384

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
        """The mapping :func:`expokit.curation.dataset.card.render_card` shows for an export."""
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


class Announcer(Protocol):
    """Where :class:`ExportWriter` announces a file (path, SHA-256) before writing it: the
    driver's progress journal."""

    def announce(self, rel: str, sha256: str) -> None: ...


class ExportWriter:
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
        journal: Announcer | None = None,
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


# --------------------------------------------------------------------------- manifest rows


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


def _rank_token(relative: float, rank_map: str) -> str | None:
    """The ``rank_map`` token of a rank difference to the target (None: not mapped)."""
    if abs(relative - round(relative)) > 1e-6:
        return None
    return RANK_MAPS[rank_map].get(round(relative))


def _csv(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def _rank_mapping(rank_map: str) -> str:
    """``rank -2 -> N1.5, ...``: the mapping a rank map applies, for the notes."""
    return ", ".join(f"rank {r:+d} -> {t}" for r, t in RANK_MAPS[rank_map].items())


# --------------------------------------------------------------------------- msec

#: An MSEC scene: (split, scene_id, clip_id, frame, target_path).
MsecKey = tuple[Any, ...]
#: token -> (distance in EV, row index, ``"input"`` or ``"target"``): the file that becomes
#: ``<name>_<token>.JPG`` and the column it comes from.
MsecChoice = dict[str, tuple[float, int, str]]


@dataclass
class _MsecTally:
    """What :func:`export_msec` counts for its notes."""

    incomplete: list[str] = field(default_factory=list)
    from_target: int = 0
    small: int = 0


def export_msec(
    dataset: Dataset,
    writer: ExportWriter,
    tolerance: float,
    progress: bool,
    rank_map: str | None = None,
    allow_partial: bool = False,
) -> None:
    """Write the ``msec`` layout: five inputs and one GT per scene, all as JPEG.

    Steps: plan the scenes (:func:`_plan_msec_scenes`) and their names
    (:func:`_plan_msec_names`); per scene choose the input of each token
    (:func:`_choose_msec_inputs`), read and encode every file of the scene
    (:func:`_encode_msec_scene`) and write them only when all succeeded. The peer check of
    the finished folder is :func:`check_msec_export`.

    Parameters
    ----------
    dataset
        The loaded dataset; its manifest rows are the items.
    writer
        Reads verified sources and writes into ``writer.summary.out``; issues, counts and
        notes go to ``writer.summary``.
    tolerance
        Largest distance in EV (stops, >= 0) between ``input_ev - target_ev`` and a token.
    progress
        Show a progress bar (one step per scene).
    rank_map
        Name in :data:`RANK_MAPS` for scenes whose EVs are ranks (:func:`rank_scenes`);
        None: no scene is treated as ranked.
    allow_partial
        A scene lacking one of the five inputs is a skipped item, not an error.

    Notes
    -----
    Files: ``<split>/INPUT_IMAGES/<name>_<token>.JPG`` (5 per scene),
    ``<split>/GT_IMAGES/<name>.jpg`` and, for test, ``testing/expert_c_testing_set/<name>.jpg``;
    8-bit JPEG (JPEG sources copied byte for byte, others encoded at
    ``writer.jpeg_quality``).
    """
    rows = _records(dataset)
    summary = writer.summary
    ranked = set(rank_scenes(dataset)) if rank_map is not None else set()
    groups = _plan_msec_scenes(rows, summary.issues)
    names = _plan_msec_names(groups)
    tally = _MsecTally()
    bar = show_progress(sorted(groups, key=str), desc="export msec", unit="scene", enabled=progress)
    for key in bar:
        name = names[key]
        first = rows[min(groups[key])]
        chosen = _choose_msec_inputs(
            rows, groups[key], summary.issues, key[1] in ranked, rank_map, tolerance
        )
        missing = [t for t in MSEC_TOKENS if t not in chosen]
        if missing:
            tally.incomplete.append(key[1])
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
        files, failures = _encode_msec_scene(writer, rows, first, chosen, key[0], name)
        if failures:
            summary.issues += failures
            continue
        for rel, data in files.items():
            writer.write(rel, data)
        summary.rows_exported += sum(1 for t in MSEC_TOKENS if chosen[t][2] == "input")
        summary.groups_exported += 1
        tally.from_target += chosen["0"][2] == "target"
        sides = [first["width"], first["height"]]
        tally.small += all(v is not None for v in sides) and min(int(v) for v in sides) < (
            RECNET_MIN_SIDE
        )
    summary.notes += _msec_notes(tally, ranked, tolerance, rank_map, allow_partial)


def _plan_msec_scenes(
    rows: list[dict[str, Any]], issues: list[ExportIssue]
) -> dict[MsecKey, list[int]]:
    """Group row indices into MSEC scenes, one per (split, scene, clip, frame, target).

    Rows of a split with no MSEC folder are skipped (an issue appended to ``issues``).
    """
    groups: dict[MsecKey, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        split = row["split"]
        if split not in MSEC_SPLIT_FOLDERS:
            issues.append(
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
    return groups


def _plan_msec_names(groups: Iterable[MsecKey]) -> dict[MsecKey, str]:
    """``<scene>[-<clip>-f<frame>][-t<n>]_EXPK`` per scene, unique case-insensitively.

    Several targets of one (scene, clip, frame) get ``-t1``, ``-t2``, ... in sorted target
    order. Raises :class:`ExportError` if the names break MSEC's rules
    (:func:`check_msec_names`).
    """
    keys = list(groups)
    targets_per_key: dict[MsecKey, list[str]] = defaultdict(list)
    for key in keys:
        targets_per_key[key[:4]].append(str(key[4]))
    bases: dict[MsecKey, str] = {}
    for key in keys:
        base = _group_base(key[1], key[2], key[3])
        siblings = sorted(targets_per_key[key[:4]])
        if len(siblings) > 1:
            base += f"-t{siblings.index(str(key[4])) + 1}"
        bases[key] = base
    names = {k: f"{v}_{MSEC_TAG}" for k, v in unique_names(bases).items()}
    check_msec_names(names.values())
    return names


def _choose_msec_inputs(
    rows: list[dict[str, Any]],
    members: list[int],
    issues: list[ExportIssue],
    by_rank: bool,
    rank_map: str | None,
    tolerance: float,
) -> MsecChoice:
    """The row that becomes each MSEC token of one scene.

    Each row's ``input_ev - target_ev`` (or, ``by_rank``, its rank difference through
    ``rank_map``) picks a token; rows with no token, and the farther of two rows on one
    token, are skipped (issues appended to ``issues`` in row order). A target that is an
    exposure (non-null ``target_ev``) fills a missing ``0`` token.
    """
    chosen: MsecChoice = {}
    for index in members:
        row = rows[index]
        relative = _relative_ev(row)
        if relative is None:
            issues.append(
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
            token = _rank_token(relative, str(rank_map))
            if token is None:
                issues.append(
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
            issues.append(
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
            issues.append(
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
    if "0" not in chosen and rows[min(members)]["target_ev"] is not None:
        # The target is an exposure (render, sequence, capture): it is the EV-0 input.
        chosen["0"] = (0.0, min(members), "target")
    return chosen


def _encode_msec_scene(
    writer: ExportWriter,
    rows: list[dict[str, Any]],
    first: dict[str, Any],
    chosen: MsecChoice,
    split: str,
    name: str,
) -> tuple[dict[str, bytes], list[ExportIssue]]:
    """Read and encode every file of one complete scene, before anything is written.

    Returns ``(files, failures)``: ``files`` maps each output path (relative to ``out``, in
    writing order: the five inputs, the GT, the test expert copy) to its JPEG bytes;
    ``failures`` lists every source that could not be read or encoded (then the scene is
    not written: a scene is written whole or not at all).
    """
    failures: list[ExportIssue] = []
    gt_jpeg = b""
    try:
        gt_data = writer.read(first["target_path"], first["target_sha256"], first["pair_id"])
        gt_jpeg = writer.encode(gt_data, first["target_path"], first["pair_id"], "jpg")
    except _SkipItem as skip:
        failures.append(skip.issue)
    split_folder = MSEC_SPLIT_FOLDERS[split]
    files: dict[str, bytes] = {}
    for token in MSEC_TOKENS:
        _, index, column = chosen[token]
        row = rows[index]
        rel = f"{split_folder}/INPUT_IMAGES/{name}_{token}.JPG"
        if column == "target":
            files[rel] = gt_jpeg
            continue
        try:
            data = writer.read(row["input_path"], row["input_sha256"], row["pair_id"])
            files[rel] = writer.encode(data, row["input_path"], row["pair_id"], "jpg")
        except _SkipItem as skip:
            failures.append(skip.issue)
    files[f"{split_folder}/GT_IMAGES/{name}.jpg"] = gt_jpeg
    if split == "test":
        files[f"{split_folder}/{MSEC_EXPERT_FOLDER}/{name}.jpg"] = gt_jpeg
    return files, failures


def _msec_notes(
    tally: _MsecTally,
    ranked: set[str],
    tolerance: float,
    rank_map: str | None,
    allow_partial: bool,
) -> list[str]:
    """The notes an ``msec`` export adds to its record and card, in a fixed order."""
    notes: list[str] = []
    if tally.incomplete:
        notes.append(
            f"{len(tally.incomplete)} scene(s) lacked one of the five MSEC inputs and were not "
            f"written{' (--allow-partial)' if allow_partial else ''}: "
            + ", ".join(sorted(set(tally.incomplete))[:20])
        )
    if tally.from_target:
        notes.append(
            f"{tally.from_target} scene(s) use their target (an EV-0 exposure) as the _0 input, "
            "so <name>_0.JPG and GT_IMAGES/<name>.jpg are the same image"
        )
    if ranked:
        notes.append(
            f"rank EVs mapped with --rank-map {rank_map} for {len(ranked)} scene(s) whose "
            f"exposures have no measured EV (ev_basis: rank): {_rank_mapping(str(rank_map))}, "
            "rank 0 = the target; the tokens name exposure order, not measured EV steps"
        )
    if tally.small:
        notes.append(
            f"{tally.small} scene(s) have a short side under {RECNET_MIN_SIDE} px; RECNet's "
            f"training crops {RECNET_MIN_SIDE}x{RECNET_MIN_SIDE} patches and needs at least that"
        )
    notes.append(
        f"names are <scene>[-<clip>-f<frame>]_{MSEC_TAG}; tokens from input_ev - target_ev "
        f"rounded to the nearest MSEC EV within {tolerance:g} EV; JPEG sources copied "
        "unchanged, others encoded at the chosen JPEG quality"
    )
    return notes


def check_msec_export(out: Path, summary: ExportSummary) -> None:
    """Checking step of ``msec``: add what the peers' loaders will see in ``out`` (stray
    files of others included; :func:`check_msec_peers`) as ``peer-convention`` errors."""
    summary.issues += [
        ExportIssue("error", "peer-convention", problem) for problem in check_msec_peers(out)
    ]


# --------------------------------------------------------------------------- dime

#: A DIME clip: (split, scene_id, clip_id).
DimeKey = tuple[str, str, str]
_DIME_INDEX_HEADER = "clip,split,dime_split,scene_id,clip_id,frames,first_frame"


def export_dime(dataset: Dataset, writer: ExportWriter, dime_val: str, progress: bool) -> None:
    """Write the ``dime`` layout: per clip, LQ (input) and GT (target) frames as 8-bit PNG.

    Steps: plan the clips (:func:`_plan_dime_clips`) and their folder numbers
    (:func:`_number_dime_clips`); per clip refuse duplicate or too few frames
    (:func:`_dime_clip_issue`), write its frames (:func:`_write_dime_clip`) and check that
    LQ and GT hold the same frames (:func:`_check_dime_clip`), removing the clip's files if
    any step fails; last ``dime_clips.csv``. The peer check of the finished folder is
    :func:`check_dime_export`.

    Parameters
    ----------
    dataset
        The loaded dataset; rows with ``clip_id`` and ``frame_index`` are the items.
    writer
        Reads verified sources and writes into ``writer.summary.out``.
    dime_val
        ``"skip"``: val rows are skipped; ``"test"``: they go to ``np/test``.
    progress
        Show a progress bar (one step per clip).

    Notes
    -----
    Files: ``np/{train,test}/{LQ,GT}/<clip %03d>/<frame_index %05d>.png`` (uint8, 3
    channels BGR, the source's size) and ``dime_clips.csv`` (clip folder -> split, scene,
    clip, frame count, first frame index).
    """
    rows = _records(dataset)
    summary = writer.summary
    split_map = {"train": "train", "test": "test"}
    if dime_val == "test":
        split_map["val"] = "test"
    clips = _plan_dime_clips(rows, split_map, summary.issues)
    order, folders = _number_dime_clips(clips)
    index_lines = [_DIME_INDEX_HEADER]
    for key in show_progress(order, desc="export dime", unit="clip", enabled=progress):
        split, scene, clip = key
        members = sorted(clips[key], key=lambda i: int(rows[i]["frame_index"]))
        first_id = rows[members[0]]["pair_id"]
        indices = [int(rows[i]["frame_index"]) for i in members]
        issue = _dime_clip_issue(scene, clip, indices, first_id)
        if issue is not None:
            summary.issues.append(issue)
            continue
        folder = folders[key]
        dime_split = split_map[split]
        lq_dir, gt_dir = f"np/{dime_split}/LQ/{folder}", f"np/{dime_split}/GT/{folder}"
        written: list[str] = []
        try:
            _write_dime_clip(writer, rows, members, indices, lq_dir, gt_dir, written)
            _check_dime_clip(summary.out, lq_dir, gt_dir, f"{scene}/{clip}", first_id)
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


def _plan_dime_clips(
    rows: list[dict[str, Any]], split_map: dict[str, str], issues: list[ExportIssue]
) -> dict[DimeKey, list[int]]:
    """Group the indices of video-frame rows by clip; other rows and rows of splits not in
    ``split_map`` are skipped (issues appended to ``issues`` in row order)."""
    clips: dict[DimeKey, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        if row["clip_id"] is None or row["frame_index"] is None:
            issues.append(
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
            issues.append(ExportIssue("skipped", "split", reason, row["pair_id"]))
            continue
        clips[(str(split), str(row["scene_id"]), str(row["clip_id"]))].append(index)
    return clips


def _number_dime_clips(clips: Iterable[DimeKey]) -> tuple[list[DimeKey], dict[DimeKey, str]]:
    """Clips in (scene, clip, split) order and their zero-padded folder numbers (>= 3
    digits), numbered over all splits so one number means one clip everywhere."""
    order = sorted(clips, key=lambda k: (k[1], k[2], k[0]))
    width = max(3, len(str(len(order))))
    return order, {key: f"{i:0{width}d}" for i, key in enumerate(order)}


def _dime_clip_issue(
    scene: str, clip: str, indices: list[int], first_id: str
) -> ExportIssue | None:
    """Why a clip with frame indices ``indices`` (sorted) cannot be exported, or None.

    A frame index used twice is an error (LQ and GT would differ); fewer than
    :data:`DIME_MIN_FRAMES` frames is a skip.
    """
    if len(set(indices)) != len(indices):
        dupes = sorted({i for i in indices if indices.count(i) > 1})
        return ExportIssue(
            "error",
            "frame-count-mismatch",
            f"clip {scene}/{clip}: frame_index {dupes} appears more than once, so "
            "LQ and GT would hold different frame counts",
            first_id,
        )
    if len(indices) < DIME_MIN_FRAMES:
        return ExportIssue(
            "skipped",
            "short-clip",
            f"clip {scene}/{clip} has {len(indices)} frame(s); DIME needs >= {DIME_MIN_FRAMES}",
            first_id,
        )
    return None


def _write_dime_clip(
    writer: ExportWriter,
    rows: list[dict[str, Any]],
    members: list[int],
    indices: list[int],
    lq_dir: str,
    gt_dir: str,
    written: list[str],
) -> None:
    """Write each frame's input to ``lq_dir`` and target to ``gt_dir`` as 8-bit PNG named
    by its zero-padded (>= 5 digits) frame index; every path written is appended to
    ``written`` so a failed clip can be removed. Raises :class:`_SkipItem` on a bad source.
    """
    digits = max(5, len(str(max(indices))))
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


def _check_dime_clip(out: Path, lq_dir: str, gt_dir: str, clip: str, first_id: str) -> None:
    """Raise :class:`_SkipItem` unless ``lq_dir`` and ``gt_dir`` (below ``out``) hold the
    same frame names, at least :data:`DIME_MIN_FRAMES` of them (``clip``: scene/clip)."""
    lq = sorted(p.name for p in (out / lq_dir).iterdir())
    gt = sorted(p.name for p in (out / gt_dir).iterdir())
    if lq != gt or len(lq) < DIME_MIN_FRAMES:
        raise _SkipItem(
            ExportIssue(
                "error",
                "frame-count-mismatch",
                f"clip {clip}: LQ has {len(lq)} frames, GT {len(gt)}",
                first_id,
                lq_dir,
            )
        )


def check_dime_export(out: Path, summary: ExportSummary) -> None:
    """Checking step of ``dime``: add what VECNet's data code will see in ``out`` (stray
    files of others included; :func:`check_dime_peers`): errors as ``peer-convention``
    issues, warnings as notes."""
    errors, warnings = check_dime_peers(out)
    summary.issues += [ExportIssue("error", "peer-convention", p) for p in errors]
    summary.notes += [f"warning: {w}" for w in warnings]


# --------------------------------------------------------------------------- sequences

#: A sequence folder: (split, scene_id, clip_id, frame).
SequenceKey = tuple[Any, ...]
_SEQUENCES_HEADER = "split,folder,file,rank,ev,role,pair_ids,source"


@dataclass
class _Exposure:
    ev: float | None
    sha256: str | None
    roles: set[str] = field(default_factory=set)
    pair_ids: list[str] = field(default_factory=list)
    #: The file-name token when it is not ``ev_token(ev)`` (a rank mapped by ``--rank-map``).
    token: str | None = None


@dataclass
class _SequencePlan:
    """What :func:`_plan_sequences` decided: the exposures of each folder, and the rows
    that cannot be exported (``refused``: unsafe split name; ``unmapped``: rank not in the
    rank map), by pair id."""

    groups: dict[SequenceKey, dict[str, _Exposure]]
    refused: set[str] = field(default_factory=set)
    unmapped: set[str] = field(default_factory=set)


def export_sequences(
    dataset: Dataset, writer: ExportWriter, progress: bool, rank_map: str | None = None
) -> None:
    """Write the ``sequences`` layout: one folder per scene with its distinct exposures.

    Steps: plan the folders and their exposures (:func:`_plan_sequences`), name each
    folder's files in EV order (:func:`_name_exposures`), copy every file byte for byte,
    then write ``sequences.csv``. There is no peer check (no peer code reads this layout).

    Parameters
    ----------
    dataset
        The loaded dataset; each row's input and target are exposures of its scene.
    writer
        Reads verified sources and writes into ``writer.summary.out``.
    progress
        Show a progress bar (one step per folder).
    rank_map
        Name in :data:`RANK_MAPS` for scenes whose EVs are ranks (:func:`rank_scenes`).

    Notes
    -----
    Files: ``<split>/<folder>/<rank>_<token>[_target].<ext>`` (rank 1 = darkest, zero-padded
    to >= 2 digits; the source's bytes and lower-cased suffix) and ``sequences.csv`` (one
    line per file: split, folder, file, rank, ev, role, pair ids, source path).
    """
    rows = _records(dataset)
    summary = writer.summary
    ranked = set(rank_scenes(dataset)) if rank_map is not None else set()
    plan = _plan_sequences(rows, ranked, rank_map, summary.issues)
    folders = unique_names({key: _group_base(key[1], key[2], key[3]) for key in plan.groups})
    lines = [_SEQUENCES_HEADER]
    failed: set[str] = set()
    for key in show_progress(
        sorted(plan.groups, key=str), desc="export sequences", unit="scene", enabled=progress
    ):
        exported = 0
        for rank, name, path, exposure in _name_exposures(plan.groups[key]):
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
    failed |= plan.refused | plan.unmapped
    summary.rows_exported = sum(1 for row in rows if str(row["pair_id"]) not in failed)
    writer.write_text("sequences.csv", "\n".join(lines) + "\n")
    if ranked:
        summary.notes.append(
            f"rank EVs mapped with --rank-map {rank_map} for {len(ranked)} scene(s) whose "
            f"exposures have no measured EV (ev_basis: rank): {_rank_mapping(str(rank_map))}, "
            "rank 0 = the target; the tokens in their file names name exposure order, not "
            "measured EV steps (the ev column of sequences.csv holds the rank); other ranks "
            "skipped"
        )
    summary.notes.append(
        "one folder per scene (per clip frame for video) under its split; files "
        "<rank>_<EV token>[_target].<ext> sorted by EV, copied unchanged; sequences.csv maps "
        "them to rows"
    )


def _plan_sequences(
    rows: list[dict[str, Any]],
    ranked: set[str],
    rank_map: str | None,
    issues: list[ExportIssue],
) -> _SequencePlan:
    """Collect each (split, scene, clip, frame)'s exposures: file -> :class:`_Exposure`
    (a file used by several rows, e.g. a shared target, once, with all its roles).

    A split that is not a safe folder name refuses the row (``../../evil`` must not leave
    ``out``); in ``ranked`` scenes an input or target whose rank difference the rank map
    does not name is skipped. Issues are appended to ``issues`` in row order.
    """
    plan = _SequencePlan(defaultdict(dict))
    for row in rows:
        split = row["split"] or "unsplit"
        try:
            # The split becomes the top folder: '../../evil' must not leave --out.
            check_name(split, "split", where=f"row {row['pair_id']}")
        except UnsafeNameError as exc:
            issues.append(ExportIssue("error", "unsafe-name", str(exc), row["pair_id"]))
            plan.refused.add(str(row["pair_id"]))
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
                    issues.append(
                        ExportIssue(
                            "skipped",
                            "rank-not-mapped",
                            f"{role} is rank {relative if relative is not None else 'NA'} "
                            f"from the target; --rank-map {rank_map} maps only ranks -2..+2",
                            row["pair_id"],
                            path,
                        )
                    )
                    plan.unmapped.add(str(row["pair_id"]))
                    continue
            entry = plan.groups[key].setdefault(
                path,
                _Exposure(None if ev is None else float(ev), row[f"{role}_sha256"], token=token),
            )
            entry.roles.add(role)
            entry.pair_ids.append(str(row["pair_id"]))
    return plan


def _name_exposures(
    exposures: dict[str, _Exposure],
) -> list[tuple[int, str, str, _Exposure]]:
    """``(rank, file name, source path, exposure)`` of one folder's files, darkest first.

    Order: by EV (unknown EVs last), at equal EV the input before the target, then by path.
    Names are ``<rank>_<token>[_target]<suffix>``; the target keeps its ``_target`` mark (it
    may be another camera's frame at an EV an input also has).
    """
    ordered = sorted(
        exposures.items(),
        key=lambda item: (
            item[1].ev is None,
            item[1].ev or 0.0,
            "target" in item[1].roles,
            item[0],
        ),
    )
    width = max(2, len(str(len(ordered))))
    named = []
    for rank, (path, exposure) in enumerate(ordered, start=1):
        token = exposure.token or (ev_token(exposure.ev) if exposure.ev is not None else "NA")
        mark = "_target" if "target" in exposure.roles else ""
        named.append(
            (rank, f"{rank:0{width}d}_{token}{mark}{Path(path).suffix.lower()}", path, exposure)
        )
    return named


# --------------------------------------------------------------------------- paired

#: A paired item: (split folder, row index).
PairedKey = tuple[str, int]
_PAIRED_HEADER = "split,file,pair_id,scene_id,input_path,target_path"


def export_paired(dataset: Dataset, writer: ExportWriter, progress: bool) -> None:
    """Write the ``paired`` layout: per split, same-name input and target files.

    Steps: plan the items and their names (:func:`_plan_paired`); per row read and encode
    the input and the target before writing either (a pair is written whole or not at all),
    then write ``<split>/meta_info.txt`` and ``paired.csv``. The peer check of the finished
    folder is :func:`check_paired_export`.

    Parameters
    ----------
    dataset
        The loaded dataset; each manifest row is one item.
    writer
        Reads verified sources and writes into ``writer.summary.out``.
    progress
        Show a progress bar (one step per pair).

    Notes
    -----
    Files: ``<split>/lq/<name>.png`` (the input) and ``<split>/gt/<name>.png`` (its target,
    written once per input name, so a target shared by several inputs is repeated), 8-bit
    3-channel PNG; ``<split>/meta_info.txt`` (one ``<name>.png (<h>,<w>,3)`` line per pair,
    BasicSR's ``meta_info_file``) and ``paired.csv`` (split, file, pair id, scene, sources).
    ``<name>`` is scene, clip, frame and EV token (:func:`_plan_paired`), unique within its
    split. BasicSR's ``PairedImageDataset`` (``filename_tmpl: '{}'``) and
    LOL-style loaders pair the two folders by file name.
    """
    rows = _records(dataset)
    summary = writer.summary
    names = _plan_paired(rows, set(rank_scenes(dataset)), summary.issues)
    meta: dict[str, list[str]] = defaultdict(list)
    lines = [_PAIRED_HEADER]
    scenes: set[tuple[str, str]] = set()
    for key in show_progress(sorted(names), desc="export paired", unit="pair", enabled=progress):
        split, index = key
        row = rows[index]
        file = f"{names[key]}.png"
        try:
            encoded = [
                writer.encode(
                    writer.read(row[f"{role}_path"], row[f"{role}_sha256"], row["pair_id"]),
                    row[f"{role}_path"],
                    row["pair_id"],
                    "png",
                )
                for role in ("input", "target")
            ]
        except _SkipItem as skip:
            summary.issues.append(skip.issue)
            continue
        for folder, data in zip(("lq", "gt"), encoded, strict=True):
            writer.write(f"{split}/{folder}/{file}", data)
        width, height = png_size(encoded[1])
        meta[split].append(f"{file} ({height},{width},3)")
        lines.append(
            f"{split},{file},{_csv(str(row['pair_id']))},{_csv(str(row['scene_id']))},"
            f"{_csv(str(row['input_path']))},{_csv(str(row['target_path']))}"
        )
        summary.rows_exported += 1
        scenes.add((split, str(row["scene_id"])))
    for split in sorted(meta):
        writer.write_text(f"{split}/{PAIRED_META_INFO}", "\n".join(meta[split]) + "\n")
    writer.write_text("paired.csv", "\n".join(lines) + "\n")
    summary.groups_exported = len({scene for _, scene in scenes})
    summary.notes.append(
        "per split, <split>/lq/<name>.png (input) and <split>/gt/<name>.png (target) with the "
        f"same name, 8-bit PNG; a shared target is written once per input; <split>/"
        f"{PAIRED_META_INFO} lists the names (BasicSR meta_info_file, filename_tmpl '{{}}'); "
        "paired.csv maps names to rows"
    )


def _plan_paired(
    rows: list[dict[str, Any]], ranked: set[str], issues: list[ExportIssue]
) -> dict[PairedKey, str]:
    """``(split, row index) -> name`` of every exportable row, unique within each split.

    A name is ``<scene>[-<clip>-f<frame>]-<EV token>`` (``beach-01-N1p5``: the input's EV
    relative to the target, ``.`` as ``p``); a row with no measured relative EV (null, or a
    scene in ``ranked`` whose EVs are exposure ranks) is named by its pair id
    (:func:`clean_name`). A split that is not a safe folder name refuses the row
    (``../../evil`` must not leave ``out``); issues are appended to ``issues`` in row order.
    """
    bases: dict[str, dict[PairedKey, str]] = defaultdict(dict)
    for index, row in enumerate(rows):
        split = row["split"] or "unsplit"
        try:
            # The split becomes the top folder: '../../evil' must not leave --out.
            check_name(split, "split", where=f"row {row['pair_id']}")
        except UnsafeNameError as exc:
            issues.append(ExportIssue("error", "unsafe-name", str(exc), row["pair_id"]))
            continue
        relative = None if str(row["scene_id"]) in ranked else _relative_ev(row)
        bases[split][(split, index)] = (
            clean_name(str(row["pair_id"]))
            if relative is None
            else _group_base(str(row["scene_id"]), row["clip_id"], _frame_of(row))
            + "-"
            + clean_name(ev_token(relative).replace(".", "p"))
        )
    names: dict[PairedKey, str] = {}
    for split_bases in bases.values():
        names.update(unique_names(split_bases))
    return names


def png_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` in pixels from a PNG's IHDR chunk (bytes 16..24, big-endian)."""
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def check_paired_export(out: Path, summary: ExportSummary) -> None:
    """Checking step of ``paired``: add what BasicSR's and LOL-style loaders will see in
    ``out`` (stray files of others included; :func:`check_paired_peers`) as
    ``peer-convention`` errors."""
    summary.issues += [
        ExportIssue("error", "peer-convention", problem) for problem in check_paired_peers(out)
    ]
