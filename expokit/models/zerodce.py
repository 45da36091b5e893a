"""Zero-DCE++-style curve estimation (Li et al., TPAMI 2021), written from the paper.

A small network looks at (a downscaled copy of) the image and predicts one curve parameter
per pixel and channel, ``r`` in ``[-1, 1]`` (``tanh``); the curve map is upsampled to full
resolution and applied 8 times as the light-enhancement curve ``x <- x + r * (x^2 - x)``
(Zero-DCE++ reuses one map for all 8 iterations, Zero-DCE predicted 8). The curve is
monotonic and maps ``[0, 1]`` onto itself, so the output keeps the input's order of grey
levels and cannot leave the valid range.

Network (10,561 parameters, as Zero-DCE++): seven depthwise-separable 3x3 convolutions
(depthwise 3x3 then pointwise 1x1), 32 channels, ReLU, with the symmetric skip
concatenations 3+4 -> 5, 2+5 -> 6, 1+6 -> 7 and ``tanh`` on the 3-channel output.

By default training uses no target at all (zero-reference): spatial consistency (1x),
exposure control towards the well-exposed level ``E = 0.6`` on 16x16 patches (10x), colour
constancy (5x) and illumination smoothness of the curve map (1600x), Zero-DCE++'s weights.
The dataset's target is then ignored in training; evaluation still scores the output
against it.

What it can and cannot do: it brightens (its purpose: low light). The curve could dim
(``r > 0``) and the exposure-control term pulls *every* 16x16 patch towards one grey level,
but trained on mixed inputs it learnt a brightening curve that made over-exposed SICE inputs
worse than doing nothing (``docs/models.md``); clipped highlights are a fixed point of the
curve (``x = 1`` stays 1), so nothing lost in an over-exposed input comes back, and a scene
that should be dark or bright overall is pulled towards the one level.

Two options, both off by default (Zero-DCE++ as published), make it an exposure corrector
that learns from pairs (what the shipped weights use): ``target_weight`` adds an L1 term
against the pair's target, and ``white_level`` predicts a white level ``w`` in ``(0, 1]``
beside ``r``, applied after the curve (``out = w * curve(x)``), so a clipped highlight can
come down. With ``max_curve_side`` 8 the network sees the whole image.

References
----------
C. Guo, C. Li, J. Guo et al., "Zero-Reference Deep Curve Estimation for Low-Light Image
Enhancement", CVPR 2020. C. Li, C. Guo, C. C. Loy, "Learning to Enhance Low-Light Image via
Zero-Reference Deep Curve Estimation", IEEE TPAMI 44(8), 2021.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the PyTorch convention
from torch import nn

from expokit.models import losses
from expokit.models.base import (
    Baseline,
    Batch,
    ModelError,
    check_image,
    check_int,
    check_number,
    register_running_level,
    require,
)
from expokit.models.level import (
    START_LEVEL,
    check_start,
    fold_target_level,
    start_image,
)


@dataclass(frozen=True)
class ZeroDCEConfig:
    """Sizes, curve and loss settings of :class:`ZeroDCE` (defaults: Zero-DCE++)."""

    #: Feature channels of the curve-estimation network.
    channels: int = 32
    #: How often the curve is applied.
    iterations: int = 8
    #: The curve map is estimated on the input downscaled by this factor (Zero-DCE++).
    scale_factor: int = 1
    #: ... and at most at this longer side (larger inputs are downscaled further); None: off.
    max_curve_side: int | None = 512
    #: Well-exposed grey level of the exposure-control loss.
    exposure_level: float = 0.6
    #: Patch sizes of the exposure-control and spatial-consistency losses.
    exposure_patch: int = 16
    spatial_patch: int = 4
    #: Loss weights (Zero-DCE++'s training script).
    spatial_weight: float = 1.0
    exposure_weight: float = 10.0
    colour_weight: float = 5.0
    smoothness_weight: float = 1600.0
    #: Weight of an L1 term against the pair's target; 0 (the default) is Zero-DCE++ as
    #: published, zero-reference. Above 0 the same network and curve learn from pairs.
    target_weight: float = 0.0
    #: Also predict a white level ``w`` in ``(0, 1]`` per pixel and channel, applied after
    #: the curve (``out = w * curve(x)``). Off (the default) is Zero-DCE++: its curve keeps
    #: ``x = 1`` at 1, so a clipped highlight can never come down to the grey it should be.
    #: The smoothness term covers ``w`` as it covers ``r``.
    white_level: bool = False
    #: What the curves start from (:mod:`expokit.models.level`): ``"input"`` (Zero-DCE++),
    #: ``"gain"`` or ``"linear-gain"``: the input brought to the running mean luma of the
    #: training targets (with ``target_weight`` > 0; else 18 % grey's). Whole images
    #: (``resize``, no ``crop``): the gain is per image as given.
    start: str = "input"

    def __post_init__(self) -> None:
        for key in ("channels", "iterations", "scale_factor", "exposure_patch", "spatial_patch"):
            check_int("zerodce", key, getattr(self, key), 1)
        if self.max_curve_side is not None:
            check_int("zerodce", "max_curve_side", self.max_curve_side, 8)
        check_start("zerodce", self.start)
        check_number("zerodce", "exposure_level", self.exposure_level)
        if not 0 < self.exposure_level < 1:
            raise ModelError(
                f"zerodce: exposure_level must be in (0, 1), got {self.exposure_level}"
            )
        for key in (
            "spatial_weight",
            "exposure_weight",
            "colour_weight",
            "smoothness_weight",
            "target_weight",
        ):
            check_number("zerodce", key, getattr(self, key))


class SeparableConv(nn.Module):
    """Depthwise 3x3 then pointwise 1x1: ``(B, cin, H, W)`` -> ``(B, cout, H, W)``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depth = nn.Conv2d(cin, cin, 3, 1, 1, groups=cin)
        self.point = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point(self.depth(x))


class CurveNet(nn.Module):
    """Zero-DCE++'s curve estimator: ``(B, 3, h, w)`` in ``[0, 1]`` -> ``r`` ``(B, 3, h, w)``
    in ``[-1, 1]``; with ``white_level`` ``(B, 6, h, w)``: ``r`` then the white level ``w``
    in ``(0, 1]`` (``2 ** -softplus(z)``, ``~0.99`` at the start)."""

    def __init__(self, channels: int = 32, white_level: bool = False) -> None:
        super().__init__()
        c = channels
        self.white_level = white_level
        self.conv1 = SeparableConv(3, c)
        self.conv2 = SeparableConv(c, c)
        self.conv3 = SeparableConv(c, c)
        self.conv4 = SeparableConv(c, c)
        self.conv5 = SeparableConv(2 * c, c)
        self.conv6 = SeparableConv(2 * c, c)
        self.conv7 = SeparableConv(2 * c, 6 if white_level else 3)
        # r ~ 0 at the start (near identity) from the output layer alone. Zero-DCE's
        # N(0, 0.02) on every convolution is not used: with separable convolutions (fan-in 9
        # and 32) it shrinks the signal ~100x per layer, so the network starts blind to its
        # input (an input dimmed 3x moved r by ~3e-6) and only the output biases learn, one
        # global curve whatever the image. The body keeps PyTorch's default init.
        out = self.conv7.point
        assert out.bias is not None  # nn.Conv2d's default bias=True
        nn.init.normal_(out.weight, 0.0, 0.02)
        nn.init.zeros_(out.bias)
        if white_level:
            with torch.no_grad():
                out.bias[3:] = -4.0  # w = 2^-softplus(-4) ~ 0.987: near no change

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = F.relu(self.conv1(x))
        x2 = F.relu(self.conv2(x1))
        x3 = F.relu(self.conv3(x2))
        x4 = F.relu(self.conv4(x3))
        x5 = F.relu(self.conv5(torch.cat([x3, x4], 1)))
        x6 = F.relu(self.conv6(torch.cat([x2, x5], 1)))
        z = self.conv7(torch.cat([x1, x6], 1))
        if not self.white_level:
            return torch.tanh(z)
        return torch.cat([torch.tanh(z[:, :3]), torch.exp2(-F.softplus(z[:, 3:]))], 1)


def apply_curve(image: torch.Tensor, curve: torch.Tensor, iterations: int = 8) -> torch.Tensor:
    """``x <- x + r * (x^2 - x)`` applied ``iterations`` times.

    Args:
        image: ``(B, 3, H, W)`` float in ``[0, 1]``.
        curve: ``r``, ``(B, 3, H, W)`` (or broadcastable) in ``[-1, 1]``.

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]`` (``r < 0`` brightens, ``r > 0`` darkens).
    """
    x = image
    for _ in range(iterations):
        x = x + curve * (x * x - x)
    return x


class ZeroDCE(Baseline):
    """Zero-DCE++-style curve estimation (see the module docstring and
    :class:`ZeroDCEConfig` for the keyword arguments)."""

    name = "zerodce"
    data_kind = "paired"
    needs_reference = False
    #: ``start`` other than ``"input"`` only: the running mean luma of the training targets
    #: and the batches folded into it (buffers: saved with the weights, not trained).
    target_level: torch.Tensor
    target_level_batches: torch.Tensor

    def __init__(self, **config: Any) -> None:
        settings = ZeroDCEConfig(**config)
        super().__init__(**asdict(settings))
        self.settings = settings
        self.net = CurveNet(self.settings.channels, self.settings.white_level)
        if settings.start != "input":
            register_running_level(self, START_LEVEL)

    def start(self, image: torch.Tensor) -> torch.Tensor:
        """What the curves start from (:attr:`ZeroDCEConfig.start`), same shape."""
        level = None if self.settings.start == "input" else self.target_level
        return start_image(self.settings.start, image, level)

    def curve_factor(self, height: int, width: int) -> float:
        """Downscale factor of the curve estimation for an ``height x width`` input."""
        factor = float(self.settings.scale_factor)
        side = self.settings.max_curve_side
        if side is not None:
            factor = max(factor, max(height, width) / side)
        return factor

    def curve(self, image: torch.Tensor) -> torch.Tensor:
        """Curve map ``r`` ``(B, 3, H, W)`` in ``[-1, 1]`` for ``image`` ``(B, 3, H, W)``
        (with ``white_level``: ``(B, 6, H, W)``, ``r`` then ``w``), estimated on a downscaled
        copy (see :meth:`curve_factor`) and upsampled bilinearly."""
        h, w = image.shape[-2:]
        factor = self.curve_factor(h, w)
        if factor <= 1:
            return self.net(image)
        size = (max(1, math.ceil(h / factor)), max(1, math.ceil(w / factor)))
        small = F.interpolate(
            image, size=size, mode="bilinear", align_corners=False, antialias=True
        )
        r = self.net(small)
        return F.interpolate(r, size=(h, w), mode="bilinear", align_corners=False)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Enhanced image ``(B, 3, H, W)`` and the maps of :meth:`curve`."""
        image = self.start(image)
        maps = self.curve(image)
        out = apply_curve(image, maps[:, :3], self.settings.iterations)
        if self.settings.white_level:
            out = out * maps[:, 3:]
        return out, maps

    def enhance(self, image: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """``image`` ``(B, 3, H, W)`` in ``[0, 1]`` enhanced, same shape, in ``[0, 1]``;
        ``reference`` is ignored (zero-reference model)."""
        check_image(image, "input")
        out, _ = self(image)
        return out.clamp(0, 1)

    def training_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Zero-reference loss on ``batch["input"]``; ``batch["target"]`` is used only when
        ``target_weight`` > 0 (an L1 term inside ``batch["mask"]``)."""
        s = self.settings
        paired = s.target_weight > 0
        require(batch, "input", *(("target",) if paired else ()), model=self.name)
        image = check_image(batch["input"], "input")
        if min(image.shape[-2:]) < s.exposure_patch:
            raise ModelError(
                f"zerodce: training crops must be at least {s.exposure_patch}px "
                f"(the exposure-control patch), got {tuple(image.shape[-2:])}"
            )
        mask = batch.get("mask")
        if paired and s.start != "input" and self.training:
            fold_target_level(self, check_image(batch["target"], "target"))
        out, r = self(image)
        parts = {
            "spatial": losses.spatial_consistency(out, image, mask, s.spatial_patch),
            "exposure": losses.exposure_control(out, s.exposure_level, mask, s.exposure_patch),
            "colour": losses.colour_constancy(out, mask),
            "smoothness": losses.illumination_smoothness(r),
        }
        loss = (
            s.spatial_weight * parts["spatial"]
            + s.exposure_weight * parts["exposure"]
            + s.colour_weight * parts["colour"]
            + s.smoothness_weight * parts["smoothness"]
        )
        if paired:
            target = check_image(batch["target"], "target")
            parts["target"] = losses.masked_l1(out, target, mask)
            loss = loss + s.target_weight * parts["target"]
        return loss, {k: float(v.detach()) for k, v in parts.items()}
