"""QA images of a rig calibration: drawing, writing, and removing those of an earlier run.

For every image pair :func:`~expokit.calibration.geometry.calibrate_geometry` warps the test
image onto the reference grid; this module takes it from there:

* :func:`qa_frames` - both images at QA scale (longer side <= :data:`QA_MAX_SIDE`), the test
  image exposure-matched to the reference;
* :func:`pair_correlation` - the alignment score recorded per pair;
* :func:`render_qa_images` - the checkerboard blend and the amplified difference;
* :func:`write_qa_images` - the PNGs, written atomically next to ``rig_calibration.json``;
* :func:`previous_qa_images` / :func:`remove_stale_qa_images` - deleting QA images an
  earlier run listed and this run did not write (nothing else is ever deleted).

No function here reads image inputs or estimates geometry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from expokit.calibration.homography import (
    image_size,
    match_histogram,
    resize_to_max_side,
    to_uint8,
    white_point,
)
from expokit.calibration.rig_calibration import recorded_qa_images
from expokit.core.atomic import atomic_write_bytes
from expokit.core.errors import ExpokitError
from expokit.core.paths import PathEscapeError, resolve_inside

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
Bool = npt.NDArray[np.bool_]

#: QA images and per-pair correlations are computed at most this large (longer side, px).
QA_MAX_SIDE = 2000
#: Kinds of QA image written per pair, in order.
QA_KINDS: tuple[str, ...] = ("checkerboard", "difference")
#: Names of the QA images calibrate_geometry writes (and may remove on a re-run).
QA_IMAGE_NAME = re.compile(r"rig_qa_\d{2,}_(checkerboard|difference)\.png")
#: The difference image shows ``|reference - test| * DIFFERENCE_GAIN`` (8-bit, clipped).
DIFFERENCE_GAIN = 4


@dataclass(frozen=True)
class QaFrames:
    """One pair at QA scale, in the raw reference frame.

    Attributes
    ----------
    reference
        ``(h, w)`` float32 in ``[0, 1]``: the raw reference grayscale, downscaled so the longer
        side is at most :data:`QA_MAX_SIDE`.
    test
        ``(h, w)`` float32 in ``[0, 1]``: the warped test grayscale at the same size,
        histogram-matched to ``reference`` on ``valid``, 0 outside it.
    valid
        ``(h, w)`` bool: True where the warped test image covers the reference frame.
    """

    reference: F32
    test: F32
    valid: Bool


def qa_image_name(index: int, kind: str) -> str:
    """File name of pair ``index``'s QA image of ``kind`` (one of :data:`QA_KINDS`)."""
    if kind not in QA_KINDS:
        raise ValueError(f"QA image kind must be one of {', '.join(QA_KINDS)}, got {kind!r}")
    return f"rig_qa_{index:02d}_{kind}.png"


def qa_frames(reference_gray: F32, warped_test: npt.NDArray[np.floating], valid: Bool) -> QaFrames:
    """Bring a pair to QA scale and match the test exposure to the reference.

    Parameters
    ----------
    reference_gray
        ``(H, W)`` float32 in ``[0, 1]``: the raw reference image.
    warped_test
        ``(H, W)`` float in ``[0, 1]``: the test image warped onto the raw reference grid
        (:func:`~expokit.calibration.warp.warp_test_to_reference`).
    valid
        ``(H, W)`` bool: the warp's coverage mask.

    Returns
    -------
    QaFrames
        The three arrays at QA scale (longer side <= :data:`QA_MAX_SIDE`).
    """
    import cv2

    ref_small, _ = resize_to_max_side(reference_gray, QA_MAX_SIDE)
    size = image_size(ref_small)
    test_small = np.asarray(
        cv2.resize(np.asarray(warped_test, np.float32), size, interpolation=cv2.INTER_AREA),
        np.float32,
    )
    valid_small = np.asarray(
        cv2.resize(valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST), bool
    )
    matched = match_histogram(test_small, ref_small, valid_small, valid_small)
    matched[~valid_small] = 0
    return QaFrames(np.asarray(ref_small, np.float32), matched, valid_small)


def pair_correlation(frames: QaFrames) -> float:
    """ECC correlation coefficient of the aligned pair, in ``[-1, 1]`` (1: identical up to
    gain and offset), on 5x5-blurred images over the valid pixels; NaN when 16 or fewer
    pixels are valid."""
    import cv2

    mask = frames.valid.astype(np.uint8) * 255
    if np.count_nonzero(mask) <= 16:
        return float("nan")
    blurred_ref = cv2.GaussianBlur(frames.reference, (5, 5), 0)
    blurred_test = cv2.GaussianBlur(frames.test, (5, 5), 0)
    return float(cv2.computeECC(blurred_ref, blurred_test, mask))


def render_qa_images(frames: QaFrames, tile: int) -> dict[str, U8]:
    """The QA images of one pair, 8-bit grayscale at QA scale.

    Parameters
    ----------
    frames
        The pair at QA scale (:func:`qa_frames`).
    tile
        Checkerboard tile side in pixels (of the QA image), >= 1.

    Returns
    -------
    dict
        ``{"checkerboard": ..., "difference": ...}``, each ``(h, w)`` uint8. The checkerboard
        alternates reference and test tiles (reference where the test does not cover); the
        difference is ``|reference - test| * DIFFERENCE_GAIN`` clipped to 255, 0 outside
        the valid region. Both are scaled by the reference's white point.
    """
    if tile < 1:
        raise ValueError(f"QA tile must be >= 1 px, got {tile}")
    white = white_point(frames.reference)
    ref_u8, test_u8 = to_uint8(frames.reference, white), to_uint8(frames.test, white)
    ys, xs = np.indices(ref_u8.shape)
    tiles = ((ys // tile + xs // tile) % 2).astype(bool)
    checker = np.where(tiles & frames.valid, test_u8, ref_u8).astype(np.uint8)
    diff = np.abs(ref_u8.astype(np.int16) - test_u8.astype(np.int16)) * DIFFERENCE_GAIN
    diff = np.where(frames.valid, np.clip(diff, 0, 255), 0).astype(np.uint8)
    return {"checkerboard": checker, "difference": diff}


def write_qa_images(out_dir: Path, index: int, images: dict[str, U8]) -> list[str]:
    """Write pair ``index``'s QA images as PNGs in ``out_dir`` (atomically); return their
    names, in :data:`QA_KINDS` order.

    Raises
    ------
    ExpokitError
        An image cannot be PNG-encoded.
    OutputError
        A file cannot be written.
    """
    import cv2

    names = []
    for kind in QA_KINDS:
        name = qa_image_name(index, kind)
        ok, buffer = cv2.imencode(".png", images[kind])
        if not ok:
            raise ExpokitError(f"could not encode QA image {name}")
        atomic_write_bytes(out_dir / name, buffer.tobytes())
        names.append(name)
    return names


def previous_qa_images(out: Path) -> set[str]:
    """QA image names recorded by an earlier run's ``rig_calibration.json`` in ``out`` that
    match :data:`QA_IMAGE_NAME` (none when missing or unreadable: then nothing is removed)."""
    return {n for n in recorded_qa_images(out) if QA_IMAGE_NAME.fullmatch(n)}


def remove_stale_qa_images(out: Path, previous: set[str], current: list[str]) -> list[str]:
    """Delete QA images an earlier run wrote (listed in its record, named by our pattern)
    that this run did not write: never another file, never through a symlink.

    Returns
    -------
    list
        Names of the files removed, sorted.
    """
    removed = []
    for name in sorted(previous - set(current)):
        if not QA_IMAGE_NAME.fullmatch(name):
            continue
        path = out / name
        if path.is_symlink() or not path.is_file():
            continue
        try:
            resolve_inside(out, name, "QA image")
        except PathEscapeError:
            continue
        path.unlink(missing_ok=True)
        removed.append(name)
    return removed
