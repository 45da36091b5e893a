"""Differentiable, masked training losses shared by the baselines (functional).

Conventions (see :mod:`expokit.models.base`): images ``(B, C, H, W)`` float in ``[0, 1]``;
``mask`` ``(B, 1, H, W)`` float in ``{0, 1}`` (1 where the pair is valid) or ``None`` (every
pixel counts). Every function returns a scalar tensor (the mean over the batch) unless its
docstring says otherwise; a mask with no valid pixel gives 0, never NaN, so one empty crop
cannot poison a training step.

* Reconstruction: :func:`masked_l1`, :func:`masked_mse`, :func:`ssim` / :func:`ssim_loss`
  (the conventions of ``docs/metrics.md``: 11x11 Gaussian window, sigma 1.5, K1 = 0.01,
  K2 = 0.03, population statistics, mean over pixels whose whole window lies inside the image
  and the mask), :func:`colour_angle` (RECNet's per-pixel cosine colour loss).
* No-reference (Zero-DCE, Guo et al. CVPR 2020; Zero-DCE++, Li et al. TPAMI 2021):
  :func:`spatial_consistency`, :func:`exposure_control`, :func:`colour_constancy`,
  :func:`illumination_smoothness`; and a plain :func:`total_variation`.

References
----------
Z. Wang et al., "Image quality assessment: from error visibility to structural similarity",
IEEE TIP 2004. C. Guo et al., "Zero-Reference Deep Curve Estimation for Low-Light Image
Enhancement", CVPR 2020. C. Li et al., "Learning to Enhance Low-Light Image via
Zero-Reference Deep Curve Estimation", TPAMI 2021.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812 - the PyTorch convention

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _weights(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """``mask`` as ``(B, 1, H, W)`` weights (ones when None)."""
    if mask is None:
        return torch.ones_like(like[:, :1])
    return mask.to(like.dtype)


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum(values * weights) / sum(weights)`` over everything, weights broadcast over
    channels; 0 when no weight is positive."""
    expanded = weights.expand_as(values)
    return (values * expanded).sum() / expanded.sum().clamp_min(1e-8)


def masked_l1(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean absolute error over valid pixels and all channels.

    Args:
        pred, target: ``(B, C, H, W)`` float.
        mask: ``(B, 1, H, W)`` float in ``{0, 1}`` or None.

    Returns:
        scalar tensor.
    """
    return _weighted_mean((pred - target).abs(), _weights(mask, pred))


def masked_mse(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error over valid pixels and all channels (shapes as :func:`masked_l1`)."""
    return _weighted_mean((pred - target) ** 2, _weights(mask, pred))


def gaussian_window(
    size: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Normalised 1-D Gaussian ``(size,)`` (OpenCV's ``getGaussianKernel(size, sigma)``)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _blur_valid(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter without padding: ``(B, C, H, W)`` -> ``(B, C, H-k+1, W-k+1)``."""
    c = x.shape[1]
    k = window.numel()
    x = F.conv2d(x, window.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, window.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-pixel SSIM of the pixels whose whole 11x11 window lies inside the image.

    Args:
        x, y: ``(B, C, H, W)`` float, ``H, W >= 11``.
        data_range: span of valid values (1.0 for ``[0, 1]`` images).

    Returns:
        ``(B, C, H - 10, W - 10)``: SSIM at pixels ``[5:-5, 5:-5]``.
    """
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"images of {tuple(x.shape[-2:])} are too small for an 11px window")
    window = gaussian_window(dtype=x.dtype, device=x.device)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    stats = _blur_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1), window)
    mu_x, mu_y, xx, yy, xy = stats.chunk(5, dim=1)
    var_x = xx - mu_x**2
    var_y = yy - mu_y**2
    cov = xy - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )


def _eroded_mask(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H-10, W-10)``: 1 where the whole window around the pixel is valid."""
    b, _, h, w = like.shape
    pad = SSIM_WINDOW // 2
    if mask is None:
        return like.new_ones(b, 1, h - 2 * pad, w - 2 * pad)
    return -F.max_pool2d(-mask.to(like.dtype), SSIM_WINDOW, stride=1)


def ssim(
    x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None, data_range: float = 1.0
) -> torch.Tensor:
    """Per-image mean SSIM, as ``curation.metrics.ssim`` computes it (``docs/metrics.md``).

    Args:
        x, y: ``(B, C, H, W)`` float, ``H, W >= 11``.
        mask: ``(B, 1, H, W)`` in ``{0, 1}`` or None; a pixel counts when its whole window
            lies inside the mask.
        data_range: span of valid values.

    Returns:
        ``(B,)``: mean over counted pixels and channels; NaN for an image with no
        counted pixel (as the metric).
    """
    values = ssim_map(x, y, data_range)
    inside = _eroded_mask(mask, x).expand_as(values)
    count = inside.sum(dim=(1, 2, 3))
    total = (values * inside).sum(dim=(1, 2, 3))
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, math.nan))


def ssim_loss(
    x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None, data_range: float = 1.0
) -> torch.Tensor:
    """``1 - SSIM`` over all counted pixels of the batch (scalar; 0 when none counts).

    Args:
        x, y: ``(B, C, H, W)`` float, ``H, W >= 11``.
        mask: ``(B, 1, H, W)`` in ``{0, 1}`` or None.
    """
    values = ssim_map(x, y, data_range)
    inside = _eroded_mask(mask, x)
    if float(inside.sum()) <= 0:
        return values.sum() * 0
    return 1 - _weighted_mean(values, inside)


def colour_angle(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """RECNet's colour loss ``(1 - cos(pred, target)) / 2``, per pixel over RGB, masked mean.

    Args:
        pred, target: ``(B, 3, H, W)`` float.
        mask: ``(B, 1, H, W)`` or None.
    """
    cos = F.cosine_similarity(pred, target, dim=1, eps=1e-8).unsqueeze(1)
    return _weighted_mean((1 - cos) / 2, _weights(mask, pred))


# -- Zero-DCE's no-reference losses ---------------------------------------------------------
def _pool(x: torch.Tensor, weights: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked ``size x size`` patch means of ``x`` ``(B, C, H, W)`` and the patches' valid
    fraction ``(B, 1, H // size, W // size)``."""
    fraction = F.avg_pool2d(weights, size)
    means = F.avg_pool2d(x * weights, size) / fraction.clamp_min(1e-6)
    return means, fraction


def spatial_consistency(
    enhanced: torch.Tensor, original: torch.Tensor, mask: torch.Tensor | None = None, patch: int = 4
) -> torch.Tensor:
    """Zero-DCE's L_spa: the differences between each ``patch x patch`` region's mean grey
    level and its four neighbours' should stay as in ``original``.

    As Zero-DCE, a missing neighbour at the border counts as 0. With a mask, regions are
    weighted by their valid fraction.

    Args:
        enhanced, original: ``(B, 3, H, W)`` float in ``[0, 1]``, ``H, W >= patch``.
        mask: ``(B, 1, H, W)`` or None.
    """
    weights = _weights(mask, enhanced)
    e, fraction = _pool(enhanced.mean(dim=1, keepdim=True), weights, patch)
    o, _ = _pool(original.mean(dim=1, keepdim=True), weights, patch)

    def diffs(x: torch.Tensor) -> list[torch.Tensor]:
        p = F.pad(x, (1, 1, 1, 1))
        centre = p[..., 1:-1, 1:-1]
        return [
            centre - p[..., 1:-1, :-2],  # left
            centre - p[..., 1:-1, 2:],  # right
            centre - p[..., :-2, 1:-1],  # up
            centre - p[..., 2:, 1:-1],  # down
        ]

    energy = sum((a - b) ** 2 for a, b in zip(diffs(o), diffs(e), strict=True))
    assert isinstance(energy, torch.Tensor)
    return _weighted_mean(energy, fraction)


def exposure_control(
    enhanced: torch.Tensor, level: float = 0.6, mask: torch.Tensor | None = None, patch: int = 16
) -> torch.Tensor:
    """Zero-DCE's L_exp: mean squared distance of each ``patch x patch`` region's mean grey
    level from the well-exposed ``level`` (0.6).

    Args:
        enhanced: ``(B, 3, H, W)`` float in ``[0, 1]``, ``H, W >= patch``.
        mask: ``(B, 1, H, W)`` or None (regions weighted by their valid fraction).
    """
    means, fraction = _pool(enhanced.mean(dim=1, keepdim=True), _weights(mask, enhanced), patch)
    return _weighted_mean((means - level) ** 2, fraction)


def colour_constancy(enhanced: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Zero-DCE's L_col (grey-world): ``sqrt(D_rg^2 + D_rb^2 + D_gb^2)`` with ``D_pq`` the
    squared difference of the image's mean ``p`` and ``q`` channels; mean over the batch.

    Args:
        enhanced: ``(B, 3, H, W)`` float.
        mask: ``(B, 1, H, W)`` or None (channel means over valid pixels).
    """
    weights = _weights(mask, enhanced)
    means = (enhanced * weights).sum(dim=(2, 3)) / weights.sum(dim=(2, 3)).clamp_min(1e-8)
    r, g, b = means.unbind(dim=1)
    d_rg, d_rb, d_gb = (r - g) ** 2, (r - b) ** 2, (g - b) ** 2
    # + eps: sqrt has an infinite gradient at 0 (a grey image).
    return torch.sqrt(d_rg**2 + d_rb**2 + d_gb**2 + 1e-12).mean()


def illumination_smoothness(curve: torch.Tensor) -> torch.Tensor:
    """Zero-DCE's L_tvA on a curve-parameter map: ``2 * (sum dy^2 / ((H-1) W) +
    sum dx^2 / (H (W-1))) / B`` (squared neighbour differences summed over channels).

    Args:
        curve: ``(B, C, H, W)`` float, ``H, W >= 2``.
    """
    b, _, h, w = curve.shape
    dy = ((curve[:, :, 1:] - curve[:, :, :-1]) ** 2).sum() / max((h - 1) * w, 1)
    dx = ((curve[..., 1:] - curve[..., :-1]) ** 2).sum() / max(h * (w - 1), 1)
    return 2 * (dy + dx) / b


def total_variation(image: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Anisotropic L1 total variation: mean absolute neighbour difference (both
    directions, all channels); with a mask only pairs of valid pixels count.

    Args:
        image: ``(B, C, H, W)`` float.
        mask: ``(B, 1, H, W)`` or None.
    """
    weights = _weights(mask, image)
    dy = (image[:, :, 1:] - image[:, :, :-1]).abs()
    dx = (image[..., 1:] - image[..., :-1]).abs()
    wy = weights[:, :, 1:] * weights[:, :, :-1]
    wx = weights[..., 1:] * weights[..., :-1]
    return _weighted_mean(dy, wy) + _weighted_mean(dx, wx)
