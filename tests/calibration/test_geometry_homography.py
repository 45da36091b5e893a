"""Homography building blocks: exposure normalisation, fitting, sanity checks, ECC; flips."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from expokit.calibration.homography import (
    DegenerateHomographyError,
    EccSettings,
    HomographyLimits,
    alignment_correlation,
    check_homography,
    fit_homography,
    homography_grid_error,
    homography_problem,
    match_histogram,
    project,
    refine_ecc,
    to_gray_float,
)
from expokit.calibration.mirror import (
    FLIP_CANDIDATES,
    Flip,
    MirrorDecision,
    choose_flip,
    is_upright,
    rotation_degrees,
)

SIZE = (320, 240)  # width, height
KNOWN_H = np.array([[1.01, 0.02, -4.3], [-0.015, 0.995, 2.7], [3e-5, -2e-5, 1.0]])


def texture(seed: int = 0, size: tuple[int, int] = SIZE) -> np.ndarray:
    """Multi-scale smooth random texture in [0, 1], float32 (ECC-friendly)."""
    rng = np.random.default_rng(seed)
    w, h = size
    out = np.zeros((h, w), np.float32)
    for sigma in (1.5, 4.0, 10.0):
        noise = rng.normal(size=(h, w)).astype(np.float32)
        out += cv2.GaussianBlur(noise, (0, 0), sigma) * sigma
    out -= out.min()
    return out / out.max()


def test_to_gray_float_dtypes() -> None:
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 2] = 255  # red
    gray = to_gray_float(bgr)
    assert gray.shape == (4, 5) and gray.dtype == np.float32
    assert gray[0, 0] == pytest.approx(0.299, abs=1e-3)
    assert to_gray_float(np.full((2, 2), 65535, np.uint16))[0, 0] == pytest.approx(1.0)
    assert to_gray_float(np.zeros((2, 2, 1), np.float64)).shape == (2, 2)
    with pytest.raises(ValueError, match="dtype"):
        to_gray_float(np.zeros((2, 2), np.int64))


def test_match_histogram_undoes_exposure_and_gamma() -> None:
    ref = texture(1)
    dark = (ref * 2**-2.5) ** 1.3  # darker by 2.5 EV and through another tone curve
    matched = match_histogram(dark, ref)
    assert np.abs(matched - ref).mean() < 0.005
    # Clipped source: ties map without breaking monotonicity.
    clipped = np.minimum(ref * 4, 1.0)
    mapped = match_histogram(clipped, ref)
    order = np.argsort(clipped.ravel())
    assert np.all(np.diff(mapped.ravel()[order]) >= -1e-6)


def test_fit_homography_recovers_known_and_rejects_outliers() -> None:
    rng = np.random.default_rng(0)
    pts = rng.uniform([0, 0], SIZE, size=(200, 2))
    dst = project(KNOWN_H, pts) + rng.normal(0, 0.3, (200, 2))
    dst[:40] = rng.uniform([0, 0], SIZE, size=(40, 2))  # 20 % outliers
    h, inliers = fit_homography(pts, dst, 2.0)
    assert h is not None
    assert inliers[40:].mean() > 0.95 and inliers[:40].mean() < 0.1
    mean, worst = homography_grid_error(h, KNOWN_H, SIZE)
    assert mean < 0.15 and worst < 0.5
    none, mask = fit_homography(pts[:3], dst[:3], 2.0)
    assert none is None and mask.shape == (3,)


@pytest.mark.parametrize(
    ("h", "reason"),
    [
        (np.full((3, 3), np.nan), "finite"),
        (np.diag([1.0, 1e-7, 1.0]), "singular|ill-conditioned"),
        (np.diag([1.0, 1e-3, 1.0]), "ill-conditioned"),
        (np.array([[-1.0, 0, 319], [0, 1, 0], [0, 0, 1]]), "mirrors"),
        (np.array([[1.0, 0, 0], [0, 1, 0], [-0.005, 0, 1]]), "infinity"),
        (np.diag([0.1, 0.1, 1.0]), "reference area"),
        (np.array([[1.0, 0, 5000], [0, 1, 0], [0, 0, 1]]), "covers"),
    ],
)
def test_homography_problems(h: np.ndarray, reason: str) -> None:
    problem = homography_problem(h, SIZE, SIZE, HomographyLimits())
    assert problem is not None
    assert __import__("re").search(reason, problem), problem
    with pytest.raises(DegenerateHomographyError, match=r"pair_07\.png.*" + reason):
        check_homography(h, SIZE, SIZE, "pair_07.png")


def test_good_homographies_pass() -> None:
    for h in (np.eye(3), KNOWN_H, np.array([[0.5, 0, 10], [0, 0.5, 5], [0, 0, 1.0]])):
        assert homography_problem(h, SIZE, SIZE, HomographyLimits()) is None
    out = check_homography(KNOWN_H * 3.0, SIZE, SIZE, "x")
    assert out[2, 2] == pytest.approx(1.0)


def _pair() -> tuple[np.ndarray, np.ndarray]:
    """Reference and test views of one larger texture, related by KNOWN_H, no empty borders."""
    canvas = texture(2, (SIZE[0] + 80, SIZE[1] + 80))
    offset = np.array([[1, 0, 40], [0, 1, 40], [0, 0, 1.0]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP  # matrices map output -> canvas
    ref = cv2.warpPerspective(canvas, offset, SIZE, flags=flags)
    test = cv2.warpPerspective(canvas, offset @ KNOWN_H, SIZE, flags=flags)
    return np.asarray(ref, np.float32), np.asarray(test, np.float32)


def test_ecc_refines_to_subpixel() -> None:
    ref, test = _pair()
    start = KNOWN_H @ np.array([[1, 0, 2.5], [0, 1, -1.8], [0, 0, 1.0]])  # 3 px off
    assert homography_grid_error(start, KNOWN_H, SIZE)[0] > 2
    result = refine_ecc(ref, test, start, settings=EccSettings(max_shift=0.05))
    assert result.motion == "homography"
    assert [a.ok for a in result.attempts] == [True]
    assert result.correlation > result.initial_correlation
    mean, worst = homography_grid_error(result.homography, KNOWN_H, SIZE)
    assert mean < 0.05 and worst < 0.15


def test_ecc_affine_fallback_uses_residual_warp() -> None:
    ref, test = _pair()
    start = KNOWN_H @ np.array([[1, 0, 1.5], [0, 1, 1.0], [0, 0, 1.0]])
    settings = EccSettings(motions=("affine", "translation"), max_shift=0.05)
    result = refine_ecc(ref, test, start, settings=settings)
    assert result.motion == "affine"
    # The perspective part stays the initial one; the residual is small and affine.
    assert homography_grid_error(result.homography, KNOWN_H, SIZE)[0] < 0.3


def test_ecc_falls_back_to_identity_and_records_why() -> None:
    ref = np.full((240, 320), 0.5, np.float32)  # no texture: nothing to align
    result = refine_ecc(ref, ref.copy(), np.eye(3))
    assert result.motion == "identity"
    assert [a.motion for a in result.attempts] == ["homography", "affine", "translation"]
    assert not any(a.ok for a in result.attempts)
    assert all(a.reason for a in result.attempts)
    np.testing.assert_allclose(result.homography, np.eye(3))
    d = result.to_dict()
    assert d["motion"] == "identity" and len(d["attempts"]) == 3


def test_ecc_rejects_divergence() -> None:
    ref, test = _pair()
    start = KNOWN_H @ np.array([[1, 0, 2.0], [0, 1, 0], [0, 0, 1.0]])
    # A 0.4 px budget (0.1 % of the diagonal) is less than the 2 px correction ECC finds.
    result = refine_ecc(ref, test, start, settings=EccSettings(max_shift=0.001))
    assert result.motion == "identity"
    assert all("diverged" in a.reason for a in result.attempts), result.attempts
    np.testing.assert_allclose(result.homography, start / start[2, 2])


def test_alignment_correlation_ranks_alignments() -> None:
    ref, test = _pair()
    good = alignment_correlation(ref, test, KNOWN_H)
    bad = alignment_correlation(ref, test, KNOWN_H @ np.array([[1, 0, 6], [0, 1, 0], [0, 0, 1.0]]))
    assert good > 0.99 and bad < good - 0.1
    assert alignment_correlation(ref, test, np.array([[1, 0, 1e4], [0, 1, 0], [0, 0, 1.0]])) == -1


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"motions": ("rigid",)}, "motions"),
        ({"motions": ("affine", "affine")}, "motions"),
        ({"levels": 0}, "levels"),
        ({"gauss_size": 4}, "odd"),
        ({"max_side": 10}, "max side"),
        ({"max_shift": 0.0}, "shift"),
    ],
)
def test_ecc_settings_validation(settings: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EccSettings(**settings)


# --------------------------------------------------------------------------- flips


@pytest.mark.parametrize("flip", FLIP_CANDIDATES)
def test_flip_matrix_matches_image_flip(flip: Flip) -> None:
    image = np.arange(12 * 20).reshape(12, 20)
    flipped = flip.apply(image)
    m = flip.matrix((20, 12))
    for x, y in [(0, 0), (19, 0), (3, 7), (19, 11)]:
        fx, fy = (m @ [x, y, 1])[:2]
        assert flipped[int(fy), int(fx)] == image[y, x]
    np.testing.assert_allclose(m @ m, np.eye(3))  # its own inverse


def test_rotation_and_upright() -> None:
    size = (320, 240)
    assert rotation_degrees(np.eye(3), size) == pytest.approx(0)
    assert rotation_degrees(KNOWN_H, size) == pytest.approx(-1.0, abs=0.3)
    angle = np.radians(30)
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    assert rotation_degrees(rot, size) == pytest.approx(30)
    half_turn = Flip.BOTH.matrix(size)
    assert abs(rotation_degrees(half_turn, size)) == pytest.approx(180)
    assert is_upright(rot, size) and not is_upright(half_turn, size) and not is_upright(None, size)


def test_choose_flip() -> None:
    scores = {Flip.NONE: 3.0, Flip.HORIZONTAL: 250.0, Flip.VERTICAL: 0.0, Flip.BOTH: 0.0}
    decision = choose_flip(scores.__getitem__, "features", 15)
    assert decision is not None
    assert decision.flip is Flip.HORIZONTAL and not decision.ambiguous
    assert decision.scores["horizontal"] == 250.0
    assert MirrorDecision.from_dict(decision.to_dict()) == decision
    close = choose_flip({**scores, Flip.NONE: 200.0}.__getitem__, "features", 15)
    assert close is not None and close.ambiguous
    assert choose_flip(lambda f: 3.0, "features", 15) is None


@pytest.mark.parametrize(
    ("h", "expected"),
    [
        (np.eye(3), 1.0),
        # float32 clipping (cv2.intersectConvexConvex) read ~0.88 on edges this close
        (np.array([[1, 1e-9, 0], [0, 1, 1e-7], [0, 0, 1.0]]), 1.0),
        (np.array([[1, 0, 10], [0, 1, -5], [0, 0, 1.0]]), (1013 * 674) / (1023 * 679)),
        (np.diag([0.5, 0.5, 1.0]), 0.25),
        (np.array([[1, 0, 5000], [0, 1, 0], [0, 0, 1.0]]), 0.0),
    ],
)
def test_overlap_fraction_is_exact_for_coinciding_edges(h: np.ndarray, expected: float) -> None:
    from expokit.calibration.homography import image_corners, overlap_fraction, project

    size = (1024, 680)
    covered = overlap_fraction(project(h, image_corners(size)), size)
    assert covered == pytest.approx(expected, abs=1e-6)
