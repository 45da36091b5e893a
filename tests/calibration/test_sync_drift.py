"""Clock drift: B is A resampled by ~+100 ppm (made with ffmpeg from shared audio)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from expokit.calibration.sync import SyncConfig, apply_sync, drift_warning, synchronize
from expokit.calibration.synthetic import shuffled_audio
from expokit.calibration.video_io import ffmpeg_exe
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
