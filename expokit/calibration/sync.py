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

Modules
-------
This module orchestrates (:func:`synchronize`) and writes the synchronized copies
(:func:`apply_sync`); the algorithms live in :mod:`~expokit.calibration.sync_audio` and
:mod:`~expokit.calibration.sync_brightness`, the ``sync.json`` record (model, reader,
writer) in :mod:`~expokit.calibration.sync_record`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np

from expokit.calibration.sync_audio import (
    OffsetEstimate,
    audio_offset,
    check_audible,
)
from expokit.calibration.sync_brightness import FlatBrightnessError, brightness_offset
from expokit.calibration.sync_record import (
    SyncConfig,
    SyncError,
    SyncResult,
)
from expokit.core.atomic import atomic_path, ensure_writable_dir
from expokit.core.errors import InputFileError, OutputError
from expokit.core.hashing import sha256_file
from expokit.core.paths import check_output_file
from expokit.core.video_io import (
    MediaError,
    MediaInfo,
    NoAudioError,
    SilentAudioError,
    decode_audio,
    probe_media,
    run_ffmpeg,
)


class LowConfidenceError(SyncError):
    """No result passes the trust checks (confidence, peak correlation, coinciding events)."""


class NoSyncCueError(SyncError, InputFileError):
    """Nothing to synchronize on: no (audible) audio and no usable brightness change."""


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


def _read_media(path_a: str | Path, path_b: str | Path) -> tuple[MediaInfo, MediaInfo]:
    """Step 1: probe and decode both files (header, frame timestamps, frame means)."""
    return _both(probe_media, Path(path_a), Path(path_b))


def _try_audio(
    media_a: MediaInfo, media_b: MediaInfo, config: SyncConfig, problems: list[str]
) -> OffsetEstimate | None:
    """Step 2: the audio estimate, or ``None`` (why appended to ``problems``).

    Raises
    ------
    NoAudioError, SilentAudioError
        With ``method="audio"`` only; ``"auto"`` records the problem and goes on.
    """
    if config.method not in ("auto", "audio"):
        return None
    missing = [m.path for m in (media_a, media_b) if not m.has_audio]
    if missing and config.method == "audio":
        raise NoAudioError(missing[0], "no audio track (needed by method 'audio')")
    if missing:
        problems.append("no audio track in " + " and ".join(str(p) for p in missing))
        return None
    try:
        a, b = _both(lambda p: decode_audio(p, config.sample_rate), media_a.path, media_b.path)
        check_audible(a, media_a.path, config)
        check_audible(b, media_b.path, config)
        return audio_offset(a, b, config.sample_rate, config)
    except (NoAudioError, SilentAudioError) as exc:
        if config.method == "audio":
            raise
        problems.append(str(exc))
        return None


def _try_brightness(
    media_a: MediaInfo,
    media_b: MediaInfo,
    config: SyncConfig,
    audio: OffsetEstimate | None,
    problems: list[str],
) -> OffsetEstimate | None:
    """Step 3: the brightness estimate when asked for, or as the fallback of ``"auto"``
    when audio gave no trusted result; ``None`` (why appended to ``problems``) otherwise."""
    audio_ok = audio is not None and unreliable(audio, config) is None
    if not (config.method == "brightness" or (config.method == "auto" and not audio_ok)):
        return None
    try:
        return brightness_offset(media_a, media_b, config)
    except FlatBrightnessError as exc:
        problems.append(str(exc))
        return None


def _fps_note(media_a: MediaInfo, media_b: MediaInfo) -> str:
    """A note when the decoded frame rates (fps) differ by more than 0.1 %, else ``""``."""
    fps_a = media_a.fps if media_a.has_video else None
    fps_b = media_b.fps if media_b.has_video else None
    if fps_a and fps_b and abs(fps_a - fps_b) > 0.001 * max(fps_a, fps_b):
        return (
            f"frame rates differ ({fps_a:.3f} vs {fps_b:.3f} fps, from decoded timestamps): "
            "the frame map pairs frames by time"
        )
    return ""


def _choose(
    media_a: MediaInfo,
    media_b: MediaInfo,
    candidates: Sequence[OffsetEstimate],
    problems: Sequence[str],
    config: SyncConfig,
    fps_note: str,
) -> tuple[OffsetEstimate, tuple[str, ...]]:
    """Step 4: the most confident trusted estimate and the description of every attempt.

    Raises
    ------
    NoSyncCueError
        No estimate at all.
    LowConfidenceError
        No estimate passes :func:`unreliable`.
    """
    attempts = tuple(
        [
            _describe(c) + (f" - rejected, {why}" if (why := unreliable(c, config)) else "")
            for c in candidates
        ]
        + list(problems)
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
    return max(trusted, key=lambda c: c.confidence), attempts


def _collect_warnings(
    media_a: MediaInfo, media_b: MediaInfo, best: OffsetEstimate, config: SyncConfig, fps_note: str
) -> tuple[str, ...]:
    """Step 6: decode warnings of both files, low confidence, frame rates, drift (ppm)."""
    warnings = [f"{m.path}: {w}" for m in (media_a, media_b) for w in m.warnings]
    if best.confidence < 0.5 or best.peak_correlation < 0.3:
        warnings.append(
            f"low confidence {best.confidence:.2f} (peak correlation "
            f"{best.peak_correlation:.2f}): check the result"
        )
    if fps_note:
        warnings.append(fps_note)
    drift = best.drift
    if drift and drift.note:
        warnings.append(drift.note)
    if drift and drift.estimated and abs(drift.drift_ppm) > config.max_drift_ppm:
        warnings.append(f"drift {drift.drift_ppm:+.0f} ppm exceeds max_drift_ppm; check the result")
    return tuple(warnings)


def synchronize(
    path_a: str | Path, path_b: str | Path, config: SyncConfig | None = None
) -> SyncResult:
    """Synchronize B to A; writes nothing (see :func:`write_sync_json`, :func:`apply_sync`).

    Steps: read both files, try audio, fall back to (or use) brightness, keep the most
    confident trusted estimate, build the frame map, collect the warnings.

    Returns
    -------
    SyncResult
        ``offset_s`` (s, ``t_B - t_A`` at ``t_A = 0``), ``drift_ppm`` (ppm, 0 unless
        estimated), the frame map (both files with video) and how it was found.

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
    media_a, media_b = _read_media(path_a, path_b)
    problems: list[str] = []
    audio = _try_audio(media_a, media_b, config, problems)
    brightness = _try_brightness(media_a, media_b, config, audio, problems)
    candidates = [c for c in (audio, brightness) if c is not None]
    fps_note = _fps_note(media_a, media_b)
    best, attempts = _choose(media_a, media_b, candidates, problems, config, fps_note)
    drift = best.drift
    drift_ppm = drift.drift_ppm if drift and drift.estimated else 0.0
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
        warnings=_collect_warnings(media_a, media_b, best, config, fps_note),
        attempts=attempts,
        config=config,
        elapsed_s=time.perf_counter() - started,
    )


# ----------------------------------------------------------------------------- apply


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


def trim_arguments(media: MediaInfo, start_s: float, duration_s: float, target: Path) -> list[str]:
    """ffmpeg arguments that write ``duration_s`` seconds of ``media`` from ``start_s`` to
    ``target``: video re-encoded with x264 (CRF 18, every decoded frame and its timestamp
    kept), audio as AAC beside video or 16-bit PCM alone."""
    args = ["-hide_banner", "-nostdin", "-y", "-ss", f"{start_s:.6f}", "-i", str(media.path)]
    args += ["-t", f"{duration_s:.6f}"]
    if media.has_video:
        odd = bool((media.width or 0) % 2 or (media.height or 0) % 2)
        args += ["-map", "0:v:0", "-c:v", "libx264", "-crf", "18", "-preset", "veryfast"]
        args += ["-pix_fmt", "yuv444p" if odd else "yuv420p", "-fps_mode", "passthrough"]
    if media.has_audio:
        args += ["-map", "0:a:0", "-c:a", "aac" if media.has_video else "pcm_s16le"]
        if media.has_video:
            args += ["-b:a", "192k"]
    return args


def _write_trimmed(media: MediaInfo, start_s: float, duration_s: float, target: Path) -> None:
    if not media.path.is_file():
        raise MediaError(media.path, "no such file (needed by --apply)")
    with atomic_path(target) as tmp:
        code, _, errors = run_ffmpeg(
            [*trim_arguments(media, start_s, duration_s, target), str(tmp)]
        )
        if code != 0:
            tail = errors.decode("utf-8", "replace").strip().splitlines()[-3:]
            raise OutputError(
                f"ffmpeg could not write {target} from {media.path}: {' | '.join(tail)}"
            )


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


__all__ = [
    "LowConfidenceError",
    "NoSyncCueError",
    "apply_sync",
    "apply_targets",
    "describe_result",
    "drift_warning",
    "frame_map",
    "synchronize",
    "trim_plan",
    "unreliable",
]
