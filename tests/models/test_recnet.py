"""expokit.models.recnet: the region-aware mixed-exposure baseline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from expokit.models.base import ModelError, parameter_count
from expokit.models.checkpoint import load_model, save_checkpoint
from expokit.models.recnet import RECNet, RECNetConfig, pad_to_multiple
from expokit.models.registry import create_model


def _mixed_batch(b: int = 2, size: int = 24) -> dict[str, torch.Tensor]:
    """Under-exposed (even) and over-exposed (odd) inputs of smooth targets."""
    g = torch.Generator().manual_seed(1)
    scene = torch.nn.functional.interpolate(
        torch.rand(b, 3, size // 4, size // 4, generator=g), size=(size, size), mode="bilinear"
    )
    target = 0.2 + 0.6 * scene
    image = target.clone()
    image[::2] = 0.4 * target[::2] ** 2
    image[1::2] = (1.8 * target[1::2]).clamp(0, 1)
    return {"input": image, "target": target, "mask": torch.ones(b, 1, size, size)}


def test_parameter_count() -> None:
    model = create_model("recnet")
    assert isinstance(model, RECNet)
    assert parameter_count(model) == 38_918
    assert model.data_kind == "paired" and not model.needs_reference


@pytest.mark.parametrize("shape", [(37, 53), (1, 5), (24, 24)])
def test_enhance_any_size(shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = create_model("recnet").eval()
    image = torch.rand(2, 3, *shape)
    with torch.no_grad():
        out = model.enhance(image)
        padded, mask = model(pad_to_multiple(image, 2))
    assert out.shape == image.shape
    assert torch.isfinite(out).all() and float(out.min()) >= 0 and float(out.max()) <= 1
    assert torch.equal(out, padded[..., : shape[0], : shape[1]])  # one pass, cropped: no seams
    assert mask.shape == (2, 1, padded.shape[2] // 2, padded.shape[3] // 2)


def test_bad_input_is_a_model_error() -> None:
    model = create_model("recnet")
    with pytest.raises(ModelError, match="shape"):
        model.enhance(torch.rand(1, 2, 16, 16))
    nan = torch.rand(1, 3, 16, 16)
    nan[0, 1, 2, 2] = float("nan")
    with pytest.raises(ModelError, match="NaN"):
        model.enhance(nan)
    batch = _mixed_batch(1, 16)
    with pytest.raises(ModelError, match="target: holds NaN"):
        model.training_loss({**batch, "target": nan})
    with pytest.raises(ModelError, match="needs batch keys target"):
        model.training_loss({"input": batch["input"]})
    with pytest.raises(ModelError, match="at least 11px"):
        model.training_loss({"input": torch.rand(1, 3, 8, 32), "target": torch.rand(1, 3, 8, 32)})


def test_config_validation() -> None:
    assert RECNetConfig().down == 2
    with pytest.raises(ModelError, match="channels must be a multiple of 4"):
        create_model("recnet", channels=10)
    with pytest.raises(ModelError, match="ssim_weight"):
        create_model("recnet", ssim_weight=-1)
    with pytest.raises(ModelError, match="bad configuration"):
        create_model("recnet", depth=3)


def test_a_few_steps_reduce_the_loss() -> None:
    torch.manual_seed(0)
    model = create_model("recnet")
    batch = _mixed_batch(2, 16)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    first, parts = model.training_loss(batch)
    assert set(parts) == {"l1", "ssim", "mask", "colour"}
    for _ in range(8):
        loss, _ = model.training_loss(batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        last, last_parts = model.training_loss(batch)
    assert float(last) < 0.8 * float(first.detach())
    assert last_parts["l1"] < parts["l1"]


def test_the_valid_mask_is_honoured() -> None:
    torch.manual_seed(0)
    model = create_model("recnet")
    batch = _mixed_batch(2, 23)  # odd size: padded inside the loss
    batch["mask"][..., :, 12:] = 0
    changed = batch["target"].clone()
    changed[..., :, 12:] = 1 - changed[..., :, 12:]  # only where the pair is invalid
    _, parts_a = model.training_loss(batch)
    _, parts_b = model.training_loss({**batch, "target": changed})
    for key in ("l1", "ssim", "colour"):
        assert parts_a[key] == pytest.approx(parts_b[key], rel=1e-5)
    full_mask = {**batch, "mask": torch.ones_like(batch["mask"])}
    c, _ = model.training_loss({**full_mask, "target": changed})
    d, _ = model.training_loss(full_mask)
    assert abs(float(c.detach()) - float(d.detach())) > 1e-3


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = create_model("recnet", channels=8, blocks=1)
    save_checkpoint(model, tmp_path / "run", 1)
    loaded, _ = load_model(tmp_path / "run", expect="recnet")
    assert isinstance(loaded, RECNet) and loaded.settings.channels == 8
    image = torch.rand(1, 3, 19, 22)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded.enhance(image), model.enhance(image))


def test_the_gain_start_begins_at_the_fair_baseline_and_learns_its_level() -> None:
    # start="gain": before training the output is exactly the fair baseline's (one global
    # gain to the level, expokit.models.reference.gain_to_level); training folds the
    # targets' mean luma into that level.
    import numpy as np

    from expokit.models.reference import gain_to_level as reference_gain

    torch.manual_seed(0)
    model = RECNet(start="gain").eval()
    image = torch.rand(2, 3, 20, 28) * 0.3
    with torch.no_grad():
        out = model.enhance(image)
    for b in range(2):
        expected = reference_gain(image[b].permute(1, 2, 0).double().numpy(), 0.4614)
        np.testing.assert_allclose(out[b].permute(1, 2, 0).numpy(), expected, atol=1e-5)
    model.train()
    target = torch.full((2, 3, 24, 24), 0.7)
    for _ in range(3):
        model.training_loss({"input": torch.rand(2, 3, 24, 24) * 0.2, "target": target})
    assert float(model.target_level) == pytest.approx(0.7, abs=1e-5)  # an average at first
    assert int(model.target_level_batches) == 3
    assert "target_level" in model.state_dict()  # saved with the weights
    assert "target_level" not in RECNet().state_dict()  # the published start has none
    with pytest.raises(ModelError, match="start must be one of input, gain, linear-gain, got 'ca"):
        RECNet(start="camera")


def test_the_linear_gain_start_undoes_an_exposure_change() -> None:
    # Injected truth: a target and an input 2 EV darker in linear light (sRGB encoded, no
    # clipping). Given the target's level, the "linear-gain" start finds the gain (4) and
    # gives the target back; the gain on encoded values ("gain") cannot.
    from expokit.models.level import mean_luma
    from expokit.models.response import srgb_encode

    torch.manual_seed(1)
    light = torch.rand(1, 3, 24, 24) * 0.9
    target, darker = srgb_encode(light), srgb_encode(light / 4)
    errors = {}
    for start in ("linear-gain", "gain"):
        model = RECNet(start=start).eval()
        model.target_level.fill_(float(mean_luma(target)))
        with torch.no_grad():
            errors[start] = float((model.enhance(darker) - target).abs().max())
    assert errors["linear-gain"] < 1e-4
    assert errors["gain"] > 0.02
