"""Test -> reference homography: features, robust fitting, sanity checks and ECC refinement.

Conventions
-----------
* A homography ``H`` maps *test* pixel coordinates to *reference* pixel coordinates,
  ``[x_r, y_r, 1]^T ~ H [x_t, y_t, 1]^T``, so ``cv2.warpPerspective(test, H, ref_size)`` puts
  the test image onto the reference grid.
* Pixel coordinates put the centre of the top-left pixel at ``(0, 0)`` (OpenCV's convention).
* ``cv2.findTransformECC(template, input, warp)`` estimates a warp from *template* to *input*
  coordinates (``template(x) ~ input(warp x)``). With the reference as template it returns
  ``H^-1``; :func:`refine_ecc` inverts it.

The two cameras of the rig see the scene 2-3 EV apart, so nothing here compares raw pixel
values: features run on histogram-matched 8-bit images (:func:`match_histogram`) and ECC's
correlation coefficient is invariant to gain and offset by construction; the remaining
non-linearity (tone curve, clipping) is removed by the same histogram matching.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from expokit.core.errors import InputFileError

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Size = tuple[int, int]  # (width, height), OpenCV order

#: ECC motion models in fallback order; "identity" means "keep the initial estimate".
ECC_MOTIONS: tuple[str, ...] = ("homography", "affine", "translation")


class TooFewMatchesError(InputFileError):
    """Too few feature matches or board corners to estimate a homography."""


class DegenerateHomographyError(InputFileError):
    """A homography that cannot be a camera-to-camera mapping (singular, folded, ...)."""


# --------------------------------------------------------------------------- images


def to_gray_float(image: npt.NDArray[Any]) -> F32:
    """Grayscale in ``[0, 1]`` from an OpenCV image.

    Parameters
    ----------
    image
        ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` (BGR) or ``(H, W, 4)`` (BGRA); uint8, uint16
        (scaled by their maximum) or float (taken as ``[0, 1]``).

    Returns
    -------
    numpy.ndarray
        Shape ``(H, W)``, float32.
    """
    import cv2

    array = np.asarray(image)
    if array.dtype == np.uint8:
        values = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        values = array.astype(np.float32) / 65535.0
    elif np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
    else:
        raise ValueError(f"unsupported image dtype {array.dtype}")
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[:, :, 0]
    if values.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if values.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        values = np.asarray(cv2.cvtColor(values, code), np.float32)
    if values.ndim != 2:
        raise ValueError(f"not an image: shape {array.shape}")
    return np.ascontiguousarray(values, dtype=np.float32)


def image_size(image: npt.NDArray[Any]) -> Size:
    """``(width, height)`` of an ``(H, W, ...)`` array."""
    return int(image.shape[1]), int(image.shape[0])


def match_histogram(
    source: F32,
    reference: F32,
    source_mask: npt.NDArray[np.bool_] | None = None,
    reference_mask: npt.NDArray[np.bool_] | None = None,
    quantiles: int = 1024,
) -> F32:
    """Map ``source`` through the monotonic tone curve that gives it ``reference``'s histogram.

    This removes an exposure difference (gain), a different tone curve and most of the effect
    of clipping, which is what lets a 2-3 EV darker image be matched to the reference.

    Parameters
    ----------
    source, reference
        Shapes ``(H1, W1)`` and ``(H2, W2)``, float32 (any range).
    source_mask, reference_mask
        Optional boolean masks of the same shapes: the pixels that show the same part of the
        scene (the overlap). Default: all pixels.
    quantiles
        Number of quantiles the curve is built from.

    Returns
    -------
    numpy.ndarray
        ``source`` mapped into ``reference``'s value range, same shape, float32.
    """
    src = source[source_mask] if source_mask is not None else source.ravel()
    ref = reference[reference_mask] if reference_mask is not None else reference.ravel()
    if src.size == 0 or ref.size == 0:
        return source.copy()
    src_q = _quantiles(src, quantiles)
    ref_q = _quantiles(ref, quantiles)
    # Clipped images have long runs of equal quantiles; np.interp needs increasing x, so each
    # run maps to the mean of the reference quantiles it covers.
    unique, inverse = np.unique(src_q, return_inverse=True)
    if unique.size < 2:
        return np.full_like(source, float(np.median(ref)))
    targets = np.bincount(inverse, weights=ref_q) / np.bincount(inverse)
    return np.interp(source, unique, targets).astype(np.float32)


def clipped_fraction(gray: F32, low: float = 0.002, high: float = 0.995) -> float:
    """Fraction of pixels crushed to black (``<= low``) or clipped to white (``>= high``)."""
    sample = gray[:: max(1, gray.shape[0] // 512)]
    return float(np.mean((sample <= low) | (sample >= high)))


def exposure_matched_pair(reference: F32, test: F32) -> tuple[F32, F32, float]:
    """Both images on one tone scale for feature matching, and the white point to use.

    The image that lost less to clipping is mapped onto the other's histogram. Mapping the
    well-exposed reference onto a test image 2-3 EV *over* exposed recreates the test's
    clipping contours in the reference, so they match as edges; the other way round they
    would be flat white areas facing texture.

    Returns
    -------
    tuple
        ``(reference, test, white)``: float32 images of the input shapes and the level
        :func:`to_uint8` should map to 255.
    """
    if clipped_fraction(test) > clipped_fraction(reference) + 0.02:
        mapped = match_histogram(reference, test)
        return mapped, test, white_point(test)
    return reference, match_histogram(test, reference), white_point(reference)


def _quantiles(values: npt.NDArray[Any], count: int) -> F64:
    """``count`` evenly spaced quantiles (0..1) of ``values``, from a strided subsample.

    Quantiles of ~250k samples are as good as of every pixel for a tone curve, and one sort
    is much faster than ``np.quantile`` with a thousand quantiles.
    """
    sample = np.sort(values.ravel()[:: max(1, values.size // 262_144)])
    index = np.linspace(0.0, sample.size - 1, count)
    return np.interp(index, np.arange(sample.size), sample)


def to_uint8(gray: F32, white: float) -> npt.NDArray[np.uint8]:
    """Scale ``gray`` so ``white`` maps to 255 and quantise (for SIFT and the QA images)."""
    scale = 255.0 / max(white, 1e-6)
    return np.clip(gray * scale + 0.5, 0, 255).astype(np.uint8)


def white_point(gray: F32) -> float:
    """99.5th percentile: the level :func:`to_uint8` maps to 255 (ignores specular spots)."""
    return float(np.percentile(gray[:: max(1, gray.shape[0] // 512)], 99.5)) or 1.0


def resize_to_max_side(image: npt.NDArray[Any], max_side: int | None) -> tuple[Any, float]:
    """Downscale (INTER_AREA) so the longer side is at most ``max_side``; return the scale."""
    import cv2

    longest = max(image.shape[:2])
    if max_side is None or longest <= max_side:
        return image, 1.0
    scale = max_side / longest
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def scale_matrix(scale_x: float, scale_y: float) -> F64:
    """Pixel-centre-exact 3x3 map from full to resized coordinates (``cv2.resize``)."""
    return np.array(
        [[scale_x, 0.0, 0.5 * scale_x - 0.5], [0.0, scale_y, 0.5 * scale_y - 0.5], [0, 0, 1.0]]
    )


def resized_scale(full: Size, scaled: Size) -> F64:
    """:func:`scale_matrix` for an image resized from ``full`` to ``scaled`` (width, height)."""
    return scale_matrix(scaled[0] / full[0], scaled[1] / full[1])


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class Features:
    """SIFT keypoints of one image.

    Attributes
    ----------
    points
        Shape ``(N, 2)``, float32, keypoint positions (x, y) in full-resolution pixels.
    descriptors
        Shape ``(N, 128)``, float32.
    """

    points: F32
    descriptors: F32

    def __len__(self) -> int:
        return int(self.points.shape[0])


def detect_sift(gray_u8: npt.NDArray[np.uint8], max_features: int, scale: float = 1.0) -> Features:
    """SIFT keypoints and descriptors of an 8-bit image.

    Parameters
    ----------
    gray_u8
        Shape ``(H, W)``, uint8, possibly downscaled by ``scale`` from the full image.
    max_features
        Keep at most this many (strongest) keypoints; 0 = all.
    scale
        The downscale factor of ``gray_u8``; points are returned in full-resolution pixels.
    """
    import cv2

    sift = cv2.SIFT_create(nfeatures=max_features)  # type: ignore[attr-defined]
    keypoints, descriptors = sift.detectAndCompute(gray_u8, None)
    if descriptors is None or not keypoints:
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))
    points = np.array([k.pt for k in keypoints], dtype=np.float64)
    if scale != 1.0:
        points = (points + 0.5) / scale - 0.5
    return Features(points.astype(np.float32), np.asarray(descriptors, np.float32))


def match_features(test: Features, reference: Features, ratio: float) -> tuple[F32, F32]:
    """Nearest-neighbour matches that pass Lowe's ratio test.

    Returns
    -------
    tuple
        ``(test_points, reference_points)``, each ``(M, 2)`` float32, row ``i`` a match.
    """
    import cv2

    empty = np.zeros((0, 2), np.float32)
    if len(test) < 2 or len(reference) < 2:
        return empty, empty
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    pairs = matcher.knnMatch(test.descriptors, reference.descriptors, k=2)
    keep = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    if not keep:
        return empty, empty
    t_idx = np.array([m.queryIdx for m in keep])
    r_idx = np.array([m.trainIdx for m in keep])
    return test.points[t_idx], reference.points[r_idx]


def fit_homography(
    test_points: npt.NDArray[Any],
    reference_points: npt.NDArray[Any],
    threshold: float,
    method: str = "magsac",
    seed: int = 0,
) -> tuple[F64 | None, npt.NDArray[np.bool_]]:
    """Robust homography test -> reference.

    Parameters
    ----------
    test_points, reference_points
        Shapes ``(N, 2)``, corresponding pixel coordinates, ``N >= 4``.
    threshold
        Inlier threshold in reference pixels (MAGSAC: the maximum noise scale).
    method
        ``"magsac"`` (``cv2.USAC_MAGSAC``), ``"ransac"`` (``cv2.RANSAC``) or ``"lsq"`` (all
        points, least squares; for board corners, which have no outliers).
    seed
        Seed of OpenCV's random generator, so results are reproducible.

    Returns
    -------
    tuple
        ``(H, inliers)``: ``H`` is ``(3, 3)`` float64 normalised to ``H[2, 2] = 1`` or ``None``
        when no model was found; ``inliers`` is ``(N,)`` bool.
    """
    import cv2

    n = len(test_points)
    if n < 4:
        return None, np.zeros(n, bool)
    src = np.asarray(test_points, np.float64).reshape(-1, 1, 2)
    dst = np.asarray(reference_points, np.float64).reshape(-1, 1, 2)
    cv2.setRNGSeed(seed)
    codes = {"magsac": cv2.USAC_MAGSAC, "ransac": cv2.RANSAC, "lsq": 0}
    if method not in codes:
        raise ValueError(f"unknown homography method {method!r}")
    if codes[method] == 0:
        h, mask = cv2.findHomography(src, dst, 0)
    else:
        h, mask = cv2.findHomography(
            src, dst, codes[method], threshold, maxIters=10000, confidence=0.9999
        )
    if h is None or not np.all(np.isfinite(h)) or abs(h[2, 2]) < 1e-12:
        return None, np.zeros(n, bool)
    inliers = np.ones(n, bool) if mask is None else np.asarray(mask).ravel().astype(bool)
    return np.asarray(h, np.float64) / h[2, 2], inliers


def project(h: npt.NDArray[Any], points: npt.NDArray[Any]) -> F64:
    """Apply a 3x3 homography to ``(N, 2)`` points; returns ``(N, 2)`` float64."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    homog = np.c_[pts, np.ones(len(pts))] @ np.asarray(h, np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(homog[:, :2] / homog[:, 2:3], np.float64)


def transfer_rms(
    h: npt.NDArray[Any], test_points: npt.NDArray[Any], reference_points: Any
) -> float:
    """RMS distance in reference pixels between ``H(test_points)`` and ``reference_points``."""
    if len(test_points) == 0:
        return float("nan")
    d = project(h, test_points) - np.asarray(reference_points, np.float64)
    return float(np.sqrt(np.mean(np.sum(d * d, axis=1))))


def grid_points(size: Size, step: float) -> F64:
    """Points of a regular grid covering ``size`` = (width, height), borders included."""
    w, h = size
    xs = np.linspace(0, w - 1, max(2, math.ceil((w - 1) / step) + 1))
    ys = np.linspace(0, h - 1, max(2, math.ceil((h - 1) / step) + 1))
    gx, gy = np.meshgrid(xs, ys)
    return np.c_[gx.ravel(), gy.ravel()]


def homography_grid_error(
    h: npt.NDArray[Any], h_true: npt.NDArray[Any], size: Size, step: float = 10.0
) -> tuple[float, float]:
    """Mean and max distance between two homographies' images of a grid over ``size``.

    The accuracy measure used against ground truth (e.g. ``H1to3p``): points every ``step``
    pixels over the whole source image (width, height), distances in target pixels.
    """
    pts = grid_points(size, step)
    d = np.linalg.norm(project(h, pts) - project(h_true, pts), axis=1)
    return float(np.mean(d)), float(np.max(d))


# --------------------------------------------------------------------------- sanity checks


@dataclass(frozen=True)
class HomographyLimits:
    """What a test -> reference homography of a rig may look like.

    Attributes
    ----------
    max_condition
        Maximum condition number of ``H`` expressed in unit-square coordinates of both images
        (a plain resize has condition ~1, graf1->graf3 ~3; a near-singular fit is >> 1e3).
    area_ratio
        ``(min, max)`` of (area of the test image mapped into the reference) / (reference
        area): a mapping that squeezes the test image to a sliver or blows it up 50x is wrong.
    min_overlap
        Minimum fraction of the reference image the mapped test image must cover.
    """

    max_condition: float = 1e3
    area_ratio: tuple[float, float] = (0.05, 20.0)
    min_overlap: float = 0.1

    def __post_init__(self) -> None:
        lo, hi = self.area_ratio
        if not (self.max_condition > 1 and 0 < lo < hi and 0 < self.min_overlap <= 1):
            raise ValueError(f"invalid homography limits: {self}")


def _polygon_area(points: F64) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def clip_to_rectangle(polygon: F64, size: Size) -> F64:
    """``polygon`` (``(N, 2)``, convex) clipped to the image rectangle of ``size`` (corner
    pixel centres), by Sutherland-Hodgman in float64.

    ``cv2.intersectConvexConvex`` works in float32 and loses area when edges coincide (a
    nearly perfect homography read 88 % coverage), so the overlap is clipped here exactly.
    """
    w, h = size
    points = [tuple(p) for p in np.asarray(polygon, np.float64)]
    # Each edge of the rectangle: (axis, bound, keep points with value <= bound if upper).
    for axis, bound, upper in ((0, 0.0, False), (0, w - 1.0, True), (1, 0.0, False),
                               (1, h - 1.0, True)):  # fmt: skip
        if not points:
            break

        def inside(p: tuple[float, ...], axis: int = axis, bound: float = bound,
                   upper: bool = upper) -> bool:  # fmt: skip
            return p[axis] <= bound if upper else p[axis] >= bound

        clipped: list[tuple[float, ...]] = []
        for i, current in enumerate(points):
            previous = points[i - 1]
            if inside(current) != inside(previous):
                t = (bound - previous[axis]) / (current[axis] - previous[axis])
                clipped.append(
                    tuple(previous[k] + t * (current[k] - previous[k]) for k in range(2))
                )
            if inside(current):
                clipped.append(current)
        points = clipped
    return np.array(points, np.float64).reshape(-1, 2)


def overlap_fraction(mapped: F64, reference_size: Size) -> float:
    """Share (0..1) of the reference frame that the convex quadrilateral ``mapped``
    (test corners in reference pixels) covers."""
    w, h = reference_size
    clipped = clip_to_rectangle(mapped, reference_size)
    if len(clipped) < 3:
        return 0.0
    area = abs(_polygon_area(clipped))
    return float(min(1.0, area / ((w - 1) * (h - 1))))


def image_corners(size: Size) -> F64:
    """The four corner pixel centres of an image, clockwise from top-left, ``(4, 2)``."""
    w, h = size
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)


def homography_problem(
    h: npt.NDArray[Any] | None, test_size: Size, reference_size: Size, limits: HomographyLimits
) -> str | None:
    """Why ``h`` is not a usable test -> reference homography, or ``None`` when it is.

    Checks: finite; orientation-preserving (mirroring is handled by the flip, so a
    reflection here is a wrong fit) with a sane determinant; condition number in normalised
    coordinates; every test image corner in front of the camera (positive projective scale)
    and the four mapped corners a convex quadrilateral of plausible area that overlaps the
    reference image.
    """

    if h is None:
        return "no homography could be fitted"
    hm = np.asarray(h, np.float64)
    if hm.shape != (3, 3) or not np.all(np.isfinite(hm)):
        return "homography is not a finite 3x3 matrix"
    tw, th = test_size
    rw, rh = reference_size
    normalised = np.diag([1 / rw, 1 / rh, 1.0]) @ hm @ np.diag([tw, th, 1.0])
    normalised = normalised / np.linalg.norm(normalised)
    det = float(np.linalg.det(normalised))
    if not math.isfinite(det) or abs(det) < 1e-9:
        return f"homography is singular (normalised determinant {det:.3g})"
    condition = float(np.linalg.cond(normalised))
    if not condition < limits.max_condition:
        return f"homography is ill-conditioned (condition number {condition:.3g})"
    corners = image_corners(test_size)
    scale = np.c_[corners, np.ones(4)] @ hm[2]
    if np.any(scale <= 0) and np.any(scale >= 0):
        return "homography maps part of the test image through infinity"
    mapped = project(hm, corners)
    edges = np.roll(mapped, -1, axis=0) - mapped
    cross = edges[:, 0] * np.roll(edges[:, 1], -1) - edges[:, 1] * np.roll(edges[:, 0], -1)
    if not (np.all(cross > 0) or np.all(cross < 0)):
        return "the test image corners do not map to a convex quadrilateral"
    area = _polygon_area(mapped)
    if area < 0:
        return "homography mirrors the image (orientation-reversing)"
    ratio = area / (rw * rh)
    lo, hi = limits.area_ratio
    if not lo <= ratio <= hi:
        return f"test image maps to {ratio:.3g} x the reference area (allowed {lo:g}..{hi:g})"
    fraction = overlap_fraction(mapped, reference_size)
    if fraction < limits.min_overlap:
        return (
            f"mapped test image covers {fraction:.1%} of the reference "
            f"(need {limits.min_overlap:.0%})"
        )
    return None


def check_homography(
    h: npt.NDArray[Any] | None,
    test_size: Size,
    reference_size: Size,
    source: str,
    limits: HomographyLimits | None = None,
) -> F64:
    """Return ``h`` normalised to ``h[2, 2] = 1``, or raise when it is degenerate.

    Parameters
    ----------
    source
        The file (or files) the homography came from, named in the error.

    Raises
    ------
    DegenerateHomographyError
        With the reason from :func:`homography_problem`.
    """
    problem = homography_problem(h, test_size, reference_size, limits or HomographyLimits())
    if problem is not None or h is None:
        raise DegenerateHomographyError(source, problem or "no homography")
    hm = np.asarray(h, np.float64)
    return hm / hm[2, 2]


# --------------------------------------------------------------------------- ECC


@dataclass(frozen=True)
class EccSettings:
    """Parameters of the ECC refinement (``cv2.findTransformECC``).

    Attributes
    ----------
    motions
        Motion models tried in order until one is accepted; the initial estimate is kept
        ("identity" refinement) when none is. Subset of :data:`ECC_MOTIONS`.
    levels
        Pyramid levels, coarse to fine: 3 runs at 1/4, 1/2 and 1 of the working resolution.
        Coarse levels widen the basin of convergence; the fine level sets the accuracy.
    max_side
        Working resolution: the finest level is downscaled so its longer side is at most this
        (ECC cost grows with pixels; 24 MP at full resolution takes minutes). ``None`` = full.
    iterations, epsilon
        Termination per level: at most ``iterations`` updates, or a correlation gain below
        ``epsilon``.
    gauss_size
        Gaussian pre-filter size OpenCV applies to both images (odd; 1 = none). 5 keeps the
        estimate stable on the noisy, stretched shadows of an image 2-3 EV under-exposed.
    max_shift
        Largest displacement, as a fraction of the reference diagonal, the refinement may move
        any image corner away from the initial estimate; larger moves mean ECC diverged.
    """

    motions: tuple[str, ...] = ECC_MOTIONS
    levels: int = 3
    max_side: int | None = 3000
    iterations: int = 100
    epsilon: float = 1e-6
    gauss_size: int = 5
    max_shift: float = 0.02

    def __post_init__(self) -> None:
        object.__setattr__(self, "motions", tuple(self.motions))
        unknown = [m for m in self.motions if m not in ECC_MOTIONS]
        if unknown or len(set(self.motions)) != len(self.motions):
            raise ValueError(
                f"ECC motions must be distinct names from {', '.join(ECC_MOTIONS)}, "
                f"got {self.motions}"
            )
        if not 1 <= self.levels <= 6:
            raise ValueError(f"ECC levels must be 1..6, got {self.levels}")
        if self.max_side is not None and self.max_side < 64:
            raise ValueError(f"ECC max side must be >= 64 px, got {self.max_side}")
        if self.iterations < 1 or not self.epsilon >= 0:
            raise ValueError("ECC iterations must be >= 1 and epsilon >= 0")
        if self.gauss_size < 1 or self.gauss_size % 2 == 0:
            raise ValueError(f"ECC Gaussian size must be odd (1 = no blur), got {self.gauss_size}")
        if not 0 < self.max_shift <= 1:
            raise ValueError(f"ECC max shift must be in (0, 1], got {self.max_shift}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["motions"] = list(self.motions)
        return out


@dataclass(frozen=True)
class EccAttempt:
    """One motion model tried by :func:`refine_ecc` (recorded in ``rig_calibration.json``)."""

    motion: str
    ok: bool
    reason: str
    correlation: float | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EccResult:
    """Outcome of :func:`refine_ecc`.

    Attributes
    ----------
    homography
        ``(3, 3)`` float64, test -> reference, the refined estimate (or the initial one).
    motion
        The accepted motion model, or ``"identity"`` when every attempt was rejected.
    correlation, initial_correlation
        ECC correlation coefficient (``[-1, 1]``) of the aligned, exposure-normalised images at
        the working resolution, after and before refinement.
    attempts
        Every model tried, in order, with why it was accepted or rejected.
    working_scale
        Finest-level scale relative to the full-resolution reference.
    """

    homography: F64
    motion: str
    correlation: float
    initial_correlation: float
    attempts: tuple[EccAttempt, ...]
    working_scale: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "motion": self.motion,
            "correlation": self.correlation,
            "initial_correlation": self.initial_correlation,
            "working_scale": self.working_scale,
            "attempts": [a.to_dict() for a in self.attempts],
        }


def _resize(image: F32, scale: float) -> F32:
    import cv2

    if scale == 1.0:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.float32)


def _warp(image: npt.NDArray[Any], h: F64, size: Size, nearest: bool = False) -> Any:
    import cv2

    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpPerspective(image, h, size, flags=flags, borderMode=cv2.BORDER_CONSTANT)


def alignment_correlation(
    reference: F32,
    test: F32,
    h: F64,
    test_valid: npt.NDArray[np.uint8] | None = None,
    gauss_size: int = 5,
) -> float:
    """ECC correlation of ``reference`` and ``test`` warped by ``h``, over their overlap.

    Both images are blurred as ``findTransformECC`` blurs them, so the value is comparable
    with what it reports. Returns ``-1`` when the overlap is empty.
    """
    import cv2

    size = image_size(reference)
    valid = test_valid if test_valid is not None else np.full(test.shape, 255, np.uint8)
    warped = np.asarray(_warp(test, h, size), np.float32)
    mask = _warp(valid, h, size, nearest=True)
    if int(np.count_nonzero(mask)) < 16:
        return -1.0
    ref = reference
    if gauss_size > 1:
        kernel = (gauss_size, gauss_size)
        ref = np.asarray(cv2.GaussianBlur(reference, kernel, 0), np.float32)
        warped = np.asarray(cv2.GaussianBlur(warped, kernel, 0), np.float32)
    return float(cv2.computeECC(ref, warped, mask))


def _corner_shift(h_new: F64, h_old: F64, test_size: Size) -> float:
    corners = image_corners(test_size)
    return float(np.max(np.linalg.norm(project(h_new, corners) - project(h_old, corners), axis=1)))


def _ecc_levels(
    reference: F32,
    test: F32,
    valid: npt.NDArray[np.uint8],
    h0: F64,
    motion: str,
    settings: EccSettings,
    finest: float,
) -> F64:
    """Run ECC coarse to fine; return the refined test -> reference homography (full res).

    ``homography``: the warp ``H^-1`` (reference -> test) is refined directly from ``h0``.
    ``affine``/``translation``: the test image is first warped by ``h0`` onto the reference
    grid and ECC estimates a residual warp ``W`` (reference -> pre-warped test) from the
    identity; then ``H = W^-1 h0``. Raises ``cv2.error`` when ECC does not converge.
    """
    import cv2

    codes = {
        "homography": cv2.MOTION_HOMOGRAPHY,
        "affine": cv2.MOTION_AFFINE,
        "translation": cv2.MOTION_TRANSLATION,
    }
    criteria = (
        cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT,
        settings.iterations,
        settings.epsilon,
    )
    ref_size, test_size = image_size(reference), image_size(test)
    direct = motion == "homography"
    # Full-resolution reference -> (test or pre-warped test) warp being refined.
    warp = np.linalg.inv(h0) if direct else np.eye(3)
    for level in range(settings.levels - 1, -1, -1):
        scale = finest / (2**level)
        ref_s = _resize(reference, scale)
        sr = resized_scale(ref_size, image_size(ref_s))
        if direct:
            inp = _resize(test, scale)
            st = resized_scale(test_size, image_size(inp))
            mask = np.asarray(
                cv2.resize(valid, image_size(inp), interpolation=cv2.INTER_NEAREST), np.uint8
            )
        else:
            # Pre-warp at this level's resolution so the residual is small at every level.
            test_s = _resize(test, scale)
            h_s = sr @ h0 @ np.linalg.inv(resized_scale(test_size, image_size(test_s)))
            inp = np.asarray(_warp(test_s, h_s, image_size(ref_s)), np.float32)
            valid_s = cv2.resize(valid, image_size(test_s), interpolation=cv2.INTER_NEAREST)
            mask = np.asarray(_warp(valid_s, h_s, image_size(ref_s), nearest=True), np.uint8)
            st = sr
        warp_s = (st @ warp @ np.linalg.inv(sr)).astype(np.float32)
        if not direct:
            warp_s = warp_s[:2].copy()
        _, found = cv2.findTransformECC(
            ref_s, inp, warp_s, codes[motion], criteria, mask, settings.gauss_size
        )
        full = np.eye(3)
        full[: found.shape[0]] = np.asarray(found, np.float64)
        warp = np.linalg.inv(st) @ full @ sr
        warp = warp / warp[2, 2]
    # direct: warp = H^-1. Residual: warp = W, H = W^-1 h0.
    h = np.linalg.inv(warp) if direct else np.linalg.inv(warp) @ h0
    return np.asarray(h / h[2, 2], np.float64)


def refine_ecc(
    reference: F32,
    test: F32,
    h0: npt.NDArray[Any],
    test_valid: npt.NDArray[np.uint8] | None = None,
    settings: EccSettings | None = None,
    limits: HomographyLimits | None = None,
) -> EccResult:
    """Refine a test -> reference homography by ECC, falling back to simpler motions.

    Parameters
    ----------
    reference, test
        Shapes ``(Hr, Wr)`` and ``(Ht, Wt)``, float32, exposure-normalised grayscale (the test
        histogram-matched to the reference, see :func:`match_histogram`).
    h0
        ``(3, 3)`` initial test -> reference homography (board corners or features).
    test_valid
        Optional ``(Ht, Wt)`` uint8 mask (255 = valid) of test pixels ECC may use, e.g. to
        exclude the black border left by undistortion or clipped pixels.
    settings, limits
        ECC parameters and homography sanity limits (defaults: :class:`EccSettings`,
        :class:`HomographyLimits`).

    Returns
    -------
    EccResult
        A motion is accepted when ECC converges, the result passes
        :func:`homography_problem`, moves no image corner more than ``max_shift`` of the
        diagonal from ``h0`` and does not lower the correlation. Each decision is logged and
        recorded in :attr:`EccResult.attempts`.
    """
    import cv2

    settings = settings or EccSettings()
    limits = limits or HomographyLimits()
    h_init = np.asarray(h0, np.float64) / h0[2, 2]
    ref_size, test_size = image_size(reference), image_size(test)
    valid = test_valid if test_valid is not None else np.full(test.shape, 255, np.uint8)
    finest = 1.0
    if settings.max_side is not None:
        finest = min(1.0, settings.max_side / max(reference.shape))
    # Coarse levels below ~32 px carry no information; drop them.
    levels = settings.levels
    while levels > 1 and min(reference.shape) * finest / 2 ** (levels - 1) < 32:
        levels -= 1
    run = EccSettings(**{**settings.to_dict(), "levels": levels})

    ref_w = _resize(reference, finest)
    s_ref = resized_scale(ref_size, image_size(ref_w))
    test_w = _resize(test, finest)
    s_test = resized_scale(test_size, image_size(test_w))
    valid_w = np.asarray(
        cv2.resize(valid, image_size(test_w), interpolation=cv2.INTER_NEAREST), np.uint8
    )

    def working_correlation(h: F64) -> float:
        return alignment_correlation(
            ref_w, test_w, s_ref @ h @ np.linalg.inv(s_test), valid_w, settings.gauss_size
        )

    initial = working_correlation(h_init)
    diagonal = math.hypot(*ref_size)
    attempts: list[EccAttempt] = []
    for motion in run.motions:
        start = time.perf_counter()
        correlation: float | None = None
        try:
            h = _ecc_levels(reference, test, valid, h_init, motion, run, finest)
        except cv2.error as exc:
            reason = f"did not converge ({str(exc).strip().splitlines()[-1][:160]})"
        else:
            problem = homography_problem(h, test_size, ref_size, limits)
            shift = _corner_shift(h, h_init, test_size) if problem is None else 0.0
            if problem is not None:
                reason = f"degenerate result: {problem}"
            elif shift > settings.max_shift * diagonal:
                reason = (
                    f"diverged: moved an image corner {shift:.1f} px from the initial estimate "
                    f"(limit {settings.max_shift * diagonal:.1f} px)"
                )
            else:
                correlation = working_correlation(h)
                if correlation + 1e-4 < initial:
                    reason = f"correlation dropped from {initial:.4f} to {correlation:.4f}"
                else:
                    reason = (
                        f"accepted: correlation {initial:.4f} -> {correlation:.4f}, "
                        f"corners moved up to {shift:.2f} px"
                    )
                    attempts.append(
                        EccAttempt(motion, True, reason, correlation, time.perf_counter() - start)
                    )
                    log.info("ECC %s %s", motion, reason)
                    return EccResult(h, motion, correlation, initial, tuple(attempts), finest)
        attempts.append(EccAttempt(motion, False, reason, correlation, time.perf_counter() - start))
        log.warning("ECC %s rejected: %s", motion, reason)
    log.warning("ECC refinement rejected for every motion model; keeping the initial estimate")
    return EccResult(h_init, "identity", initial, initial, tuple(attempts), finest)
