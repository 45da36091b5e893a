"""Rig geometry: flip, intrinsics and the test -> reference homography, end to end.

:func:`calibrate_geometry` takes image pairs from the reference and the test camera (views
of a calibration board, or of any textured scene) and writes ``rig_calibration.json`` plus QA
images; :func:`~expokit.calibration.warp.warp_test_to_reference` applies it to a test image
(what the curation stage does with every test frame).

This module holds the estimation algorithm. The rest lives apart:

* :mod:`~expokit.calibration.geometry_io` - image input: resolving files, folders and globs,
  reading the pairs (guarded reader, sizes, hashes), refusing inputs that are outputs;
* :mod:`~expokit.calibration.warp` - applying a calibration: the warp, its remap tables and
  the valid region;
* :mod:`~expokit.calibration.rig_calibration` - the file format (:class:`RigCalibration`,
  its one reader and one writer);
* :mod:`~expokit.calibration.geometry_qa` - drawing, writing and cleaning up the QA images.

``FORMAT_VERSION``, ``RigCalibration``, ``RigCalibrationFormatError``,
``RIG_CALIBRATION_NAME``, ``QA_MAX_SIDE`` and ``load_rig_calibration`` stay importable from
here (:data:`__all__`) for the many tests and scripts that use them.

Steps (each choice is logged and recorded in the JSON):

1. **Mirror** (:mod:`~expokit.calibration.mirror`): the flip of the test image under which a
   ChArUco board is detected, else the one whose SIFT matches give the most inliers.
2. **Intrinsics** (optional, :mod:`~expokit.calibration.intrinsics`): ``calibrateCamera`` per
   camera on the board views (or loaded from files); images and points are undistorted
   before the homography. ``stereoCalibrate`` with both fixed gives the stereo RMS.
3. **Initial homography** (:mod:`~expokit.calibration.homography`): from board corners, or
   from SIFT matches + ``USAC_MAGSAC`` when there is no board; checked for degeneracy.
4. **ECC refinement**, coarse to fine on exposure-normalised grayscale, with fallbacks
   homography -> affine -> translation -> identity (keep the initial estimate).
5. **Outputs**: valid-region rectangle, per-pair alignment correlation, QA images
   (checkerboard blend and difference), ``rig_calibration.json`` (atomic writes).

Frames: the homography maps the *flipped, undistorted* test image to the *undistorted*
reference image. :func:`~expokit.calibration.warp.warp_test_to_reference` composes flip,
test undistortion, homography and reference *re-distortion*, so its output lies on the raw
reference pixel grid: the reference image is used as captured and the test image is
resampled once.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from expokit import __version__
from expokit.calibration.boards import (
    BoardDetection,
    BoardNotFoundError,
    BoardSpec,
    detect_board,
    require_board,
    transposed_hint,
)
from expokit.calibration.geometry_io import check_inputs_not_outputs, read_image_pairs
from expokit.calibration.geometry_qa import (
    pair_correlation,
    previous_qa_images,
    qa_frames,
    remove_stale_qa_images,
    render_qa_images,
    write_qa_images,
)
from expokit.calibration.homography import (
    DegenerateHomographyError,
    EccSettings,
    HomographyLimits,
    TooFewMatchesError,
    alignment_correlation,
    check_homography,
    clipped_fraction,
    detect_sift,
    exposure_matched_pair,
    fit_homography,
    homography_problem,
    image_size,
    match_features,
    match_histogram,
    refine_ecc,
    resize_to_max_side,
    scale_matrix,
    to_uint8,
    transfer_rms,
)
from expokit.calibration.intrinsics import (
    Intrinsics,
    IntrinsicsError,
    calibrate_intrinsics,
    stereo_rms,
    undistort_image,
    undistort_points,
)
from expokit.calibration.mirror import (
    FLIP_CANDIDATES,
    Flip,
    MirrorDecision,
    choose_flip,
    is_upright,
)
from expokit.calibration.parallax import find_layers
from expokit.calibration.rig_calibration import (
    PairRecord,
    RigCalibration,
    read_rig_calibration,
    write_rig_calibration,
)
from expokit.calibration.warp import valid_region, warp_maps, warp_test_to_reference
from expokit.core.errors import ExpokitError
from expokit.core.lock import RootLock
from expokit.core.roots import claim_root

__all__ = [
    "FLIP_CHOICES",
    "GeometryConfig",
    "calibrate_geometry",
    "correspondence_problem",
    "ecc_keep_decision",
    "load_rig_calibration",
]

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
Size = tuple[int, int]

FLIP_CHOICES: tuple[str, ...] = ("auto", *(f.value for f in FLIP_CANDIDATES))
#: Gray levels (of 1) at or above this are clipped highlights: no gradient, excluded from ECC.
CLIPPED = 0.995


@dataclass(frozen=True)
class GeometryConfig:
    """Every parameter of :func:`calibrate_geometry`.

    Attributes
    ----------
    flip
        ``"auto"`` (detect) or a fixed flip: ``"none"``, ``"horizontal"``, ``"vertical"``.
    estimate_intrinsics
        Calibrate each camera (``calibrateCamera``) from the board views; needs a board seen
        in at least 3 views per camera. Exclusive with the two fixed intrinsics below.
    reference_intrinsics, test_intrinsics
        Known intrinsics (e.g. from :func:`~expokit.calibration.intrinsics.load_intrinsics`);
        test intrinsics are in the flipped frame.
    feature_fallback
        When a board is given but not found in any pair, use features instead of failing.
    ratio
        Lowe ratio for SIFT matches.
    max_features
        SIFT keypoints kept per image (strongest first).
    feature_max_side
        Images are downscaled to this longer side for SIFT (speed on 24 MP frames).
    inlier_threshold
        ``USAC_MAGSAC`` threshold in reference pixels.
    min_inliers
        Fewer homography inliers than this is "too few matches".
    min_board_corners
        ChArUco views with fewer corners count as "board not found".
    mirror_pairs
        Pairs (the first ones) whose features decide the flip; the flip is one for the rig,
        and every pair costs a SIFT extraction per candidate flip.
    ecc
        ECC refinement settings; ``None`` skips refinement.
    ecc_board_tolerance_px
        With a board, ECC's homography is kept only when it raises the board-corner RMS
        transfer error by at most this much (px); otherwise the board homography stays
        (:func:`ecc_keep_decision`).
    limits
        What counts as a degenerate homography.
    qa_images
        Write the checkerboard and difference PNGs.
    qa_tile
        Checkerboard tile side in pixels (of the QA image).
    seed
        Seed of OpenCV's RNG for MAGSAC (reproducible results).
    max_parallax_px
        A homography aligns one depth: when the matches of a pair show a second depth
        layer more than this far (reference px) from the alignment, the record's
        ``parallax`` says so and ``calibrate geometry`` warns (the entrance pupils do not
        coincide). ``None`` skips the check.
    """

    flip: str = "auto"
    estimate_intrinsics: bool = False
    reference_intrinsics: Intrinsics | None = None
    test_intrinsics: Intrinsics | None = None
    feature_fallback: bool = False
    ratio: float = 0.75
    max_features: int = 8000
    feature_max_side: int | None = 2000
    inlier_threshold: float = 2.0
    min_inliers: int = 15
    min_board_corners: int = 6
    mirror_pairs: int = 3
    ecc: EccSettings | None = field(default_factory=EccSettings)
    ecc_board_tolerance_px: float = 0.02
    limits: HomographyLimits = field(default_factory=HomographyLimits)
    qa_images: bool = True
    qa_tile: int = 64
    seed: int = 0
    max_parallax_px: float | None = 2.0

    def __post_init__(self) -> None:
        if self.max_parallax_px is not None and not self.max_parallax_px > 0:
            raise ValueError(f"max parallax must be > 0 px, got {self.max_parallax_px}")
        if self.flip not in FLIP_CHOICES:
            raise ValueError(f"flip must be one of {', '.join(FLIP_CHOICES)}, got {self.flip!r}")
        if self.estimate_intrinsics and (self.reference_intrinsics or self.test_intrinsics):
            raise ValueError("give intrinsics or estimate them, not both")
        if not 0 < self.ratio < 1:
            raise ValueError(f"ratio must be in (0, 1), got {self.ratio}")
        if self.max_features < 0:
            raise ValueError(f"max features must be >= 0, got {self.max_features}")
        if self.feature_max_side is not None and self.feature_max_side < 64:
            raise ValueError(f"feature max side must be >= 64, got {self.feature_max_side}")
        if not (math.isfinite(self.inlier_threshold) and self.inlier_threshold > 0):
            raise ValueError(f"inlier threshold must be > 0, got {self.inlier_threshold}")
        if self.min_inliers < 4:
            raise ValueError(
                f"min inliers must be >= 4 (a homography has 8 dof), got {self.min_inliers}"
            )
        if self.min_board_corners < 4:
            raise ValueError(f"min board corners must be >= 4, got {self.min_board_corners}")
        if self.mirror_pairs < 1:
            raise ValueError(f"mirror pairs must be >= 1, got {self.mirror_pairs}")
        if not (math.isfinite(self.ecc_board_tolerance_px) and self.ecc_board_tolerance_px >= 0):
            raise ValueError(
                f"ECC board tolerance must be >= 0 px, got {self.ecc_board_tolerance_px}"
            )
        if self.qa_tile < 4:
            raise ValueError(f"QA tile must be >= 4 px, got {self.qa_tile}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "flip": self.flip,
            "estimate_intrinsics": self.estimate_intrinsics,
            "reference_intrinsics": _opt_dict(self.reference_intrinsics),
            "test_intrinsics": _opt_dict(self.test_intrinsics),
            "feature_fallback": self.feature_fallback,
            "ratio": self.ratio,
            "max_features": self.max_features,
            "feature_max_side": self.feature_max_side,
            "inlier_threshold": self.inlier_threshold,
            "min_inliers": self.min_inliers,
            "min_board_corners": self.min_board_corners,
            "mirror_pairs": self.mirror_pairs,
            "ecc": None if self.ecc is None else self.ecc.to_dict(),
            "ecc_board_tolerance_px": self.ecc_board_tolerance_px,
            "limits": {**asdict(self.limits), "area_ratio": list(self.limits.area_ratio)},
            "qa_images": self.qa_images,
            "qa_tile": self.qa_tile,
            "seed": self.seed,
        }


def _opt_dict(intr: Intrinsics | None) -> dict[str, Any] | None:
    return None if intr is None else intr.to_dict()


def load_rig_calibration(path: str | Path) -> RigCalibration:
    """Read ``rig_calibration.json`` (or a folder holding it): :func:`read_rig_calibration`,
    kept under this name for existing callers."""
    return read_rig_calibration(path)


# --------------------------------------------------------------------------- pipeline


@dataclass
class _Pair:
    """Working state for one image pair (internal)."""

    index: int
    reference_path: Path
    test_path: Path
    reference_gray: F32  # raw frame, [0, 1]
    test_gray: F32  # raw frame, [0, 1]
    reference_sha256: str
    test_sha256: str
    reference_board: BoardDetection | None = None
    test_board: BoardDetection | None = None  # in the flipped frame
    reference_work: F32 | None = None  # undistorted
    test_work: F32 | None = None  # flipped + undistorted, histogram-matched to the reference
    test_unmatched: F32 | None = None  # flipped + undistorted, original tones
    test_valid: U8 | None = None
    test_clipped: npt.NDArray[np.bool_] | None = None  # flipped + undistorted frame
    test_points: F64 = field(default_factory=lambda: np.zeros((0, 2)))
    reference_points: F64 = field(default_factory=lambda: np.zeros((0, 2)))
    board_order: str | None = None
    inliers: int = 0

    def label(self) -> str:
        return f"{self.test_path} -> {self.reference_path}"


def _read_pairs(reference_images: list[Path], test_images: list[Path]) -> list[_Pair]:
    """The pairs read by :func:`~expokit.calibration.geometry_io.read_image_pairs`, as
    working state."""
    return [
        _Pair(
            p.index,
            p.reference_path,
            p.test_path,
            p.reference_gray,
            p.test_gray,
            p.reference_sha256,
            p.test_sha256,
        )
        for p in read_image_pairs(reference_images, test_images)
    ]


def _feature_images(pair: _Pair, max_side: int | None) -> tuple[U8, U8, float, float]:
    """8-bit reference and exposure-matched test images for SIFT, and their scales."""
    ref_small, ref_scale = resize_to_max_side(pair.reference_gray, max_side)
    test_small, test_scale = resize_to_max_side(pair.test_gray, max_side)
    ref_n, test_n, white = exposure_matched_pair(ref_small, test_small)
    return to_uint8(ref_n, white), to_uint8(test_n, white), ref_scale, test_scale


def _flip_features(pairs: list[_Pair], config: GeometryConfig) -> dict[Flip, list[tuple[F32, F32]]]:
    """SIFT matches of every pair under every flip (test points in the flipped raw frame)."""
    by_flip: dict[Flip, list[tuple[F32, F32]]] = {f: [] for f in FLIP_CANDIDATES}
    for pair in pairs:
        ref_u8, test_u8, ref_scale, test_scale = _feature_images(pair, config.feature_max_side)
        ref_feat = detect_sift(ref_u8, config.max_features, ref_scale)
        for flip in FLIP_CANDIDATES:
            # SIFT descriptors are chiral: the test image is described afresh under each flip.
            test_feat = detect_sift(flip.apply(test_u8), config.max_features, test_scale)
            by_flip[flip].append(match_features(test_feat, ref_feat, config.ratio))
    return by_flip


def _inlier_score(
    matches: list[tuple[F32, F32]],
    test_size: Size,
    ref_size: Size,
    config: GeometryConfig,
    refused: list[str] | None = None,
) -> float:
    """Homography inliers of a flip's matches; a fit with enough inliers that is refused for
    a geometric reason adds that reason to ``refused`` (so the error can name it)."""
    total = 0
    for test_pts, ref_pts in matches:
        h, inliers = fit_homography(test_pts, ref_pts, config.inlier_threshold, seed=config.seed)
        count = int(inliers.sum())
        problem = homography_problem(h, test_size, ref_size, config.limits)
        if problem is None and not is_upright(h, test_size):
            problem = "homography turns the test image by 90 degrees or more"
        if problem is None:
            total += count
        elif refused is not None and h is not None and count >= config.min_inliers:
            refused.append(f"{problem} ({count} inliers)")
    return float(total)


def correspondence_problem(test_points: npt.NDArray[Any], reference_points: Any) -> str | None:
    """A geometric reason why ``(N, 2)`` correspondences cannot fix a homography, or ``None``:
    fewer than 4 distinct points, or points (nearly) on one line in either image."""
    for role, points in (("test", test_points), ("reference", reference_points)):
        pts = np.unique(np.asarray(points, np.float64).reshape(-1, 2), axis=0)
        if len(pts) < 4:
            return f"only {len(pts)} distinct {role} points (a homography needs 4)"
        spread = np.linalg.svd(pts - pts.mean(axis=0), compute_uv=False)
        if spread[0] <= 0 or spread[1] / spread[0] < 1e-3:
            return (
                f"the {len(pts)} {role} points lie (nearly) on one line "
                f"(spread ratio {spread[1] / max(spread[0], 1e-300):.2g}): degenerate"
            )
    return None


def _board_score(
    pairs: list[_Pair], detections: list[BoardDetection | None], config: GeometryConfig
) -> float:
    """ChArUco corners found in the flipped test views whose board maps upright."""
    total = 0
    for pair, det in zip(pairs, detections, strict=True):
        if det is None:
            continue
        ref_det = pair.reference_board
        if ref_det is None:
            total += len(det)  # nothing to check the orientation against
            continue
        common, ri, ti = np.intersect1d(ref_det.ids, det.ids, return_indices=True)
        if common.size < 4:
            continue
        h, _ = fit_homography(det.image_points[ti], ref_det.image_points[ri], 0, "lsq")
        if is_upright(h, image_size(pair.test_gray)):
            total += len(det)
    return float(total)


def _flipped_views(pair: _Pair) -> list[npt.NDArray[Any]]:
    """The pair's test image under every candidate flip (for :func:`transposed_hint`)."""
    return [flip.apply(pair.test_gray) for flip in FLIP_CANDIDATES]


def _decide_mirror(
    pairs: list[_Pair], board: BoardSpec | None, config: GeometryConfig
) -> tuple[MirrorDecision, dict[Flip, list[tuple[F32, F32]]] | None]:
    """Choose the flip; fill ``test_board``. Returns the decision and cached feature matches."""
    test_size = image_size(pairs[0].test_gray)
    ref_size = image_size(pairs[0].reference_gray)
    test_paths = [p.test_path for p in pairs]

    def detect_tests(flip: Flip) -> list[BoardDetection | None]:
        assert board is not None
        return [
            detect_board(flip.apply(p.test_gray), board, config.min_board_corners) for p in pairs
        ]

    if config.flip != "auto":
        decision = MirrorDecision(Flip(config.flip), "fixed")
        log.info("mirror: %s (fixed by configuration)", decision.flip.value)
        if board is not None:
            for pair, det in zip(pairs, detect_tests(decision.flip), strict=True):
                pair.test_board = det
        return decision, None

    if board is not None and board.kind == "charuco":
        found: dict[Flip, list[BoardDetection | None]] = {}

        def board_score(flip: Flip) -> float:
            found[flip] = detect_tests(flip)
            return _board_score(pairs, found[flip], config)

        decision_or_none = choose_flip(board_score, "board", config.min_board_corners)
        if decision_or_none is not None:
            for pair, det in zip(pairs, found[decision_or_none.flip], strict=True):
                pair.test_board = det
            return decision_or_none, None
        if not config.feature_fallback:
            names = ", ".join(p.name for p in test_paths[:5])
            raise BoardNotFoundError(
                test_paths[0],
                f"{board.describe()} not found in any test image ({names}) under any flip "
                f"({', '.join(f.value for f in FLIP_CANDIDATES)})"
                + transposed_hint(_flipped_views(pairs[0]), board, config.min_board_corners),
            )
        log.warning("ChArUco board not found in the test images; deciding the flip by features")

    by_flip = _flip_features(pairs[: config.mirror_pairs], config)
    refused: dict[Flip, list[str]] = {f: [] for f in FLIP_CANDIDATES}
    decision_or_none = choose_flip(
        lambda f: _inlier_score(by_flip[f], test_size, ref_size, config, refused[f]),
        "features",
        config.min_inliers,
    )
    if decision_or_none is None and any(refused.values()):
        # Enough matches, but every fit was refused for a geometric reason: say which.
        reasons = "; ".join(f"flip {f.value}: {', '.join(r)}" for f, r in refused.items() if r)
        raise DegenerateHomographyError(
            test_paths[0],
            f"the matches with {pairs[0].reference_path.name} fit no usable homography under "
            f"any flip ({reasons})",
        )
    if decision_or_none is None:
        best = max(sum(len(m[0]) for m in by_flip[f]) for f in FLIP_CANDIDATES)
        raise TooFewMatchesError(
            test_paths[0],
            f"too few feature matches with {pairs[0].reference_path.name} under any flip "
            f"(at most {best} ratio-test matches, need {config.min_inliers} homography "
            f"inliers); is it a view of the same scene?{_clipping_hint(pairs[0])}",
        )
    if board is not None:
        for pair, det in zip(pairs, detect_tests(decision_or_none.flip), strict=True):
            pair.test_board = det
    return decision_or_none, by_flip


def _intrinsics(
    pairs: list[_Pair], board: BoardSpec | None, config: GeometryConfig
) -> tuple[Intrinsics | None, Intrinsics | None]:
    ref_size = image_size(pairs[0].reference_gray)
    test_size = image_size(pairs[0].test_gray)
    if config.estimate_intrinsics:
        if board is None:
            raise IntrinsicsError("estimating intrinsics needs a calibration board spec")
        ref_dets = [p.reference_board for p in pairs]
        test_dets = [p.test_board for p in pairs]
        require_board(
            ref_dets,
            [p.reference_path for p in pairs],
            board,
            "reference",
            [pairs[0].reference_gray],
            config.min_board_corners,
        )
        require_board(
            test_dets,
            [p.test_path for p in pairs],
            board,
            "test",
            _flipped_views(pairs[0]),
            config.min_board_corners,
        )
        return (
            calibrate_intrinsics([d for d in ref_dets if d], ref_size, "reference"),
            calibrate_intrinsics([d for d in test_dets if d], test_size, "test"),
        )
    for intr, size, role in (
        (config.reference_intrinsics, ref_size, "reference"),
        (config.test_intrinsics, test_size, "test"),
    ):
        if intr is not None and intr.image_size != (0, 0) and intr.image_size != size:
            raise IntrinsicsError(
                f"{role} intrinsics ({intr.source}) are for {intr.image_size[0]}x"
                f"{intr.image_size[1]} images, the {role} images are {size[0]}x{size[1]}"
            )
    return config.reference_intrinsics, config.test_intrinsics


def _prepare_work_images(
    pairs: list[_Pair], flip: Flip, ref_intr: Intrinsics | None, test_intr: Intrinsics | None
) -> None:
    """Undistorted reference and flipped, undistorted, exposure-matched test grayscale."""
    for pair in pairs:
        ref = pair.reference_gray
        if ref_intr is not None:
            ref, _ = undistort_image(ref, ref_intr)
        test = flip.apply(pair.test_gray)
        valid = np.full(test.shape, 255, np.uint8)
        if test_intr is not None:
            test, valid = undistort_image(test, test_intr)
        pair.test_clipped = np.asarray(test >= CLIPPED)
        pair.test_unmatched = np.asarray(test, np.float32)
        pair.reference_work = np.asarray(ref, np.float32)
        pair.test_work = match_histogram(
            np.asarray(test, np.float32), pair.reference_work, valid > 0
        )
        pair.test_valid = valid


def _board_correspondences(
    pairs: list[_Pair],
    board: BoardSpec,
    ref_intr: Intrinsics | None,
    test_intr: Intrinsics | None,
    config: GeometryConfig,
) -> None:
    """Common board corners of each pair (undistorted), resolving chessboard order."""
    for pair in pairs:
        if pair.reference_board is None or pair.test_board is None:
            continue
        ref_det, test_det = pair.reference_board, pair.test_board
        common, ri, ti = np.intersect1d(ref_det.ids, test_det.ids, return_indices=True)
        if common.size < 4:
            continue
        ref_pts = ref_det.image_points[ri].astype(np.float64)
        test_pts = test_det.image_points[ti].astype(np.float64)
        if ref_intr is not None:
            ref_pts = undistort_points(ref_pts, ref_intr)
        if test_intr is not None:
            test_pts = undistort_points(test_pts, test_intr)
        if board.kind == "chessboard":
            test_pts, pair.board_order = _resolve_chessboard_order(pair, ref_pts, test_pts, config)
        pair.reference_points, pair.test_points = ref_pts, test_pts


def _resolve_chessboard_order(
    pair: _Pair, ref_pts: F64, test_pts: F64, config: GeometryConfig
) -> tuple[F64, str]:
    """Pick the corner order (as detected, or reversed) that aligns the images best.

    A chessboard's inner-corner grid is symmetric under a 180° rotation, so
    ``findChessboardCorners`` may number two views from opposite ends; both orders fit a
    homography exactly and only the image content tells them apart.
    """
    assert pair.reference_work is not None and pair.test_work is not None
    ref_small, scale = resize_to_max_side(pair.reference_work, 640)
    test_small, test_scale = resize_to_max_side(pair.test_work, 640)
    s_ref = scale_matrix(scale, scale)
    s_test = scale_matrix(test_scale, test_scale)
    scores: dict[str, float] = {}
    candidates = {"as detected": test_pts, "reversed": test_pts[::-1].copy()}
    for name, pts in candidates.items():
        h, _ = fit_homography(pts, ref_pts, config.inlier_threshold, "lsq")
        if (
            homography_problem(
                h, image_size(pair.test_work), image_size(pair.reference_work), config.limits
            )
            is not None
            or h is None
        ):
            scores[name] = -1.0
            continue
        scores[name] = alignment_correlation(
            ref_small, test_small, s_ref @ h @ np.linalg.inv(s_test)
        )
    best = max(scores, key=lambda k: scores[k])
    log.info(
        "pair %d chessboard corner order: %s (correlations %s)",
        pair.index,
        best,
        {k: round(v, 4) for k, v in scores.items()},
    )
    return candidates[best], best


def _feature_correspondences(
    pairs: list[_Pair], cached: list[tuple[F32, F32]], config: GeometryConfig
) -> None:
    """SIFT matches per pair on the working images (reusing the mirror step's when valid)."""
    for i, pair in enumerate(pairs):
        if i < len(cached):
            test_pts, ref_pts = cached[i]
        else:
            assert pair.reference_work is not None and pair.test_work is not None
            assert pair.test_unmatched is not None
            ref_small, ref_scale = resize_to_max_side(pair.reference_work, config.feature_max_side)
            test_small, test_scale = resize_to_max_side(
                pair.test_unmatched, config.feature_max_side
            )
            ref_n, test_n, white = exposure_matched_pair(ref_small, test_small)
            ref_feat = detect_sift(to_uint8(ref_n, white), config.max_features, ref_scale)
            test_feat = detect_sift(to_uint8(test_n, white), config.max_features, test_scale)
            test_pts, ref_pts = match_features(test_feat, ref_feat, config.ratio)
        pair.test_points = np.asarray(test_pts, np.float64)
        pair.reference_points = np.asarray(ref_pts, np.float64)


def _ecc_mask(pair: _Pair, h0: F64) -> U8:
    """Test pixels ECC may use: inside the undistorted image and not clipped in either image.

    Clipped pixels carry no gradient in one image but do in the other, which biases ECC; the
    reference's clipped pixels are mapped into the test frame with the initial estimate.
    """
    import cv2

    assert pair.test_valid is not None and pair.reference_work is not None
    mask = pair.test_valid.copy()
    test_size = image_size(mask)
    if pair.test_clipped is not None:
        mask[pair.test_clipped] = 0
    ref_clip = pair.reference_work >= CLIPPED
    if ref_clip.any():
        back = cv2.warpPerspective(
            ref_clip.astype(np.uint8) * 255, np.linalg.inv(h0), test_size, flags=cv2.INTER_NEAREST
        )
        mask[back > 0] = 0
    mask = np.asarray(cv2.erode(mask, np.ones((5, 5), np.uint8)), np.uint8)
    if np.count_nonzero(mask) < 0.2 * mask.size:
        # Mostly clipped images: better to use everything than to starve ECC.
        return pair.test_valid.copy()
    return np.asarray(mask, np.uint8)


def _software() -> dict[str, str]:
    import cv2

    return {"expokit": __version__, "opencv": cv2.__version__, "numpy": np.__version__}


def calibrate_geometry(
    reference_images: list[Path],
    test_images: list[Path],
    out_dir: Path,
    board: BoardSpec | None = None,
    config: GeometryConfig | None = None,
) -> RigCalibration:
    """Calibrate the rig's geometry from image pairs and write ``rig_calibration.json``.

    Parameters
    ----------
    reference_images, test_images
        Paired by position: ``test_images[i]`` was shot together with
        ``reference_images[i]``. Views of ``board`` or of a textured scene; exposures may
        differ by several EV. Within each camera all images have one size.
    out_dir
        Created if missing; receives ``rig_calibration.json`` and the QA PNGs
        ``rig_qa_<pair>_checkerboard.png`` / ``rig_qa_<pair>_difference.png``. It becomes
        an expokit root of kind ``calibration`` (a non-empty folder expokit did not make is
        refused; one holding ``rig_calibration.json`` is adopted) and is locked while the
        calibration runs. QA images an earlier run listed and this run does not write are
        removed; no other file is ever deleted.
    board
        The calibration board in the images, or ``None`` (features only).
    config
        Parameters (defaults: :class:`GeometryConfig`).

    Returns
    -------
    RigCalibration
        What was written.

    Raises
    ------
    InputFileError
        An image is missing, unreadable, or of another size than its camera's others.
    BoardNotFoundError
        A board was given but not found (in any pair, or in any view needed for intrinsics).
    TooFewMatchesError
        Too few feature matches / common board corners for a homography.
    DegenerateHomographyError
        The fitted homography is singular, ill-conditioned, folds, mirrors or turns the
        image, or the correspondences are degenerate (collinear): the message names the
        geometric reason (never "too few matches" when there were enough).
    IntrinsicsError
        Intrinsics requested without a board or with too few views, or of the wrong size.
    OutputError
        ``out_dir`` is not writable, is not a calibration folder, or holds input images
        under the names of the files this writes.
    RootInUseError
        Another calibration is writing into ``out_dir``.
    """
    config = config or GeometryConfig()
    refs = [Path(p) for p in reference_images]
    tests = [Path(p) for p in test_images]
    if not refs or len(refs) != len(tests):
        raise ExpokitError(
            f"need the same number (>= 1) of reference and test images, got {len(refs)} "
            f"reference and {len(tests)} test"
        )
    check_inputs_not_outputs(Path(out_dir), [*refs, *tests])
    out = claim_root(out_dir, "calibration", what="calibration output folder (--out)")
    with RootLock(out, "expokit calibrate geometry"):
        return _calibrate_into(refs, tests, out, board, config)


def _calibrate_into(
    refs: list[Path],
    tests: list[Path],
    out: Path,
    board: BoardSpec | None,
    config: GeometryConfig,
) -> RigCalibration:
    """The work of :func:`calibrate_geometry` once ``out`` is claimed and locked.

    One step per call: estimate the geometry (no file written), measure each pair and write
    its QA images, write ``rig_calibration.json``, then delete QA images of an earlier run
    that this run did not write.
    """
    previous_qa = previous_qa_images(out)  # before the new record replaces the old one
    calib, pairs, maps = _estimate(refs, tests, board, config)
    calib = _replace(calib, parallax=_parallax(pairs, calib, config))
    records, qa_names = _pair_outputs(pairs, calib, maps, board, out, config)
    calib = _replace(calib, pairs=tuple(records), qa_images=tuple(qa_names))
    written = write_rig_calibration(calib, out)
    remove_stale_qa_images(out, previous_qa, qa_names)  # an earlier run had more pairs
    log.info(
        "wrote %s (flip %s, method %s, ECC %s)",
        written,
        calib.flip.value,
        calib.method,
        "off" if calib.ecc is None else calib.ecc["motion"],
    )
    return calib


def _parallax(
    pairs: list[_Pair], calib: RigCalibration, config: GeometryConfig
) -> dict[str, Any] | None:
    """The largest second depth layer (:func:`~expokit.calibration.parallax.find_layers`)
    in the first three pairs, as a dict, when it is off the alignment by more than
    ``config.max_parallax_px``; ``None`` otherwise."""
    if config.max_parallax_px is None:
        return None
    worst = None
    for pair in pairs[:3]:
        reference = pair.reference_work if pair.reference_work is not None else pair.reference_gray
        test = pair.test_unmatched if pair.test_unmatched is not None else pair.test_gray
        try:
            layers = find_layers(
                reference, test, calib.homography, config.feature_max_side or 2000,
                config.max_parallax_px,
            )  # fmt: skip
        except TooFewMatchesError:
            continue
        if layers is None or layers.parallax_px <= config.max_parallax_px:
            continue
        if worst is None or layers.parallax_px > worst[1].parallax_px:
            worst = (pair, layers)
    if worst is None:
        return None
    pair, layers = worst
    log.info("parallax in %s: %s", pair.label(), layers.describe())
    return {"pair": pair.index, **layers.to_dict()}


@dataclass(frozen=True)
class _InitialFit:
    """The initial homography and the correspondences it was fitted to (internal).

    ``test_points``/``reference_points`` are ``(N, 2)`` float64 pixels (flipped + undistorted
    test, undistorted reference) of all pairs, concatenated; ``inliers`` is ``(N,)`` bool.
    """

    homography: F64
    inliers: npt.NDArray[np.bool_]
    test_points: F64
    reference_points: F64
    best_pair: _Pair

    def rms(self, h: F64) -> float:
        """RMS transfer error (reference px) of the inliers under ``h``."""
        return transfer_rms(h, self.test_points[self.inliers], self.reference_points[self.inliers])


def _estimate(
    refs: list[Path], tests: list[Path], board: BoardSpec | None, config: GeometryConfig
) -> tuple[RigCalibration, list[_Pair], tuple[F32, F32] | None]:
    """Estimate the rig geometry from the image pairs; writes nothing.

    Returns
    -------
    tuple
        ``(calib, pairs, maps)``: the calibration with its valid region but no per-pair
        records or QA image names yet; the working state of every pair; the remap maps of
        :func:`warp_maps` (``None`` without intrinsics) to reuse for the QA warps.
    """
    pairs = _read_pairs(refs, tests)
    ref_size = image_size(pairs[0].reference_gray)
    test_size = image_size(pairs[0].test_gray)
    log.info("%d pair(s): reference %dx%d, test %dx%d", len(pairs), *ref_size, *test_size)

    # 1. Board in the reference views, then the flip (which also finds it in the test views).
    mirror, flip_matches = _detect_board_and_flip(pairs, board, config)
    # 2. Intrinsics (optional) and working images.
    ref_intr, test_intr = _intrinsics(pairs, board, config)
    _prepare_work_images(pairs, mirror.flip, ref_intr, test_intr)
    # 3. Correspondences and the initial homography.
    cached: list[tuple[F32, F32]] = []
    if flip_matches is not None and ref_intr is None and test_intr is None:
        cached = flip_matches[mirror.flip]
    method = _correspondences(pairs, board, ref_intr, test_intr, cached, config)
    fit = _initial_homography(pairs, method, config)
    # 4. ECC refinement.
    h, ecc = _refine(pairs, fit, method, config)
    calib = RigCalibration(
        homography=h,
        initial_homography=fit.homography,
        flip=mirror.flip,
        mirror=mirror,
        method=method,
        correspondences=len(fit.test_points),
        inliers=int(fit.inliers.sum()),
        reprojection_rms=fit.rms(h),
        initial_reprojection_rms=fit.rms(fit.homography),
        ecc=ecc,
        valid_region=(0, 0, 0, 0),
        reference_size=ref_size,
        test_size=test_size,
        reference_intrinsics=ref_intr,
        test_intrinsics=test_intr,
        stereo_rms=_stereo_rms(pairs, ref_intr, test_intr),
        board=board,
        config=config.to_dict(),
        software=_software(),
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    maps = None if ref_intr is None and test_intr is None else warp_maps(calib)
    region = _valid_region(calib, pairs[0].test_gray.shape, maps, fit.best_pair)
    return _replace(calib, valid_region=region), pairs, maps


def _detect_board_and_flip(
    pairs: list[_Pair], board: BoardSpec | None, config: GeometryConfig
) -> tuple[MirrorDecision, dict[Flip, list[tuple[F32, F32]]] | None]:
    """Detect the board in the reference views (fills ``reference_board``), then decide the
    flip (fills ``test_board``); returns the decision and the feature matches per flip."""
    if board is not None:
        for pair in pairs:
            pair.reference_board = detect_board(
                pair.reference_gray, board, config.min_board_corners
            )
        if not config.feature_fallback:
            refs = [p.reference_path for p in pairs]
            require_board(
                [p.reference_board for p in pairs],
                refs,
                board,
                "reference",
                [pairs[0].reference_gray],
                config.min_board_corners,
            )
    return _decide_mirror(pairs, board, config)


def _correspondences(
    pairs: list[_Pair],
    board: BoardSpec | None,
    ref_intr: Intrinsics | None,
    test_intr: Intrinsics | None,
    cached: list[tuple[F32, F32]],
    config: GeometryConfig,
) -> str:
    """Fill every pair's ``test_points``/``reference_points`` from the board, else from SIFT
    matches (``cached``: the mirror step's, reused when still valid).

    Returns
    -------
    str
        The method: ``board.kind`` (``"charuco"``/``"chessboard"``) or ``"features"``.
    """
    method = "features"
    if board is not None:
        tests = [p.test_path for p in pairs]
        _board_correspondences(pairs, board, ref_intr, test_intr, config)
        if any(len(p.test_points) for p in pairs):
            method = board.kind
        elif not config.feature_fallback:
            require_board(
                [p.test_board for p in pairs],
                tests,
                board,
                "test",
                _flipped_views(pairs[0]),
                config.min_board_corners,
            )
            raise BoardNotFoundError(
                tests[0],
                f"{board.describe()} not seen with 4+ common corners in both images of any "
                f"pair ({', '.join(p.name for p in tests[:5])})",
            )
        else:
            log.warning("board not seen in both images of any pair; using features")
    if method == "features":
        _feature_correspondences(pairs, cached, config)
    log.info("initial homography from %s", method)
    return method


def _initial_homography(pairs: list[_Pair], method: str, config: GeometryConfig) -> _InitialFit:
    """Fit one homography (``USAC_MAGSAC``) to the correspondences of all pairs and check it;
    sets every pair's ``inliers`` count.

    Raises
    ------
    DegenerateHomographyError
        Enough correspondences but no fit (collinear points, ...), or a degenerate fit.
    TooFewMatchesError
        Fewer inliers than ``config.min_inliers`` (features) or 4 (board corners).
    """
    ref_size = image_size(pairs[0].reference_gray)
    test_size = image_size(pairs[0].test_gray)
    test_all = np.concatenate([p.test_points for p in pairs])
    ref_all = np.concatenate([p.reference_points for p in pairs])
    best_pair = max(pairs, key=lambda p: len(p.test_points))
    h0, inliers = fit_homography(test_all, ref_all, config.inlier_threshold, "magsac", config.seed)
    needed = config.min_inliers if method == "features" else 4
    if h0 is None and len(test_all) >= needed:
        problem = correspondence_problem(test_all, ref_all) or "no homography could be fitted"
        raise DegenerateHomographyError(
            best_pair.test_path,
            f"{len(test_all)} correspondences with {best_pair.reference_path.name} give no "
            f"homography: {problem}",
        )
    if h0 is None or int(inliers.sum()) < needed:
        what = "feature matches" if method == "features" else "common board corners"
        raise TooFewMatchesError(
            best_pair.test_path,
            f"too few {what} with {best_pair.reference_path.name}: {len(test_all)} found, "
            f"{int(inliers.sum())} consistent with one homography (need {needed})"
            f"{_clipping_hint(best_pair)}",
        )
    h0 = check_homography(h0, test_size, ref_size, best_pair.label(), config.limits)
    offset = 0
    for pair in pairs:
        n = len(pair.test_points)
        pair.inliers = int(inliers[offset : offset + n].sum())
        offset += n
    fit = _InitialFit(h0, np.asarray(inliers, bool), test_all, ref_all, best_pair)
    log.info(
        "initial homography: %d of %d correspondences are inliers, RMS %.3f px",
        int(inliers.sum()),
        len(test_all),
        fit.rms(h0),
    )
    return fit


def _refine(
    pairs: list[_Pair], fit: _InitialFit, method: str, config: GeometryConfig
) -> tuple[F64, dict[str, Any] | None]:
    """ECC refinement on the pair with the most inliers (``config.ecc``; ``None`` skips it).

    Returns
    -------
    tuple
        ``(H, ecc)``: the homography kept (``(3, 3)`` float64; the initial one when ECC is
        off or discarded by :func:`ecc_keep_decision`) and the record stored as
        :attr:`RigCalibration.ecc` (``None`` when ECC is off).
    """
    if config.ecc is None:
        return fit.homography, None
    ref_size = image_size(pairs[0].reference_gray)
    test_size = image_size(pairs[0].test_gray)
    h0 = fit.homography
    ecc_pair = max(pairs, key=lambda p: p.inliers)
    assert ecc_pair.reference_work is not None and ecc_pair.test_work is not None
    mask = _ecc_mask(ecc_pair, h0)
    # Re-match exposure on the overlap only, now that the overlap is known.
    ecc_pair_test = match_histogram(
        ecc_pair.test_work, ecc_pair.reference_work, mask > 0, _warp_mask(mask, h0, ref_size)
    )
    result = refine_ecc(ecc_pair.reference_work, ecc_pair_test, h0, mask, config.ecc, config.limits)
    h_ecc = check_homography(
        result.homography, test_size, ref_size, ecc_pair.label(), config.limits
    )
    log.info(
        "ECC on pair %d: motion %s, correlation %.4f",
        ecc_pair.index,
        result.motion,
        result.correlation,
    )
    h, decision = ecc_keep_decision(
        h0,
        h_ecc,
        fit.test_points[fit.inliers],
        fit.reference_points[fit.inliers],
        method,
        config.ecc_board_tolerance_px,
    )
    if not decision["kept"]:
        log.warning("ECC refinement discarded: %s", decision["reason"])
    return h, {**result.to_dict(), "pair": ecc_pair.index, **decision}


def _valid_region(
    calib: RigCalibration,
    test_shape: tuple[int, ...],
    maps: tuple[F32, F32] | None,
    best_pair: _Pair,
) -> tuple[int, int, int, int]:
    """``(x, y, width, height)`` in raw reference pixels: the largest rectangle the warped
    test image (of ``test_shape``) covers.

    Raises
    ------
    ExpokitError
        The warped test image covers no rectangle of the reference image.
    """
    region = valid_region(calib, test_shape, maps)
    if region[2] == 0 or region[3] == 0:
        raise ExpokitError(
            f"{best_pair.label()}: the warped test image covers no rectangle of the reference image"
        )
    return region


def _pair_outputs(
    pairs: list[_Pair],
    calib: RigCalibration,
    maps: tuple[F32, F32] | None,
    board: BoardSpec | None,
    out: Path,
    config: GeometryConfig,
) -> tuple[list[PairRecord], list[str]]:
    """Warp every pair with ``calib``, record its evidence and, when ``config.qa_images``,
    write its QA images to ``out`` (one pair in memory at a time).

    Returns
    -------
    tuple
        ``(records, qa_names)``: one :class:`PairRecord` per pair, and the QA file names
        written.
    """
    records: list[PairRecord] = []
    qa_names: list[str] = []
    for pair in pairs:
        warped, valid = warp_test_to_reference(pair.test_gray, calib, maps=maps)
        frames = qa_frames(pair.reference_gray, warped, valid)
        records.append(_pair_record(pair, board, pair_correlation(frames)))
        if config.qa_images:
            images = render_qa_images(frames, config.qa_tile)
            qa_names += write_qa_images(out, pair.index, images)
    return records, qa_names


def _pair_record(pair: _Pair, board: BoardSpec | None, correlation: float) -> PairRecord:
    """The provenance and evidence of ``pair`` (``correlation`` NaN is recorded as ``None``)."""
    return PairRecord(
        reference=str(pair.reference_path),
        reference_sha256=pair.reference_sha256,
        test=str(pair.test_path),
        test_sha256=pair.test_sha256,
        board_corners_reference=None if board is None else _count(pair.reference_board),
        board_corners_test=None if board is None else _count(pair.test_board),
        correspondences=len(pair.test_points),
        inliers=pair.inliers,
        board_order=pair.board_order,
        correlation=None if math.isnan(correlation) else correlation,
    )


def ecc_keep_decision(
    h0: F64,
    h_ecc: F64,
    test_points: npt.NDArray[Any],
    reference_points: npt.NDArray[Any],
    method: str,
    tolerance_px: float,
) -> tuple[F64, dict[str, Any]]:
    """Which homography to keep after ECC, and the record of why.

    With a board (``method`` ``"charuco"``/``"chessboard"``) the corners are the most accurate
    measurement there is: ECC's result is kept only if it does not raise their RMS transfer
    error by more than ``tolerance_px`` (ECC follows image content, which may be a
    background at another depth than the board, or a clipped, low-texture scene). With
    features ECC is kept (its photometric fit is finer than feature positions).

    Returns
    -------
    tuple
        ``(H, record)``; ``record`` has ``kept``, ``reason``, ``rule`` and, for boards,
        ``board_reprojection_rms_initial`` and ``board_reprojection_rms_ecc`` (px).
    """
    if method == "features":
        return h_ecc, {
            "kept": True,
            "rule": "features: ECC kept",
            "reason": "no board corners to check against; ECC is finer than feature matches",
        }
    before = transfer_rms(h0, test_points, reference_points)
    after = transfer_rms(h_ecc, test_points, reference_points)
    kept = bool(after <= before + tolerance_px)
    record: dict[str, Any] = {
        "kept": kept,
        "rule": f"board: ECC kept only if the corner RMS does not rise by > {tolerance_px:g} px",
        "board_reprojection_rms_initial": before,
        "board_reprojection_rms_ecc": after,
        "reason": (
            f"board-corner RMS {before:.3f} px -> {after:.3f} px with ECC: "
            + ("kept" if kept else "ECC would raise it, the board homography is kept")
        ),
    }
    return (h_ecc if kept else h0), record


def _clipping_hint(pair: _Pair) -> str:
    """A note for "too few matches" errors when an image is mostly clipped."""
    notes = []
    for role, gray in (("test", pair.test_gray), ("reference", pair.reference_gray)):
        fraction = clipped_fraction(gray)
        if fraction > 0.5:
            notes.append(f"the {role} image is {fraction:.0%} clipped to black or white")
    return f" ({'; '.join(notes)})" if notes else ""


def _count(det: BoardDetection | None) -> int:
    return 0 if det is None else len(det)


def _replace(calib: RigCalibration, **changes: Any) -> RigCalibration:
    import dataclasses

    return dataclasses.replace(calib, **changes)


def _warp_mask(mask: U8, h: F64, size: Size) -> npt.NDArray[np.bool_]:
    import cv2

    return np.asarray(cv2.warpPerspective(mask, h, size, flags=cv2.INTER_NEAREST)) > 0


def _stereo_rms(
    pairs: list[_Pair], ref_intr: Intrinsics | None, test_intr: Intrinsics | None
) -> float | None:
    """Stereo RMS with both intrinsics fixed, when both exist and the board is in 3+ pairs."""
    if ref_intr is None or test_intr is None:
        return None
    views = []
    for pair in pairs:
        if pair.reference_board is None or pair.test_board is None:
            continue
        test_det = pair.test_board
        if pair.board_order == "reversed":
            test_det = BoardDetection(
                test_det.image_points[::-1].copy(),
                test_det.ids,
                test_det.object_points,
                test_det.markers,
            )
        views.append((pair.reference_board, test_det))
    try:
        value = stereo_rms(views, ref_intr, test_intr)
    except IntrinsicsError as exc:
        log.info("no stereo RMS: %s", exc)
        return None
    log.info("stereo RMS (intrinsics fixed): %.3f px", value)
    return value
