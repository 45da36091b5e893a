"""Validation of an export folder (``curate validate`` on an export).

Its ``export.json``, the files' hashes, and the peers' naming and split rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from expokit.core.hashing import sha256_file
from expokit.core.paths import PathEscapeError, resolve_inside
from expokit.curation.dataset.format import (
    INFO_FILE,
)
from expokit.curation.dataset.validate import Problem, ValidationReport
from expokit.curation.export.peers import (
    DIME_READABLE_SUFFIXES,
    check_dime_peers,
    check_msec_peers,
    check_paired_peers,
)
from expokit.curation.export.record import EXPORT_RECORD, ExportRecordError, read_export_record

if TYPE_CHECKING:
    pass

Severity = Literal["error", "warning"]

#: Columns that must hold a value in every row.
REQUIRED_VALUES = ("scene_id", "input_path", "target_path", "input_sha256", "target_sha256")

_MAX_LISTED = 10


def is_export_folder(folder: str | Path) -> bool:
    """True when ``folder`` is an expokit export (``export.json``, no dataset ``info.json``)
    or a bare DIME tree (:func:`is_dime_tree`, e.g. the published DIME download)."""
    root = Path(folder)
    if (root / INFO_FILE).exists():
        return False
    return (root / EXPORT_RECORD).is_file() or is_dime_tree(root)


def is_dime_tree(folder: str | Path) -> bool:
    """True when ``folder`` holds ``np/train/LQ`` or ``np/test/LQ`` (a DIME/VECNet layout)."""
    root = Path(folder)
    return any((root / "np" / split / "LQ").is_dir() for split in ("train", "test"))


def validate_export(folder: str | Path, *, check_hashes: bool = True) -> ValidationReport:
    """Check an export folder: every file ``export.json`` lists exists (with its SHA-256),
    and an ``msec`` export follows the peers' loader rules
    (:func:`~expokit.curation.export.peers.check_msec_peers`), a ``dime`` export VECNet's
    (:func:`~expokit.curation.export.peers.check_dime_peers`), a ``paired`` export
    BasicSR's (:func:`~expokit.curation.export.peers.check_paired_peers`). A DIME tree without
    ``export.json`` (not made by expokit) gets VECNet's rules only, with every frame type
    VECNet reads (``.png``, ``.jpg``, ``.npy``)."""
    root = Path(folder)
    report = ValidationReport(root)
    if not (root / EXPORT_RECORD).exists() and is_dime_tree(root):
        report.problems += _dime_problems(root, DIME_READABLE_SUFFIXES)
        return report
    try:
        record = read_export_record(root / EXPORT_RECORD)
    except ExportRecordError as exc:
        report.problems.append(Problem("export-record", exc.problem, file=EXPORT_RECORD))
        return report
    if record.layout is None:
        report.problems.append(
            Problem("export-record", "not a valid export record (no layout)", file=EXPORT_RECORD)
        )
        return report
    for rel, digest in sorted(record.files.items()):
        try:
            path = resolve_inside(root, rel, what="export file")
        except PathEscapeError as exc:
            report.problems.append(Problem("unsafe-path", str(exc), file=rel))
            continue
        if not path.is_file():
            report.problems.append(Problem("missing-file", "listed in export.json", file=rel))
            continue
        report.files_checked += 1
        if check_hashes and sha256_file(path) != digest:
            report.problems.append(Problem("sha256-mismatch", "differs from export.json", file=rel))
    report.rows = record.rows_exported
    if record.layout == "msec":
        report.problems += [Problem("peer-convention", p) for p in check_msec_peers(root)]
    elif record.layout == "dime":
        report.problems += _dime_problems(root, (".png",))
    elif record.layout == "paired":
        report.problems += [Problem("peer-convention", p) for p in check_paired_peers(root)]
    return report


def _dime_problems(root: Path, suffixes: tuple[str, ...]) -> list[Problem]:
    errors, warnings = check_dime_peers(root, suffixes=suffixes)
    return [Problem("peer-convention", p) for p in errors] + [
        Problem("peer-convention", w, severity="warning") for w in warnings
    ]
