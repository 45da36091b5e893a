"""Dataset format v2: ``meta/info.json`` + ``manifest.parquet`` under one root folder.

Layout::

    ROOT/
        meta/info.json       format, version, column schema, path templates, split spec,
                             QA thresholds, provenance
        manifest.parquet     one row per pair (or frame pair), columns in MANIFEST_COLUMNS
        images/<scene_id>/   aligned inputs, targets and valid-region masks
        README.md            generated dataset card

Every path in the manifest is relative to ROOT, POSIX-style, and must stay inside it.
:func:`load_dataset` validates the schema and the version; :func:`write_dataset` writes
atomically. The full description lives in ``docs/dataset_format.md``.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from expokit import __version__
from expokit.core.atomic import atomic_path, atomic_write_json
from expokit.core.errors import ExpokitError
from expokit.core.hashing import sha256_bytes
from expokit.core.lock import LOCK_FILE, RootInUseError, lock_holder
from expokit.core.paths import is_safe_name, resolve_inside
from expokit.core.schema import from_json

if TYPE_CHECKING:
    import pandas as pd

FORMAT_NAME = "expokit-dataset"
FORMAT_VERSION = 2
#: Older versions :func:`load_dataset` still reads (converted in memory, with a warning;
#: ``expokit curate upgrade`` rewrites them).
READABLE_VERSIONS = (1, 2)
INFO_FILE = "meta/info.json"
MANIFEST_FILE = "manifest.parquet"
IMAGES_DIR = "images"

#: column -> (pandas dtype, unit, meaning)
MANIFEST_COLUMNS: dict[str, tuple[str, str, str]] = {
    "pair_id": ("string", "", "unique id of the row: <scene_id>/<clip>/<frame or ev tokens>"),
    "scene_id": ("string", "", "scene the pair belongs to; splits are made by scene"),
    "clip_id": ("string", "", "video clip or capture session id (null for stills sets)"),
    "frame_index": ("Int64", "frame", "frame number within the clip (null for stills)"),
    "source": ("string", "", "capture | render | sequences | msec"),
    "input_role": ("string", "", "role of the input image: test, reference, or ev"),
    "target_role": ("string", "", "role of the target image"),
    "input_ev": ("Float64", "EV", "input exposure relative to the scene's reference exposure"),
    "target_ev": ("Float64", "EV", "target exposure relative to the scene's reference"),
    "ev_basis": (
        "string",
        "",
        "ev: input_ev/target_ev are EVs (EXIF, render, capture plan); rank: exposure ranks "
        "of a sequence without EXIF (positions, not measured EVs)",
    ),
    "input_exposure_time_s": ("Float64", "s", "exposure time of the input (metadata)"),
    "input_iso": ("Float64", "ISO", "ISO of the input (metadata)"),
    "input_f_number": ("Float64", "f-number", "aperture of the input (metadata)"),
    "target_exposure_time_s": ("Float64", "s", "exposure time of the target (metadata)"),
    "target_iso": ("Float64", "ISO", "ISO of the target (metadata)"),
    "target_f_number": ("Float64", "f-number", "aperture of the target (metadata)"),
    "input_path": ("string", "path", "aligned input image, relative to the root"),
    "target_path": ("string", "path", "target image, relative to the root"),
    "mask_path": ("string", "path", "valid-region mask (8-bit PNG, 255 = valid), or null"),
    "input_sha256": ("string", "", "SHA-256 of the input file"),
    "target_sha256": ("string", "", "SHA-256 of the target file"),
    "source_input": ("string", "path", "original input file (provenance, may be outside root)"),
    "source_target": ("string", "path", "original target file (provenance)"),
    "width": ("Int64", "px", "width of input and target"),
    "height": ("Int64", "px", "height of input and target"),
    "homography": ("string", "", "3x3 test->reference homography used, JSON, or null"),
    "ecc_correlation": ("Float64", "", "ECC correlation after refinement (null if not run)"),
    "alignment_residual_px": ("Float64", "px", "median DIS optical-flow magnitude after alignment"),
    "photometric_gain": ("Float64", "", "linear gain target/input fitted on valid pixels"),
    "valid_x": ("Int64", "px", "valid rectangle in the stored image: left (0 if cropped)"),
    "valid_y": ("Int64", "px", "valid rectangle in the stored image: top (0 if cropped)"),
    "valid_w": ("Int64", "px", "valid-region rectangle: width"),
    "valid_h": ("Int64", "px", "valid-region rectangle: height"),
    "psnr_db": (
        "Float64",
        "dB",
        "PSNR after exposure and tone normalisation, valid unclipped pixels",
    ),
    "ssim": (
        "Float64",
        "",
        "SSIM after exposure and tone normalisation, valid unclipped pixels",
    ),
    "clipped_dark_input": ("Float64", "fraction", "input pixels at or below the dark clip level"),
    "clipped_bright_input": ("Float64", "fraction", "input pixels at or above the bright clip"),
    "clipped_dark_target": ("Float64", "fraction", "target pixels at or below the dark clip"),
    "clipped_bright_target": ("Float64", "fraction", "target pixels at or above the bright clip"),
    "usable_fraction": (
        "Float64",
        "fraction",
        "valid pixels unclipped in both images (what the gain is fitted on)",
    ),
    "focus_ratio": ("Float64", "", "sharpness of the normalised input / sharpness of the target"),
    "target_luma": ("Float64", "", "mean linear Rec. 709 luminance of the target (valid pixels)"),
    "target_change": (
        "Float64",
        "",
        "video: log of the median per-pixel brightness ratio of the target to the clip's "
        "previous frame",
    ),
    "gain_deviation_ev": (
        "Float64",
        "EV",
        "log2 of the gain over the robust median gain of its group (same clip or source, "
        "same exposure offset); null when not judged",
    ),
    "gain_instability_ev": (
        "Float64",
        "EV",
        "per clip: robust spread of log2(photometric_gain) over the frames",
    ),
    "target_flicker": (
        "Float64",
        "",
        "per clip: relative amplitude of the strongest fast oscillation of the scene light "
        "(from target_change)",
    ),
    "qa_flags": (
        "string",
        "",
        "comma-separated QA flags (empty = passed); rows are never dropped",
    ),
    "split": ("string", "", "train | val | test (or a custom split name)"),
}

PATH_COLUMNS = ("input_path", "target_path", "mask_path")
#: Columns whose values become folder names (``images/<scene_id>/``, export folders):
#: each value must be a safe path component (:data:`expokit.core.paths.SAFE_NAME`).
NAME_COLUMNS = ("scene_id", "clip_id", "split")

DEFAULT_PATH_TEMPLATES = {
    "input": "images/{scene_id}/{pair_stem}_input{ext}",
    "target": "images/{scene_id}/{pair_stem}_target{ext}",
    "mask": "images/{scene_id}/{pair_stem}_mask.png",
}

#: The keys of ``meta/info.json`` this version knows, in the order a fresh file writes them
#: (:meth:`DatasetInfo.to_json`): each is a field of :class:`DatasetInfo`.
INFO_KEY_ORDER = (
    "format", "format_version", "schema", "path_templates", "provenance", "splits",
    "qa_thresholds", "name", "license", "citation", "description", "counts",
)  # fmt: skip
KNOWN_INFO_KEYS = set(INFO_KEY_ORDER)


class DatasetError(ExpokitError):
    """A dataset root, info.json or manifest is not valid; the message says where."""


# --------------------------------------------------------------------------- meta/info.json

_JSON_TYPE_NAMES = {
    dict: "an object", list: "an array", str: "a string", bool: "a boolean",
    int: "an integer", float: "a number", type(None): "null",
}  # fmt: skip


def _json_kind(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class InfoHeader:
    """What every version of ``meta/info.json`` shares: the format name and its version."""

    path: Path
    format: str
    format_version: int


@dataclass(frozen=True)
class ColumnSpec:
    """One manifest column in ``schema.columns`` of ``meta/info.json``.

    Attributes
    ----------
    dtype
        pandas dtype (``string``, ``Int64``, ``Float64``).
    unit
        Unit of the values (empty when none).
    meaning
        What the column holds.
    """

    __json_extra__ = "allow"

    dtype: str | None = None
    unit: str | None = None
    meaning: str | None = None


@dataclass(frozen=True)
class InfoSchema:
    """The ``schema`` block of ``meta/info.json``.

    Attributes
    ----------
    columns
        Every manifest column with its dtype, unit and meaning.
    """

    __json_extra__ = "allow"

    columns: dict[str, ColumnSpec] | None = None


@dataclass(frozen=True)
class InfoFile:
    """``meta/info.json`` of a format-v2 dataset (v1 reads the same), exactly as on disk.

    Written by :func:`write_dataset` (from :class:`DatasetInfo`), read by :func:`read_info`
    (which validates through this model and builds :class:`DatasetInfo`). Keys not listed
    are kept (a newer or hand-edited file may carry them).

    Attributes
    ----------
    format
        ``"expokit-dataset"``.
    format_version
        :data:`FORMAT_VERSION`.
    schema
        The manifest columns (:func:`schema`).
    path_templates
        ``{input, target, mask}`` path templates of the image files.
    splits
        How pairs were split into train/val/test (by scene).
    qa_thresholds
        QA thresholds used for the ``qa_flags`` column (``null``: not checked).
    provenance
        Versions, creation time and sources the dataset was built from.
    counts
        ``pairs``, ``scenes`` and ``by_split`` counts (written by :func:`write_dataset`).
    name, license, description
        Dataset card fields.
    citation
        How to cite (text or a CFF-like object).
    """

    __json_extra__ = "allow"

    format: str
    format_version: int
    schema: InfoSchema | None = None
    path_templates: dict[str, str] | None = None
    splits: dict[str, Any] | None = None
    qa_thresholds: dict[str, float | None] | None = None
    provenance: dict[str, Any] | None = None
    counts: dict[str, Any] | None = None
    name: str | None = None
    license: str | None = None
    description: str | None = None
    citation: str | dict[str, Any] | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """``meta/info.json`` of a dataset (format v2, or v1 still readable): the one record of
    it, read (:func:`read_info`, :meth:`from_json`) and written (:meth:`to_json`,
    :func:`write_dataset`) through this class.

    Values are kept as the JSON holds them (a threshold written ``1`` stays ``1``), so a file
    read and written again is the same bytes. :meth:`from_json` checks every known field
    against :class:`InfoFile` and raises :class:`DatasetError` naming the file and the field.
    A fresh record comes from :meth:`new`; change one with
    :func:`dataclasses.replace`.

    Attributes
    ----------
    format, format_version
        :data:`FORMAT_NAME` and the format version (:data:`FORMAT_VERSION` when written).
    schema
        The ``schema`` block (:func:`schema`): ``{"columns": {name: {dtype, unit,
        meaning}}}``; None when absent.
    path_templates
        ``{input, target, mask, ...}`` path templates of the image files, or None.
    provenance
        Versions, creation time, sources and the build that made the dataset, or None.
    splits
        How pairs were split into train/val/test (by scene), or None.
    qa_thresholds
        QA thresholds used for the ``qa_flags`` column (a ``null`` value: not checked).
    name, license, description
        Dataset card fields set by people.
    citation
        How to cite (text or a CFF-like object).
    counts
        ``pairs``, ``scenes`` and ``by_split`` (set by :func:`write_dataset`).
    extra
        Keys this version does not know, with their values: kept so that rewriting a file a
        newer expokit or a person wrote (``curate upgrade``) loses nothing.
    keys_read
        The keys the file held (empty for a fresh record): a known key held as ``null``
        is written as ``null`` again, not dropped. Not part of equality.
    path
        The file it was read from (None for a fresh record); not part of equality.
    """

    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    schema: dict[str, Any] | None = None
    path_templates: dict[str, str] | None = None
    provenance: dict[str, Any] | None = None
    splits: dict[str, Any] | None = None
    qa_thresholds: dict[str, float | None] | None = None
    name: str | None = None
    license: str | None = None
    citation: str | dict[str, Any] | None = None
    description: str | None = None
    counts: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    keys_read: tuple[str, ...] = field(default=(), repr=False, compare=False)
    path: Path | None = field(default=None, compare=False)

    @classmethod
    def new(cls, **fields: Any) -> DatasetInfo:
        """A fresh record: format, version, schema, default path templates and provenance
        (versions of expokit, LibRaw, rawpy and OpenCV, creation time, no sources yet);
        ``fields`` (e.g. ``splits=...``, ``name=...``) set or replace fields."""
        import cv2
        import rawpy

        fresh = cls(
            schema=schema(),
            path_templates=dict(DEFAULT_PATH_TEMPLATES),
            provenance={
                "expokit_version": __version__,
                "libraw_version": ".".join(map(str, rawpy.libraw_version)),
                "rawpy_version": rawpy.__version__,
                "opencv_version": cv2.__version__,
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "sources": [],
            },
        )
        return replace(fresh, **fields)

    @property
    def declared_dtypes(self) -> dict[str, str | None]:
        """Column name -> declared dtype (``schema.columns.<name>.dtype``; None if absent)."""
        columns = (self.schema or {}).get("columns") or {}
        return {str(name): (spec or {}).get("dtype") for name, spec in columns.items()}

    @property
    def unknown_keys(self) -> tuple[str, ...]:
        """The keys of :attr:`extra`, sorted."""
        return tuple(sorted(self.extra))

    @property
    def sources(self) -> list[dict[str, Any]]:
        """``provenance.sources``: what the dataset was built from (empty when unrecorded)."""
        return list((self.provenance or {}).get("sources") or [])

    @classmethod
    def from_json(cls, data: object, info_path: Path) -> DatasetInfo:
        """Check ``data`` (parsed JSON) as an info.json; see :func:`read_info`."""
        header = _info_header(data, info_path)
        if header.format_version not in READABLE_VERSIONS:
            raise _version_error(info_path, header.format_version)
        assert isinstance(data, dict)

        def error(path: Path, problem: str) -> DatasetError:
            return DatasetError(f"{path}: {problem}")

        from_json(InfoFile, data, info_path, error=error)  # types checked; values kept as read
        known = {key: data[key] for key in INFO_KEY_ORDER if key in data}
        return cls(
            **known,
            extra={key: value for key, value in data.items() if key not in KNOWN_INFO_KEYS},
            keys_read=tuple(data),
            path=info_path,
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``meta/info.json``: every field that is set or was read (a
        ``null`` read stays), then the unknown keys (:func:`write_info` sorts the keys)."""
        values: dict[str, Any] = {key: getattr(self, key) for key in INFO_KEY_ORDER}
        out: dict[str, Any] = {}
        for key in self.keys_read:
            if key in values:
                out[key] = values[key]
            elif key in self.extra:
                out[key] = self.extra[key]
        for key in INFO_KEY_ORDER:
            if key not in out and values[key] is not None:
                out[key] = values[key]
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


def _load_info_json(root: Path) -> tuple[Path, object]:
    info_path = root / INFO_FILE
    if not info_path.is_file():
        raise DatasetError(f"{root}: not an expokit dataset (no {INFO_FILE})")
    try:
        return info_path, json.loads(info_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{info_path}: not UTF-8 text: {exc}") from None
    except ValueError as exc:
        raise DatasetError(f"{info_path}: not valid JSON: {exc}") from None
    except OSError as exc:
        raise DatasetError(f"{info_path}: cannot read: {exc.strerror or exc}") from None


def _info_header(data: object, info_path: Path) -> InfoHeader:
    if not isinstance(data, dict):
        raise DatasetError(
            f"{info_path}: expected a JSON object with 'format' and 'format_version', "
            f"got {_json_kind(data)}"
        )
    found = data.get("format")
    if found != FORMAT_NAME:
        raise DatasetError(f"{info_path}: field 'format' is {found!r}, not {FORMAT_NAME!r}")
    version = data.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise DatasetError(
            f"{info_path}: field 'format_version': dataset format version {version!r} is not "
            f"an integer (this expokit reads version {FORMAT_VERSION})"
        )
    return InfoHeader(info_path, FORMAT_NAME, version)


def _version_error(info_path: Path, version: int) -> DatasetError:
    if version < FORMAT_VERSION:
        folder = info_path.parent.parent
        hint = f"run `expokit curate upgrade {folder}` to convert it to v{FORMAT_VERSION}"
    else:
        hint = "upgrade expokit (pip install -U expokit) to read it"
    return DatasetError(
        f"{info_path}: dataset format version {version!r}; this expokit reads version "
        f"{FORMAT_VERSION}: {hint}"
    )


def read_info_header(root: str | Path) -> InfoHeader:
    """Format name and version of the dataset at ``root``, whatever its version.

    Raises
    ------
    DatasetError
        No info.json, not JSON, not an object, another format, or a version that is not an
        integer: the message names the file and the field.
    """
    info_path, data = _load_info_json(Path(root))
    return _info_header(data, info_path)


def read_info(root: str | Path) -> DatasetInfo:
    """The one reader of ``ROOT/meta/info.json``: parsed and checked field by field.

    Raises
    ------
    DatasetError
        As :func:`read_info_header`; a version other than :data:`FORMAT_VERSION` (naming
        what to run); or a known field of the wrong type (naming the field).
    """
    info_path, data = _load_info_json(Path(root))
    return DatasetInfo.from_json(data, info_path)


@dataclass
class Dataset:
    """A loaded dataset: its root, ``info`` (its ``meta/info.json``) and the manifest."""

    root: Path
    info: DatasetInfo
    manifest: pd.DataFrame = field(repr=False)
    #: SHA-256 of the manifest bytes that were parsed (None when built in memory), so a
    #: record of what was read stays true even if a build replaces the file meanwhile.
    manifest_sha256: str | None = None

    def path(self, relative: str) -> Path:
        """Absolute path of a manifest path, resolved with symlinks followed.

        Raises
        ------
        DatasetError
            ``relative`` is absolute or holds ``..``.
        PathEscapeError
            It resolves outside the root (a symlink along it leaves the dataset).
        """
        check_relative_path(relative)
        return resolve_inside(self.root, relative, what="dataset file")


def schema() -> dict[str, Any]:
    """The ``schema`` block of info.json: every column with dtype, unit and meaning."""
    return {
        "columns": {
            name: {"dtype": dtype, "unit": unit, "meaning": meaning}
            for name, (dtype, unit, meaning) in MANIFEST_COLUMNS.items()
        }
    }


def check_relative_path(value: str, *, row: str = "", column: str = "") -> str:
    """Reject absolute paths, backslashes and ``..``; return the POSIX path unchanged."""
    where = f" (row {row}, column {column})" if row or column else ""
    if not isinstance(value, str) or not value:
        raise DatasetError(f"empty path{where}")
    pure = PurePosixPath(value)
    if pure.is_absolute() or "\\" in value or (len(value) > 1 and value[1] == ":"):
        raise DatasetError(f"path {value!r}{where} is absolute; manifest paths are relative")
    if ".." in pure.parts:
        raise DatasetError(f"path {value!r}{where} leaves the dataset root ('..')")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise DatasetError(f"path {value!r}{where} holds a NUL byte or another control character")
    return value


def check_row_names(frame: pd.DataFrame) -> None:
    """Raise :class:`DatasetError` for the first unsafe scene_id, clip_id or split value.

    These values become folder names (``images/<scene_id>/``, ``<split>/<scene>/`` in an
    export), so a value such as ``../../evil`` must never get that far. Nulls are allowed
    here (required values are checked elsewhere).
    """
    import pandas as pd

    for column in NAME_COLUMNS:
        if column not in frame.columns:
            continue
        for pair_id, value in zip(frame["pair_id"], frame[column], strict=True):
            if value is None or (not isinstance(value, str) and pd.isna(value)):
                continue
            if not is_safe_name(value):
                raise DatasetError(
                    f"row {pair_id}, column {column}: {value!r} is not a safe name (it becomes "
                    "a folder name): use letters, digits, '.', '_' and '-', starting with a "
                    "letter or digit, at most 128 characters"
                )


def manifest_frame(rows: list[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """A DataFrame with exactly :data:`MANIFEST_COLUMNS`, in order, with their dtypes."""
    import pandas as pd

    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    frame = frame.reindex(columns=list(MANIFEST_COLUMNS))
    return frame.astype({name: dtype for name, (dtype, _, _) in MANIFEST_COLUMNS.items()})


def write_info(root: str | Path, info: DatasetInfo) -> Path:
    """Write ``ROOT/meta/info.json`` atomically from ``info`` (:meth:`DatasetInfo.to_json`)."""
    path = Path(root) / INFO_FILE
    atomic_write_json(path, info.to_json())
    return path


def write_dataset(root: str | Path, info: DatasetInfo, manifest: pd.DataFrame) -> Path:
    """Validate and write ``meta/info.json`` (with ``counts`` of the manifest) and
    ``manifest.parquet`` atomically.

    ``info`` is checked as :meth:`DatasetInfo.from_json` checks a file before anything is
    written, so a record holding a wrong field (``license=3``) fails naming it.
    """
    folder = Path(root)
    DatasetInfo.from_json(info.to_json(), folder / INFO_FILE)
    frame = manifest_frame(manifest)
    validate_frame(frame)
    counts = frame.groupby("split", dropna=False).size().to_dict() if len(frame) else {}
    info = replace(
        info,
        counts={
            "pairs": len(frame),
            "scenes": int(frame["scene_id"].nunique()),
            "by_split": {str(k): int(v) for k, v in counts.items()},
        },
    )
    with atomic_path(folder / MANIFEST_FILE) as tmp:
        frame.to_parquet(tmp, index=False)
    write_info(folder, info)
    return folder


def validate_frame(frame: pd.DataFrame) -> None:
    """Structural checks of a manifest frame (columns, unique ids, safe paths)."""
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetError(f"manifest lacks columns: {', '.join(missing)}")
    if frame["pair_id"].isna().any():
        raise DatasetError("manifest has rows without pair_id")
    duplicated = frame["pair_id"][frame["pair_id"].duplicated()].tolist()
    if duplicated:
        raise DatasetError(f"manifest repeats pair_id: {', '.join(map(str, duplicated[:5]))}")
    import pandas as pd

    for column in PATH_COLUMNS:
        for pair_id, value in zip(frame["pair_id"], frame[column], strict=True):
            if column == "mask_path" and pd.isna(value):
                continue  # masks are optional
            check_relative_path(value, row=str(pair_id), column=column)
    check_row_names(frame)


def dataset_writer(root: str | Path) -> str | None:
    """Who is writing the dataset at ``root`` now (e.g. a ``curate build`` holding its
    lock), as ``"pid N (purpose) since T"``, or None.

    Probes the root's lock with a shared, non-blocking ``flock`` released at once: it needs
    no write access, so read-only datasets are read without a lock file being created.
    """
    import sys

    lock = Path(root) / LOCK_FILE
    if sys.platform == "win32" or not lock.is_file():  # pragma: no cover - no probe there
        return None
    import fcntl

    try:
        with lock.open("rb") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                holder = lock_holder(root) or {}
                return (
                    f"pid {holder.get('pid', '?')} "
                    f"({holder.get('purpose', 'another expokit command')}) since "
                    f"{holder.get('since', '?')}"
                )
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    except OSError:
        return None
    return None


def check_not_being_written(root: str | Path, doing: str) -> None:
    """Raise :class:`~expokit.core.lock.RootInUseError` while another process writes ``root``.

    Readers (export, report) then never mix an old manifest with new images: the manifest
    itself is replaced atomically and read once (:attr:`Dataset.manifest_sha256`), and a
    build that starts later changes files whose SHA-256 the reader checks.
    """
    writer = dataset_writer(root)
    if writer is not None:
        raise RootInUseError(f"{root} is in use by {writer}; wait for it to finish before {doing}")


def load_dataset(root: str | Path) -> Dataset:
    """Load and validate a dataset root.

    Raises
    ------
    DatasetError
        No info.json/manifest, another format, a version this expokit cannot read (naming
        the version found and what to run), missing or mistyped columns, unsafe paths.
    """
    import pandas as pd

    folder = Path(root)
    info = read_info(folder)
    info_path = info.path
    if info.unknown_keys:
        warnings.warn(
            f"{info_path}: unknown keys ignored: {', '.join(info.unknown_keys)}", stacklevel=2
        )
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise DatasetError(f"{folder}: no {MANIFEST_FILE}")
    import io

    try:
        # Parsed from the bytes that are hashed: what was read is exactly what is recorded,
        # even when a build replaces the manifest (atomically) meanwhile.
        manifest_bytes = manifest_path.read_bytes()
        frame = pd.read_parquet(io.BytesIO(manifest_bytes))
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise DatasetError(f"{manifest_path}: unreadable parquet: {exc}") from None
    declared = info.declared_dtypes
    if info.format_version == 1:
        warnings.warn(
            f"{info_path}: dataset format v1, read as v{FORMAT_VERSION} in memory (the "
            f"'flags' column is now 'qa_flags'; the v1 'flicker' figure is dropped and the "
            f"new QA figures are null); run `expokit curate upgrade {folder}` to convert it",
            stacklevel=2,
        )
        frame = frame_from_v1(frame, info)
        declared = {k: v for k, v in declared.items() if k in MANIFEST_COLUMNS}
    for name, (dtype, _, _) in MANIFEST_COLUMNS.items():
        if name not in frame.columns:
            raise DatasetError(f"{manifest_path}: missing column {name!r}")
        if name in declared and declared[name] != dtype:
            raise DatasetError(
                f"{info_path}: column {name!r} declared {declared[name]!r}, "
                f"format v{FORMAT_VERSION} says {dtype!r}"
            )
    extra = sorted(set(frame.columns) - set(MANIFEST_COLUMNS))
    if extra:
        warnings.warn(f"{manifest_path}: unknown columns kept: {', '.join(extra)}", stacklevel=2)
    try:
        typed = frame.astype({n: d for n, (d, _, _) in MANIFEST_COLUMNS.items()})
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{manifest_path}: a column has the wrong type: {exc}") from None
    try:
        validate_frame(typed)
    except DatasetError as exc:
        raise DatasetError(f"{manifest_path}: {exc}") from None
    return Dataset(folder, info, typed, sha256_bytes(manifest_bytes))


#: Columns format v2 added; a v1 manifest converted in memory has them null (``ev_basis``
#: is derived, see :func:`frame_from_v1`).
V2_NEW_COLUMNS = (
    "ev_basis", "usable_fraction", "focus_ratio", "target_luma", "target_change",
    "gain_deviation_ev", "gain_instability_ev", "target_flicker", "qa_flags",
)  # fmt: skip


def _ranked_sources(info: DatasetInfo) -> bool:
    return any(
        isinstance(entry, Mapping) and "rank" in (entry.get("ev_basis") or [])
        for entry in info.sources
    )


def frame_from_v1(frame: pd.DataFrame, info: DatasetInfo) -> pd.DataFrame:
    """A v1 manifest frame as v2 columns (in memory; nothing is written).

    ``flags`` becomes ``qa_flags`` without v1's ``flicker`` flag (it measured the target's
    own brightness, see docs/qa.md); the ``flicker`` figure is dropped; ``ev_basis`` is
    ``rank`` for sequence and flat rows without EXIF exposure times when the provenance says
    a source had rank EVs, else ``ev``; the other new figures are null until
    ``expokit curate upgrade`` measures them.
    """
    import pandas as pd

    out = frame.copy()
    if "flags" in out.columns:
        out["qa_flags"] = [
            ",".join(f for f in str(v).split(",") if f and f != "flicker")
            if isinstance(v, str)
            else v
            for v in out["flags"].tolist()
        ]
        out = out.drop(columns=["flags"])
    out = out.drop(columns=[c for c in ("flicker",) if c in out.columns])
    ranked = _ranked_sources(info)
    basis = []
    for source, time in zip(
        out.get("source", pd.Series([None] * len(out))).tolist(),
        out.get("input_exposure_time_s", pd.Series([None] * len(out))).tolist(),
        strict=True,
    ):
        no_exif = time is None or (not isinstance(time, str) and bool(pd.isna(time)))
        basis.append("rank" if ranked and source in ("sequences", "flat") and no_exif else "ev")
    out["ev_basis"] = basis
    for column in V2_NEW_COLUMNS:
        if column not in out.columns:
            out[column] = None
    return out


def is_manifest_csv(path: str | Path) -> bool:
    """True when ``path`` starts with the manifest CSV header (an earlier :func:`export_csv`;
    unknown columns a manifest kept may follow the format's own)."""
    try:
        with Path(path).open("r", encoding="utf-8", newline="") as handle:
            first = handle.readline(1 << 16)
    except (OSError, UnicodeDecodeError):
        return False
    header = first.rstrip("\r\n").split(",")
    return header[: len(MANIFEST_COLUMNS)] == list(MANIFEST_COLUMNS)


def export_csv(dataset: Dataset, path: str | Path) -> Path:
    """Write the manifest as CSV (atomically).

    Callers writing to a path a person chose check it first with
    :func:`expokit.core.paths.check_output_file` (``is_own_output=is_manifest_csv``).
    """
    with atomic_path(path) as tmp:
        dataset.manifest.to_csv(tmp, index=False)
    return Path(path)
