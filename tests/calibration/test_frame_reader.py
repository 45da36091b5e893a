"""One decoder defines "frame i" (issue 11): video_io.FrameReader against sync's decode.

Movies are generated with the imageio-ffmpeg binary; frame ``i`` carries its index in its
red channel (``R = 40 + 8 i``, G = 128, B = 200), so a reader returning another frame, a
duplicate or a dropped one, or swapped channels, is caught by pixel values.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from expokit.calibration.sync import frame_map
from expokit.core.errors import InputFileError
from expokit.core.video_io import (
    FrameReader,
    MediaDecodeError,
    MediaError,
    decode_frame_series,
    ffmpeg_exe,
    probe_media,
)
from tests.conftest import shared_path

FRAMES = 20
#: After frame 9 the timestamps jump by 7 frame intervals (frames lost at capture): VFR.
GAP_AFTER, GAP_FRAMES = 9, 7


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def _indexed_source() -> list[str]:
    return [
        "-f", "lavfi", "-i", f"color=c=black:s=64x48:r=25:d={FRAMES / 25},format=rgb24",
    ]  # fmt: skip


def _index_of(rgb: np.ndarray) -> int:
    return round((float(rgb[..., 0].mean()) - 40.0) / 8.0)


@pytest.fixture(scope="module")
def movies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("movies")
    paint = "geq=r='40+8*N':g='128':b='200'"
    vfr = folder / "vfr.mp4"
    _ffmpeg(
        *_indexed_source(),
        "-vf", f"{paint},setpts='(N+if(gt(N\\,{GAP_AFTER})\\,{GAP_FRAMES}\\,0))/25/TB'",
        "-fps_mode", "passthrough", "-c:v", "libx264", "-crf", "0", "-pix_fmt", "yuv444p",
        str(vfr),
    )  # fmt: skip
    full = folder / "full.avi"
    _ffmpeg(*_indexed_source(), "-vf", paint, "-c:v", "mjpeg", "-q:v", "2", str(full))
    data = full.read_bytes()
    truncated = folder / "truncated.avi"  # header (avih) still says FRAMES frames
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    return {"vfr": vfr, "full": full, "truncated": truncated}


def test_vfr_movie_frames_and_times_agree_with_sync_decode(movies: dict[str, Path]) -> None:
    path = movies["vfr"]
    info = probe_media(path)  # what `calibrate sync` records
    assert info.decoded_frames == FRAMES
    gaps = np.diff(info.frame_times)
    assert gaps[GAP_AFTER] == pytest.approx((GAP_FRAMES + 1) / 25, abs=1e-3)
    assert np.delete(gaps, GAP_AFTER) == pytest.approx(np.full(FRAMES - 2, 1 / 25), abs=1e-3)
    with FrameReader(path) as reader:
        assert reader.count() == FRAMES
        np.testing.assert_array_equal(reader.times(), info.frame_times)
        frames = list(reader)
    assert len(frames) == FRAMES
    assert [_index_of(f) for f in frames] == list(range(FRAMES))
    for frame in frames:  # RGB order, lossless-ish H.264 4:4:4
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
        assert abs(float(frame[..., 1].mean()) - 128) < 3
        assert abs(float(frame[..., 2].mean()) - 200) < 3
    # Frame-mean brightness of sync's decode and of the reader's pixels: one affine map
    # (sync's gray is limited-range luma), every frame on it.
    gray = np.array([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).mean() for f in frames])
    slope, intercept = np.polyfit(info.frame_means, gray, 1)
    assert slope > 0
    assert np.abs(gray - (slope * info.frame_means + intercept)).max() < 1.0


def test_sync_frame_map_points_at_the_right_pixels(movies: dict[str, Path]) -> None:
    """A frame map built from sync's timestamps reads the frames it means through the reader."""
    times = probe_media(movies["vfr"]).frame_times
    shifted = times + 3 / 25  # a second camera started 3 frames later, same gaps
    mapping = frame_map(times, shifted, 3 / 25)
    assert mapping == tuple(range(FRAMES))
    with FrameReader(movies["vfr"]) as reader:
        for i in (0, GAP_AFTER, GAP_AFTER + 1, FRAMES - 1):
            j = mapping[i]
            assert j is not None and _index_of(reader.frame(j)) == i


def test_header_claiming_more_frames_than_decode(movies: dict[str, Path]) -> None:
    path = movies["truncated"]
    info = probe_media(path)
    assert info.container_frames == FRAMES
    decoded = info.decoded_frames
    assert decoded is not None and 0 < decoded < FRAMES
    assert any("container header says" in w for w in info.warnings)
    times, _, _ = decode_frame_series(path)
    with FrameReader(path) as reader:
        assert reader.count() == decoded
        np.testing.assert_array_equal(reader.times(), times)
        assert [_index_of(f) for f in reader] == list(range(decoded))
        assert _index_of(reader.frame(decoded - 1)) == decoded - 1
        with pytest.raises(MediaError, match=rf"decodes only {decoded} frames; frame {decoded}"):
            reader.frame(decoded)
    # A fresh reader opened straight past the end (select skip) counts to say so.
    with FrameReader(path) as fresh, pytest.raises(InputFileError) as caught:
        fresh.frame(FRAMES - 1)
    assert caught.value.path == path
    assert f"decodes only {decoded} frames; frame {FRAMES - 1} was requested" in str(caught.value)
    # The untruncated movie decodes every frame the header claims.
    with FrameReader(movies["full"]) as reader:
        assert reader.count() == FRAMES == probe_media(movies["full"]).decoded_frames
        assert [_index_of(f) for f in reader] == list(range(FRAMES))


def test_forward_skips_backward_reopens(movies: dict[str, Path]) -> None:
    with FrameReader(movies["vfr"]) as reader:
        order = [15, 3, 3, 4, 12, 0, 19, 18]
        got = [_index_of(reader.frame(i)) for i in order]
        assert got == order
        assert reader.frame(18) is reader.frame(18)  # the last frame is kept
        first = reader.frame(5)
        first[:] = 0  # frames are writable copies, not views of a shared buffer
        assert _index_of(reader.frame(6)) == 6 and _index_of(reader.frame(5)) == 5
        assert [_index_of(f) for f in reader] == list(range(FRAMES))  # iteration restarts
        with pytest.raises(ValueError, match="frame index"):
            reader.frame(-1)
    assert reader._proc is None  # the context manager ended ffmpeg


def test_build_reader_is_bgr_and_infer_reader_rgb(movies: dict[str, Path]) -> None:
    from expokit.curation.build.sources import FrameReader as BuildReader
    from expokit.curation.build.sources import ImageRef, load_image
    from expokit.models.infer import read_frames

    with BuildReader(str(movies["vfr"])) as build, read_frames(movies["vfr"]) as infer:
        assert build.count() == FRAMES
        bgr, rgb = build.frame(GAP_AFTER + 1), infer.frame(GAP_AFTER + 1)
        np.testing.assert_array_equal(bgr, rgb[..., ::-1])
        assert _index_of(rgb) == GAP_AFTER + 1
    ref = ImageRef(path=str(movies["vfr"]), role="test", frame=GAP_AFTER + 1)
    loaded = load_image(ref)
    np.testing.assert_array_equal(loaded.pixels, bgr)


def test_unreadable_inputs_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.mp4"
    with pytest.raises(MediaError, match=r"missing\.mp4: no such file"):
        FrameReader(missing).frame(0)
    with pytest.raises(MediaError, match=r"missing\.mp4: no such file"):
        FrameReader(missing).count()
    text = tmp_path / "notes.mp4"
    text.write_text("not a movie\n")
    with pytest.raises(MediaDecodeError, match=r"notes\.mp4: no video frame decodes"):
        FrameReader(text).frame(0)
    with pytest.raises(ValueError, match="channels"):
        FrameReader(text, channels="yuv")


def test_real_clip_with_audio_counts_like_sync() -> None:
    path = shared_path("video", "Megamind_bugy.avi")
    info = probe_media(path)
    with FrameReader(path) as reader:
        assert reader.count() == info.decoded_frames
        assert reader.shape == (info.height, info.width)
        last = reader.frame(reader.count() - 1)
        assert last.shape == (info.height, info.width, 3)
