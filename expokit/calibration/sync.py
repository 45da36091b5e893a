"""Temporal synchronization of two recordings of one scene (``expokit calibrate sync A B``).

Sign convention (also written into every ``sync.json`` as ``"convention"``)::

    offset_s = t_B - t_A

An event at ``t`` seconds from the start of file A happens at
``t + offset_s + drift_ppm * 1e-6 * t`` seconds from the start of file B. ``offset_s > 0``
means B started recording *earlier* than A (B holds ``offset_s`` extra seconds at its start);
:func:`apply_sync` then cuts ``offset_s`` seconds from the start of B.

Methods
-------
audio
    Both tracks are decoded to mono at ``SyncConfig.sample_rate`` (16 kHz by default) on the
    file's timeline. A *coarse* pass cross-correlates the whole tracks (FFT) after block
    averaging by ``coarse_factor`` (2 kHz): it finds the peak over every admissible lag and
    the confidence, ``1 - next_peak / peak`` (the highest local maximum outside
    ``peak_exclusion_s`` of the peak). A *fine* pass then correlates windows of A at the full
    rate against B only within a small margin around the coarse lag, with parabolic
    sub-sample interpolation; windows spread over a long overlap give the offset at several
    times, and a straight-line fit gives the offset at ``t_A = 0`` and the clock drift (ppm).
brightness
    Video-only fallback: brightness *events* (frame-to-frame changes of frame-mean
    brightness that stand out: flashes, lights switched, hard cuts), placed at their
    *decoded* frame timestamps on a common time grid, are cross-correlated the same way.
    Changes within ``brightness_edge_s`` of either end are ignored (encoder start-up and
    auto-exposure settling happen at every file's start and would align any two clips at
    lag 0). A clip without events is rejected with a clear error, never synchronized on
    noise.

Trust
-----
A result is refused (:class:`LowConfidenceError`) unless its confidence reaches
``min_confidence`` (``min_brightness_confidence`` for brightness), its normalized peak
correlation reaches ``min_peak_correlation`` (unrelated tracks have chance peaks that
explain nothing), and, for brightness, at least ``min_brightness_events`` distinct events
and half of the events in the overlap coincide (one flash lines up with any other).
``min_confidence=0`` accepts anything, with a warning.

Frame timing always comes from decoded timestamps, never from the container header, so
clips whose frame rates differ (23.976 vs 30 fps) or whose header frame count is wrong map
correctly (``SyncResult.frame_map``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from expokit.core.atomic import atomic_path, atomic_write_json, ensure_writable_dir
from expokit.core.errors import ExpokitError, InputFileError, OutputError
from expokit.core.hashing import sha256_file
from expokit.core.paths import check_output_file
from expokit.core.versioned import read_versioned_json
from expokit.core.video_io import SYNC_CONVENTION as CONVENTION
from expokit.core.video_io import (
    MediaError,
    MediaInfo,
    NoAudioError,
    SilentAudioError,
    decode_audio,
    ffmpeg_exe,
    probe_media,
)

#: Version of the ``sync.json`` layout; bump on incompatible changes.
SYNC_FORMAT_VERSION = 1

METHODS: tuple[str, ...] = ("auto", "audio", "brightness")



class SyncError(ExpokitError):
    """Two files cannot be synchronized reliably."""


class LowConfidenceError(SyncError):
    """No result passes the trust checks (confidence, peak correlation, coinciding events)."""


class NoSyncCueError(SyncError, InputFileError):
    """Nothing to synchronize on: no (audible) audio and no usable brightness change."""


class SyncFileError(InputFileError):
    """A ``sync.json`` cannot be read (missing, not JSON, unsupported format version)."""


@dataclass(frozen=True)
class SyncConfig:
    """Every parameter of ``expokit calibrate sync``; owns the defaults and their validation.

    Attributes
    ----------
    method
        ``"auto"`` (audio when both files have an audible track and the result is confident,
        else brightness), ``"audio"`` or ``"brightness"``.
    sample_rate
        Hz at which audio is decoded and finely correlated. 16 kHz keeps sub-millisecond
        accuracy (parabolic interpolation reaches well below one sample).
    coarse_factor
        Block-averaging factor for the coarse, whole-track correlation (16 kHz / 8 = 2 kHz).
    max_offset_s
        Largest ``|offset_s|`` searched; ``None``: any offset with ``min_overlap_s`` overlap.
    min_overlap_s
        Least overlap (seconds) a candidate offset must leave between the two recordings.
    window_s
        Length of each fine-correlation window (seconds of A).
    drift_windows
        Number of fine windows spread over a long overlap (drift needs at least 2).
    drift_min_span_s
        Drift is estimated only when window centres span at least this many seconds.
    max_drift_ppm
        Largest clock drift the fine search allows for (widens its search margin).
    min_confidence
        Results below it raise :class:`LowConfidenceError`; ``0`` accepts any result (and
        switches off the other reliability floors below), with a warning.
    min_peak_correlation
        Results whose normalized correlation at the peak is below it are rejected too: two
        unrelated tracks can have a peak that stands out by chance (confidence 0.27 for two
        different shared clips) but it explains almost none of the signal (0.06), while real
        pairs reach 0.6-0.99.
    peak_exclusion_s
        Half-width around the peak ignored when looking for the next peak (audio).
    silence_dbfs
        Audio whose RMS is below this level (dB full scale) counts as silent.
    brightness_edge_s
        Brightness changes this close to either end of a clip are ignored.
    min_brightness_step
        Smallest frame-to-frame change of mean gray level (of 255) that counts as a
        brightness event. Do not lower it much: tiny clips' encoder artefacts line up with
        the start of every file and give confident, wrong offsets (0 instead of -3 s on the
        10x18 px shared clips at 0.05).
    brightness_event_sigma
        An event must also exceed this many robust standard deviations of the clip's
        frame-to-frame changes.
    min_brightness_events
        Brightness results need at least this many distinct events (0.25 s apart) that
        coincide in both clips, and half of the events either clip has in the overlap: one
        event, or one flash (rise and fall), lines up with anything.
    min_brightness_confidence
        Stricter confidence floor for brightness results (few events, so chance peaks are
        higher: unrelated shared clips reach 0.24, a light switched 3 times 0.67).
    """

    method: str = "auto"
    sample_rate: int = 16000
    coarse_factor: int = 8
    max_offset_s: float | None = None
    min_overlap_s: float = 1.0
    window_s: float = 10.0
    drift_windows: int = 5
    drift_min_span_s: float = 30.0
    max_drift_ppm: float = 1000.0
    min_confidence: float = 0.25
    min_peak_correlation: float = 0.1
    peak_exclusion_s: float = 0.05
    silence_dbfs: float = -70.0
    brightness_edge_s: float = 0.2
    min_brightness_step: float = 1.0
    brightness_event_sigma: float = 5.0
    min_brightness_events: int = 2
    min_brightness_confidence: float = 0.4

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 4000 <= self.sample_rate <= 192000:
            raise ValueError(f"sample rate must be 4000..192000 Hz, got {self.sample_rate}")
        if not 1 <= self.coarse_factor <= 64:
            raise ValueError(f"coarse factor must be 1..64, got {self.coarse_factor}")
        if self.sample_rate / self.coarse_factor < 500:
            raise ValueError("sample_rate / coarse_factor must be >= 500 Hz")
        if self.max_offset_s is not None and not (
            math.isfinite(self.max_offset_s) and self.max_offset_s > 0
        ):
            raise ValueError(f"max offset must be > 0 seconds, got {self.max_offset_s}")
        positive = {
            "min_overlap_s": self.min_overlap_s,
            "window_s": self.window_s,
            "peak_exclusion_s": self.peak_exclusion_s,
            "min_brightness_step": self.min_brightness_step,
            "brightness_event_sigma": self.brightness_event_sigma,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.min_brightness_events < 0:
            raise ValueError(
                f"min_brightness_events must be >= 0, got {self.min_brightness_events}"
            )
        if self.drift_windows < 1:
            raise ValueError(f"drift_windows must be >= 1, got {self.drift_windows}")
        for name, value in (
            ("drift_min_span_s", self.drift_min_span_s),
            ("max_drift_ppm", self.max_drift_ppm),
            ("brightness_edge_s", self.brightness_edge_s),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min confidence must be in [0, 1], got {self.min_confidence}")
        if not 0.0 <= self.min_brightness_confidence <= 1.0:
            raise ValueError(
                f"min brightness confidence must be in [0, 1], got {self.min_brightness_confidence}"
            )
        if not 0.0 <= self.min_peak_correlation <= 1.0:
            raise ValueError(
                f"min peak correlation must be in [0, 1], got {self.min_peak_correlation}"
            )
        if not (math.isfinite(self.silence_dbfs) and self.silence_dbfs < 0):
            raise ValueError(f"silence level must be < 0 dBFS, got {self.silence_dbfs}")

    @property
    def coarse_rate(self) -> float:
        return self.sample_rate / self.coarse_factor

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyncConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class WindowOffset:
    """Fine offset measured in one window: ``offset_s`` at ``t_a_s`` seconds of A."""

    t_a_s: float
    offset_s: float
    correlation: float


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


# ----------------------------------------------------------------------------- numerics


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


def _parabolic(c: np.ndarray, i: int) -> tuple[float, float]:
    """Sub-sample peak position offset (in ``[-0.5, 0.5]``) and height through 3 points."""
    if 0 < i < c.size - 1:
        y0, y1, y2 = float(c[i - 1]), float(c[i]), float(c[i + 1])
        denominator = y0 - 2.0 * y1 + y2
        if denominator < 0:
            delta = min(0.5, max(-0.5, 0.5 * (y0 - y2) / denominator))
            return delta, y1 - 0.25 * (y0 - y2) * delta
    return 0.0, float(c[i])


def _peak_and_confidence(c: np.ndarray, exclusion: int) -> tuple[int, float, float]:
    """Index of the highest peak, its confidence ``1 - next/peak`` and ``next/peak``.

    The next peak is the highest *local maximum* farther than ``exclusion`` samples from the
    main one (the main lobe's shoulders are not peaks).
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


def _lag_range(len_a: int, len_b: int, rate: float, config: SyncConfig) -> tuple[int, int]:
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
    lo, hi = _lag_range(ac.size, bc.size, coarse_rate, config)
    c = xcorr(ac, bc, lo, hi)
    exclusion = max(2, round(config.peak_exclusion_s * coarse_rate))
    i, confidence, ratio = _peak_and_confidence(c, exclusion)
    delta, _ = _parabolic(c, i)
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
        lo, hi = _lag_range(ac.size, stretched.size, coarse_rate, config)
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
        delta, _ = _parabolic(np.array(around), 1)
        best += delta * step
    _, c, lo = correlate(best)
    i, confidence, ratio = _peak_and_confidence(c, exclusion)
    delta, _ = _parabolic(c, i)
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
        delta, _ = _parabolic(c, i)
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


# ----------------------------------------------------------------------------- brightness


class FlatBrightnessError(MediaError):
    """A clip's frame-mean brightness never changes enough to synchronize on."""


def brightness_events(media: MediaInfo, config: SyncConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """Brightness *events* of a clip: frame-to-frame changes of mean brightness that stand out.

    A change first seen in frame ``i`` happened between frames ``i - 1`` and ``i``; it is
    timed at their midpoint (unbiased, and so unbiased between clips of different frame
    rates). Changes within ``brightness_edge_s`` of either end are dropped (encoder start-up,
    auto-exposure settling). An event is a change of at least ``min_brightness_step`` gray
    levels and ``brightness_event_sigma`` times the clip's frame-to-frame noise (robust
    standard deviation of all changes): camera motion and encoder pumping stay below it,
    flashes, lights switched and hard cuts do not.

    Returns
    -------
    tuple
        ``(times, changes, threshold)``: event times (s), shape ``(k,)``; signed changes in
        gray levels of 255, shape ``(k,)``; the threshold used.

    Raises
    ------
    FlatBrightnessError
        No video, fewer than 4 frames, or no event.
    """
    if not media.has_video:
        raise FlatBrightnessError(media.path, "no video track for brightness sync")
    times, means = media.frame_times, media.frame_means
    if times.size < 4:
        raise FlatBrightnessError(
            media.path, f"only {times.size} decoded frames; too few for brightness sync"
        )
    change = np.diff(means)
    when = 0.5 * (times[:-1] + times[1:])
    edge = max(config.brightness_edge_s, 1.5 / (media.fps or 25.0))
    inner = (when - times[0] >= edge) & (times[-1] - when >= edge)
    if not inner.any():
        raise FlatBrightnessError(media.path, "clip too short for brightness sync")
    values = change[inner]
    noise = 1.4826 * float(np.median(np.abs(values - np.median(values))))
    threshold = max(config.min_brightness_step, config.brightness_event_sigma * noise)
    events = inner & (np.abs(change) >= threshold)
    if not events.any():
        largest = float(np.abs(values).max())
        raise FlatBrightnessError(
            media.path,
            f"frame-mean brightness is flat (largest change between frames {largest:.2f} of "
            f"255, below {threshold:.2f}: the larger of {config.min_brightness_step:g} and "
            f"{config.brightness_event_sigma:g} x frame-to-frame noise {noise:.2f}): no flash "
            "or light change to synchronize on",
        )
    return when[events], change[events], threshold


#: Brightness changes closer than this (seconds) are one event (a flash: rise and fall).
EVENT_MERGE_S = 0.25


def _count_distinct(times: np.ndarray) -> int:
    """Number of groups of ``times`` (sorted) whose members are closer than EVENT_MERGE_S."""
    if times.size == 0:
        return 0
    return 1 + int(np.count_nonzero(np.diff(np.sort(times)) >= EVENT_MERGE_S))


def _deposit(times: np.ndarray, values: np.ndarray, rate: float, size: int) -> np.ndarray:
    """Place impulses at arbitrary times on a grid, split linearly between neighbours."""
    grid = np.zeros(size)
    pos = times * rate
    i0 = np.floor(pos).astype(np.int64)
    frac = pos - i0
    for index, weight in ((i0, 1.0 - frac), (i0 + 1, frac)):
        ok = (index >= 0) & (index < size)
        np.add.at(grid, index[ok], values[ok] * weight[ok])
    return grid


def brightness_offset(
    a: MediaInfo | str | Path, b: MediaInfo | str | Path, config: SyncConfig | None = None
) -> OffsetEstimate:
    """Offset ``t_B - t_A`` from the derivative of frame-mean brightness.

    Both derivatives are placed at their decoded frame times on a grid at the higher of the
    two frame rates, so files with different frame rates compare in seconds.

    Raises
    ------
    FlatBrightnessError
        A clip has no video, too few frames or no brightness change large enough.
    """
    config = config or SyncConfig()
    media_a = a if isinstance(a, MediaInfo) else probe_media(a)
    media_b = b if isinstance(b, MediaInfo) else probe_media(b)
    times_a, change_a, _ = brightness_events(media_a, config)
    times_b, change_b, _ = brightness_events(media_b, config)
    rate = max(media_a.fps or 25.0, media_b.fps or 25.0)
    end_a, end_b = float(media_a.frame_times[-1]), float(media_b.frame_times[-1])
    grid_a = _deposit(times_a, change_a, rate, math.ceil(end_a * rate) + 2)
    grid_b = _deposit(times_b, change_b, rate, math.ceil(end_b * rate) + 2)
    lo, hi = _lag_range(grid_a.size, grid_b.size, rate, config)
    c = xcorr(grid_a, grid_b, lo, hi)
    i, confidence, ratio = _peak_and_confidence(c, exclusion=2)
    delta, _ = _parabolic(c, i)
    norm = float(np.linalg.norm(grid_a) * np.linalg.norm(grid_b))
    rho = float(c[i] / norm) if norm > 0 else 0.0
    offset = float((lo + i + delta) / rate)
    # How many distinct events of the overlap line up (same sign, within 1.5 grid steps) at
    # this lag. One event always lines up with some event of the other clip, and so does a
    # one-frame flash (a rise and a fall); changes closer than EVENT_MERGE_S count as one.
    tolerance = 1.5 / rate
    start_a, start_b = float(media_a.frame_times[0]), float(media_b.frame_times[0])
    shifted = times_a + offset
    inside_b = (shifted >= start_b - tolerance) & (shifted <= end_b + tolerance)
    inside_a = (times_b - offset >= start_a - tolerance) & (times_b - offset <= end_a + tolerance)
    hit = np.array(
        [
            bool(np.any((np.abs(times_b - t) <= tolerance) & (np.sign(change_b) == np.sign(v))))
            for t, v in zip(shifted, change_a, strict=True)
        ],
        dtype=bool,
    )
    matched = _count_distinct(times_a[inside_b & hit])
    in_overlap = max(_count_distinct(times_a[inside_b]), _count_distinct(times_b[inside_a]))
    return OffsetEstimate(
        offset_s=offset,
        confidence=confidence,
        method="brightness",
        peak_correlation=rho,
        rate_hz=float(rate),
        second_peak_ratio=ratio,
        events_matched=matched,
        events_in_overlap=in_overlap,
    )


# ----------------------------------------------------------------------------- result


@dataclass(frozen=True)
class SyncResult:
    """Everything ``sync.json`` records; :func:`synchronize` makes it and writes nothing.

    ``frame_map[i]`` is the index of B's decoded frame shown at the time of A's decoded
    frame ``i`` (nearest timestamp within half a B frame), or ``None`` outside B.
    """

    media_a: MediaInfo
    media_b: MediaInfo
    method: str
    offset_s: float
    confidence: float
    peak_correlation: float
    rate_hz: float
    drift_ppm: float = 0.0
    drift_estimated: bool = False
    drift_residual_rms_s: float = 0.0
    second_peak_ratio: float = 0.0
    windows: tuple[WindowOffset, ...] = ()
    events_matched: int | None = None
    events_in_overlap: int | None = None
    frame_map: tuple[int | None, ...] | None = None
    warnings: tuple[str, ...] = ()
    attempts: tuple[str, ...] = ()
    config: SyncConfig = dataclasses.field(default_factory=SyncConfig)
    elapsed_s: float = 0.0

    def time_in_b(self, t_a: float) -> float:
        """Time in B (s) of an event at ``t_a`` seconds in A."""
        return t_a + self.offset_s + self.drift_ppm * 1e-6 * t_a

    def time_in_a(self, t_b: float) -> float:
        """Time in A (s) of an event at ``t_b`` seconds in B."""
        return (t_b - self.offset_s) / (1.0 + self.drift_ppm * 1e-6)

    @property
    def offset_frames_a(self) -> float | None:
        """``offset_s`` in frames of A (``None`` without video)."""
        fps = self.media_a.fps if self.media_a.has_video else None
        return self.offset_s * fps if fps else None

    @property
    def offset_frames_b(self) -> float | None:
        """``offset_s`` in frames of B (``None`` without video)."""
        fps = self.media_b.fps if self.media_b.has_video else None
        return self.offset_s * fps if fps else None

    def to_dict(self) -> dict[str, Any]:
        """The ``sync.json`` document."""
        from expokit import __version__

        return {
            "format_version": SYNC_FORMAT_VERSION,
            "expokit_version": __version__,
            "convention": CONVENTION,
            "method": self.method,
            "offset_s": self.offset_s,
            "offset_frames": {"a": self.offset_frames_a, "b": self.offset_frames_b},
            "drift_ppm": self.drift_ppm,
            "drift_estimated": self.drift_estimated,
            "drift_residual_rms_s": self.drift_residual_rms_s,
            "confidence": self.confidence,
            "peak_correlation": self.peak_correlation,
            "second_peak_ratio": self.second_peak_ratio,
            "rate_hz": self.rate_hz,
            "windows": [dataclasses.asdict(w) for w in self.windows],
            "brightness_events": None
            if self.events_matched is None
            else {"matched": self.events_matched, "in_overlap": self.events_in_overlap},
            "a": self.media_a.to_dict(),
            "b": self.media_b.to_dict(),
            "frame_map": None
            if self.frame_map is None
            else {
                "description": "b_index_for_a[i]: B frame shown at A frame i (null: none)",
                "b_index_for_a": list(self.frame_map),
            },
            "warnings": list(self.warnings),
            "attempts": list(self.attempts),
            "config": self.config.to_dict(),
            "elapsed_s": self.elapsed_s,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyncResult:
        frame_map = data.get("frame_map")
        return cls(
            media_a=MediaInfo.from_dict(data["a"]),
            media_b=MediaInfo.from_dict(data["b"]),
            method=str(data["method"]),
            offset_s=float(data["offset_s"]),
            confidence=float(data["confidence"]),
            peak_correlation=float(data.get("peak_correlation", 0.0)),
            rate_hz=float(data.get("rate_hz", 0.0)),
            drift_ppm=float(data.get("drift_ppm", 0.0)),
            drift_estimated=bool(data.get("drift_estimated", False)),
            drift_residual_rms_s=float(data.get("drift_residual_rms_s", 0.0)),
            second_peak_ratio=float(data.get("second_peak_ratio", 0.0)),
            windows=tuple(WindowOffset(**w) for w in data.get("windows", [])),
            events_matched=(data.get("brightness_events") or {}).get("matched"),
            events_in_overlap=(data.get("brightness_events") or {}).get("in_overlap"),
            frame_map=None if frame_map is None else tuple(frame_map["b_index_for_a"]),
            warnings=tuple(data.get("warnings", [])),
            attempts=tuple(data.get("attempts", [])),
            config=SyncConfig.from_dict(data.get("config", {})),
            elapsed_s=float(data.get("elapsed_s", 0.0)),
        )


def frame_map(
    times_a: np.ndarray, times_b: np.ndarray, offset_s: float, drift_ppm: float = 0.0
) -> tuple[int | None, ...]:
    """For each frame time of A, the nearest frame of B at the same instant, or ``None``.

    A frame of B matches when its timestamp is within half of B's median frame interval of
    ``t_A + offset_s + drift_ppm * 1e-6 * t_A``.
    """
    if times_a.size == 0 or times_b.size == 0:
        return ()
    half = 0.5 * float(np.median(np.diff(times_b))) if times_b.size > 1 else 0.5
    target = times_a + offset_s + drift_ppm * 1e-6 * times_a
    right = np.clip(np.searchsorted(times_b, target), 1, max(1, times_b.size - 1))
    left = right - 1
    if times_b.size == 1:
        nearest = np.zeros(target.size, dtype=np.int64)
    else:
        nearest = np.where(
            np.abs(times_b[right] - target) < np.abs(times_b[left] - target), right, left
        )
    ok = np.abs(times_b[nearest] - target) <= half + 1e-9
    return tuple(int(j) if good else None for j, good in zip(nearest, ok, strict=True))


def _describe(estimate: OffsetEstimate) -> str:
    text = (
        f"{estimate.method}: offset {estimate.offset_s:+.4f} s, confidence "
        f"{estimate.confidence:.2f} (next peak {estimate.second_peak_ratio:.2f} of the peak), "
        f"peak correlation {estimate.peak_correlation:.2f}"
    )
    if estimate.events_matched is not None:
        text += f", {estimate.events_matched} of {estimate.events_in_overlap} events coincide"
    return text


_T = TypeVar("_T")


def unreliable(estimate: OffsetEstimate, config: SyncConfig) -> str | None:
    """Why ``estimate`` must not be trusted under ``config``, or ``None`` when it can be.

    ``config.min_confidence == 0`` accepts anything (the caller warns).
    """
    if config.min_confidence <= 0:
        return None
    floor = config.min_confidence
    if estimate.method == "brightness":
        floor = max(floor, config.min_brightness_confidence)
    if estimate.confidence < floor:
        return (
            f"confidence {estimate.confidence:.2f} < {floor:g}: the correlation peak is not "
            "clearly above other lags"
        )
    if estimate.peak_correlation < config.min_peak_correlation:
        return (
            f"peak correlation {estimate.peak_correlation:.2f} < "
            f"{config.min_peak_correlation:g}: the two signals share almost nothing at that lag"
        )
    matched, overlap = estimate.events_matched, estimate.events_in_overlap
    if matched is not None and overlap is not None and config.min_brightness_events > 0:
        if matched < config.min_brightness_events:
            return (
                f"only {matched} brightness event(s) coincide (needs "
                f"{config.min_brightness_events}): one event lines up with any other"
            )
        if matched < 0.5 * overlap:
            return f"only {matched} of {overlap} brightness events in the overlap coincide"
    return None


def _both(func: Callable[[Path], _T], path_a: Path, path_b: Path) -> tuple[_T, _T]:
    """``func`` on both files at once: each call mostly waits on its own ffmpeg process, so
    two threads halve the decode time on two cores. A's error wins when both fail."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        future_a, future_b = pool.submit(func, path_a), pool.submit(func, path_b)
        return future_a.result(), future_b.result()


def synchronize(
    path_a: str | Path, path_b: str | Path, config: SyncConfig | None = None
) -> SyncResult:
    """Synchronize B to A; writes nothing (see :func:`write_sync_json`, :func:`apply_sync`).

    Raises
    ------
    MediaError
        A file is missing, empty or corrupt (or, with ``method="audio"``, has no audio or a
        silent one).
    NoSyncCueError
        Neither audio nor brightness gives anything to correlate.
    LowConfidenceError
        No result reaches ``config.min_confidence`` and ``config.min_peak_correlation``.
    """
    config = config or SyncConfig()
    started = time.perf_counter()
    media_a, media_b = _both(probe_media, Path(path_a), Path(path_b))
    attempts: list[str] = []
    candidates: list[OffsetEstimate] = []
    problems: list[str] = []

    if config.method in ("auto", "audio"):
        missing = [m.path for m in (media_a, media_b) if not m.has_audio]
        if missing and config.method == "audio":
            raise NoAudioError(missing[0], "no audio track (needed by method 'audio')")
        if missing:
            problems.append("no audio track in " + " and ".join(str(p) for p in missing))
        else:
            try:
                a, b = _both(
                    lambda p: decode_audio(p, config.sample_rate), media_a.path, media_b.path
                )
                check_audible(a, media_a.path, config)
                check_audible(b, media_b.path, config)
                candidates.append(audio_offset(a, b, config.sample_rate, config))
            except (NoAudioError, SilentAudioError) as exc:
                if config.method == "audio":
                    raise
                problems.append(str(exc))

    audio_ok = any(unreliable(c, config) is None for c in candidates)
    if config.method == "brightness" or (config.method == "auto" and not audio_ok):
        try:
            candidates.append(brightness_offset(media_a, media_b, config))
        except FlatBrightnessError as exc:
            problems.append(str(exc))
    attempts = [
        _describe(c) + (f" - rejected, {why}" if (why := unreliable(c, config)) else "")
        for c in candidates
    ] + problems

    fps_a = media_a.fps if media_a.has_video else None
    fps_b = media_b.fps if media_b.has_video else None
    fps_note = ""
    if fps_a and fps_b and abs(fps_a - fps_b) > 0.001 * max(fps_a, fps_b):
        fps_note = (
            f"frame rates differ ({fps_a:.3f} vs {fps_b:.3f} fps, from decoded timestamps): "
            "the frame map pairs frames by time"
        )
    if not candidates:
        raise NoSyncCueError(
            media_a.path, f"nothing to synchronize on with {media_b.path}: " + "; ".join(problems)
        )
    trusted = [c for c in candidates if unreliable(c, config) is None]
    if not trusted:
        raise LowConfidenceError(
            f"cannot synchronize {media_a.path} with {media_b.path} reliably; tried "
            + "; ".join(attempts)
            + (f"; {fps_note}" if fps_note else "")
        )
    best = max(trusted, key=lambda c: c.confidence)
    warnings = [f"{m.path}: {w}" for m in (media_a, media_b) for w in m.warnings]
    if best.confidence < 0.5 or best.peak_correlation < 0.3:
        warnings.append(
            f"low confidence {best.confidence:.2f} (peak correlation "
            f"{best.peak_correlation:.2f}): check the result"
        )
    if fps_note:
        warnings.append(fps_note)
    drift = best.drift
    drift_ppm = drift.drift_ppm if drift and drift.estimated else 0.0
    if drift and drift.note:
        warnings.append(drift.note)
    if drift and drift.estimated and abs(drift_ppm) > config.max_drift_ppm:
        warnings.append(f"drift {drift_ppm:+.0f} ppm exceeds max_drift_ppm; check the result")
    mapping = None
    if media_a.has_video and media_b.has_video:
        mapping = frame_map(media_a.frame_times, media_b.frame_times, best.offset_s, drift_ppm)
    return SyncResult(
        media_a=media_a,
        media_b=media_b,
        method=best.method,
        offset_s=best.offset_s,
        confidence=best.confidence,
        peak_correlation=best.peak_correlation,
        rate_hz=best.rate_hz,
        drift_ppm=drift_ppm,
        drift_estimated=bool(drift and drift.estimated),
        drift_residual_rms_s=drift.residual_rms_s if drift else 0.0,
        second_peak_ratio=best.second_peak_ratio,
        windows=drift.windows if drift else (),
        events_matched=best.events_matched,
        events_in_overlap=best.events_in_overlap,
        frame_map=mapping,
        warnings=tuple(warnings),
        attempts=tuple(attempts),
        config=config,
        elapsed_s=time.perf_counter() - started,
    )


# ----------------------------------------------------------------------------- files


#: Key of ``sync.json`` recording the ``--apply`` copies written with it (path, sha256), so
#: a re-run may replace exactly those files and no other.
APPLIED_KEY = "applied_outputs"


def is_sync_json(path: str | Path) -> bool:
    """True when ``path`` holds a ``sync.json`` written by expokit (an earlier output that
    a re-run may replace)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return (
        isinstance(data, dict)
        and "format_version" in data
        and isinstance(data.get("convention"), str)
        and "offset_s" in data
    )


def check_sync_json_target(path: str | Path, inputs: Sequence[str | Path]) -> Path:
    """``path`` when ``sync.json`` may be written there.

    Raises
    ------
    OutputError
        ``path`` is one of ``inputs`` (a video), a file an expokit root tracks (a dataset's
        ``manifest.parquet``, a session's journal, ...), a folder, or an existing file that
        is not an earlier ``sync.json``.
    """
    return check_output_file(
        path, inputs=inputs, what="sync.json output (--out)", is_own_output=is_sync_json
    )


def recorded_outputs(path: str | Path) -> dict[Path, str]:
    """``--apply`` copies recorded by an earlier ``sync.json`` at ``path``: resolved path to
    sha256. Empty when there is none or the file is not ours."""
    if not is_sync_json(path):
        return {}
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    recorded: dict[Path, str] = {}
    for item in data.get(APPLIED_KEY) or []:
        if isinstance(item, dict) and isinstance(item.get("path"), str):
            recorded[Path(item["path"]).resolve()] = str(item.get("sha256"))
    return recorded


def write_sync_json(result: SyncResult, path: str | Path, applied: Sequence[Path] = ()) -> Path:
    """Write ``result`` as ``sync.json`` atomically; return the path.

    ``applied`` are the ``--apply`` copies written from it; their paths and hashes are
    recorded so that a re-run may replace them (:func:`apply_sync`).
    """
    target = Path(path)
    document = result.to_dict()
    if applied:
        document[APPLIED_KEY] = [
            {"path": str(p.resolve()), "sha256": sha256_file(p)} for p in applied
        ]
    atomic_write_json(target, document)
    return target


def load_sync_json(path: str | Path) -> SyncResult:
    """Read a ``sync.json``; refuses other format versions with a message naming them."""
    source = Path(path)
    data = read_versioned_json(
        source, version=SYNC_FORMAT_VERSION, kind="sync.json", error=SyncFileError
    )
    try:
        return SyncResult.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise SyncFileError(source, f"damaged sync.json ({type(exc).__name__}: {exc})") from None


def trim_plan(result: SyncResult) -> tuple[float, float, float]:
    """Where each synchronized copy starts and how long both are.

    Returns
    -------
    tuple
        ``(start_a_s, start_b_s, duration_s)``: cutting A at ``start_a_s`` and B at
        ``start_b_s`` makes both start at the same instant (``start_b = time_in_b(start_a)``).
    """
    start_a = 0.0 if result.offset_s >= 0 else -result.offset_s / (1.0 + result.drift_ppm * 1e-06)
    start_b = max(0.0, result.time_in_b(start_a))
    end_a = result.media_a.media_duration_s
    end_b_in_a = result.time_in_a(result.media_b.media_duration_s)
    duration = min(end_a, end_b_in_a) - start_a
    if duration <= 0:
        raise SyncError(
            f"{result.media_a.path} and {result.media_b.path} do not overlap at offset "
            f"{result.offset_s:+.3f} s; nothing to write"
        )
    return start_a, start_b, duration


def _output_names(result: SyncResult) -> tuple[str, str]:
    names = []
    for media in (result.media_a, result.media_b):
        names.append(media.path.stem + ("_sync.mp4" if media.has_video else "_sync.wav"))
    if names[0] == names[1]:
        names = [f"a_{names[0]}", f"b_{names[1]}"]
    return names[0], names[1]


def _write_trimmed(media: MediaInfo, start_s: float, duration_s: float, target: Path) -> None:
    import ffmpeg

    if not media.path.is_file():
        raise MediaError(media.path, "no such file (needed by --apply)")
    source = ffmpeg.input(str(media.path), ss=f"{start_s:.6f}")
    streams = []
    options: dict[str, Any] = {"t": f"{duration_s:.6f}"}
    if media.has_video:
        streams.append(source["v:0"])
        odd = bool((media.width or 0) % 2 or (media.height or 0) % 2)
        options.update(
            vcodec="libx264", crf=18, preset="veryfast", pix_fmt="yuv444p" if odd else "yuv420p"
        )
        options["fps_mode"] = "passthrough"  # keep every decoded frame and its timestamp
    if media.has_audio:
        streams.append(source["a:0"])
        options.update(acodec="aac" if media.has_video else "pcm_s16le")
        if media.has_video:
            options["audio_bitrate"] = "192k"
    with atomic_path(target) as tmp:
        stream = ffmpeg.output(*streams, str(tmp), **options)
        try:
            ffmpeg.run(
                stream,
                cmd=ffmpeg_exe(),
                capture_stdout=True,
                capture_stderr=True,
                overwrite_output=True,
            )
        except ffmpeg.Error as exc:
            tail = (exc.stderr or b"").decode("utf-8", "replace").strip().splitlines()[-3:]
            raise OutputError(
                f"ffmpeg could not write {target} from {media.path}: {' | '.join(tail)}"
            ) from None


def apply_targets(
    result: SyncResult, out_dir: str | Path, recorded: Mapping[Path, str] | None = None
) -> list[Path]:
    """The two files :func:`apply_sync` writes, checked before anything is written.

    Parameters
    ----------
    recorded
        Earlier ``--apply`` copies (:func:`recorded_outputs`); an existing target is
        replaced only when it is one of them, unchanged since (same sha256).

    Raises
    ------
    OutputError
        A target is one of the inputs, a tracked file of an expokit root, or an existing
        file expokit did not write.
    """
    known = dict(recorded or {})

    def own(path: Path) -> bool:
        digest = known.get(path.resolve())
        return digest is not None and path.is_file() and sha256_file(path) == digest

    inputs = [result.media_a.path, result.media_b.path]
    targets = [Path(out_dir) / name for name in _output_names(result)]
    for target in targets:
        check_output_file(target, inputs=inputs, what="--apply output", is_own_output=own)
    return targets


def apply_sync(
    result: SyncResult, out_dir: str | Path, recorded: Mapping[Path, str] | None = None
) -> list[Path]:
    """Write trimmed, synchronized copies of A and B into ``out_dir``.

    Both copies start at the same instant (A cut at ``start_a``, B at ``time_in_b(start_a)``,
    consistent with the sign convention) and have the same duration. Video is re-encoded
    (H.264, CRF 18) so the cut is frame-accurate and audio (AAC) sample-accurate; audio-only
    inputs become WAV. Clock drift is *not* resampled away (:func:`drift_warning` says when
    it moves the copies apart by more than half a frame).

    Existing files are replaced only when ``recorded`` (an earlier ``sync.json``'s
    :func:`recorded_outputs`) lists them unchanged; see :func:`apply_targets`.

    Returns
    -------
    list[Path]
        ``[copy_of_a, copy_of_b]``.
    """
    outputs = apply_targets(result, out_dir, recorded)
    ensure_writable_dir(out_dir)
    start_a, start_b, duration = trim_plan(result)
    with ThreadPoolExecutor(max_workers=2) as pool:  # two ffmpeg encodes at once
        jobs = [
            pool.submit(_write_trimmed, result.media_a, start_a, duration, outputs[0]),
            pool.submit(
                _write_trimmed,
                result.media_b,
                start_b,
                duration * (1 + result.drift_ppm * 1e-6),
                outputs[1],
            ),
        ]
        for job in jobs:
            job.result()
    return outputs


def drift_warning(result: SyncResult) -> str | None:
    """Message when uncorrected drift moves the copies apart by more than half a frame."""
    _start_a, _, duration = trim_plan(result)
    slip = abs(result.drift_ppm) * 1e-6 * duration
    fps = max((m.fps or 0.0) for m in (result.media_a, result.media_b))
    limit = 0.5 / fps if fps else 0.001
    if slip > limit:
        return (
            f"clock drift {result.drift_ppm:+.1f} ppm moves the copies {slip * 1000:.1f} ms "
            f"apart by their end (not corrected)"
        )
    return None


def describe_result(result: SyncResult) -> list[str]:
    """Human-readable summary lines (for the command line)."""
    lines = [
        f"method {result.method}: offset {result.offset_s:+.6f} s (t_B - t_A), "
        f"confidence {result.confidence:.2f}, peak correlation {result.peak_correlation:.2f}",
    ]
    frames = [
        f"{label} {value:+.2f} frames"
        for label, value in (("A", result.offset_frames_a), ("B", result.offset_frames_b))
        if value is not None
    ]
    if frames:
        lines.append("offset in " + ", ".join(frames))
    if result.events_matched is not None:
        lines.append(
            f"{result.events_matched} of {result.events_in_overlap} brightness events coincide"
        )
    if result.drift_estimated:
        lines.append(
            f"drift {result.drift_ppm:+.1f} ppm over {len(result.windows)} windows "
            f"(residual {result.drift_residual_rms_s * 1000:.3f} ms rms)"
        )
    for label, media in (("A", result.media_a), ("B", result.media_b)):
        fps = f"{media.fps:.3f} fps" if media.has_video and media.fps else "no video"
        frames_text = (
            f", {media.decoded_frames} decoded frames (header {media.container_frames})"
            if media.decoded_frames is not None
            else ""
        )
        audio = "audio" if media.has_audio else "no audio"
        lines.append(f"{label}: {media.path} ({fps}{frames_text}, {audio})")
    return lines + [f"warning: {w}" for w in result.warnings]


__all__: Sequence[str] = (
    "APPLIED_KEY",
    "CONVENTION",
    "METHODS",
    "SYNC_FORMAT_VERSION",
    "CoarseDrift",
    "DriftFit",
    "FlatBrightnessError",
    "LowConfidenceError",
    "NoSyncCueError",
    "OffsetEstimate",
    "SyncConfig",
    "SyncError",
    "SyncFileError",
    "SyncResult",
    "WindowOffset",
    "apply_sync",
    "apply_targets",
    "audio_offset",
    "brightness_events",
    "brightness_offset",
    "check_audible",
    "check_sync_json_target",
    "coarse_audio_offset",
    "coarse_drift_search",
    "describe_result",
    "drift_warning",
    "estimate_drift",
    "frame_map",
    "is_sync_json",
    "load_sync_json",
    "recorded_outputs",
    "rms_dbfs",
    "synchronize",
    "trim_plan",
    "unreliable",
    "write_sync_json",
    "xcorr",
)
