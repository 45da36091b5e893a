"""Image input of the geometry calibration: which files, read how, checked for what.

:func:`resolve_images` turns a command-line argument (a file, a folder or a glob) into image
paths in natural order; :func:`read_image_pairs` reads the reference/test pairs as grayscale
through the guarded reader :func:`expokit.core.images.read_image` (upright per the EXIF
orientation, as ``curate build`` reads the same session's images; a missing, unreadable or
implausibly large file is an :class:`~expokit.core.errors.InputFileError` naming it), hashes
them for provenance and checks that each camera's images share one size;
:func:`check_inputs_not_outputs` refuses inputs the calibration would overwrite.

The estimation itself is in :mod:`~expokit.calibration.geometry`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from expokit.calibration.geometry_qa import QA_IMAGE_NAME
from expokit.calibration.homography import image_size, to_gray_float
from expokit.calibration.rig_calibration import RIG_CALIBRATION_NAME
from expokit.capture.journal import DownloadedEvent, PlannedEvent, read_events
from expokit.capture.session import CALIBRATION_KIND, FILES_DIR, JOURNAL_FILE
from expokit.core.errors import InputFileError, OutputError
from expokit.core.hashing import sha256_file
from expokit.core.images import read_image

F32 = npt.NDArray[np.float32]

__all__ = [
    "IMAGE_SUFFIXES",
    "GrayPair",
    "check_inputs_not_outputs",
    "read_image_pairs",
    "resolve_images",
]


#: File endings :func:`resolve_images` picks from folders (any case).
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    ".png .jpg .jpeg .tif .tiff .bmp .webp .pgm .ppm .jp2".split()
)


def _natural_key(path: Path) -> list[Any]:
    # left2 before left10: compare digit runs as numbers.
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def session_calibration_stills(session: str | Path) -> tuple[list[Path], list[Path]]:
    """The calibration stills of a capture session (shots of kind ``calibration``:
    ``expokit capture calibration`` or ``align live``'s calibrate key), as paired
    ``(reference files, test files)`` in shot order, read from its journal.

    Raises
    ------
    InputFileError
        The folder has no journal, or the journal lists no complete calibration shot.
    """
    root = Path(session)
    journal = root / JOURNAL_FILE
    if not journal.is_file():
        raise InputFileError(root, f"is not a capture session (no {JOURNAL_FILE})")
    events, _ = read_events(journal)
    shots = {e.index for e in events if isinstance(e, PlannedEvent) and e.kind == CALIBRATION_KIND}
    files: dict[tuple[int, str], Path] = {
        (e.index, e.role): root / FILES_DIR / e.file
        for e in events
        if isinstance(e, DownloadedEvent) and e.index in shots
    }
    complete = sorted(i for i in shots if (i, "reference") in files and (i, "test") in files)
    if not complete:
        raise InputFileError(
            journal,
            "lists no complete calibration shot (shoot them with `expokit capture calibration`)",
        )
    return [files[(i, "reference")] for i in complete], [files[(i, "test")] for i in complete]


def resolve_images(spec: str | Path) -> list[Path]:
    """Image files named by a file, a folder or a glob pattern, in natural name order.

    ``"ref.jpg"`` -> that file; ``"left/"`` -> every image in the folder (by ending, see
    :data:`IMAGE_SUFFIXES`); ``"pairs/left0*.jpg"`` -> the matches. Natural order (``2``
    before ``10``) is what pairs reference and test images by position.

    Parameters
    ----------
    spec
        A file, a folder or a glob pattern (relative or absolute).

    Returns
    -------
    list of Path
        The images, in natural name order; a single file is returned as given, even if it
        does not exist (:func:`read_image_pairs` reports it).

    Raises
    ------
    InputFileError
        Nothing matches, or a folder holds no images.
    """
    text = str(spec)
    path = Path(text)
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not found:
            raise InputFileError(path, "folder holds no images")
        return sorted(found, key=_natural_key)
    if any(ch in text for ch in "*?["):
        anchor = Path(path.anchor) if path.is_absolute() else Path()
        pattern = str(path.relative_to(anchor)) if path.is_absolute() else text
        found = [p for p in anchor.glob(pattern) if p.is_file()]
        if not found:
            raise InputFileError(path, "no file matches this pattern")
        return sorted(found, key=_natural_key)
    return [path]  # a single file; read_image reports it if missing


@dataclass(frozen=True)
class GrayPair:
    """One reference/test image pair as read from disk.

    Attributes
    ----------
    index
        Position of the pair in the input lists (0-based).
    reference_path, test_path
        The files read.
    reference_gray, test_gray
        ``(H, W)`` float32 grayscale in ``[0, 1]`` (raw frame: neither flipped nor
        undistorted, but upright per its EXIF orientation; see
        :func:`~expokit.calibration.homography.to_gray_float`).
    reference_sha256, test_sha256
        SHA-256 of the files (hex), for the record's provenance.
    """

    index: int
    reference_path: Path
    test_path: Path
    reference_gray: F32
    test_gray: F32
    reference_sha256: str
    test_sha256: str


def read_image_pairs(reference_images: list[Path], test_images: list[Path]) -> list[GrayPair]:
    """Read image pairs as grayscale and check each camera's images share one size.

    Parameters
    ----------
    reference_images, test_images
        Paired by position; the same length (>= 1).

    Returns
    -------
    list of GrayPair
        One per pair, in input order.

    Raises
    ------
    InputFileError
        An image is missing, unreadable or too large (from
        :func:`expokit.core.images.read_image`), or of another size (``W x H`` px) than the
        first image of its camera.
    ValueError
        The two lists differ in length.
    """
    pairs = []
    for i, (ref, tst) in enumerate(zip(reference_images, test_images, strict=True)):
        ref_gray = to_gray_float(read_image(ref))
        test_gray = to_gray_float(read_image(tst))
        pairs.append(GrayPair(i, ref, tst, ref_gray, test_gray, sha256_file(ref), sha256_file(tst)))
    for role, attr, path_attr in (
        ("reference", "reference_gray", "reference_path"),
        ("test", "test_gray", "test_path"),
    ):
        first = image_size(getattr(pairs[0], attr))
        for pair in pairs[1:]:
            size = image_size(getattr(pair, attr))
            if size != first:
                raise InputFileError(
                    getattr(pair, path_attr),
                    f"{role} image is {size[0]}x{size[1]}, the first {role} image "
                    f"({getattr(pairs[0], path_attr).name}) is {first[0]}x{first[1]}",
                )
    return pairs


def check_inputs_not_outputs(out: Path, inputs: list[Path]) -> None:
    """Refuse when an input image is a file this calibration would overwrite or remove.

    Parameters
    ----------
    out
        The output folder (``--out``); nothing is checked when it does not exist yet.
    inputs
        Every reference and test image.

    Raises
    ------
    OutputError
        An input resolves to ``rig_calibration.json`` or a QA image name inside ``out``.
    """
    if not out.is_dir():
        return
    base = out.resolve()
    for image in inputs:
        resolved = image.resolve()
        if resolved.parent == base and (
            resolved.name == RIG_CALIBRATION_NAME or QA_IMAGE_NAME.fullmatch(resolved.name)
        ):
            raise OutputError(
                f"input {image} is {resolved.name} in the output folder {out}, which this "
                "calibration writes; move the input or choose another --out"
            )
