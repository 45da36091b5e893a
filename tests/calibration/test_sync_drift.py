"""Clock drift: B is A resampled by ~+100 ppm (made with ffmpeg from shared audio)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from expokit.calibration.sync import apply_sync, drift_warning, synchronize
from expokit.calibration.sync_audio import audio_offset
from expokit.calibration.sync_record import SyncConfig
from expokit.calibration.synthetic import shuffled_audio
from expokit.core.video_io import ffmpeg_exe
from tests.conftest import shared_path

RATE = 48000


def shared_program(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """``seconds`` of real sound: shuffled pieces of the shared clips' audio."""
    sources = [
        shared_path("video", "audio_offset_avbs", "full.mp4"),
        shared_path("video", "twoview_rooftop_pulsejet", "left.mp4"),
        shared_path("video", "twoview_rooftop_pulsejet", "right.mp4"),
        shared_path("video", "Megamind.avi"),
    ]
    return shuffled_audio(sources, seconds, rate, seed)


def write_audio(path: Path, samples: np.ndarray, declared_rate: int, out_rate: int = RATE) -> None:
    """Encode ``samples`` with ffmpeg, reading them as ``declared_rate`` Hz (a different rate
    than they were made at stretches time) and resampling to ``out_rate``."""
    subprocess.run(
        [
            ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "f32le", "-ar", str(declared_rate), "-ac", "1", "-i", "-",
            "-ar", str(out_rate), str(path),
        ],
        input=samples.tobytes(),
        check=True,
        capture_output=True,
    )  # fmt: skip


def test_drift_of_resampled_copy_is_recovered(tmp_path: Path) -> None:
    program = shared_program(60.0)
    # B's clock runs slow: reading A's samples as 47995 Hz stretches time by 48000/47995, so
    # an event at t_A is at t_A * (1 + d) in B, d = +104.2 ppm; cutting `cut` samples first
    # moves it to t_A * (1 + d) - cut / 47995.
    declared = 47995
    cut = int(2.5 * declared)
    a_path, b_path = tmp_path / "a.wav", tmp_path / "b.wav"
    write_audio(a_path, program, RATE)
    write_audio(b_path, program[cut:], declared)
    expected_ppm = (RATE / declared - 1) * 1e6
    expected_offset = -cut / declared

    result = synchronize(a_path, b_path)
    assert result.method == "audio"
    assert result.drift_estimated
    assert abs(result.drift_ppm - expected_ppm) < 20
    assert abs(result.offset_s - expected_offset) < 1e-3
    assert result.confidence > 0.5
    assert len(result.windows) >= 2
    assert result.frame_map is None  # audio only: no frames to map
    assert result.media_a.has_video is False

    # Without drift modelling the end of the clip would be ~6 ms off; with it, < 1 ms.
    t_end = 55.0
    truth_end = t_end * RATE / declared - cut / declared
    assert abs(result.time_in_b(t_end) - truth_end) < 1e-3

    # Short clips (overlap < drift_min_span_s) do not pretend to know the drift.
    short = synchronize(a_path, b_path, SyncConfig(drift_min_span_s=1000))
    assert not short.drift_estimated and short.drift_ppm == 0.0

    out_a, out_b = apply_sync(result, tmp_path / "synced")
    assert (out_a.suffix, out_b.suffix) == (".wav", ".wav")
    again = synchronize(out_a, out_b)
    assert abs(again.offset_s) < 1e-3
    # apply cuts the start only; the uncorrected drift is reported (~5.7 ms at the end).
    warning = drift_warning(result)
    assert warning is not None and "not corrected" in warning


@pytest.mark.parametrize("seed", [1])
def test_no_drift_when_clocks_agree(tmp_path: Path, seed: int) -> None:
    program = shared_program(45.0, seed=seed)
    a_path, b_path = tmp_path / "a.wav", tmp_path / "b.wav"
    write_audio(a_path, program[RATE:], RATE)
    write_audio(b_path, program, RATE)
    result = synchronize(a_path, b_path)
    assert result.drift_estimated
    assert abs(result.drift_ppm) < 10
    assert abs(result.offset_s - 1.0) < 2e-4


# ----------------------------------------------------------------------------- issue 11
# Drift of 150-300 ppm used to come out as 0 ppm with a 6-10 ms wrong offset and no warning:
# 10 s windows decorrelate under it (3 ms of slip at 300 ppm) and were dropped.

SHORT_RATE = 8000


def noise_program(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """Non-periodic test sound without shared data: bursts of coloured noise at random
    levels and lengths (0.2-1.5 s) over a quiet floor."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    out = rng.normal(0, 0.002, n)
    t = 0
    while t < n:
        length = int(rng.uniform(0.2, 1.5) * rate)
        burst = np.convolve(rng.normal(0, 1, length), np.ones(int(rng.integers(1, 6))), "same")
        out[t : t + length] += rng.uniform(0.02, 0.3) * burst[: n - t] * np.hanning(length)[: n - t]
        t += length + int(rng.uniform(0.0, 0.5) * rate)
    return out


def drifted_copy(program: np.ndarray, rate: int, offset_s: float, ppm: float) -> np.ndarray:
    """B as a body with ``ppm`` drift records it: B(t_B) = program(t_A) with
    t_B = offset_s + (1 + ppm * 1e-6) * t_A (sync.json's convention); band-limited by
    8x FFT upsampling, then linear interpolation."""
    d = ppm * 1e-6
    n = int((program.size / rate * (1 + d) + offset_s) * rate)
    t_a = (np.arange(n) / rate - offset_s) / (1 + d)
    spectrum = np.fft.rfft(program)
    up = np.fft.irfft(spectrum, program.size * 8) * 8
    return np.interp(t_a * rate * 8, np.arange(up.size), up, left=0, right=0)


@pytest.mark.parametrize("ppm", [150.0, -150.0, 300.0, -300.0])
def test_drift_up_to_300_ppm_is_recovered(ppm: float) -> None:
    program = noise_program(50.0, SHORT_RATE, seed=int(abs(ppm) + (ppm < 0)))
    offset = 0.8125
    a = program[: int(45.0 * SHORT_RATE)].astype(np.float32)
    b = drifted_copy(program, SHORT_RATE, offset, ppm).astype(np.float32)
    estimate = audio_offset(a, b, SHORT_RATE, SyncConfig(sample_rate=SHORT_RATE))
    assert estimate.drift is not None and estimate.drift.estimated
    assert estimate.drift.note == ""  # fitted on windows, not the coarse search alone
    assert abs(estimate.drift.drift_ppm - ppm) < 2.0
    assert abs(estimate.offset_s - offset) < 1e-3
    assert estimate.confidence > 0.5 and estimate.peak_correlation > 0.8
    # The windows are reported in B's own convention: on the fitted line.
    for w in estimate.drift.windows:
        line = estimate.offset_s + estimate.drift.drift_ppm * 1e-6 * w.t_a_s
        assert abs(w.offset_s - line) < 2e-4


def test_without_drift_search_the_old_answer_was_wrong() -> None:
    """The case that went unnoticed: no drift search (max_drift_ppm 0) at +300 ppm gives the
    mid-track offset, several ms off; the search recovers it."""
    program = noise_program(50.0, SHORT_RATE, seed=7)
    a = program[: int(45.0 * SHORT_RATE)].astype(np.float32)
    b = drifted_copy(program, SHORT_RATE, 0.5, 300.0).astype(np.float32)
    blind = audio_offset(a, b, SHORT_RATE, SyncConfig(sample_rate=SHORT_RATE, max_drift_ppm=0))
    assert abs(blind.offset_s - 0.5) > 3e-3
    searched = audio_offset(a, b, SHORT_RATE, SyncConfig(sample_rate=SHORT_RATE))
    assert abs(searched.offset_s - 0.5) < 1e-3


@pytest.mark.parametrize("ppm", [300.0, -150.0])
def test_drift_of_shared_sound_through_files(tmp_path: Path, ppm: float) -> None:
    """End to end through ``synchronize`` and WAV files, on real sound (shared clips)."""
    program = shared_program(50.0, SHORT_RATE, seed=5).astype(np.float64)
    offset = -1.25
    a = program[: int(45.0 * SHORT_RATE)]
    b = drifted_copy(program, SHORT_RATE, offset, ppm)  # B starts 1.25 s after A
    a_path, b_path = tmp_path / "a.wav", tmp_path / "b.wav"
    write_audio(a_path, a.astype(np.float32), SHORT_RATE, SHORT_RATE)
    write_audio(b_path, b.astype(np.float32), SHORT_RATE, SHORT_RATE)
    result = synchronize(a_path, b_path, SyncConfig(sample_rate=SHORT_RATE))
    assert result.method == "audio" and result.drift_estimated
    assert abs(result.drift_ppm - ppm) < 2.0
    assert abs(result.offset_s - offset) < 1e-3
    assert not any("whole-track" in w for w in result.warnings)


def test_drift_beyond_the_searched_range_is_not_silent() -> None:
    program = noise_program(50.0, SHORT_RATE, seed=3)
    a = program[: int(45.0 * SHORT_RATE)].astype(np.float32)
    b = drifted_copy(program, SHORT_RATE, 0.5, 300.0).astype(np.float32)
    config = SyncConfig(sample_rate=SHORT_RATE, max_drift_ppm=100.0)
    estimate = audio_offset(a, b, SHORT_RATE, config)
    assert estimate.drift is not None
    assert "edge of the searched range" in estimate.drift.note
