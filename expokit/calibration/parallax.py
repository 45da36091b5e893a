"""Parallax between the two cameras: depth layers that one homography cannot align.

A homography aligns one plane. Two bodies behind a beam splitter see the scene from one
point only when their entrance pupils coincide (the test body's, seen through the
splitter, on the reference body's); otherwise a near object moves against a far one and
no warp removes it. :func:`find_layers` looks for that in the feature matches of two views:
the dominant plane, then a second plane among what the first leaves, kept only when it is
clearly apart (more than ``min_px``) yet plausible (not a repeated pattern matched to its
neighbour, far off).

Which layer is near cannot be told from two views without the baseline, but the person at
the rig can show it: a ChArUco board held near the rig with texture far behind it. Where
the reference view shows ArUco markers, the layer on the board is the near one; then the
near layer's motion against the far one says where the test pupil is (for a test pupil
``t`` = ``(x, y, z)`` off the reference's, x right / y down on screen with the mirror
undone, z toward the scene, aligned on the far layer the near content of the test view is
displaced by about ``-f (t_x, t_y) (1/Z_near - 1/Z_far)`` and magnified by about
``1 + t_z (1/Z_near - 1/Z_far)``): :func:`parallax_advice` turns that into which way to
slide the test body and whether to move it along its axis.

References
----------
Hartley, R. and Zisserman, A. (2004) *Multiple View Geometry in Computer Vision*, 2nd ed.,
section 13.1 (a homography is induced by one plane; points off it show parallax).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from expokit.calibration.homography import (
    detect_sift,
    exposure_matched_pair,
    fit_homography,
    match_features,
    project,
    resize_to_max_side,
    to_uint8,
)
from expokit.calibration.mirror import Flip

__all__ = ["ParallaxLayers", "board_outline", "board_region", "find_layers", "parallax_advice"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

#: ArUco dictionary of the rig's board (``calibrate geometry``'s default).
BOARD_DICTIONARY = "DICT_6X6_250"


@dataclass(frozen=True)
class ParallaxLayers:
    """Two depth layers in the matches of a view pair.

    Attributes
    ----------
    layers
        Match counts of the first (dominant) and the second plane.
    residual_px
        Median distance (reference px) of each layer's matches from the alignment, same
        order: what the alignment leaves at each depth (the far layer's own plane when
        ``near`` is known, else the given homography).
    near
        Index (0 or 1) of the near layer when the reference view shows the board on one
        of them, else ``None`` (the scene cannot tell which is near).
    relative_shift_px
        ``(x, y)``: displacement of the test view's content of the near layer (of the second
        layer when ``near`` is ``None``) against its far (first) layer, at the frame's
        centre, on screen with the mirror undone, reference px, x right, y down.
    relative_scale_pct
        How much larger (%) that layer's test content appears than the other's, relative to
        the reference view.
    far_homography
        ``(3, 3)``, flipped test -> reference px: the far layer's own plane when ``near`` is
        known (the alignment a dataset of distant scenes needs), else ``None``.
    near_region
        ``(N, 2)`` reference px: the outline of the board when it marks the near layer.
    min_px
        The parallax below which the layers count as aligned (the check's threshold).
    """

    layers: tuple[int, int]
    residual_px: tuple[float, float]
    near: int | None
    relative_shift_px: tuple[float, float]
    relative_scale_pct: float
    far_homography: F64 | None = None
    near_region: F64 | None = None
    min_px: float = 2.0

    @property
    def parallax_px(self) -> float:
        """The larger of the two layers' residuals: how far apart the alignment leaves them."""
        return max(self.residual_px)

    def describe(self) -> str:
        first, second = self.layers
        r0, r1 = self.residual_px
        if self.near is not None and self.parallax_px <= self.min_px:
            return (
                f"no parallax: the near board and the far layer both align within "
                f"{self.parallax_px:.2f} px"
            )
        if self.near is None:
            return (
                f"the matches lie on two layers that move differently: {first} matches "
                f"{r0:.2f} px from the alignment, {second} matches {r1:.1f} px; which is near "
                "cannot be told (hold the ChArUco board near the rig, texture far behind)"
            )
        near_px, far_px = (r0, r1) if self.near == 0 else (r1, r0)
        return (
            f"parallax: the near layer (the board) is {near_px:.2f} px and the far layer "
            f"{far_px:.2f} px from the alignment"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON of ``align check``'s ``parallax`` field."""
        near_px = far_px = None
        if self.near is not None:
            near_px = self.residual_px[self.near]
            far_px = self.residual_px[1 - self.near]
        return {
            "layers": list(self.layers),
            "residual_px": list(self.residual_px),
            "near_layer": None if self.near is None else ("first", "second")[self.near],
            "near_px": near_px,
            "far_px": far_px,
            "relative_shift_px": list(self.relative_shift_px),
            "relative_scale_pct": self.relative_scale_pct,
            "parallax_px": self.parallax_px,
            "near_region": None if self.near_region is None else self.near_region.tolist(),
            "description": self.describe(),
        }


def board_region(gray: F32, dictionary: str = BOARD_DICTIONARY) -> F64 | None:
    """Convex hull ``(N, 2)`` of the ArUco markers of ``dictionary`` seen in ``gray``
    (``(H, W)`` float in [0, 1]), or ``None`` with fewer than four markers."""
    import cv2

    detector = cv2.aruco.ArucoDetector(
        cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, dictionary)),
        cv2.aruco.DetectorParameters(),
    )
    image = np.clip(np.asarray(gray, np.float32) * 255 + 0.5, 0, 255).astype(np.uint8)
    corners, ids, _ = detector.detectMarkers(image)
    if ids is None or len(ids) < 4:
        return None
    points = np.concatenate([c.reshape(-1, 2) for c in corners]).astype(np.float32)
    return np.asarray(cv2.convexHull(points).reshape(-1, 2), np.float64)


def board_outline(region: F64) -> F64:
    """``region`` (the markers' hull) grown about its centroid to cover the whole board: its
    outer squares and border lie up to about one square beyond the markers."""
    mid = region.mean(axis=0)
    return np.asarray(mid + 1.35 * (region - mid), np.float64)


def _inside(polygon: F64, points: F64) -> npt.NDArray[np.bool_]:
    import cv2

    contour = polygon.astype(np.float32).reshape(-1, 1, 2)
    return np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0
                     for x, y in points], bool)  # fmt: skip


def _spread(points: F64, size: tuple[int, int]) -> bool:
    """The points cover more than a speck of the frame (not one blob of noise)."""
    w, h = size
    extent = points.max(axis=0) - points.min(axis=0)
    return bool(extent[0] > 0.05 * w and extent[1] > 0.05 * h)


def _relative_motion(
    h_far: F64, test_near: F64, ref_near: F64, centre: F64
) -> tuple[tuple[float, float], float]:
    """Shift (at ``centre``) and scale of the near layer's test content against the far
    layer: where the far layer's alignment puts the near test content, against the
    reference's."""
    import cv2

    landed = project(h_far, test_near)
    model, _ = cv2.estimateAffinePartial2D(
        ref_near.astype(np.float32), landed.astype(np.float32), method=cv2.LMEDS
    )
    if model is None:
        shift = np.median(landed - ref_near, axis=0)
        return (float(shift[0]), float(shift[1])), 0.0
    # The shift at the frame's centre: the pupil's sideways part, apart from its magnification.
    at_centre = np.asarray(model, np.float64) @ np.array([centre[0], centre[1], 1.0]) - centre
    scale = math.hypot(float(model[0, 0]), float(model[1, 0]))
    return (float(at_centre[0]), float(at_centre[1])), (scale - 1.0) * 100.0


def find_layers(
    reference_gray: F32,
    test_gray: F32,
    homography: F64,
    max_side: int = 2000,
    min_px: float = 2.0,
    dictionary: str = BOARD_DICTIONARY,
) -> ParallaxLayers | None:
    """Look for two depth layers in the matches of a view pair.

    Parameters
    ----------
    reference_gray, test_gray
        ``(H, W)`` float32 in [0, 1]; the test view with the mirror undone.
    homography
        ``(3, 3)``: the alignment (flipped test -> reference px) whose residuals are
        reported per layer.
    max_side
        Views are downscaled to this longer side for features.
    min_px
        A second plane counts only when it maps its matches more than this far (reference
        px, median) from where the first plane does.
    dictionary
        ArUco dictionary of the board that marks the near layer.

    Returns
    -------
    ParallaxLayers or None
        With the board seen in front of a textured background: its layers, whatever their
        parallax (below ``min_px`` the pupils coincide). Without it: two layers when a
        second plane is more than ``min_px`` apart; ``None`` when one plane explains the
        matches (the scene cannot tell) or there are too few matches.
    """
    ref_small, ref_scale = resize_to_max_side(reference_gray, max_side)
    test_small, test_scale = resize_to_max_side(test_gray, max_side)
    ref_n, test_n, white = exposure_matched_pair(ref_small, test_small)
    ref_f = detect_sift(to_uint8(ref_n, white), 8000, ref_scale)
    test_f = detect_sift(to_uint8(test_n, white), 8000, test_scale)
    t_pts, r_pts = (np.asarray(p, np.float64) for p in match_features(test_f, ref_f, 0.75))
    if len(t_pts) < 30:
        return None
    height, width = reference_gray.shape[:2]
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    residual = np.linalg.norm(project(homography, t_pts) - r_pts, axis=1)
    region = board_region(reference_gray, dictionary)
    if region is not None:
        layers = _board_layers(t_pts, r_pts, region, centre, min_px)
        if layers is not False:
            return layers
    return _greedy_layers(t_pts, r_pts, residual, (width, height), centre, min_px)


def _board_layers(
    t_pts: F64, r_pts: F64, region: F64, centre: F64, min_px: float
) -> ParallaxLayers | Literal[False] | None:
    """Layers split by the board: matches on it are the near layer, matches well off it the
    far one, residuals under the far layer's plane (reported even when the pupils coincide:
    the scene can tell); ``False`` when either side has too few matches to tell."""
    on_board = _inside(region, r_pts)
    off_board = ~_inside(board_outline(region), r_pts)
    if int(on_board.sum()) < 15 or int(off_board.sum()) < 15:
        return False
    h_near, inl_near = fit_homography(t_pts[on_board], r_pts[on_board], 1.0)
    h_far, inl_far = fit_homography(t_pts[off_board], r_pts[off_board], 1.0)
    if h_near is None or h_far is None or min(int(inl_near.sum()), int(inl_far.sum())) < 15:
        return False
    near = np.flatnonzero(on_board)[inl_near]
    far = np.flatnonzero(off_board)[inl_far]
    # Residuals under the far layer's own plane: the alignment reported with a known board.
    off_far = np.linalg.norm(project(h_far, t_pts) - r_pts, axis=1)
    shift, scale_pct = _relative_motion(h_far, t_pts[near], r_pts[near], centre)
    return ParallaxLayers(
        layers=(len(far), len(near)),
        residual_px=(float(np.median(off_far[far])), float(np.median(off_far[near]))),
        near=1,
        relative_shift_px=shift,
        relative_scale_pct=scale_pct,
        far_homography=h_far,
        near_region=region,
        min_px=min_px,
    )


def _greedy_layers(
    t_pts: F64,
    r_pts: F64,
    residual: F64,
    size: tuple[int, int],
    centre: F64,
    min_px: float,
) -> ParallaxLayers | None:
    """Layers without a board: the dominant plane, then a second among what it leaves."""
    h1, inl1 = fit_homography(t_pts, r_pts, 1.0)
    if h1 is None:
        return None
    # Parallax on a rig is a few percent of the frame at most; matches much further off the
    # first plane are repeated patterns (board squares) matched to a neighbour.
    cap = max(20.0, 0.05 * math.hypot(*size))
    off_first = np.linalg.norm(project(h1, t_pts) - r_pts, axis=1)
    rest = ~inl1 & (off_first < cap)
    min_layer = max(15, int(0.05 * len(t_pts)))
    if int(rest.sum()) < min_layer:
        return None
    h2, inl2 = fit_homography(t_pts[rest], r_pts[rest], 1.0)
    if h2 is None or int(inl2.sum()) < min_layer:
        return None
    first, second = np.flatnonzero(inl1), np.flatnonzero(rest)[inl2]
    gap = project(h2, t_pts[second]) - project(h1, t_pts[second])
    apart = float(np.median(np.linalg.norm(gap, axis=1)))
    if not min_px < apart < cap or not _spread(r_pts[second], size):
        return None
    shift, scale_pct = _relative_motion(h1, t_pts[second], r_pts[second], centre)
    return ParallaxLayers(
        layers=(len(first), len(second)),
        residual_px=(float(np.median(residual[first])), float(np.median(residual[second]))),
        near=None,
        relative_shift_px=shift,
        relative_scale_pct=scale_pct,
        min_px=min_px,
    )


def parallax_advice(layers: ParallaxLayers, flip: Flip, max_px: float) -> list[str]:
    """Sentences for the person behind the test body (conventions of
    :mod:`~expokit.calibration.alignment_check`); empty when the layers are within ``max_px``.

    The test pupil moves by sliding the body (not panning it): sideways toward where its
    near content appears displaced on its own screen, and along its axis away from the
    scene (back from the splitter) when its near content appears larger.
    """
    if layers.parallax_px <= max_px:
        return []
    if layers.near is None:
        return [layers.describe() + "; a homography aligns only one of them"]
    sx = -1.0 if flip in (Flip.HORIZONTAL, Flip.BOTH) else 1.0
    sy = -1.0 if flip in (Flip.VERTICAL, Flip.BOTH) else 1.0
    dx, dy = layers.relative_shift_px
    own_x, own_y = sx * dx, sy * dy  # on the test camera's own screen
    out = [f"{layers.describe()}: the entrance pupils do not coincide"]
    moves = []
    if abs(own_x) > max_px / 2:
        moves.append(f"slide the test body {'right' if own_x > 0 else 'left'}")
    if abs(own_y) > max_px / 2:
        moves.append(f"{'lower' if own_y > 0 else 'raise'} the test body")
    if moves:
        out.append(
            f"{' and '.join(moves)} (seen from behind, moving it without turning it) until the "
            f"board stops moving against the background ({math.hypot(dx, dy):.1f} px now)"
        )
    scale = layers.relative_scale_pct
    if abs(scale) > 0.1:
        direction = "back, away from" if scale > 0 else "forward, toward"
        out.append(
            f"move the test body {direction} the splitter along its optical axis: the board "
            f"is {abs(scale):.2f} % {'larger' if scale > 0 else 'smaller'} in it against the "
            "far layer than in the reference; then match the scale again with the zoom"
        )
    return out
