"""A scene's completion record (``.expokit/records/<scene_id>.json``).

Where it lives, its key, and whether it proves the scene built.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from expokit.core.errors import InputFileError
from expokit.core.hashing import sha256_file, stable_hash
from expokit.core.paths import PathEscapeError, resolve_inside
from expokit.core.runs import (
    RECORD_VERSION,
)
from expokit.core.runs import read_record as _read_record
from expokit.core.runs import record_path as _record_path
from expokit.curation.build.sources import (
    SceneSpec,
)

if TYPE_CHECKING:
    pass


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


def read_record(out_root: str | Path, scene_id: str) -> dict[str, Any] | None:
    """The completion record of ``scene_id``, or ``None`` (missing, unreadable, or its path
    leaves the root: the scene is then built, and fails with a clear message)."""
    return _read_record(out_root, scene_id, "scene id", record_what="completion record")


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


def outputs_intact(record: dict[str, Any], out_root: Path) -> bool:
    """Every output of ``record`` exists with its recorded SHA-256."""
    outputs = record.get("outputs")
    if not isinstance(outputs, dict):
        return False
    for relpath, digest in outputs.items():
        try:
            if sha256_file(resolve_inside(out_root, relpath, "output file")) != digest:
                return False
        except (OSError, PathEscapeError):
            return False
    return True


def _recorded_inputs(record: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if not record:
        return {}
    return {str(i.get("path")): i for i in record.get("inputs", []) if isinstance(i, dict)}


def input_hashes(
    spec: SceneSpec, previous: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Size, mtime and SHA-256 of every input of ``spec``.

    A file whose size and mtime match ``previous``'s record reuses its recorded hash.

    Raises
    ------
    InputFileError
        An input file that does not exist or cannot be read.
    """
    known = _recorded_inputs(previous)
    infos, hashes = [], {}
    for name in spec.input_files():
        path = Path(name)
        try:
            stat = path.stat()
        except OSError:
            raise InputFileError(path, "no such file") from None
        old = known.get(name)
        if old and (old.get("size"), old.get("mtime_ns")) == (stat.st_size, stat.st_mtime_ns):
            digest = str(old["sha256"])
        else:
            try:
                digest = sha256_file(path)
            except OSError as exc:
                raise InputFileError(path, f"cannot read: {exc}") from None
        infos.append(
            {"path": name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
        )
        hashes[name] = digest
    return infos, hashes


def is_done(spec: SceneSpec, record: dict[str, Any] | None, params_hash: str, out: Path) -> bool:
    """True when ``record`` proves ``spec`` is built with ``params_hash`` (stat-cheap inputs)."""
    if not record or record.get("status") != "ok" or record.get("record_version") != RECORD_VERSION:
        return False
    known = _recorded_inputs(record)
    if set(known) != set(spec.input_files()):
        return False
    for name, info in known.items():
        try:
            stat = Path(name).stat()
        except OSError:
            return False
        if (info.get("size"), info.get("mtime_ns")) != (stat.st_size, stat.st_mtime_ns):
            return False
    hashes = {name: str(info["sha256"]) for name, info in known.items()}
    if record.get("key") != scene_key(spec, hashes, params_hash):
        return False
    return outputs_intact(record, out)
