"""Decoding: LibRaw parameters, white balance, metadata, sanity checks, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from expokit.core.errors import InputFileError
from expokit.core.synthetic import chart_patches, demo_scene, write_dng
from expokit.curation.rendering.raw_decode import decode_raw
from tests.conftest import shared_path

H, W = 212, 318


def _patch_means(linear: np.ndarray, shrink: int = 10) -> tuple[np.ndarray, np.ndarray]:
    got, want = [], []
    for y0, y1, x0, x1, rgb in chart_patches(H, W):
        got.append(
            linear[y0 + shrink : y1 - shrink, x0 + shrink : x1 - shrink].reshape(-1, 3).mean(0)
        )
        want.append(rgb)
    return np.array(got) / 65535.0, np.array(want)


@pytest.mark.parametrize("cfa", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_linear_output_is_proportional_to_known_radiance(tmp_path: Path, cfa: str) -> None:
    path = tmp_path / "c.dng"
    write_dng(path, demo_scene("chart", H, W), cfa=cfa, black_level=512, white_level=16383)
    decoded = decode_raw(path)
    assert decoded.linear.dtype == np.uint16 and decoded.linear.shape == (H, W, 3)
    got, want = _patch_means(decoded.linear)
    ok = want.max(axis=1) < 0.95
    scale = (got[ok] * want[ok]).sum(0) / (want[ok] ** 2).sum(0)  # per-channel fit through 0
    np.testing.assert_allclose(scale, 1.0, rtol=0.02)
    np.testing.assert_allclose(got[ok], want[ok] * scale, rtol=0.03, atol=2e-4)
    assert decoded.wb_source == "camera"
    assert decoded.metadata.cfa_pattern == cfa


def test_metadata_from_file(chart_dng: Path) -> None:
    meta = decode_raw(chart_dng).metadata
    assert meta.camera_make == "expokit" and meta.camera_model == "Synthetic Bayer"
    assert meta.exposure_time_s == pytest.approx(1 / 125, rel=1e-4)
    assert meta.iso == 100 and meta.f_number == pytest.approx(8.0)
    assert meta.captured_at == "2026-01-01T12:00:00"
    assert meta.raw_type == "Flat"


def test_missing_camera_wb_falls_back_to_daylight_and_stays_neutral(tmp_path: Path) -> None:
    path = tmp_path / "nowb.dng"
    write_dng(
        path,
        demo_scene("chart", H, W),
        as_shot_neutral=None,
        sensor_neutral=(0.7, 1.0, 0.4),
        black_level=512,
        white_level=16383,
    )
    decoded = decode_raw(path)
    assert decoded.wb_source == "daylight (no camera WB in file)"
    got, _ = _patch_means(decoded.linear)
    greys = got[-6:-1]  # neutral row, without the darkest patch
    np.testing.assert_allclose(greys / greys.mean(axis=1, keepdims=True), 1.0, atol=0.03)


def test_canon_d30_has_no_camera_wb() -> None:
    decoded = decode_raw(shared_path("raw", "RAW_CANON_D30_SRGB.CRW"))
    assert decoded.wb_source == "daylight (no camera WB in file)"
    assert all(m > 0 for m in decoded.wb_multipliers)


def test_unity_and_daylight_policies(chart_dng: Path) -> None:
    assert decode_raw(chart_dng, white_balance="unity").wb_multipliers == (1.0, 1.0, 1.0, 1.0)
    assert decode_raw(chart_dng, white_balance="daylight").wb_source == "daylight"


def test_linear_raw_dng_renders_proportionally(tmp_path: Path) -> None:
    path = tmp_path / "linear.dng"
    write_dng(path, demo_scene("chart", H, W), linear_raw=True, black_level=512, white_level=16383)
    decoded = decode_raw(path)
    assert decoded.metadata.raw_type == "Stack"
    assert any("non-Bayer" in note for note in decoded.notes)
    got, want = _patch_means(decoded.linear, shrink=4)
    ok = want.max(axis=1) < 0.95
    np.testing.assert_allclose(got[ok], want[ok], rtol=0.03, atol=2e-4)


def test_linear_raw_with_low_white_level_uses_data_maximum(tmp_path: Path) -> None:
    path = tmp_path / "lowwhite.dng"
    write_dng(
        path,
        demo_scene("chart", H, W),
        linear_raw=True,
        black_level=0,
        white_level=16383,
        white_level_tag=4000,
    )
    decoded = decode_raw(path)
    assert any("below the data maximum" in note for note in decoded.notes)
    saturated = np.mean(np.any(decoded.linear >= 65534, axis=2))
    assert saturated < 0.05  # not rendered white


def test_bayer_white_level_far_below_data_is_rejected_as_white(tmp_path: Path) -> None:
    path = tmp_path / "white.dng"
    scene = demo_scene("chart", H, W) + 0.2  # every pixel well above the stated white level
    write_dng(path, scene, black_level=0, white_level=16383, white_level_tag=1000)
    with pytest.raises(InputFileError, match=r"white\.dng: renders white"):
        decode_raw(path)


def test_blank_raw_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "blank.dng"
    write_dng(path, np.zeros((H, W, 3), np.float32), black_level=256)
    with pytest.raises(InputFileError, match=r"blank\.dng: raw data are blank"):
        decode_raw(path)


def test_noise_raw_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "noise.dng"
    rng = np.random.default_rng(0)
    write_dng(path, rng.uniform(0, 0.9, (H, W, 3)).astype(np.float32))
    with pytest.raises(InputFileError, match=r"noise\.dng: raw data look like noise"):
        decode_raw(path)
    # The check can be switched off for files that really are noise-like.
    assert decode_raw(path, sanity_checks=False).linear.shape == (H, W, 3)


INVALID = {
    "exiftool_CanonRaw_stub.cr2": "not a RAW format LibRaw can decode",
    "exiftool_DNG_stub.dng": "image data missing or truncated",
    "exiftool_Nikon_stub.nef": "image data missing or truncated",
    "exiftool_Panasonic_stub.rw2": "image data missing or truncated",
    "truncated_NIKON_D70s.nef": "file truncated or unreadable",
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_shared_files_get_specific_errors(name: str) -> None:
    path = shared_path("raw", "invalid", name)
    with pytest.raises(InputFileError) as info:
        decode_raw(path)
    assert str(info.value).startswith(str(path))
    assert INVALID[name] in str(info.value)


def test_nikon_stub_without_size_check_still_fails_in_libraw() -> None:
    path = shared_path("raw", "invalid", "exiftool_Nikon_stub.nef")
    with pytest.raises(InputFileError, match=r"corrupt RAW data \(LibRawDataError"):
        decode_raw(path, sanity_checks=False)


def test_missing_file() -> None:
    with pytest.raises(InputFileError, match="no such file"):
        decode_raw("/nonexistent/x.dng")
