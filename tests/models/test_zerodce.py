"""expokit.models.zerodce: Zero-DCE++-style curve estimation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from expokit.models.base import ModelError, parameter_count
from expokit.models.checkpoint import load_model, save_checkpoint
from expokit.models.registry import create_model
from expokit.models.zerodce import ZeroDCE, ZeroDCEConfig, apply_curve


def _dark_batch(b: int = 2, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    scene = torch.nn.functional.interpolate(
        torch.rand(b, 3, size // 4, size // 4, generator=g), size=(size, size), mode="bilinear"
    )
    return {"input": 0.05 + 0.15 * scene, "mask": torch.ones(b, 1, size, size)}


def test_parameter_count_is_zero_dce_plus_plus() -> None:
    model = create_model("zerodce")
    assert isinstance(model, ZeroDCE)
    assert parameter_count(model) == 10_561
    assert model.data_kind == "paired" and not model.needs_reference


def test_curve_is_monotonic_in_range_and_identity_at_zero() -> None:
    x = torch.linspace(0, 1, 101).view(1, 1, 1, 101).expand(1, 3, 1, 101)
    assert torch.equal(apply_curve(x, torch.zeros_like(x)), x)
    bright = apply_curve(x, torch.full_like(x, -1.0))
    dark = apply_curve(x, torch.full_like(x, 1.0))
    for y in (bright, dark):
        assert float(y.min()) >= 0 and float(y.max()) <= 1
        assert bool((y[..., 1:] >= y[..., :-1]).all())  # keeps the order of grey levels
    assert bool((bright[..., 1:-1] > x[..., 1:-1]).all())
    assert bool((dark[..., 1:-1] < x[..., 1:-1]).all())
    assert bool((bright[..., -1] == 1).all())  # a clipped highlight stays clipped


@pytest.mark.parametrize("max_side", [None, 16])  # full-resolution and downscaled curve
def test_enhance_odd_size(max_side: int | None) -> None:
    model = create_model("zerodce", max_curve_side=max_side)
    image = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        out = model.enhance(image)
    assert out.shape == image.shape
    assert torch.isfinite(out).all() and float(out.min()) >= 0 and float(out.max()) <= 1
    if max_side is not None:
        assert model.curve_factor(37, 53) == pytest.approx(53 / 16)
        assert model.curve(image).shape == image.shape


def test_bad_input_is_a_model_error() -> None:
    model = create_model("zerodce")
    with pytest.raises(ModelError, match="shape"):
        model.enhance(torch.rand(1, 2, 16, 16))
    nan = torch.rand(1, 3, 16, 16)
    nan[0, 0, 3, 3] = float("nan")
    with pytest.raises(ModelError, match="NaN"):
        model.enhance(nan)
    with pytest.raises(ModelError, match="NaN"):
        model.training_loss({"input": nan.expand(1, 3, 16, 16).clone()})
    with pytest.raises(ModelError, match="at least 16px"):
        model.training_loss({"input": torch.rand(1, 3, 8, 32)})
    with pytest.raises(ModelError, match="needs batch keys input"):
        model.training_loss({"target": torch.rand(1, 3, 16, 16)})


def test_config_validation() -> None:
    assert ZeroDCEConfig().iterations == 8
    with pytest.raises(ModelError, match="exposure_level"):
        create_model("zerodce", exposure_level=1.5)
    with pytest.raises(ModelError, match="iterations"):
        create_model("zerodce", iterations=0)
    with pytest.raises(ModelError, match="bad configuration"):
        create_model("zerodce", width=3)


def test_a_few_steps_reduce_the_loss_and_brighten() -> None:
    torch.manual_seed(0)
    model = create_model("zerodce")
    batch = _dark_batch(1, 16)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    first, parts = model.training_loss(batch)
    assert set(parts) == {"spatial", "exposure", "colour", "smoothness"}
    for _ in range(8):
        loss, _ = model.training_loss(batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        last, _ = model.training_loss(batch)
    assert float(last) < 0.9 * float(first.detach())
    with torch.no_grad():
        out = model.enhance(batch["input"])
    assert float(out.mean()) > float(batch["input"].mean()) + 0.01


def test_target_is_not_used_in_training() -> None:
    model = create_model("zerodce")
    batch = _dark_batch(1, 16)
    a, _ = model.training_loss(batch)
    b, _ = model.training_loss({**batch, "target": torch.rand(1, 3, 16, 16)})
    assert float(a.detach()) == float(b.detach())


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = create_model("zerodce", max_curve_side=64)
    save_checkpoint(model, tmp_path / "run", 3)
    loaded, meta = load_model(tmp_path / "run", expect="zerodce")
    assert meta.model_config["max_curve_side"] == 64
    image = torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        assert torch.allclose(loaded.enhance(image), model.enhance(image))


def test_the_network_sees_its_input_at_the_start() -> None:
    # Zero-DCE's N(0, 0.02) on every separable convolution left the network blind to its
    # input (dimming it 3x moved r by ~3e-6): only the output biases could learn.
    torch.manual_seed(0)
    model = create_model("zerodce")
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        change = (model.curve(image) - model.curve(image / 3)).abs().mean()
        start = model.curve(image).abs().max()
    assert float(change) > 1e-4
    assert float(start) < 0.2  # still near the identity curve


def _fit(model: ZeroDCE, batch: dict[str, torch.Tensor], steps: int) -> float:
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(steps):
        loss, _ = model.training_loss(batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return float((model.enhance(batch["input"]) - batch["target"]).abs().mean())


def test_target_weight_learns_from_pairs() -> None:
    dark = _dark_batch(2, 32)
    batch = {**dark, "target": (dark["input"] * 3).clamp(0, 1)}  # the truth: +1.6 EV
    model = create_model("zerodce", target_weight=10.0, exposure_weight=0.0)
    with pytest.raises(ModelError, match="needs batch keys"):
        model.training_loss(dark)
    _, parts = model.training_loss(batch)
    assert "target" in parts
    before = float((batch["input"] - batch["target"]).abs().mean())
    torch.manual_seed(0)
    assert _fit(model, batch, 60) < 0.25 * before
    other = {**batch, "target": torch.rand_like(batch["target"])}
    with torch.no_grad():
        assert float(model.training_loss(other)[0]) != float(model.training_loss(batch)[0])


def test_white_level_brings_clipped_highlights_down() -> None:
    # An over-exposed input with a clipped sky (1.0) whose truth is 0.7: the curve alone
    # keeps 1 at 1; the white level is what can reach the truth.
    torch.manual_seed(0)
    scene = 0.3 + 0.4 * _dark_batch(2, 32)["input"] / 0.2
    image = torch.cat([scene[..., :16], torch.ones_like(scene[..., 16:])], -1)
    target = torch.cat([scene[..., :16] * 0.7, torch.full_like(scene[..., 16:], 0.7)], -1)
    batch = {"input": image, "target": target, "mask": torch.ones_like(image[:, :1])}
    errors = {}
    for white in (False, True):
        torch.manual_seed(0)
        model = create_model("zerodce", target_weight=10.0, exposure_weight=0.0,
                             white_level=white)  # fmt: skip
        if white:
            assert parameter_count(model) == 10_561 + 3 * 64 + 3
            with torch.no_grad():
                w = model.curve(image)[:, 3:]
            assert float(w.min()) > 0.95 and float(w.max()) <= 1.0
        _fit(model, batch, 80)
        with torch.no_grad():
            out = model.enhance(image)
        errors[white] = float((out[..., 16:] - 0.7).abs().mean())
    assert errors[False] > 0.25  # the clipped sky stays near 1
    assert errors[True] < 0.1


def test_a_level_start_learns_the_targets_level_from_the_pairs() -> None:
    from expokit.models.level import mean_luma

    model = ZeroDCE(start="linear-gain", target_weight=1.0, max_curve_side=8)
    target = torch.full((2, 3, 32, 32), 0.6)
    for _ in range(2):
        model.training_loss({"input": torch.rand(2, 3, 32, 32) * 0.2, "target": target})
    assert float(model.target_level) == pytest.approx(0.6, abs=1e-5)
    image = torch.rand(1, 3, 32, 32) * 0.3  # within the gain limit (64x in linear light)
    assert float(mean_luma(model.start(image))) == pytest.approx(0.6, abs=2e-3)
    assert "target_level" in model.state_dict() and "target_level" not in ZeroDCE().state_dict()
    with pytest.raises(ModelError, match="zerodce: start must be one of input, gain, linear-"):
        ZeroDCE(start="camera")
