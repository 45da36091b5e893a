"""Reference methods: known answers on synthetic images, masks, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from expokit.models.reference import (
    REFERENCE_METHODS,
    ReferenceMethodError,
    fit_gain_gamma,
    gain_to_reference,
    histogram_match,
    identity,
    mean_luminance,
    oracle_gain_gamma,
)


def _image(seed: int, shape: tuple[int, int] = (24, 32), high: float = 0.9) -> np.ndarray:
    rng = np.random.default_rng(seed)
    levels = rng.integers(3, int(high * 255), size=(*shape, 3))
    return levels / 255.0


def test_identity_returns_a_copy() -> None:
    x = _image(0)
    out = identity(x)
    assert np.array_equal(out, x) and out is not x


def test_gain_recovers_a_known_four_times() -> None:
    reference = _image(1)
    dark = reference / 4
    out = gain_to_reference(dark, reference)
    assert np.allclose(out, reference, atol=1e-12)
    assert mean_luminance(out) == pytest.approx(mean_luminance(reference))


def test_gain_uses_only_masked_pixels() -> None:
    reference = _image(2)
    image = reference / 4
    image[:, :8] = 1.0  # garbage outside the mask would change the gain
    mask = np.ones(image.shape[:2], bool)
    mask[:, :8] = False
    out = gain_to_reference(image, reference / 1, mask)
    # the reference mean includes its left columns, so compare with the gain itself
    expected = mean_luminance(reference) / mean_luminance(image, mask)
    assert np.allclose(out[:, 8:], np.clip(image[:, 8:] * expected, 0, 1))
    assert expected == pytest.approx(
        mean_luminance(reference) / mean_luminance(reference[:, 8:] / 4), rel=1e-12
    )


def test_gain_on_black_input_is_identity() -> None:
    black = np.zeros((8, 8, 3))
    assert np.array_equal(gain_to_reference(black, _image(3, (8, 8))), black)


def test_histogram_match_undoes_a_monotone_remap() -> None:
    reference = _image(4, (40, 40), high=1.0)
    remapped = reference**2.5 * 0.7  # strictly monotone: the ranks are kept
    out = histogram_match(remapped, reference)
    assert np.abs(out - reference).max() < 1e-9
    # a different image with the same values (shuffled) is matched to the same histogram
    shuffled = np.random.default_rng(0).permutation(reference.reshape(-1, 3)).reshape(40, 40, 3)
    out = histogram_match(shuffled**0.5, reference)
    for c in range(3):
        assert np.allclose(np.sort(out[..., c].ravel()), np.sort(reference[..., c].ravel()))


def test_oracle_recovers_known_gain_and_gamma() -> None:
    x = _image(5, (32, 32), high=1.0)
    target = np.clip(0.8 * x**0.6, 0, 1)
    fit = fit_gain_gamma(x, target)
    assert fit.gain == pytest.approx(0.8, rel=1e-6)
    assert fit.gamma == pytest.approx(0.6, rel=1e-6)
    assert np.allclose(oracle_gain_gamma(x, target), target, atol=1e-9)


def test_oracle_refinement_handles_clipped_targets() -> None:
    x = _image(6, (32, 32), high=1.0)
    target = np.clip(2.5 * x**0.7, 0, 1)  # more than half the pixels clip at 1
    assert (target >= 1).mean() > 0.3
    refined = fit_gain_gamma(x, target)
    assert refined.gain == pytest.approx(2.5, rel=1e-3)
    assert refined.gamma == pytest.approx(0.7, rel=1e-3)
    log_only = fit_gain_gamma(x, target, refine=False)
    err = ((refined.apply(x) - target) ** 2).mean()
    assert err <= ((log_only.apply(x) - target) ** 2).mean()


def test_only_the_oracle_peeks_and_says_so() -> None:
    peeking = {name for name, m in REFERENCE_METHODS.items() if m.peeking}
    assert peeking == {"oracle_gain_gamma"}
    assert "peeking" in REFERENCE_METHODS["oracle_gain_gamma"].label
    x, t = _image(7), _image(8)
    for method in REFERENCE_METHODS.values():
        out = method.run(x, t, t, None)
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((8, 8)), "expected an \\(H, W, 3\\)"),
        (np.zeros((8, 8, 4)), "expected an \\(H, W, 3\\)"),
        (np.full((8, 8, 3), np.nan), "NaN"),
    ],
)
def test_bad_images_are_refused(image: np.ndarray, message: str) -> None:
    with pytest.raises(ReferenceMethodError, match=message):
        gain_to_reference(image, _image(9, (8, 8)))


def test_bad_masks_are_refused() -> None:
    x = _image(10, (8, 8))
    with pytest.raises(ReferenceMethodError, match="no valid pixel"):
        histogram_match(x, x, np.zeros((8, 8), bool))
    with pytest.raises(ReferenceMethodError, match="does not fit"):
        gain_to_reference(x, x, np.ones((4, 4), bool))
    with pytest.raises(ReferenceMethodError, match="differ in shape"):
        fit_gain_gamma(x, _image(11, (9, 8)))


def test_gain_to_level_gives_the_level() -> None:
    from expokit.models.reference import MID_GREY, gain_to_level

    x = _image(12, (16, 16), high=0.3)
    out = gain_to_level(x, MID_GREY)
    assert mean_luminance(out) == pytest.approx(MID_GREY, rel=1e-9)  # nothing clips
    assert np.allclose(out, x * MID_GREY / mean_luminance(x))
    mask = np.zeros((16, 16), bool)
    mask[4:, :] = True
    assert mean_luminance(gain_to_level(x, 0.2, mask), mask) == pytest.approx(0.2)
    assert np.array_equal(gain_to_level(np.zeros((4, 4, 3)), 0.5), np.zeros((4, 4, 3)))
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ReferenceMethodError, match="not in"):
            gain_to_level(x, bad)


def test_mid_grey_is_the_srgb_encoding_of_18_percent() -> None:
    from expokit.core.transfer import srgb_encode
    from expokit.models.reference import MID_GREY

    assert float(srgb_encode(0.18)) == pytest.approx(MID_GREY, abs=1e-4)


def test_who_peeks_per_reference_mode() -> None:
    from expokit.models.reference import train_level_method

    peeks = {
        mode: {n for n, m in REFERENCE_METHODS.items() if m.peeks(mode)}
        for mode in ("same", "other-scene", "train-scene")
    }
    assert peeks["same"] == {"gain_to_reference", "histogram_match", "oracle_gain_gamma"}
    assert peeks["other-scene"] == peeks["train-scene"] == {"oracle_gain_gamma"}
    assert REFERENCE_METHODS["gain_to_reference"].peeks_why("same") is not None
    assert REFERENCE_METHODS["gain_to_reference"].peeks_why("other-scene") is None
    assert REFERENCE_METHODS["identity"].peeks_why("same") is None
    method = train_level_method(0.3, "train")
    assert not method.peeks("same") and "train" in method.label
    x, t = _image(13), _image(14)
    # it ignores the reference and the target: only the level counts
    assert np.array_equal(method.run(x, t, t, None), method.run(x, x, x, None))
    assert mean_luminance(method.run(x / 4, t, t, None)) == pytest.approx(0.3)


# ------------------------------------------------------------------- the exposure ratio
def _exposed_pair(ratio: float, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """A target and an input ``ratio`` times darker in linear light (sRGB), with a
    clipped corner in the target: the injected truth."""
    from expokit.core.transfer import srgb_decode, srgb_encode

    rng = np.random.default_rng(seed)
    linear = rng.uniform(0.01, 0.8, size=(30, 40, 3))
    linear[:6, :8] = 3.0  # over white: clipped in the target, not 4x darker in the input
    target = srgb_encode(linear)
    return srgb_encode(srgb_decode(target) / ratio), target


def test_exposure_ratio_recovers_a_known_two_stops_past_clipping_and_mask() -> None:
    from expokit.models.reference import exposure_ratio

    image, target = _exposed_pair(4.0)
    assert exposure_ratio(image, target) == pytest.approx(4.0, rel=1e-9)
    # masked-out junk is ignored
    junk = image.copy()
    junk[10:20, 10:20] = 0.5
    mask = np.ones(image.shape[:2], bool)
    mask[10:20, 10:20] = False
    assert exposure_ratio(junk, target, mask) == pytest.approx(4.0, rel=1e-9)
    assert exposure_ratio(junk, target) != pytest.approx(4.0, rel=1e-3)
    # nothing unclipped: no ratio
    assert np.isnan(exposure_ratio(np.ones_like(image), target))
    assert np.isnan(exposure_ratio(np.zeros_like(image), target))
    with pytest.raises(ReferenceMethodError, match="does not fit"):
        exposure_ratio(image, target[:, :-1])


def test_exposure_change_undoes_the_ratio_and_clips_at_white() -> None:
    from expokit.models.reference import exposure_change, train_ratio_method

    image, target = _exposed_pair(4.0)
    out = exposure_change(image, 4.0)
    assert np.allclose(out[6:], target[6:], atol=1e-9)
    assert out.max() <= 1.0 and out.min() >= 0.0
    method = train_ratio_method(4.0, "train")
    assert not method.peeks("same") and "x4.000" in method.label
    assert np.array_equal(method.run(image, target, target, None), out)
    for bad in (0.0, -1.0, float("nan"), 1e6):
        with pytest.raises(ReferenceMethodError, match="ratio"):
            exposure_change(image, bad)


def test_the_torch_exposure_ratio_is_the_reference_one() -> None:
    import torch

    from expokit.models.level import exposure_change as torch_change
    from expokit.models.level import log_exposure_ratio
    from expokit.models.reference import exposure_change, exposure_ratio

    pairs = [_exposed_pair(r, seed) for r, seed in ((4.0, 1), (0.7, 2))]
    images = torch.tensor(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2)
    targets = torch.tensor(np.stack([p[1] for p in pairs])).permute(0, 3, 1, 2)
    mask = torch.ones(2, 1, 30, 40)
    mask[1, :, :15] = 0
    logs = log_exposure_ratio(images, targets, mask)
    want = [exposure_ratio(pairs[0][0], pairs[0][1]),
            exposure_ratio(pairs[1][0], pairs[1][1], mask[1, 0].numpy() > 0)]  # fmt: skip
    np.testing.assert_allclose(logs.exp().numpy(), want, rtol=1e-9)
    assert torch.isnan(log_exposure_ratio(torch.ones_like(images), targets)).all()
    changed = torch_change(images[:1], torch.tensor(np.log(4.0)))[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(changed, exposure_change(pairs[0][0], 4.0), atol=1e-9)
