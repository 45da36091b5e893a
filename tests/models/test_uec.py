"""UEC's starting gain, its correction record and the LUT bake that carries both."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from expokit.models.base import ModelError  # noqa: E402
from expokit.models.uec import (  # noqa: E402
    UEC,
    UECCorrection,
    apply_lut,
    bake_lut,
    start_gain,
    start_gamma,
)


def _zero_lambda(model: UEC) -> UEC:
    with torch.no_grad():
        model.predictor.fc4.weight.zero_()
        model.predictor.fc4.bias.zero_()
    return model


def test_start_gain_gives_the_reference_mean_luma() -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 16, 16, generator=generator) * 0.2
    reference = torch.rand(2, 3, 16, 16, generator=generator) * 0.8
    gain = start_gain(image, reference)
    assert gain.shape == (2, 1)
    weights = torch.tensor([0.2126, 0.7152, 0.0722]).view(1, 3, 1, 1)
    luma = lambda x: (x * weights).sum(1).mean(dim=(1, 2))  # noqa: E731
    assert torch.allclose(luma(image) * gain[:, 0], luma(reference), rtol=1e-5)
    # a black input is not blown up beyond the limit
    assert float(start_gain(torch.zeros(1, 3, 4, 4), reference[:1])) == 64.0


def test_zero_lambda_uec_is_gain_to_reference_or_identity() -> None:
    generator = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, 32, 32, generator=generator) * 0.25
    reference = torch.full((1, 3, 32, 32), 0.5)
    gained = _zero_lambda(UEC(feature_size=32)).enhance(image, reference)
    expected = (image * start_gain(image, reference)).clamp(0, 1)
    assert torch.allclose(gained, expected, atol=1e-6)
    assert gained.mean() > 2 * image.mean()  # it did brighten towards the reference
    plain = _zero_lambda(UEC(feature_size=32, start="input")).enhance(image, reference)
    assert torch.allclose(plain, image, atol=1e-6)


def test_lut_carries_the_starting_gain() -> None:
    model = UEC(feature_size=16).eval()
    generator = torch.Generator().manual_seed(2)
    image = torch.rand(1, 3, 24, 24, generator=generator) * 0.3
    reference = torch.rand(1, 3, 24, 24, generator=generator)
    with torch.no_grad():
        correction = model.correction(image, reference)
        network = model.apply_correction(image, correction)
    assert isinstance(correction, UECCorrection) and float(correction.gain) > 1.5
    lut = bake_lut(model, correction, 65)
    assert (apply_lut(lut, image) - network).abs().max() < 0.02


def test_unknown_start_is_refused() -> None:
    with pytest.raises(ModelError, match="start must be one of gain, input, gain_gamma"):
        UEC(start="grey")


def test_start_gamma_gives_the_reference_mean_luma_and_only_darkens() -> None:
    generator = torch.Generator().manual_seed(3)
    bright = 0.5 + 0.5 * torch.rand(2, 3, 16, 16, generator=generator)
    reference = torch.rand(2, 3, 16, 16, generator=generator) * 0.6
    gamma = start_gamma(bright, reference)
    assert gamma.shape == (2, 1) and bool((gamma > 1).all())
    weights = torch.tensor([0.2126, 0.7152, 0.0722]).view(1, 3, 1, 1)
    luma = lambda x: (x * weights).sum(1).mean(dim=(1, 2))  # noqa: E731
    darkened = bright ** gamma.view(-1, 1, 1, 1)
    assert torch.allclose(luma(darkened), luma(reference), rtol=1e-4)
    # an input already darker than its reference keeps gamma 1 (the gain brightens it)
    assert float(start_gamma(reference[:1] * 0.1, bright[:1])) == pytest.approx(1.0, abs=1e-5)


def test_gain_gamma_start_keeps_clipped_highlights_white_and_bakes_into_the_lut() -> None:
    generator = torch.Generator().manual_seed(4)
    image = (0.6 + 0.6 * torch.rand(1, 3, 24, 24, generator=generator)).clamp(0, 1)
    reference = torch.full((1, 3, 24, 24), 0.4)
    model = _zero_lambda(UEC(feature_size=16)).eval()  # "gain_gamma" is the default
    with torch.no_grad():
        correction = model.correction(image, reference)
        out = model.apply_correction(image, correction)
    assert correction.gamma is not None and float(correction.gamma) > 1
    assert float(correction.gain) == 1.0  # darkening is the gamma's job
    clipped = image.amin(dim=1, keepdim=True).expand_as(image) >= 1
    assert bool(clipped.any()) and torch.allclose(out[clipped], torch.ones(()))
    assert out.mean() < image.mean()  # it did darken towards the reference
    dark = image * 0.1  # brightening: the gain, gamma 1
    with torch.no_grad():
        up = model.correction(dark, reference)
    assert float(up.gain) > 1.5 and float(up.gamma) == pytest.approx(1.0, abs=1e-5)
    # "gain" (what checkpoints made before "gain_gamma" store) darkens with a gain, no gamma
    with torch.no_grad():
        old = _zero_lambda(UEC(feature_size=16, start="gain")).correction(image, reference)
    assert old.gamma is None and float(old.gain) < 1
    # the LUT carries the gamma (the start curve alone: lambda 0)
    lut = bake_lut(model, correction, 65)
    assert (apply_lut(lut, image) - out).abs().max() < 0.01
