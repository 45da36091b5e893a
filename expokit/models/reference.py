"""Reference methods: the floor and ceiling every baseline table shows next to the models.

All functions are numpy, functional and deterministic. Images are ``float`` arrays
``(H, W, 3)`` in ``[0, 1]``, **RGB**, sRGB-encoded (the files' own values, as the metrics
see them); masks are boolean ``(H, W)``, True where the pair is valid (statistics use only
those pixels; every pixel is corrected). Results are ``float64`` ``(H, W, 3)`` in ``[0, 1]``.

* :func:`identity`: the input unchanged (the "do nothing" floor).
* :func:`gain_to_level`: one global gain that gives the input a fixed mean luminance: mid-grey
  (:data:`MID_GREY`, the sRGB encoding of 18 % grey) or the mean target luminance of the
  *training* split (:func:`train_level_method`). They never look at the pair's reference or
  target, so they are fair whatever the reference is: the baselines a model must beat.
* :func:`exposure_change`: one gain on sRGB-decoded light, as a longer or shorter exposure
  is; with the exposure ratio :func:`exposure_ratio` measured on the *training* split's pairs
  (:func:`train_ratio_method`) it is the fair baseline of a rig whose two cameras differ by
  a fixed exposure: one learned number, no network.
* :func:`gain_to_reference`: one global gain that gives the input the reference's mean
  luminance (Rec. 709 weights on the encoded values), clipped to ``[0, 1]``.
* :func:`histogram_match`: per-channel CDF matching of the input to the reference.
* :func:`oracle_gain_gamma`: ``clip(a * x ** g)`` with ``a, g`` fitted to the **target**
  by least squares: it *peeks* at the answer and is an upper bound for a global
  gain-and-gamma curve, never a method. It is labelled "peeking" wherever it is shown.

What "the reference" is (chosen by ``expokit eval --reference``): ``same`` uses the pair's
own target image (only its exposure level matters to these methods: datasets without a
separate reference exposure); ``other-scene`` uses the target of the next scene in sorted
order (cyclic), the SICE protocol of the UEC paper (the middle exposure of another scene).

Peeking: a method *peeks* when it sees the scored target. The oracle always does
(:attr:`ReferenceMethod.peeking`); a method that uses the reference
(:attr:`ReferenceMethod.uses_reference`: gain and histogram match to the reference) peeks
under ``same``, where the reference *is* the target, and not under ``other-scene``
(:meth:`ReferenceMethod.peeks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from expokit.core.errors import ExpokitError
from expokit.core.transfer import LUMA_RGB, srgb_decode, srgb_encode

F64 = npt.NDArray[np.float64]
#: Mean encoded luminance of "mid-grey": the sRGB encoding of 18 % linear reflectance.
MID_GREY = 0.4614
#: Pixels at or beyond these encoded levels are left out of the oracle fit (clipped).
FIT_LOW, FIT_HIGH = 1.0 / 255.0, 254.0 / 255.0
#: Exposure ratios beyond ``[1 / MAX_RATIO, MAX_RATIO]`` (12 stops) are refused as no
#: exposure change (an all-black or all-clipped image).
MAX_RATIO = 4096.0


class ReferenceMethodError(ExpokitError):
    """A reference method was given images it cannot use (shape, NaN, empty mask)."""


def _image(array: npt.ArrayLike, name: str) -> F64:
    image = np.asarray(array, dtype=np.float64)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ReferenceMethodError(f"{name}: expected an (H, W, 3) RGB image, got {image.shape}")
    if not np.isfinite(image).all():
        raise ReferenceMethodError(f"{name}: holds NaN or infinite values")
    return image


def _mask(mask: npt.ArrayLike | None, shape: tuple[int, ...]) -> npt.NDArray[np.bool_]:
    if mask is None:
        return np.ones(shape[:2], dtype=bool)
    m = np.asarray(mask, dtype=bool)
    if m.shape != shape[:2]:
        raise ReferenceMethodError(f"mask of shape {m.shape} does not fit an image of {shape}")
    if not m.any():
        raise ReferenceMethodError("mask holds no valid pixel")
    return m


def mean_luminance(image: npt.ArrayLike, mask: npt.ArrayLike | None = None) -> float:
    """Mean Rec. 709 luminance of the encoded RGB values of ``image`` inside ``mask``."""
    array = _image(image, "image")
    return float((array[_mask(mask, array.shape)] @ LUMA_RGB).mean())


def identity(image: npt.ArrayLike) -> F64:
    """``image`` ``(H, W, 3)`` unchanged, as float64."""
    return _image(image, "input").copy()


def gain_to_reference(
    image: npt.ArrayLike,
    reference: npt.ArrayLike,
    mask: npt.ArrayLike | None = None,
    reference_mask: npt.ArrayLike | None = None,
) -> F64:
    """``clip(image * k)`` with ``k`` = mean luminance of ``reference`` / that of ``image``.

    The means are taken on the encoded values (inside the masks); an all-black input
    (mean 0) is returned unchanged.
    """
    x = _image(image, "input")
    ref = _image(reference, "reference")
    mine = float((x[_mask(mask, x.shape)] @ LUMA_RGB).mean())
    theirs = float((ref[_mask(reference_mask, ref.shape)] @ LUMA_RGB).mean())
    if mine <= 0:
        return x.copy()
    return np.clip(x * (theirs / mine), 0.0, 1.0)


def gain_to_level(image: npt.ArrayLike, level: float, mask: npt.ArrayLike | None = None) -> F64:
    """``clip(image * k)`` with ``k`` = ``level`` / mean luminance of ``image``.

    ``level`` is a mean encoded Rec. 709 luminance in ``(0, 1]`` fixed before scoring (never
    taken from the pair's target); the input's mean is taken inside ``mask``. An all-black
    input (mean 0) is returned unchanged.
    """
    if not (math.isfinite(level) and 0 < level <= 1):
        raise ReferenceMethodError(f"gain_to_level: level {level!r} is not in (0, 1]")
    x = _image(image, "input")
    mine = float((x[_mask(mask, x.shape)] @ LUMA_RGB).mean())
    if mine <= 0:
        return x.copy()
    return np.clip(x * (level / mine), 0.0, 1.0)


def exposure_ratio(
    image: npt.ArrayLike, target: npt.ArrayLike, mask: npt.ArrayLike | None = None
) -> float:
    """The exposure ratio ``target / image`` of a pair, on sRGB-decoded (linear) light.

    The ratio of the two images' summed linear Rec. 709 luminance over the pixels where
    neither is clipped (every channel of both inside ``[FIT_LOW, FIT_HIGH]``) and ``mask``
    is True: on those pixels an exposure change is one gain. NaN when no pixel is left or
    the ratio is outside ``[1 / MAX_RATIO, MAX_RATIO]``.
    """
    x = _image(image, "input")
    t = _image(target, "target")
    if t.shape != x.shape:
        raise ReferenceMethodError(f"exposure_ratio: target {t.shape} does not fit input {x.shape}")
    valid = _mask(mask, x.shape)
    for array in (x, t):
        valid &= ((array >= FIT_LOW) & (array <= FIT_HIGH)).all(axis=-1)
    if not valid.any():
        return math.nan
    mine = float((srgb_decode(x[valid]) @ LUMA_RGB).sum())
    theirs = float((srgb_decode(t[valid]) @ LUMA_RGB).sum())
    ratio = theirs / mine if mine > 0 else math.nan
    return ratio if 1 / MAX_RATIO <= ratio <= MAX_RATIO else math.nan


def exposure_change(image: npt.ArrayLike, ratio: float) -> F64:
    """``encode(clip(ratio * decode(image)))`` (sRGB): ``image`` exposed ``ratio`` times
    longer, clipped at white as a sensor is."""
    if not (math.isfinite(ratio) and 1 / MAX_RATIO <= ratio <= MAX_RATIO):
        raise ReferenceMethodError(
            f"exposure_change: ratio {ratio!r} is not in [1/{MAX_RATIO:g}, {MAX_RATIO:g}]"
        )
    x = _image(image, "input")
    return srgb_encode(srgb_decode(x) * ratio)  # srgb_encode clips at white


def _match_channel(
    values: F64, valid: npt.NDArray[np.bool_], reference: F64
) -> F64:  # fmt: skip
    """Map ``values`` so their distribution (inside ``valid``) becomes ``reference``'s."""
    src, inverse, counts = np.unique(values[valid], return_inverse=True, return_counts=True)
    src_q = (np.cumsum(counts) - 0.5 * counts) / valid.sum()
    ref_sorted = np.sort(reference)
    ref_q = (np.arange(ref_sorted.size) + 0.5) / ref_sorted.size
    mapped = np.interp(src_q, ref_q, ref_sorted)
    out = np.interp(values, src, mapped)  # pixels outside the mask: same monotone map
    out[valid] = mapped[inverse]
    return out


def histogram_match(
    image: npt.ArrayLike,
    reference: npt.ArrayLike,
    mask: npt.ArrayLike | None = None,
    reference_mask: npt.ArrayLike | None = None,
) -> F64:
    """Per-channel CDF matching of ``image`` to ``reference`` (sizes may differ).

    Each channel's values are replaced by the reference quantile at their mid-rank in the
    input's distribution (inside ``mask``), so a monotone remap of the reference is undone
    up to quantisation.
    """
    x = _image(image, "input")
    ref = _image(reference, "reference")
    valid = _mask(mask, x.shape)
    ref_valid = _mask(reference_mask, ref.shape)
    out = np.empty_like(x)
    for c in range(3):
        out[..., c] = _match_channel(x[..., c], valid, ref[..., c][ref_valid])
    return np.clip(out, 0.0, 1.0)


@dataclass(frozen=True)
class GainGamma:
    """A global curve ``clip(gain * x ** gamma, 0, 1)`` on encoded values."""

    gain: float
    gamma: float

    def apply(self, image: npt.ArrayLike) -> F64:
        x = np.clip(_image(image, "input"), 0.0, 1.0)
        return np.clip(self.gain * x**self.gamma, 0.0, 1.0)


def fit_gain_gamma(
    image: npt.ArrayLike,
    target: npt.ArrayLike,
    mask: npt.ArrayLike | None = None,
    *,
    refine: bool = True,
) -> GainGamma:
    """Fit ``target ~ clip(a * image ** g)`` over every channel of the valid pixels.

    First a least-squares line in log space (``log t = log a + g log x``) on pixels that
    are unclipped in both images; then (``refine``) Gauss-Newton steps on the squared error
    of the clipped curve itself over all valid pixels, which is what PSNR measures. Falls
    back to ``a = 1, g = 1`` when no pixel is usable.
    """
    x = _image(image, "input")
    t = _image(target, "target")
    if x.shape != t.shape:
        raise ReferenceMethodError(f"input {x.shape} and target {t.shape} differ in shape")
    valid = _mask(mask, x.shape)
    xs, ts = x[valid].ravel(), t[valid].ravel()
    usable = (xs > FIT_LOW) & (xs < FIT_HIGH) & (ts > FIT_LOW) & (ts < FIT_HIGH)
    if usable.sum() < 2:
        return GainGamma(1.0, 1.0)
    lx, lt = np.log(xs[usable]), np.log(ts[usable])
    design = np.stack([np.ones_like(lx), lx], axis=1)
    (log_a, g), *_ = np.linalg.lstsq(design, lt, rcond=None)
    log_a, g = float(log_a), float(np.clip(g, 0.05, 20.0))
    if refine:
        log_a, g = _refine(xs, ts, log_a, g)
    return GainGamma(math.exp(log_a), g)


def _refine(xs: F64, ts: F64, log_a: float, g: float, steps: int = 20) -> tuple[float, float]:
    """Gauss-Newton (with step halving) on ``sum (clip(exp(log_a) x^g) - t)^2``."""
    lx = np.log(np.maximum(xs, 1e-6))

    def cost(la: float, gg: float) -> float:
        return float(((np.clip(np.exp(la + gg * lx), 0, 1) - ts) ** 2).sum())

    best = cost(log_a, g)
    for _ in range(steps):
        y = np.exp(log_a + g * lx)
        inside = y < 1.0  # the clip's derivative is 0 above 1
        r = (np.minimum(y, 1.0) - ts)[inside]
        jac = np.stack([y[inside], y[inside] * lx[inside]], axis=1)
        if r.size < 2:
            break
        step, *_ = np.linalg.lstsq(jac, -r, rcond=None)
        scale = 1.0
        while scale > 1e-3:
            la, gg = log_a + scale * float(step[0]), float(np.clip(g + scale * step[1], 0.05, 20))
            new = cost(la, gg)
            if new < best:
                break
            scale /= 2
        else:
            break
        improvement = best - new
        log_a, g, best = la, gg, new
        if improvement < 1e-9 * max(best, 1e-12):
            break
    return log_a, g


def oracle_gain_gamma(
    image: npt.ArrayLike, target: npt.ArrayLike, mask: npt.ArrayLike | None = None
) -> F64:
    """PEEKING: ``image`` through the gain-gamma curve fitted to ``target`` (an upper bound
    for global curves, not a method; see :func:`fit_gain_gamma`)."""
    return fit_gain_gamma(image, target, mask).apply(image)


@dataclass(frozen=True)
class ReferenceMethod:
    """One reference method as evaluation runs it: ``run(image, reference, target, mask)``."""

    name: str
    label: str
    #: Whether the method always looks at the target (the oracle; labelled "peeking").
    peeking: bool
    run: Callable[[F64, F64, F64, npt.NDArray[np.bool_] | None], F64]
    #: Whether it uses the reference image (so it peeks when the reference is the target).
    uses_reference: bool = False

    def peeks(self, reference_mode: str) -> bool:
        """Whether the method sees the scored target under ``reference_mode``
        (``same``: the reference is the target; ``other-scene``: another scene's target)."""
        return self.peeking or (self.uses_reference and reference_mode == "same")

    def peeks_why(self, reference_mode: str) -> str | None:
        """Why the method sees the target under ``reference_mode`` (None: it does not)."""
        if self.peeking:
            return "fitted to the target"
        if self.peeks(reference_mode):
            return "its reference is the target (--reference same)"
        return None


def train_level_method(level: float, split: str) -> ReferenceMethod:
    """The fair baseline "global gain to the mean target luminance of split ``split``":
    :func:`gain_to_level` with ``level`` measured on target images of that (training)
    split, never on the scored one (see :func:`expokit.models.evaluate.train_level`)."""
    return ReferenceMethod(
        "gain_to_train_mean",
        f"global gain to {split}-split mean ({level:.3f})",
        False,
        lambda x, r, t, m: gain_to_level(x, level, m),
    )


def train_ratio_method(ratio: float, split: str) -> ReferenceMethod:
    """The fair baseline "the exposure ratio of split ``split``": :func:`exposure_change`
    by ``ratio``, the geometric mean of :func:`exposure_ratio` over pairs of that (training)
    split, never of the scored one (see :func:`expokit.models.evaluate.train_ratio`)."""
    return ReferenceMethod(
        "exposure_ratio_of_train",
        f"exposure change by the {split}-split ratio (x{ratio:.3f} on linear light)",
        False,
        lambda x, r, t, m: exposure_change(x, ratio),
    )


#: name -> method, in table order; ``run(image, reference, target, mask)``.
REFERENCE_METHODS: dict[str, ReferenceMethod] = {
    m.name: m
    for m in (
        ReferenceMethod("identity", "identity", False, lambda x, r, t, m: identity(x)),
        ReferenceMethod(
            "gain_to_mid_grey",
            f"global gain to mid-grey ({MID_GREY:.3f})",
            False,
            lambda x, r, t, m: gain_to_level(x, MID_GREY, m),
        ),
        ReferenceMethod(
            "gain_to_reference",
            "global gain to reference",
            False,
            lambda x, r, t, m: gain_to_reference(x, r, m),
            uses_reference=True,
        ),
        ReferenceMethod(
            "histogram_match",
            "histogram match to reference",
            False,
            lambda x, r, t, m: histogram_match(x, r, m),
            uses_reference=True,
        ),
        ReferenceMethod(
            "oracle_gain_gamma",
            "oracle gain+gamma fitted to target (peeking)",
            True,
            lambda x, r, t, m: oracle_gain_gamma(x, t, m),
        ),
    )
}
