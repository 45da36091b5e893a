"""A small video exposure-correction baseline: align neighbours, fuse, correct the centre.

``VideoNet`` restores the centre frame of a window of ``N`` (3 or 5) consecutive frames:

* a **flow head** (:class:`FlowHead`) estimates, at a quarter of the resolution, the flow
  from the centre frame to each neighbour (input: the two frames, each divided by its own
  mean so exposure changes do not look like motion); the neighbour is warped onto the
  centre with ``grid_sample`` (bilinear, border padding). Its last layer starts at zero, so
  an untrained model stacks the frames unaligned;
* a **fusion/correction network** (:class:`FusionNet`) sees the centre and the warped
  neighbours (``3N`` channels) plus a global context vector (spatial mean of its
  features: exposure is a global property) and predicts a per-pixel log-gain ``g`` and a
  residual ``r``: ``out = clamp(x_c * exp(g) + r, 0, 1)``. Its last layer starts at zero,
  so an untrained model is the identity on the centre frame.

Losses (training, a ``clip`` batch):

* ``l1``: masked L1 between the output and the centre target;
* ``align`` (``align_weight``): photometric L1 between the centre *target* and each
  neighbour *target* warped with the predicted flow, plus a small flow smoothness term: the
  flow is estimated from the (badly exposed) inputs but supervised on the well-exposed
  targets;
* ``temporal`` (``temporal_weight``): the output for the previous frame (its window is the
  clip's frames shifted by one, the edge frame repeated) is warped onto the current one
  with the (detached) flow, and ``|(O_t - W O_{t-1}) - (T_t - W T_{t-1})|`` is penalised
  where the warp is trustworthy (occlusion weight ``exp(-k |T_t - W T_{t-1}|^2)``): output
  changes between frames should be the target's changes, no more (no added flicker).

Everything is convolutional plus a global mean, so any ``H, W`` works (the flow head pads
to a multiple of 4 internally).

``start`` (:mod:`expokit.models.level`): ``"input"`` (the default) corrects the frames as
they are; ``"gain"`` / ``"linear-gain"`` first bring every frame to the running mean luma of
the training targets (one gain per frame on the encoded values, or on sRGB-decoded light),
so the untrained model is the fair baseline "global gain to train-split mean" (``"gain"``)
or an exposure change to that level (``"linear-gain"``), and training learns what is left;
``"exposure-ratio"`` exposes every frame by one fixed ratio, the running geometric mean of
the training pairs' exposure ratio (centre frames, unclipped pixels, linear light): a rig's
test camera sits a fixed number of stops under its reference camera, whatever the scene,
so the untrained model is the fair baseline "exposure change by the train-split ratio".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the PyTorch convention
from torch import nn

from expokit.models.base import (
    Baseline,
    Batch,
    ModelError,
    check_image,
    check_int,
    check_number,
    fold_running_level,
    register_running_level,
    require,
)
from expokit.models.level import (
    LEVEL_MOMENTUM,
    RATIO_STARTS,
    START_LEVEL,
    check_start,
    exposure_change,
    fold_target_level,
    log_exposure_ratio,
    start_image,
)

#: The ``"exposure-ratio"`` start's buffer: the running mean log exposure ratio.
LOG_RATIO = "exposure_log_ratio"

#: Occlusion sharpness of the temporal loss weight ``exp(-k * err^2)`` (err in [0, 1]).
OCCLUSION_K = 50.0


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp ``image`` ``(B, C, H, W)`` with ``flow`` ``(B, 2, H, W)`` in pixels.

    ``out[y, x] = image[y + flow_y, x + flow_x]`` (bilinear, border padding): with the flow
    from frame ``t`` to frame ``s``, warping frame ``s`` gives it in ``t``'s geometry.
    """
    h, w = image.shape[-2:]
    ys, xs = torch.meshgrid(
        torch.arange(h, device=image.device, dtype=image.dtype),
        torch.arange(w, device=image.device, dtype=image.dtype),
        indexing="ij",
    )
    x = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    y = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([x, y], dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _zero(conv: nn.Conv2d) -> None:
    """Start ``conv`` at zero output (identity / no-flow start)."""
    with torch.no_grad():
        conv.weight.zero_()
        if conv.bias is not None:
            conv.bias.zero_()


def _normalise(frame: torch.Tensor) -> torch.Tensor:
    """``frame`` divided by its mean (per image): motion cues without the exposure level."""
    return frame / frame.mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3) * 0.5


class FlowHead(nn.Module):
    """Flow ``(B, 2, H, W)`` in pixels from ``centre`` to ``neighbour`` (both ``(B, 3, H, W)``),
    estimated at 1/4 resolution (receptive field about 40 px at full resolution)."""

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(6, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=2, dilation=2)
        self.conv3 = nn.Conv2d(width, width, 3, padding=4, dilation=4)
        self.out = nn.Conv2d(width, 2, 3, padding=1)
        _zero(self.out)

    def forward(self, centre: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
        h, w = centre.shape[-2:]
        x = torch.cat([_normalise(centre), _normalise(neighbour)], dim=1)
        x = F.avg_pool2d(x, 4, ceil_mode=True)
        x = F.leaky_relu(self.conv1(x), 0.1)
        x = F.leaky_relu(self.conv2(x), 0.1)
        x = F.leaky_relu(self.conv3(x), 0.1)
        flow = self.out(x) * 4.0  # quarter-resolution pixels -> full-resolution pixels
        return F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)


class FusionNet(nn.Module):
    """``(B, 3N, H, W)`` stacked centre + aligned neighbours -> ``(log_gain, residual)``,
    each ``(B, 3, H, W)``; starts at zero (identity)."""

    def __init__(self, frames: int, width: int = 24) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3 * frames, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=2, dilation=2)
        self.context = nn.Linear(width, width)
        self.conv3 = nn.Conv2d(width, width, 3, padding=1)
        self.out = nn.Conv2d(width, 6, 1)
        _zero(self.out)

    def forward(self, stacked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.leaky_relu(self.conv1(stacked), 0.1)
        x = F.leaky_relu(self.conv2(x), 0.1)
        context = torch.tanh(self.context(x.mean(dim=(2, 3))))
        x = F.leaky_relu(self.conv3(x + context[:, :, None, None]), 0.1)
        gain, residual = self.out(x).chunk(2, dim=1)
        return gain, residual


def window(frames: torch.Tensor, centre: int, size: int) -> torch.Tensor:
    """The ``size`` frames of ``frames`` ``(B, T, 3, H, W)`` centred on ``centre``, edge
    frames repeated where the window leaves the clip: ``(B, size, 3, H, W)``."""
    half = size // 2
    index = [min(max(i, 0), frames.shape[1] - 1) for i in range(centre - half, centre + half + 1)]
    return frames[:, index]


@dataclass(frozen=True)
class VideoNetConfig:
    """Sizes, loss weights and start of :class:`VideoNet` (the defaults give 25,304
    parameters)."""

    #: Window length ``N``: 3 or 5.
    frames: int = 3
    #: Channels of the fusion network.
    width: int = 24
    #: Channels of the flow head (0: no alignment, plain frame stacking).
    flow_width: int = 24
    #: Weights of the flow (photometric) and temporal-consistency losses.
    align_weight: float = 0.5
    temporal_weight: float = 0.5
    #: What the network corrects, one of :data:`~expokit.models.level.RATIO_STARTS` (module
    #: docstring): ``"input"``, ``"gain"``, ``"linear-gain"`` or ``"exposure-ratio"``.
    start: str = "input"

    def __post_init__(self) -> None:
        frames = self.frames
        if isinstance(frames, bool) or not isinstance(frames, int) or frames not in (3, 5):
            raise ModelError(f"video: frames must be 3 or 5, got {frames!r}")
        check_int("video", "width", self.width, 1)
        check_int("video", "flow_width", self.flow_width, 0)
        check_number("video", "align_weight", self.align_weight)
        check_number("video", "temporal_weight", self.temporal_weight)
        check_start("video", self.start, RATIO_STARTS)


class VideoNet(Baseline):
    """Video exposure correction of the centre of ``frames`` consecutive frames.

    ``config``: the fields of :class:`VideoNetConfig` (defaults and validation there).
    """

    name = "video"
    data_kind = "clip"
    #: ``start`` ``"gain"`` / ``"linear-gain"`` only: the running mean luma of the training
    #: targets' centre frames and the batches folded into it (buffers: saved with the weights).
    target_level: torch.Tensor
    target_level_batches: torch.Tensor
    #: ``start="exposure-ratio"`` only: the running mean log exposure ratio (target / input,
    #: linear light) of the training pairs' centre frames, and its batches (buffers).
    exposure_log_ratio: torch.Tensor
    exposure_log_ratio_batches: torch.Tensor

    def __init__(self, **config: Any) -> None:
        settings = VideoNetConfig(**config)
        super().__init__(**asdict(settings))
        self.settings = settings
        self.frames = settings.frames
        self.flow = FlowHead(settings.flow_width) if settings.flow_width > 0 else None
        self.fusion = FusionNet(settings.frames, settings.width)
        if settings.start == "exposure-ratio":
            register_running_level(self, 0.0, LOG_RATIO)
        elif settings.start != "input":
            register_running_level(self, START_LEVEL)

    def start(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames`` ``(B, N, 3, H, W)`` as the ``start`` gives them: every frame brought to
        the running target level (one gain per frame), or exposed by the running exposure
        ratio (``"exposure-ratio"``); ``"input"``: the frames themselves."""
        if self.settings.start == "input":
            return frames
        if self.settings.start == "exposure-ratio":
            return exposure_change(frames, self.exposure_log_ratio)
        started = start_image(self.settings.start, frames.flatten(0, 1), self.target_level)
        return started.view_as(frames)

    # -- the functional steps --------------------------------------------------------------
    def flows(self, frames: torch.Tensor) -> list[torch.Tensor | None]:
        """Flow from the centre to every frame of ``(B, N, 3, H, W)`` (None for the centre
        itself and when there is no flow head): ``N`` entries ``(B, 2, H, W)``."""
        c = self.frames // 2
        centre = frames[:, c]
        if self.flow is None:
            return [None] * self.frames
        return [None if i == c else self.flow(centre, frames[:, i]) for i in range(self.frames)]

    def aligned(
        self, frames: torch.Tensor, flows: list[torch.Tensor | None]
    ) -> torch.Tensor:  # fmt: skip
        """``(B, N, 3, H, W)``: every frame warped onto the centre with ``flows``."""
        return torch.stack(
            [frames[:, i] if f is None else warp(frames[:, i], f) for i, f in enumerate(flows)],
            dim=1,
        )

    def correct(self, frames: torch.Tensor, flows: list[torch.Tensor | None]) -> torch.Tensor:
        """Unclamped corrected centre ``(B, 3, H, W)`` from frames and their flows."""
        aligned = self.aligned(frames, flows)
        gain, residual = self.fusion(aligned.flatten(1, 2))
        return frames[:, self.frames // 2] * torch.exp(gain) + residual

    def _check_frames(self, frames: torch.Tensor, name: str = "frames") -> torch.Tensor:
        if frames.ndim == 4:  # one image: a static clip
            check_image(frames, name)
            return frames.unsqueeze(1).expand(-1, self.frames, -1, -1, -1)
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ModelError(
                f"{name}: model 'video' expects frames (B, N, 3, H, W), got {tuple(frames.shape)}"
            )
        if frames.shape[1] != self.frames:
            raise ModelError(
                f"{name}: model 'video' was built for {self.frames} frames, got {frames.shape[1]}"
            )
        check_image(frames.flatten(0, 1), name)
        return frames

    def enhance(self, image: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """Corrected centre frame ``(B, 3, H, W)`` in ``[0, 1]`` of ``image``
        ``(B, N, 3, H, W)`` float in ``[0, 1]`` (a ``(B, 3, H, W)`` image is treated as a
        static clip); ``reference`` is ignored."""
        frames = self.start(self._check_frames(image))
        return self.correct(frames, self.flows(frames)).clamp(0, 1)

    def evaluate_batch(self, batch: Batch) -> torch.Tensor:
        require(batch, "frames", model=self.name)
        return self.enhance(batch["frames"])

    # -- training --------------------------------------------------------------------------
    def _fold_start(
        self, centre: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None
    ) -> None:
        """Fold a training batch's centre frames into the start's running buffer: the
        targets' mean luma (the fair baseline's level), or the pairs' log exposure ratio
        (batches without an unclipped pixel are left out)."""
        if self.settings.start == "exposure-ratio":
            ratios = log_exposure_ratio(centre, target, mask)
            ratios = ratios[torch.isfinite(ratios)]
            if ratios.numel():
                fold_running_level(self.exposure_log_ratio, self.exposure_log_ratio_batches,
                                   ratios.mean(), LEVEL_MOMENTUM)  # fmt: skip
        elif self.settings.start != "input":
            fold_target_level(self, target)

    def training_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """L1 on the centre + flow photometric loss + temporal consistency (module docstring).

        ``batch``: ``frames`` and ``target_frames`` ``(B, N, 3, H, W)``, optionally
        ``frame_mask`` ``(B, N, 1, H, W)``.
        """
        require(batch, "frames", "target_frames", model=self.name)
        frames = self._check_frames(batch["frames"])
        targets = self._check_frames(batch["target_frames"], "target_frames")
        b, n, _, h, w = frames.shape
        masks = batch.get("frame_mask")
        if self.training:
            self._fold_start(frames[:, n // 2], targets[:, n // 2],
                             None if masks is None else masks[:, n // 2])  # fmt: skip
        frames = self.start(frames)
        if masks is None:
            masks = frames.new_ones(b, n, 1, h, w)
        c = n // 2
        flows = self.flows(frames)
        out = self.correct(frames, flows)
        mask_c = masks[:, c]
        l1 = ((out - targets[:, c]).abs() * mask_c).sum() / (mask_c.sum() * 3).clamp_min(1)
        loss = l1
        parts: dict[str, Any] = {"l1": float(l1.detach())}

        if self.flow is not None and self.settings.align_weight > 0:
            align = frames.new_zeros(())
            for i, f in enumerate(flows):
                if f is None:
                    continue
                m = mask_c * warp(masks[:, i], f)
                err = (warp(targets[:, i], f) - targets[:, c]).abs() * m
                smooth = (f[..., 1:, :] - f[..., :-1, :]).abs().mean() + (
                    f[..., :, 1:] - f[..., :, :-1]
                ).abs().mean()
                align = align + err.sum() / (m.sum() * 3).clamp_min(1) + 0.01 * smooth
            align = align / (n - 1)
            loss = loss + self.settings.align_weight * align
            parts["align"] = float(align.detach())

        if self.settings.temporal_weight > 0:
            prev = window(frames, c - 1, n)
            out_prev = self.correct(prev, self.flows(prev))
            # flow from the current centre to the previous frame, detached: the temporal
            # loss shapes the output, not the alignment
            f_prev = flows[c - 1]
            f_prev = f_prev.detach() if f_prev is not None else None
            t_prev = targets[:, c - 1]
            if f_prev is not None:
                out_prev, t_prev = warp(out_prev, f_prev), warp(t_prev, f_prev)
                m_prev = warp(masks[:, c - 1], f_prev)
            else:
                m_prev = masks[:, c - 1]
            target_change = targets[:, c] - t_prev
            weight = mask_c * m_prev * torch.exp(-OCCLUSION_K * target_change.pow(2).mean(1, True))
            diff = ((out - out_prev) - target_change).abs() * weight
            temporal = diff.sum() / (weight.sum() * 3).clamp_min(1)
            loss = loss + self.settings.temporal_weight * temporal
            parts["temporal"] = float(temporal.detach())
        return loss, parts
