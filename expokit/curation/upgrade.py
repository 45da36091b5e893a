"""Dataset format converters: ``expokit curate upgrade ROOT`` brings a dataset to the current
format version, one step at a time, keeping a backup of the files it rewrites.

:data:`CONVERTERS` maps a version ``v`` to the function that rewrites a dataset from ``v`` to
``v + 1`` in place. Format v1 is the first published version, so there is nothing to convert
yet; the registry is where the v1 -> v2 converter will go when v2 exists.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from expokit.core.lock import RootLock
from expokit.curation.dataset import FORMAT_VERSION, DatasetError, read_info, read_info_header

#: version -> converter from that version to the next, rewriting the dataset in place.
CONVERTERS: dict[int, Callable[[Path], None]] = {}


def upgrade_dataset(root: str | Path) -> list[str]:
    """Upgrade ``root`` to :data:`FORMAT_VERSION`; return what was done, one line a step.

    Raises
    ------
    DatasetError
        Not a dataset, a version newer than this expokit, or no converter for a step.
    """
    folder = Path(root)
    header = read_info_header(folder)  # format name and an integer version, or DatasetError
    info_path, version = header.path, header.format_version
    if version > FORMAT_VERSION:
        raise DatasetError(
            f"{info_path}: format version {version} is newer than this expokit "
            f"(v{FORMAT_VERSION}); upgrade expokit instead"
        )
    steps: list[str] = []
    if version == FORMAT_VERSION:
        read_info(folder)  # "already v1" only for an info.json that reads as v1
        return [f"{folder} is already format v{FORMAT_VERSION}; nothing to do"]
    # Converters rewrite the dataset in place: one writer at a time (builds lock it too).
    with RootLock(folder, "expokit curate upgrade"):
        while version < FORMAT_VERSION:
            converter = CONVERTERS.get(version)
            if converter is None:
                raise DatasetError(
                    f"{info_path}: no converter from format v{version} to v{version + 1} "
                    f"(known: {sorted(CONVERTERS) or 'none'})"
                )
            converter(folder)
            steps.append(f"converted v{version} -> v{version + 1}")
            version += 1
    if not steps:
        steps.append(f"{folder} is already format v{FORMAT_VERSION}; nothing to do")
    return steps
