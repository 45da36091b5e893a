"""Audio synchronization: cross-correlation, coarse drift search, fine windows, drift fit.

Both tracks are mono float audio at ``rate`` Hz (samples) on their own file's timeline.
:func:`audio_offset` runs a *coarse* whole-track correlation (block averaged to
``rate / coarse_factor``, over a grid of candidate clock drifts when the overlap is long
enough) and then a *fine* pass: windows of A correlated at the full rate against B within a
small margin of the coarse lag (parabolic sub-sample interpolation), whose offsets a
straight line fits as ``offset(t_A) = offset_s + drift_ppm * 1e-6 * t_A`` (s, ppm).

Offsets follow the convention of :mod:`expokit.calibration.sync`: ``offset_s = t_B - t_A``.
The correlation helpers (:func:`xcorr`, :func:`lag_range`, :func:`peak_and_confidence`,
:func:`parabolic_peak`) are shared with :mod:`expokit.calibration.sync_brightness`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from expokit.calibration.sync_record import SyncConfig, SyncError, WindowOffset
from expokit.core.video_io import SilentAudioError


@dataclass(frozen=True)
class DriftFit:
    """``offset(t_A) = offset_s + drift_ppm * 1e-6 * t_A`` fitted to window offsets.

    ``estimated`` is False when the overlap is too short (or too few windows are usable):
    then ``drift_ppm`` is 0 and ``offset_s`` is the best window's offset. ``note`` says when
    the drift is less certain than usual (from the whole-track search only, or at the edge
    of the searched range); :func:`synchronize` turns it into a warning.
    """

    offset_s: float
    drift_ppm: float
    estimated: bool
    windows: tuple[WindowOffset, ...]
    residual_rms_s: float = 0.0
    note: str = ""


@dataclass(frozen=True)
class OffsetEstimate:
    """One method's answer.

    Attributes
    ----------
    offset_s
        ``t_B - t_A`` of one event, at ``t_A = 0`` (see the module docstring).
    confidence
        ``1 - next_peak / peak`` of the cross-correlation, in ``[0, 1]``: 0 means another lag
        explains the data as well, 1 means no other lag correlates at all.
    method
        ``"audio"`` or ``"brightness"``.
    peak_correlation
        Normalized correlation coefficient at the peak, in ``[-1, 1]``.
    rate_hz
        Rate of the signals whose peak gave the final offset (audio samples, brightness grid).
    drift
        Drift fit (audio); ``None`` for brightness.
    events_matched, events_in_overlap
        Brightness: distinct events (changes less than 0.25 s apart count once) of the overlap
        that coincide in both clips at ``offset_s``, and the number of distinct events the
        overlap holds (the larger of the two clips' counts: a dense train of flicker in one
        clip lines up with a few events of any other).
    """

    offset_s: float
    confidence: float
    method: str
    peak_correlation: float
    rate_hz: float
    second_peak_ratio: float = 0.0
    drift: DriftFit | None = None
    events_matched: int | None = None
    events_in_overlap: int | None = None


# ----------------------------------------------------------------------------- correlation


def _fast_len(n: int) -> int:
    """Smallest 2**a * 3**b * 5**c >= n (cheap FFT sizes, at most ~1.25x n)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            size = p35
            while size < n:
                size *= 2
            best = min(best, size)
            p35 *= 3
        p5 *= 5
    return best


def xcorr(a: np.ndarray, b: np.ndarray, min_lag: int, max_lag: int) -> np.ndarray:
    """Cross-correlation ``c[k - min_lag] = sum_n a[n] * b[n + k]`` for ``k`` in the lag range.

    Computed with one real FFT product (zero-padded, so there is no circular wrap-around for
    lags in ``[-(len(a) - 1), len(b) - 1]``). A peak at lag ``k`` means ``b`` shows at sample
    ``n + k`` what ``a`` shows at sample ``n``.

    Returns
    -------
    np.ndarray
        Shape ``(max_lag - min_lag + 1,)``, float64.
    """
    size = _fast_len(len(a) + len(b) - 1)
    spectrum = np.conj(np.fft.rfft(a, size)) * np.fft.rfft(b, size)
    full = np.fft.irfft(spectrum, size)
    lags = np.arange(min_lag, max_lag + 1)
    return np.asarray(full[lags % size], dtype=np.float64)


def parabolic_peak(c: np.ndarray, i: int) -> tuple[float, float]:
    """Parabola through ``c[i - 1 : i + 2]``: sub-sample peak position and height.

    Returns
    -------
    tuple
        ``(delta, height)``: the peak is at ``i + delta`` (samples, ``delta`` in
        ``[-0.5, 0.5]``; 0 at either end of ``c`` or when the points are not a maximum).
    """
    if 0 < i < c.size - 1:
        y0, y1, y2 = float(c[i - 1]), float(c[i]), float(c[i + 1])
        denominator = y0 - 2.0 * y1 + y2
        if denominator < 0:
            delta = min(0.5, max(-0.5, 0.5 * (y0 - y2) / denominator))
            return delta, y1 - 0.25 * (y0 - y2) * delta
    return 0.0, float(c[i])


def peak_and_confidence(c: np.ndarray, exclusion: int) -> tuple[int, float, float]:
    """Index of the highest peak, its confidence ``1 - next/peak`` and ``next/peak``.

    The next peak is the highest *local maximum* farther than ``exclusion`` samples from the
    main one (the main lobe's shoulders are not peaks).

    Returns
    -------
    tuple
        ``(index, confidence, ratio)``; ``confidence`` and ``ratio`` in ``[0, 1]``
        (confidence 0 when the peak is not positive).
    """
    i = int(np.argmax(c))
    peak = float(c[i])
    if not math.isfinite(peak) or peak <= 0:
        return i, 0.0, 1.0
    is_max = np.zeros(c.size, dtype=bool)
    if c.size >= 3:
        is_max[1:-1] = (c[1:-1] >= c[:-2]) & (c[1:-1] >= c[2:])
    is_max[0] = c.size > 1 and c[0] >= c[1]
    is_max[-1] = c.size > 1 and c[-1] >= c[-2]
    is_max[max(0, i - exclusion) : i + exclusion + 1] = False
    second = float(c[is_max].max()) if is_max.any() else 0.0
    ratio = max(0.0, second) / peak
    return i, float(min(1.0, max(0.0, 1.0 - ratio))), float(min(1.0, ratio))


def _block_mean(x: np.ndarray, factor: int) -> np.ndarray:
    """Decimate by averaging blocks of ``factor`` samples (a cheap low-pass); mean removed."""
    n = x.size - x.size % factor
    out = x[:n].reshape(-1, factor).mean(axis=1, dtype=np.float64).astype(np.float32)
    out -= out.mean(dtype=np.float64)
    return out


def rms_dbfs(x: np.ndarray) -> float:
    """RMS level of ``x`` in dB full scale (``-inf`` for digital silence)."""
    if x.size == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


# ----------------------------------------------------------------------------- audio


def lag_range(len_a: int, len_b: int, rate: float, config: SyncConfig) -> tuple[int, int]:
    """Admissible lags (samples at ``rate`` Hz) between signals of ``len_a`` and ``len_b``.

    Parameters
    ----------
    len_a, len_b
        Lengths of A and B (samples).
    rate
        Sample rate of both (Hz): converts ``min_overlap_s`` and ``max_offset_s`` (s).

    Returns
    -------
    tuple
        ``(lo, hi)``, inclusive: every lag leaves ``config.min_overlap_s`` of overlap and
        stays within ``config.max_offset_s``.

    Raises
    ------
    SyncError
        The recordings are too short to overlap by ``min_overlap_s``.
    """
    min_overlap = max(1, round(config.min_overlap_s * rate))
    lo, hi = -(len_a - min_overlap), len_b - min_overlap
    if config.max_offset_s is not None:
        limit = math.ceil(config.max_offset_s * rate)
        lo, hi = max(lo, -limit), min(hi, limit)
    if lo > hi:
        raise SyncError(
            f"the recordings are too short to overlap by {config.min_overlap_s:g} s "
            f"({len_a / rate:.2f} s and {len_b / rate:.2f} s)"
        )
    return lo, hi


def coarse_audio_offset(
    a: np.ndarray, b: np.ndarray, rate: int, config: SyncConfig
) -> tuple[float, float, float]:
    """Whole-track correlation at ``rate / coarse_factor``.

    Returns
    -------
    tuple
        ``(offset_s, confidence, second_peak_ratio)``; the offset is good to about one coarse
        sample (0.5 ms at 2 kHz) and is refined by :func:`estimate_drift`.
    """
    factor = config.coarse_factor
    coarse_rate = rate / factor
    ac, bc = _block_mean(a, factor), _block_mean(b, factor)
    lo, hi = lag_range(ac.size, bc.size, coarse_rate, config)
    c = xcorr(ac, bc, lo, hi)
    exclusion = max(2, round(config.peak_exclusion_s * coarse_rate))
    i, confidence, ratio = peak_and_confidence(c, exclusion)
    delta, _ = parabolic_peak(c, i)
    return (lo + i + delta) / coarse_rate, confidence, ratio


@dataclass(frozen=True)
class CoarseDrift:
    """Result of :func:`coarse_drift_search` (offset and drift in B's true coordinates)."""

    offset_s: float
    drift_ppm: float
    confidence: float
    second_peak_ratio: float
    step_ppm: float
    candidates: int


def _stretch(x: np.ndarray, drift_ppm: float) -> np.ndarray:
    """``x`` read on a clock ``1 + drift_ppm * 1e-6`` times faster: ``y[n] = x(n * (1 + d))``
    (linear interpolation). An event at ``t`` in ``x`` is at ``t / (1 + d)`` in ``y``."""
    if drift_ppm == 0.0:
        return x
    scale = 1.0 + drift_ppm * 1e-6
    n = math.floor((x.size - 1) / scale) + 1
    pos = np.arange(n, dtype=np.float64) * scale
    return np.interp(pos, np.arange(x.size, dtype=np.float64), x).astype(x.dtype, copy=False)


def coarse_drift_search(a: np.ndarray, b: np.ndarray, rate: int, config: SyncConfig) -> CoarseDrift:
    """Whole-track correlation at ``rate / coarse_factor`` over a grid of candidate drifts.

    Under clock drift the two tracks slide past each other: 300 ppm over 60 s is 18 ms, and
    a single whole-track (or 10 s window) correlation smears and decorrelates, so its peak
    sits at the *mean* offset, not the one at ``t_A = 0``. Here B is resampled by each
    candidate drift in ``[-max_drift_ppm, +max_drift_ppm]`` (a grid whose step moves the
    ends of the longest possible overlap by at most 4 coarse samples, then a finer grid,
    half a coarse sample, around the best) and the drift whose correlation peak is highest
    wins (parabolic interpolation between grid points).

    Returns
    -------
    CoarseDrift
        Offset (``t_B - t_A`` at ``t_A = 0``) good to about one coarse sample, drift good to
        about the fine grid step; refined by :func:`estimate_drift`.
    """
    factor = config.coarse_factor
    coarse_rate = rate / factor
    ac, bc = _block_mean(a, factor), _block_mean(b, factor)
    exclusion = max(2, round(config.peak_exclusion_s * coarse_rate))
    longest_s = min(ac.size, bc.size) / coarse_rate
    limit = config.max_drift_ppm
    size = _fast_len(ac.size + math.ceil(bc.size * (1.0 + limit * 1e-6)) + 2)
    spectrum_a = np.conj(np.fft.rfft(ac, size))

    def correlate(drift: float) -> tuple[float, np.ndarray, int]:
        stretched = _stretch(bc, drift)
        lo, hi = lag_range(ac.size, stretched.size, coarse_rate, config)
        full = np.fft.irfft(spectrum_a * np.fft.rfft(stretched, size), size)
        c = np.asarray(full[np.arange(lo, hi + 1) % size], dtype=np.float64)
        return float(c.max()), c, lo

    scores: dict[float, float] = {}

    def score(drift: float) -> float:
        key = round(drift, 6)
        if key not in scores:
            scores[key] = correlate(key)[0]
        return scores[key]

    step = 4e6 / (coarse_rate * longest_s)
    best = 0.0
    if limit > 0:
        count = max(1, math.ceil(limit / step))
        grid = np.linspace(-limit, limit, 2 * count + 1)
        best = float(max(grid, key=score))
        fine = step / 8.0
        near = best + fine * np.arange(-8, 9, dtype=np.float64)
        best = float(max(near[np.abs(near) <= limit + fine], key=score))
        step = fine
        # Sub-step drift from a parabola through the best grid point and its neighbours.
        around = [score(best - step), score(best), score(best + step)]
        delta, _ = parabolic_peak(np.array(around), 1)
        best += delta * step
    _, c, lo = correlate(best)
    i, confidence, ratio = peak_and_confidence(c, exclusion)
    delta, _ = parabolic_peak(c, i)
    # The lag is in the resampled B' (t' = t_B / (1 + d)): back to B's own seconds.
    offset = (lo + i + delta) / coarse_rate * (1.0 + best * 1e-6)
    return CoarseDrift(offset, best, confidence, ratio, step if limit > 0 else 0.0, len(scores))


def _window_offsets(
    a: np.ndarray, b: np.ndarray, rate: int, guess_s: float, config: SyncConfig
) -> list[tuple[WindowOffset, bool]]:
    """Fine offsets of windows of A searched within a margin around ``guess_s`` in B.

    Returns ``(window, usable)`` pairs; a window is unusable when it is silent or its peak
    sits on the edge of the search range.
    """
    guess = round(guess_s * rate)
    start, end = max(0, -guess), min(a.size, b.size - guess)
    if end - start < max(8, int(config.min_overlap_s * rate * 0.5)):
        return []
    overlap_s = (end - start) / rate
    width = min(int(config.window_s * rate), end - start)
    count = 1
    if overlap_s - width / rate >= config.drift_min_span_s:
        count = max(1, config.drift_windows)
    # Margin: a few coarse samples of uncertainty plus the drift the coarse peak averaged out.
    margin_s = 4.0 / config.coarse_rate + config.max_drift_ppm * 1e-6 * overlap_s
    margin = math.ceil(margin_s * rate)
    starts = np.linspace(start, end - width, count).round().astype(np.int64)
    silence = 10 ** (config.silence_dbfs / 20.0)
    out: list[tuple[WindowOffset, bool]] = []
    for a0 in starts:
        seg_a = a[a0 : a0 + width].astype(np.float64)
        seg_a -= seg_a.mean()
        energy = np.square(seg_a)
        norm_a = float(np.sqrt(energy.sum()))
        # Under drift the window's offset is that of its loud part: time it there (the
        # energy-weighted centre), not at the geometric centre.
        weight = energy.sum()
        centre = float(np.dot(np.arange(width), energy) / weight) if weight > 0 else width / 2
        t_center = (a0 + centre) / rate
        if norm_a <= silence * math.sqrt(width):
            out.append((WindowOffset(t_center, guess_s, 0.0), False))
            continue
        b0 = int(a0) + guess - margin
        seg_b = np.zeros(width + 2 * margin)
        lo, hi = max(0, b0), min(b.size, b0 + width + 2 * margin)
        seg_b[lo - b0 : hi - b0] = b[lo:hi]
        seg_b -= seg_b.mean()
        c = xcorr(seg_a, seg_b, 0, 2 * margin)
        i = int(np.argmax(c))
        delta, _ = parabolic_peak(c, i)
        part = seg_b[i : i + width]
        norm_b = float(np.sqrt(np.dot(part, part)))
        rho = float(c[i] / (norm_a * norm_b)) if norm_b > 0 else 0.0
        offset = (b0 - int(a0) + i + delta) / rate
        usable = 0 < i < c.size - 1 and rho > 0
        out.append((WindowOffset(float(t_center), float(offset), rho), usable))
    return out


def estimate_drift(
    a: np.ndarray, b: np.ndarray, rate: int, guess_s: float, config: SyncConfig
) -> DriftFit:
    """Refine ``guess_s`` in windows spread over the overlap and fit offset + drift.

    Parameters
    ----------
    a, b
        Shape ``(n,)`` mono audio at ``rate`` Hz on each file's timeline.
    guess_s
        Coarse offset (``t_B - t_A``), e.g. from :func:`coarse_audio_offset`.

    Returns
    -------
    DriftFit
        With ``estimated=False`` (drift 0) when the windows span less than
        ``config.drift_min_span_s`` or fewer than two are usable.
    """
    measured = _window_offsets(a, b, rate, guess_s, config)
    usable = [w for w, ok in measured if ok]
    windows = tuple(w for w, _ in measured)
    if not usable:
        return DriftFit(guess_s, 0.0, False, windows)
    best = max(w.correlation for w in usable)
    # Windows that correlate far worse than the best one are noise or a different sound.
    good = [w for w in usable if w.correlation >= 0.3 * best]
    span = max(w.t_a_s for w in good) - min(w.t_a_s for w in good)
    if len(good) < 2 or span < config.drift_min_span_s:
        top = max(good, key=lambda w: w.correlation)
        note = (
            f"drift not estimated: the usable audio windows span {span:.1f} s, under "
            f"drift_min_span_s {config.drift_min_span_s:g} s; assumed 0 ppm (an unknown "
            f"drift of d ppm moves frames t s apart by d * t us)"
        )
        return DriftFit(top.offset_s, 0.0, False, windows, note=note)
    t = np.array([w.t_a_s for w in good])
    off = np.array([w.offset_s for w in good])
    weight = np.array([w.correlation for w in good])
    slope, intercept = np.polyfit(t, off, 1, w=weight)
    residual = off - (intercept + slope * t)
    # One pass of outlier rejection: a window locked onto an echo or a repeated sound.
    limit = max(3.0 / rate, 5.0 * float(np.median(np.abs(residual))))
    keep = np.abs(residual) <= limit
    if 2 <= keep.sum() < keep.size and np.ptp(t[keep]) >= config.drift_min_span_s:
        slope, intercept = np.polyfit(t[keep], off[keep], 1, w=weight[keep])
        residual = off[keep] - (intercept + slope * t[keep])
    rms = float(np.sqrt(np.mean(residual**2)))
    return DriftFit(float(intercept), float(slope * 1e6), True, windows, rms)


def check_audible(samples: np.ndarray, path: str | Path, config: SyncConfig) -> None:
    """Raise :class:`SilentAudioError` naming ``path`` when ``samples`` are silent."""
    level = rms_dbfs(samples)
    if level < config.silence_dbfs:
        shown = "-inf" if level == -math.inf else f"{level:.1f}"
        raise SilentAudioError(
            path,
            f"audio track is silent (RMS {shown} dBFS < {config.silence_dbfs:g} dBFS); "
            "nothing to synchronize on",
        )
    if samples.size < 0.5 * config.sample_rate:
        raise SilentAudioError(path, f"audio track is too short ({samples.size} samples)")


def audio_offset(
    a: np.ndarray, b: np.ndarray, rate: int, config: SyncConfig | None = None
) -> OffsetEstimate:
    """Offset ``t_B - t_A`` between two mono tracks (coarse FFT pass, then fine windows).

    Parameters
    ----------
    a, b
        Shape ``(n,)`` float audio at ``rate`` Hz; sample ``n`` is at ``n / rate`` s.
    rate
        Sample rate of both tracks (Hz).

    Returns
    -------
    OffsetEstimate
        ``method="audio"``, the offset at ``t_A = 0`` and the drift fit.
    """
    config = config or SyncConfig()
    if rate != config.sample_rate:
        config = dataclasses.replace(config, sample_rate=rate)
    longest_s = min(a.size, b.size) / rate
    if config.max_drift_ppm <= 0 or longest_s < config.drift_min_span_s:
        # Too short to measure drift: one whole-track search, windows without drift.
        guess, confidence, ratio = coarse_audio_offset(a, b, rate, config)
        fit = estimate_drift(a, b, rate, guess, config)
    else:
        coarse = coarse_drift_search(a, b, rate, config)
        confidence, ratio = coarse.confidence, coarse.second_peak_ratio
        fit = _refine_drift(a, b, rate, coarse, config)
    best = max((w.correlation for w in fit.windows), default=0.0)
    return OffsetEstimate(
        offset_s=fit.offset_s,
        confidence=confidence,
        method="audio",
        peak_correlation=best,
        rate_hz=float(rate),
        second_peak_ratio=ratio,
        drift=fit,
    )


def _refine_drift(
    a: np.ndarray, b: np.ndarray, rate: int, coarse: CoarseDrift, config: SyncConfig
) -> DriftFit:
    """Fine windows and line fit on B resampled by the coarse drift, back in B's seconds.

    With B' (``t' = t_B / (1 + d0)``) the windows no longer decorrelate (the residual drift
    is below the coarse grid step); the fit ``t' = t_A + o' + d' t_A`` maps back to
    ``offset = o' (1 + d0)`` and ``1 + d = (1 + d') (1 + d0)``.
    """
    scale = 1.0 + coarse.drift_ppm * 1e-6
    stretched = _stretch(b, coarse.drift_ppm)
    residual_ppm = max(4.0 * coarse.step_ppm, 5.0)
    fine_config = dataclasses.replace(config, max_drift_ppm=residual_ppm)
    fit = estimate_drift(a, stretched, rate, coarse.offset_s / scale, fine_config)
    windows = tuple(
        dataclasses.replace(w, offset_s=(w.t_a_s + w.offset_s) * scale - w.t_a_s)
        for w in fit.windows
    )
    notes = []
    if abs(coarse.drift_ppm) >= config.max_drift_ppm - coarse.step_ppm:
        notes.append(
            f"drift {coarse.drift_ppm:+.0f} ppm is at the edge of the searched range "
            f"(max_drift_ppm {config.max_drift_ppm:g}): the true drift may be larger"
        )
    if fit.estimated:
        drift = ((1.0 + fit.drift_ppm * 1e-6) * scale - 1.0) * 1e6
        return DriftFit(
            fit.offset_s * scale, drift, True, windows, fit.residual_rms_s, "; ".join(notes)
        )
    # The windows did not give a line: keep the whole-track drift, anchored at the best
    # window, and say so rather than report 0 ppm (a wrong offset at t_A = 0).
    good = [w for w in windows if w.correlation > 0]
    if not good:
        offset = coarse.offset_s
    else:
        top = max(good, key=lambda w: w.correlation)
        offset = top.offset_s - coarse.drift_ppm * 1e-6 * top.t_a_s
    notes.append(
        f"drift {coarse.drift_ppm:+.1f} ppm from the whole-track search only (grid step "
        f"{coarse.step_ppm:.1f} ppm): too few fine windows agree for a line fit"
    )
    return DriftFit(offset, coarse.drift_ppm, True, windows, 0.0, "; ".join(notes))


__all__: Sequence[str] = (
    "CoarseDrift",
    "DriftFit",
    "OffsetEstimate",
    "audio_offset",
    "check_audible",
    "coarse_audio_offset",
    "coarse_drift_search",
    "estimate_drift",
    "lag_range",
    "parabolic_peak",
    "peak_and_confidence",
    "rms_dbfs",
    "xcorr",
)
