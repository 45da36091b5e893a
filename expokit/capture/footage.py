"""Scenes for the rig simulator: real footage (a movie, a folder of frames, a still) or our own.

A :class:`Footage` is the *scene*: linear-light RGB radiance at any scene time ``t``
(seconds) on a canvas a little larger than the simulated sensors (so both cameras, which
see the scene through slightly different homographies, stay inside it), and the scene's
sound as mono samples. The simulator (:mod:`expokit.capture.simulator.physics`) samples it at each
camera's own frame and sample times.

``generated`` footage is made here by code (no binary is stored; Apache-2.0 like the rest
of expokit) and is deterministic per seed: a slowly panning multi-scale noise texture
carrying a ColorChecker card, a Siemens star and printed text, with textured shapes moving
over it (plenty of texture for homography estimation), a few
irregular changes of the light level and flashes (brightness sync cues), and hand claps at
irregular times over quiet room noise (a unique audio cross-correlation peak).
"""

from __future__ import annotations

import contextlib
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from expokit.core.errors import InputFileError
from expokit.core.images import read_image
from expokit.core.video_io import MediaError, decode_audio, ffmpeg_exe, probe_media

#: Still image files accepted as a source (RAWs need ``expokit render`` first).
IMAGE_SUFFIXES: frozenset[str] = frozenset(".png .jpg .jpeg .tif .tiff .bmp .webp".split())
RAW_SUFFIXES: frozenset[str] = frozenset(".dng .nef .cr2 .cr3 .arw .raf .orf .rw2".split())
#: Scene audio rate (Hz); each body resamples it on its own clock.
SCENE_AUDIO_RATE = 48000

FloatImage = npt.NDArray[np.float32]


class FootageError(InputFileError):
    """A simulator source cannot be used (no frames, mixed sizes, unreadable)."""


def srgb_to_linear(values: npt.NDArray[Any]) -> FloatImage:
    """sRGB-encoded values in [0, 1] -> linear light (IEC 61966-2-1)."""
    v = np.asarray(values, np.float32)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(values: npt.NDArray[Any]) -> FloatImage:
    """Linear light in [0, 1] -> sRGB-encoded values in [0, 1]."""
    v = np.clip(np.asarray(values, np.float32), 0.0, 1.0)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055).astype(np.float32)


@dataclass
class Footage:
    """A scene: ``frame_at(t)`` (linear RGB, ``(H, W, 3)`` float32 at ``canvas``) and audio.

    Attributes
    ----------
    kind
        ``"generated"``, ``"video"``, ``"frames"`` or ``"image"``.
    source
        What it came from (a path, or ``"generated"``).
    canvas
        ``(width, height)`` of every frame.
    fps
        Frame rate of the scene (a still: 0).
    duration_s
        Length of the scene in seconds (a still: 0, it is the same at every time).
    audio
        Mono float32 samples at :data:`SCENE_AUDIO_RATE`, or ``None`` (no sound).
    """

    kind: str
    source: str
    canvas: tuple[int, int]
    fps: float
    duration_s: float
    audio: npt.NDArray[np.float32] | None = None
    frames: list[npt.NDArray[np.uint8]] = field(default_factory=list, repr=False)
    _generator: GeneratedScene | None = field(default=None, repr=False)

    @property
    def is_still(self) -> bool:
        return self.kind == "image"

    def frame_at(self, t: float) -> FloatImage:
        """Linear RGB radiance of the scene at time ``t`` (the frame shown then)."""
        if self._generator is not None:
            return self._generator.frame_at(t)
        index = 0 if self.is_still else math.floor(t * self.fps + 1e-9)
        index = min(max(index, 0), len(self.frames) - 1)
        return srgb_to_linear(self.frames[index].astype(np.float32) / 255.0)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "canvas": list(self.canvas),
            "fps": self.fps,
            "duration_s": self.duration_s,
            "frames": len(self.frames) if self._generator is None else None,
            "audio": self.audio is not None,
        }


# --------------------------------------------------------------------------- generated


class GeneratedScene:
    """Our own moving, textured, noisy-lit scene with claps (see the module docstring)."""

    def __init__(self, canvas: tuple[int, int], duration_s: float, seed: int) -> None:
        import cv2

        self.canvas = canvas
        self.duration_s = duration_s
        rng = np.random.default_rng([seed, 0x5CE7E])
        width, height = canvas
        self.pan = self._pan(rng)
        pad = self._pad(self.pan, duration_s)
        tex_h, tex_w = height + 2 * pad, width + 2 * pad
        texture = np.zeros((tex_h, tex_w, 3), np.float32)
        for sigma, weight in ((1.0, 0.35), (3.0, 0.35), (9.0, 0.3)):
            noise = rng.normal(0, 1, (tex_h, tex_w, 3)).astype(np.float32)
            noise = np.asarray(cv2.GaussianBlur(noise, (0, 0), sigma), np.float32)
            noise /= max(float(noise.std()), 1e-6)
            texture += weight * noise
        texture = 0.35 + 0.12 * texture + 0.05 * rng.normal(0, 1, 3).astype(np.float32)
        self.texture = np.clip(texture, 0.02, 0.9).astype(np.float32)
        self.pad = pad
        paint_test_objects(self.texture, pad, canvas)
        self.shapes = []
        for _ in range(5):
            radius = float(rng.uniform(0.05, 0.1) * min(width, height))
            patch = cv2.GaussianBlur(rng.normal(0, 1, (64, 64, 3)).astype(np.float32), (0, 0), 1.5)
            patch = np.clip(rng.uniform(0.2, 0.7) + 0.15 * patch / patch.std(), 0.02, 0.95)
            self.shapes.append(
                {
                    "centre": rng.uniform(0.2, 0.8, 2) * (width, height),
                    "amplitude": rng.uniform(0.05, 0.2, 2) * (width, height),
                    "speed": rng.uniform(0.3, 1.2, 2),
                    "phase": rng.uniform(0, 2 * math.pi, 2),
                    "radius": radius,
                    "round": bool(rng.integers(2)),
                    "patch": patch.astype(np.float32),
                }
            )
        # Light level: a few irregular dims (0.5-1.2 s) and flashes (2 frames, at claps).
        self.dims: list[tuple[float, float, float]] = []
        t = float(rng.uniform(0.8, 1.8))
        while t < duration_s - 0.5:
            length = float(rng.uniform(0.5, 1.2))
            self.dims.append((t, t + length, float(rng.uniform(0.45, 0.7))))
            t += length + float(rng.uniform(1.0, 2.5))
        self.claps: list[float] = []
        t = float(rng.uniform(0.2, 0.6))
        while t < duration_s - 0.1:
            self.claps.append(t)
            t += float(rng.uniform(0.25, 1.1))
        self.flashes = [c for i, c in enumerate(self.claps) if i % 3 == 1]
        self.audio = self._make_audio(rng)

    @staticmethod
    def _pan(rng: np.random.Generator) -> npt.NDArray[np.float64]:
        """The texture's pan (px / s): the first draws of the scene's generator."""
        return np.array([rng.uniform(-8, 8), rng.uniform(-5, 5)])

    @staticmethod
    def _pad(pan: npt.NDArray[np.float64], duration_s: float) -> int:
        """Texture margin (px) the pan needs over ``duration_s``."""
        return math.ceil(np.abs(pan).max() * duration_s) + 8

    @classmethod
    def memory_bytes(cls, canvas: tuple[int, int], duration_s: float, seed: int) -> int:
        """About the most memory (bytes) building this scene holds, without building it.

        The texture is ``canvas`` plus the pan's margin on each side, so it grows with the
        square of ``duration_s``; while it is built it is held with a float64 noise draw and
        its float32 copy (about 48 bytes per texture pixel). The scene's sound is float64
        while it is made.
        """
        pad = cls._pad(cls._pan(np.random.default_rng([seed, 0x5CE7E])), duration_s)
        texture_px = (canvas[0] + 2 * pad) * (canvas[1] + 2 * pad)
        return texture_px * 3 * (4 + 8 + 4) + round(duration_s * SCENE_AUDIO_RATE) * 8 * 2

    def _make_audio(self, rng: np.random.Generator) -> npt.NDArray[np.float32]:
        rate = SCENE_AUDIO_RATE
        total = round(self.duration_s * rate)
        audio = rng.normal(0, 0.002, total)  # room tone
        for start in self.claps:
            length = int(rate * rng.uniform(0.03, 0.08))
            burst = rng.normal(0, 1, length) * np.exp(-np.arange(length) / (0.012 * rate))
            burst *= rng.uniform(0.25, 0.6)
            i = int(start * rate)
            end = min(total, i + length)
            audio[i:end] += burst[: end - i]
        return np.clip(audio, -1, 1).astype(np.float32)

    def light(self, t: float) -> float:
        level = 1.0
        for start, end, factor in self.dims:
            if start <= t < end:
                level *= factor
        for flash in self.flashes:
            if 0 <= t - flash < 0.08:
                level *= 1.8
        return level

    def frame_at(self, t: float) -> FloatImage:
        import cv2

        width, height = self.canvas
        dx, dy = self.pan * t
        shift = np.array([[1, 0, self.pad + dx], [0, 1, self.pad + dy]], np.float64)
        frame = cv2.warpAffine(
            self.texture, shift, (width, height),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT,
        )  # fmt: skip
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        for shape in self.shapes:
            cx, cy = shape["centre"] + shape["amplitude"] * np.sin(
                shape["speed"] * t + shape["phase"]
            )
            r = shape["radius"]
            if shape["round"]:
                inside = (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
            else:
                inside = (np.abs(xs - cx) <= r) & (np.abs(ys - cy) <= 0.7 * r)
            if not inside.any():
                continue
            # The patch is fixed to the shape (it moves with it).
            u = ((xs[inside] - cx) / (2 * r) + 0.5) * 63
            v = ((ys[inside] - cy) / (2 * r) + 0.5) * 63
            patch = shape["patch"]
            frame[inside] = patch[np.clip(v.astype(int), 0, 63), np.clip(u.astype(int), 0, 63)]
        return (frame * self.light(t)).astype(np.float32)


def paint_test_objects(texture: FloatImage, pad: int, canvas: tuple[int, int]) -> None:
    """Paint what a person recognises onto the scene's backdrop, in place: a ColorChecker
    card (left), a Siemens star (right) and the printed word "expokit" (bottom).

    ``texture`` is ``(H, W, 3)`` float32 linear light, the visible ``canvas`` (width, height)
    inset by ``pad`` px on each side (the pan's margin); the objects are placed inside that
    visible window so they stay in view. The noise backdrop stays around them (features
    for the calibration); every value stays in [0.02, 0.9] (no clipping at the metered EV).
    Nothing is painted on a canvas smaller than 96 x 64 px.
    """
    import cv2

    from expokit.core.synthetic import demo_scene

    width, height = canvas
    if width < 96 or height < 64:
        return
    # ColorChecker card: the chart scene of core.synthetic, its 24 patches at known radiance.
    card_w, card_h = int(width * 0.42), int(height * 0.42)
    x0, y0 = pad + int(width * 0.06), pad + int(height * 0.08)
    with contextlib.suppress(ValueError):  # too small for 8 px patches: no card
        card = demo_scene("chart", card_h, card_w)
        texture[y0 : y0 + card_h, x0 : x0 + card_w] = np.clip(card, 0.02, 0.9)
    # Siemens star: 36 black and white sectors (resolution and focus at a glance).
    radius = int(min(width, height) * 0.2)
    cx, cy = pad + int(width * 0.76), pad + int(height * 0.32)
    ys, xs = np.mgrid[-radius:radius, -radius:radius].astype(np.float32)
    inside = xs**2 + ys**2 <= radius**2
    sectors = (np.floor((np.arctan2(ys, xs) + math.pi) / (2 * math.pi) * 36) % 2).astype(bool)
    star = np.where(sectors, 0.8, 0.04).astype(np.float32)
    window = texture[cy - radius : cy + radius, cx - radius : cx + radius]
    window[inside] = star[inside, None]
    # Printed text on a light strip.
    strip_h = max(12, int(height * 0.14))
    sy = pad + int(height * 0.74)
    sx0, sx1 = pad + int(width * 0.08), pad + int(width * 0.92)
    texture[sy : sy + strip_h, sx0:sx1] = 0.75
    scale = strip_h / 30.0
    (text_w, _), _ = cv2.getTextSize("expokit", cv2.FONT_HERSHEY_DUPLEX, scale, 1)
    origin = (sx0 + max(0, (sx1 - sx0 - text_w) // 2), sy + int(strip_h * 0.78))
    ink = np.zeros(texture.shape[:2], np.uint8)  # putText draws on 8-bit images only
    cv2.putText(
        ink, "expokit", origin, cv2.FONT_HERSHEY_DUPLEX, scale, 255,
        max(1, round(scale * 1.5)), cv2.LINE_AA,
    )  # fmt: skip
    coverage = (ink.astype(np.float32) / 255.0)[..., None]
    texture *= 1.0 - coverage * (1.0 - 0.05 / 0.75)  # dark ink on the strip


def generated_footage(canvas: tuple[int, int], duration_s: float, fps: float, seed: int) -> Footage:
    scene = GeneratedScene(canvas, duration_s, seed)
    return Footage("generated", "generated", canvas, fps, duration_s, scene.audio, _generator=scene)


# --------------------------------------------------------------------------- real sources


def _resize(image: npt.NDArray[np.uint8], canvas: tuple[int, int]) -> npt.NDArray[np.uint8]:
    import cv2

    if (image.shape[1], image.shape[0]) == canvas:
        return image
    return np.asarray(cv2.resize(image, canvas, interpolation=cv2.INTER_AREA), np.uint8)


def _read_rgb(path: Path) -> npt.NDArray[np.uint8]:
    """A still or frame file as ``(H, W, 3)`` uint8 RGB, upright per its EXIF orientation
    (the shared reader :func:`expokit.core.images.read_image`, 8-bit colour)."""
    try:
        image = read_image(path, unchanged=False)
    except InputFileError as exc:
        raise FootageError(path, exc.problem) from None
    return np.ascontiguousarray(image[:, :, ::-1])


def source_size(source: Path) -> tuple[int, int]:
    """``(width, height)`` of a source's frames (checks that they share one size).

    Raises
    ------
    FootageError
        Missing source, RAW file, unreadable file, video without frames, folder without
        images, folder whose frames have mixed sizes.
    """
    if not source.exists():
        raise FootageError(source, "no such file or folder (simulator source)")
    if source.is_dir():
        frames = frame_files(source)
        sizes: dict[tuple[int, int], Path] = {}
        for path in frames:
            image = _read_rgb(path)
            size = (image.shape[1], image.shape[0])
            sizes.setdefault(size, path)
            if len(sizes) > 1:
                (s1, p1), (s2, p2) = list(sizes.items())[:2]
                raise FootageError(
                    source,
                    f"frames have mixed sizes: {p1.name} is {s1[0]}x{s1[1]}, {p2.name} is "
                    f"{s2[0]}x{s2[1]}; a frame folder must hold one movie's frames",
                )
        return next(iter(sizes))
    suffix = source.suffix.lower()
    if suffix in RAW_SUFFIXES:
        raise FootageError(
            source, "RAW files are not a simulator source; render them first (expokit render)"
        )
    if suffix in IMAGE_SUFFIXES:
        image = _read_rgb(source)
        return image.shape[1], image.shape[0]
    info = _probe_video(source)
    assert info.width is not None and info.height is not None
    return info.width, info.height


def frame_files(folder: Path) -> list[Path]:
    files = sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: _natural_key(p.name),
    )
    if not files:
        raise FootageError(folder, "holds no image frames (.png, .jpg, .tif, ...)")
    return files


def _natural_key(name: str) -> list[Any]:
    import re

    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _probe_video(path: Path) -> Any:
    try:
        info = probe_media(path)
    except MediaError as exc:
        raise FootageError(path, f"not a usable video: {exc.problem}") from None
    if not info.has_video or not info.decoded_frames or not info.width or not info.height:
        raise FootageError(path, "has no video frames (an audio-only or empty file?)")
    return info


def source_memory_bytes(
    source: Path, canvas: tuple[int, int], fps: float, max_seconds: float | None
) -> int:
    """About the memory (bytes) :func:`load_footage` holds for these arguments: every kept
    frame at ``canvas`` (frames x width x height x 3 channels x 1 byte), twice for a movie
    (ffmpeg's output and the frames cut from it) plus its float32 sound. Reads only the
    folder listing or the movie's header; call after :func:`source_size`."""
    width, height = canvas
    frame = width * height * 3
    if source.is_dir():
        count = len(frame_files(source))
        if max_seconds is not None:
            count = min(count, max(1, math.ceil(max_seconds * fps) + 1))
        return count * frame
    if source.suffix.lower() in IMAGE_SUFFIXES:
        return frame

    try:
        info = probe_media(source, decode_video=False)
    except MediaError as exc:
        raise FootageError(source, f"not a usable video: {exc.problem}") from None
    seconds = info.media_duration_s
    if max_seconds is not None:
        seconds = min(seconds, max_seconds)
    count = math.ceil(seconds * float(info.fps_container or 25.0)) + 1
    audio = math.ceil(info.media_duration_s * SCENE_AUDIO_RATE) * 4 if info.has_audio else 0
    return 2 * count * frame + audio


def load_footage(
    source: Path, canvas: tuple[int, int], fps: float, max_seconds: float | None
) -> Footage:
    """A real source as :class:`Footage` at ``canvas`` size.

    A video keeps its own frame rate (decoded timestamps' rate) and its audio (if any); a
    folder of frames plays at ``fps``; a single image is a still scene.
    """
    source_size(source)  # all input checks first, with their specific errors
    if source.is_dir():
        files = frame_files(source)
        if max_seconds is not None:
            files = files[: max(1, math.ceil(max_seconds * fps) + 1)]
        frames = [_resize(_read_rgb(p), canvas) for p in files]
        return Footage("frames", str(source), canvas, fps, len(frames) / fps, None, frames)
    if source.suffix.lower() in IMAGE_SUFFIXES:
        frames = [_resize(_read_rgb(source), canvas)]
        return Footage("image", str(source), canvas, 0.0, 0.0, None, frames)
    info = _probe_video(source)
    video_fps = float(info.fps or info.fps_container or 25.0)
    frames = _decode_frames(source, canvas, max_seconds)
    if not frames:
        raise FootageError(source, "has no video frames (nothing decoded)")
    audio = None
    if info.has_audio:
        audio = decode_audio(source, SCENE_AUDIO_RATE).astype(np.float32)
        if not np.any(np.abs(audio) > 1e-4):
            audio = None
    return Footage("video", str(source), canvas, video_fps, len(frames) / video_fps, audio, frames)


def _decode_frames(
    source: Path, canvas: tuple[int, int], max_seconds: float | None
) -> list[npt.NDArray[np.uint8]]:
    width, height = canvas
    args = [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(source)]
    if max_seconds is not None:
        args += ["-t", f"{max_seconds:.6f}"]
    args += [
        "-map", "0:v:0", "-vf", f"scale={width}:{height}:flags=area", "-fps_mode", "passthrough",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-",
    ]  # fmt: skip
    done = subprocess.run(args, capture_output=True, check=False)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise FootageError(source, f"ffmpeg could not decode it: {message[-1] if message else ''}")
    frame_bytes = width * height * 3
    count = len(done.stdout) // frame_bytes
    data = np.frombuffer(done.stdout[: count * frame_bytes], np.uint8)
    return [f.copy() for f in data.reshape(count, height, width, 3)]
