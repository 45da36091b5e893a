"""A region-aware mixed-exposure network in the spirit of RECNet (Liu et al., AAAI 2024).

Written from the paper's description (and a reading of its public code), smaller and
cheaper so that it trains on a CPU:

* a **stem**: full-resolution 3x3 features (kept for the output head) and a
  pixel-unshuffle by ``down`` (2) followed by a 3x3 convolution, so the body runs at
  ``1 / down`` resolution;
* an **exposure-mask predictor** (three 3x3 convolutions, sigmoid): ``m`` ``(B, 1, h, w)``,
  1 where the region is under-exposed (must get brighter), 0 where it is over-exposed;
  supervised with BCE against ``Y(target) > Y(input)`` (RECNet's mask label);
* ``blocks`` **dual blocks** (3): a *region branch* ("RIN") that, for the blurred mask ``m``
  and its complement, gates the features with the region, adds spatial attention from
  (channel mean, channel max, mask), instance-normalises and convolves them separately,
  then fuses the two regions; a *local branch* (depthwise 3x3 + pointwise); a fusion
  convolution, **channel attention** (squeeze-and-excitation) and a residual connection;
* a **head**: the blocks' outputs concatenated and merged (1x1), upsampled bilinearly,
  concatenated with the full-resolution stem features, a 1x1 convolution, channel
  attention and a 3x3 convolution to an RGB residual added to the input, clamped to
  ``[0, 1]``.

38,918 parameters with the defaults (the paper's model: ~39K). Losses: L1 + 0.1 (1 - SSIM)
+ 0.25 BCE(mask) + 1.0 colour (per-pixel cosine), RECNet's weights, all inside the valid
mask.

Simplified against the paper: no mixed-scale channel self-attention (MCSA; a
squeeze-and-excitation channel attention and a depthwise local branch instead), two region
branches instead of three (no separate global branch), a fixed Gaussian blur of the mask
instead of a learnt 31x31 one, the body at half resolution instead of full, no exposure
consistency term and no VGG-based contrastive regularisation.

Any input size: the image is padded (edge replication) to a multiple of ``down`` and the
output cropped back; nothing is tiled, so there are no seams. Instance normalisation and
channel attention use whole-image statistics, so a very large image is normalised with
different statistics than the training crops (as in the paper).

Reference
---------
Liu, Y., Wang, S., Xu, J. et al., "Region-Aware Exposure Consistency Network for Mixed
Exposure Correction", AAAI 2024.
"""

from __future__ import annotations

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
class RECNetConfig:
    """Sizes and loss weights of :class:`RECNet` (the defaults give 38,918 parameters)."""

    #: Feature channels of the body.
    channels: int = 16
    #: Number of dual blocks.
    blocks: int = 3
    #: Downsampling factor of the body (pixel unshuffle); inputs are padded to a multiple.
    down: int = 2
    #: Sigma (body pixels) of the Gaussian blur applied to the exposure mask; 0: none.
    mask_blur: float = 1.5
    #: What the residual is added to: ``"input"`` (RECNet as published) or ``"gain"``: the
    #: input with one global gain to the running mean luma of the training targets (the
    #: fair baseline "global gain to train-split mean", learnt in training like its level),
    #: with the output layer zeroed so training starts from that baseline. The gain is
    #: per image as given, so train on whole images (``resize``, no ``crop``): a crop's
    #: own mean is not its image's. ``"linear-gain"``: the same level reached by a gain on
    #: sRGB-decoded light (:func:`linear_gain_to_level`), as an exposure change does.
    start: str = "input"
    #: Loss weights (RECNet's configuration).
    l1_weight: float = 1.0
    ssim_weight: float = 0.1
    mask_weight: float = 0.25
    colour_weight: float = 1.0

    def __post_init__(self) -> None:
        for key in ("channels", "blocks", "down"):
            check_int("recnet", key, getattr(self, key), 1)
        if self.channels % 4:
            raise ModelError(f"recnet: channels must be a multiple of 4, got {self.channels}")
        for key in ("mask_blur", "l1_weight", "ssim_weight", "mask_weight", "colour_weight"):
            check_number("recnet", key, getattr(self, key))
        check_start("recnet", self.start)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """BT.601 luma ``(B, 1, H, W)`` of an RGB ``(B, 3, H, W)`` image."""
    r, g, b = image.unbind(dim=1)
    return (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with replicated borders (same shape)."""
    if sigma <= 0:
        return x
    radius = max(1, round(3 * sigma))
    window = losses.gaussian_window(2 * radius + 1, sigma, dtype=x.dtype, device=x.device)
    c, k = x.shape[1], window.numel()
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, window.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, window.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "replicate") -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` padded at the bottom and right so ``H, W`` are multiples of
    ``multiple`` (``mode`` "replicate", or "zeros" for masks)."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if not ph and not pw:
        return x
    if mode == "zeros":
        return F.pad(x, (0, pw, 0, ph))
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: ``x * sigmoid(fc(relu(fc(mean(x)))))``, shape kept."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(channels, channels // reduction, 1)
        self.excite = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.excite(F.relu(self.squeeze(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(weights)


class RegionNorm(nn.Module):
    """Region-aware instance normalisation (RECNet's RIN, two regions).

    ``x`` ``(B, C, h, w)`` and the regions ``(under, over)`` ``(B, 1, h, w)`` in ``[0, 1]``
    -> ``(B, C, h, w)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=True)
        self.attend = nn.ModuleList([nn.Conv2d(3, 1, 3, 1, 1, bias=False) for _ in range(2)])
        self.tails = nn.ModuleList(
            [nn.Conv2d(channels, channels, 3, 1, 1, bias=False) for _ in range(2)]
        )
        self.fuse = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, x: torch.Tensor, regions: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        outs = []
        for region, attend, tail in zip(regions, self.attend, self.tails, strict=True):
            mid = x * region
            stats = torch.cat([mid.mean(1, keepdim=True), mid.amax(1, keepdim=True), region], 1)
            outs.append(tail(self.norm(mid * torch.sigmoid(attend(stats)))))
        return self.fuse(torch.cat(outs, 1))


class DualBlock(nn.Module):
    """Region branch + local branch, fused, channel attention, residual: shape kept."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.region = RegionNorm(channels)
        self.local_depth = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels)
        self.local_point = nn.Conv2d(channels, channels, 1)
        self.fuse = nn.Conv2d(2 * channels, channels, 3, 1, 1)
        self.attention = ChannelAttention(channels)

    def forward(self, x: torch.Tensor, regions: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        local = self.local_point(F.relu(self.local_depth(x)))
        fused = F.leaky_relu(self.fuse(torch.cat([self.region(x, regions), local], 1)), 0.1)
        return x + self.attention(fused)


class MaskPredictor(nn.Module):
    """Exposure mask ``(B, 1, h, w)`` in ``(0, 1)`` from features ``(B, C, h, w)``
    (1: under-exposed, should get brighter)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels // 2, 3, 1, 1)
        self.conv3 = nn.Conv2d(channels // 2, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return torch.sigmoid(self.conv3(x))


class RECNet(Baseline):
    """Region-aware exposure correction (see the module docstring and
    :class:`RECNetConfig` for the keyword arguments)."""

    name = "recnet"
    data_kind = "paired"
    needs_reference = False
    #: ``start="gain"`` only: the running mean luma of the training targets and the
    #: batches folded into it (buffers: saved with the weights, not trained).
    target_level: torch.Tensor
    target_level_batches: torch.Tensor

    def __init__(self, **config: Any) -> None:
        settings = RECNetConfig(**config)
        super().__init__(**asdict(settings))
        self.settings = settings
        c, f = settings.channels, settings.down
        self.shallow = nn.Conv2d(3, c, 3, 1, 1)
        self.stem = nn.Conv2d(3 * f * f, c, 3, 1, 1)
        self.mask_net = MaskPredictor(c)
        self.blocks = nn.ModuleList([DualBlock(c) for _ in range(settings.blocks)])
        self.merge = nn.Conv2d(settings.blocks * c, c, 1)
        self.head_in = nn.Conv2d(2 * c, c, 1)
        self.head_attention = ChannelAttention(c)
        self.head_out = nn.Conv2d(c, 3, 3, 1, 1)
        if settings.start != "input":
            register_running_level(self, START_LEVEL)
            nn.init.zeros_(self.head_out.weight)
            assert self.head_out.bias is not None  # Conv2d's default bias=True
            nn.init.zeros_(self.head_out.bias)

    def start(self, image: torch.Tensor) -> torch.Tensor:
        """What the residual is added to (:attr:`RECNetConfig.start`), same shape."""
        level = None if self.settings.start == "input" else self.target_level
        return start_image(self.settings.start, image, level)

    def observe_targets(self, target: torch.Tensor) -> None:
        """Fold the mean luma of training targets ``(B, 3, H, W)`` into the ``"gain"``
        start's running level (:func:`~expokit.models.level.fold_target_level`)."""
        fold_target_level(self, target)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run on ``image`` ``(B, 3, H, W)`` with ``H, W`` multiples of ``down``.

        Returns:
            the corrected image ``(B, 3, H, W)`` in ``[0, 1]`` and the exposure mask
            ``(B, 1, H / down, W / down)`` in ``(0, 1)``.
        """
        f = self.settings.down
        image = self.start(image)
        full = F.relu(self.shallow(image))
        x = self.stem(F.pixel_unshuffle(image, f) if f > 1 else image)
        mask = self.mask_net(F.relu(x))
        under = gaussian_blur(mask, self.settings.mask_blur)
        regions = (under, 1 - under)
        outs = []
        for block in self.blocks:
            x = block(x, regions)
            outs.append(x)
        x = self.merge(torch.cat(outs, 1))
        if f > 1:
            x = F.interpolate(x, size=image.shape[-2:], mode="bilinear", align_corners=False)
        x = F.relu(self.head_in(torch.cat([x, full], 1)))
        residual = self.head_out(self.head_attention(x))
        return (image + residual).clamp(0, 1), mask

    def enhance(self, image: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """``image`` ``(B, 3, H, W)`` in ``[0, 1]`` corrected, same shape, in ``[0, 1]``,
        any ``H, W`` (padded to a multiple of ``down``, cropped back); ``reference`` is
        ignored."""
        check_image(image, "input")
        h, w = image.shape[-2:]
        down = self.settings.down
        # Region norm is an instance norm over the body (``down`` times smaller): a body of
        # one pixel has no spread to normalise and torch fails on it.
        if -(-h // down) * -(-w // down) < 2:
            raise ModelError(
                f"recnet: image of {w}x{h} pixels is too small (needs more than one body pixel "
                f"at 1/{down} resolution, e.g. {2 * down}x{down} or larger)"
            )
        out, _ = self(pad_to_multiple(image, down))
        return out[..., :h, :w]

    def training_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """L1 + SSIM + mask BCE + colour loss against ``batch["target"]``, inside
        ``batch["mask"]`` when given (crops of at least 11 px for SSIM)."""
        require(batch, "input", "target", model=self.name)
        image = check_image(batch["input"], "input")
        target = check_image(batch["target"], "target")
        if min(image.shape[-2:]) < losses.SSIM_WINDOW:
            raise ModelError(
                f"recnet: training crops must be at least {losses.SSIM_WINDOW}px (SSIM window),"
                f" got {tuple(image.shape[-2:])}"
            )
        s = self.settings
        valid = batch.get("mask")
        if valid is None:
            valid = torch.ones_like(image[:, :1])
        image = pad_to_multiple(image, s.down)
        target = pad_to_multiple(target, s.down)
        valid = pad_to_multiple(valid.to(image.dtype), s.down, mode="zeros")
        if s.start != "input" and self.training:
            self.observe_targets(target)  # the fair baseline's level: the targets' mean luma
        out, mask = self(image)
        # RECNet's mask label: where the target is brighter than the input (at body resolution).
        label = (
            F.avg_pool2d(luminance(target), s.down) > F.avg_pool2d(luminance(image), s.down)
        ).to(image.dtype)
        mask_valid = F.avg_pool2d(valid, s.down)
        bce = F.binary_cross_entropy(mask.clamp(1e-6, 1 - 1e-6), label, reduction="none")
        parts = {
            "l1": losses.masked_l1(out, target, valid),
            "ssim": losses.ssim_loss(out, target, valid),
            "mask": (bce * mask_valid).sum() / mask_valid.sum().clamp_min(1e-8),
            "colour": losses.colour_angle(out, target, valid),
        }
        loss = (
            s.l1_weight * parts["l1"]
            + s.ssim_weight * parts["ssim"]
            + s.mask_weight * parts["mask"]
            + s.colour_weight * parts["colour"]
        )
        return loss, {k: float(v.detach()) for k, v in parts.items()}
