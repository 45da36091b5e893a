"""One scene's task and working state.

What :func:`~expokit.curation.build.scene.build_scene` gets, and how the scene's pairs
stage their files so that a scene commits whole or not at all.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy.typing as npt

from expokit.core.atomic import (
    atomic_path,
    describe_os_error,
)
from expokit.core.errors import InputFileError, OutputError
from expokit.core.hashing import sha256_bytes
from expokit.core.paths import resolve_inside
from expokit.curation.build.config import BuildConfig
from expokit.curation.build.sources import (
    FrameReader,
    ImageRef,
    LoadedImage,
    SceneSpec,
    load_image,
)

if TYPE_CHECKING:
    pass

IMAGES_DIR = "images"


@dataclass(frozen=True)
class SceneTask:
    """Everything :func:`build_scene` needs; picklable for process pools and Ray."""

    spec: SceneSpec
    out_root: str
    config: BuildConfig
    params_hash: str
    run_id: str
    durable: bool = True


class SceneError(InputFileError):
    """A scene cannot be built; the message names the scene and the file."""


def encode_image(image: npt.NDArray[Any], ext: str, config: BuildConfig) -> bytes:
    import cv2

    if ext == ".jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality, cv2.IMWRITE_JPEG_OPTIMIZE, 0]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, config.png_compression]
    ok, buffer = cv2.imencode(ext, image, params)
    if not ok:
        raise OutputError(f"OpenCV could not encode a {ext} image")
    return bytes(buffer.tobytes())


@dataclass
class SceneState:
    """Per-scene working state: caches and what was written."""

    readers: dict[str, FrameReader] = field(default_factory=dict)
    targets: dict[str, LoadedImage] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    #: The previous video frame's target thumbnail (``qa.brightness_thumbnail``).
    previous_target: Any = None
    #: Open :func:`~expokit.core.atomic.atomic_path` of every file written so far: the
    #: files are renamed into place only when the whole scene succeeded (see :func:`stage_file`).
    commit: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    #: relpath -> its temporary file (held by ``commit``).
    staged: dict[str, Path] = field(default_factory=dict)


def load_cached(ref: ImageRef, state: SceneState, cache: bool) -> LoadedImage:
    if cache and ref.label in state.targets:
        return state.targets[ref.label]
    loaded = load_image(ref, state.readers)
    if cache:
        state.targets[ref.label] = loaded
    return loaded


def stage_file(task: SceneTask, state: SceneState, relpath: str, data: bytes) -> str:
    """Stage ``data`` for ``relpath``; it replaces the file when ``state.commit`` closes.

    A rebuild overwrites the earlier build's files of its scene: writing them in place
    would leave a scene that fails half-way (disk full, a crash) with neither build
    intact, so every file goes to a temporary name beside its target and all are renamed
    only once the scene succeeded (on failure the temporary files are removed).

    Raises
    ------
    OutputError
        The file cannot be written (disk full included).
    PathEscapeError
        ``relpath`` resolves outside the dataset root.
    """
    digest = sha256_bytes(data)
    if state.outputs.get(relpath) != digest:
        # Resolved with symlinks followed: an images/<scene> link leaving the root fails
        # the scene (PathEscapeError) instead of being written through.
        target = resolve_inside(task.out_root, relpath, "output file")
        tmp = state.staged.get(relpath)
        if tmp is None:  # a path written twice reuses its temporary file (one rename)
            tmp = state.commit.enter_context(atomic_path(target, task.durable))
            state.staged[relpath] = tmp
        try:
            tmp.write_bytes(data)
        except OSError as exc:
            raise OutputError(describe_os_error(exc, target)) from exc
        state.outputs[relpath] = digest
    return digest
