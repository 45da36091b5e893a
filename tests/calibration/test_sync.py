"""Temporal sync (expokit.calibration.sync): real clips with known offsets, fallbacks, errors."""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from expokit.calibration.sync import (
    LowConfidenceError,
    NoSyncCueError,
    apply_sync,
    synchronize,
    trim_plan,
)
from expokit.calibration.sync_audio import audio_offset, xcorr
from expokit.calibration.sync_record import (
    SYNC_FORMAT_VERSION,
    SyncConfig,
    SyncFileError,
    load_sync_json,
    write_sync_json,
)
from expokit.core.atomic import TEMP_PREFIX
from expokit.core.errors import ExpokitError, InputFileError
from expokit.core.video_io import SYNC_CONVENTION as CONVENTION
from expokit.core.video_io import (
    EmptyMediaError,
    MediaDecodeError,
    MediaError,
    NoAudioError,
    SilentAudioError,
    decode_audio,
    ffmpeg_exe,
    probe_media,
)
from tests.conftest import shared_path

AVBS = ("video", "audio_offset_avbs")


def _ffmpeg(*args: str, stdin: bytes | None = None) -> None:
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    if stdin is not None:
        cmd.remove("-nostdin")
    subprocess.run(cmd, input=stdin, check=True, capture_output=True)


# ----------------------------------------------------------------------------- numerics


def test_xcorr_lag_sign_matches_convention() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(1000)
    b = np.concatenate([np.zeros(37), a])[:1000]  # b shows a's sample n at n + 37
    c = xcorr(a, b, -100, 100)
    assert int(np.argmax(c)) - 100 == 37


def test_audio_offset_subsample_on_synthetic_noise() -> None:
    rate = 8000
    rng = np.random.default_rng(1)
    fine = rng.standard_normal(20 * rate * 8)
    # Band-limit by averaging 8 samples, then take every 8th sample from a fractional start:
    # b is a, delayed by 1234 + 3/8 samples (event in A at t is at t + offset in B).
    smooth = np.convolve(fine, np.ones(8) / 8, mode="same")
    a = smooth[8 * 3000 :: 8][: 12 * rate].astype(np.float32)
    b = smooth[8 * 3000 - (8 * 1234 + 3) :: 8][: 12 * rate].astype(np.float32)
    estimate = audio_offset(a, b, rate, SyncConfig(sample_rate=rate))
    expected = (1234 + 3 / 8) / rate
    assert estimate.method == "audio"
    assert abs(estimate.offset_s - expected) < 0.2 / rate
    assert estimate.confidence > 0.8


def test_periodic_audio_is_not_confident() -> None:
    rate = 8000
    t = np.arange(10 * rate) / rate
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    estimate = audio_offset(tone, tone[1000:], rate, SyncConfig(sample_rate=rate))
    assert estimate.confidence < 0.1  # every period correlates equally: no confident answer


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="method"):
        SyncConfig(method="lips")
    with pytest.raises(ValueError, match="sample rate"):
        SyncConfig(sample_rate=100)
    with pytest.raises(ValueError, match="max offset"):
        SyncConfig(max_offset_s=-1)
    with pytest.raises(ValueError, match="min confidence"):
        SyncConfig(min_confidence=2)
    with pytest.raises(ValueError, match="min_brightness_events"):
        SyncConfig(min_brightness_events=-1)
    config = SyncConfig(max_offset_s=30)
    assert SyncConfig.from_dict(config.to_dict()) == config


# ----------------------------------------------------------------------------- real clips


@pytest.mark.parametrize(("name", "start_s"), [("3-secs-in.mp4", 3.0), ("7-secs-in.mp4", 7.0)])
def test_known_offsets_within_one_ms(name: str, start_s: float) -> None:
    full = shared_path(*AVBS, "full.mp4")
    part = shared_path(*AVBS, name)
    result = synchronize(full, part)
    # The part starts start_s into full: an event at t in full is at t - start_s in part.
    assert result.method == "audio"
    assert abs(result.offset_s - (-start_s)) < 1e-3
    assert result.confidence > 0.8
    assert result.peak_correlation > 0.9
    assert result.media_a.decoded_frames == 377
    assert result.media_a.fps == pytest.approx(25.0)
    assert result.offset_frames_a == pytest.approx(-start_s * 25, abs=0.03)
    # A frame i of full shows what frame i - 25 * start_s of the part shows.
    assert result.frame_map is not None
    assert result.frame_map[200] == 200 - round(25 * start_s)
    assert result.frame_map[0] is None


def test_swapped_order_flips_sign() -> None:
    full = shared_path(*AVBS, "full.mp4")
    part = shared_path(*AVBS, "3-secs-in.mp4")
    result = synchronize(part, full)
    assert abs(result.offset_s - 3.0) < 1e-3
    assert result.time_in_b(1.0) == pytest.approx(4.0, abs=1e-3)


def test_rooftop_pair_offset_and_convention(tmp_path: Path) -> None:
    folder = shared_path("video", "twoview_rooftop_pulsejet")
    result = synchronize(folder / "left.mp4", folder / "right.mp4")
    # SOURCES.md: a sound at t in left.mp4 is at t + 0.009 s in right.mp4.
    assert result.method == "audio"
    assert abs(result.offset_s - 0.009) < 0.005
    assert result.confidence > 0.5
    document = result.to_dict()
    assert document["convention"] == CONVENTION
    assert "t_B - t_A" in document["convention"]


def test_no_audio_pair_says_why_there_is_no_cue() -> None:
    """Neither clip has audio and the frame-mean brightness is flat (largest change 0.11 of
    255): no cue at all, and the message names both reasons and the file."""
    folder = shared_path("video", "twoview_stereo_gray_vivvyk")
    with pytest.raises(NoSyncCueError) as info:
        synchronize(folder / "left.avi", folder / "right.avi")
    text = str(info.value)
    assert "no audio track" in text
    assert "brightness is flat" in text
    assert "left.avi" in text
    with pytest.raises(NoAudioError, match=r"left\.avi"):
        synchronize(folder / "left.avi", folder / "right.avi", SyncConfig(method="audio"))


def test_tiny_clips_without_audio_never_give_a_confident_answer(tmp_path: Path) -> None:
    full, part = tmp_path / "noaudio-full.mp4", tmp_path / "noaudio-3-secs-in.mp4"
    for name, target in (("full.mp4", full), ("3-secs-in.mp4", part)):
        _ffmpeg("-i", str(shared_path(*AVBS, name)), "-an", "-c:v", "copy", str(target))
    # The clips' frame-mean brightness is flat: no light change to synchronize on.
    with pytest.raises(NoSyncCueError, match="no audio track") as info:
        synchronize(full, part)
    assert "brightness is flat" in str(info.value)
    with pytest.raises(NoSyncCueError, match="brightness is flat"):
        synchronize(full, part, SyncConfig(method="brightness"))


def test_megamind_frame_rates_and_decoded_counts(tmp_path: Path) -> None:
    normal = shared_path("video", "Megamind.avi")
    bugy = shared_path("video", "Megamind_bugy.avi")
    with pytest.raises(LowConfidenceError, match="frame rates differ"):
        synchronize(normal, bugy)
    result = synchronize(normal, bugy, SyncConfig(min_confidence=0.0))
    assert result.media_a.fps == pytest.approx(23.976, abs=1e-3)
    assert result.media_b.fps == pytest.approx(30.0, abs=1e-3)
    assert result.media_a.decoded_frames == result.media_b.decoded_frames == 270
    assert result.media_b.has_audio is False
    assert result.method == "brightness"
    assert result.frame_map is not None and len(result.frame_map) == 270
    path = write_sync_json(result, tmp_path / "sync.json")
    data = json.loads(path.read_text())
    assert data["a"]["fps"] == pytest.approx(23.976, abs=1e-3)
    assert data["b"]["fps"] == pytest.approx(30.0, abs=1e-3)
    assert data["a"]["decoded_frames"] == data["b"]["decoded_frames"] == 270
    assert any("frame rates differ" in w for w in data["warnings"])


def test_header_frame_count_is_not_trusted(tmp_path: Path) -> None:
    import cv2

    path = tmp_path / "full.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(40):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    cut = tmp_path / "cut.avi"  # header still says 40 frames, the data holds fewer
    cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    info = probe_media(cut)
    assert info.container_frames == 40
    assert info.decoded_frames is not None and 10 < info.decoded_frames < 40
    assert info.frame_times.size == info.decoded_frames
    assert np.all(np.diff(info.frame_times) > 0)
    assert any("container header says 40 frames" in w for w in info.warnings)


# ----------------------------------------------------------------------------- brightness


def _flash_video(
    path: Path,
    fps: str,
    scene_start_s: float,
    seconds: float,
    switches: tuple[float, ...] = (1.3, 2.9, 3.4, 5.8, 6.1, 7.7),
) -> None:
    """Gray clip of a textured scene whose light toggles at known scene times."""
    rate = Fraction(fps)
    toggles = np.array(switches)
    rng = np.random.default_rng(5)
    texture = rng.normal(0, 12, (48, 64))
    frames = []
    for i in range(int(seconds * rate)):
        t = scene_start_s + float(i / rate)
        light = 160.0 if np.searchsorted(toggles, t, side="right") % 2 else 80.0
        frame = light + texture + rng.normal(0, 2, texture.shape)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    _ffmpeg(
        "-f", "rawvideo", "-pix_fmt", "gray", "-s", "64x48", "-framerate", fps, "-i", "-",
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", "-pix_fmt", "yuv420p",
        str(path), stdin=np.stack(frames).tobytes(),
    )  # fmt: skip


def test_brightness_sync_with_different_frame_rates(tmp_path: Path) -> None:
    a, b = tmp_path / "a30.mp4", tmp_path / "b23976.mp4"
    _flash_video(a, "30", 0.0, 9.0)
    _flash_video(b, "24000/1001", 1.5, 7.0)  # B starts 1.5 s later: offset -1.5 s
    result = synchronize(a, b)
    assert result.method == "brightness"
    assert result.attempts and "no audio track" in result.attempts[-1]
    assert abs(result.offset_s - (-1.5)) < 1.001 / 23.976
    assert result.confidence > 0.5
    assert result.media_b.fps == pytest.approx(24000 / 1001, abs=1e-3)
    assert result.offset_frames_b == pytest.approx(-1.5 * 24000 / 1001, abs=1.01)
    assert result.frame_map is not None
    times_b = result.media_b.frame_times
    for i, j in enumerate(result.frame_map):
        target = result.media_a.frame_times[i] + result.offset_s
        if j is None:
            assert target < times_b[0] or target > times_b[-1] - 0.02
        else:
            assert abs(times_b[j] - target) <= 0.5 * 1001 / 24000 + 1e-6


def test_single_light_change_is_not_trusted(tmp_path: Path) -> None:
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    _flash_video(a, "30", 0.0, 9.0, switches=(4.0,))
    _flash_video(b, "30", 1.0, 7.0, switches=(4.0,))
    with pytest.raises(LowConfidenceError, match="coincide"):
        synchronize(a, b)  # one event lines up with any other: no evidence of the offset
    _flash_video(a, "30", 0.0, 9.0, switches=(3.0, 5.0, 6.5))
    _flash_video(b, "30", 1.0, 7.0, switches=(3.0, 5.0, 6.5))
    result = synchronize(a, b)
    assert result.method == "brightness" and abs(result.offset_s + 1.0) < 1 / 30
    assert result.events_matched == 3


def test_unrelated_clips_are_refused() -> None:
    # Audio: the peak stands out by chance (confidence ~0.27) but explains nothing (0.06).
    with pytest.raises(LowConfidenceError, match="peak correlation"):
        synchronize(
            shared_path("video", "Megamind.avi"),
            shared_path(*AVBS, "full.mp4"),
            SyncConfig(method="audio"),
        )
    # Brightness: Megamind_bugy's dense flicker lines up with a few of the rooftop's changes.
    with pytest.raises(LowConfidenceError, match="brightness"):
        synchronize(
            shared_path("video", "Megamind_bugy.avi"),
            shared_path("video", "twoview_rooftop_pulsejet", "right.mp4"),
        )


# ----------------------------------------------------------------------------- bad input


def test_corrupt_empty_and_missing_files(tmp_path: Path) -> None:
    good = shared_path(*AVBS, "full.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaDecodeError, match=r"corrupt\.mp4") as info:
        synchronize(corrupt, good)
    assert isinstance(info.value, InputFileError) and info.value.path == corrupt
    with pytest.raises(EmptyMediaError, match=r"empty.mp4: file is empty"):
        synchronize(good, empty)
    with pytest.raises(MediaError, match="no such file"):
        synchronize(good, tmp_path / "missing.mp4")
    with pytest.raises(MediaDecodeError):
        decode_audio(corrupt)


def test_silent_track(tmp_path: Path) -> None:
    silent = tmp_path / "silent.m4a"
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "5", "-c:a", "aac", str(silent))
    good = shared_path(*AVBS, "full.mp4")
    with pytest.raises(SilentAudioError, match=r"silent.m4a: audio track is silent"):
        synchronize(silent, good, SyncConfig(method="audio"))
    # auto: the silent file has no video either, so there is nothing at all to sync on.
    with pytest.raises(NoSyncCueError, match="silent") as info:
        synchronize(good, silent)
    assert isinstance(info.value, ExpokitError)


# ----------------------------------------------------------------------------- sync.json


def test_sync_json_round_trip_and_version_check(tmp_path: Path) -> None:
    result = synchronize(shared_path(*AVBS, "full.mp4"), shared_path(*AVBS, "7-secs-in.mp4"))
    path = write_sync_json(result, tmp_path / "out" / "sync.json")
    assert not list(path.parent.glob(f"{TEMP_PREFIX}*"))
    data = json.loads(path.read_text())
    assert data["format_version"] == SYNC_FORMAT_VERSION
    for key in ("offset_s", "drift_ppm", "confidence", "method", "convention", "frame_map"):
        assert key in data
    assert data["a"]["decoded_frames"] == 377 and data["b"]["decoded_frames"] == 202
    assert len(data["frame_map"]["b_index_for_a"]) == 377
    loaded = load_sync_json(path)
    assert loaded.offset_s == result.offset_s
    assert loaded.method == result.method
    assert loaded.frame_map == result.frame_map
    assert loaded.config == result.config
    assert loaded.media_b.decoded_frames == 202
    assert trim_plan(loaded) == pytest.approx(trim_plan(result))

    data["format_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(SyncFileError, match="format_version 99 is not supported"):
        load_sync_json(path)
    path.write_text("{not json")
    with pytest.raises(SyncFileError, match=r"not a readable sync\.json"):
        load_sync_json(path)
    with pytest.raises(SyncFileError, match="no such file"):
        load_sync_json(tmp_path / "nope.json")


def test_apply_writes_aligned_copies(tmp_path: Path) -> None:
    full = shared_path(*AVBS, "full.mp4")
    part = shared_path(*AVBS, "3-secs-in.mp4")
    result = synchronize(full, part)
    out_a, out_b = apply_sync(result, tmp_path / "synced")
    assert out_a.name == "full_sync.mp4" and out_b.name == "3-secs-in_sync.mp4"
    again = synchronize(out_a, out_b)
    assert abs(again.offset_s) < 1e-3
    info_a, info_b = again.media_a, again.media_b
    assert info_a.decoded_frames == info_b.decoded_frames == 302
    assert abs(info_a.media_duration_s - info_b.media_duration_s) < 0.05
