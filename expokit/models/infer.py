"""Inference: run a checkpoint on images, folders and videos (``expokit infer``).

* **Images** (PNG, JPEG, BMP, TIFF, WebP) and folders of them: each output is
  ``OUT/<input stem>.png`` (8-bit RGB, same size as the input). Grey images are repeated to
  three channels, RGBA loses its alpha (with a note), two-channel images are refused,
  16-bit images are processed at full precision and written as 8-bit.
* **Videos** (mp4, mov, mkv, avi, webm, m4v): frames are decoded with the imageio-ffmpeg
  binary (``rgb24`` through a pipe, no frame dropped or duplicated), corrected one by one and
  encoded to ``OUT/<stem>.mp4`` (H.264, CRF :attr:`InferConfig.crf`); the first audio
  stream is kept (copied when MP4 can hold it, else re-encoded to AAC).
* **Any resolution, no seams**: pointwise/global models (``uec``) run on the whole image;
  conv models run on whole frames too, or, with :attr:`InferConfig.tile`, on overlapping
  tiles blended with linear ramps (only when memory demands it).

Fast UEC
--------
Once UEC's starting gain and ``lambda`` values for an image are known (they come from
thumbnails), its whole correction is a fixed RGB -> RGB map. :func:`fast_uec` bakes it into
a ``S^3`` lookup table (:func:`expokit.models.uec.bake_lut`) and applies it to 8-bit pixels
with exact trilinear interpolation by one OpenCV ``remap``: the table is linearly resampled
along R to all 256 values (so R needs no interpolation), laid out as an image whose rows are
``(R, B node)`` and whose columns are G nodes; a pixel's G and B then become the remap's
fractional x and y and its R an integer row offset. ``remap`` keeps 5 fractional bits (1/32
of a grid step) and the table is stored as 8-bit, which costs about 1 dB against the float
network output at ~57-58 dB (see ``docs/models.md``; uint8 rounding of the network output
alone is ~59 dB).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from expokit.core.atomic import TEMP_PREFIX, atomic_path, atomic_write_json, remove_stale_temp_files
from expokit.core.checks import whole
from expokit.core.errors import ExpokitError, InputFileError
from expokit.core.hashing import sha256_file
from expokit.core.images import read_oriented
from expokit.core.lock import RootLock
from expokit.core.parallel import native_threads
from expokit.core.paths import check_output_file, is_safe_name
from expokit.core.progress import show_progress
from expokit.core.roots import STATE_DIR, claim_root
from expokit.core.schema import from_json, to_json
from expokit.core.video_io import FrameReader
from expokit.models.base import ModelError
from expokit.models.checkpoint import CheckpointError, LoadedCheckpoint, load_model
from expokit.models.uec import bake_lut, thumbnail

if TYPE_CHECKING:
    import torch

    from expokit.core.video_io import FrameReader
    from expokit.models.base import Baseline
    from expokit.models.uec import UEC, UECCorrection

U8Image = npt.NDArray[np.uint8]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"})
#: Audio codecs an MP4 can hold as they are (others are re-encoded to AAC).
MP4_AUDIO = frozenset({"aac", "mp3", "alac", "opus", "ac3", "eac3"})
#: ``remap`` needs source sides below 32767: ``256 * lut_size`` rows.
MAX_LUT_SIZE = 127


class InferenceError(ExpokitError):
    """Inference cannot start (bad options, missing reference, no inputs)."""


class InputError(InputFileError):
    """One input (image or video) cannot be corrected; the others go on."""


#: x264's presets, fastest first (``InferConfig.preset``).
X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
    "veryslow", "placebo",
)  # fmt: skip


@dataclass(frozen=True)
class InferConfig:
    """Options of ``expokit infer``.

    Attributes
    ----------
    lut_size
        Nodes per axis of the fast UEC lookup table (2..127); 33 is within ~1 dB of the
        float network at ~57 dB and far below what uint8 output can show.
    fast_uec
        Run UEC through the baked LUT (default) instead of the network at full resolution.
    tile
        Tile side for conv models (``None``: whole frames, the default and seam-free).
    tile_overlap
        Overlap between tiles, blended with linear ramps (must be below ``tile / 2``).
    crf
        H.264 constant rate factor for videos (0 lossless .. 51).
    preset
        x264 preset for videos.
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    """

    lut_size: int = 33
    fast_uec: bool = True
    tile: int | None = None
    tile_overlap: int = 32
    crf: int = 18
    preset: str = "veryfast"
    device: str = "auto"

    def __post_init__(self) -> None:
        try:
            # the types first: a bool or a float would pass the comparisons below
            whole("lut_size", self.lut_size, 2, MAX_LUT_SIZE)
            whole("tile_overlap", self.tile_overlap, 0)
            if self.tile is not None:
                whole("tile", self.tile, 16)
            whole("crf", self.crf, 0, 51)
        except ValueError as exc:
            raise InferenceError(str(exc)) from None
        if not isinstance(self.fast_uec, bool):
            raise InferenceError(f"fast_uec must be true or false, got {self.fast_uec!r}")
        if self.tile is not None and not self.tile_overlap < self.tile // 2:
            raise InferenceError(
                f"tile_overlap must be in 0..{self.tile // 2 - 1} for tile {self.tile}"
            )
        if self.preset not in X264_PRESETS:
            raise InferenceError(
                f"preset must be one of {', '.join(X264_PRESETS)}, got {self.preset!r}"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise InferenceError(f"device must be auto, cpu or cuda, got {self.device!r}")


# ----------------------------------------------------------------------------- images


def to_rgb(image: npt.NDArray[Any], path: str | Path) -> tuple[npt.NDArray[Any], list[str]]:
    """An OpenCV-decoded image (BGR/BGRA/grey, uint8 or uint16) as ``(H, W, 3)`` RGB.

    Returns the RGB array (same dtype) and notes (e.g. alpha dropped).

    Raises
    ------
    InputError
        Two-channel or more-than-four-channel images, unsupported dtypes.
    """
    import cv2

    notes: list[str] = []
    if image.dtype not in (np.uint8, np.uint16):
        raise InputError(path, f"unsupported sample type {image.dtype} (8- or 16-bit expected)")
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2)), ["grey image: repeated to RGB"]
    if channels == 2:
        raise InputError(path, "has 2 channels (grey + alpha?); expected grey, RGB or RGBA")
    if channels == 4:
        notes.append("RGBA image: alpha channel dropped (composited on nothing)")
        return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)), notes
    if channels != 3:
        raise InputError(path, f"has {channels} channels; expected grey, RGB or RGBA")
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)), notes


def read_rgb(path: str | Path) -> tuple[npt.NDArray[Any], list[str]]:
    """Read an image file as ``(H, W, 3)`` RGB uint8/uint16 plus notes (see :func:`to_rgb`),
    upright per its EXIF orientation (noted: ``rotated per EXIF orientation 6 (...)``)."""
    decoded = read_oriented(path, unchanged=True)
    rgb, notes = to_rgb(decoded.pixels, path)
    return rgb, ([decoded.note] if decoded.note else []) + notes


def write_png(path: Path, rgb: U8Image) -> None:
    """Write ``(H, W, 3)`` uint8 RGB to ``path`` atomically as PNG."""
    import cv2

    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(path, "could not encode the output PNG")
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data.tobytes())


def to_tensor(rgb: npt.NDArray[Any], device: Any = "cpu") -> torch.Tensor:
    """``(H, W, 3)`` uint8/uint16 RGB -> ``(1, 3, H, W)`` float32 in ``[0, 1]`` on ``device``."""
    import torch

    scale = 65535.0 if rgb.dtype == np.uint16 else 255.0
    array = np.ascontiguousarray(rgb)
    tensor = torch.from_numpy(array if array.flags.writeable else array.copy()).to(device)
    return tensor.permute(2, 0, 1).unsqueeze(0).float().div_(scale)


def to_u8(tensor: torch.Tensor) -> U8Image:
    """``(1, 3, H, W)`` float in ``[0, 1]`` -> ``(H, W, 3)`` uint8 RGB (rounded).

    Raises :class:`ModelError` when the model produced NaN or infinite values.
    """
    import torch

    if not torch.isfinite(tensor).all():
        raise ModelError("the model produced NaN or infinite values")
    out = tensor[0].clamp(0, 1).mul(255).add_(0.5).to(torch.uint8)
    return np.ascontiguousarray(out.permute(1, 2, 0).cpu().numpy())


# ----------------------------------------------------------------------------- checkpoints


def nonfinite_weights(model: Baseline) -> list[str]:
    """Names of the floating-point tensors of ``model``'s state (parameters and buffers)
    that hold NaN or infinite values, in state-dict order."""
    import torch

    return [
        name
        for name, tensor in model.state_dict().items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]


def check_finite_weights(model: Baseline, source: str | Path) -> None:
    """Refuse a model whose weights hold NaN or infinite values.

    Such a model turns every pixel into NaN, which 8-bit conversion would write as black;
    ``source`` (the weights file, or a description of an in-memory model) names it.

    Raises
    ------
    CheckpointError
        Some weight tensor is not finite (the first few are named).
    """
    bad = nonfinite_weights(model)
    if bad:
        total = sum(1 for t in model.state_dict().values() if t.is_floating_point())
        shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        raise CheckpointError(
            f"{source}: weights hold NaN or infinite values in {len(bad)} of {total} tensors "
            f"({shown}); the checkpoint is unusable (training diverged?): use an earlier step"
        )


def load_checked_model(path: str | Path, **options: Any) -> tuple[Baseline, LoadedCheckpoint]:
    """:func:`expokit.models.checkpoint.load_model` (``options`` passed on), then
    :func:`check_finite_weights` naming the checkpoint's weights file."""
    model, checkpoint = load_model(path, **options)
    check_finite_weights(model, checkpoint.weights)
    return model, checkpoint


# ----------------------------------------------------------------------------- fast UEC


def thumbnail_u8(rgb: npt.NDArray[Any], size: int) -> torch.Tensor:
    """UEC's encoder input for an 8/16-bit ``(H, W, 3)`` image: ``(1, 3, h, w)`` float32.

    Same shape rule as :func:`expokit.models.uec.thumbnail` (shorter side ``size``). Large
    images are first area-averaged to 4x the thumbnail on the integer image (no full-size
    float copy), then resized with the model's own antialiased bilinear filter.
    """
    import cv2
    import torch.nn.functional as F  # noqa: N812 - the PyTorch convention

    h, w = rgb.shape[:2]
    scale = size / min(h, w)
    if abs(scale - 1) < 1e-6 or scale > 0.25:
        return thumbnail(to_tensor(rgb), size)
    shape = (max(1, round(h * scale)), max(1, round(w * scale)))  # uec.thumbnail's rule
    # area-average to about 4x the thumbnail first (cheap on the integer image)
    inter = cv2.resize(rgb, (4 * shape[1], 4 * shape[0]), interpolation=cv2.INTER_AREA)
    return F.interpolate(
        to_tensor(inter), size=shape, mode="bilinear", align_corners=False, antialias=True
    )


@dataclass(frozen=True)
class LutIndex:
    """Remap tables for 8-bit pixels and a ``size^3`` LUT (built once per size).

    ``pair_xy[g + 256 * b]`` packs (G node, B node) as two int16; ``pair_frac`` holds
    remap's interpolation-table index ``32 * b_frac + g_frac``; ``r_rows[r] = r * size``.
    """

    size: int
    pair_xy: npt.NDArray[np.int32]
    pair_frac: npt.NDArray[np.uint16]
    r_rows: npt.NDArray[np.int16]
    weights: torch.Tensor = field(repr=False)  # (256, size) linear resampling along R

    @classmethod
    def build(cls, size: int) -> LutIndex:
        import torch

        position = np.arange(256) * (size - 1) / 255.0
        steps = np.round(position * 32).astype(np.int64)  # remap keeps 5 fractional bits
        node, frac = steps // 32, steps % 32
        g, b = np.meshgrid(np.arange(256), np.arange(256), indexing="xy")  # [b, g]
        xy = np.empty((256, 256, 2), np.int16)
        xy[..., 0], xy[..., 1] = node[g], node[b]
        pair_frac = (frac[b] * 32 + frac[g]).astype(np.uint16).reshape(-1)
        lower = np.minimum(np.floor(position), size - 2).astype(np.int64)
        upper_w = torch.from_numpy((position - lower).astype(np.float32))
        weights = torch.zeros(256, size)
        rows = torch.arange(256)
        weights[rows, torch.from_numpy(lower)] = 1 - upper_w
        weights[rows, torch.from_numpy(lower + 1)] += upper_w
        return cls(
            size=size,
            pair_xy=xy.reshape(-1).view(np.int32),
            pair_frac=pair_frac,
            r_rows=(np.arange(256) * size).astype(np.int16),
            weights=weights,
        )


_LUT_INDEX: dict[int, LutIndex] = {}


def lut_index(size: int) -> LutIndex:
    """The cached :class:`LutIndex` for ``size``."""
    if size not in _LUT_INDEX:
        _LUT_INDEX[size] = LutIndex.build(size)
    return _LUT_INDEX[size]


def lut_source(lut: torch.Tensor) -> U8Image:
    """``lut`` ``(3, S, S, S)`` ``[c, b, g, r]`` as the remap source image
    ``(256 * S, S, 3)`` uint8: row ``r * S + b_node``, column ``g_node``."""
    import torch

    size = lut.shape[-1]
    index = lut_index(size)
    with torch.no_grad():
        table = torch.einsum("Rr,cbgr->Rbgc", index.weights, lut.float().cpu())
        table = table.reshape(256 * size, size, 3).clamp(0, 1).mul(255).add_(0.5)
        return np.ascontiguousarray(table.to(torch.uint8).numpy())


def apply_lut_u8(lut: torch.Tensor, rgb: U8Image) -> U8Image:
    """Trilinear lookup of 8-bit ``rgb`` ``(H, W, 3)`` in ``lut`` ``(3, S, S, S)`` from
    :func:`~expokit.models.uec.bake_lut`; returns ``(H, W, 3)`` uint8 RGB.

    Equivalent to :func:`~expokit.models.uec.apply_lut` up to 8-bit storage of the table
    and 1/32-node interpolation weights (~58 dB between the two).
    """
    import cv2

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ModelError(f"apply_lut_u8 needs (H, W, 3) uint8 RGB, got {rgb.dtype} {rgb.shape}")
    index = lut_index(int(lut.shape[-1]))
    source = lut_source(lut)
    rgb = np.ascontiguousarray(rgb)
    out = np.empty_like(rgb)

    def band(rows: slice) -> None:
        part = rgb[rows]
        h, w = part.shape[:2]
        pixels = part.reshape(-1, 3)
        key = pixels[:, 1:3].view(np.uint16)[:, 0]  # g + 256 * b (little-endian byte pair)
        if key.dtype.byteorder == ">":  # pragma: no cover - big-endian hosts
            key = pixels[:, 1].astype(np.uint16) + 256 * pixels[:, 2].astype(np.uint16)
        map_xy = np.take(index.pair_xy, key).view(np.int16).reshape(h, w, 2)
        map_xy[..., 1] += index.r_rows[part[..., 0]]
        map_frac = np.take(index.pair_frac, key).reshape(h, w)
        cv2.remap(
            source, map_xy, map_frac, cv2.INTER_LINEAR, dst=out[rows],
            borderMode=cv2.BORDER_REPLICATE,
        )  # fmt: skip

    # Row bands in threads: numpy's takes and OpenCV release the GIL.
    from expokit.core.parallel import native_threads

    bands = min(native_threads(), max(1, rgb.shape[0] // 64))
    edges = np.linspace(0, rgb.shape[0], bands + 1).round().astype(int).tolist()
    slices = [slice(a, b) for a, b in itertools.pairwise(edges)]
    if len(slices) == 1:
        band(slices[0])
    else:
        list(_pool().map(band, slices))
    return out


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """Threads for :func:`apply_lut_u8` (one per core this process may use)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=native_threads(), thread_name_prefix="lut")
    return _POOL


def uec_correction(
    model: UEC, rgb: npt.NDArray[Any], reference_thumb: torch.Tensor
) -> UECCorrection:
    """UEC's starting gain and ``lambda`` values (each ``(1, 1)``) for ``rgb`` ``(H, W, 3)``
    towards a reference given as its thumbnail (:func:`thumbnail_u8`)."""
    import torch

    with torch.no_grad():
        return model.correction(thumbnail_u8(rgb, model.feature_size), reference_thumb)


def fast_uec(
    model: UEC, rgb: U8Image, reference_thumb: torch.Tensor, lut_size: int = 33
) -> U8Image:
    """UEC on an 8-bit ``(H, W, 3)`` RGB image through a baked LUT; uint8 ``(H, W, 3)``.

    The torch work here is small (thumbnails, a ``lut_size^3`` bake) and runs on one thread:
    OpenMP's barriers cost more than they save at this size, up to 10x more when other
    processes share the cores. The per-pixel remap uses OpenCV's own threads. A table with
    NaN or infinite values is a :class:`ModelError` (:func:`~expokit.models.uec.bake_lut`),
    never a black image.
    """
    with single_torch_thread():
        lut = bake_lut(model, uec_correction(model, rgb, reference_thumb), lut_size)
    return apply_lut_u8(lut, rgb)


@contextlib.contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run the block with one torch intra-op thread (restored afterwards)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- engine


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without CUDA is an error."""
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise InferenceError("--device cuda: no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def run_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, tile: int, overlap: int
) -> torch.Tensor:
    """``fn`` on overlapping ``tile``-sized tiles of ``image`` ``(1, 3, H, W)``, blended
    with linear ramps over ``overlap`` pixels (weights sum to one everywhere)."""
    import torch

    _, _, h, w = image.shape
    if h <= tile and w <= tile:
        return fn(image)
    step = tile - overlap

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        out = list(range(0, n - tile, step))
        return [*out, n - tile]

    total = torch.zeros_like(image)
    weight = torch.zeros(1, 1, h, w, device=image.device, dtype=image.dtype)
    for y in starts(h):
        for x in starts(w):
            th, tw = min(tile, h), min(tile, w)
            out = fn(image[:, :, y : y + th, x : x + tw])
            ramp_y = _ramp(th, overlap if y > 0 else 0, overlap if y + th < h else 0, image)
            ramp_x = _ramp(tw, overlap if x > 0 else 0, overlap if x + tw < w else 0, image)
            mask = ramp_y[:, None] * ramp_x[None, :]
            total[:, :, y : y + th, x : x + tw] += out * mask
            weight[:, :, y : y + th, x : x + tw] += mask
    return total / weight.clamp_min(1e-8)


def _ramp(n: int, head: int, tail: int, like: torch.Tensor) -> torch.Tensor:
    import torch

    ramp = torch.ones(n, device=like.device, dtype=like.dtype)
    if head:
        ramp[:head] = (torch.arange(head, device=like.device, dtype=like.dtype) + 0.5) / head
    if tail:
        ramp[n - tail :] = torch.minimum(
            ramp[n - tail :],
            (torch.arange(tail, 0, -1, device=like.device, dtype=like.dtype) - 0.5) / tail,
        )
    return ramp


class Enhancer:
    """Corrects ``(H, W, 3)`` RGB frames with one model (and, for UEC, one reference).

    Parameters
    ----------
    model
        A loaded baseline (eval mode).
    reference
        ``(H, W, 3)`` RGB reference image; required when ``model.needs_reference``.
    config
        :class:`InferConfig`.

    Raises
    ------
    CheckpointError
        The model's weights hold NaN or infinite values (:func:`check_finite_weights`).
    InferenceError
        A model that needs a reference got none.
    """

    def __init__(
        self,
        model: Baseline,
        reference: npt.NDArray[Any] | None = None,
        config: InferConfig | None = None,
    ) -> None:
        self.config = config or InferConfig()
        # before anything is written: NaN weights would give all-black outputs
        check_finite_weights(model, f"model {model.name!r}")
        self.fast = model.name == "uec" and self.config.fast_uec
        # the LUT path is CPU work (a thumbnail, a small bake, an OpenCV remap)
        self.device = pick_device("cpu" if self.fast else self.config.device)
        self.model = model.to(self.device).eval()
        if model.needs_reference and reference is None:
            raise InferenceError(
                f"model {model.name!r} needs --ref IMAGE: a reference whose exposure the "
                "output should take"
            )
        self.reference = None if reference is None else to_tensor(reference, self.device)
        self._ref_thumb: torch.Tensor | None = None
        if self.fast and reference is not None:
            feature_size = int(getattr(model, "feature_size", 128))
            self._ref_thumb = thumbnail_u8(reference, feature_size)
        self.clip_frames = (
            int(getattr(model, "num_frames", model.config.get("frames", 3)))
            if model.data_kind == "clip"
            else 1
        )

    def __call__(self, rgb: npt.NDArray[Any], window: Sequence[npt.NDArray[Any]] = ()) -> U8Image:
        """The corrected ``rgb`` as uint8 RGB; clip models use ``window`` (the
        ``clip_frames`` frames centred on ``rgb``; ``rgb`` repeated when empty)."""
        import torch

        if self.fast and rgb.dtype == np.uint8:
            assert self._ref_thumb is not None
            return fast_uec(self.model, rgb, self._ref_thumb, self.config.lut_size)  # type: ignore[arg-type]
        with torch.no_grad():
            if self.model.data_kind == "clip":
                frames = list(window) or [rgb] * self.clip_frames
                clip = torch.stack([to_tensor(f, self.device)[0] for f in frames])[None]
                return to_u8(self.model.enhance(clip))
            image = to_tensor(rgb, self.device)

            def run(x: torch.Tensor) -> torch.Tensor:
                return self.model.enhance(x, self.reference)

            if self.config.tile is not None and self.model.name != "uec":
                return to_u8(run_tiled(run, image, self.config.tile, self.config.tile_overlap))
            return to_u8(run(image))


# ----------------------------------------------------------------------------- video


@dataclass(frozen=True)
class VideoInfo:
    """What ``ffmpeg -i`` says about a video (imageio-ffmpeg ships no ffprobe)."""

    width: int
    height: int
    fps: str
    duration_s: float | None
    audio_codec: str | None

    @property
    def frame_estimate(self) -> int | None:
        try:
            rate = float(self.fps)
        except ValueError:
            return None
        return round(self.duration_s * rate) if self.duration_s else None


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):([\d.]+)")
_STREAM = re.compile(r"Stream #\d+:\d+\S*:\s*(Video|Audio):\s*(\w+)(.*)")


def ffmpeg_exe() -> str:
    """The ffmpeg binary bundled with imageio-ffmpeg."""
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def probe_video(path: Path) -> VideoInfo:
    """Size, frame rate, duration and audio codec of ``path`` from ``ffmpeg -i``."""
    run = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
        capture_output=True,
        check=False,
    )
    text = run.stderr.decode("utf-8", "replace")
    video = audio = None
    for kind, codec, rest in _STREAM.findall(text):
        if kind == "Video" and video is None and "attached pic" not in rest:
            video = rest
        elif kind == "Audio" and audio is None:
            audio = codec
    if video is None:
        last = [ln for ln in text.splitlines() if ln.strip()][-1:] or ["no output"]
        raise InputError(path, f"no video stream (ffmpeg: {last[0].strip()})")
    size = re.search(r", (\d+)x(\d+)", video)
    if not size:
        raise InputError(path, "ffmpeg reports no frame size for the video stream")
    fps = re.search(r", ([\d.]+k?) (?:fps|tbr)", video)
    rate = fps.group(1) if fps and not fps.group(1).endswith("k") else "25"
    duration = _DURATION.search(text)
    seconds = (
        int(duration.group(1)) * 3600 + int(duration.group(2)) * 60 + float(duration.group(3))
        if duration
        else None
    )
    return VideoInfo(int(size.group(1)), int(size.group(2)), rate, seconds, audio)


def read_frames(path: Path) -> FrameReader:
    """Every frame of ``path`` as ``(H, W, 3)`` uint8 RGB, iterated in decode order.

    The reader is :class:`expokit.core.video_io.FrameReader`: ffmpeg's passthrough
    decode (no frame dropped or duplicated), the same frames ``calibrate sync`` counts and
    ``curate build`` reads, so frame ``i`` means one thing in every stage.
    """
    return FrameReader(path, channels="rgb")


def correct_video(
    path: Path,
    out: Path,
    enhancer: Enhancer,
    *,
    progress: bool = True,
) -> tuple[int, list[str]]:
    """Correct every frame of ``path`` into ``out`` (H.264 MP4, audio kept).

    Returns the number of frames written and notes.

    Raises
    ------
    InputError
        Not a readable video, no frame decodes, or the encoder fails.
    """
    info = probe_video(path)
    frames = read_frames(path)
    height, width = frames.shape  # decoded size (the header's may predate rotation)
    notes: list[str] = []
    even = width % 2 == 0 and height % 2 == 0
    pix_fmt = "yuv420p" if even else "yuv444p"
    if not even:
        notes.append("odd frame size: encoded as yuv444p (4:2:0 needs even sides)")
    audio: list[str] = []
    if info.audio_codec is not None:
        copy = info.audio_codec in MP4_AUDIO
        audio = ["-map", "1:a:0", "-c:a", "copy" if copy else "aac"]
        if not copy:
            notes.append(f"audio {info.audio_codec} re-encoded to AAC (MP4 cannot hold it)")
    written = 0
    with atomic_path(out) as tmp, frames, tempfile.TemporaryFile() as enc_err:
        encode = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
            "-r", info.fps, "-i", "-", "-i", str(path), "-map", "0:v:0", *audio,
            "-c:v", "libx264", "-preset", enhancer.config.preset, "-crf", str(enhancer.config.crf),
            "-pix_fmt", pix_fmt, "-movflags", "+faststart", "-f", "mp4", str(tmp),
        ]  # fmt: skip
        with subprocess.Popen(encode, stdin=subprocess.PIPE, stderr=enc_err) as enc:
            assert enc.stdin is not None
            bar = show_progress(
                total=info.frame_estimate, desc=path.name, unit="frame", leave=False,
                enabled=progress,
            )  # fmt: skip
            try:
                for frame, window in _windows(frames, enhancer):
                    enc.stdin.write(enhancer(frame, window).tobytes())
                    written += 1
                    bar.update()
            except BrokenPipeError:
                pass
            finally:
                bar.close()
                with contextlib.suppress(BrokenPipeError):
                    enc.stdin.close()
            code = enc.wait()
        if written == 0:
            raise InputError(
                path, f"no video frame decodes (ffmpeg: {frames.problem or 'said nothing'})"
            )
        if code != 0:
            raise InputError(path, f"H.264 encoding failed ({_tail(enc_err)})")
    return written, notes


def _tail(errors: IO[bytes]) -> str:
    errors.seek(0)
    lines = [ln for ln in errors.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    return "ffmpeg: " + lines[-1].strip() if lines else "ffmpeg said nothing"


def _windows(
    frames: Iterable[U8Image], enhancer: Enhancer
) -> Iterator[tuple[U8Image, list[U8Image]]]:
    """Each frame with the ``clip_frames`` frames centred on it (edge frames repeated)."""
    half = enhancer.clip_frames // 2
    if half == 0:
        for frame in frames:
            yield frame, []
        return
    recent: dict[int, U8Image] = {}
    emitted = 0
    last = -1
    for last, frame in enumerate(frames):
        recent[last] = frame
        while emitted + half <= last:
            yield _window_at(recent, emitted, half, last)
            recent.pop(emitted - half, None)
            emitted += 1
    while emitted <= last:
        yield _window_at(recent, emitted, half, last)
        recent.pop(emitted - half, None)
        emitted += 1


def _window_at(
    recent: dict[int, U8Image], index: int, half: int, last: int
) -> tuple[U8Image, list[U8Image]]:
    window = [recent[min(max(i, 0), last)] for i in range(index - half, index + half + 1)]
    return recent[index], window


# ----------------------------------------------------------------------------- batch


@dataclass
class InferResult:
    """What happened to one input."""

    path: Path
    output: Path | None = None
    frames: int | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def collect_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Image and video files named or found directly inside the given folders (sorted).

    Raises
    ------
    InferenceError
        An input does not exist, or nothing usable is found.
    """
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(
                p
                for p in item.iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES
            )
            if not found:
                raise InferenceError(f"{item}: no image or video files in this folder")
            files.extend(found)
        elif item.exists():
            files.append(item)
        else:
            raise InferenceError(f"{item}: no such file or folder")
    return files


#: The record of what the last ``expokit infer`` wrote into its output folder (inside the
#: folder's state dir, so it is never mistaken for an output).
INFER_RECORD = ".expokit/infer.json"
INFER_RECORD_FORMAT: Literal["expokit-infer"] = "expokit-infer"


@dataclass(frozen=True)
class InferOutput:
    """One file an ``expokit infer`` run wrote (or began to write) into its output folder.

    Attributes
    ----------
    file
        Its name inside the output folder (no folder part).
    sha256
        Its SHA-256 once written; ``None`` while a run is writing it (a run killed then
        leaves it so, and the next run may remove it: the lock proves no one else wrote it).
    """

    file: str
    sha256: str | None = None


@dataclass(frozen=True)
class InferRecord:
    """``OUT/.expokit/infer.json``: the files of the run whose result the folder holds.

    Only files listed here are ever removed by a later infer; anything else in the folder
    is a person's and stays.
    """

    format: Literal["expokit-infer"] = INFER_RECORD_FORMAT
    version: Literal[1] = 1
    outputs: tuple[InferOutput, ...] = ()


def read_infer_record(root: Path) -> InferRecord | None:
    """The checked record of the previous infer into ``root`` (None: no record yet).

    Raises
    ------
    InferenceError
        The record is unreadable or damaged (the message names the file and the field).
    """
    path = root / INFER_RECORD
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InferenceError(f"{path}: not a readable infer record ({exc})") from None
    return from_json(InferRecord, data, path, kind="infer record", error=_record_error)


def _record_error(path: Path, problem: str) -> InferenceError:
    return InferenceError(f"{path}: {problem}; remove it or infer into a new folder")


def write_infer_record(root: Path, outputs: Iterable[InferOutput]) -> None:
    """Write ``root/.expokit/infer.json`` atomically (one entry per file name, sorted)."""
    unique = {o.file: o for o in outputs}
    record = InferRecord(outputs=tuple(unique[name] for name in sorted(unique)))
    atomic_write_json(root / INFER_RECORD, to_json(record))


@dataclass(frozen=True)
class InferRun:
    """What one ``expokit infer`` did: per-input results and the folder's cleanup.

    Attributes
    ----------
    results
        One :class:`InferResult` per input, in input order.
    removed
        Names of earlier runs' outputs this run did not write again, now deleted.
    kept
        ``"<name>: <why>"`` for each file left in place that this run did not write (a
        person's file, or an earlier output changed since it was written).
    """

    results: list[InferResult]
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()


def infer_paths(
    model: Baseline,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    reference: str | Path | None = None,
    config: InferConfig | None = None,
    progress: bool = True,
) -> list[InferResult]:
    """Correct every image and video in ``inputs`` into the folder ``out``.

    The per-input results of :func:`infer_folder` (which see).
    """
    run = infer_folder(model, inputs, out, reference=reference, config=config, progress=progress)
    return run.results


def infer_folder(
    model: Baseline,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    reference: str | Path | None = None,
    config: InferConfig | None = None,
    progress: bool = True,
) -> InferRun:
    """Correct every image and video in ``inputs`` into the folder ``out``; leave in it
    exactly this run's result.

    Outputs are ``out/<stem>.png`` (images) and ``out/<stem>.mp4`` (videos). A bad input is
    recorded in its :class:`InferResult` and the others go on. Under the folder's lock,
    outputs of an earlier infer (listed in :data:`INFER_RECORD`) that this run does not
    write again are removed, unless changed since they were written; files no infer wrote
    are left alone and named in :attr:`InferRun.kept`.

    Raises
    ------
    InferenceError, OutputError
        Before anything is written: missing inputs or reference, an unusable output folder,
        a damaged infer record.
    RootInUseError
        Another command holds the folder's lock ("in use").
    """
    # expokit.models.data imports torch at its top; this module keeps torch lazy.
    from expokit.models.data import check_output_folder

    files = collect_inputs(inputs)
    ref_rgb = None
    if reference is not None:
        ref_rgb, _ = read_rgb(reference)
    enhancer = Enhancer(model, ref_rgb, config)
    check_output_folder(out, what="inference output folder")
    root = claim_root(out, "inference", what="inference output folder")
    # One infer per folder at a time (two would write the same names); killed writes' temp
    # files are removed under the lock, so never a live writer's.
    with RootLock(root, "expokit infer"):
        remove_stale_temp_files(root)
        earlier = read_infer_record(root)
        listed = {o.file: o for o in earlier.outputs} if earlier is not None else {}
        planned = {_target_name(path) for path in files}
        # Listed before writing: a run killed midway leaves its files owned, not foreign.
        write_infer_record(
            root,
            [*listed.values(), *(InferOutput(n) for n in sorted(planned - set(listed)))],
        )
        # No record (a folder of an expokit that kept none): earlier outputs are not
        # distinguishable from other files, so a same-named file is overwritten as before.
        results = _correct_all(
            files, root, enhancer, progress, own=None if earlier is None else set(listed)
        )
        written = [r.output for r in results if r.output is not None]
        removed, kept = _remove_earlier(root, listed, {p.name for p in written})
        write_infer_record(root, [InferOutput(p.name, sha256_file(p)) for p in written])
    return InferRun(results=results, removed=removed, kept=kept)


def _target_name(path: Path) -> str:
    return path.stem + (".mp4" if path.suffix.lower() in VIDEO_SUFFIXES else ".png")


def _remove_earlier(
    root: Path, listed: dict[str, InferOutput], written: set[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Delete listed earlier outputs this run did not write again; name what stays.

    A listed file is removed only when it is a plain file directly in ``root`` whose
    SHA-256 is the recorded one (or none was recorded: a killed run's file).
    """
    removed: list[str] = []
    kept: list[str] = []
    for name in sorted(set(listed) - written):
        path = root / name
        if not is_safe_name(name) or path.is_symlink() or not path.is_file():
            if path.exists() or path.is_symlink():
                kept.append(f"{name}: not removed: not a plain file in the folder")
            continue
        recorded = listed[name].sha256
        if recorded is not None and sha256_file(path) != recorded:
            kept.append(f"{name}: not removed: changed since expokit infer wrote it")
            continue
        path.unlink()
        removed.append(name)
    for path in sorted(root.iterdir()):
        name = path.name
        if name in written or name in removed or name == STATE_DIR:
            continue
        if name.startswith(TEMP_PREFIX) or name in listed:
            continue
        kept.append(f"{name}: not written by expokit infer (left in place)")
    return tuple(removed), tuple(kept)


def _correct_all(
    files: list[Path],
    root: Path,
    enhancer: Enhancer,
    progress: bool,
    own: set[str] | None = None,
) -> list[InferResult]:
    """Correct every file into the claimed, locked ``root``; one result per file.

    ``own``: names of earlier outputs a result may overwrite (None: any existing file).
    """

    def is_own_output(target: Path) -> bool:
        return own is None or target.name in own

    results: list[InferResult] = []
    claimed: dict[Path, Path] = {}
    for path in show_progress(files, desc="infer", unit="file", enabled=progress):
        result = InferResult(path)
        results.append(result)
        suffix = path.suffix.lower()
        target = root / _target_name(path)
        try:
            if target in claimed:
                raise InputError(path, f"same output name {target.name} as {claimed[target]}")
            claimed[target] = path
            check_output_file(target, inputs=files, what="output", is_own_output=is_own_output)
            if suffix in VIDEO_SUFFIXES:
                result.frames, result.notes = correct_video(
                    path, target, enhancer, progress=progress
                )
            else:
                rgb, result.notes = read_rgb(path)
                write_png(target, enhancer(rgb))
            result.output = target
        except InputFileError as exc:
            result.error = str(exc)
        except (ExpokitError, OSError) as exc:
            # A model or write error of this input (e.g. an image too small for the model):
            # it names the file here, and the other inputs go on.
            result.error = f"{path}: {exc}"
    return results
