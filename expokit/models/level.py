"""Level starts: an image brought to a running training-target level before a network
corrects it (``start`` of :mod:`~expokit.models.recnet` and :mod:`~expokit.models.zerodce`).

``"gain"`` is one gain on the encoded values, exactly the fair baseline "global gain to
train-split mean" (:func:`expokit.models.reference.gain_to_level`); ``"linear-gain"`` is
one gain on sRGB-decoded light, as an exposure change is. The level is the running mean
Rec. 709 luma of the training targets (:func:`expokit.models.base.fold_running_level`).
"""

from __future__ import annotations

import math

import torch

from expokit.core.transfer import LUMA_RGB
from expokit.models.base import ModelError
from expokit.models.response import srgb_decode, srgb_encode

#: The starts a model can take (``"input"``: the image itself).
STARTS = ("input", "gain", "linear-gain")
#: Bisection steps of the ``"linear-gain"`` start's gain (log2 range 12 stops: 2^-12 of it).
_GAIN_STEPS = 24
#: The ``"gain"`` start: the level before any target is seen (mean encoded luma of 18 %
#: grey), the running level's momentum after the first batches, the gain's limits.
START_LEVEL = 0.4614
LEVEL_MOMENTUM = 0.02
MAX_START_GAIN = 64.0


def check_start(model: str, start: object) -> None:
    """Raise :class:`~expokit.models.base.ModelError` naming ``model`` unless ``start`` is
    one of :data:`STARTS`."""
    if start not in STARTS:
        raise ModelError(f"{model}: start must be one of {', '.join(STARTS)}, got {start!r}")


def mean_luma(image: torch.Tensor) -> torch.Tensor:
    """Mean Rec. 709 luma ``(B, 1, 1, 1)`` of encoded RGB ``(B, 3, H, W)`` (the fair
    baselines' measure, :func:`expokit.models.reference.gain_to_level`)."""
    weights = torch.tensor(LUMA_RGB, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image * weights).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)


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


def start_image(start: str, image: torch.Tensor, level: torch.Tensor | None) -> torch.Tensor:
    """``image`` ``(B, 3, H, W)`` brought to ``level`` by the start ``start`` of
    :data:`STARTS` (``"input"``: ``image`` itself, ``level`` unused)."""
    if start == "input" or level is None:
        return image
    level = level.to(image.dtype)
    if start == "gain":
        return gain_to_level(image, level)
    return linear_gain_to_level(image, level)
