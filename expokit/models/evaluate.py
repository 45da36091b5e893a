"""Evaluation of a checkpoint and of the reference methods on an expokit dataset.

``evaluate(ROOT, ckpt, EvalConfig(...), out=DIR)`` scores, split by split, every manifest row
(full resolution, or ``resize`` x ``resize``; no crops) with:

* the model of the checkpoint (optional), and the reference methods of
  :mod:`expokit.models.reference` (identity, the fair gains to mid-grey and to the training
  split's mean target luminance, gain and histogram match to the reference, and the oracle
  gain+gamma), all in one table;
* PSNR and SSIM from :mod:`expokit.curation.metrics` on **uint8 RGB** (outputs rounded to
  8 bits, targets of 16-bit datasets too), no border crop, inside the pair's valid mask
  (``docs/metrics.md``); means over pairs for all rows, for under-exposed inputs
  (``input_ev < target_ev``) and for over-exposed ones (``input_ev > target_ev``);
  PSNR is capped at :data:`PSNR_CAP` dB before averaging (identical images give ``inf``);
* for video clips (rows with ``clip_id`` and ``frame_index``) also the warping error
  ``E_warp`` (:func:`warping_error`: DIS flow between consecutive *target* frames,
  occlusion mask from forward-backward consistency, squared error of the outputs, RGB in
  ``[0, 1]``, Lai et al. 2018) and the flicker of the outputs (std/mean of their mean linear
  luminance over the clip, the dataset QA's definition), with the targets' own values as
  the floor.

What the *reference* image is (``EvalConfig.reference``):

* ``same``: the pair's own target image. Methods only use its exposure level (its mean or
  histogram), so this suits datasets without a separate reference (paired sets, MSEC-like
  ladders, video). It makes "gain to reference" an exposure-level oracle.
* ``other-scene``: the target of the *next* scene of the split (scene ids sorted, cyclic;
  for clips, the middle frame of that scene's first clip): the SICE protocol of the UEC
  paper, where the reference is the middle exposure of another scene.
* ``train-scene``: the same choice of image, from the scenes of the *training* split
  (``EvalConfig.train_split``; scored scene ``i`` of the sorted list takes training scene
  ``i`` modulo their number, never itself): a fair reference for a split of a single scene,
  where ``other-scene`` has no other scene to take.

Who *peeks* (sees the scored target), per reference mode: the oracle always; gain and
histogram match to the reference, and a model that takes a reference image
(``Baseline.needs_reference``: ``uec``), under ``same`` only; identity and the gains to a
fixed level never. Every table has a ``peeks`` column and ``summary.json`` a ``peeking``
flag per method, both for the chosen mode.

The verdict: each split's table ends with the line ``model vs best fair baseline: +x.xx dB
(<baseline>)``, the best fair baseline being the non-peeking reference method with the
highest mean PSNR; a model below it is reported as ``BELOW``, a model that peeks is not
compared as if fair (``summary.json``: ``comparison``). A higher mean is ``clearly above``
only when the scenes show it (:mod:`expokit.models.evidence`: per-scene paired differences,
a one-sided 95 % Student-t bound above 0 dB); otherwise it is ``NOT CLEARLY`` above
(status ``unclear``), as on one scene or on scenes that disagree. The line gives the
counts: better on k of n scenes (and pairs) and the bounds. A split with fewer than
:data:`MIN_PAIRS` pairs or fewer than :data:`MIN_SCENES` scenes gets a warning
(``summary.json``: ``split_size``). Non-finite weights, model outputs or method outputs are
an :class:`EvalError` / ``CheckpointError``, never a score.

Results: ``pairs.csv`` (one row per pair and method), ``clips.csv`` (one row per clip and
method, video only) and ``summary.json``, written atomically into an output folder claimed
as an ``evaluation`` root; with ``images=DIR`` also input / output / target triptychs of
every scored pair and ``DIR/index.html`` showing the best and worst pairs
(:func:`write_images`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from expokit.core.atomic import (
    atomic_write_bytes,
    atomic_write_text,
    json_safe,
    remove_stale_temp_files,
)
from expokit.core.checks import in_range, whole
from expokit.core.errors import ExpokitError
from expokit.core.lock import RootLock
from expokit.core.paths import safe_component
from expokit.core.roots import claim_root
from expokit.core.transfer import LUMA_RGB, srgb_decode
from expokit.curation.build.qa import flicker
from expokit.curation.dataset.format import load_dataset
from expokit.curation.dataset.selection import PairSelection
from expokit.curation.metrics import psnr, ssim
from expokit.models.data import (
    DataError,
    check_output_folder,
    find_clips,
    read_mask,
    read_rgb,
    select_rows,
)
from expokit.models.evidence import PairedEvidence, paired_evidence
from expokit.models.infer import check_finite_weights, load_checked_model
from expokit.models.reference import (
    REFERENCE_METHODS,
    exposure_ratio,
    mean_luminance,
    train_level_method,
    train_ratio_method,
)

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from expokit.curation.dataset.format import Dataset
    from expokit.models.base import Baseline
    from expokit.models.checkpoint import LoadedCheckpoint
    from expokit.models.reference import ReferenceMethod

F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
ReferenceMode = Literal["same", "other-scene", "train-scene"]
REFERENCE_MODES: tuple[str, ...] = ("same", "other-scene", "train-scene")
EVAL_FORMAT = "expokit-evaluation"
EVAL_VERSION = 1
#: PSNR values above this (identical images: inf) count as this in means.
PSNR_CAP = 100.0
PAIRS_FILE = "pairs.csv"
CLIPS_FILE = "clips.csv"
SUMMARY_FILE = "summary.json"
GROUPS = ("all", "under", "over")
#: A split with fewer pairs, or fewer scenes, is too small for its means to say much.
MIN_PAIRS = 20
MIN_SCENES = 2
#: Target images (distinct files, evenly spaced) the training-split level is measured on,
#: and pairs the training-split exposure ratio is.
TRAIN_LEVEL_TARGETS = 64
#: An item of :func:`_evenly_spaced`.
T = TypeVar("T")
#: Below this PSNR difference (dB) a model is "level" with the fair baseline.
LEVEL_DB = 0.005
IMAGES_PAGE = "index.html"
#: Longest side of one triptych panel (larger pairs are area-downscaled for the page).
PANEL_MAX = 512
#: Pairs shown as the best and as the worst on the images page.
SHOWN_PAIRS = 6
#: Split name meaning every row of the dataset (unless it has a split of that name).
ALL_SPLITS = "all"
PAIR_COLUMNS = (
    "split", "method", "pair_id", "scene_id", "clip_id", "frame_index", "input_ev",
    "target_ev", "exposure", "reference", "psnr", "ssim",
)  # fmt: skip
CLIP_COLUMNS = (
    "split", "method", "scene_id", "clip_id", "frames", "ewarp", "ewarp_target", "flicker",
    "flicker_target",
)  # fmt: skip


class EvalError(ExpokitError):
    """Evaluation cannot run: a split the dataset lacks, a model the data cannot feed."""


@dataclass(frozen=True)
class EvalConfig:
    """What ``expokit eval`` scores and how.

    Attributes
    ----------
    splits
        Split names to score, one table each; ``all``: every row as one split.
    reference
        ``same``, ``other-scene`` or ``train-scene`` (module docstring).
    resize
        Resize inputs, targets, references and masks to ``resize x resize`` (bilinear with
        antialiasing, rounded back to the file's bit depth; masks nearest) before anything
        else, as the SICE protocol does (256). ``None``: full resolution.
    min_ev_error
        Score only pairs with ``|input_ev - target_ev| >= min_ev_error`` (the SICE
        protocol's two darkest and two brightest of 7 exposures: 2). ``None``: all pairs.
    references
        Evaluate the reference methods too.
    device
        Torch device for the model (``cpu``, ``cuda``, ``auto``).
    selection
        Score only the pairs this QA-flag selection keeps (``--exclude-flags`` /
        ``--passed-only``, the rule ``curate export`` and ``train`` use).
    train_split
        Split whose mean target luminance the fair baseline "global gain to
        <train_split>-split mean" takes (``None``: no such baseline). Left out, with a note in
        ``summary.json``, when the dataset lacks the split or it is one of the scored ones.
    """

    splits: tuple[str, ...] = ("test",)
    reference: ReferenceMode = "same"
    resize: int | None = None
    min_ev_error: float | None = None
    references: bool = True
    device: str = "cpu"
    train_split: str | None = "train"
    selection: PairSelection = field(default_factory=PairSelection)

    def __post_init__(self) -> None:
        if not isinstance(self.selection, PairSelection):
            raise EvalError(f"selection: expected a PairSelection, got {self.selection!r}")
        if not self.splits or any(not isinstance(s, str) or not s for s in self.splits):
            raise EvalError(f"splits: give one or more split names, got {self.splits!r}")
        if self.reference not in REFERENCE_MODES:
            raise EvalError(
                f"reference: {self.reference!r} is not one of {', '.join(REFERENCE_MODES)}"
            )
        try:
            if self.resize is not None:
                whole("resize (px)", self.resize, 16, 16384)
            if self.min_ev_error is not None:
                in_range("min_ev_error", self.min_ev_error, 0, math.inf, "EV", high_open=True)
        except ValueError as exc:
            raise EvalError(str(exc)) from None
        if self.train_split is not None and (
            not isinstance(self.train_split, str) or not self.train_split
        ):
            raise EvalError(f"train_split: give a split name or None, got {self.train_split!r}")


@dataclass
class EvalResult:
    """Per-pair records, per-clip records and the summary (what the files hold)."""

    pairs: list[dict[str, Any]] = field(default_factory=list)
    clips: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- images


def _quantise(image: F64, levels: float) -> F64:
    return np.round(np.clip(image, 0.0, 1.0) * levels) / levels


def resize_image(image: F64, size: int, levels: float = 255.0) -> F64:
    """``(H, W, 3)`` float in ``[0, 1]`` -> ``(size, size, 3)``: bilinear with antialiasing
    (``torch.nn.functional.interpolate``, like PIL's bilinear), rounded to ``levels``."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    if image.shape[:2] == (size, size):
        return image
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    out = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False,
                        antialias=True)  # fmt: skip
    return _quantise(out[0].numpy().transpose(1, 2, 0), levels)


def to_uint8(image: F64) -> npt.NDArray[np.uint8]:
    """``[0, 1]`` float image -> uint8 (rounded, clipped): what the metrics compare."""
    return np.asarray(np.round(np.clip(image, 0.0, 1.0) * 255.0), np.uint8)


class _Reader:
    """Reads dataset images as float64 RGB ``(H, W, 3)`` in ``[0, 1]``, resized if asked."""

    def __init__(self, dataset: Dataset, resize: int | None) -> None:
        self.dataset = dataset
        self.resize = resize

    def image(self, rel: str) -> F64:
        raw = read_rgb(self.dataset.path(rel))
        levels = 65535.0 if raw.dtype == np.uint16 else 255.0
        image = np.asarray(raw, np.float64) / (levels if raw.dtype.kind == "u" else 1.0)
        image = np.clip(image, 0.0, 1.0)
        return resize_image(image, self.resize, levels) if self.resize else image

    def pair(self, record: dict[str, Any]) -> tuple[F64, F64, Mask | None]:
        """A manifest row's input, target and valid mask (:class:`EvalError` when the input
        and target differ in size)."""
        image = self.image(str(record["input_path"]))
        target = self.image(str(record["target_path"]))
        if image.shape != target.shape:
            raise EvalError(
                f"pair {record['pair_id']}: input {image.shape} and target {target.shape} "
                "differ in size"
            )
        return image, target, self.mask(_text(record.get("mask_path")), target.shape)

    def mask(self, rel: str | None, shape: tuple[int, ...]) -> Mask | None:
        if rel is None:
            return None
        import cv2

        mask = read_mask(self.dataset.path(rel))
        if self.resize:
            mask = cv2.resize(mask, (self.resize, self.resize), interpolation=cv2.INTER_NEAREST)
        if mask.shape != shape[:2]:
            raise EvalError(f"{self.dataset.path(rel)}: mask {mask.shape} does not fit {shape}")
        return np.asarray(mask, bool)


# --------------------------------------------------------------------------- video metrics


def dis_flow(frame: npt.NDArray[np.uint8], other: npt.NDArray[np.uint8]) -> npt.NDArray[Any]:
    """DIS optical flow (OpenCV, medium preset) from ``frame`` to ``other`` (uint8 RGB
    ``(H, W, 3)``): ``(H, W, 2)`` float32 ``(dx, dy)`` with ``frame[p] ~ other[p + flow[p]]``."""
    import cv2

    dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    a = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(np.ascontiguousarray(other), cv2.COLOR_RGB2GRAY)
    return np.asarray(dis.calc(a, b, np.zeros((*a.shape, 2), np.float32)), np.float32)


def _remap(image: npt.NDArray[Any], flow: npt.NDArray[Any], nearest: bool = False) -> Any:
    import cv2

    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.remap(np.ascontiguousarray(image), xs + flow[..., 0], ys + flow[..., 1],
                     interpolation, borderMode=cv2.BORDER_REPLICATE)  # fmt: skip


def occlusion_mask(forward: npt.NDArray[Any], backward: npt.NDArray[Any]) -> Mask:
    """Pixels whose flow is trustworthy: forward-backward consistent (Sundaram et al. 2010:
    ``|f + b(p + f)|^2 <= 0.01 (|f|^2 + |b(p + f)|^2) + 0.5``) and landing inside the image."""
    h, w = forward.shape[:2]
    back = _remap(backward, forward)
    total = forward + back
    lhs = (total**2).sum(-1)
    rhs = 0.01 * ((forward**2).sum(-1) + (back**2).sum(-1)) + 0.5
    ys, xs = np.mgrid[0:h, 0:w]
    x, y = xs + forward[..., 0], ys + forward[..., 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return np.asarray((lhs <= rhs) & inside, bool)


@dataclass
class FramePair:
    """Flow and trust mask from target frame ``t`` to ``t - 1`` (shared by every method)."""

    flow: npt.NDArray[Any]
    valid: Mask

    @classmethod
    def from_targets(
        cls, target: F64, previous: F64, mask: Mask | None = None, previous_mask: Mask | None = None
    ) -> FramePair:
        t8, p8 = to_uint8(target), to_uint8(previous)
        forward, backward = dis_flow(t8, p8), dis_flow(p8, t8)
        valid = occlusion_mask(forward, backward)
        if mask is not None:
            valid &= mask
        if previous_mask is not None:
            valid &= _remap(previous_mask.astype(np.uint8), forward, nearest=True).astype(bool)
        return cls(forward, valid)

    def error(self, output: F64, previous_output: F64) -> float:
        """Mean over trusted pixels of ``||O_t - W(O_{t-1})||^2`` (RGB in [0, 1]); NaN when
        no pixel is trusted."""
        if not self.valid.any():
            return math.nan
        warped = _remap(previous_output.astype(np.float32), self.flow)
        sq = ((output.astype(np.float32) - warped) ** 2).sum(-1)
        return float(sq[self.valid].mean())


def warping_error(
    outputs: Sequence[F64], targets: Sequence[F64], masks: Sequence[Mask | None] | None = None
) -> float:
    """E_warp of a clip: mean over ``t >= 1`` of :meth:`FramePair.error` with the flow
    estimated on ``targets`` (float RGB ``(H, W, 3)`` in ``[0, 1]``); NaN for < 2 frames."""
    if len(outputs) != len(targets):
        raise EvalError(f"{len(outputs)} outputs for {len(targets)} target frames")
    masks = masks or [None] * len(targets)
    values = [
        FramePair.from_targets(targets[t], targets[t - 1], masks[t], masks[t - 1]).error(
            outputs[t], outputs[t - 1]
        )
        for t in range(1, len(targets))
    ]
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def linear_mean_luminance(image: F64, mask: Mask | None = None) -> float:
    """Mean Rec. 709 luminance of ``image`` (sRGB-encoded RGB) in linear light."""
    lum = srgb_decode(np.clip(image, 0.0, 1.0)) @ LUMA_RGB
    return float(lum[mask].mean() if mask is not None and mask.any() else lum.mean())


def clip_flicker(means: Sequence[float]) -> float:
    """std / mean of per-frame mean luminances (``curation.qa.flicker``); NaN if undefined."""
    value = flicker(means)
    return math.nan if value is None else value


# --------------------------------------------------------------------------- rows


def _text(value: Any) -> str | None:
    import pandas as pd

    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return None
    return str(value)


def _float(value: Any) -> float:
    return math.nan if _text(value) is None else float(value)


def exposure_group(input_ev: float, target_ev: float) -> str:
    """``under`` (input darker than target), ``over``, ``same`` or ``unknown`` (NaN EV)."""
    if not (math.isfinite(input_ev) and math.isfinite(target_ev)):
        return "unknown"
    if input_ev < target_ev:
        return "under"
    return "over" if input_ev > target_ev else "same"


def _select(
    dataset: Dataset,
    split: str,
    min_ev_error: float | None,
    selection: PairSelection | None = None,
) -> pd.DataFrame:
    present = set(dataset.manifest["split"].dropna().astype(str))
    everything = split == ALL_SPLITS and ALL_SPLITS not in present
    try:
        rows = select_rows(dataset, None if everything else split, selection=selection)
    except DataError as exc:
        raise EvalError(str(exc)) from None
    if min_ev_error is not None:
        error = (rows["input_ev"].astype("Float64") - rows["target_ev"].astype("Float64")).abs()
        rows = rows[(error >= min_ev_error).fillna(False)].reset_index(drop=True)
        if rows.empty:
            raise EvalError(
                f"{dataset.root}: split {split!r} has no pair with |input_ev - target_ev| >= "
                f"{min_ev_error}"
            )
    return rows


def _is_clip(rows: pd.DataFrame) -> pd.Series:
    return rows["clip_id"].notna() & rows["frame_index"].notna()


def scene_targets(rows: pd.DataFrame) -> dict[str, str]:
    """scene -> the target path that stands for it as a reference: the middle frame of its
    first clip (clip ids sorted), else the target of its first pair (pair ids sorted)."""
    chosen: dict[str, str] = {}
    clip = _is_clip(rows)
    scene_ids = rows["scene_id"].astype(str)
    for scene in sorted(set(scene_ids)):
        mine = rows[scene_ids == scene]
        video = mine[clip[mine.index]]
        if not video.empty:
            first = sorted(str(c) for c in video["clip_id"].unique())[0]
            frames = video[video["clip_id"].astype(str) == first].sort_values("frame_index")
            chosen[scene] = str(frames.iloc[len(frames) // 2]["target_path"])
        else:
            chosen[scene] = str(mine.sort_values("pair_id").iloc[0]["target_path"])
    return chosen


# --------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class _Method:
    name: str
    label: str
    kind: str  # "model" | "reference"
    #: Whether it sees the scored target under the chosen reference mode, and why.
    peeking: bool
    why: str | None = None
    uses_reference: bool = False
    reference: ReferenceMethod | None = None


class _ModelRunner:
    """Runs a checkpoint's model on float64 HWC images (one image or a frame window)."""

    def __init__(self, model: Baseline, device: str) -> None:
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.frames = int(getattr(model, "frames", 1)) if model.data_kind == "clip" else 1

    def _tensor(self, image: F64) -> torch.Tensor:
        import torch

        array = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
        return torch.from_numpy(array)[None].to(self.device)

    def run(self, images: Sequence[F64], reference: F64) -> F64:
        """Output for ``images`` (one image, or a window of ``frames`` frames centred on the
        one to restore)."""
        import torch

        with torch.no_grad():
            if self.frames > 1:
                x = torch.stack([self._tensor(i)[0] for i in images])[None]
            else:
                x = self._tensor(images[len(images) // 2])
            ref = self._tensor(reference) if self.model.needs_reference else None
            out = self.model.enhance(x, ref)
        return np.asarray(out[0].float().cpu().numpy().transpose(1, 2, 0), np.float64)


def _window(items: Sequence[Any], centre: int, size: int) -> list[Any]:
    half = size // 2
    return [items[min(max(i, 0), len(items) - 1)] for i in range(centre - half, centre + half + 1)]


# --------------------------------------------------------------------------- evaluation


class _Scorer:
    def __init__(
        self,
        dataset: Dataset,
        config: EvalConfig,
        runner: _ModelRunner | None,
        methods: list[_Method],
        progress: Callable[[int], object] | None,
        saver: _TriptychSaver | None = None,
    ) -> None:
        self.dataset = dataset
        self.config = config
        self.reader = _Reader(dataset, config.resize)
        self.runner = runner
        self.methods = methods
        self.progress = progress
        self.saver = saver
        self._ref_cache: dict[str, F64] = {}
        #: split -> (record, references) of every scored pair, kept only when triptychs of a
        #: reference method must be drawn after scoring (which one is known only then)
        self.scored: dict[str, list[tuple[dict[str, Any], dict[str, tuple[str, str]]]]] = {}

    # references --------------------------------------------------------------------------
    def _scene_reference_rel(self, rows: pd.DataFrame) -> dict[str, tuple[str, str]]:
        """scene -> (next scene, target path of that scene's reference image)."""
        scenes = sorted(str(s) for s in rows["scene_id"].unique())
        if len(scenes) < 2:
            raise EvalError(
                f"{self.dataset.root}: --reference other-scene needs at least two scenes in the "
                f"split, found {len(scenes)} ({', '.join(scenes)})"
            )
        chosen = scene_targets(rows)
        return {
            s: (scenes[(i + 1) % len(scenes)], chosen[scenes[(i + 1) % len(scenes)]])
            for i, s in enumerate(scenes)
        }

    def _train_reference_rel(self, rows: pd.DataFrame) -> dict[str, tuple[str, str]]:
        """scene -> (training scene, target path of its reference image): scored scene ``i``
        (sorted) takes training scene ``i`` modulo their number, skipping itself."""
        split = self.config.train_split
        if split is None or split in self.config.splits or ALL_SPLITS in self.config.splits:
            raise EvalError(
                "--reference train-scene needs a training split that is not scored "
                f"(train split {split!r}, scored {', '.join(self.config.splits)})"
            )
        train = _select(self.dataset, split, None)
        chosen = scene_targets(train)
        candidates = sorted(chosen)
        out: dict[str, tuple[str, str]] = {}
        for i, scene in enumerate(sorted(str(s) for s in rows["scene_id"].unique())):
            others = [c for c in candidates if c != scene]
            if not others:
                raise EvalError(
                    f"{self.dataset.root}: --reference train-scene: split {split!r} has no "
                    f"scene other than {scene!r}"
                )
            pick = others[i % len(others)]
            out[scene] = (pick, chosen[pick])
        return out

    def _reference(self, rel: str) -> F64:
        if rel not in self._ref_cache:
            self._ref_cache[rel] = self.reader.image(rel)
        return self._ref_cache[rel]

    # one split ---------------------------------------------------------------------------
    def split(self, split: str, result: EvalResult) -> None:
        rows = _select(self.dataset, split, self.config.min_ev_error, self.config.selection)
        clip = _is_clip(rows)
        if self.runner is not None and self.runner.model.data_kind == "clip" and not clip.any():
            raise EvalError(
                f"{self.dataset.root}: model {self.runner.model.name!r} restores video frames, "
                f"but split {split!r} has no clip rows (rows with clip_id and frame_index)"
            )
        references: dict[str, tuple[str, str]] = {}
        if self.config.reference == "other-scene":
            references = self._scene_reference_rel(rows)
        elif self.config.reference == "train-scene":
            references = self._train_reference_rel(rows)

        for record in rows[~clip].sort_values("pair_id").to_dict("records"):
            self._still(split, {str(k): v for k, v in record.items()}, references, result)
        for found in find_clips(rows[clip]):
            self._clip(split, found.rows, references, result)

    def _keep(
        self, split: str, record: dict[str, Any], references: dict[str, tuple[str, str]]
    ) -> None:
        if self.saver is not None and self.runner is None:
            self.scored.setdefault(split, []).append((record, references))

    def draw_reference(self, split: str, method: _Method) -> None:
        """Triptychs of ``method`` (a reference method) on every scored pair of ``split``:
        reference methods restore one image at a time, so no frame window is needed."""
        assert self.saver is not None and method.reference is not None
        for record, references in self.scored.get(split, []):
            image, target, mask = self.reader.pair(record)
            reference, _ = self._reference_for(record, target, references)
            output = method.reference.run(image, reference, target, mask)
            self.saver.write(split, str(record["pair_id"]), image, output, target)

    def _reference_for(
        self, record: dict[str, Any], target: F64, references: dict[str, tuple[str, str]]
    ) -> tuple[F64, str]:
        if self.config.reference == "same":
            return target, "target"
        scene, rel = references[str(record["scene_id"])]
        return self._reference(rel), scene

    def _outputs(
        self, window: Sequence[F64], reference: F64, target: F64, mask: Mask | None
    ) -> dict[str, F64]:
        image = window[len(window) // 2]
        outputs: dict[str, F64] = {}
        for method in self.methods:
            if method.kind == "model":
                assert self.runner is not None
                outputs[method.name] = self.runner.run(window, reference)
            else:
                run = method.reference or REFERENCE_METHODS[method.name]
                outputs[method.name] = run.run(image, reference, target, mask)
        return outputs

    def _score(
        self,
        split: str,
        record: dict[str, Any],
        image: F64,
        outputs: dict[str, F64],
        target: F64,
        mask: Mask | None,
        reference_name: str,
        result: EvalResult,
    ) -> None:
        labels = {m.name: m.label for m in self.methods}
        for name, output in outputs.items():
            # uint8 conversion would turn NaN into black pixels and give a finite score
            if not np.isfinite(output).all():
                bad = int((~np.isfinite(output)).sum())
                raise EvalError(
                    f"pair {record['pair_id']} ({self.dataset.path(str(record['input_path']))}): "
                    f"{labels.get(name, name)} produced {bad} NaN or infinite values; "
                    "refusing to score it"
                )
        if self.saver is not None and self.saver.method in outputs:
            self.saver.write(
                split, str(record["pair_id"]), image, outputs[self.saver.method], target
            )
        t8 = to_uint8(target)
        input_ev, target_ev = _float(record.get("input_ev")), _float(record.get("target_ev"))
        for name, output in outputs.items():
            o8 = to_uint8(output)
            try:
                s = ssim(o8, t8, 255.0, mask)
            except ValueError:  # smaller than the SSIM window
                s = math.nan
            frame = record.get("frame_index")
            result.pairs.append(
                {
                    "split": split,
                    "method": name,
                    "pair_id": str(record["pair_id"]),
                    "scene_id": str(record["scene_id"]),
                    "clip_id": _text(record.get("clip_id")),
                    "frame_index": None if frame is None or _text(frame) is None else int(frame),
                    "input_ev": input_ev,
                    "target_ev": target_ev,
                    "exposure": exposure_group(input_ev, target_ev),
                    "reference": reference_name,
                    "psnr": psnr(o8, t8, 255.0, mask),
                    "ssim": s,
                }
            )
        if self.progress is not None:
            self.progress(1)

    def _still(
        self,
        split: str,
        record: dict[str, Any],
        references: dict[str, tuple[str, str]],
        result: EvalResult,
    ) -> None:
        image, target, mask = self.reader.pair(record)
        reference, ref_name = self._reference_for(record, target, references)
        size = self.runner.frames if self.runner is not None else 1
        outputs = self._outputs([image] * size, reference, target, mask)
        self._score(split, record, image, outputs, target, mask, ref_name, result)
        self._keep(split, record, references)

    def _clip(
        self,
        split: str,
        records: list[dict[str, Any]],
        references: dict[str, tuple[str, str]],
        result: EvalResult,
    ) -> None:
        size = self.runner.frames if self.runner is not None else 1
        half = size // 2
        cache: dict[int, tuple[F64, F64, Mask | None]] = {}
        names = [m.name for m in self.methods]
        errors: dict[str, list[float]] = {n: [] for n in [*names, "target"]}
        means: dict[str, list[float]] = {n: [] for n in [*names, "target"]}
        previous: tuple[dict[str, F64], F64, Mask | None] | None = None
        for t, record in enumerate(records):
            for i in range(max(0, t - half), min(len(records), t + half + 1)):
                if i not in cache:
                    cache[i] = self.reader.pair(records[i])
            for i in [k for k in cache if k < t - half]:
                del cache[i]
            _, target, mask = cache[t]
            window = [cache[i][0] for i in _window(range(len(records)), t, size)]
            reference, ref_name = self._reference_for(record, target, references)
            outputs = self._outputs(window, reference, target, mask)
            self._score(split, record, cache[t][0], outputs, target, mask, ref_name, result)
            self._keep(split, record, references)
            for name, output in outputs.items():
                means[name].append(linear_mean_luminance(output, mask))
            means["target"].append(linear_mean_luminance(target, mask))
            if previous is not None:
                prev_outputs, prev_target, prev_mask = previous
                pair = FramePair.from_targets(target, prev_target, mask, prev_mask)
                for name, output in outputs.items():
                    errors[name].append(pair.error(output, prev_outputs[name]))
                errors["target"].append(pair.error(target, prev_target))
            previous = (outputs, target, mask)
        first = records[0]
        flicker_target = clip_flicker(means["target"])
        ewarp_target = _mean(errors["target"])
        for name in names:
            result.clips.append(
                {
                    "split": split,
                    "method": name,
                    "scene_id": str(first["scene_id"]),
                    "clip_id": str(first["clip_id"]),
                    "frames": len(records),
                    "ewarp": _nan(_mean(errors[name])),
                    "ewarp_target": _nan(ewarp_target),
                    "flicker": clip_flicker(means[name]),
                    "flicker_target": flicker_target,
                }
            )


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def _mean(values: Iterable[float], cap: float | None = None) -> float | None:
    finite = [min(v, cap) if cap is not None else v for v in values if not math.isnan(v)]
    finite = [v for v in finite if math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def summarise(
    pairs: Sequence[dict[str, Any]], clips: Sequence[dict[str, Any]], methods: Sequence[str]
) -> dict[str, Any]:
    """``{split: {method: {all|under|over: {pairs, psnr, ssim}, video: {...}}}}``: means
    over pairs (PSNR capped at :data:`PSNR_CAP`, NaN SSIM skipped) and over clips."""
    out: dict[str, Any] = {}
    splits = list(dict.fromkeys(p["split"] for p in pairs))
    for split in splits:
        table: dict[str, Any] = {}
        for method in methods:
            mine = [p for p in pairs if p["split"] == split and p["method"] == method]
            entry: dict[str, Any] = {}
            for group in GROUPS:
                chosen = [p for p in mine if group == "all" or p["exposure"] == group]
                entry[group] = {
                    "pairs": len(chosen),
                    "psnr": _mean((p["psnr"] for p in chosen), PSNR_CAP),
                    "ssim": _mean(p["ssim"] for p in chosen),
                }
            video = [c for c in clips if c["split"] == split and c["method"] == method]
            if video:
                entry["video"] = {
                    "clips": len(video),
                    "ewarp": _mean(c["ewarp"] for c in video),
                    "flicker": _mean(c["flicker"] for c in video),
                    "ewarp_target": _mean(c["ewarp_target"] for c in video),
                    "flicker_target": _mean(c["flicker_target"] for c in video),
                }
            table[method] = entry
        out[split] = table
    return out


def _methods(
    model: Baseline | None,
    checkpoint: LoadedCheckpoint | None,
    references: bool,
    mode: str = "same",
    train_methods: Sequence[ReferenceMethod] = (),
) -> list[_Method]:
    """The table's rows, each with whether it peeks under reference ``mode`` (and why)."""
    methods: list[_Method] = []
    if model is not None:
        step = None if checkpoint is None else checkpoint.step
        label = f"{model.name} (step {step})" if step is not None else model.name
        peeks = bool(model.needs_reference) and mode == "same"
        why = "it is given the target as its reference (--reference same)" if peeks else None
        methods.append(_Method(model.name, label, "model", peeks, why, bool(model.needs_reference)))
    if references:
        table = list(REFERENCE_METHODS.values())
        at = [m.name for m in table].index("gain_to_mid_grey") + 1
        table[at:at] = train_methods  # after the other fixed-level gain
        methods += [
            _Method(
                m.name,
                m.label,
                "reference",
                m.peeks(mode),
                m.peeks_why(mode),
                m.uses_reference,
                m,
            )
            for m in table
        ]
    if not methods:
        raise EvalError("nothing to evaluate: give a checkpoint or keep the reference methods")
    return methods


def _evenly_spaced(items: Sequence[T], count: int) -> list[T]:
    """At most ``count`` of ``items``, evenly spaced from the first (every k-th)."""
    step = max(1, math.ceil(len(items) / count))
    return list(items[::step][:count])


def _train_split_off(dataset: Dataset, config: EvalConfig, measure: str) -> str | None:
    """Why no fair baseline can be measured on ``config.train_split`` (its ``measure``,
    e.g. ``"level"``), or None when it can: no such split, or it is scored itself."""
    split = config.train_split
    if split is None:
        return "no training split given"
    present = set(dataset.manifest["split"].dropna().astype(str))
    scored_everything = ALL_SPLITS in config.splits and ALL_SPLITS not in present
    if split in config.splits or scored_everything:
        return f"split {split!r} is scored itself: its {measure} would peek"
    if split not in present:
        return f"the dataset has no split {split!r}"
    return None


def train_level(
    dataset: Dataset, config: EvalConfig, reader: _Reader | None = None
) -> tuple[dict[str, Any], ReferenceMethod | None]:
    """The training split's mean target luminance, for the fair baseline "global gain to
    <split>-split mean", and that method (``None`` with the reason when there is none).

    The level is the mean over up to :data:`TRAIN_LEVEL_TARGETS` distinct target images of
    ``config.train_split`` (evenly spaced in path order) of their mean encoded Rec. 709
    luminance, the measure :func:`~expokit.models.reference.gain_to_reference` matches. It
    is never measured on a scored split.
    """
    split = config.train_split
    info: dict[str, Any] = {"method": "gain_to_train_mean", "split": split}
    off = _train_split_off(dataset, config, "level")
    if off is not None or split is None:
        return {**info, "off": off}, None
    rows = _select(dataset, split, None)
    paths = sorted({str(p) for p in rows["target_path"].dropna()})
    if not paths:
        return {**info, "off": f"split {split!r} has no target image"}, None
    chosen = _evenly_spaced(paths, TRAIN_LEVEL_TARGETS)
    reader = reader or _Reader(dataset, config.resize)
    level = float(np.mean([mean_luminance(reader.image(rel)) for rel in chosen]))
    info.update(level=level, targets=len(chosen), of_targets=len(paths))
    if not 0 < level <= 1:
        return {**info, "off": f"split {split!r}: its targets are black"}, None
    return info, train_level_method(level, split)


def train_ratio(
    dataset: Dataset, config: EvalConfig, reader: _Reader | None = None
) -> tuple[dict[str, Any], ReferenceMethod | None]:
    """The training split's exposure ratio (target / input, on linear light), for the fair
    baseline "exposure change by the <split>-split ratio", and that method (``None`` with
    the reason when there is none).

    The ratio is the geometric mean, over up to :data:`TRAIN_LEVEL_TARGETS` pairs of
    ``config.train_split`` (evenly spaced in pair order), of each pair's
    :func:`~expokit.models.reference.exposure_ratio` inside its valid mask. A rig whose
    cameras differ by a fixed exposure has one ratio; a dataset of many exposures (MSEC)
    has a ratio near 1, a weak baseline there. It is never measured on a scored split.
    """
    split = config.train_split
    info: dict[str, Any] = {"method": "exposure_ratio_of_train", "split": split}
    off = _train_split_off(dataset, config, "ratio")
    if off is not None or split is None:
        return {**info, "off": off}, None
    rows = _select(dataset, split, None).dropna(subset=["input_path", "target_path"])
    if rows.empty:
        return {**info, "off": f"split {split!r} has no pair"}, None
    records = rows.sort_values("pair_id").to_dict("records")
    reader = reader or _Reader(dataset, config.resize)
    ratios = []
    for record in _evenly_spaced(records, TRAIN_LEVEL_TARGETS):
        try:
            image, target, mask = reader.pair(record)
        except EvalError:
            continue  # the scoring reports the pair; the ratio needs matching pixels
        ratios.append(exposure_ratio(image, target, mask))
    logs = np.log([r for r in ratios if math.isfinite(r)])
    info.update(pairs=int(logs.size), of_pairs=len(rows))
    if logs.size == 0:
        return {**info, "off": f"split {split!r}: no pair has unclipped pixels in both"}, None
    ratio = float(np.exp(logs.mean()))
    spread = float(np.std(logs) / math.log(2))  # stops: near 0 for one rig's fixed exposure
    info.update(ratio=ratio, ev=float(np.log2(ratio)), log2_spread=spread)
    return info, train_ratio_method(ratio, split)


def split_size(pairs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``{split: {pairs, scenes, too_small, warning}}``: the small-split rule (fewer than
    :data:`MIN_PAIRS` pairs or fewer than :data:`MIN_SCENES` scenes is too small)."""
    out: dict[str, Any] = {}
    for split in dict.fromkeys(p["split"] for p in pairs):
        mine = [p for p in pairs if p["split"] == split]
        count = len({p["pair_id"] for p in mine})
        scenes = len({p["scene_id"] for p in mine})
        small = count < MIN_PAIRS or scenes < MIN_SCENES
        warning = (
            f"WARNING: split {split!r} is too small to mean much: {count} pairs from "
            f"{scenes} scene{'s' if scenes != 1 else ''} (rule: at least {MIN_PAIRS} pairs "
            f"and {MIN_SCENES} scenes)"
            if small
            else None
        )
        out[split] = {"pairs": count, "scenes": scenes, "too_small": small, "warning": warning,
                      "rule": {"min_pairs": MIN_PAIRS, "min_scenes": MIN_SCENES}}  # fmt: skip
    return out


def best_fair_baseline(table: dict[str, Any], methods: dict[str, Any]) -> str | None:
    """The non-peeking reference method with the highest mean PSNR (all pairs) in one
    split's ``table``; ties go to the first in table order; ``None`` when there is none."""
    best: str | None = None
    for name, entry in table.items():
        info = methods.get(name, {})
        score = entry.get("all", {}).get("psnr")
        if info.get("kind") != "reference" or info.get("peeking") or score is None:
            continue
        if best is None or score > table[best]["all"]["psnr"]:
            best = name
    return best


def compare(
    summary: dict[str, Any], pairs: Sequence[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """``{split: verdict}``: the model against the best fair baseline (PSNR and SSIM means
    over all pairs), with the paired evidence per scene of :mod:`expokit.models.evidence`
    when the per-pair records ``pairs`` are given. ``status``:

    * ``above``: a higher mean, and clearly so over the scenes (the one-sided 95 % bound is
      above 0 dB); without ``pairs``, the higher mean alone (the line says so);
    * ``unclear``: a higher mean, but the scenes do not show it clearly (one scene, or
      scenes that disagree);
    * ``level`` (within :data:`LEVEL_DB`), ``below`` (a lower mean), ``not-fair`` (the
      model peeks), ``no-model`` or ``no-baseline``.

    ``line`` is the text every table ends with."""
    methods = summary["methods"]
    model = next((n for n, m in methods.items() if m["kind"] == "model"), None)
    out: dict[str, Any] = {}
    for split, table in summary["splits"].items():
        baseline = best_fair_baseline(table, methods)
        evidence = None
        if pairs is not None and model is not None and baseline is not None:
            evidence = _evidence(pairs, split, model, baseline)
        entry: dict[str, Any] = {
            "model": model,
            "baseline": baseline,
            "baseline_label": None if baseline is None else methods[baseline]["label"],
            "baseline_psnr": None if baseline is None else table[baseline]["all"]["psnr"],
            "baseline_ssim": None if baseline is None else table[baseline]["all"]["ssim"],
            "model_psnr": None if model is None else table[model]["all"]["psnr"],
            "model_ssim": None if model is None else table[model]["all"]["ssim"],
            "model_peeks": None if model is None else bool(methods[model]["peeking"]),
            "delta_psnr": None,
            "delta_ssim": None,
            "evidence": None if evidence is None else evidence.to_json(),
        }
        entry.update(_verdict(entry, methods))
        out[split] = entry
    return out


def _evidence(
    pairs: Sequence[dict[str, Any]], split: str, model: str, baseline: str
) -> PairedEvidence | None:
    """The paired evidence of ``model`` against ``baseline`` on ``split``'s pairs scored by
    both (PSNR capped at :data:`PSNR_CAP`, as in the means)."""
    scores: dict[str, dict[tuple[Any, ...], float]] = {model: {}, baseline: {}}
    scenes: dict[tuple[Any, ...], str] = {}
    for p in pairs:
        if p["split"] != split or p["method"] not in scores:
            continue
        # A pair's identity; a missing clip or frame may be None or, read back from the
        # CSV, NaN (never equal to itself).
        key = tuple(
            None if v is None or (isinstance(v, float) and math.isnan(v)) else v
            for v in (p["pair_id"], p.get("clip_id"), p.get("frame_index"))
        )
        scores[p["method"]][key] = min(float(p["psnr"]), PSNR_CAP)
        scenes[key] = str(p["scene_id"])
    both = scores[model].keys() & scores[baseline].keys()
    return paired_evidence(
        (scenes[k], scores[model][k], scores[baseline][k]) for k in sorted(both, key=str)
    )


def _verdict(entry: dict[str, Any], methods: dict[str, Any]) -> dict[str, Any]:
    head = "model vs best fair baseline:"
    label = entry["baseline_label"]
    if entry["baseline"] is None:
        return {"status": "no-baseline", "line": f"{head} none (no fair reference method was "
                "scored: drop --no-references)"}  # fmt: skip
    if entry["model"] is None:
        return {"status": "no-model", "line": f"{head} no model scored; best fair baseline "
                f"{label} {entry['baseline_psnr']:.2f} dB"}  # fmt: skip
    if entry["model_psnr"] is None:
        return {"status": "no-model", "line": f"{head} the model has no score"}
    delta = entry["model_psnr"] - entry["baseline_psnr"]
    dssim = (
        None
        if entry["model_ssim"] is None or entry["baseline_ssim"] is None
        else entry["model_ssim"] - entry["baseline_ssim"]
    )
    text = f"{head} {delta:+.2f} dB ({label})"
    if dssim is not None:
        text += f", SSIM {dssim:+.3f}"
    found: dict[str, Any] = {"delta_psnr": delta, "delta_ssim": dssim}
    if entry["model_peeks"]:
        model = methods[entry["model"]]
        return {**found, "status": "not-fair", "line": f"{text}: NOT A FAIR COMPARISON, "
                f"{model['label']} peeks ({model.get('why') or 'it sees the target'}); "
                "score it with --reference other-scene or train-scene"}  # fmt: skip
    evidence = entry.get("evidence")
    why = "" if evidence is None else f"; {PairedEvidence.from_json(evidence).describe()}"
    if abs(delta) < LEVEL_DB:
        return {**found, "status": "level",
                "line": f"{text}: LEVEL (not above the baseline){why}"}  # fmt: skip
    if delta < 0:
        return {**found, "status": "below", "line": f"{text}: BELOW the fair baseline{why}"}
    if evidence is None:
        return {**found, "status": "above", "line": f"{text}: above the fair baseline "
                "(mean only: no per-pair scores to weigh the scenes)"}  # fmt: skip
    if evidence["clear"] != "above":
        return {**found, "status": "unclear", "line": f"{text}: above the fair baseline on "
                f"average, NOT CLEARLY{why}"}  # fmt: skip
    return {**found, "status": "above", "line": f"{text}: clearly above the fair baseline{why}"}


def evaluate(
    data: str | Path,
    ckpt: str | Path | None = None,
    config: EvalConfig | None = None,
    *,
    out: str | Path | None = None,
    progress: Callable[[int], object] | None = None,
    model: Baseline | None = None,
    images: str | Path | None = None,
) -> EvalResult:
    """Score the checkpoint ``ckpt`` (a run, step folder or weights file; or an in-memory
    ``model``) and the reference methods on dataset ``data``; write the results to ``out``
    and, with ``images``, triptychs and a page of the best and worst pairs there
    (:func:`write_images`).

    Raises
    ------
    EvalError
        A split the dataset lacks, no pair left, a video model on a dataset without clips,
        ``other-scene`` references with a single scene, a method output with NaN or
        infinite values.
    CheckpointError, DatasetError, DataError, OutputError
        From loading the checkpoint (NaN or infinite weights included), the dataset or
        its images, or claiming ``out`` / ``images``.
    """
    config = config or EvalConfig()
    dataset = load_dataset(data)
    checkpoint: LoadedCheckpoint | None = None
    if model is None and ckpt is not None:
        model, checkpoint = load_checked_model(ckpt)
    elif model is not None:
        check_finite_weights(model, f"model {model.name!r}")
    reader = _Reader(dataset, config.resize)
    # the fair baselines measured on the training split (none without reference methods)
    trained = (
        {"train_level": train_level(dataset, config, reader),
         "train_ratio": train_ratio(dataset, config, reader)}
        if config.references else {}
    )  # fmt: skip
    train_methods = [method for _, method in trained.values() if method is not None]
    methods = _methods(model, checkpoint, config.references, config.reference, train_methods)
    with contextlib.ExitStack() as held:
        # Refuse a bad output folder before the (long) scoring, and hold it to the end.
        folders = _claim_outputs(data, out, images, held)
        saver = None
        if images is not None:
            shown = next((m.name for m in methods if m.kind == "model"), None)
            saver = _TriptychSaver(folders["images"], shown)
        result = _evaluate(
            dataset, data, config, model, checkpoint, methods,
            {key: info for key, (info, _) in trained.items()}, progress, saver, out,
        )  # fmt: skip
    return result


#: What ``expokit eval`` writes into its output folder, removed before each run.
OWNED_FILES = (SUMMARY_FILE, PAIRS_FILE, CLIPS_FILE)


def _claim_outputs(
    data: str | Path,
    out: str | Path | None,
    images: str | Path | None,
    held: contextlib.ExitStack,
) -> dict[str, Path]:
    """Claim and lock ``out`` and ``images`` (evaluation roots outside the dataset) and clear
    what an earlier evaluation left there, so the folders hold this run's result only.

    ``summary.json`` goes first: a folder with it is complete. Earlier triptychs and pages
    go too (the images folder holds only what eval wrote: it is an evaluation root), and
    temporary files of killed writes.
    """
    claimed: dict[str, Path] = {}
    locked: set[Path] = set()
    for key, folder, what in (("out", out, "output folder"), ("images", images, "images folder")):
        if folder is None:
            continue
        check_output_folder(folder, data, what=f"evaluation {what}")
        path = claim_root(folder, "evaluation", what=what)
        claimed[key] = path
        if path.resolve() in locked:  # --save-images into --out: one lock
            continue
        held.enter_context(RootLock(path, "expokit eval"))
        locked.add(path.resolve())
        remove_stale_temp_files(path)
    if "out" in claimed:
        for name in OWNED_FILES:
            (claimed["out"] / name).unlink(missing_ok=True)
    if "images" in claimed:
        _clear_images(claimed["images"])
    return claimed


def _clear_images(folder: Path) -> None:
    """Remove an earlier run's triptychs (``<split>/NNNN-<pair>.png``) and page."""
    (folder / IMAGES_PAGE).unlink(missing_ok=True)
    for split in folder.iterdir():
        if not split.is_dir() or split.is_symlink() or split.name.startswith("."):
            continue
        for png in split.glob("[0-9][0-9][0-9][0-9]-*.png"):
            if png.is_file() and not png.is_symlink():
                png.unlink()
        with contextlib.suppress(OSError):
            split.rmdir()  # only when now empty


def _evaluate(
    dataset: Dataset,
    data: str | Path,
    config: EvalConfig,
    model: Baseline | None,
    checkpoint: LoadedCheckpoint | None,
    methods: list[_Method],
    trained: dict[str, dict[str, Any]],
    progress: Callable[[int], object] | None,
    saver: _TriptychSaver | None,
    out: str | Path | None,
) -> EvalResult:
    """Score every split and write the results (the output folders are claimed and held)."""
    runner = _ModelRunner(model, config.device) if model is not None else None
    result = EvalResult()
    scorer = _Scorer(dataset, config, runner, methods, progress, saver)
    for split in config.splits:
        scorer.split(split, result)
    result.summary = {
        "format": EVAL_FORMAT,
        "format_version": EVAL_VERSION,
        "dataset": str(Path(data)),
        "dataset_name": dataset.info.name,
        "checkpoint": None if checkpoint is None else checkpoint.summary(),
        "config": {**asdict(config), "splits": list(config.splits)},
        "conventions": (
            "PSNR/SSIM (expokit.curation.metrics) on uint8 RGB, no crop, inside the valid "
            f"mask; PSNR capped at {PSNR_CAP} dB in means; under: input_ev < target_ev, "
            "over: input_ev > target_ev; ewarp: mean squared RGB error in [0,1] of outputs "
            "warped with DIS flow of the targets, occlusions masked; flicker: std/mean of the "
            "mean linear luminance over a clip; peeking: the method sees the scored target "
            "under this reference mode; best fair baseline: the non-peeking reference method "
            f"with the highest mean PSNR; too small: < {MIN_PAIRS} pairs or < {MIN_SCENES} "
            "scenes"
        ),
        "methods": {
            m.name: {
                "label": m.label,
                "kind": m.kind,
                "peeking": m.peeking,
                "why": m.why,
                "uses_reference": m.uses_reference,
            }
            for m in methods
        },
        "fair_baselines": {
            "methods": [m.name for m in methods if m.kind == "reference" and not m.peeking],
            "train_level": trained.get("train_level") or None,
            "train_ratio": trained.get("train_ratio") or None,
        },
        "splits": summarise(result.pairs, result.clips, [m.name for m in methods]),
        "split_size": split_size(result.pairs),
    }
    result.summary["comparison"] = compare(result.summary, result.pairs)
    if saver is not None:
        for split, verdict in result.summary["comparison"].items():
            if saver.method is not None:
                saver.shown[split] = saver.method
            elif verdict["baseline"] is not None:  # reference-only: the best fair baseline
                method = next(m for m in methods if m.name == verdict["baseline"])
                saver.shown[split] = method.name
                scorer.draw_reference(split, method)
        result.summary["images"] = str(write_images(saver, result))
    if out is not None:
        write_results(out, result)
    return result


def reference_targets(
    data: str | Path, split: str, config: EvalConfig | None = None
) -> dict[str, tuple[str, str]]:
    """``{scene: (reference scene, reference target path relative to the dataset)}``: the
    reference :func:`evaluate` gives every pair of ``split`` under ``config.reference``
    (``same``: each scene's own pairs' targets, so ``{}``)."""
    config = config or EvalConfig(splits=(split,))
    dataset = load_dataset(data)
    scorer = _Scorer(dataset, config, None, [], None)
    rows = _select(dataset, split, config.min_ev_error, config.selection)
    if config.reference == "other-scene":
        return scorer._scene_reference_rel(rows)
    if config.reference == "train-scene":
        return scorer._train_reference_rel(rows)
    return {}


def method_from_summary(summary: dict[str, Any], name: str) -> ReferenceMethod:
    """The reference method ``name`` of an evaluation ``summary``, rebuilt to run again
    (the training-split gain from the level recorded in ``fair_baselines``)."""
    if name in REFERENCE_METHODS:
        return REFERENCE_METHODS[name]
    fair = summary.get("fair_baselines") or {}
    level = fair.get("train_level") or {}
    if name == "gain_to_train_mean" and level.get("level") is not None:
        return train_level_method(float(level["level"]), str(level["split"]))
    ratio = fair.get("train_ratio") or {}
    if name == "exposure_ratio_of_train" and ratio.get("ratio") is not None:
        return train_ratio_method(float(ratio["ratio"]), str(ratio["split"]))
    raise EvalError(f"no reference method {name!r} in this evaluation")


def reference_mode_for(
    data: str | Path, split: str, config: EvalConfig | None = None
) -> ReferenceMode:
    """A reference mode under which no reference-taking method sees the target of
    ``split``: ``other-scene`` when it has two scenes or more, else ``train-scene``."""
    config = config or EvalConfig(splits=(split,))
    rows = _select(load_dataset(data), split, config.min_ev_error, config.selection)
    return "other-scene" if rows["scene_id"].astype(str).nunique() >= 2 else "train-scene"


def _csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    return buffer.getvalue()


def write_results(out: str | Path, result: EvalResult) -> Path:
    """Write ``pairs.csv``, ``clips.csv`` (when there are clips) and ``summary.json``
    atomically into ``out`` (claimed as an ``evaluation`` root); return ``out``."""
    import json

    folder = claim_root(out, "evaluation")
    atomic_write_text(folder / PAIRS_FILE, _csv_text(result.pairs, PAIR_COLUMNS))
    if result.clips:
        atomic_write_text(folder / CLIPS_FILE, _csv_text(result.clips, CLIP_COLUMNS))
    text = json.dumps(json_safe(result.summary), indent=2, allow_nan=False) + "\n"
    atomic_write_text(folder / SUMMARY_FILE, text)  # last: a folder with it is complete
    return folder


def _cell(value: float | None, digits: int, scale: float = 1.0) -> str:
    return "–" if value is None else f"{value * scale:.{digits}f}"


def _selection_note(summary: dict[str, Any]) -> str:
    """``"; pairs chosen by QA flags: ..."`` when the evaluation used a selection."""
    chosen = (summary.get("config") or {}).get("selection") or {}
    try:
        selection = PairSelection.from_dict(chosen) if chosen else PairSelection()
    except ExpokitError:
        return ""
    return "" if selection.everything else f"; pairs chosen by QA flags: {selection.describe()}"


def format_table(summary: dict[str, Any]) -> str:
    """Markdown tables, one per split: PSNR/SSIM for all, under- and over-exposed inputs,
    and for video E_warp (x1000) and flicker; a ``peeks`` column (whether the method sees
    the target under the reference mode used); a warning line for a split too small to
    mean much; and last, the verdict line ``model vs best fair baseline: ...``."""
    lines: list[str] = []
    methods = summary["methods"]
    sizes = summary.get("split_size", {})
    verdicts = summary.get("comparison") or compare(summary)
    for split, table in summary["splits"].items():
        video = any("video" in entry for entry in table.values())
        head = ["method", "peeks"]
        for group in GROUPS:
            head += [f"PSNR {group}", f"SSIM {group}"]
        if video:
            head += ["E_warp x1e3", "flicker"]
        counts: dict[str, Any] = next(iter(table.values()), {})
        lines.append(
            f"split {split}: "
            + ", ".join(f"{g} {counts.get(g, {}).get('pairs', 0)} pairs" for g in GROUPS)
            + f" (reference: {summary.get('config', {}).get('reference', 'same')})"
            + _selection_note(summary)
        )
        warning = sizes.get(split, {}).get("warning")
        if warning:
            lines.append(warning)
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for name, entry in table.items():
            cells = [methods[name]["label"], "yes" if methods[name].get("peeking") else "no"]
            for group in GROUPS:
                cells += [_cell(entry[group]["psnr"], 2), _cell(entry[group]["ssim"], 3)]
            if video:
                v = entry.get("video", {})
                cells += [_cell(v.get("ewarp"), 3, 1000.0), _cell(v.get("flicker"), 4)]
            lines.append("| " + " | ".join(cells) + " |")
        if video:
            own: dict[str, Any] = next((e["video"] for e in table.values() if "video" in e), {})
            lines.append(
                f"targets themselves: E_warp x1e3 {_cell(own.get('ewarp_target'), 3, 1000.0)}, "
                f"flicker {_cell(own.get('flicker_target'), 4)}"
            )
        if split in verdicts:
            lines.append(verdicts[split]["line"])
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- images


def triptych(image: F64, output: F64, target: F64) -> npt.NDArray[np.uint8]:
    """Input, output and target side by side: uint8 RGB ``(h, 3 w, 3)``, each panel the
    pair's scored size, area-downscaled so its longer side is at most :data:`PANEL_MAX`."""
    import cv2

    panels = [to_uint8(x) for x in (image, output, target)]
    h, w = panels[0].shape[:2]
    scale = PANEL_MAX / max(h, w)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        panels = [
            np.asarray(cv2.resize(x, size, interpolation=cv2.INTER_AREA), np.uint8) for x in panels
        ]
    return np.ascontiguousarray(np.concatenate(panels, axis=1), dtype=np.uint8)


class _TriptychSaver:
    """Writes one triptych PNG per scored pair of the shown method into ``folder``."""

    def __init__(self, folder: Path, method: str | None) -> None:
        self.folder = folder
        #: the model's name, or None: the best fair baseline of each split, drawn after scoring
        self.method = method
        self.shown: dict[str, str] = {}
        self.files: dict[str, dict[str, str]] = {}  # split -> pair id -> path in folder

    def write(self, split: str, pair_id: str, image: F64, output: F64, target: F64) -> None:
        import cv2

        names = self.files.setdefault(split, {})
        # the index keeps names unique; "+" stays readable (EV tokens: ev+1.0 vs ev-1.0)
        rel = names.get(pair_id) or (
            f"{safe_component(split, 'split')}/{len(names):04d}-"
            f"{safe_component(pair_id.replace('+', 'plus'))}.png"
        )
        rgb = triptych(image, output, target)
        ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise EvalError(f"{self.folder / rel}: could not encode the triptych PNG")
        atomic_write_bytes(self.folder / rel, data.tobytes())
        names[pair_id] = rel


def _card(p: dict[str, Any], files: dict[str, str], fair: dict[str, float]) -> str:
    """One pair on the images page: its triptych (linked) and its scores."""
    import html

    rel = files.get(p["pair_id"])
    ev = p["input_ev"]
    text = (
        f"{p['pair_id']} ({p['exposure']}, input EV {ev:+g}): "
        f"{min(p['psnr'], PSNR_CAP):.2f} dB, SSIM {_cell(p['ssim'], 3)}"
    )
    if p["pair_id"] in fair:
        text += f"; best fair baseline {min(fair[p['pair_id']], PSNR_CAP):.2f} dB"
    src = html.escape(rel) if rel else ""
    image = f"<a href='{src}'><img src='{src}' alt='input, output, target'></a>" if rel else ""
    return f"<figure>{image}<figcaption>{html.escape(text)}</figcaption></figure>"


def write_images(saver: _TriptychSaver, result: EvalResult) -> Path:
    """``index.html`` in the images folder: per split the verdict, the table, and the
    :data:`SHOWN_PAIRS` best and worst pairs by the shown method's PSNR (the model's; for
    reference-only evaluations the best fair baseline's), then every pair. Self-contained:
    inline style, links relative to the page. Returns the page's path."""
    import html

    summary = result.summary
    methods = summary["methods"]
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>expokit eval: best and worst pairs</title>",
        "<style>body{font:14px sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "img{max-width:100%;image-rendering:pixelated}figure{margin:1em 0}"
        "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}"
        ".below{color:#b00}.warn{color:#a60}pre{background:#f6f6f6;padding:.5em}</style>",
        "</head><body><h1>expokit eval: best and worst pairs</h1>",
        f"<p>dataset <code>{esc(str(summary['dataset']))}</code>",
    ]
    ckpt = summary.get("checkpoint")
    if ckpt:
        parts.append(f"; checkpoint <code>{esc(str(ckpt.get('path')))}</code>")
    parts.append(
        f"; reference <code>{esc(str(summary['config']['reference']))}</code>. Each image: "
        "input | output | target.</p>"
    )
    tables = format_table(summary).split("\n\n")
    for index, split in enumerate(summary["splits"]):
        verdict = summary["comparison"][split]
        shown = saver.shown.get(split)
        files = saver.files.get(split, {})
        status = verdict["status"]
        css = "below" if status in ("below", "level", "not-fair", "unclear") else ""
        parts.append(
            f"<h2>split {esc(split)}</h2><p class='{css}'><b>{esc(verdict['line'])}</b></p>"
        )
        warning = summary["split_size"].get(split, {}).get("warning")
        if warning:
            parts.append(f"<p class='warn'>{esc(warning)}</p>")
        parts.append(f"<pre>{esc(tables[index] if index < len(tables) else '')}</pre>")
        if shown is None:
            parts.append("<p>no method to show (no model and no fair baseline)</p>")
            continue
        fair = verdict["baseline"] if shown != verdict["baseline"] else None
        scores = {p["pair_id"]: p for p in result.pairs
                  if p["split"] == split and p["method"] == shown}  # fmt: skip
        fair_scores = {p["pair_id"]: p["psnr"] for p in result.pairs
                       if p["split"] == split and p["method"] == fair}  # fmt: skip
        ranked = sorted(scores.values(), key=lambda p: (-min(p["psnr"], PSNR_CAP), p["pair_id"]))
        best = ranked[: min(SHOWN_PAIRS, (len(ranked) + 1) // 2)]
        worst = ranked[::-1][: min(SHOWN_PAIRS, len(ranked) - len(best))]
        about = f"shown: {methods[shown]['label']}"
        if fair:
            about += f"; beside it the best fair baseline, {methods[fair]['label']}"
        parts.append(f"<p>{esc(about)}</p>")

        for title, chosen in (("best", best), ("worst", worst)):
            parts.append(f"<h3>{title} {len(chosen)} by PSNR</h3>")
            parts.extend(_card(p, files, fair_scores) for p in chosen)
        parts.append("<h3>all pairs</h3><table><tr><th>pair</th><th>PSNR</th><th>SSIM</th>"
                     + ("<th>fair baseline PSNR</th>" if fair else "") + "</tr>")  # fmt: skip
        for p in ranked:
            rel = files.get(p["pair_id"])
            name = f"<a href='{esc(rel)}'>{esc(p['pair_id'])}</a>" if rel else esc(p["pair_id"])
            row = f"<tr><td>{name}</td><td>{min(p['psnr'], PSNR_CAP):.2f}</td>"
            row += f"<td>{_cell(p['ssim'], 3)}</td>"
            if fair:
                row += f"<td>{_cell(fair_scores.get(p['pair_id']), 2)}</td>"
            parts.append(row + "</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    page = saver.folder / IMAGES_PAGE
    atomic_write_text(page, "\n".join(parts) + "\n")
    return page
