"""Encoding what the simulated sensors record: 8/16-bit sRGB values (:func:`to_uint`),
16-bit PNG stills (:func:`png16_bytes`, :func:`write_png16`), mono WAV (:func:`write_wav`)
and H.264 + AAC MP4 movies (:func:`encode_movie`, by the imageio-ffmpeg binary, bit-exact).
"""

from __future__ import annotations

import subprocess
import tempfile
import wave
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from expokit.capture.footage import linear_to_srgb
from expokit.core.atomic import atomic_path
from expokit.core.errors import OutputError
from expokit.core.video_io import ffmpeg_exe

#: Linear RGB ``(H, W, 3)`` float32, as a simulated sensor records it.
Image = npt.NDArray[np.float32]


def to_uint(linear: Image, bits: int) -> npt.NDArray[Any]:
    top = (1 << bits) - 1
    values = np.round(linear_to_srgb(linear) * top)
    return values.astype(np.uint8 if bits == 8 else np.uint16)


def _rate_text(fps: float) -> str:
    frac = Fraction(fps).limit_denominator(1001)
    return f"{frac.numerator}/{frac.denominator}"


def write_wav(path: Path, samples: npt.NDArray[np.float32], rate: int) -> None:
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())


def encode_movie(
    target: Path,
    frames: Iterator[npt.NDArray[np.uint8]],
    size: tuple[int, int],
    fps: float,
    audio: npt.NDArray[np.float32] | None,
    audio_rate: int,
    crf: int,
) -> None:
    """H.264 (yuv420p) + AAC MP4 of RGB ``frames`` and mono ``audio`` (bit-exact flags, one
    thread: the same input gives the same bytes)."""
    width, height = size
    with tempfile.TemporaryDirectory(prefix="expokit-sim-") as tmp:
        args = [
            ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
            "-s", f"{width}x{height}", "-framerate", _rate_text(fps), "-i", "-",
        ]  # fmt: skip
        if audio is not None:
            wav = Path(tmp) / "audio.wav"
            write_wav(wav, audio, audio_rate)
            args += ["-i", str(wav), "-map", "0:v", "-map", "1:a"]
        args += [
            "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-threads", "1", "-fflags", "+bitexact", "-flags", "+bitexact",
            "-map_metadata", "-1",
        ]  # fmt: skip
        if audio is not None:
            args += ["-c:a", "aac", "-b:a", "192k", "-ar", str(audio_rate), "-ac", "1"]
        args += ["-f", "mp4", str(target)]
        log = Path(tmp) / "ffmpeg.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=err)
            assert proc.stdin is not None
            try:
                for frame in frames:
                    proc.stdin.write(np.ascontiguousarray(frame).tobytes())
            except BrokenPipeError:
                pass
            finally:
                proc.stdin.close()
                code = proc.wait()
        if code != 0:
            lines = log.read_text(errors="replace").strip().splitlines()
            raise OutputError(
                f"{target}: ffmpeg could not encode the movie: {lines[-1] if lines else code}"
            )


def png16_bytes(linear: Image) -> bytes:
    """A 16-bit sRGB-encoded PNG of the linear RGB ``linear`` (what a simulated still is)."""
    import cv2

    ok, encoded = cv2.imencode(".png", to_uint(linear, 16)[:, :, ::-1])
    if not ok:
        raise OutputError("could not encode a simulated still as PNG")
    return bytes(encoded.tobytes())


def write_png16(path: Path, linear: Image) -> None:
    data = png16_bytes(linear)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
