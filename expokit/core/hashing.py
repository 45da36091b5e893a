"""Content hashes used for provenance and for skipping work that is already done."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def stable_json(obj: Any) -> str:
    """Canonical JSON (sorted keys, no spaces) so equal objects hash equally."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def stable_hash(obj: Any, length: int = 16) -> str:
    """Short hex SHA-256 of :func:`stable_json` of ``obj``."""
    return hashlib.sha256(stable_json(obj).encode()).hexdigest()[:length]
