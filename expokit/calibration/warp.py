"""Applying a rig calibration to images: the test -> reference warp and its valid region.

:func:`warp_test_to_reference` resamples a raw test-camera image onto the raw reference pixel
grid (what the curation stage does with every test frame, see
:mod:`expokit.curation.build.align`); :func:`warp_maps` gives the ``cv2.remap`` tables it uses
when the calibration has intrinsics, to reuse across frames; :func:`largest_valid_rectangle`
and :func:`valid_region` give the rectangle the warped image covers.

Frames: the homography of a :class:`~expokit.calibration.rig_calibration.RigCalibration`
maps the *flipped, undistorted* test image to the *undistorted* reference image. The warp
composes the flip, the test undistortion, the homography and the reference *re-distortion*,
so its output lies on the raw reference pixel grid: the reference image is used as captured
and the test image is resampled once.

The estimation of the calibration is in :mod:`~expokit.calibration.geometry`, its file
format in :mod:`~expokit.calibration.rig_calibration`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from expokit.calibration.homography import image_size
from expokit.calibration.intrinsics import distort_points, undistort_points
from expokit.calibration.rig_calibration import RigCalibration

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

__all__ = ["largest_valid_rectangle", "valid_region", "warp_maps", "warp_test_to_reference"]


def _reference_rays(calib: RigCalibration, rows: slice) -> F64:
    """Undistorted reference coordinates of the raw reference pixels in ``rows``.

    Returns
    -------
    numpy.ndarray
        ``(N, 2)`` float64 ``(x, y)`` pixels, ``N = len(rows) * W_ref``, row-major.
    """
    w, _ = calib.reference_size
    ys, xs = np.mgrid[rows, 0:w]
    points = np.c_[xs.ravel(), ys.ravel()].astype(np.float64)
    if calib.reference_intrinsics is not None:
        points = undistort_points(points, calib.reference_intrinsics)
    return points


def warp_maps(calib: RigCalibration) -> tuple[F32, F32]:
    """``cv2.remap`` maps from raw reference pixels to raw test pixels.

    For every raw reference pixel: undistort (reference intrinsics), apply ``H^-1``, distort
    (test intrinsics), undo the flip. Computed in row chunks of about 2 M pixels (bounded
    memory on 24 MP frames).

    Parameters
    ----------
    calib
        The rig calibration (with or without intrinsics).

    Returns
    -------
    tuple
        ``(map_x, map_y)``, each ``(H_ref, W_ref)`` float32, raw test coordinates in pixels;
        ``-1e6`` where the reference pixel has no preimage (behind the test camera).
    """
    w, h = calib.reference_size
    h_inv = np.linalg.inv(calib.homography)
    flip = calib.flip.matrix(calib.test_size)
    map_x = np.empty((h, w), np.float32)
    map_y = np.empty((h, w), np.float32)
    chunk = max(1, 2_000_000 // max(w, 1))  # bounded memory on 24 MP frames
    for start in range(0, h, chunk):
        rows = slice(start, min(h, start + chunk))
        pts = _reference_rays(calib, rows)
        homog = np.c_[pts, np.ones(len(pts))] @ h_inv.T
        with np.errstate(divide="ignore", invalid="ignore"):
            test_pts = homog[:, :2] / homog[:, 2:3]
        bad = ~np.isfinite(test_pts).all(axis=1) | (homog[:, 2] <= 0)
        test_pts[bad] = -1e6
        if calib.test_intrinsics is not None:
            test_pts[~bad] = distort_points(test_pts[~bad], calib.test_intrinsics)
        raw = np.c_[test_pts, np.ones(len(test_pts))] @ flip.T
        raw[bad] = -1e6
        map_x[rows] = raw[:, 0].reshape(-1, w)
        map_y[rows] = raw[:, 1].reshape(-1, w)
    return map_x, map_y


def warp_test_to_reference(
    image: npt.NDArray[Any],
    calib: RigCalibration,
    interpolation: str = "linear",
    maps: tuple[F32, F32] | None = None,
) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
    """Resample a raw test-camera image onto the raw reference pixel grid.

    Applies the flip, the test undistortion, the homography and the reference distortion in
    one resampling (see the module docstring).

    Parameters
    ----------
    image
        Raw test image, ``(H_t, W_t)`` or ``(H_t, W_t, C)``, any dtype OpenCV remaps (uint8,
        uint16, float32), of size ``calib.test_size``.
    calib
        The rig calibration.
    interpolation
        ``"linear"``, ``"cubic"``, ``"lanczos"`` or ``"nearest"``.
    maps
        ``warp_maps(calib)``, to reuse across many images of a calibration with intrinsics
        (computing them costs about as much as ten remaps). Ignored without intrinsics.

    Returns
    -------
    tuple
        ``(warped, valid)``: ``warped`` is ``(H_r, W_r[, C])`` with the input's dtype, 0
        outside the test image; ``valid`` is ``(H_r, W_r)`` bool, True where every source
        pixel of the interpolation lay inside the test image.

    Raises
    ------
    ValueError
        If the image size differs from ``calib.test_size``.
    """
    import cv2

    if image_size(image) != calib.test_size:
        raise ValueError(
            f"test image is {image_size(image)[0]}x{image_size(image)[1]}, the calibration "
            f"is for {calib.test_size[0]}x{calib.test_size[1]}"
        )
    modes = {
        "linear": cv2.INTER_LINEAR,
        "cubic": cv2.INTER_CUBIC,
        "lanczos": cv2.INTER_LANCZOS4,
        "nearest": cv2.INTER_NEAREST,
    }
    if interpolation not in modes:
        raise ValueError(f"interpolation must be one of {', '.join(modes)}, got {interpolation!r}")
    tw, th = calib.test_size
    ones = np.full((th, tw), 255, np.uint8)
    if calib.reference_intrinsics is None and calib.test_intrinsics is None:
        # A pure projective map: warpPerspective is exact and several times faster than remap.
        h_raw = calib.homography @ calib.flip.matrix(calib.test_size)
        size = calib.reference_size
        warped = cv2.warpPerspective(
            image, h_raw, size, flags=modes[interpolation], borderMode=cv2.BORDER_CONSTANT
        )
        cover = cv2.warpPerspective(
            ones, h_raw, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
    else:
        map_x, map_y = maps if maps is not None else warp_maps(calib)
        warped = cv2.remap(
            image, map_x, map_y, modes[interpolation], borderMode=cv2.BORDER_CONSTANT
        )
        cover = cv2.remap(ones, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    # Linear interpolation of a 255 image is 255 only where all four neighbours are inside.
    return np.asarray(warped), np.asarray(cover) == 255


def largest_valid_rectangle(
    valid: npt.NDArray[np.bool_], max_cells: int = 128
) -> tuple[int, int, int, int]:
    """Largest axis-aligned rectangle of ``valid`` pixels, ``(x, y, width, height)``.

    Solved exactly on a grid of cells (at most ``max_cells`` per side) where a cell counts
    only if all its pixels are valid, then each side is pushed outwards pixel by pixel while
    the added row or column is still all valid. The result is always inside the valid region
    and, for the convex regions a homography gives, within a pixel or two of the optimum.
    ``(0, 0, 0, 0)`` when nothing is valid.

    Parameters
    ----------
    valid
        ``(H, W)`` bool mask (e.g. the ``valid`` of :func:`warp_test_to_reference`).
    max_cells
        Grid cells per side for the exact search (speed against the pixel refinement).

    Returns
    -------
    tuple
        ``(x, y, width, height)`` in pixels of ``valid`` (ints).
    """
    h, w = valid.shape
    cell = max(1, math.ceil(max(h, w) / max_cells))
    hc, wc = math.ceil(h / cell), math.ceil(w / cell)
    padded = np.ones((hc * cell, wc * cell), bool)  # outside the image: clipped below
    padded[:h, :w] = valid
    cells = np.asarray(padded.reshape(hc, cell, wc, cell).all(axis=(1, 3)), bool)
    best = (0, 0, 0, 0, 0)  # area, x, y, w, h in cells
    heights = np.zeros(wc, np.int64)
    for row in range(hc):
        heights = np.where(cells[row], heights + 1, 0)
        stack: list[int] = []  # largest rectangle in a histogram, O(wc) per row
        for col in range(wc + 1):
            current = int(heights[col]) if col < wc else 0
            while stack and int(heights[stack[-1]]) >= current:
                top = stack.pop()
                height = int(heights[top])
                left = stack[-1] + 1 if stack else 0
                area = height * (col - left)
                if area > best[0]:
                    best = (area, left, row - height + 1, col - left, height)
            stack.append(col)
    if best[0] == 0:
        return 0, 0, 0, 0
    _, x, y, bw, bh = best
    x0, y0 = x * cell, y * cell
    x1, y1 = min(w, (x + bw) * cell), min(h, (y + bh) * cell)  # exclusive
    grown = True
    while grown:
        grown = False
        if x0 > 0 and valid[y0:y1, x0 - 1].all():
            x0, grown = x0 - 1, True
        if x1 < w and valid[y0:y1, x1].all():
            x1, grown = x1 + 1, True
        if y0 > 0 and valid[y0 - 1, x0:x1].all():
            y0, grown = y0 - 1, True
        if y1 < h and valid[y1, x0:x1].all():
            y1, grown = y1 + 1, True
    return x0, y0, x1 - x0, y1 - y0


def valid_region(
    calib: RigCalibration,
    test_shape: tuple[int, ...],
    maps: tuple[F32, F32] | None = None,
) -> tuple[int, int, int, int]:
    """The largest rectangle of the reference frame that a warped test image covers.

    Parameters
    ----------
    calib
        The rig calibration.
    test_shape
        Shape of a raw test image, ``(H_t, W_t)`` or ``(H_t, W_t, C)``, of size
        ``calib.test_size``.
    maps
        ``warp_maps(calib)`` to reuse (see :func:`warp_test_to_reference`), or ``None``.

    Returns
    -------
    tuple
        ``(x, y, width, height)`` in raw reference pixels (ints); ``(0, 0, 0, 0)`` when the
        warped test image covers no pixel of the reference frame.
    """
    _, valid = warp_test_to_reference(np.zeros(test_shape, np.uint8), calib, maps=maps)
    return largest_valid_rectangle(valid)
