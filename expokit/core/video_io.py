"""Read audio and frame timing from video files with ffmpeg (the imageio-ffmpeg binary).

imageio-ffmpeg ships ``ffmpeg`` but no ``ffprobe``, so stream metadata comes from parsing
``ffmpeg -i`` and container frame counts from OpenCV, while everything that matters for
synchronization is *decoded*:

* frame timing: one decode pass per file prints every frame's presentation time
  (``showinfo``) and writes an 8x8 area-averaged float gray copy of the frame, whose mean is
  the frame-mean brightness used by the video-only fallback. Container headers are recorded
  but never trusted (AVI headers can claim more frames than decode, a wrong header frame
  rate stretches the whole clip).
* audio: mono float32 at a chosen rate, aligned to the file's timeline (``aresample`` with
  ``first_pts=0`` pads or trims so that sample ``n`` is at ``n / rate`` seconds after the
  container start, like the frame times).

Every failure is an :class:`~expokit.core.errors.InputFileError` subclass naming the file.
"""

from __future__ import annotations

import contextlib
import math
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from expokit.core.errors import InputFileError

#: How ``sync.json`` states a temporal offset and drift (``A``, ``B``: the two files).
SYNC_CONVENTION = (
    "offset_s = t_B - t_A: an event at t seconds from the start of A happens at "
    "t + offset_s + drift_ppm * 1e-6 * t seconds from the start of B; offset_s > 0 means B "
    "started recording earlier (apply cuts offset_s seconds from the start of B)"
)

#: Side of the area-averaged gray thumbnail decoded per frame (its mean is the frame mean).
THUMB_SIDE = 8


class MediaError(InputFileError):
    """A media file cannot be read (missing, empty, corrupt, no usable stream)."""


class EmptyMediaError(MediaError):
    """The file has zero bytes."""


class MediaDecodeError(MediaError):
    """ffmpeg cannot open or decode the file."""


class NoAudioError(MediaError):
    """The file has no audio track (or the track decodes to nothing)."""


class SilentAudioError(MediaError):
    """The audio track is silent: nothing to correlate."""


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds, from its header and from decoding it.

    Times are seconds from the container start (ffmpeg's timeline, ``start_s`` removed).

    Attributes
    ----------
    duration_s
        Container duration (``ffmpeg -i``), ``None`` when unknown.
    fps_container
        Frame rate the header claims (OpenCV/ffmpeg ``avg_frame_rate``).
    container_frames
        Frame count the header claims (OpenCV ``CAP_PROP_FRAME_COUNT``); may be wrong.
    decoded_frames
        Frames that really decode; ``None`` when the video was not decoded.
    frame_times
        Shape ``(decoded_frames,)``, float64 seconds: presentation time of each decoded frame.
    frame_means
        Shape ``(decoded_frames,)``, float64 in ``[0, 255]``: mean gray level of each frame.
    warnings
        Header/decode disagreements worth reporting.
    """

    path: Path
    size_bytes: int
    duration_s: float | None
    start_s: float
    has_video: bool
    has_audio: bool
    video_codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps_container: float | None = None
    container_frames: int | None = None
    decoded_frames: int | None = None
    audio_codec: str | None = None
    audio_rate: int | None = None
    audio_channels: str | None = None
    warnings: tuple[str, ...] = ()
    frame_times: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    frame_means: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    @property
    def fps(self) -> float | None:
        """Average frame rate of the *decoded* timestamps (header rate if not decoded)."""
        times = self.frame_times
        if times.size >= 2 and times[-1] > times[0]:
            return float((times.size - 1) / (times[-1] - times[0]))
        return self.fps_container

    @property
    def decoded_duration_s(self) -> float | None:
        """End of the last decoded frame (its time plus one average frame interval)."""
        fps = self.fps
        if self.frame_times.size == 0 or not fps:
            return None
        return float(self.frame_times[-1] + 1.0 / fps)

    @property
    def media_duration_s(self) -> float:
        """Best duration available: container, else decoded video end, else 0."""
        if self.duration_s is not None:
            return self.duration_s
        return self.decoded_duration_s or 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no per-frame arrays)."""
        fps = self.fps
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "duration_s": self.duration_s,
            "start_s": self.start_s,
            "has_video": self.has_video,
            "has_audio": self.has_audio,
            "video_codec": self.video_codec,
            "width": self.width,
            "height": self.height,
            "fps": fps,
            "fps_container": self.fps_container,
            "container_frames": self.container_frames,
            "decoded_frames": self.decoded_frames,
            "first_frame_s": float(self.frame_times[0]) if self.frame_times.size else None,
            "audio_codec": self.audio_codec,
            "audio_rate": self.audio_rate,
            "audio_channels": self.audio_channels,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MediaInfo:
        """Inverse of :meth:`to_dict`; per-frame arrays are not stored and come back empty."""
        names = {
            "size_bytes", "duration_s", "start_s", "has_video", "has_audio", "video_codec",
            "width", "height", "fps_container", "container_frames", "decoded_frames",
            "audio_codec", "audio_rate", "audio_channels",
        }  # fmt: skip
        kwargs = {k: data[k] for k in names if k in data}
        return cls(path=Path(data["path"]), warnings=tuple(data.get("warnings", ())), **kwargs)


def run_ffmpeg(args: list[str]) -> tuple[int, bytes, bytes]:
    """Run the bundled ffmpeg with ``args``; return ``(returncode, stdout, stderr)``.

    stdout is read in one ``read()`` (``subprocess.run`` reads pipes in 32 KiB polls, which
    costs a noticeable fraction of a 10-minute decode) while stderr goes to a temporary file,
    so neither pipe can fill up and block ffmpeg.
    """
    with tempfile.TemporaryFile() as errors:
        with subprocess.Popen(
            [ffmpeg_exe(), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors
        ) as proc:
            assert proc.stdout is not None
            out = proc.stdout.read()
            code = proc.wait()
        errors.seek(0)
        return code, out, errors.read()


# ----------------------------------------------------------------------------- header


_DURATION_RE = re.compile(r"Duration:\s*(N/A|(\d+):(\d+):([\d.]+))(?:,\s*start:\s*(-?[\d.]+))?")
_STREAM_RE = re.compile(r"Stream #\d+:\d+\S*:\s*(Video|Audio|Subtitle|Data):\s*(\w+)(.*)")


def _check_file(path: Path) -> int:
    if not path.exists():
        raise MediaError(path, "no such file")
    if path.is_dir():
        raise MediaError(path, "is a folder, not a media file")
    size = path.stat().st_size
    if size == 0:
        raise EmptyMediaError(path, "file is empty (0 bytes)")
    return size


def _ffmpeg_error_line(stderr: str) -> str:
    """The most informative line of ffmpeg's error output."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for line in reversed(lines):
        if "Invalid data" in line or "could not find" in line.lower() or "error" in line.lower():
            return re.sub(r"^\[[^]]*\]\s*", "", line)
    return lines[-1] if lines else "no output"


def _parse_header(path: Path, stderr: str) -> dict[str, Any]:
    info: dict[str, Any] = {"has_video": False, "has_audio": False}
    match = _DURATION_RE.search(stderr)
    if match and match.group(1) != "N/A":
        hours, minutes, seconds = match.group(2), match.group(3), match.group(4)
        info["duration_s"] = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    info["start_s"] = float(match.group(5)) if match and match.group(5) else 0.0
    for kind, codec, rest in _STREAM_RE.findall(stderr):
        if kind == "Video" and not info["has_video"]:
            if codec in ("png", "mjpeg") and "attached pic" in rest:
                continue  # cover art, not a video track
            info["has_video"] = True
            info["video_codec"] = codec
            size = re.search(r", (\d+)x(\d+)", rest)
            if size:
                info["width"], info["height"] = int(size.group(1)), int(size.group(2))
            fps = re.search(r", ([\d.]+) fps", rest)
            if fps:
                info["fps_container"] = float(fps.group(1))
        elif kind == "Audio" and not info["has_audio"]:
            info["has_audio"] = True
            info["audio_codec"] = codec
            rate = re.search(r", (\d+) Hz", rest)
            if rate:
                info["audio_rate"] = int(rate.group(1))
            layout = re.search(r" Hz, ([^,]+)", rest)
            if layout:
                info["audio_channels"] = layout.group(1).strip()
    return info


def _container_video_meta(path: Path) -> tuple[int | None, float | None]:
    """Frame count and frame rate as the container states them (OpenCV reads the header)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return None, None
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    frames = round(count) if math.isfinite(count) and count > 0 else None
    rate = float(fps) if math.isfinite(fps) and fps > 0 else None
    return frames, rate


# ----------------------------------------------------------------------------- decoding


_SHOWINFO_RE = re.compile(rb"\bn:\s*(\d+)\s+pts:\s*(\S+)\s+pts_time:(\S+)")
_TIME_BASE_RE = re.compile(rb"config in time_base:\s*(\d+)/(\d+)")


def decode_frame_series(path: str | Path) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Decode every video frame: presentation times and frame-mean brightness.

    Frames are passed through unchanged (``-fps_mode passthrough``: no frame is duplicated
    or dropped to fit a nominal rate), shrunk to an 8x8 area average in float gray.

    Returns
    -------
    times
        Shape ``(n,)`` float64 seconds from the container start.
    means
        Shape ``(n,)`` float64 gray level in ``[0, 255]``.
    problem
        ffmpeg's error line when decoding stopped with an error after some frames, else None.

    Raises
    ------
    MediaDecodeError
        No frame decodes.
    """
    path = Path(path)
    side = THUMB_SIDE
    code, out, err = run_ffmpeg([
        "-hide_banner", "-nostdin", "-loglevel", "info", "-i", str(path),
        "-map", "0:v:0", "-an", "-sn", "-dn", "-fps_mode", "passthrough",
        "-vf", f"scale={side}:{side}:flags=area,format=grayf32,showinfo",
        "-f", "rawvideo", "-pix_fmt", "grayf32", "-",
    ])  # fmt: skip
    data = np.frombuffer(out[: len(out) - len(out) % 4], dtype=np.float32)
    n = data.size // (side * side)
    stderr = err.decode("utf-8", "replace")
    if n == 0:
        raise MediaDecodeError(
            path, f"no video frame decodes (ffmpeg: {_ffmpeg_error_line(stderr)})"
        )
    means = data[: n * side * side].reshape(n, side * side).astype(np.float64).mean(axis=1) * 255.0
    times = np.full(n, np.nan)
    # Integer pts times the filter time base is exact; pts_time is printed with 6 digits.
    base = _TIME_BASE_RE.search(err)
    time_base = int(base.group(1)) / int(base.group(2)) if base and int(base.group(2)) else None
    for index, pts, pts_time in _SHOWINFO_RE.findall(err):
        i = int(index)
        if i >= n:
            continue
        with contextlib.suppress(ValueError):  # "NOPTS": filled below
            times[i] = int(pts) * time_base if time_base else float(pts_time)
    if np.isnan(times).any():
        times = _fill_missing_times(times)
    problem = _ffmpeg_error_line(stderr) if code != 0 else None
    return times, means, problem


_OUTPUT_SIZE_RE = re.compile(r"Output #0.*?Stream #0:0\S*: Video:[^\n]*?, (\d+)x(\d+)", re.S)


class FrameReader:
    """Full-size decoded frames of one movie: frame ``i`` is the ``i``-th frame that
    :func:`decode_frame_series` (and so ``sync.json``'s frame map) counts.

    One ffmpeg process (the imageio-ffmpeg binary) decodes the first video track with
    ``-fps_mode passthrough`` (no frame dropped or duplicated to fit a nominal rate) into a
    raw ``rgb24``/``bgr24`` pipe, exactly as the timing decode does, so container headers
    (AVI frame counts, nominal rates) never decide what "frame i" is. Access is sequential:
    asking for a later frame reads forward, an earlier one re-opens the movie (skipping the
    frames before it inside ffmpeg with ``select``, which counts the same decoded frames).

    Parameters
    ----------
    path
        Movie file.
    channels
        ``"rgb"`` (default) or ``"bgr"`` (OpenCV order) for the returned ``(H, W, 3)`` uint8.

    The reader is a context manager; :meth:`close` ends the ffmpeg process.

    Raises
    ------
    MediaError
        (an :class:`~expokit.core.errors.InputFileError`) naming the file: missing, empty,
        no frame decodes, or a frame index the movie does not have.
    """

    def __init__(self, path: str | Path, *, channels: str = "rgb") -> None:
        if channels not in ("rgb", "bgr"):
            raise ValueError(f"channels must be 'rgb' or 'bgr', got {channels!r}")
        self.path = Path(path)
        self.channels = channels
        self._proc: subprocess.Popen[bytes] | None = None
        self._errors: Any = None
        self._next = 0
        self._last: tuple[int, np.ndarray] | None = None
        self._shape: tuple[int, int] | None = None
        self._times: np.ndarray | None = None
        self._start = 0
        self._frame_shape = (0, 0, 3)

    # -- metadata

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the decoded frames (after ffmpeg's rotation metadata)."""
        if self._shape is None:
            _check_file(self.path)
            _, _, err = run_ffmpeg([
                "-hide_banner", "-nostdin", "-i", str(self.path), "-map", "0:v:0",
                "-an", "-sn", "-dn", "-fps_mode", "passthrough", "-frames:v", "1",
                "-vf", f"format={self.channels}24", "-f", "null", "-",
            ])  # fmt: skip
            stderr = err.decode("utf-8", "replace")
            match = _OUTPUT_SIZE_RE.search(stderr)
            if match is None:
                raise MediaDecodeError(
                    self.path, f"no video frame decodes (ffmpeg: {_ffmpeg_error_line(stderr)})"
                )
            self._shape = (int(match.group(2)), int(match.group(1)))
        return self._shape

    def count(self) -> int:
        """Frames that decode: the count :func:`decode_frame_series` gives (one decode pass)."""
        return int(self.times().size)

    def times(self) -> np.ndarray:
        """Presentation time of each frame, seconds from the container start (as sync has them)."""
        if self._times is None:
            _check_file(self.path)
            self._times, _, _ = decode_frame_series(self.path)
        return self._times

    # -- pixels

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based, decode order), ``(H, W, 3)`` uint8 in :attr:`channels` order.

        Raises
        ------
        MediaError
            The movie has no frame ``index`` (the message says how many decode).
        """
        if index < 0:
            raise ValueError(f"frame index must be >= 0, got {index}")
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        if self._proc is None or index < self._next:
            self._open(index)
        image = None
        while self._next <= index:
            image = self._read_one()
            if image is None:
                self._missing(index)
            self._next += 1
        assert image is not None
        self._last = (index, image)
        return image

    def __iter__(self) -> Iterator[np.ndarray]:
        """Every frame from frame 0, in decode order (one sequential pass)."""
        self._open(0)
        while True:
            image = self._read_one()
            if image is None:
                return
            self._next += 1
            yield image

    @property
    def problem(self) -> str | None:
        """ffmpeg's last error line from the current or last decode, if it printed one."""
        if self._errors is None:
            return None
        self._errors.seek(0)
        text = self._errors.read().decode("utf-8", "replace")
        return _ffmpeg_error_line(text) if text.strip() else None

    def close(self) -> None:
        """End the ffmpeg process (a later :meth:`frame` re-opens the movie)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdout is not None:
                proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self._last = None
        self._next = 0

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        if self._errors is not None:
            self._errors.close()
            self._errors = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.__exit__()

    # -- internals

    def _open(self, start: int) -> None:
        height, width = self.shape
        self.close()
        if self._errors is not None:
            self._errors.close()
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the reader)
        skip = ["-vf", f"select=gte(n\\,{start})"] if start > 0 else []
        args = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
            "-i", str(self.path), "-map", "0:v:0", "-an", "-sn", "-dn",
            "-fps_mode", "passthrough", *skip,
            "-f", "rawvideo", "-pix_fmt", f"{self.channels}24", "-",
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._errors
        )
        self._start = self._next = start
        self._frame_shape = (height, width, 3)

    def _read_one(self) -> np.ndarray | None:
        """The next frame from the pipe, or ``None`` at the end of the stream."""
        assert self._proc is not None and self._proc.stdout is not None
        pipe: Any = self._proc.stdout  # a BufferedReader (typed IO[bytes], which lacks readinto)
        image = np.empty(self._frame_shape, dtype=np.uint8)
        view = image.data.cast("B")
        filled = 0
        while filled < len(view):
            got = pipe.readinto(view[filled:])
            if not got:
                return None
            filled += got
        return image

    def _missing(self, index: int) -> None:
        exact = self._next > self._start or self._start == 0  # else opened past the end
        decoded = self._next if exact else self.count()
        problem = self.problem
        self.close()
        if decoded == 0:
            raise MediaDecodeError(
                self.path, f"no video frame decodes (ffmpeg: {problem or 'no output'})"
            )
        raise MediaError(
            self.path,
            f"decodes only {decoded} frames; frame {index} was requested"
            + (f" (ffmpeg: {problem})" if problem else ""),
        )


def _fill_missing_times(times: np.ndarray) -> np.ndarray:
    """Frames without a timestamp get one interpolated from their neighbours' spacing."""
    known = np.flatnonzero(~np.isnan(times))
    index = np.arange(times.size, dtype=np.float64)
    if known.size >= 2:
        slope, intercept = np.polyfit(known, times[known], 1)
        filled = np.where(np.isnan(times), intercept + slope * index, times)
        return np.asarray(filled, dtype=np.float64)
    if known.size == 1:
        return np.asarray(times[known[0]] + (index - known[0]) / 25.0, dtype=np.float64)
    return index / 25.0  # nothing known: only the order is meaningful


def probe_media(path: str | Path, *, decode_video: bool = True) -> MediaInfo:
    """Header metadata of ``path`` plus, by default, decoded frame timing and brightness.

    Parameters
    ----------
    path
        Any file ffmpeg reads (video with or without audio, audio only).
    decode_video
        Decode every frame for timestamps and frame means (one ffmpeg pass, 8x8 gray); with
        ``False`` only the header is read and ``decoded_frames`` is ``None``.

    Raises
    ------
    MediaError
        Missing, empty or unreadable file, or no audio and no video stream.
    """
    path = Path(path)
    size = _check_file(path)
    _, _, err = run_ffmpeg(["-hide_banner", "-nostdin", "-i", str(path)])
    stderr = err.decode("utf-8", "replace")
    if "Stream #" not in stderr:
        raise MediaDecodeError(
            path, f"not a readable audio/video file (ffmpeg: {_ffmpeg_error_line(stderr)})"
        )
    info = _parse_header(path, stderr)
    if not info["has_video"] and not info["has_audio"]:
        raise MediaDecodeError(path, "no audio or video stream")
    warnings: list[str] = []
    times = np.zeros(0)
    means = np.zeros(0)
    decoded: int | None = None
    if info["has_video"]:
        container_frames, cv_fps = _container_video_meta(path)
        info["container_frames"] = container_frames
        if cv_fps is not None:
            info["fps_container"] = cv_fps  # more digits than ffmpeg's "23.98 fps"
        if decode_video:
            try:
                times, means, problem = decode_frame_series(path)
            except MediaDecodeError as exc:
                if not info["has_audio"]:
                    raise
                # The audio may still synchronize; brightness sync will say it has no frames.
                times, means, problem = np.zeros(0), np.zeros(0), exc.problem
            decoded = int(times.size)
            if problem:
                warnings.append(
                    f"video decoding stopped with an error after {decoded} frames: {problem}"
                )
            if container_frames is not None and container_frames != decoded:
                warnings.append(
                    f"container header says {container_frames} frames but {decoded} decode; "
                    "frame timing uses the decoded timestamps"
                )
            fps_container = info.get("fps_container")
            if decoded >= 2 and fps_container:
                fps = (decoded - 1) / max(times[-1] - times[0], 1e-9)
                if abs(fps - fps_container) > 0.01 * fps_container:
                    warnings.append(
                        f"decoded timestamps give {fps:.3f} fps but the header says "
                        f"{fps_container:.3f} fps (variable frame rate?); timestamps are used"
                    )
    return MediaInfo(
        path=path,
        size_bytes=size,
        duration_s=info.get("duration_s"),
        start_s=info["start_s"],
        has_video=info["has_video"],
        has_audio=info["has_audio"],
        video_codec=info.get("video_codec"),
        width=info.get("width"),
        height=info.get("height"),
        fps_container=info.get("fps_container"),
        container_frames=info.get("container_frames"),
        decoded_frames=decoded,
        audio_codec=info.get("audio_codec"),
        audio_rate=info.get("audio_rate"),
        audio_channels=info.get("audio_channels"),
        warnings=tuple(warnings),
        frame_times=times,
        frame_means=means,
    )


def decode_audio(path: str | Path, rate: int = 16000) -> np.ndarray:
    """Decode the first audio track of ``path`` to mono float32 at ``rate`` Hz.

    Channels are averaged. Sample ``n`` is at ``n / rate`` seconds from the container start
    (a track that starts late is padded with silence, samples before 0 are dropped), so
    audio times and :func:`probe_media` frame times share one timeline.

    Returns
    -------
    np.ndarray
        Shape ``(n_samples,)`` float32, nominally in ``[-1, 1]``.

    Raises
    ------
    NoAudioError
        The file has no audio track, or it decodes to no samples.
    MediaDecodeError
        ffmpeg cannot read the file.
    """
    path = Path(path)
    _check_file(path)
    if rate < 1000:
        raise ValueError(f"audio rate must be >= 1000 Hz, got {rate}")
    code, out, err = run_ffmpeg([
        "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
        "-map", "0:a:0", "-vn", "-sn", "-dn",
        "-af", f"aresample={rate}:async=1:first_pts=0",
        "-ac", "1", "-ar", str(rate), "-f", "f32le", "-",
    ])  # fmt: skip
    stderr = err.decode("utf-8", "replace")
    raw = out[: len(out) - len(out) % 4]
    samples = np.frombuffer(raw, dtype=np.float32)
    if samples.size == 0:
        if "matches no streams" in stderr or "Stream map" in stderr:
            raise NoAudioError(path, "no audio track")
        if code != 0:
            raise MediaDecodeError(
                path, f"audio does not decode (ffmpeg: {_ffmpeg_error_line(stderr)})"
            )
        raise NoAudioError(path, "audio track decodes to no samples")
    if not np.isfinite(samples).all():
        samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
    return np.ascontiguousarray(samples)
