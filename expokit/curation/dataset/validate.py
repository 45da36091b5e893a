"""Validation of a format-v1 dataset root: every problem, each naming its row and file.

:func:`validate_dataset` re-checks what :func:`~expokit.curation.dataset.format.load_dataset` checks
(info.json, version, columns, dtypes, unique ``pair_id``, safe paths) but does not stop at the
first problem: it reads the manifest leniently and reports every bad cell. It then checks the
files (existence, SHA-256, decodability), the pairing (input, target and mask sizes agree with
each other and with ``width``/``height``; valid rectangle inside the image), split
disjointness (no scene in two splits) and video clip consistency (one frame per
``frame_index``, as many distinct inputs as targets, which DIME-style LQ/GT folders need;
a ``clip_id`` without frame indices groups stills, e.g. a capture session, and is fine).
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from expokit.core.atomic import TEMP_PREFIX
from expokit.core.errors import InputFileError
from expokit.core.hashing import sha256_bytes
from expokit.core.images import decode_image
from expokit.core.paths import PathEscapeError, is_safe_name, resolve_inside
from expokit.core.progress import show_progress
from expokit.core.roots import is_expokit_root, root_kind
from expokit.curation.dataset.format import (
    IMAGES_DIR,
    INFO_FILE,
    MANIFEST_COLUMNS,
    MANIFEST_FILE,
    NAME_COLUMNS,
    PATH_COLUMNS,
    DatasetError,
    DatasetInfo,
    check_relative_path,
    load_dataset,
    read_info,
)

if TYPE_CHECKING:
    import pandas as pd

Severity = Literal["error", "warning"]

#: Columns that must hold a value in every row.
REQUIRED_VALUES = ("scene_id", "input_path", "target_path", "input_sha256", "target_sha256")

_MAX_LISTED = 10


@dataclass(frozen=True)
class Problem:
    """One problem: what is wrong, in which row (``pair_id`` or ``row N``) and file."""

    code: str
    message: str
    pair_id: str | None = None
    file: str | None = None
    severity: Severity = "error"

    def __str__(self) -> str:
        where = ", ".join(
            p for p in (f"row {self.pair_id}" if self.pair_id else "", self.file or "") if p
        )
        return (
            f"{self.severity.upper():7s} {self.code}: {where + ': ' if where else ''}{self.message}"
        )


@dataclass
class ValidationReport:
    """Everything :func:`validate_dataset` found."""

    root: Path
    rows: int = 0
    files_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def summary(self) -> str:
        return (
            f"{self.root}: {self.rows} rows, {self.files_checked} files checked, "
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "rows": self.rows,
            "files_checked": self.files_checked,
            "ok": self.ok,
            "problems": [vars(p) for p in self.problems],
        }


# --------------------------------------------------------------------------- info + schema


def _check_info(root: Path) -> tuple[DatasetInfo | None, list[Problem]]:
    """info.json problems; ``None`` info when the manifest cannot be interpreted at all."""
    try:
        info = read_info(root)
    except DatasetError as exc:
        return None, [Problem("info", str(exc), file=INFO_FILE)]
    problems: list[Problem] = []
    if info.unknown_keys:
        problems.append(
            Problem(
                "info-unknown-key",
                f"unknown keys ignored: {', '.join(info.unknown_keys)}",
                file=INFO_FILE,
                severity="warning",
            )
        )
    declared = info.declared_dtypes
    for name, (dtype, _, _) in MANIFEST_COLUMNS.items():
        if name in declared and declared[name] != dtype:
            problems.append(
                Problem(
                    "schema-dtype",
                    f"column {name!r} declared {declared[name]!r}, format v1 says {dtype!r}",
                    file=INFO_FILE,
                )
            )
    return info, problems


def _row_names(frame: pd.DataFrame) -> list[str]:
    """How to name each row: its pair_id, or ``#N`` (0-based position) when it has none."""
    names = []
    for position, value in enumerate(frame["pair_id"].tolist() if "pair_id" in frame else []):
        ok = isinstance(value, str) and value.strip() != ""
        names.append(value if ok else f"#{position}")
    return names or [f"#{i}" for i in range(len(frame))]


def _bad_cells(series: pd.Series[Any], dtype: str) -> list[int]:
    """Positions whose value cannot be converted to ``dtype`` (pandas' own rules)."""
    import pandas as pd

    target = pd.api.types.pandas_dtype(dtype)
    try:
        series.astype(target)
        return []
    except (TypeError, ValueError):
        pass
    bad = []
    for position, value in enumerate(series.tolist()):
        try:
            pd.Series([value], dtype=object).astype(target)
        except (TypeError, ValueError):
            bad.append(position)
    return bad or list(range(len(series)))


def _check_schema(frame: pd.DataFrame, names: list[str]) -> tuple[pd.DataFrame, list[Problem]]:
    """Cell-level schema problems and a typed copy with bad cells set to null."""
    import pandas as pd

    problems: list[Problem] = []
    typed = frame.copy()
    for name, (dtype, _, _) in MANIFEST_COLUMNS.items():
        if name not in frame.columns:
            problems.append(
                Problem("missing-column", f"column {name!r} is missing", file=MANIFEST_FILE)
            )
            typed[name] = pd.Series([pd.NA] * len(frame), dtype=dtype)
            continue
        bad = _bad_cells(frame[name], dtype)
        for position in bad:
            value = frame[name].iloc[position]
            problems.append(
                Problem(
                    "wrong-dtype",
                    f"column {name!r} holds {value!r} "
                    f"({type(value).__name__}); format v1 says {dtype}",
                    names[position],
                    MANIFEST_FILE,
                )
            )
        column = frame[name].astype(object)
        if bad:
            column.iloc[bad] = None
        typed[name] = column.astype(pd.api.types.pandas_dtype(dtype))
    extra = sorted(set(frame.columns) - set(MANIFEST_COLUMNS))
    if extra:
        problems.append(
            Problem(
                "extra-column",
                f"unknown columns kept: {', '.join(extra)}",
                file=MANIFEST_FILE,
                severity="warning",
            )
        )
    return typed[list(MANIFEST_COLUMNS)], problems


def _check_rows(frame: pd.DataFrame, names: list[str]) -> list[Problem]:
    """pair_id presence and uniqueness, required values, safe relative paths."""
    import pandas as pd

    problems: list[Problem] = []
    ids = frame["pair_id"].tolist()
    positions: dict[str, list[int]] = defaultdict(list)
    for position, value in enumerate(ids):
        if pd.isna(value) or str(value).strip() == "":
            problems.append(
                Problem("no-pair-id", "pair_id is empty", names[position], MANIFEST_FILE)
            )
        else:
            positions[str(value)].append(position)
    for pair_id, where in positions.items():
        if len(where) > 1:
            rows = ", ".join(f"#{p}" for p in where)
            problems.append(
                Problem(
                    "duplicate-pair-id",
                    f"pair_id appears {len(where)} times (rows {rows})",
                    pair_id,
                    MANIFEST_FILE,
                )
            )
    for column in REQUIRED_VALUES:
        for position in np.flatnonzero(frame[column].isna().to_numpy()).tolist():
            problems.append(
                Problem(
                    "missing-value", f"column {column!r} is empty", names[position], MANIFEST_FILE
                )
            )
    for position in np.flatnonzero(frame["split"].isna().to_numpy()).tolist():
        problems.append(
            Problem("no-split", "row has no split", names[position], MANIFEST_FILE, "warning")
        )
    for column in PATH_COLUMNS:
        for position, value in enumerate(frame[column].tolist()):
            if pd.isna(value):
                continue  # required ones are reported above; masks are optional
            try:
                check_relative_path(value)
            except DatasetError as exc:
                problems.append(
                    Problem("bad-path", f"{column}: {exc}", names[position], str(value))
                )
    return problems


def homography_problem(value: object) -> str | None:
    """Why a manifest ``homography`` cell is not a JSON 3x3 matrix of finite numbers, or None.

    Python's ``json`` reads ``NaN`` and ``Infinity``, so a matrix holding them parses; it is
    still refused here (a warp with it yields an empty or undefined image).
    """
    try:
        matrix = np.asarray(json.loads(str(value)), dtype=np.float64)
    except (ValueError, TypeError):
        return f"homography {str(value)[:60]!r} is not a JSON array of numbers"
    if matrix.shape != (3, 3):
        return f"homography has shape {matrix.shape}, expected 3x3"
    if not np.isfinite(matrix).all():
        return "homography holds NaN or infinite values"
    return None


def _check_homographies(frame: pd.DataFrame, names: list[str]) -> list[Problem]:
    import pandas as pd

    problems = []
    for position, value in enumerate(frame["homography"].tolist()):
        if value is None or pd.isna(value):
            continue  # no homography used (sources without one)
        why = homography_problem(value)
        if why is not None:
            problems.append(Problem("bad-homography", why, names[position], MANIFEST_FILE))
    return problems


# --------------------------------------------------------------------------- cross-row


def check_split_disjoint(frame: pd.DataFrame) -> list[Problem]:
    """One error per scene found in more than one split, naming its rows per split."""
    problems = []
    known = frame.dropna(subset=["scene_id", "split"])
    for scene, part in known.groupby("scene_id", sort=True):
        splits = sorted(part["split"].astype(str).unique())
        if len(splits) < 2:
            continue
        listing = []
        for split in splits:
            ids = part.loc[part["split"] == split, "pair_id"].astype(str).tolist()
            more = f" and {len(ids) - _MAX_LISTED} more" if len(ids) > _MAX_LISTED else ""
            listing.append(f"{split}: {', '.join(ids[:_MAX_LISTED])}{more}")
        problems.append(
            Problem(
                "split-overlap",
                f"scene {scene!r} is in {len(splits)} splits "
                f"({'; '.join(listing)}); splits must be made by scene",
                str(part["pair_id"].iloc[0]),
                MANIFEST_FILE,
            )
        )
    return problems


def check_clips(frame: pd.DataFrame) -> list[Problem]:
    """Per video clip: frame indices present and unique, as many distinct inputs as targets.

    A clip whose LQ (input) and GT (target) frame counts differ cannot be exported to
    DIME-style folders, whose loader pairs frames by sorted position. A ``clip_id`` whose
    rows have no ``frame_index`` at all is a group of stills (a capture session's still
    pairs), not a video clip, and is not checked; a video clip is one where some row has a
    ``frame_index``, and then every row needs one.
    """
    problems = []
    clips = frame.dropna(subset=["clip_id", "scene_id"])
    for (scene, clip), part in clips.groupby(["scene_id", "clip_id"], sort=True):
        if part["frame_index"].isna().all():
            continue  # stills grouped by session: frame indices do not apply
        ids = part["pair_id"].astype(str).tolist()
        missing = part.loc[part["frame_index"].isna(), "pair_id"].astype(str).tolist()
        for pair_id in missing:
            problems.append(
                Problem(
                    "clip-frame-index",
                    f"clip {scene}/{clip}: row has no frame_index",
                    pair_id,
                    MANIFEST_FILE,
                )
            )
        indexed = part.dropna(subset=["frame_index"])
        counts = indexed["frame_index"].value_counts()
        for value in sorted(counts[counts > 1].index):
            rows = indexed.loc[indexed["frame_index"] == value, "pair_id"].astype(str).tolist()
            problems.append(
                Problem(
                    "frame-count-mismatch",
                    f"clip {scene}/{clip}: frame_index {value} is "
                    f"used by {len(rows)} rows ({', '.join(rows)}), so LQ and GT frame "
                    "counts differ",
                    rows[0],
                    MANIFEST_FILE,
                )
            )
        inputs = part["input_path"].dropna().nunique()
        targets = part["target_path"].dropna().nunique()
        if inputs != targets:
            problems.append(
                Problem(
                    "frame-count-mismatch",
                    f"clip {scene}/{clip}: {inputs} distinct input "
                    f"frames (LQ) but {targets} distinct target frames (GT) over "
                    f"{len(part)} rows",
                    ids[0],
                    MANIFEST_FILE,
                )
            )
    return problems


# --------------------------------------------------------------------------- files


@dataclass
class _FileInfo:
    """What one file turned out to be (cached: a target is shared by many rows)."""

    exists: bool
    sha256: str | None = None
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    error: str | None = None
    #: Why the file was not opened at all (a symlink that leaves the dataset root).
    escape: str | None = None


def _inspect(path: Path, decode: bool) -> _FileInfo:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _FileInfo(False)
    except OSError as exc:
        return _FileInfo(True, error=f"cannot read: {exc.strerror or exc}")
    info = _FileInfo(True, sha256=sha256_bytes(data))
    if decode:
        try:
            image = decode_image(data, path)
        except InputFileError as exc:
            info.error = exc.problem
        else:
            info.shape, info.dtype = tuple(image.shape), str(image.dtype)
    return info


def _check_row_files(
    row: dict[str, Any], name: str, files: dict[str, _FileInfo], check_hashes: bool
) -> list[Problem]:
    problems: list[Problem] = []
    shapes: dict[str, tuple[int, ...]] = {}
    for column, sha_column in (
        ("input_path", "input_sha256"),
        ("target_path", "target_sha256"),
        ("mask_path", None),
    ):
        rel = row[column]
        if rel is None or rel not in files:
            continue
        info = files[rel]
        if info.escape:
            problems.append(Problem("symlink-outside-root", f"{column}: {info.escape}", name, rel))
            continue
        if not info.exists:
            problems.append(Problem("missing-file", f"{column} does not exist", name, rel))
            continue
        if info.error:
            problems.append(Problem("corrupt-image", f"{column}: {info.error}", name, rel))
            continue
        expected = row[sha_column] if sha_column else None
        if check_hashes and expected is not None and info.sha256 != expected:
            problems.append(
                Problem(
                    "sha256-mismatch",
                    f"{column} SHA-256 is {info.sha256}, manifest says {expected}",
                    name,
                    rel,
                )
            )
        if info.shape is not None:
            shapes[column] = info.shape
    source, target = shapes.get("input_path"), shapes.get("target_path")
    if source is not None and target is not None and source != target:
        problems.append(
            Problem(
                "size-mismatch",
                f"input is {_describe(source)} but target is {_describe(target)}",
                name,
                row["input_path"],
            )
        )
    reference = source or target
    if reference is not None:
        width, height = row["width"], row["height"]
        if (width is not None and int(width) != reference[1]) or (
            height is not None and int(height) != reference[0]
        ):
            problems.append(
                Problem(
                    "size-mismatch",
                    f"manifest says {width}x{height} but the file is {reference[1]}x{reference[0]}",
                    name,
                    row["input_path"] if source else row["target_path"],
                )
            )
    mask = shapes.get("mask_path")
    if mask is not None and reference is not None:
        if mask[:2] != reference[:2]:
            problems.append(
                Problem(
                    "mask-size-mismatch",
                    f"mask is {mask[1]}x{mask[0]} but the pair is {reference[1]}x{reference[0]}",
                    name,
                    row["mask_path"],
                )
            )
        elif len(mask) == 3 and mask[2] != 1:
            problems.append(
                Problem(
                    "mask-format",
                    f"mask has {mask[2]} channels; format v1 masks are "
                    "single-channel 8-bit (255 = valid)",
                    name,
                    row["mask_path"],
                    "warning",
                )
            )
    return problems


def _describe(shape: tuple[int, ...]) -> str:
    channels = shape[2] if len(shape) == 3 else 1
    return f"{shape[1]}x{shape[0]}x{channels}"


def _check_valid_rect(row: dict[str, Any], name: str) -> list[Problem]:
    values = [row[c] for c in ("valid_x", "valid_y", "valid_w", "valid_h")]
    if any(v is None for v in values) or row["width"] is None or row["height"] is None:
        return []
    x, y, w, h = (int(v) for v in values)
    width, height = int(row["width"]), int(row["height"])
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > width or y + h > height:
        return [
            Problem(
                "valid-region",
                f"valid rectangle x={x} y={y} w={w} h={h} is not inside the {width}x{height} image",
                name,
                MANIFEST_FILE,
            )
        ]
    return []


def _check_files(
    root: Path,
    rows: list[dict[str, Any]],
    names: list[str],
    check_hashes: bool,
    decode: bool,
    workers: int,
    progress: bool,
) -> tuple[list[Problem], int]:
    unique: list[str] = []
    seen: set[str] = set()
    for row in rows:
        for column in PATH_COLUMNS:
            rel = row[column]
            if rel is None or rel in seen:
                continue
            try:
                check_relative_path(rel)
            except DatasetError:
                continue  # reported as bad-path; never read outside the root
            seen.add(rel)
            unique.append(rel)

    def inspect(rel: str) -> _FileInfo:
        try:
            path = resolve_inside(root, rel, what="file")
        except PathEscapeError as exc:
            # Never read it: a link out of the dataset would be validated (and exported)
            # as if it were the dataset's own file.
            return _FileInfo(True, escape=f"{exc}; copy the file into the dataset instead")
        return _inspect(path, decode)

    files: dict[str, _FileInfo] = {}
    # Hashing and decoding release the GIL, so threads overlap I/O and both cores.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        bar = show_progress(total=len(unique), desc="validate", unit="file", enabled=progress)
        for rel, info in zip(unique, pool.map(inspect, unique), strict=True):
            files[rel] = info
            bar.update()
        bar.close()
    problems: list[Problem] = []
    for row, name in zip(rows, names, strict=True):
        problems += _check_row_files(row, name, files, check_hashes)
        problems += _check_valid_rect(row, name)
    return problems, len(files)


def _check_names(frame: pd.DataFrame, names: list[str]) -> list[Problem]:
    """scene_id, clip_id and split values that could not become a folder name safely."""
    import pandas as pd

    problems = []
    for column in NAME_COLUMNS:
        for position, value in enumerate(frame[column].tolist()):
            if not pd.isna(value) and not is_safe_name(value):
                problems.append(
                    Problem(
                        "unsafe-name",
                        f"column {column}: {value!r} is not a safe name (it becomes a folder "
                        "name): use letters, digits, '.', '_' and '-', starting with a letter "
                        "or digit",
                        names[position],
                        MANIFEST_FILE,
                    )
                )
    return problems


def check_images_folder(root: Path, rows: Iterable[dict[str, Any]]) -> list[Problem]:
    """Entries of ``root/images/`` that no manifest row uses.

    ``images/`` holds only what builds write (``images/<scene_id>/<files>``). An expokit
    folder of another command inside it (a ``train``/``eval``/``infer`` output: it has a
    root marker) is an error: its files would be read, hashed, exported or deleted as the
    dataset's. Any other entry that no row lists (a folder of no scene, a stray file) is a
    warning, named, so a person can see what does not belong there. Links are not followed.
    """
    import os

    images = root / IMAGES_DIR
    if images.is_symlink() or not images.is_dir():
        return []
    listed: set[str] = set()
    folders: set[str] = set()
    for row in rows:
        for column in PATH_COLUMNS:
            rel = row.get(column)
            if isinstance(rel, str) and rel:
                listed.add(rel)
                parts = rel.split("/")
                folders.update("/".join(parts[:n]) for n in range(1, len(parts)))
    problems: list[Problem] = []
    stray: list[str] = []
    for dirpath, dirnames, filenames in os.walk(images):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for name in sorted([*dirnames, *filenames]):
            rel = f"{rel_dir}/{name}"
            if rel in listed or rel in folders or name.startswith(TEMP_PREFIX):
                continue
            entry = Path(dirpath) / name
            if entry.is_dir() and not entry.is_symlink() and is_expokit_root(entry):
                kind = root_kind(entry) or "expokit"
                problems.append(
                    Problem(
                        "foreign-folder",
                        f"an expokit {kind} folder inside the dataset's images/ (an output "
                        "of another command?); move it out of the dataset",
                        file=rel,
                    )
                )
            else:
                stray.append(rel + ("/" if entry.is_dir() and not entry.is_symlink() else ""))
        # Only folders that rows use are walked: an unlisted folder is reported as a whole.
        dirnames[:] = [d for d in dirnames if f"{rel_dir}/{d}" in folders]
    for rel in stray[:_MAX_LISTED]:
        problems.append(
            Problem(
                "foreign-entry",
                "no manifest row uses it (not written by curate build, or left by a removed scene)",
                file=rel,
                severity="warning",
            )
        )
    if len(stray) > _MAX_LISTED:
        problems.append(
            Problem(
                "foreign-entry",
                f"and {len(stray) - _MAX_LISTED} more entries no manifest row uses",
                file="images/",
                severity="warning",
            )
        )
    return problems


# --------------------------------------------------------------------------- driver


def validate_dataset(
    root: str | Path,
    *,
    check_hashes: bool = True,
    decode_images: bool = True,
    workers: int = 2,
    progress: bool = False,
) -> ValidationReport:
    """Check a dataset root and return every problem found (it never stops at the first).

    Parameters
    ----------
    root
        Dataset root folder.
    check_hashes
        Compare each file's SHA-256 with the manifest.
    decode_images
        Decode every image (finds corrupt files and measures sizes for the pairing checks).
    workers
        Threads reading, hashing and decoding files.
    progress
        Show a progress bar over the files.

    Returns
    -------
    ValidationReport
        ``report.ok`` is False when any error was found; every problem names its row
        (``pair_id``, or ``#N`` for a row without one) and file where there is one.
    """
    import pandas as pd

    folder = Path(root)
    report = ValidationReport(folder)
    info, problems = _check_info(folder)
    report.problems += problems
    if info is None:
        return report
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        report.problems.append(
            Problem("no-manifest", "manifest.parquet is missing", file=MANIFEST_FILE)
        )
        return report
    try:
        raw = pd.read_parquet(manifest_path)
    except Exception as exc:  # pyarrow raises several types for damaged files
        report.problems.append(
            Problem("unreadable-manifest", f"unreadable parquet: {exc}", file=MANIFEST_FILE)
        )
        return report
    report.rows = len(raw)
    names = _row_names(raw)
    frame, problems = _check_schema(raw, names)
    report.problems += problems
    report.problems += _check_rows(frame, names)
    report.problems += _check_homographies(frame, names)
    report.problems += _check_names(frame, names)
    report.problems += check_split_disjoint(frame)
    report.problems += check_clips(frame)
    rows = [
        {str(k): (None if pd.isna(v) else v) for k, v in record.items()}
        for record in frame.to_dict("records")
    ]
    problems, report.files_checked = _check_files(
        folder, rows, names, check_hashes, decode_images, workers, progress
    )
    report.problems += problems
    report.problems += check_images_folder(folder, rows)
    if report.ok:
        # Safety net: whatever load_dataset refuses must not pass validation.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                load_dataset(folder)
        except DatasetError as exc:
            report.problems.append(Problem("load", str(exc), file=MANIFEST_FILE))
    return report


def format_problems(problems: Iterable[Problem], limit: int | None = None) -> list[str]:
    """One line per problem (errors first), optionally only the first ``limit``."""
    ordered = sorted(problems, key=lambda p: p.severity != "error")
    lines = [str(p) for p in ordered]
    if limit is not None and len(lines) > limit:
        lines = [*lines[:limit], f"... and {len(lines) - limit} more"]
    return lines
