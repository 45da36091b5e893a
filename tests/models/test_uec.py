"""UEC's start curves (gain, gamma, exposure), its correction record and the LUT bake that
carries them."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from expokit.models.base import ModelError  # noqa: E402
from expokit.models.response import srgb_decode, srgb_encode  # noqa: E402
from expokit.models.uec import (  # noqa: E402
    UEC,
    UECCorrection,
    apply_lut,
    bake_lut,
    mean_luma,
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
    gained = _zero_lambda(UEC(feature_size=32, start="gain")).enhance(image, reference)
    expected = (image * start_gain(image, reference)).clamp(0, 1)
    assert torch.allclose(gained, expected, atol=1e-6)
    assert gained.mean() > 2 * image.mean()  # it did brighten towards the reference
    plain = _zero_lambda(UEC(feature_size=32, start="input")).enhance(image, reference)
    assert torch.allclose(plain, image, atol=1e-6)


def test_lut_carries_the_starting_gain() -> None:
    torch.manual_seed(2)
    model = UEC(feature_size=16, start="gain").eval()
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
    with pytest.raises(ModelError, match="start must be one of gain, input, gain_gamma, exposure"):
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
    model = _zero_lambda(UEC(feature_size=16, start="gain_gamma")).eval()
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


def _exposure_model(level_weight: float) -> UEC:
    """An untrained ``"exposure"`` UEC whose corrector does nothing and whose level moves
    ``level_weight`` of the way from the reference's to the learnt level."""
    model = _zero_lambda(UEC(feature_size=32, start="exposure")).eval()
    p = min(max(level_weight, 1e-6), 1 - 1e-6)
    with torch.no_grad():
        model.level_weight_logit.fill_(float(torch.logit(torch.tensor(p))))
    return model


def test_srgb_transfer_round_trips_and_matches_the_numpy_one() -> None:
    from expokit.core.transfer import srgb_decode as np_decode

    x = torch.linspace(0, 1, 257, dtype=torch.float64)
    assert torch.allclose(srgb_encode(srgb_decode(x)), x, atol=1e-9)
    assert torch.allclose(srgb_decode(x), torch.from_numpy(np_decode(x.numpy())), atol=1e-12)


def test_exposure_start_undoes_a_shorter_exposure_in_linear_light() -> None:
    # An image exposed 2 stops shorter (linear light / 4, sRGB encoded) is brought back to
    # its reference exposure by the start curve alone: the family holds the exact inverse.
    generator = torch.Generator().manual_seed(5)
    scene = 0.15 + 0.7 * torch.rand(1, 3, 32, 32, generator=generator)
    short = srgb_encode(srgb_decode(scene) / 4)
    model = _exposure_model(0.0)  # the reference's level only
    with torch.no_grad():
        correction = model.correction(short, scene)
        out = model.apply_correction(short, correction)
    assert correction.linear and float(correction.gain) == pytest.approx(4.0, rel=0.02)
    assert float((out - scene).abs().max()) < 0.01
    plain_gain = (short * start_gain(short, scene)).clamp(0, 1)
    assert float((plain_gain - scene).abs().mean()) > 3 * float((out - scene).abs().mean())


def test_exposure_start_darkens_with_a_gamma_and_a_white_below_one() -> None:
    generator = torch.Generator().manual_seed(6)
    bright = (0.45 + 0.65 * torch.rand(1, 3, 32, 32, generator=generator)).clamp(0, 1)
    reference = torch.full((1, 3, 32, 32), 0.35)
    model = _exposure_model(0.0)
    with torch.no_grad():
        correction = model.correction(bright, reference)
        out = model.apply_correction(bright, correction)
    white = float(correction.white)
    assert 0.5 < white < 1 and float(correction.gain) == 1.0 and float(correction.gamma) > 1
    clipped = bright.amin(dim=1, keepdim=True).expand_as(bright) >= 1
    assert bool(clipped.any()) and torch.allclose(out[clipped], torch.tensor(white))
    assert float(mean_luma(out)) == pytest.approx(0.35, abs=0.01)


def test_exposure_start_level_moves_from_the_reference_to_the_learnt_level() -> None:
    generator = torch.Generator().manual_seed(7)
    dark = 0.2 * torch.rand(1, 3, 32, 32, generator=generator)
    references = [torch.full((1, 3, 32, 32), v) for v in (0.3, 0.6)]
    follow, own = _exposure_model(0.0), _exposure_model(1.0)
    with torch.no_grad():
        followed = [float(mean_luma(follow.enhance(dark, r))) for r in references]
        kept = [float(mean_luma(own.enhance(dark, r))) for r in references]
    assert followed == pytest.approx([0.3, 0.6], abs=0.01)
    learnt = float(own.level_log.detach().exp())
    assert kept == pytest.approx([learnt, learnt], abs=0.01)


def test_exposure_start_scalars_get_gradients_and_the_lut_carries_the_curve() -> None:
    generator = torch.Generator().manual_seed(8)
    batch = {
        "input": torch.rand(4, 3, 32, 32, generator=generator),
        "target": torch.rand(4, 3, 32, 32, generator=generator),
        "reference": torch.rand(4, 3, 32, 32, generator=generator),
    }
    batch["input"][:2] *= 0.2  # two to brighten, two to darken
    batch["input"][2:] = (batch["input"][2:] + 0.6).clamp(0, 1)
    torch.manual_seed(8)
    model = UEC(feature_size=16, pixel_samples=256, start="exposure")
    loss, _ = model.training_loss(batch)
    loss.backward()
    for parameter in (model.level_weight_logit, model.white_logit):
        assert parameter.grad is not None and float(parameter.grad.abs()) > 0
    # start_level="data": the level is the targets' running mean luma, not a parameter
    assert model.level_log.grad is None and int(model.target_level_batches) == 1
    assert float(model.target_level) == pytest.approx(float(mean_luma(batch["target"]).mean()))
    learnt = UEC(feature_size=16, pixel_samples=256, start="exposure", start_level="learnt")
    learnt.training_loss(batch)[0].backward()
    assert learnt.level_log.grad is not None and float(learnt.level_log.grad.abs()) > 0
    assert int(learnt.target_level_batches) == 0
    frozen = UEC(feature_size=16, start="exposure", learn_start=False)
    assert not frozen.white_logit.requires_grad and not frozen.level_weight_logit.requires_grad
    model.eval()
    with torch.no_grad():
        for image in (batch["input"][:1], batch["input"][2:3]):
            correction = model.correction(image, batch["reference"][:1])
            direct = model.apply_correction(image, correction)
            error = (apply_lut(bake_lut(model, correction, 65), image) - direct).abs()
            # trilinear between 65 nodes: close everywhere, except where a large linear-light
            # gain makes the curve steep near black
            assert float(error.mean()) < 0.006 and float(error.max()) < 0.05


def test_a_uec_with_nothing_to_learn_is_refused() -> None:
    with pytest.raises(ModelError, match="iterations 0 leaves only the start curve"):
        UEC(iterations=0, start="gain")
    with pytest.raises(ModelError, match="learn_start False"):
        UEC(iterations=0, start="exposure", learn_start=False)
    with pytest.raises(ModelError, match="start_level must be one of data, learnt"):
        UEC(start_level="fixed")
    assert UEC(iterations=0).iterations == 0  # the start curve's scalars alone


def test_without_iterations_only_the_start_scalars_train() -> None:
    model = UEC(iterations=0, start="exposure")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"white_logit", "level_weight_logit"}
    assert {n for n, p in UEC(start="exposure").named_parameters() if p.requires_grad} > trainable


def test_max_lambda_bounds_every_lambda() -> None:
    generator = torch.Generator().manual_seed(3)
    image = torch.rand(4, 3, 32, 32, generator=generator)
    reference = torch.rand(4, 3, 32, 32, generator=generator)
    free, bounded = UEC(feature_size=32), UEC(feature_size=32, max_lambda=0.2)
    with torch.no_grad():
        for model in (free, bounded):
            model.predictor.fc4.bias.fill_(5.0)  # far outside the bound
        bounded.load_state_dict(free.state_dict())
        raw = free.correction(image, reference).lambdas
        capped = bounded.correction(image, reference).lambdas
    assert float(raw[0].min()) > 1.0
    assert all(float(lam.abs().max()) <= 0.2 + 1e-6 for lam in capped)  # saturates there
    # small values pass nearly unchanged: tanh is the identity at 0
    assert float(bounded.predictor.bound * torch.tanh(torch.tensor(0.01) / 0.2)) == (
        pytest.approx(0.01, rel=1e-3)
    )
    for value, message in ((0, "max_lambda must be > 0"), (-1, "max_lambda must be a number")):
        with pytest.raises(ModelError, match=message):
            UEC(max_lambda=value)


def test_network_lr_scale_splits_the_parameter_groups() -> None:
    assert [g["lr_scale"] for g in UEC().parameter_groups()] == [1.0]  # as old checkpoints
    scalars, networks = UEC(network_lr_scale=0.1).parameter_groups()
    assert scalars["lr_scale"] == 1.0 and networks["lr_scale"] == 0.1
    model = UEC(network_lr_scale=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    scalars, networks = model.parameter_groups()
    assert {names[id(p)] for p in scalars["params"]} == {
        "response.step_logits", "level_weight_logit", "level_log",
    }  # fmt: skip
    assert len(scalars["params"]) + len(networks["params"]) == len(list(model.parameters()))
    with pytest.raises(ModelError, match="network_lr_scale must be > 0"):
        UEC(network_lr_scale=0.0)


def _camera_frames(scenes: int, seed: int) -> dict[str, torch.Tensor]:
    """Brackets of a synthetic camera whose tone curve is not sRGB (a soft shoulder, then
    clipping): inputs 2 and 1 stops under and over, the target and reference the metered
    frame, all ``(4 * scenes, 3, 32, 32)``."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(scenes, 3, 4, 4, generator=generator)
    light = 0.02 + 0.6 * torch.nn.functional.interpolate(coarse, size=32, mode="bilinear") ** 2

    def camera(x: torch.Tensor) -> torch.Tensor:
        return ((1 - torch.exp(-2.5 * x)) / (1 - math.exp(-2.5))).clamp(0, 1) ** 0.8

    inputs = torch.cat([camera(light * 2.0**ev) for ev in (-2, -1, 1, 2)])
    target = camera(light).repeat(4, 1, 1, 1)
    return {"input": inputs, "target": target, "reference": target}


def test_camera_start_learns_a_response_that_is_not_srgb() -> None:
    # The injected truth: frames of a camera with its own curve. The "camera" start learns
    # it from the pairs and then corrects held-out scenes far better than the sRGB curve.
    torch.manual_seed(0)
    train, held_out = _camera_frames(24, seed=1), _camera_frames(8, seed=2)
    model = UEC(feature_size=16, pixel_samples=512, iterations=0, start="camera")
    untrained = UEC(feature_size=16, iterations=0, start="camera").eval()

    def error(m: UEC) -> float:
        with torch.no_grad():
            out = m.enhance(held_out["input"], held_out["reference"])
        return float((out - held_out["target"]).pow(2).mean())

    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.02)
    for step in range(150):
        pick = torch.arange(step * 8, step * 8 + 8) % train["input"].shape[0]
        loss, _ = model.training_loss({k: v[pick] for k, v in train.items()})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    print("camera start held-out MSE, trained / sRGB:", error(model), error(untrained))
    assert error(model) < 0.35 * error(untrained)
    # the over-exposed frames clip: their white stands for more light than sRGB's
    assert model.response.light_at_white > 1.05
    correction = model.correction(held_out["input"][:1], held_out["reference"][:1])
    assert correction.response and correction.gamma is None and correction.white is None
    with torch.no_grad():
        direct = model.apply_correction(held_out["input"][:1], correction)
        baked = apply_lut(bake_lut(model, correction, 65), held_out["input"][:1])
    assert float((baked - direct).abs().mean()) < 0.006


def test_camera_start_gains_both_ways_and_its_curve_is_what_learn_start_trains() -> None:
    generator = torch.Generator().manual_seed(9)
    scene = 0.1 + 0.6 * torch.rand(2, 3, 32, 32, generator=generator)
    short, long = srgb_encode(srgb_decode(scene) / 4), srgb_encode(srgb_decode(scene) * 1.5)
    model = UEC(feature_size=32, iterations=0, start="camera").eval()
    with torch.no_grad():
        model.level_weight_logit.fill_(-20.0)  # the reference's level only
        gains = [float(model.correction(x, scene[:1]).gain) for x in (short[:1], long[:1])]
    assert gains[0] == pytest.approx(4.0, rel=0.03) and gains[1] == pytest.approx(1 / 1.5, rel=0.05)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"level_weight_logit", "response.step_logits"}
    frozen = UEC(start="camera", learn_start=False)
    assert not any(p.requires_grad for p in frozen.response.parameters())
    with pytest.raises(ModelError, match="'exposure' or 'camera' with learn_start true"):
        UEC(iterations=0, start="camera", learn_start=False)
    with pytest.raises(ModelError, match="response_knots must be an integer >= 2"):
        UEC(start="camera", response_knots=1)
