"""UEC-style unsupervised exposure correction (Cui et al., ECCV 2024), written from the paper.

The model takes an image and a *reference* whose exposure the output should have:

* an **encoder** (7x7 and 3x3 convolutions, stride 2, ReLU) turns a small thumbnail into
  per-channel std, mean and max of its features (32 channels -> 96 numbers);
* a **predictor** maps the image's and the reference's features to one scalar ``lambda``
  (``tanh(fc 96->8)`` for each, concatenated, ``fc 16->1``);
* a **pointwise corrector** ``out = lambda * h(x) + (1 - lambda) * x`` with ``h`` three 1x1
  convolutions (3-64-64-3, LeakyReLU), clamped to ``[0, 1]``;
* applied :attr:`UEC.iterations` times (3), each time re-encoding the current output.

19,388 network parameters, as the released model; the default "camera" start adds a learnt
camera response (64 values) and the level's scalars: 19,454 in all. Losses (training): MSE
between the output corrected towards another exposure of the same scene and that exposure,
plus the monotonicity term ``mean(relu(out(ref_dark) - out(ref_bright)))`` for two
exposures of another scene.

Why it trains on a CPU: the corrector is pointwise and the encoder sees only global
statistics, so a training step encodes small thumbnails and corrects a random sample of
pixels (``pixel_samples``) instead of whole images; inference does exactly the same
(thumbnail for ``lambda``, then every pixel), so what is trained is what runs. Once the
``lambda`` values of an image are known its whole correction is a fixed RGB -> RGB map, which
:func:`bake_lut` turns into a 3D lookup table for fast full-resolution inference.

References
----------
R. Cui, Y. Lu, Y. Wang et al., "Unsupervised Exposure Correction", ECCV 2024.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812 - the PyTorch convention
from torch import nn

from expokit.core.transfer import LUMA_RGB as _LUMA_RGB
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
from expokit.models.level import fold_target_level
from expokit.models.response import CameraResponse, srgb_decode, srgb_encode


class UECEncoder(nn.Module):
    """Global exposure features: ``(B, 3, h, w)`` -> ``(B, 3 * channels)`` (std, mean, max)."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 7, 2, 0)
        self.conv2 = nn.Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(F.pad(x, (1, 1, 1, 1))))
        x = F.relu(self.conv2(F.pad(x, (1, 1, 1, 1))))
        std, mean = torch.std_mean(x, dim=(2, 3))
        return torch.cat([std, mean, x.amax(dim=(2, 3))], dim=1)


class UECPredictor(nn.Module):
    """``lambda`` ``(B, 1)`` from the features of the image and of the reference; with a
    ``bound``, ``bound * tanh(raw / bound)``, within ``(-bound, bound)`` (None: unbounded,
    as released)."""

    def __init__(self, features: int = 96, hidden: int = 8, bound: float | None = None) -> None:
        super().__init__()
        self.fc3 = nn.Linear(features, hidden)
        self.fc4 = nn.Linear(2 * hidden, 1)
        self.bound = bound

    def forward(self, features: torch.Tensor, reference_features: torch.Tensor) -> torch.Tensor:
        a = torch.tanh(self.fc3(features))
        b = torch.tanh(self.fc3(reference_features))
        raw = self.fc4(torch.cat([a, b], dim=1))
        if self.bound is None:
            return raw
        return self.bound * torch.tanh(raw / self.bound)


class UECCorrector(nn.Module):
    """Pointwise ``x -> clamp(lambda * h(x) + (1 - lambda) * x, 0, 1)`` on ``(B, 3, ...)``."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 1)
        self.conv2 = nn.Conv2d(width, width, 1)
        self.conv3 = nn.Conv2d(width, 3, 1)

    def forward(self, x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(x), 0.01)
        h = self.conv3(F.leaky_relu(self.conv2(h), 0.01))
        lam = lam.view(-1, 1, 1, 1)
        return (lam * h + (1 - lam) * x).clamp(0, 1)


#: Rec. 709 luma weights on encoded RGB, as :func:`expokit.models.reference.gain_to_reference`.
LUMA_RGB = tuple(float(w) for w in _LUMA_RGB)
#: The starting gain is kept within ``[1 / MAX_START_GAIN, MAX_START_GAIN]``.
MAX_START_GAIN = 64.0


class UECCorrection(NamedTuple):
    """What corrects one batch of images, each ``(B, 1)``: the starting ``gain`` (ones when
    the model starts from the input itself), the ``lambdas`` of each iteration, the starting
    ``gamma`` applied after the gain (``None``: no gamma) and the ``white`` the start curve
    scales by last (``None``: 1). ``linear``: the gain multiplies linear light (sRGB decoded,
    then re-encoded) instead of the encoded values; ``response``: it multiplies the light of
    the model's learnt :class:`~expokit.models.response.CameraResponse` instead (the
    ``"camera"`` start)."""

    gain: torch.Tensor
    lambdas: list[torch.Tensor]
    gamma: torch.Tensor | None = None
    white: torch.Tensor | None = None
    linear: bool = False
    response: bool = False

    def first(self) -> UECCorrection:
        """The correction of the batch's first image alone (batch size 1)."""

        def head(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x[:1]

        return UECCorrection(
            self.gain[:1], [lam[:1] for lam in self.lambdas], head(self.gamma),
            head(self.white), self.linear, self.response,
        )  # fmt: skip


def start_gain(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Global gain ``(B, 1)`` that gives ``image`` the mean Rec. 709 luma of ``reference``
    (both ``(B, 3, h, w)`` encoded RGB in ``[0, 1]``, usually thumbnails); no gradient."""
    with torch.no_grad():
        mine = mean_luma(image).clamp_min(1e-4)
        gain = (mean_luma(reference) / mine).clamp(1 / MAX_START_GAIN, MAX_START_GAIN)
    return gain.view(-1, 1)


#: The ``"exposure"`` start's learnt scalars before training: the white it darkens to (kept in
#: (0.5, 1)), the level of a well-exposed image (mean luma) and how far the start moves from
#: the reference's level to it (0: the reference's level, 1: the learnt level).
START_WHITE = 0.8
START_LEVEL = 0.45
START_LEVEL_WEIGHT = 0.5
#: d log(gain) / d log(level) of the linear-light gain (about the sRGB exponent) and
#: d log(gamma) / d log(level) of the gamma, for the learnt level's gradient only (the forward
#: value is solved exactly).
_GAIN_PER_LEVEL = 2.4
_GAMMA_PER_LEVEL = 1.5


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


#: Bisection rounds of the ``"camera"`` start's gain (a log-gain error of 1e-4 over its
#: range: the response's lookups make each round dearer than the sRGB curve's).
CAMERA_SOLVE_ROUNDS = 16

#: The starting gamma is searched within ``[1, MAX_START_GAMMA]`` (it only darkens).
MAX_START_GAMMA = 16.0


def start_gamma(image: torch.Tensor, reference: torch.Tensor, rounds: int = 24) -> torch.Tensor:
    """Exponent ``(B, 1)`` in ``[1, MAX_START_GAMMA]`` that gives ``image ** gamma`` the mean
    Rec. 709 luma of ``reference`` (both ``(B, 3, h, w)`` encoded RGB in ``[0, 1]``, usually
    thumbnails); 1 where ``image`` is already as dark or darker; no gradient.

    Unlike a gain below 1, a gamma keeps clipped highlights (1.0) white, which is what they
    are at the darker target exposure far more often than the grey a gain makes of them.
    Found by ``rounds`` bisections in log space (the mean luma falls as gamma grows).
    """
    base = image.clamp(1e-6, 1)
    return solve_log(
        lambda g: mean_luma(base ** _per_image(g, base)), mean_luma(reference),
        0.0, math.log(MAX_START_GAMMA), rising=False, rounds=rounds,
    )  # fmt: skip


def apply_gain(pixels: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """``clamp(pixels * gain, 0, 1)`` with ``gain`` ``(B, 1)`` broadcast over ``(B, 3, ...)``."""
    return (pixels * _per_image(gain, pixels)).clamp(0, 1)


def _per_image(value: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """``(B, 1)`` -> broadcastable over ``pixels`` ``(B, C, ...)``."""
    return value.view(-1, *([1] * (pixels.dim() - 1)))


def apply_start(
    pixels: torch.Tensor,
    gain: torch.Tensor,
    gamma: torch.Tensor | None,
    white: torch.Tensor | None = None,
    linear: bool = False,
) -> torch.Tensor:
    """The start curve on ``(B, 3, ...)`` pixels in ``[0, 1]`` (each parameter ``(B, 1)``):
    :func:`apply_gain` (on linear light when ``linear``), then ``** gamma`` unless None, then
    ``* white`` unless None."""
    if linear:
        pixels = srgb_encode(srgb_decode(pixels) * _per_image(gain, pixels))
    else:
        pixels = apply_gain(pixels, gain)
    if gamma is not None:
        pixels = pixels.clamp_min(1e-6) ** _per_image(gamma, pixels)
    if white is not None:
        pixels = pixels * _per_image(white, pixels)
    return pixels


def mean_luma(image: torch.Tensor) -> torch.Tensor:
    """Mean Rec. 709 luma ``(B,)`` of encoded RGB ``(B, 3, h, w)``."""
    weights = torch.tensor(LUMA_RGB, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image * weights).sum(1).mean(dim=(1, 2))


def solve_log(
    luma_of: Callable[[torch.Tensor], torch.Tensor],
    goal: torch.Tensor,
    low: float,
    high: float,
    rising: bool,
    rounds: int = 24,
) -> torch.Tensor:
    """``exp(t)`` ``(B, 1)`` with ``t`` in ``[low, high]`` where ``luma_of(exp(t))`` ``(B,)``
    (monotonic: ``rising`` or falling in ``t``) meets ``goal`` ``(B,)``; bisection, no
    gradient."""
    with torch.no_grad():
        lo = torch.full_like(goal, low)
        hi = torch.full_like(goal, high)
        for _ in range(rounds):
            mid = (lo + hi) / 2
            below = luma_of(mid.exp().view(-1, 1)) < goal
            move_up = below if rising else ~below
            lo = torch.where(move_up, mid, lo)
            hi = torch.where(move_up, hi, mid)
        return ((lo + hi) / 2).exp().view(-1, 1)


def thumbnail(image: torch.Tensor, size: int) -> torch.Tensor:
    """``image`` resized (bilinear, antialiased) so its shorter side is ``size``."""
    h, w = image.shape[-2:]
    scale = size / min(h, w)
    if abs(scale - 1) < 1e-6:
        return image
    shape = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(image, size=shape, mode="bilinear", align_corners=False, antialias=True)


def sample_pixels(
    images: list[torch.Tensor],
    mask: torch.Tensor | None,
    count: int,
    generator: torch.Generator | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The same ``count`` random pixel positions of every image: ``(B, 3, count, 1)`` each,
    plus their mask values ``(B, 1, count, 1)`` (ones when ``mask`` is None)."""
    b, _, h, w = images[0].shape
    index = torch.randint(0, h * w, (b, count), generator=generator, device=images[0].device)

    def take(x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        return flat.gather(2, index[:, None, :].expand(-1, flat.shape[1], -1)).unsqueeze(-1)

    weights = torch.ones(b, 1, count, 1, device=images[0].device) if mask is None else take(mask)
    return [take(x) for x in images], weights


class UEC(Baseline):
    """UEC-style exposure correction towards a reference (see the module docstring).

    Parameters
    ----------
    encode_channels, corrector_width, predictor_hidden
        Sizes (32, 64, 8 give the released 19,388 parameters).
    iterations
        How often the correction is applied, re-encoding the output each time (3; 0: the
        start curve alone).
    feature_size
        Shorter side of the thumbnail the encoder sees (training and inference alike).
    pixel_samples
        Pixels per image the training loss is computed on.
    monotonic_weight
        Weight of the monotonicity term.
    start
        ``"camera"`` (default): a gain on the light of a learnt camera response
        (:class:`~expokit.models.response.CameraResponse`, ``response_knots`` segments,
        initialised to sRGB), brightening or darkening, solved to the level of
        ``"exposure"``; its curve and the level's weight are what it learns (+2.0 dB over
        ``"exposure"`` on the SICE protocol, see ``docs/models.md``). ``"exposure"``: a gain on
        linear light where the input is darker than
        the level aimed at, a gamma then a white below 1 where it is brighter; the level
        moves from the reference's towards a learnt one (:meth:`start_curve`; three learnt
        scalars; +2.9 dB over ``"gain_gamma"`` untrained on the SICE protocol, see
        ``docs/models.md``); ``"gain_gamma"``: the gain of ``"gain"`` where it brightens,
        where the input is brighter than the reference the gamma of :func:`start_gamma`
        (clipped highlights stay white); ``"gain"``: the iterations start from the input
        times the global gain that gives it the reference's mean luma (checkpoints made
        before ``"gain_gamma"`` store it); ``"input"``: they start from the input itself,
        as in the paper. The other starts have no parameters.
    start_level
        ``"exposure"`` and ``"camera"``: ``"data"`` (default): the level aimed at is the
        running mean of the training targets' mean luma (a buffer, updated in training mode like a
        batch norm's statistics, no gradient); ``"learnt"``: a parameter trained with the
        rest.
    learn_start
        ``"exposure"``: learn the level's weight and the white (False: keep
        :data:`START_LEVEL_WEIGHT` and :data:`START_WHITE`); ``"camera"``: the level's
        weight and the response curve (False: keep the weight and sRGB).
    max_lambda
        Bound on each iteration's ``lambda``: ``max_lambda * tanh(raw / max_lambda)``
        (None, default: unbounded, as released). An ablation: see ``docs/models.md``.
    network_lr_scale
        The encoder, predictor and corrector train at this times the recipe's lr, the
        start curve's scalars at the lr itself (1: one lr for all). An ablation too.
    response_knots
        ``"camera"`` only: segments of the learnt response curve (64; on the SICE protocol
        16, 32, 64 and 128 score 21.93, 22.15, 22.29 and 22.33 dB).
    """

    name = "uec"
    data_kind = "sequence"
    needs_reference = True
    STARTS = ("gain", "input", "gain_gamma", "exposure", "camera")
    #: The starts with a learnt level (and learnt scalars or curve)
    LEVEL_STARTS = ("exposure", "camera")
    START_LEVELS = ("data", "learnt")
    #: :attr:`LEVEL_STARTS`, ``start_level="data"``: the running training-target level and
    #: how many batches it has seen (buffers, saved with the weights)
    target_level: torch.Tensor
    target_level_batches: torch.Tensor

    def __init__(
        self,
        encode_channels: int = 32,
        corrector_width: int = 64,
        predictor_hidden: int = 8,
        iterations: int = 3,
        feature_size: int = 128,
        pixel_samples: int = 4096,
        monotonic_weight: float = 1.0,
        start: str = "camera",
        start_level: str = "data",
        learn_start: bool = True,
        max_lambda: float | None = None,
        network_lr_scale: float = 1.0,
        response_knots: int = 64,
    ) -> None:
        if start not in self.STARTS:
            raise ModelError(f"uec: start must be one of {', '.join(self.STARTS)}, got {start!r}")
        if iterations == 0 and not (start in self.LEVEL_STARTS and learn_start):
            raise ModelError(
                "uec: iterations 0 leaves only the start curve, which has nothing to learn "
                f"unless start is {' or '.join(map(repr, self.LEVEL_STARTS))} with learn_start "
                f"true (got start {start!r}, learn_start {learn_start!r})"
            )
        if start_level not in self.START_LEVELS:
            raise ModelError(
                f"uec: start_level must be one of {', '.join(self.START_LEVELS)}, "
                f"got {start_level!r}"
            )
        sizes = {
            "encode_channels": encode_channels, "corrector_width": corrector_width,
            "predictor_hidden": predictor_hidden, "iterations": iterations,
            "feature_size": feature_size, "pixel_samples": pixel_samples,
            "response_knots": response_knots,
        }  # fmt: skip
        for key, value in sizes.items():
            # 0 iterations: the start curve alone (an ablation of the learnt corrector)
            check_int("uec", key, value, {"iterations": 0, "response_knots": 2}.get(key, 1))
        check_number("uec", "monotonic_weight", monotonic_weight)
        check_number("uec", "network_lr_scale", network_lr_scale)
        if network_lr_scale <= 0:
            raise ModelError(f"uec: network_lr_scale must be > 0, got {network_lr_scale!r}")
        if max_lambda is not None:
            check_number("uec", "max_lambda", max_lambda)
            if max_lambda <= 0:
                raise ModelError(f"uec: max_lambda must be > 0 (or None), got {max_lambda!r}")
        super().__init__(
            encode_channels=encode_channels, corrector_width=corrector_width,
            predictor_hidden=predictor_hidden, iterations=iterations, feature_size=feature_size,
            pixel_samples=pixel_samples, monotonic_weight=monotonic_weight, start=start,
            start_level=start_level, learn_start=learn_start, max_lambda=max_lambda,
            network_lr_scale=network_lr_scale, response_knots=response_knots,
        )  # fmt: skip
        self.encoder = UECEncoder(encode_channels)
        self.predictor = UECPredictor(3 * encode_channels, predictor_hidden, max_lambda)
        self.corrector = UECCorrector(corrector_width)
        self.iterations = iterations
        self.feature_size = feature_size
        self.pixel_samples = pixel_samples
        self.monotonic_weight = monotonic_weight
        self.network_lr_scale = network_lr_scale
        self.start = start
        self.start_level_source = start_level
        if start in self.LEVEL_STARTS:
            # Scalars, not a network: one per dataset, so 11 scenes cannot overfit them (a
            # per-image head on the encoder features did: -1.2 dB on held-out SICE scenes).
            if start == "exposure":
                self.white_logit = nn.Parameter(torch.tensor(_logit(2 * START_WHITE - 1)))
            else:
                # One curve for every image (the camera's), like the scalars above.
                self.response = CameraResponse(response_knots)
            self.level_weight_logit = nn.Parameter(torch.tensor(_logit(START_LEVEL_WEIGHT)))
            self.level_log = nn.Parameter(
                torch.tensor(math.log(START_LEVEL)), requires_grad=start_level == "learnt"
            )
            register_running_level(self, START_LEVEL)
            if not learn_start:
                for parameter in self._start_parameters():
                    parameter.requires_grad_(False)
        if iterations == 0:
            # Nothing reads the networks: frozen, so the trainable count is what learns and
            # DistributedDataParallel finds no parameter without a gradient.
            for network in self._networks():
                network.requires_grad_(False)

    def _start_parameters(self) -> list[nn.Parameter]:
        """What ``learn_start`` trains: the level's weight and the white (``"exposure"``) or
        the camera response (``"camera"``)."""
        curve = self.response.parameters() if self.start == "camera" else [self.white_logit]
        return [self.level_weight_logit, *curve]

    def _networks(self) -> tuple[nn.Module, ...]:
        """The encoder, predictor and corrector (what the start curve's scalars are not)."""
        return (self.encoder, self.predictor, self.corrector)

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The networks (encoder, predictor, corrector) at ``network_lr_scale`` times the
        lr, the start curve's scalars at the lr itself (one group when the scale is 1, as
        checkpoints made before the option store)."""
        if self.network_lr_scale == 1.0:
            return super().parameter_groups()
        networks = [p for network in self._networks() for p in network.parameters()]
        ids = {id(p) for p in networks}
        scalars = [p for p in self.parameters() if id(p) not in ids]
        return [
            {"params": scalars, "lr_scale": 1.0},
            {"params": networks, "lr_scale": self.network_lr_scale},
        ]

    # -- the functional steps --------------------------------------------------------------
    def correction(self, image: torch.Tensor, reference: torch.Tensor) -> UECCorrection:
        """The start curve and the ``iterations`` lambda values that correct ``image``
        towards ``reference`` (both ``(B, 3, H, W)`` in ``[0, 1]``; only thumbnails are
        encoded, so any size works)."""
        thumb = thumbnail(image, self.feature_size)
        ref_thumb = thumbnail(reference, self.feature_size)
        ref_features = self.encoder(ref_thumb)
        start = self.start_curve(thumb, ref_thumb)
        thumb = self.apply_start(thumb, start)
        values = []
        for _ in range(self.iterations):
            lam = self.predictor(self.encoder(thumb), ref_features)
            thumb = self.corrector(thumb, lam)
            values.append(lam)
        return start._replace(lambdas=values)

    def start_curve(self, thumb: torch.Tensor, ref_thumb: torch.Tensor) -> UECCorrection:
        """The start curve of :attr:`start` (a :class:`UECCorrection` without lambdas) for
        thumbnails ``(B, 3, h, w)`` of the images and their references.

        ``"exposure"``: where the image is darker than the level aimed at, a gain on linear
        light (how a longer exposure brightens: the sRGB toe and shoulder kept); where it is
        brighter, a gamma then the learnt ``white`` (< 1: at the darker exposure clipped
        highlights are bright but rarely pure white). Each is solved so the image gets the
        mean luma of :meth:`start_level` (the reference's level moved towards the learnt level
        of a well-exposed image: another scene's level is only a hint of this one's).
        The other starts have no parameters and no gradient.
        """
        ones = torch.ones(thumb.shape[0], 1, dtype=thumb.dtype, device=thumb.device)
        if self.start == "input":
            return UECCorrection(ones, [])
        if self.start == "exposure":
            return self._exposure_start(thumb, ref_thumb, ones)
        if self.start == "camera":
            return self._camera_start(thumb, ref_thumb)
        gain = start_gain(thumb, ref_thumb)
        if self.start == "gain":
            return UECCorrection(gain, [])
        darken = gain < 1
        gamma = torch.where(darken, start_gamma(thumb, ref_thumb), ones)
        return UECCorrection(torch.where(darken, ones, gain), [], gamma)

    def start_level(self, reference_level: torch.Tensor) -> torch.Tensor:
        """Log of the mean luma ``(B,)`` the ``"exposure"`` start aims at: between the log of
        ``reference_level`` ``(B,)`` and the learnt level, by the learnt weight."""
        weight = torch.sigmoid(self.level_weight_logit)
        if self.start_level_source == "data":
            own = self.target_level.clamp_min(1e-4).log()
        else:
            own = self.level_log
        return (1 - weight) * reference_level.clamp_min(1e-4).log() + weight * own

    def observe_targets(self, target: torch.Tensor) -> None:
        """Fold the mean luma of training targets ``(B, 3, H, W)`` into the running level
        of ``start_level="data"`` (the first batches average, then momentum
        :data:`~expokit.models.level.LEVEL_MOMENTUM`)."""
        fold_target_level(self, target)

    def _level_goal(self, ref_thumb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean luma ``(B,)`` a level start solves for (no gradient) and ``moved``
        ``(B, 1)``: zero in value, carrying the level's gradient (the values are solved at
        the detached level, so ``exp(rate * moved)`` on them adds that gradient)."""
        level = self.start_level(mean_luma(ref_thumb))
        return level.detach().exp(), (level - level.detach()).view(-1, 1)

    def _exposure_start(
        self, thumb: torch.Tensor, ref_thumb: torch.Tensor, ones: torch.Tensor
    ) -> UECCorrection:
        goal, moved = self._level_goal(ref_thumb)
        darken = (mean_luma(thumb) > goal).view(-1, 1)
        white = 0.5 + 0.5 * torch.sigmoid(self.white_logit)
        linear = srgb_decode(thumb)
        gain = solve_log(
            lambda k: mean_luma(srgb_encode(linear * _per_image(k, linear))),
            goal, 0.0, math.log(MAX_START_GAIN), rising=True,
        )  # fmt: skip
        base = thumb.clamp(1e-6, 1)
        white_now = float(white.detach())
        gamma = solve_log(
            lambda g: mean_luma(base ** _per_image(g, base) * white_now),
            goal, -math.log(4.0), math.log(MAX_START_GAMMA), rising=False,
        )  # fmt: skip
        return UECCorrection(
            torch.where(darken, ones, gain * (_GAIN_PER_LEVEL * moved).exp()), [],
            torch.where(darken, gamma * (-_GAMMA_PER_LEVEL * moved).exp(), ones),
            torch.where(darken, white * ones, ones), linear=True,
        )  # fmt: skip

    def _camera_start(self, thumb: torch.Tensor, ref_thumb: torch.Tensor) -> UECCorrection:
        goal, moved = self._level_goal(ref_thumb)
        with torch.no_grad():  # only the solve reads it
            light = self.response.decode(thumb)
        gain = solve_log(
            lambda k: mean_luma(self.response.encode(light * _per_image(k, light))),
            goal, -math.log(MAX_START_GAIN), math.log(MAX_START_GAIN), rising=True,
            rounds=CAMERA_SOLVE_ROUNDS,
        )  # fmt: skip
        return UECCorrection(gain * (_GAIN_PER_LEVEL * moved).exp(), [], response=True)

    def apply_start(self, pixels: torch.Tensor, correction: UECCorrection) -> torch.Tensor:
        """The start curve of ``correction`` on ``(B, 3, ...)`` pixels in ``[0, 1]``: the
        learnt camera response's exposure change where ``correction.response``, else
        :func:`apply_start`."""
        if correction.response:
            return self.response.expose(pixels, _per_image(correction.gain, pixels))
        return apply_start(
            pixels, correction.gain, correction.gamma, correction.white, correction.linear
        )

    def apply_correction(self, pixels: torch.Tensor, correction: UECCorrection) -> torch.Tensor:
        """Apply a known :class:`UECCorrection` to ``(B, 3, ...)`` pixels in ``[0, 1]``."""
        pixels = self.apply_start(pixels, correction)
        for lam in correction.lambdas:
            pixels = self.corrector(pixels, lam)
        return pixels

    def enhance(self, image: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """``image`` ``(B, 3, H, W)`` corrected towards ``reference``'s exposure (required)."""
        check_image(image, "input")
        if reference is None:
            raise ModelError("model 'uec' needs a reference image that sets the target exposure")
        check_image(reference, "reference")
        if reference.shape[0] == 1 and image.shape[0] > 1:
            reference = reference.expand(image.shape[0], -1, -1, -1)
        return self.apply_correction(image, self.correction(image, reference))

    # -- training --------------------------------------------------------------------------
    def training_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """MSE on sampled pixels between ``input`` corrected towards ``reference`` and
        ``target`` (UEC: another exposure of the same scene, often the reference itself),
        plus the monotonicity term on ``ref_dark``/``ref_bright`` when the batch has them.

        All images ``(B, 3, H, W)`` float in ``[0, 1]``; ``mask`` ``(B, 1, H, W)`` optional.
        The monotonicity term uses the first correction only (``lambda`` from the input's
        and each reference's features), which needs no corrected thumbnails: cheap.
        """
        require(batch, "input", "target", "reference", model=self.name)
        image, target = batch["input"], batch["target"]
        if self.start in self.LEVEL_STARTS and self.start_level_source == "data" and self.training:
            self.observe_targets(target)
        correction = self.correction(image, batch["reference"])
        (pix_in, pix_target), weights = sample_pixels(
            [image, target], batch.get("mask"), self.pixel_samples, None
        )
        out = self.apply_correction(pix_in, correction)
        mse = ((out - pix_target) ** 2 * weights).sum() / (weights.sum() * 3).clamp_min(1)
        parts: dict[str, Any] = {"mse": float(mse.detach())}
        loss = mse
        if "ref_dark" in batch and "ref_bright" in batch and self.monotonic_weight > 0:
            thumb = thumbnail(image, self.feature_size)
            dark_thumb, bright_thumb = (
                thumbnail(batch[key], self.feature_size) for key in ("ref_dark", "ref_bright")
            )
            # Both start from the input with the start curve towards their own reference,
            # so the term checks the whole first step, start included.
            dark = self._first_step(thumb, pix_in, dark_thumb)
            bright = self._first_step(thumb, pix_in, bright_thumb)
            monotonic = F.relu(dark - bright).mean()
            loss = loss + self.monotonic_weight * monotonic
            parts["monotonic"] = float(monotonic.detach())
        return loss, parts

    def _first_step(
        self, thumb: torch.Tensor, pixels: torch.Tensor, ref_thumb: torch.Tensor
    ) -> torch.Tensor:
        """The first iteration's output on ``pixels`` for input thumbnail ``thumb`` started
        towards ``ref_thumb`` (the monotonicity term's unit; the start alone when there
        are no iterations)."""
        start = self.start_curve(thumb, ref_thumb)
        pixels = self.apply_start(pixels, start)
        if self.iterations == 0:
            return pixels
        started = self.apply_start(thumb, start)
        lam = self.predictor(self.encoder(started), self.encoder(ref_thumb))
        return self.corrector(pixels, lam)


def bake_lut(model: UEC, correction: UECCorrection, size: int = 33) -> torch.Tensor:
    """The whole correction of one image (``correction`` of batch size 1, or its first item)
    as a ``(3, size, size, size)`` RGB lookup table indexed ``[channel, b, g, r]`` over
    ``[0, 1]^3``.

    Raises
    ------
    ModelError
        The table holds NaN or infinite values (NaN weights or lambdas): stored as 8 bits it
        would map every pixel to black.
    """
    axis = torch.linspace(0, 1, size)
    b, g, r = torch.meshgrid(axis, axis, axis, indexing="ij")
    grid = torch.stack([r, g, b]).reshape(1, 3, -1, 1)
    with torch.no_grad():
        out = model.apply_correction(grid, correction.first())
    if not bool(torch.isfinite(out).all()):
        raise ModelError("uec: the baked 3D LUT holds NaN or infinite values (from the model)")
    return out.reshape(3, size, size, size)


def apply_lut(lut: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Trilinear lookup of ``image`` ``(1, 3, H, W)`` in ``lut`` from :func:`bake_lut`."""
    # grid_sample's 5-D grid is (x, y, z) = (r, g, b) in [-1, 1] over a (D=b, H=g, W=r) volume.
    coords = image[0].permute(1, 2, 0).unsqueeze(0).unsqueeze(0) * 2 - 1  # (1, 1, H, W, 3)
    out = F.grid_sample(lut.unsqueeze(0), coords, mode="bilinear", align_corners=True)
    return out[:, :, 0]
