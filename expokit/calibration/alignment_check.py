"""One-shot alignment check of a two-camera rig: how far is the test camera from the reference?

:func:`check_alignment` takes one view from each camera (live-view frames or stills of a
textured scene), estimates the test -> reference homography with the calibration's own
machinery (:func:`~expokit.calibration.geometry.calibrate_geometry`: mirror detection, SIFT +
``USAC_MAGSAC`` after exposure matching, ECC refinement; run into a temporary folder and
thrown away) and turns it into figures a person adjusting the rig can act on, with a verdict
(``"ready"`` / ``"adjust"``) and advice. ``expokit align check`` is the command-line front.

Conventions
-----------
* Pixel coordinates: x right, y down, ``(0, 0)`` the centre of the top-left pixel. The
  homography ``H`` maps the *flipped* test image (the mirror undone, :class:`Flip`) to
  reference pixels, as in ``rig_calibration.json``.
* Every figure describes the *test content* as it appears on screen with the mirror undone,
  relative to the reference image:

  - ``roll_deg > 0``: the test content is rotated counter-clockwise on screen;
  - ``scale_pct > 0``: the test content is larger (the test camera sees a narrower field);
  - ``shift_px = [x, y]``: where the content sits in the test view minus where it sits in
    the reference, measured at the image centre, in reference pixels (``c_r - H(c_t)``,
    ``c_r``/``c_t`` the image centres); ``x > 0``: test content further right, ``y > 0``:
    lower;
  - ``keystone``: how much larger the test content is at its right edge than at its left
    edge (``horizontal_pct``) and at its bottom than at its top (``vertical_pct``).

* Advice is for a person **standing behind the test camera, looking the way its lens
  points** (into the splitter), i.e. in the frame of the test camera's own screen (its raw,
  still mirrored image). The splitter mirrors that camera, so a counter-clockwise error on
  the corrected screen is a clockwise error on the camera's own screen: with a mirror flip
  (``horizontal``/``vertical``) the sense of rotation and the mirrored axis are reversed
  before advice is written; ``both`` (a 180 degree rotation) reverses both axes but keeps
  the sense of rotation. Rolling a body clockwise (seen from behind) turns its image
  counter-clockwise on its screen; panning it right moves its image left; tilting it down
  moves its image up; turning it toward the side where its content is larger removes
  keystone from a yaw/tilt.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from expokit.calibration.geometry import GeometryConfig, calibrate_geometry
from expokit.calibration.homography import (
    EccSettings,
    HomographyLimits,
    TooFewMatchesError,
    image_corners,
    image_size,
    overlap_fraction,
    project,
    to_gray_float,
)
from expokit.calibration.mirror import Flip, rotation_degrees
from expokit.calibration.parallax import find_layers, parallax_advice
from expokit.core.checks import finite, in_range, positive
from expokit.core.errors import ExpokitError, InputFileError
from expokit.core.images import read_image
from expokit.core.transfer import srgb_decode

__all__ = [
    "AlignmentCheck",
    "AlignmentCheckConfig",
    "AlignmentThresholds",
    "check_alignment",
    "describe",
    "measure_homography",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Size = tuple[int, int]

#: Encoded values at or above this (of 1) count as clipped; at or below ``DARK`` as noise.
CLIPPED = 0.98
DARK = 0.02
TRANSFERS = ("srgb", "linear")


class AlignmentInputError(InputFileError):
    """An input view cannot be used for the alignment check (names the file)."""


@dataclass(frozen=True)
class AlignmentThresholds:
    """What "ready" means: every figure within these limits.

    Attributes
    ----------
    max_roll_deg
        Largest ``|roll_deg|`` (degrees).
    max_scale_pct
        Largest ``|scale_pct|`` (percent).
    max_shift_px
        Largest length of ``shift_px`` (reference pixels).
    max_keystone_pct
        Largest ``|horizontal_pct|`` and ``|vertical_pct|`` of the keystone (percent).
    focus_ratio
        ``(low, high)`` allowed test/reference sharpness ratio.
    min_coverage
        Smallest share of the reference frame both cameras must see.
    expected_ev
        Expected ``ev_offset`` (test minus reference, EV); ``None``: not checked.
    max_ev_error
        Largest ``|ev_offset - expected_ev|`` (EV) when ``expected_ev`` is given.
    max_parallax_px
        Largest residual (reference px) the alignment may leave on a second depth layer;
        also the smallest gap between two planes that counts as a layer.
    """

    max_roll_deg: float = 0.1
    max_scale_pct: float = 0.2
    max_shift_px: float = 1.0
    max_keystone_pct: float = 0.3
    focus_ratio: tuple[float, float] = (0.9, 1.1)
    min_coverage: float = 0.9
    expected_ev: float | None = None
    max_ev_error: float = 0.1
    max_parallax_px: float = 2.0

    def __post_init__(self) -> None:
        positive("max roll", self.max_roll_deg, "deg")
        positive("max scale error", self.max_scale_pct, "%")
        positive("max shift", self.max_shift_px, "px")
        positive("max keystone", self.max_keystone_pct, "%")
        positive("max EV error", self.max_ev_error, "EV")
        positive("max parallax", self.max_parallax_px, "px")
        lo, hi = self.focus_ratio
        in_range("focus ratio low end", lo, 0, 1, low_open=True, high_open=True)
        in_range("focus ratio high end", hi, 1, math.inf, low_open=True, high_open=True)
        in_range("min coverage", self.min_coverage, 0, 1, low_open=True)
        if self.expected_ev is not None:
            finite("expected EV", self.expected_ev, "EV")


@dataclass(frozen=True)
class AlignmentCheckConfig:
    """Parameters of :func:`check_alignment`.

    Attributes
    ----------
    thresholds
        The limits of a "ready" rig.
    flip
        ``"auto"`` (detect) or a fixed flip of the test view.
    transfer
        How the files encode light: ``"srgb"`` (JPEG/PNG from a camera, decoded with the sRGB
        curve) or ``"linear"`` (linear 16-bit renders) - for ``ev_offset``/white balance.
    max_side
        Views are downscaled to this longer side for features and ECC (live view speed).
    ecc
        Refine the feature homography by ECC (off: plain SIFT + ``USAC_MAGSAC``).
    parallax
        Look for a second plane in the matches (:attr:`AlignmentCheck.parallax`).
    """

    thresholds: AlignmentThresholds = field(default_factory=AlignmentThresholds)
    flip: str = "auto"
    transfer: str = "srgb"
    max_side: int = 2000
    ecc: bool = True
    parallax: bool = True

    def __post_init__(self) -> None:
        if self.transfer not in TRANSFERS:
            raise ValueError(f"transfer must be one of {', '.join(TRANSFERS)}")
        if self.max_side < 64:
            raise ValueError(f"max side must be >= 64 px, got {self.max_side}")


@dataclass(frozen=True)
class AlignmentFigures:
    """The misalignment figures of one reference/test pair, one-shot or live.

    Attributes
    ----------
    flip
        Mirror of the test view: ``"none"``, ``"horizontal"``, ``"vertical"``, ``"both"``.
    homography
        ``(3, 3)`` float64, flipped test pixels -> reference pixels, ``H[2, 2] = 1``.
    roll_deg, scale_pct, shift_px, keystone
        Misalignment of the test content (degrees, percent, reference px ``[x, y]``, dict with
        ``horizontal_pct``, ``vertical_pct`` and ``description``).
    parallax
        ``None`` when the scene cannot tell (one plane explains the matches), else the
        :class:`~expokit.calibration.parallax.ParallaxLayers` dict: ``layers`` (match counts
        of the dominant and of a second plane), ``residual_px`` (median distance of each
        layer's matches from ``homography``), ``near_layer`` (``"first"``/``"second"``
        where a ChArUco board in the reference view marks the near layer, else ``None``),
        ``near_px``/``far_px``, ``relative_shift_px``/``relative_scale_pct`` (the near
        layer's test content against the far layer's), ``parallax_px``, ``description`` and
        ``advice`` (which way to move the test body). With a known near layer the
        homography and its figures are those of the far layer.
    ev_offset
        ``log2`` of the linear-light gain test/reference on the common region, pixels clipped
        or in the noise floor in either view excluded (EV; negative: test darker).
    white_balance
        ``[r, g, b]`` test/reference ratio per channel divided by the overall gain (1 = same
        white balance).
    focus_ratio
        Test sharpness / reference sharpness on the common region (< 1: test softer);
        independent of exposure and contrast.
    coverage
        Share (0..1) of the reference frame the test camera sees too.
    verdict
        ``"ready"`` when every figure is within the thresholds, else ``"adjust"``.
    advice
        Sentences for the person at the rig (seen from behind the test camera).
    """

    flip: str
    homography: F64
    roll_deg: float
    scale_pct: float
    shift_px: tuple[float, float]
    keystone: dict[str, Any]
    parallax: dict[str, Any] | None
    ev_offset: float
    white_balance: tuple[float, float, float]
    focus_ratio: float
    coverage: float
    verdict: str
    advice: tuple[str, ...]

    def figures_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready values (a non-finite focus ratio is ``None``)."""
        return {
            "verdict": self.verdict,
            "flip": self.flip,
            "homography": self.homography.tolist(),
            "roll_deg": self.roll_deg,
            "scale_pct": self.scale_pct,
            "shift_px": list(self.shift_px),
            "keystone": self.keystone,
            "parallax": self.parallax,
            "ev_offset": self.ev_offset,
            "white_balance": list(self.white_balance),
            "focus_ratio": self.focus_ratio if math.isfinite(self.focus_ratio) else None,
            "coverage": self.coverage,
            "advice": list(self.advice),
        }


@dataclass(frozen=True, kw_only=True)
class AlignmentCheck(AlignmentFigures):
    """Result of :func:`check_alignment` (conventions: module docstring): the
    :class:`AlignmentFigures` and how they were found.

    Attributes
    ----------
    reference, test
        The files checked.
    initial_homography
        The plain SIFT + ``USAC_MAGSAC`` estimate before ECC, same convention as
        ``homography``.
    inliers, reprojection_rms
        Feature inliers of the fit and their RMS transfer error (reference px).
    thresholds
        The thresholds the verdict applied.
    """

    reference: str
    test: str
    initial_homography: F64
    inliers: int
    reprojection_rms: float
    thresholds: AlignmentThresholds

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the ``--json`` output)."""
        return {
            "reference": self.reference,
            "test": self.test,
            **self.figures_dict(),
            "initial_homography": self.initial_homography.tolist(),
            "inliers": self.inliers,
            "reprojection_rms": self.reprojection_rms,
            "thresholds": {
                **asdict(self.thresholds),
                "focus_ratio": list(self.thresholds.focus_ratio),
            },
        }


# --------------------------------------------------------------------------- geometry


def _jacobian(h: F64, point: F64) -> F64:
    """``(2, 2)`` Jacobian of the homography ``h`` at ``point`` (x, y)."""
    u, v, w = h @ np.array([point[0], point[1], 1.0])
    x, y = u / w, v / w
    return (
        np.array(
            [
                [h[0, 0] - x * h[2, 0], h[0, 1] - x * h[2, 1]],
                [h[1, 0] - y * h[2, 0], h[1, 1] - y * h[2, 1]],
            ]
        )
        / w
    )


def _magnification(h: F64, point: F64) -> float:
    """How much larger test content at test ``point`` appears than in the reference."""
    return 1.0 / math.sqrt(abs(float(np.linalg.det(_jacobian(h, point)))))


def _keystone_words(
    pct: float, positive: str, negative: str, subject: str = "test content "
) -> str:
    big, small = (positive, negative) if pct >= 0 else (negative, positive)
    return f"{subject}{abs(pct):.2f} % larger at its {big} edge than at its {small} edge"


def measure_homography(
    h: npt.NDArray[Any], test_size: Size, reference_size: Size
) -> tuple[float, float, tuple[float, float], dict[str, Any], float]:
    """Roll, scale, shift, keystone and coverage of a flipped-test -> reference homography.

    Parameters
    ----------
    h
        ``(3, 3)``, flipped test pixels -> reference pixels.
    test_size, reference_size
        ``(width, height)`` of the two images.

    Returns
    -------
    tuple
        ``(roll_deg, scale_pct, shift_px, keystone, coverage)`` in the conventions of the
        module docstring: roll (degrees, > 0 counter-clockwise test content), scale (%, > 0
        larger test content; from the similarity closest to ``h``'s Jacobian at the test
        centre), shift ``(x, y)`` (reference px, ``c_r - H(c_t)``), keystone dict
        (``horizontal_pct``: right edge vs left edge magnification of the test content,
        ``vertical_pct``: bottom vs top, percent) and coverage (0..1 of the reference frame).
    """

    hm = np.asarray(h, np.float64) / h[2, 2]
    tw, th = test_size
    rw, rh = reference_size
    c_t = np.array([(tw - 1) / 2, (th - 1) / 2])
    c_r = np.array([(rw - 1) / 2, (rh - 1) / 2])
    roll = rotation_degrees(hm, test_size)
    jac = _jacobian(hm, c_t)
    similarity = math.hypot((jac[0, 0] + jac[1, 1]) / 2, (jac[1, 0] - jac[0, 1]) / 2)
    scale_pct = (1.0 / similarity - 1.0) * 100.0
    mapped_centre = project(hm, c_t[None])[0]
    shift = (float(c_r[0] - mapped_centre[0]), float(c_r[1] - mapped_centre[1]))
    left, right = (
        _magnification(hm, np.array([0.0, c_t[1]])),
        _magnification(hm, np.array([tw - 1.0, c_t[1]])),
    )
    top, bottom = (
        _magnification(hm, np.array([c_t[0], 0.0])),
        _magnification(hm, np.array([c_t[0], th - 1.0])),
    )
    horizontal = (right / left - 1.0) * 100.0
    vertical = (bottom / top - 1.0) * 100.0
    keystone = {
        "horizontal_pct": horizontal,
        "vertical_pct": vertical,
        "description": f"{_keystone_words(horizontal, 'right', 'left')}, "
        f"{_keystone_words(vertical, 'bottom', 'top', '')} (on screen, mirror undone)",
    }
    coverage = overlap_fraction(project(hm, image_corners(test_size)), reference_size)
    return roll, scale_pct, shift, keystone, coverage


# --------------------------------------------------------------------------- photometry


def linear_light(image: npt.NDArray[Any], transfer: str) -> tuple[F32, npt.NDArray[np.bool_]]:
    """Linear RGB ``(H, W, 3)`` float32 and the usable-pixel mask (not clipped, not dark)."""
    gray = np.asarray(image)
    if gray.dtype == np.uint8:
        encoded = gray.astype(np.float32) / 255.0
    elif gray.dtype == np.uint16:
        encoded = gray.astype(np.float32) / 65535.0
    else:
        encoded = gray.astype(np.float32)
    if encoded.ndim == 2:
        encoded = np.repeat(encoded[:, :, None], 3, axis=2)
    rgb = np.ascontiguousarray(encoded[:, :, 2::-1][:, :, :3])  # BGR(A) -> RGB
    usable = np.all((rgb < CLIPPED) & (rgb > DARK), axis=2)
    linear = rgb if transfer == "linear" else np.asarray(srgb_decode(rgb), np.float32)
    return np.asarray(linear, np.float32), usable


def photometry(
    ref_rgb: F32,
    ref_ok: npt.NDArray[np.bool_],
    test_rgb: F32,
    test_ok: npt.NDArray[np.bool_],
    h: F64,
) -> tuple[float, tuple[float, float, float]]:
    """EV offset and white-balance ratios of the (flipped) test on the reference grid."""
    import cv2

    size = image_size(ref_rgb)
    warped = cv2.warpPerspective(test_rgb, h, size, flags=cv2.INTER_LINEAR)
    ok = cv2.warpPerspective(test_ok.astype(np.uint8) * 255, h, size, flags=cv2.INTER_NEAREST)
    # Erode: edges of clipped areas and the frame border blend usable and unusable pixels.
    ok = cv2.erode(ok, np.ones((5, 5), np.uint8))
    mask = (ok > 0) & cv2.erode(ref_ok.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if int(mask.sum()) < 100:
        raise ExpokitError(
            "too few pixels neither clipped nor black in both views to measure the exposure"
        )
    sums_t = warped[mask].astype(np.float64).sum(axis=0)
    sums_r = ref_rgb[mask].astype(np.float64).sum(axis=0)
    weights = np.array([0.2126, 0.7152, 0.0722])
    gain = float(weights @ sums_t) / float(weights @ sums_r)
    ratios = sums_t / sums_r / gain
    return math.log2(gain), (float(ratios[0]), float(ratios[1]), float(ratios[2]))


def sharpness(gray: F32, mask: npt.NDArray[np.bool_]) -> float:
    """Fine-to-coarse gradient energy of a linear grayscale image over ``mask``.

    Gradient energy after a sigma-1 Gaussian over the same after a sigma-4 Gaussian: a gain
    (exposure) and a contrast change cancel, noise is mostly removed by the first blur, and a
    soft lens lowers the first far more than the second.
    """
    import cv2

    def energy(sigma: float) -> float:
        blurred = cv2.GaussianBlur(gray, (0, 0), sigma)
        gx = cv2.Sobel(blurred, cv2.CV_32F, 1, 0)
        gy = cv2.Sobel(blurred, cv2.CV_32F, 0, 1)
        return float(np.mean((gx * gx + gy * gy)[mask]))

    coarse = energy(4.0)
    return energy(1.0) / coarse if coarse > 0 else float("nan")


def view_focus_ratio(ref_gray: F32, test_gray: F32, h: F64) -> float:
    """Test / reference :func:`sharpness`, each in its own frame, on the common region."""
    import cv2

    ref_size, test_size = image_size(ref_gray), image_size(test_gray)
    kernel = np.ones((25, 25), np.uint8)

    def common(mask: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        framed = np.zeros_like(mask)  # keep away from the frame edges (filter borders)
        framed[12:-12, 12:-12] = mask[12:-12, 12:-12]
        return np.asarray(cv2.erode(framed, kernel), bool)

    ones_t = np.ones(test_gray.shape, np.uint8)
    ones_r = np.ones(ref_gray.shape, np.uint8)
    ref_mask = common(cv2.warpPerspective(ones_t, h, ref_size, flags=cv2.INTER_NEAREST))
    test_mask = common(
        cv2.warpPerspective(ones_r, np.linalg.inv(h), test_size, flags=cv2.INTER_NEAREST)
    )
    if not ref_mask.any() or not test_mask.any():
        return float("nan")
    return sharpness(test_gray, test_mask) / sharpness(ref_gray, ref_mask)


# --------------------------------------------------------------------------- advice


def alignment_advice(
    flip: Flip,
    roll: float,
    scale_pct: float,
    shift: tuple[float, float],
    keystone: dict[str, Any],
    ev_offset: float,
    focus_ratio: float,
    coverage: float,
    t: AlignmentThresholds,
) -> list[str]:
    """Sentences, seen from behind the test camera (module docstring), one per problem."""
    mirrored = flip in (Flip.HORIZONTAL, Flip.VERTICAL)
    sx = -1.0 if flip in (Flip.HORIZONTAL, Flip.BOTH) else 1.0
    sy = -1.0 if flip in (Flip.VERTICAL, Flip.BOTH) else 1.0
    out: list[str] = []
    if abs(roll) > t.max_roll_deg:
        own_ccw = -roll if mirrored else roll  # content rotation on the camera's own screen
        # Rolling the body clockwise turns its image counter-clockwise: undo own_ccw.
        body = "clockwise" if own_ccw < 0 else "counter-clockwise"
        out.append(
            f"rotate the test body {abs(roll):.2f} deg {body}, seen from behind "
            f"(its content is rotated {abs(roll):.2f} deg "
            f"{'counter-clockwise' if roll > 0 else 'clockwise'} against the reference)"
        )
    if abs(scale_pct) > t.max_scale_pct:
        if scale_pct > 0:
            out.append(
                f"the test content is {scale_pct:.2f} % larger: zoom the test lens out "
                "(wider) or move the test camera back from the splitter"
            )
        else:
            out.append(
                f"the test content is {-scale_pct:.2f} % smaller: zoom the test lens in "
                "(longer) or move the test camera toward the splitter"
            )
    if math.hypot(*shift) > t.max_shift_px:
        own_x, own_y = sx * shift[0], sy * shift[1]  # displacement on the camera's own screen
        if abs(own_x) > t.max_shift_px / math.sqrt(2):
            # Image too far right on its own screen -> pan right (moves the image left).
            pan = "right" if own_x > 0 else "left"
            back = "left" if own_x > 0 else "right"
            out.append(
                f"pan the test camera {pan}, seen from behind, until its image moves "
                f"{abs(own_x):.1f} px {back} on its own screen"
            )
        if abs(own_y) > t.max_shift_px / math.sqrt(2):
            tilt = "up" if own_y < 0 else "down"  # tilting up moves the image down
            move = "down" if own_y < 0 else "up"
            out.append(
                f"tilt the test camera {tilt} until its image moves {abs(own_y):.1f} px "
                f"{move} on its own screen"
            )
    kx, ky = float(keystone["horizontal_pct"]), float(keystone["vertical_pct"])
    if abs(kx) > t.max_keystone_pct:
        side = "right" if sx * kx > 0 else "left"  # larger side on its own screen
        out.append(
            f"keystone: {_keystone_words(kx, 'right', 'left')} (mirror undone); turn the test "
            f"camera slightly to the "
            f"{side} (toward its larger side, seen from behind) and re-centre"
        )
    if abs(ky) > t.max_keystone_pct:
        side = "down" if sy * ky > 0 else "up"
        out.append(
            f"keystone: {_keystone_words(ky, 'bottom', 'top')}; tilt the test camera slightly "
            f"{side} "
            "(toward its larger side) and re-centre"
        )
    if t.expected_ev is not None and abs(ev_offset - t.expected_ev) > t.max_ev_error:
        diff = ev_offset - t.expected_ev
        out.append(
            f"the test view is {abs(diff):.2f} EV {'brighter' if diff > 0 else 'darker'} than "
            f"the expected {t.expected_ev:+.2f} EV: check shutter, aperture and ISO"
        )
    lo, hi = t.focus_ratio
    if math.isfinite(focus_ratio) and focus_ratio < lo:
        out.append(
            f"the test view is softer than the reference (focus ratio {focus_ratio:.2f}): "
            "refocus the test lens (and match the aperture)"
        )
    elif math.isfinite(focus_ratio) and focus_ratio > hi:
        out.append(
            f"the reference view is softer than the test (focus ratio {focus_ratio:.2f}): "
            "refocus the reference lens (and match the aperture)"
        )
    if coverage < t.min_coverage:
        out.append(
            f"the test camera sees only {coverage:.1%} of the reference frame: centre it first"
        )
    return out


# --------------------------------------------------------------------------- entry point


def check_alignment(
    reference: Path | str, test: Path | str, config: AlignmentCheckConfig | None = None
) -> AlignmentCheck:
    """Measure how the test view is misaligned against the reference view.

    Parameters
    ----------
    reference, test
        Image files (JPEG/PNG/TIFF, 8 or 16 bit, EXIF orientation applied), one view from
        each camera of the same textured scene; the test view may be mirrored and several EV
        darker or brighter.
    config
        Parameters and thresholds (defaults: :class:`AlignmentCheckConfig`).

    Returns
    -------
    AlignmentCheck
        Figures, verdict and advice.

    Raises
    ------
    InputFileError
        A file is missing or unreadable (names it).
    TooFewMatchesError, DegenerateHomographyError
        The views share too few features or fit no usable homography (names the test file).
    """
    config = config or AlignmentCheckConfig()
    ref_path, test_path = Path(reference), Path(test)
    ref_raw, test_raw = read_image(ref_path), read_image(test_path)
    for path, image in ((ref_path, ref_raw), (test_path, test_raw)):
        if min(image.shape[:2]) < 64:
            raise AlignmentInputError(path, f"image is {image.shape[1]}x{image.shape[0]} px")
    geometry = GeometryConfig(
        flip=config.flip,
        feature_max_side=config.max_side,
        ecc=EccSettings(max_side=config.max_side) if config.ecc else None,
        limits=HomographyLimits(min_overlap=0.3),
        qa_images=False,
    )
    with tempfile.TemporaryDirectory(prefix="expokit-align-") as tmp:
        calib = calibrate_geometry([ref_path], [test_path], Path(tmp) / "rig", config=geometry)
    flip = calib.flip
    h = np.asarray(calib.homography, np.float64)
    ref_size, test_size = image_size(ref_raw), image_size(test_raw)
    roll, scale_pct, shift, keystone, coverage = measure_homography(h, test_size, ref_size)

    ref_gray = to_gray_float(ref_raw)
    test_gray = flip.apply(to_gray_float(test_raw))
    ref_rgb, ref_ok = linear_light(ref_raw, config.transfer)
    test_rgb, test_ok = linear_light(flip.apply(test_raw), config.transfer)
    try:
        ev_offset, white_balance = photometry(ref_rgb, ref_ok, test_rgb, test_ok, h)
    except ExpokitError as exc:
        raise AlignmentInputError(test_path, str(exc)) from None
    lum = np.array([0.2126, 0.7152, 0.0722], np.float32)
    focus = view_focus_ratio(ref_rgb @ lum, test_rgb @ lum, h)
    t = config.thresholds
    layers = None
    if config.parallax:
        try:
            layers = find_layers(ref_gray, test_gray, h, config.max_side, t.max_parallax_px)
        except TooFewMatchesError:
            layers = None
    if layers is not None and layers.far_homography is not None:
        # A board held near marks the near layer: the figures are for the far scene.
        h = np.asarray(layers.far_homography, np.float64)
        roll, scale_pct, shift, keystone, coverage = measure_homography(h, test_size, ref_size)
    advice = alignment_advice(flip, roll, scale_pct, shift, keystone, ev_offset, focus, coverage, t)
    parallax = None
    if layers is not None:
        parallax = {**layers.to_dict(), "advice": parallax_advice(layers, flip, t.max_parallax_px)}
        advice += parallax["advice"]
    verdict = "adjust" if advice else "ready"
    return AlignmentCheck(
        reference=str(ref_path),
        test=str(test_path),
        flip=flip.value,
        homography=h,
        initial_homography=np.asarray(calib.initial_homography, np.float64),
        roll_deg=roll,
        scale_pct=scale_pct,
        shift_px=shift,
        keystone=keystone,
        parallax=parallax,
        ev_offset=ev_offset,
        white_balance=white_balance,
        focus_ratio=focus,
        coverage=coverage,
        inliers=calib.inliers,
        reprojection_rms=calib.reprojection_rms,
        verdict=verdict,
        advice=tuple(advice),
        thresholds=t,
    )


#: What ``describe`` says when one plane explains the matches.
NO_PARALLAX = (
    "cannot tell (one plane explains the matches; to check, hold the ChArUco board near the "
    "rig with texture far behind it)"
)


def describe(result: AlignmentCheck) -> list[str]:
    """The human-readable report: one line per figure, then the advice."""
    t = result.thresholds
    parallax = result.parallax
    lo, hi = t.focus_ratio
    lines = [
        f"reference {result.reference}, test {result.test}",
        f"flip         {result.flip}",
        f"roll         {result.roll_deg:+.3f} deg (limit {t.max_roll_deg:g})",
        f"scale        {result.scale_pct:+.3f} % (limit {t.max_scale_pct:g})",
        f"shift        x {result.shift_px[0]:+.2f}, y {result.shift_px[1]:+.2f} px "
        f"(limit {t.max_shift_px:g})",
        f"keystone     {result.keystone['description']}",
        "parallax     " + (NO_PARALLAX if parallax is None else parallax["description"]),
        f"EV offset    {result.ev_offset:+.3f} EV"
        + ("" if t.expected_ev is None else f" (expected {t.expected_ev:+g})"),
        "white bal.   r {:.3f}, g {:.3f}, b {:.3f}".format(*result.white_balance),
        f"focus ratio  {result.focus_ratio:.3f} (allowed {lo:g}-{hi:g})",
        f"coverage     {result.coverage:.1%}",
        f"matches      {result.inliers} inliers, RMS {result.reprojection_rms:.2f} px",
        f"verdict      {result.verdict}",
    ]
    lines += [f"  - {a}" for a in result.advice]
    return lines
