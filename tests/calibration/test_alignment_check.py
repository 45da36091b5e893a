"""Accuracy of ``expokit align check`` on views with a known misalignment.

The views are generated here from a procedural texture (no shared data needed): the test view
is the reference warped by a known homography, mirrored left-right, 2 EV darker in linear
light, noisy, and sRGB-encoded to 16 bit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from expokit.calibration.alignment_check import (
    AlignmentCheckConfig,
    AlignmentThresholds,
    check_alignment,
    measure_homography,
)
from expokit.calibration.homography import (
    detect_sift,
    exposure_matched_pair,
    fit_homography,
    homography_grid_error,
    match_features,
    to_gray_float,
    to_uint8,
)
from expokit.calibration.mirror import Flip
from expokit.cli import cli
from expokit.core.errors import InputFileError
from expokit.core.images import read_image
from expokit.core.transfer import srgb_encode
from tests.conftest import shared_path

W, H = 640, 480
MARGIN = 80


def texture(seed: int = 0) -> np.ndarray:
    """Rich linear-light RGB texture ``(H + 2 MARGIN, W + 2 MARGIN, 3)`` in ``[0.03, 0.8]``."""
    rng = np.random.default_rng(seed)
    h, w = H + 2 * MARGIN, W + 2 * MARGIN
    img = np.zeros((h, w, 3), np.float32)
    for octave in (4, 8, 16, 32, 64):  # multi-scale noise
        small = rng.random((h // octave + 2, w // octave + 2, 3)).astype(np.float32)
        img += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)[:h, :w] / 5
    canvas = np.zeros((h, w, 3), np.float32)
    for _ in range(250):  # shapes with sharp edges
        colour = tuple(float(c) for c in rng.random(3))
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        if rng.random() < 0.5:
            cv2.circle(canvas, centre, int(rng.integers(3, 30)), colour, -1)
        else:
            size = rng.integers(4, 40, 2)
            cv2.rectangle(
                canvas, centre, (centre[0] + int(size[0]), centre[1] + int(size[1])), colour, -1
            )
    img = 0.5 * img + 0.5 * canvas
    img = (img - img.min()) / (img.max() - img.min())
    return np.asarray(0.03 + 0.77 * img, np.float32)


def content_map(
    roll_deg: float, scale: float, shift: tuple[float, float], persp: tuple[float, float]
) -> np.ndarray:
    """Reference -> test pixel map: test content rotated ``roll_deg`` counter-clockwise on
    screen, ``scale`` times larger, displaced by ``shift``, with a centred perspective."""
    c = np.array([(W - 1) / 2, (H - 1) / 2])
    t = math.radians(roll_deg)
    # counter-clockwise on a y-down screen
    rot = np.array([[math.cos(t), math.sin(t), 0], [-math.sin(t), math.cos(t), 0], [0, 0, 1]])
    to_c = np.array([[1, 0, -c[0]], [0, 1, -c[1]], [0, 0, 1.0]])
    from_c = np.array([[1, 0, c[0] + shift[0]], [0, 1, c[1] + shift[1]], [0, 0, 1.0]])
    p = np.array([[1, 0, 0], [0, 1, 0], [persp[0], persp[1], 1.0]])
    return from_c @ np.diag([scale, scale, 1.0]) @ rot @ p @ to_c


def write_views(
    tmp: Path,
    a_ref_to_test: np.ndarray,
    ev: float = -2.0,
    blur: float = 0.0,
    flip: Flip = Flip.HORIZONTAL,
    seed: int = 0,
    bits: int = 16,
) -> tuple[Path, Path, np.ndarray]:
    """Write ref.png / test.png; returns the paths and the true flipped-test -> ref H."""
    rng = np.random.default_rng(seed + 1)
    canvas = texture(seed)
    crop = np.array([[1, 0, MARGIN], [0, 1, MARGIN], [0, 0, 1.0]])  # ref px -> canvas px
    ref = canvas[MARGIN : MARGIN + H, MARGIN : MARGIN + W]
    h_true = np.linalg.inv(a_ref_to_test)  # test (unflipped) -> ref
    test = cv2.warpPerspective(
        canvas, crop @ h_true, (W, H), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
    )
    # test(p) = canvas(crop @ h_true p), i.e. warpPerspective with the inverse map flag.
    if blur:
        test = cv2.GaussianBlur(test, (0, 0), blur)
    test = test * 2.0**ev + rng.normal(0, 0.0015, test.shape)
    ref = ref + rng.normal(0, 0.0015, ref.shape)
    test = flip.apply(np.asarray(test, np.float32))
    paths = []
    for name, img in (("ref.png", ref), ("test.png", test)):
        top = 65535 if bits == 16 else 255
        codes = np.round(srgb_encode(img) * top)[:, :, ::-1]
        enc = codes.astype(np.uint16) if bits == 16 else codes.astype(np.uint8)
        path = tmp / name
        cv2.imwrite(str(path), enc)
        paths.append(path)
    return paths[0], paths[1], h_true / h_true[2, 2]


def _expected(h_true: np.ndarray) -> tuple[float, float, tuple[float, float]]:
    roll, scale, shift, _, _ = measure_homography(h_true, (W, H), (W, H))
    return roll, scale, shift


MISALIGNED = dict(roll_deg=0.5, scale=1.01, shift=(3.0, -2.0), persp=(2e-5, -1e-5))


@pytest.fixture(scope="module")
def misaligned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("misaligned")
    ref, test, h_true = write_views(tmp, content_map(**MISALIGNED))  # type: ignore[arg-type]
    result = check_alignment(ref, test)
    return {"ref": ref, "test": test, "h_true": h_true, "result": result}


def test_known_misalignment_is_measured(misaligned: dict[str, Any]) -> None:
    r = misaligned["result"]
    h_true = misaligned["h_true"]
    # The known misalignment, by construction (the perspective is centred on the reference
    # centre, so it barely moves the figures measured at the test centre).
    assert _expected(h_true)[0] == pytest.approx(0.5, abs=0.002)
    assert _expected(h_true)[1] == pytest.approx(1.0, abs=0.02)
    roll, scale, shift = _expected(h_true)
    mean_err, max_err = homography_grid_error(r.homography, h_true, (W, H))
    print(
        f"\nroll {r.roll_deg:.4f} (true {roll:.4f}), scale {r.scale_pct:.4f} % "
        f"(true {scale:.4f}), shift {r.shift_px} (true {shift}), EV {r.ev_offset:.4f}, "
        f"grid error mean {mean_err:.3f} max {max_err:.3f} px, WB {r.white_balance}, "
        f"focus {r.focus_ratio:.3f}, coverage {r.coverage:.3f}"
    )
    assert r.flip == "horizontal"
    assert abs(r.roll_deg - roll) <= 0.05
    assert abs(r.scale_pct - scale) <= 0.1
    assert math.hypot(r.shift_px[0] - shift[0], r.shift_px[1] - shift[1]) <= 0.5
    assert mean_err <= 0.3
    assert abs(r.ev_offset - (-2.0)) <= 0.05
    assert all(abs(c - 1) < 0.02 for c in r.white_balance)
    assert 0.9 <= r.focus_ratio <= 1.1
    assert r.parallax is None


def test_known_misalignment_in_8_bit_views(tmp_path: Path) -> None:
    """The same accuracy from 8-bit sRGB views (the test's shadows quantised 2 EV down)."""
    ref, test, h_true = write_views(tmp_path, content_map(**MISALIGNED), bits=8, seed=11)  # type: ignore[arg-type]
    r = check_alignment(ref, test)
    roll, scale, shift = _expected(h_true)
    mean_err, max_err = homography_grid_error(r.homography, h_true, (W, H))
    print(
        f"\n8 bit: roll error {r.roll_deg - roll:+.4f} deg, "
        f"scale error {r.scale_pct - scale:+.4f} %, "
        f"shift error {np.subtract(r.shift_px, shift)}, grid {mean_err:.3f}/{max_err:.3f} px, "
        f"EV {r.ev_offset:.4f}"
    )
    assert abs(r.roll_deg - roll) <= 0.05 and abs(r.scale_pct - scale) <= 0.1
    assert math.hypot(r.shift_px[0] - shift[0], r.shift_px[1] - shift[1]) <= 0.5
    assert mean_err <= 0.3 and abs(r.ev_offset + 2.0) <= 0.05


def test_misaligned_pair_gets_adjust_with_the_right_signs(misaligned: dict[str, Any]) -> None:
    r = misaligned["result"]
    assert r.verdict == "adjust"
    text = "\n".join(r.advice)
    # Test content turned counter-clockwise, seen mirrored: roll the body clockwise.
    assert "rotate the test body 0.50 deg clockwise, seen from behind" in text
    assert "1.01 % larger" in text and "zoom the test lens out" in text
    # Content 3 px right on the corrected screen = 3 px left on the mirrored camera's own
    # screen: pan left (moves its image right).
    assert "pan the test camera left" in text
    # 2 px up (not mirrored vertically): tilt up moves the image down.
    assert "tilt the test camera up" in text


def test_feature_only_fit_is_not_better(misaligned: dict[str, Any]) -> None:
    """Plain SIFT + USAC_MAGSAC (the initial estimate, and a fresh one here) vs the check."""
    r = misaligned["result"]
    h_true = misaligned["h_true"]
    ref = to_gray_float(read_image(misaligned["ref"]))
    test = Flip.HORIZONTAL.apply(to_gray_float(read_image(misaligned["test"])))
    ref_n, test_n, white = exposure_matched_pair(ref, test)
    t_pts, r_pts = match_features(
        detect_sift(to_uint8(test_n, white), 8000), detect_sift(to_uint8(ref_n, white), 8000), 0.75
    )
    h_plain, _ = fit_homography(t_pts, r_pts, 2.0)
    assert h_plain is not None
    plain = homography_grid_error(h_plain, h_true, (W, H))[0]
    initial = homography_grid_error(r.initial_homography, h_true, (W, H))[0]
    checked = homography_grid_error(r.homography, h_true, (W, H))[0]
    print(
        f"\ngrid error: plain SIFT+MAGSAC {plain:.3f}, initial {initial:.3f}, "
        f"check {checked:.3f} px"
    )
    assert checked <= plain + 0.02
    assert checked <= initial + 0.02


def test_aligned_pair_is_ready(tmp_path: Path) -> None:
    ref, test, _ = write_views(tmp_path, np.eye(3), seed=3)
    r = check_alignment(ref, test, AlignmentCheckConfig(AlignmentThresholds(expected_ev=-2.0)))
    assert r.verdict == "ready", r.advice
    assert r.advice == ()
    assert abs(r.roll_deg) < 0.02 and abs(r.scale_pct) < 0.05 and math.hypot(*r.shift_px) < 0.2
    assert abs(r.ev_offset + 2.0) <= 0.05
    assert r.coverage > 0.99


def test_blurred_test_view_is_soft(tmp_path: Path) -> None:
    ref, test, _ = write_views(tmp_path, np.eye(3), blur=1.5, seed=5)
    r = check_alignment(ref, test)
    assert r.focus_ratio < 0.9
    assert r.verdict == "adjust"
    assert any("refocus the test lens" in a for a in r.advice)


def test_unmirrored_rotation_advice_flips_sense(tmp_path: Path) -> None:
    a = content_map(0.5, 1.0, (0.0, 0.0), (0.0, 0.0))
    ref, test, _ = write_views(tmp_path, a, flip=Flip.NONE, seed=7)
    r = check_alignment(ref, test)
    assert r.flip == "none"
    assert any("counter-clockwise, seen from behind" in s for s in r.advice)


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputFileError, match=r"broken\.png"):
        check_alignment(bad, bad)


def test_unrelated_views_are_too_few_matches(tmp_path: Path) -> None:
    flat = np.full((H, W), 128, np.uint8)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    cv2.imwrite(str(a), flat)
    cv2.imwrite(str(b), flat)
    result = CliRunner().invoke(cli, ["align", "check", str(a), str(b)])
    assert result.exit_code == 1
    assert "b.png" in result.output and "too few" in result.output


def test_cli_json(misaligned: dict[str, Any]) -> None:
    result = CliRunner().invoke(
        cli, ["align", "check", str(misaligned["ref"]), str(misaligned["test"]), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in (
        "flip homography roll_deg scale_pct shift_px keystone parallax ev_offset "
        "white_balance focus_ratio coverage verdict advice"
    ).split():
        assert key in data
    assert data["verdict"] == "adjust" and len(data["shift_px"]) == 2
    assert np.asarray(data["homography"]).shape == (3, 3)
    human = CliRunner().invoke(
        cli, ["align", "check", str(misaligned["ref"]), str(misaligned["test"])]
    )
    assert human.exit_code == 0 and "verdict      adjust" in human.output


def test_graf_view_against_itself(tmp_path: Path) -> None:
    """A real photograph (graf1) as the texture: darkened, mirrored copy is ready."""
    graf = shared_path("stereo", "homography_graf", "graf1.png")
    img = cv2.imread(str(graf), cv2.IMREAD_COLOR)
    if img is None:
        pytest.skip(f"cannot read {graf}")
    test = cv2.flip(np.clip(img.astype(np.float32) * 0.5, 0, 255).astype(np.uint8), 1)
    ref_path, test_path = tmp_path / "ref.png", tmp_path / "test.png"
    cv2.imwrite(str(ref_path), img)
    cv2.imwrite(str(test_path), test)
    r = check_alignment(ref_path, test_path)
    assert r.flip == "horizontal"
    assert abs(r.roll_deg) < 0.05 and math.hypot(*r.shift_px) < 0.5


def test_two_layer_scene_reports_parallax(tmp_path: Path) -> None:
    """A near object (a block of the scene) 8 px off the background plane."""
    ref, test, _ = write_views(tmp_path, np.eye(3), seed=9)
    img = cv2.imread(str(test), cv2.IMREAD_UNCHANGED)
    assert img is not None
    x0, x1, y0, y1 = 200, 460, 130, 350
    img[y0:y1, x0:x1] = img[y0:y1, x0 - 8 : x1 - 8]
    cv2.imwrite(str(test), img)
    r = check_alignment(ref, test)
    assert r.parallax is not None, r
    dominant, second = r.parallax["residual_px"]
    assert dominant < 0.5 and 7.0 < second < 9.0
    assert r.verdict == "adjust"


def test_planar_scene_has_no_parallax(misaligned: dict[str, Any]) -> None:
    assert misaligned["result"].parallax is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_roll_deg", -1.0, r"max roll must be a finite number > 0 \(deg\), got -1.0"),
        ("max_shift_px", float("nan"), r"max shift must be a finite number \(px\), got nan"),
        ("expected_ev", float("inf"), r"expected EV must be a finite number \(EV\), got inf"),
        ("min_coverage", 1.5, r"min coverage must be in \(0, 1\], got 1.5"),
        ("focus_ratio", (1.2, 1.5), r"focus ratio low end must be in \(0, 1\), got 1.2"),
    ],
)
def test_a_bad_threshold_names_itself(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AlignmentThresholds(**{field: value})  # type: ignore[arg-type]
