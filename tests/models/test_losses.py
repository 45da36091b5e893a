"""expokit.models.losses: masked reconstruction losses, SSIM, Zero-DCE's no-reference losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from expokit.curation import metrics
from expokit.models import losses


def _random_pair(seed: int, h: int = 40, w: int = 52) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(1, 3, h, w, generator=g)
    b = (0.7 * a + 0.4 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)
    return a, b


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).double().numpy()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ssim_matches_the_metric(seed: int) -> None:
    a, b = _random_pair(seed)
    ours = float(losses.ssim(a, b)[0])
    reference = metrics.ssim(_hwc(a), _hwc(b), data_range=1.0)
    assert abs(ours - reference) < 1e-3
    assert ours < 0.99  # the images differ: the check is not trivially 1 == 1


def test_ssim_with_a_mask_matches_the_metric() -> None:
    a, b = _random_pair(3, 48, 48)
    mask = torch.ones(1, 1, 48, 48)
    mask[..., :, :17] = 0
    mask[..., 40:, :] = 0
    ours = float(losses.ssim(a, b, mask)[0])
    reference = metrics.ssim(_hwc(a), _hwc(b), data_range=1.0, mask=mask[0, 0].numpy() > 0)
    assert abs(ours - reference) < 1e-3
    assert abs(ours - float(losses.ssim(a, b)[0])) > 1e-4  # the mask changed the region


def test_ssim_loss_is_differentiable_and_zero_for_equal_images() -> None:
    a, b = _random_pair(4)
    assert float(losses.ssim_loss(a, a)) == pytest.approx(0.0, abs=1e-6)
    x = b.clone().requires_grad_(True)
    loss = losses.ssim_loss(x, a)
    loss.backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    # an empty mask counts nothing: 0 (not NaN) for the loss, NaN for the metric-like ssim
    empty = torch.zeros(1, 1, *a.shape[-2:])
    assert float(losses.ssim_loss(a, b, empty)) == 0.0
    assert math.isnan(float(losses.ssim(a, b, empty)[0]))
    with pytest.raises(ValueError, match="too small"):
        losses.ssim(a[..., :10, :], b[..., :10, :])


def test_masked_l1_and_mse_ignore_invalid_pixels() -> None:
    pred = torch.zeros(2, 3, 8, 8)
    target = torch.full((2, 3, 8, 8), 0.5)
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., :4] = 1
    target[..., 4:] = 100.0  # only outside the mask
    assert float(losses.masked_l1(pred, target, mask)) == pytest.approx(0.5)
    assert float(losses.masked_mse(pred, target, mask)) == pytest.approx(0.25)
    assert float(losses.masked_l1(pred, target)) > 10  # without the mask it counts
    assert float(losses.masked_l1(pred, target, torch.zeros_like(mask))) == 0.0


def test_colour_angle() -> None:
    grey = torch.full((1, 3, 4, 4), 0.5)
    assert float(losses.colour_angle(grey * 0.3, grey)) == pytest.approx(0.0, abs=1e-6)
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1.0
    green = torch.zeros(1, 3, 4, 4)
    green[:, 1] = 1.0
    assert float(losses.colour_angle(red, green)) == pytest.approx(0.5)  # orthogonal


def test_colour_constancy() -> None:
    image = torch.empty(2, 3, 8, 8)
    image[:, 0], image[:, 1], image[:, 2] = 0.6, 0.4, 0.4
    expected = math.sqrt(0.2**4 + 0.2**4)
    assert float(losses.colour_constancy(image)) == pytest.approx(expected, rel=1e-4)
    assert float(losses.colour_constancy(torch.full((1, 3, 8, 8), 0.3))) < 1e-5
    # masked: a coloured region outside the mask does not count
    mixed = torch.full((1, 3, 8, 8), 0.3)
    mixed[:, 0, :, 4:] = 1.0
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1
    assert float(losses.colour_constancy(mixed, mask)) < 1e-5
    assert float(losses.colour_constancy(mixed)) > 1e-3


def test_exposure_control() -> None:
    assert float(losses.exposure_control(torch.full((1, 3, 32, 32), 0.6))) == pytest.approx(0.0)
    assert float(losses.exposure_control(torch.full((1, 3, 32, 32), 0.2))) == pytest.approx(
        0.16, rel=1e-5
    )
    half = torch.full((1, 3, 32, 32), 0.6)
    half[..., 16:] = 0.1
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :16] = 1
    assert float(losses.exposure_control(half, mask=mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.exposure_control(half)) == pytest.approx(0.125, rel=1e-5)


def test_spatial_consistency() -> None:
    g = torch.Generator().manual_seed(5)
    image = torch.rand(1, 3, 16, 16, generator=g)
    assert float(losses.spatial_consistency(image, image)) == 0.0
    flattened = 0.5 + 0.1 * (image - 0.5)  # contrast lost between regions
    assert float(losses.spatial_consistency(flattened, image)) > 1e-3


def test_illumination_smoothness_and_total_variation() -> None:
    flat = torch.full((2, 3, 6, 7), 0.3)
    assert float(losses.illumination_smoothness(flat)) == 0.0
    assert float(losses.total_variation(flat)) == 0.0
    ramp = torch.arange(7.0).view(1, 1, 1, 7).expand(2, 3, 6, 7) * 0.1
    # dx = 0.1 everywhere, 3 channels summed, normalised by H * (W - 1), times 2 / B
    assert float(losses.illumination_smoothness(ramp)) == pytest.approx(2 * 3 * 0.01 * 2 / 2)
    assert float(losses.total_variation(ramp)) == pytest.approx(0.1)
    mask = torch.ones(2, 1, 6, 7)
    mask[..., 3:] = 0
    step = flat.clone()
    step[..., 4:] = 1.0  # the edge lies between two invalid pixels
    assert float(losses.total_variation(step, mask)) == 0.0
    assert float(losses.total_variation(step)) > 0
