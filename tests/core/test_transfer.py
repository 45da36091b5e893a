import numpy as np
import pytest

from expokit.core.transfer import apply_lut, exposure_lut, srgb_decode, srgb_encode


def test_srgb_reference_values() -> None:
    # IEC 61966-2-1: linear 0.0031308 -> 0.04045 (break point), 0.18 -> ~0.4614, 1 -> 1.
    got = srgb_encode([0.0, 0.0031308, 0.18, 0.5, 1.0])
    np.testing.assert_allclose(got, [0.0, 0.04045, 0.461356, 0.735357, 1.0], atol=2e-5)


def test_srgb_roundtrip_nd_and_nan() -> None:
    x = np.linspace(0, 1, 2 * 3 * 4).reshape(2, 3, 4)
    np.testing.assert_allclose(srgb_decode(srgb_encode(x)), x, atol=1e-12)
    assert srgb_encode(x).shape == (2, 3, 4)
    out = srgb_encode([np.nan, 0.5])
    assert np.isnan(out[0]) and not np.isnan(out[1])


def test_srgb_clips_out_of_range() -> None:
    np.testing.assert_allclose(srgb_encode([-1.0, 2.0]), [0.0, 1.0], atol=1e-12)


def test_linear_lut_is_an_exact_scale() -> None:
    lut = exposure_lut(2.0**-1.5, bits=16, transfer="linear")
    codes = np.array([0, 1000, 30000, 65535])
    np.testing.assert_array_equal(lut[codes], np.rint(codes * 2.0**-1.5))
    assert lut.dtype == np.uint16


def test_lut_clips_after_scaling() -> None:
    lut = exposure_lut(4.0, bits=8, transfer="srgb")
    assert lut.dtype == np.uint8
    assert lut[65535 // 4 + 1] == 255 and lut[-1] == 255
    assert lut[0] == 0
    assert np.all(np.diff(lut.astype(int)) >= 0)  # monotone


@pytest.mark.parametrize("gain", [0.0, -1.0, float("nan"), float("inf")])
def test_lut_rejects_bad_gain(gain: float) -> None:
    with pytest.raises(ValueError, match="gain"):
        exposure_lut(gain, bits=8, transfer="srgb")


def test_apply_lut_needs_uint16() -> None:
    lut = exposure_lut(1.0, bits=8, transfer="srgb")
    with pytest.raises(TypeError, match="uint16"):
        apply_lut(np.zeros((2, 2), np.uint8), lut)
    img = np.array([[0, 65535]], np.uint16)
    np.testing.assert_array_equal(apply_lut(img, lut), [[0, 255]])


@pytest.mark.parametrize("threads", [1, 3])
def test_apply_luts_matches_apply_lut_byte_for_byte(threads: int) -> None:
    from expokit.core.transfer import apply_luts

    rng = np.random.default_rng(0)
    image = rng.integers(0, 65536, (131, 37, 3), dtype=np.uint16)
    luts = [
        exposure_lut(g, bits=b, transfer=t)
        for g, b, t in [(0.35, 8, "srgb"), (1.0, 16, "linear"), (2.8, 16, "srgb")]
    ]
    got = apply_luts(image, luts, reverse_channels=True, band_rows=16, threads=threads)
    for lut, out in zip(luts, got, strict=True):
        want = apply_lut(image[..., ::-1], lut)
        assert out.dtype == want.dtype and out.flags.c_contiguous
        np.testing.assert_array_equal(out, want)
