"""A scene's completion record (``.expokit/records/<scene_id>.json``).

Where it lives, its key, and whether it proves the scene built. On disk it is a
:class:`~expokit.core.runs.BuildRecord` whose ``rows`` are flat JSON objects; build code
works on a :class:`SceneRecord`, the record with its rows read into
:class:`~expokit.curation.build.pair.BuiltPair` right after reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from expokit.core.errors import InputFileError
from expokit.core.hashing import sha256_file, stable_hash
from expokit.core.paths import PathEscapeError, resolve_inside
from expokit.core.runs import (
    RECORD_VERSION,
    BuildRecord,
    InputRecord,
)
from expokit.core.runs import read_record as _read_record
from expokit.core.runs import record_path as _record_path
from expokit.curation.build.pair import BuiltPair
from expokit.curation.build.sources import (
    SceneSpec,
)
from expokit.curation.dataset.pair_row import PairRowError


@dataclass(frozen=True)
class SceneRecord:
    """A scene's completion record with its rows typed.

    Attributes
    ----------
    record
        The record as on disk (``record.rows`` are the flat rows of ``pairs``).
    pairs
        ``record.rows`` read as pairs, in order (empty for a failed scene).
    skipped
        :func:`~expokit.curation.build.scene.build_scene` found the scene already built
        and returned its earlier record (in memory only, never written).
    """

    record: BuildRecord
    pairs: tuple[BuiltPair, ...]
    skipped: bool = False

    @property
    def scene_id(self) -> str:
        """The scene."""
        return self.record.scene_id

    @property
    def ok(self) -> bool:
        """The scene built (``status == "ok"``)."""
        return self.record.status == "ok"


def scene_record(record: BuildRecord, where: str) -> SceneRecord:
    """``record`` with its rows read as :class:`BuiltPair` (``where`` names the record).

    Raises
    ------
    PairRowError
        A row that does not fit (names ``where``, the row and the field).
    """
    pairs = tuple(
        BuiltPair.from_json(row, f"{where} rows[{index}]") for index, row in enumerate(record.rows)
    )
    return SceneRecord(record=record, pairs=pairs)


def record_path(out_root: str | Path, scene_id: str) -> Path:
    """Where the completion record of ``scene_id`` lives.

    Raises
    ------
    UnsafeNameError
        ``scene_id`` is not a safe path component.
    PathEscapeError
        The records folder resolves outside ``out_root`` (a symlink leaves the root).
    """
    return _record_path(out_root, scene_id, "scene id", record_what="completion record")


def read_record(out_root: str | Path, scene_id: str) -> SceneRecord | None:
    """The completion record of ``scene_id``, typed, or ``None``: missing, unreadable, not
    a build record, a row that does not fit (:class:`BuiltPair`), or its path leaves the
    root. The scene is then built again (and fails there with a clear message)."""
    record = _read_record(out_root, scene_id, "scene id", record_what="completion record")
    if not isinstance(record, BuildRecord):
        return None
    try:
        return scene_record(record, f"completion record of scene {scene_id}")
    except PairRowError:
        return None


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


def outputs_intact(record: BuildRecord, out_root: Path) -> bool:
    """Every output of ``record`` exists with its recorded SHA-256."""
    for relpath, digest in record.outputs.items():
        try:
            if sha256_file(resolve_inside(out_root, relpath, "output file")) != digest:
                return False
        except (OSError, PathEscapeError):
            return False
    return True


def input_hashes(
    spec: SceneSpec, previous: BuildRecord | None
) -> tuple[list[InputRecord], dict[str, str]]:
    """Size, mtime and SHA-256 of every input of ``spec``.

    A file whose size and mtime match ``previous``'s record reuses its recorded hash.

    Returns
    -------
    tuple
        ``(inputs, {path: SHA-256})``: the record's ``inputs`` in ``spec`` order (size in
        bytes, mtime in ns) and their hashes.

    Raises
    ------
    InputFileError
        An input file that does not exist or cannot be read.
    """
    known = {i.path: i for i in previous.inputs} if previous else {}
    infos, hashes = [], {}
    for name in spec.input_files():
        path = Path(name)
        try:
            stat = path.stat()
        except OSError:
            raise InputFileError(path, "no such file") from None
        old = known.get(name)
        if old and (old.size, old.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            digest = old.sha256
        else:
            try:
                digest = sha256_file(path)
            except OSError as exc:
                raise InputFileError(path, f"cannot read: {exc}") from None
        infos.append(InputRecord(name, stat.st_size, stat.st_mtime_ns, digest))
        hashes[name] = digest
    return infos, hashes


def is_done(spec: SceneSpec, record: BuildRecord | None, params_hash: str, out: Path) -> bool:
    """True when ``record`` proves ``spec`` is built with ``params_hash`` (stat-cheap inputs)."""
    if not record or record.status != "ok" or record.record_version != RECORD_VERSION:
        return False
    known = {i.path: i for i in record.inputs}
    if set(known) != set(spec.input_files()):
        return False
    for name, info in known.items():
        try:
            stat = Path(name).stat()
        except OSError:
            return False
        if (info.size, info.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            return False
    hashes = {name: info.sha256 for name, info in known.items()}
    if record.key != scene_key(spec, hashes, params_hash):
        return False
    return outputs_intact(record, out)
