"""Level starts: an image brought to a running training-target level before a network
corrects it (``start`` of :mod:`~expokit.models.recnet` and :mod:`~expokit.models.zerodce`).

``"gain"`` is one gain on the encoded values, exactly the fair baseline "global gain to
train-split mean" (:func:`expokit.models.reference.gain_to_level`); ``"linear-gain"`` is
one gain on sRGB-decoded light, as an exposure change is. The level is the running mean
Rec. 709 luma of the training targets (:func:`expokit.models.base.fold_running_level`).

``"exposure-ratio"`` (``video`` only, :data:`RATIO_STARTS`): one *fixed* gain on
sRGB-decoded light, the running geometric mean of the training pairs' exposure ratio
(:func:`log_exposure_ratio`): a rig whose test camera is always a fixed number of stops
under the reference camera needs no per-image level, only that number. Untrained, it is
the fair baseline "exposure change by the train-split ratio"
(:func:`expokit.models.reference.train_ratio_method`).
"""

from __future__ import annotations

import math

import torch

from expokit.core.transfer import LUMA_RGB
from expokit.models.base import ModelError, fold_running_level
from expokit.models.reference import FIT_HIGH, FIT_LOW
from expokit.models.response import srgb_decode, srgb_encode

#: The starts a model can take (``"input"``: the image itself).
STARTS = ("input", "gain", "linear-gain")
#: The starts of a model that also learns the training pairs' exposure ratio (``video``).
RATIO_STARTS = (*STARTS, "exposure-ratio")
#: Bisection steps of the ``"linear-gain"`` start's gain (log2 range 12 stops: 2^-12 of it).
_GAIN_STEPS = 24
#: The ``"gain"`` start: the level before any target is seen (mean encoded luma of 18 %
#: grey), the running level's momentum after the first batches, the gain's limits.
START_LEVEL = 0.4614
LEVEL_MOMENTUM = 0.02
MAX_START_GAIN = 64.0


def check_start(model: str, start: object, starts: tuple[str, ...] = STARTS) -> None:
    """Raise :class:`~expokit.models.base.ModelError` naming ``model`` unless ``start`` is
    one of ``starts`` (:data:`STARTS` or :data:`RATIO_STARTS`)."""
    if start not in starts:
        raise ModelError(f"{model}: start must be one of {', '.join(starts)}, got {start!r}")


def luma(image: torch.Tensor) -> torch.Tensor:
    """Rec. 709 luma ``(B, 1, H, W)`` of RGB ``(B, 3, H, W)`` (encoded or linear)."""
    weights = torch.tensor(LUMA_RGB, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image * weights).sum(1, keepdim=True)


def mean_luma(image: torch.Tensor) -> torch.Tensor:
    """Mean Rec. 709 luma ``(B, 1, 1, 1)`` of encoded RGB ``(B, 3, H, W)`` (the fair
    baselines' measure, :func:`expokit.models.reference.gain_to_level`)."""
    return luma(image).mean(dim=(2, 3), keepdim=True)


def fold_target_level(model: torch.nn.Module, target: torch.Tensor) -> None:
    """Fold the mean luma of training targets ``(B, 3, H, W)`` into ``model``'s running
    level (the buffers of :func:`expokit.models.base.register_running_level`; the first
    batches average, then :data:`LEVEL_MOMENTUM`)."""
    fold_running_level(
        model.get_buffer("target_level"), model.get_buffer("target_level_batches"),
        mean_luma(target).mean(), LEVEL_MOMENTUM,
    )  # fmt: skip


def gain_to_level(image: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """``clip(image * k)``, ``k`` per image so its mean luma becomes ``level`` (a scalar;
    ``k`` kept within ``[1 / 64, 64]``; no gradient through ``k``)."""
    with torch.no_grad():
        gain = (level / mean_luma(image).clamp_min(1e-4)).clamp(1 / MAX_START_GAIN, MAX_START_GAIN)
    return (image * gain).clamp(0, 1)


def linear_gain_to_level(image: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """``encode(k * decode(image))`` (sRGB, clipped), ``k`` per image in ``[1 / 64, 64]``
    solved by bisection so the mean luma becomes ``level`` (a scalar): how a longer or
    shorter exposure changes an image, unlike a gain on encoded values; no gradient
    through ``k``."""
    with torch.no_grad():
        linear = srgb_decode(image)
        low = torch.full_like(image[:, :1, :1, :1], -math.log(MAX_START_GAIN))
        high = -low
        for _ in range(_GAIN_STEPS):
            middle = (low + high) / 2
            darker = mean_luma(srgb_encode(linear * middle.exp())) < level
            low, high = torch.where(darker, middle, low), torch.where(darker, high, middle)
        gain = ((low + high) / 2).exp()
    return srgb_encode(linear * gain)


def log_exposure_ratio(
    image: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``log(target / image)`` exposure ratio ``(B,)`` of encoded RGB pairs ``(B, 3, H, W)``,
    on sRGB-decoded light: summed linear luma over the pixels where neither image is clipped
    (every channel of both in ``[FIT_LOW, FIT_HIGH]``) and ``mask`` ``(B, 1, H, W)`` is
    nonzero; NaN where no pixel is left. The torch twin of
    :func:`expokit.models.reference.exposure_ratio` (a test holds them equal)."""
    with torch.no_grad():
        valid = ((image >= FIT_LOW) & (image <= FIT_HIGH)).all(1, keepdim=True)
        valid &= ((target >= FIT_LOW) & (target <= FIT_HIGH)).all(1, keepdim=True)
        if mask is not None:
            valid &= mask > 0.5
        mine = (luma(srgb_decode(image)) * valid).sum(dim=(1, 2, 3))
        theirs = (luma(srgb_decode(target)) * valid).sum(dim=(1, 2, 3))
        ratio = torch.log(theirs.clamp_min(1e-12) / mine.clamp_min(1e-12))
        return torch.where(valid.flatten(1).any(1) & (mine > 0), ratio, torch.nan)


def exposure_change(image: torch.Tensor, log_ratio: torch.Tensor) -> torch.Tensor:
    """``encode(clip(exp(log_ratio) * decode(image)))`` (sRGB; ``log_ratio`` a scalar): the
    torch twin of :func:`expokit.models.reference.exposure_change`."""
    return srgb_encode(srgb_decode(image) * log_ratio.to(image.dtype).exp())  # encode clips


def start_image(start: str, image: torch.Tensor, level: torch.Tensor | None) -> torch.Tensor:
    """``image`` ``(B, 3, H, W)`` brought to ``level`` by the start ``start`` of
    :data:`STARTS` (``"input"``: ``image`` itself, ``level`` unused)."""
    if start == "input" or level is None:
        return image
    level = level.to(image.dtype)
    if start == "gain":
        return gain_to_level(image, level)
    return linear_gain_to_level(image, level)
