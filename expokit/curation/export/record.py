"""The ``export.json`` record of an export folder: one typed record, one writer, one reader.

:class:`ExportRecord` mirrors the file key by key (its JSON Schema is
``docs/schemas/export.schema.json``). :func:`write_export_record` writes it atomically (the
one writer, called last by :func:`expokit.curation.export.driver.export_dataset`);
:func:`read_export_record` reads it back and validates every field on load: a wrong type, a
NaN, an unknown key or a document that is not a JSON object raises
:class:`ExportRecordError` naming the file and the field. Both the export driver (which
removes earlier exports' files it lists) and :func:`~.validate.validate_export`
read it here. The layout on disk::

    {"layout": "msec" | "dime" | "sequences", "created": ISO 8601, "expokit_version": str,
     "dataset": {"root", "name", "format_version", "manifest_sha256"},
     "options": {"jpeg_quality", "dime_val", "ev_tolerance",
                 "rank_map": null | {"name", "ranks": {"+1": token}, "scenes", "rule"},
                 "allow_partial", "selection": {"exclude_flags", "passed_only"}},
     "counts": {"rows_total", "rows_exported", "groups_exported", "files",
                "<kind>:<reason>": int, ...},
     "notes": [str], "issues": [ExportIssue], "kept": [str], "removed": [str],
     "files": {path relative to the folder: sha256}}

Only ``files`` is required: an earlier export's record is trusted for nothing but the list of
files it wrote, whose paths and digests the driver checks one by one before removing any.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expokit.core.atomic import atomic_write_json
from expokit.core.errors import InputFileError
from expokit.core.schema import from_json, to_json
from expokit.curation.export.layouts import ExportIssue

#: Name of the record in an export folder.
EXPORT_RECORD = "export.json"


class ExportRecordError(InputFileError):
    """An ``export.json`` cannot be read (missing, not JSON, a field missing or malformed);
    the message names the file and the field."""


def _error(path: Path, problem: str) -> ExportRecordError:
    return ExportRecordError(path, f"not a valid export record ({problem})")


@dataclass(frozen=True, kw_only=True)
class ExportedDataset:
    """``dataset`` of ``export.json``: the dataset the export was made from.

    Attributes
    ----------
    root
        Resolved dataset root.
    name
        ``name`` of its ``info.json``.
    format_version
        ``format_version`` of its ``info.json``.
    manifest_sha256
        SHA-256 of the manifest that was read.
    """

    root: str
    name: str | None = None
    format_version: int | None = None
    manifest_sha256: str


@dataclass(frozen=True, kw_only=True)
class RankMapRecord:
    """``options.rank_map`` of ``export.json``: how exposure ranks became EV tokens.

    Attributes
    ----------
    name
        The ``--rank-map`` choice (``nearest5``).
    ranks
        Rank difference to the target (``"+1"``) -> MSEC token.
    scenes
        Scenes whose EVs are ranks.
    rule
        The mapping, in words.
    """

    name: str
    ranks: dict[str, str]
    scenes: tuple[str, ...] = ()
    rule: str = ""


@dataclass(frozen=True)
class SelectionRecord:
    """``options.selection`` of ``export.json``: the QA-flag selection of the pairs.

    Attributes
    ----------
    exclude_flags
        Pairs carrying any of these flags were left out.
    passed_only
        Only pairs with no flag at all were exported.
    """

    exclude_flags: tuple[str, ...] = ()
    passed_only: bool = False


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """``options`` of ``export.json``: the options the export ran with.

    Attributes
    ----------
    jpeg_quality
        Quality of the JPEGs encoded for ``msec``.
    dime_val
        ``skip`` or ``test``: what became of the val split in ``dime``.
    ev_tolerance
        Largest distance in EV between an exposure and an MSEC token.
    rank_map
        The rank mapping applied, or ``null``.
    allow_partial
        ``msec`` scenes lacking an input were skipped items, not errors.
    selection
        The QA-flag selection of the pairs.
    """

    jpeg_quality: int
    dime_val: str
    ev_tolerance: float
    rank_map: RankMapRecord | None = None
    allow_partial: bool = False
    selection: SelectionRecord = dataclasses.field(default_factory=SelectionRecord)


@dataclass(frozen=True, kw_only=True)
class ExportRecord:
    """A whole ``export.json``, key by key as on disk.

    Attributes
    ----------
    layout
        ``msec``, ``dime`` or ``sequences``.
    created
        When the export finished (UTC, ISO 8601).
    expokit_version
        Version that wrote the export.
    dataset
        The dataset exported.
    options
        The options of the export.
    counts
        ``rows_total``, ``rows_exported``, ``groups_exported``, ``files`` and one
        ``<kind>:<reason>`` count per kind of issue.
    notes
        Things worth knowing about the export.
    issues
        Rows and files left out, and why.
    kept
        Files in the folder that were not removed, and why.
    removed
        Files of earlier exports that this one removed.
    files
        Every file written: path relative to the folder -> SHA-256.
    """

    layout: str | None = None
    created: str | None = None
    expokit_version: str | None = None
    dataset: ExportedDataset | None = None
    options: ExportOptions | None = None
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()
    issues: tuple[ExportIssue, ...] = ()
    kept: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    files: dict[str, str]

    @property
    def rows_exported(self) -> int:
        """``counts.rows_exported`` (0 when absent)."""
        return int(self.counts.get("rows_exported") or 0)

    def to_file(self) -> dict[str, Any]:
        """The JSON document."""
        document: dict[str, Any] = to_json(self)
        return document

    @classmethod
    def from_file(cls, data: object, source: str | Path) -> ExportRecord:
        """Validate a decoded ``export.json``, every field typed.

        Raises
        ------
        ExportRecordError
            Naming ``source`` and the first field missing, unknown or of the wrong type.
        """
        return from_json(cls, data, Path(source), error=_error, kind=EXPORT_RECORD)


def read_export_record(path: str | Path) -> ExportRecord:
    """Read and validate an ``export.json`` (the one reader).

    Raises
    ------
    ExportRecordError
        Missing, unreadable, not JSON, or a field missing or malformed; names file and field.
    """
    source = Path(path)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _error(source, "no such file") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise _error(source, f"not JSON: {exc}") from None
    return ExportRecord.from_file(data, source)


def write_export_record(record: ExportRecord, path: str | Path) -> Path:
    """Write ``record`` as ``export.json`` atomically (the one writer); return the path."""
    target = Path(path)
    atomic_write_json(target, record.to_file())
    return target


__all__: Sequence[str] = (
    "EXPORT_RECORD",
    "ExportOptions",
    "ExportRecord",
    "ExportRecordError",
    "ExportedDataset",
    "RankMapRecord",
    "SelectionRecord",
    "read_export_record",
    "write_export_record",
)
