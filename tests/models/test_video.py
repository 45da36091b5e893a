"""VideoNet: warping, identity start, any size, training on synthetic clips, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from expokit.models.base import ModelError, parameter_count
from expokit.models.checkpoint import load_model, save_checkpoint
from expokit.models.registry import create_model
from expokit.models.video import VideoNet, warp, window


def _clips(
    generator: torch.Generator, batch: int = 2, frames: int = 3, size: int = 24
) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random scenes panning 2 px per frame; the input is a darker, flatter copy."""
    base = torch.rand(batch, 3, size // 4, size // 4, generator=generator)
    big = F.interpolate(base, size=(size + 2 * frames, size + 2 * frames), mode="bilinear")
    target = torch.stack([big[:, :, 2 : 2 + size, 2 * i : 2 * i + size] for i in range(frames)], 1)
    return (target**2.2 * 0.2) ** (1 / 2.2), target


def test_warp_zero_flow_is_identity_and_integer_flow_shifts() -> None:
    image = torch.rand(1, 3, 9, 11)
    assert torch.allclose(warp(image, torch.zeros(1, 2, 9, 11)), image, atol=1e-6)
    flow = torch.zeros(1, 2, 9, 11)
    flow[:, 0] = 2.0  # out[x] = image[x + 2]
    assert torch.allclose(warp(image, flow)[..., :-2], image[..., 2:], atol=1e-5)


def test_window_repeats_edge_frames() -> None:
    frames = torch.arange(4.0).view(1, 4, 1, 1, 1).expand(1, 4, 3, 2, 2)
    assert window(frames, 0, 3)[0, :, 0, 0, 0].tolist() == [0.0, 0.0, 1.0]
    assert window(frames, 3, 5)[0, :, 0, 0, 0].tolist() == [1.0, 2.0, 3.0, 3.0, 3.0]


@pytest.mark.parametrize("frames", [3, 5])
def test_untrained_model_is_identity_on_the_centre_at_any_size(frames: int) -> None:
    model = VideoNet(frames=frames).eval()
    clip = torch.rand(2, frames, 3, 13, 19)
    out = model.enhance(clip)
    assert out.shape == (2, 3, 13, 19)
    assert torch.allclose(out, clip[:, frames // 2], atol=1e-6)
    single = torch.rand(1, 3, 10, 7)  # one image: a static clip
    assert torch.allclose(model.enhance(single), single, atol=1e-6)
    assert torch.allclose(model.evaluate_batch({"frames": clip}), out)


def test_parameter_counts_are_small() -> None:
    assert parameter_count(VideoNet(frames=3)) == 25_304
    assert parameter_count(VideoNet(frames=5)) == 26_600
    assert parameter_count(create_model("video", flow_width=0)) == 25_304 - 12_170


def test_video_model_trains_on_synthetic_clips() -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    model = VideoNet(frames=3)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses, parts_seen = [], set()
    for _ in range(40):
        frames, targets = _clips(generator)
        mask = torch.ones(frames.shape[0], 3, 1, 24, 24)
        loss, parts = model.training_loss(
            {"frames": frames, "target_frames": targets, "frame_mask": mask}
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        parts_seen |= set(parts)
    assert parts_seen == {"l1", "align", "temporal"}
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    frames, targets = _clips(generator, batch=1)
    with torch.no_grad():
        err = (model.enhance(frames) - targets[:, 1]).abs().mean()
    assert err < (frames[:, 1] - targets[:, 1]).abs().mean() * 0.5


def test_frame_stacking_variant_trains_without_flow() -> None:
    model = VideoNet(frames=3, flow_width=0)
    frames, targets = _clips(torch.Generator().manual_seed(2))
    loss, parts = model.training_loss({"frames": frames, "target_frames": targets})
    loss.backward()
    assert "align" not in parts and torch.isfinite(loss)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = VideoNet(frames=5, width=8, flow_width=8)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_checkpoint(model, tmp_path / "run", 3)
    loaded, meta = load_model(tmp_path / "run", expect="video")
    clip = torch.rand(1, 5, 3, 16, 16)
    assert meta.model_config["frames"] == 5
    assert torch.allclose(loaded.enhance(clip), model.eval().enhance(clip), atol=1e-6)


def test_bad_input_is_refused() -> None:
    model = VideoNet(frames=3)
    with pytest.raises(ModelError, match="built for 3 frames, got 5"):
        model.enhance(torch.rand(1, 5, 3, 8, 8))
    with pytest.raises(ModelError, match="expects frames"):
        model.enhance(torch.rand(1, 3, 4, 8, 8))
    nan = torch.rand(1, 3, 3, 8, 8)
    nan[0, 2, 0, 0, 0] = float("nan")
    with pytest.raises(ModelError, match="NaN"):
        model.enhance(nan)
    with pytest.raises(ModelError, match="target_frames"):
        model.training_loss({"frames": torch.rand(1, 3, 3, 8, 8)})
    with pytest.raises(ModelError, match="frames must be 3 or 5"):
        create_model("video", frames=4)
    with pytest.raises(ModelError, match="bad configuration"):
        create_model("video", depth=3)


def test_the_gain_start_begins_at_the_fair_baseline_on_every_frame() -> None:
    # start="gain": untrained, the centre comes out as the fair baseline's (one global gain
    # to the level, expokit.models.reference.gain_to_level) of the centre frame
    import numpy as np

    from expokit.models.reference import gain_to_level as reference_gain

    torch.manual_seed(0)
    model = VideoNet(start="gain").eval()
    clip = torch.rand(2, 3, 3, 20, 28) * 0.3
    with torch.no_grad():
        out = model.enhance(clip)
    for b in range(2):
        centre = clip[b, 1].permute(1, 2, 0).double().numpy()
        expected = reference_gain(centre, float(model.target_level))
        np.testing.assert_allclose(out[b].permute(1, 2, 0).numpy(), expected, atol=1e-5)
    assert "target_level" not in VideoNet().state_dict()  # the default start has none
    starts = "input, gain, linear-gain, exposure-ratio"
    with pytest.raises(ModelError, match=f"start must be one of {starts}, got 'camera'"):
        VideoNet(start="camera")


def test_the_linear_gain_start_learns_the_level_and_undoes_an_exposure_change(
    tmp_path: Path,
) -> None:
    # Injected truth: target frames and inputs 2 EV darker in linear light (sRGB, no
    # clipping). Training folds the centre targets' mean luma into the level; from it the
    # "linear-gain" start gives the target back; the level is saved with the weights.
    from expokit.models.level import mean_luma
    from expokit.models.response import srgb_decode, srgb_encode

    torch.manual_seed(1)
    target = srgb_encode(torch.rand(1, 3, 3, 24, 24) * 0.9)
    darker = srgb_encode(srgb_decode(target) / 4)
    model = VideoNet(start="linear-gain").train()
    for _ in range(2):
        model.training_loss({"frames": darker, "target_frames": target})
    assert float(model.target_level) == pytest.approx(float(mean_luma(target[:, 1])), abs=1e-6)
    assert int(model.target_level_batches) == 2
    model.eval()
    with torch.no_grad():
        assert float((model.enhance(darker) - target[:, 1]).abs().max()) < 1e-4
    save_checkpoint(model, tmp_path / "run", 2)
    loaded, meta = load_model(tmp_path / "run", expect="video")
    assert meta.model_config["start"] == "linear-gain"
    assert float(loaded.target_level) == pytest.approx(float(model.target_level))


def test_the_exposure_ratio_start_learns_the_rigs_fixed_exposure(tmp_path: Path) -> None:
    # Injected truth: inputs 2 EV under their targets (linear light) in scenes of different
    # brightness; the "exposure-ratio" start learns the one ratio (4), not a level, undoes
    # it on a scene it never saw, and saves it with the weights.
    import math

    from expokit.models.response import srgb_decode, srgb_encode

    torch.manual_seed(2)
    model = VideoNet(start="exposure-ratio").train()
    for brightness in (0.3, 0.9):
        target = srgb_encode(torch.rand(2, 3, 3, 24, 24) * brightness)
        model.training_loss({"frames": srgb_encode(srgb_decode(target) / 4),
                             "target_frames": target})  # fmt: skip
    assert float(model.exposure_log_ratio) == pytest.approx(math.log(4.0), abs=1e-6)
    assert int(model.exposure_log_ratio_batches) == 2
    assert "target_level" not in model.state_dict()
    unseen = srgb_encode(torch.rand(1, 3, 3, 24, 24) * 0.6)
    model.eval()
    with torch.no_grad():
        out = model.enhance(srgb_encode(srgb_decode(unseen) / 4))
    assert float((out - unseen[:, 1]).abs().max()) < 1e-4
    save_checkpoint(model, tmp_path / "run", 2)
    loaded, meta = load_model(tmp_path / "run", expect="video")
    assert meta.model_config["start"] == "exposure-ratio"
    assert float(loaded.exposure_log_ratio) == pytest.approx(math.log(4.0), abs=1e-6)
