"""Image quality metrics: one implementation, conventions written down (``docs/metrics.md``).

Conventions
-----------
* Inputs are images of the same shape ``(H, W)`` or ``(H, W, C)``; any dtype. ``data_range``
  is the span of valid values (255 for uint8, 65535 for 16-bit, 1.0 for float in [0, 1]).
* Colour: computed on the channels given (RGB or BGR alike), averaged over channels; no
  conversion to Y. No border crop (``crop_border=0``) unless asked.
* SSIM: Wang et al. (2004) with an 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03,
  population covariance: the MATLAB ``ssim`` / scikit-image ``gaussian_weights=True``
  convention. The mean is taken over pixels whose whole window lies inside the image (and
  inside ``mask`` when given).
* PSNR: ``10 log10(data_range**2 / MSE)``; identical images give ``inf``.
* ``mask``: boolean ``(H, W)``; only pixels where it is True count (the valid region of an
  aligned pair).

References
----------
Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment: from error
visibility to structural similarity", IEEE TIP 13(4), 2004.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _as_float(image: npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.asarray(image, dtype=np.float64)
    return array[..., None] if array.ndim == 2 else array


def _check(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], mask: npt.ArrayLike | None
           ) -> npt.NDArray[np.bool_] | None:  # fmt: skip
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if mask is None:
        return None
    m = np.asarray(mask, dtype=bool)
    if m.shape != a.shape[:2]:
        raise ValueError(f"mask shape {m.shape} does not match image {a.shape[:2]}")
    return m


def crop(image: npt.ArrayLike, border: int) -> npt.NDArray[np.float64]:
    """Remove ``border`` pixels from every side (BasicSR's ``crop_border``)."""
    array = _as_float(image)
    return array[border:-border, border:-border] if border > 0 else array


def psnr(a: npt.ArrayLike, b: npt.ArrayLike, data_range: float = 255.0,
         mask: npt.ArrayLike | None = None) -> float:  # fmt: skip
    """Peak signal-to-noise ratio in dB (``inf`` for identical images; NaN inputs give NaN)."""
    x, y = _as_float(a), _as_float(b)
    m = _check(x, y, mask)
    diff = (x - y) ** 2
    mse = float(diff[m].mean()) if m is not None else float(diff.mean())
    if math.isnan(mse):
        return math.nan
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def ssim_map(a: npt.ArrayLike, b: npt.ArrayLike, data_range: float = 255.0
             ) -> npt.NDArray[np.float64]:  # fmt: skip
    """Per-pixel SSIM ``(H, W, C)`` (Gaussian 11x11, sigma 1.5); borders are filtered with
    reflection and should be excluded by the caller (see :func:`ssim`)."""
    import cv2

    x, y = _as_float(a), _as_float(b)
    _check(x, y, None)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    out = np.empty_like(x)
    for channel in range(x.shape[2]):
        xc, yc = x[..., channel], y[..., channel]

        def blur(image: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            return np.asarray(cv2.GaussianBlur(image, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA,
                                               borderType=cv2.BORDER_REFLECT))  # fmt: skip

        mu_x, mu_y = blur(xc), blur(yc)
        var_x = blur(xc * xc) - mu_x**2
        var_y = blur(yc * yc) - mu_y**2
        cov = blur(xc * yc) - mu_x * mu_y
        out[..., channel] = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
            (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
        )
    return out


def ssim(a: npt.ArrayLike, b: npt.ArrayLike, data_range: float = 255.0,
         mask: npt.ArrayLike | None = None) -> float:  # fmt: skip
    """Mean SSIM over pixels whose full 11x11 window is inside the image (and the mask)."""
    x, y = _as_float(a), _as_float(b)
    m = _check(x, y, mask)
    pad = SSIM_WINDOW // 2
    if min(x.shape[:2]) <= 2 * pad:
        raise ValueError(f"images of {x.shape[:2]} are too small for an {SSIM_WINDOW}px window")
    values = ssim_map(x, y, data_range)
    inside = np.zeros(x.shape[:2], dtype=bool)
    inside[pad:-pad, pad:-pad] = True
    if m is not None:
        import cv2

        # A pixel counts only when its whole window lies in the valid region.
        kernel = np.ones((SSIM_WINDOW, SSIM_WINDOW), np.uint8)
        inside &= cv2.erode(m.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT,
                            borderValue=0).astype(bool)  # fmt: skip
    if not inside.any():
        return math.nan
    return float(values[inside].mean())
