"""A learnt camera response curve: encoded values <-> relative scene light.

A camera's JPEG is not sRGB: its tone curve has a shoulder that rolls highlights off, and a
clipped pixel (1.0) stands for light that may be several times brighter than the curve's
last unclipped value. A longer or shorter exposure multiplies scene light, so the exposure
change that maps one frame of a bracket onto another is ``encode(k * decode(x))`` with the
camera's own curve, not sRGB's. :class:`CameraResponse` learns that curve as a monotonic
piecewise-linear inverse response on ``knots + 1`` evenly spaced encoded values, initialised
to the sRGB decoding (IEC 61966-2-1), as in the radiometric self-calibration of Mitsunaga
and Nayar (CVPR 1999) or Debevec and Malik's response recovery (SIGGRAPH 1997), learnt here
end to end from the pairs a model trains on. Its last value (the light a clipped pixel stands
for) is free to exceed 1.

The piecewise-linear pair is exact: :meth:`CameraResponse.encode` is the inverse of
:meth:`CameraResponse.decode` on ``[0, light_at_white]``, and both are differentiable in the
input and in the curve's values.

References
----------
* P. E. Debevec and J. Malik, "Recovering high dynamic range radiance maps from
  photographs", SIGGRAPH 1997.
* T. Mitsunaga and S. K. Nayar, "Radiometric self calibration", CVPR 1999.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - the PyTorch convention
from torch import nn

from expokit.core.transfer import (
    SRGB_A,
    SRGB_ENCODED_BREAK,
    SRGB_GAMMA,
    SRGB_LINEAR_BREAK,
    SRGB_SLOPE,
)
from expokit.models.base import check_int

#: Smallest step between two knots' light values (keeps the inverse defined).
MIN_STEP = 1e-5


def interpolate(values: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear ``y(values)`` through knots ``(xs, ys)`` (1-D, ``xs`` increasing),
    any shape of ``values``; inputs beyond the knots are clamped to them. Differentiable in
    ``values``, ``xs`` and ``ys``."""
    # tensor bounds: no host sync on a GPU
    inside = torch.minimum(torch.maximum(values, xs[0].detach()), xs[-1].detach())
    index = torch.searchsorted(xs.detach().contiguous(), inside.detach().contiguous())
    index = index.clamp(1, xs.shape[0] - 1)
    x0, x1, y0, y1 = xs[index - 1], xs[index], ys[index - 1], ys[index]
    fraction = (inside - x0) / (x1 - x0).clamp_min(MIN_STEP)
    return y0 + fraction * (y1 - y0)


def srgb_decode(encoded: torch.Tensor) -> torch.Tensor:
    """sRGB encoded ``[0, 1]`` -> linear light (IEC 61966-2-1), any shape, differentiable."""
    v = encoded.clamp(0, 1)
    high = ((v + SRGB_A) / (1 + SRGB_A)).clamp_min(1e-12) ** SRGB_GAMMA
    return torch.where(v <= SRGB_ENCODED_BREAK, v / SRGB_SLOPE, high)


def srgb_encode(linear: torch.Tensor) -> torch.Tensor:
    """Linear light -> sRGB encoded ``[0, 1]`` (clipped first), any shape, differentiable."""
    x = linear.clamp(0, 1)
    high = (1 + SRGB_A) * x.clamp_min(1e-12) ** (1 / SRGB_GAMMA) - SRGB_A
    return torch.where(x <= SRGB_LINEAR_BREAK, x * SRGB_SLOPE, high)


class CameraResponse(nn.Module):
    """Monotonic learnt response: :meth:`decode` encoded ``[0, 1]`` -> relative light
    ``[0, light_at_white]``, :meth:`encode` back (light above ``light_at_white`` clips to 1).

    Parameters
    ----------
    knots
        Segments of the piecewise-linear inverse response (``knots + 1`` values, the first
        fixed at 0); 16 by default.

    The ``knots`` step sizes are ``softplus`` of the parameters, so the curve stays strictly
    increasing whatever the optimiser does.
    """

    def __init__(self, knots: int = 16) -> None:
        super().__init__()
        check_int("camera response", "knots", knots, 2)
        self.register_buffer("encoded", torch.linspace(0, 1, knots + 1), persistent=False)
        steps = srgb_decode(self.encoded).diff().clamp_min(2 * MIN_STEP) - MIN_STEP
        # softplus^-1(steps), so the curve starts as the sRGB decoding (see light())
        self.step_logits = nn.Parameter(steps + torch.log(-torch.expm1(-steps)))

    encoded: torch.Tensor

    def light(self) -> torch.Tensor:
        """The light value ``(knots + 1,)`` of each knot (0 first, increasing)."""
        steps = F.softplus(self.step_logits) + MIN_STEP
        return torch.cat([steps.new_zeros(1), steps.cumsum(0)])

    @property
    def light_at_white(self) -> float:
        """The light a clipped pixel (1.0) stands for, relative to sRGB's white (1.0)."""
        return float(self.light()[-1].detach())

    def decode(self, encoded: torch.Tensor) -> torch.Tensor:
        """Encoded values in ``[0, 1]`` (any shape) -> relative light."""
        return interpolate(encoded, self.encoded.to(encoded.dtype), self.light().to(encoded.dtype))

    def encode(self, light: torch.Tensor) -> torch.Tensor:
        """Relative light (any shape, >= 0) -> encoded ``[0, 1]``; clips above
        :attr:`light_at_white`."""
        return interpolate(light, self.light().to(light.dtype), self.encoded.to(light.dtype))

    def expose(self, encoded: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """``encode(gain * decode(encoded))``: the frame at ``gain`` times the exposure;
        ``gain`` broadcasts against ``encoded`` (e.g. ``(B, 1, 1, 1)`` for ``(B, 3, H, W)``)."""
        return self.encode(self.decode(encoded) * gain)
