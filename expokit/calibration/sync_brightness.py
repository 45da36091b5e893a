"""Video-only synchronization from frame brightness *events* (flashes, lights, hard cuts).

Each clip's frame-to-frame changes of mean gray level (of 255) that stand out from its
noise are placed at their *decoded* frame times (s) on a common grid at the higher of the
two frame rates and cross-correlated (:func:`expokit.calibration.sync_audio.xcorr`), so
clips of different frame rates compare in seconds. Offsets follow the convention of
:mod:`expokit.calibration.sync`: ``offset_s = t_B - t_A``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from expokit.calibration.sync_audio import (
    OffsetEstimate,
    lag_range,
    parabolic_peak,
    peak_and_confidence,
    xcorr,
)
from expokit.calibration.sync_record import SyncConfig
from expokit.core.video_io import MediaError, MediaInfo, probe_media


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
    lo, hi = lag_range(grid_a.size, grid_b.size, rate, config)
    c = xcorr(grid_a, grid_b, lo, hi)
    i, confidence, ratio = peak_and_confidence(c, exclusion=2)
    delta, _ = parabolic_peak(c, i)
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


__all__: Sequence[str] = (
    "EVENT_MERGE_S",
    "FlatBrightnessError",
    "brightness_events",
    "brightness_offset",
)
