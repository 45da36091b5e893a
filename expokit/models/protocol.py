"""The SICE multi-exposure protocol (the one the released UEC is measured with), as functions.

Protocol
--------
* Each scene folder holds one exposure ladder (7 images for SICE); exposures are taken in
  *natural* file-name order (``2.jpg`` < ``10.jpg``), darkest first.
* Inputs are the two darkest and the two brightest exposures (indices ``0, 1, -2, -1``),
  the target is the middle one (index 3 of 7); the **reference** that sets the exposure the
  output should take is the middle exposure of the *next* scene (cyclic, sorted names).
* Input, target and reference are resized to ``size x size`` (256) with bilinear,
  antialiased filtering (Pillow's ``BILINEAR``; :func:`resize` uses the same triangle filter
  via PyTorch) and kept as ``uint8`` RGB.
* PSNR and SSIM on ``uint8`` RGB (:mod:`expokit.curation.metrics`): outputs are rounded to
  ``uint8`` before scoring; the score of a method is the mean over all items.
* Learned models score every scene with weights that never saw it: scene-disjoint
  ``k``-fold cross-validation (:func:`scene_folds`, two folds of 11 for the 22 scenes).

Reference methods (:data:`PROTOCOL_METHODS`) are what the anchors in ``docs/models.md`` were
measured with: identity; one global gain giving the input the reference's mean (over all RGB
values); an *oracle* gain + gamma ``clip(a * x ** g)`` fitted to the target by unclipped
least squares (peeking: an upper bound, never a method).

:func:`train_fold` trains a model for one fold the way a user does (``curate build`` with
the fold as split lists, then ``expokit train`` with the model's default recipe), so the
table measures the shipped recipe; :func:`run_protocol` runs the whole cross-validation and
returns a :class:`ProtocolResult`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from expokit.core.errors import ExpokitError, InputFileError
from expokit.core.images import read_image
from expokit.curation.build.config import BuildConfig
from expokit.curation.build.driver import build_dataset
from expokit.curation.build.splits import SplitSpec
from expokit.curation.metrics import psnr, ssim
from expokit.models import reference as ref
from expokit.models.checkpoint import load_model
from expokit.models.train import recipe, resolve_config, train

U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

#: Anchors measured with this protocol on the 22 shared SICE scenes (PSNR dB, SSIM).
ANCHORS: dict[str, tuple[float, float]] = {
    "identity": (8.87, 0.465),
    "gain_to_reference": (16.94, 0.732),
    "oracle_gain_gamma": (23.99, 0.842),
    "uec_released": (19.66, 0.822),
}


class ProtocolError(ExpokitError):
    """The sequences cannot be used for the protocol (too few exposures, sizes, no scenes)."""


# -- loading -----------------------------------------------------------------------------------
def natural_key(name: str) -> list[Any]:
    """Sort key that orders digit runs by value: ``"2.jpg" < "10.jpg"``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class SceneSequence:
    """One exposure ladder: ``images`` ``(N, H, W, 3)`` ``uint8`` RGB, darkest first."""

    name: str
    images: U8
    files: tuple[str, ...] = ()


def resize(image: U8, size: int) -> U8:
    """``image`` ``(H, W, 3)`` ``uint8`` -> ``(size, size, 3)`` ``uint8``, bilinear with
    antialiasing (a triangle filter widened by the scale, as Pillow's ``BILINEAR``)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    if image.shape[0] == size and image.shape[1] == size:
        return image
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def read_rgb(path: Path) -> U8:
    """An image file as ``(H, W, 3)`` ``uint8`` RGB, upright per its EXIF orientation
    (through :func:`expokit.core.images.read_image`; :class:`ProtocolError` when unreadable)."""
    import cv2

    try:
        bgr = read_image(path, unchanged=False)
    except InputFileError as exc:
        raise ProtocolError(f"{path}: cannot be read as an image ({exc.problem})") from None
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def load_sequences(
    root: str | Path, size: int = 256, exposures: int = 7, limit: int | None = None
) -> list[SceneSequence]:
    """Every sub-folder of ``root`` (sorted naturally) as a :class:`SceneSequence` of
    ``exposures`` images in natural file-name order, each resized to ``size`` x ``size``.

    ``limit`` keeps only the first scenes. A folder with another number of images is a
    :class:`ProtocolError` naming it.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise ProtocolError(f"{folder}: no such folder of exposure sequences")
    scenes = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name))
    if limit is not None:
        scenes = scenes[:limit]
    if not scenes:
        raise ProtocolError(f"{folder}: holds no scene folders")
    sequences = []
    for scene in scenes:
        files = sorted(
            (p for p in scene.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
            key=lambda p: natural_key(p.name),
        )
        if len(files) != exposures:
            raise ProtocolError(
                f"{scene}: expected {exposures} exposures, found {len(files)} image files"
            )
        images = np.stack([resize(read_rgb(p), size) for p in files])
        sequences.append(SceneSequence(scene.name, images, tuple(p.name for p in files)))
    return sequences


# -- test items --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProtocolItem:
    """One scored item: ``input``, ``target``, ``reference`` ``(H, W, 3)`` ``uint8`` RGB."""

    scene: int
    input_index: int
    input: U8
    target: U8
    reference: U8


def target_index(exposures: int) -> int:
    """The middle exposure (3 of 7)."""
    return exposures // 2


def input_indices(exposures: int) -> tuple[int, ...]:
    """The two darkest and the two brightest exposures (0, 1, 5, 6 of 7)."""
    if exposures < 5:
        raise ProtocolError(f"the protocol needs at least 5 exposures per scene, got {exposures}")
    return (0, 1, exposures - 2, exposures - 1)


def build_items(
    sequences: Sequence[SceneSequence], scenes: Sequence[int] | None = None
) -> list[ProtocolItem]:
    """The 4 items of each scene in ``scenes`` (default all); the reference is the middle
    exposure of the next scene of *all* ``sequences`` (cyclic), as the anchors use."""
    n = len(sequences)
    if n < 2:
        raise ProtocolError("the protocol needs at least 2 scenes (the reference is another's)")
    items = []
    for s in range(n) if scenes is None else scenes:
        seq = sequences[s]
        mid = target_index(len(seq.images))
        ref_seq = sequences[(s + 1) % n]
        reference = ref_seq.images[target_index(len(ref_seq.images))]
        for j in input_indices(len(seq.images)):
            items.append(ProtocolItem(s, j, seq.images[j], seq.images[mid], reference))
    return items


def scene_folds(count: int, folds: int = 2) -> list[list[int]]:
    """Scene-disjoint folds of ``range(count)``: contiguous blocks of near-equal size
    (11 + 11 for 22 scenes). Fold ``f`` is *tested* on ``result[f]``."""
    if folds < 2 or folds > count:
        raise ProtocolError(f"cannot split {count} scenes into {folds} folds")
    return [list(map(int, block)) for block in np.array_split(np.arange(count), folds)]


# -- scoring -----------------------------------------------------------------------------------
def to_uint8(image: npt.ArrayLike) -> U8:
    """Float ``[0, 1]`` ``(H, W, 3)`` -> ``uint8`` (rounded, clipped)."""
    return np.asarray(np.clip(np.round(np.asarray(image) * 255.0), 0, 255), dtype=np.uint8)


def score(output: U8, target: U8) -> tuple[float, float]:
    """``(psnr, ssim)`` of ``uint8`` RGB images with :mod:`expokit.curation.metrics`."""
    return psnr(output, target), ssim(output, target)


# -- reference methods (as the anchors were measured) ------------------------------------------
def identity(x: F64, reference: F64, target: F64) -> F64:
    """The input unchanged."""
    return x


def gain_to_reference(x: F64, reference: F64, target: F64) -> F64:
    """``clip(x * mean(reference) / mean(x))``, means over all RGB values."""
    mine = float(x.mean())
    return x if mine <= 0 else np.clip(x * (float(reference.mean()) / mine), 0.0, 1.0)


def fit_gain_gamma_unclipped(x: F64, target: F64, steps: int = 50) -> tuple[float, float]:
    """``(a, g)`` minimising ``sum (a * x ** g - target) ** 2`` over all values (unclipped
    nonlinear least squares, as ``scipy.optimize.curve_fit`` from ``a = g = 1``; damped
    Gauss-Newton)."""
    xs = np.maximum(np.asarray(x, dtype=np.float64).ravel(), 1e-6)
    ts = np.asarray(target, dtype=np.float64).ravel()
    lx = np.log(xs)
    a, g = 1.0, 1.0

    def cost(a_: float, g_: float) -> float:
        return float(((a_ * xs**g_ - ts) ** 2).sum())

    best = cost(a, g)
    damping = 1e-3
    for _ in range(steps):
        y = xs**g
        r = a * y - ts
        jac = np.stack([y, a * y * lx], axis=1)
        jtj, jtr = jac.T @ jac, jac.T @ r
        improved = False
        while damping < 1e8:
            step = np.linalg.solve(jtj + damping * np.diag(np.diag(jtj) + 1e-12), -jtr)
            na, ng = a + float(step[0]), float(np.clip(g + step[1], 0.01, 50.0))
            new = cost(na, ng)
            if new < best:
                improved, damping = True, max(damping / 10, 1e-9)
                break
            damping *= 10
        if not improved:
            break
        gain = best - new
        a, g, best = na, ng, new
        if gain < 1e-10 * max(best, 1e-12):
            break
    return a, g


def oracle_gain_gamma(x: F64, reference: F64, target: F64) -> F64:
    """PEEKING: ``clip(a * x ** g)`` with ``a, g`` fitted to ``target`` (an upper bound for a
    global curve fitted this way; see :func:`fit_gain_gamma_unclipped`)."""
    a, g = fit_gain_gamma_unclipped(x, target)
    return np.clip(a * np.maximum(x, 0.0) ** g, 0.0, 1.0)


@dataclass(frozen=True)
class ProtocolMethod:
    name: str
    label: str
    peeking: bool
    run: Callable[[F64, F64, F64], F64]


def _library_methods() -> list[ProtocolMethod]:
    return [
        ProtocolMethod(
            "histogram_match",
            "histogram match to reference",
            False,
            lambda x, r, t: ref.histogram_match(x, r),
        ),
        ProtocolMethod(
            "oracle_gain_gamma_clipped",
            "oracle gain+gamma, clipped fit (models.reference; peeking)",
            True,
            lambda x, r, t: ref.oracle_gain_gamma(x, t),
        ),
    ]


#: The anchors' reference methods, in table order.
PROTOCOL_METHODS: dict[str, ProtocolMethod] = {
    m.name: m
    for m in (
        ProtocolMethod("identity", "identity", False, identity),
        ProtocolMethod("gain_to_reference", "global gain to reference", False, gain_to_reference),
        ProtocolMethod(
            "oracle_gain_gamma", "oracle gain+gamma fitted to target (peeking)", True,
            oracle_gain_gamma,
        ),
    )
}  # fmt: skip


def all_methods(extra: bool = True) -> dict[str, ProtocolMethod]:
    """:data:`PROTOCOL_METHODS` plus (``extra``) the other methods of
    :mod:`expokit.models.reference` (histogram match, its clipped oracle fit)."""
    methods = dict(PROTOCOL_METHODS)
    if extra:
        methods.update({m.name: m for m in _library_methods()})
    return methods


def score_method(
    method: ProtocolMethod, items: Sequence[ProtocolItem]
) -> list[tuple[float, float]]:
    """``(psnr, ssim)`` of ``method`` on every item."""
    scores = []
    for item in items:
        out = method.run(item.input / 255.0, item.reference / 255.0, item.target / 255.0)
        scores.append(score(to_uint8(out), item.target))
    return scores


def score_model(
    model: Any, items: Sequence[ProtocolItem], batch: int = 16
) -> list[tuple[float, float]]:
    """``(psnr, ssim)`` of a :class:`~expokit.models.base.Baseline` on every item: each
    input is corrected with ``model.enhance(input, reference)`` (float ``[0, 1]``, no grad)."""
    import torch

    model.eval()
    scores: list[tuple[float, float]] = []
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        x = torch.from_numpy(np.stack([i.input for i in chunk])).permute(0, 3, 1, 2).float() / 255
        r = torch.from_numpy(np.stack([i.reference for i in chunk])).permute(0, 3, 1, 2)
        with torch.no_grad():
            out = model.enhance(x, r.float() / 255)
        arrays = out.permute(0, 2, 3, 1).numpy()
        scores.extend(score(to_uint8(a), i.target) for a, i in zip(arrays, chunk, strict=True))
    return scores


# -- training through ``expokit train`` ----------------------------------------------------------
@dataclass
class TrainStats:
    """How one fold's model was trained: steps, wall seconds, mean loss of the last steps,
    where (:func:`expokit.models.train.describe_device`) and with which autocast mode."""

    steps: int
    seconds: float
    final_loss: float
    device: str = "cpu"
    amp: str = "off"

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else math.nan


def train_fold(
    source: str | Path,
    train_scenes: Sequence[str],
    test_scenes: Sequence[str],
    work: str | Path,
    *,
    model: str = "uec",
    overrides: dict[str, Any] | None = None,
    progress: bool = False,
    extra_sources: Sequence[str | Path] = (),
) -> tuple[Any, TrainStats, Path]:
    """Train ``model`` for one fold exactly as a user would: ``curate build`` of ``source``
    (a folder of scene folders) into ``work/data`` with the fold's scenes as the train and
    test splits, then ``expokit train`` with the model's default recipe (plus
    ``overrides``: ``steps``, ``max_minutes``, ``seed``, ...) into ``work/run``.

    ``extra_sources``: more folders of scene folders (exposure sequences from elsewhere),
    every scene of them added to the train split; their scene names must not clash.

    Returns the trained model (eval mode), its :class:`TrainStats` and the run folder.
    """
    import pandas as pd

    work = Path(work)
    data, run = work / "data", work / "run"
    lists = {"train": tuple(train_scenes), "test": tuple(test_scenes)}
    default = "train" if extra_sources else None
    config = BuildConfig(kind="sequences", splits=SplitSpec(lists=lists, default_split=default))
    summary = build_dataset([source, *extra_sources], data, config, progress=progress)
    if not summary.ok:
        raise ProtocolError(f"{source}: the fold's dataset did not build cleanly ({data})")
    train_config = resolve_config(
        model, overrides={"data": str(data), "out": str(run), **(overrides or {})}
    )
    result = train(train_config, progress=progress, echo=lambda _line: None)
    trained, _ = load_model(run, expect=model)
    log = pd.read_csv(run / "log.csv")
    final = float(log["loss"].tail(2).mean()) if len(log) else math.nan
    steps = result.step - result.start_step
    stats = TrainStats(steps, result.seconds, final, result.device, result.amp)
    return trained.eval(), stats, run


# -- the whole protocol ------------------------------------------------------------------------
@dataclass
class ProtocolResult:
    """Per-item scores per method, the fold of each item, and training stats per fold."""

    scenes: list[str]
    folds: list[list[int]]
    #: method -> list of (scene, input_index, psnr, ssim)
    scores: dict[str, list[tuple[int, int, float, float]]] = field(default_factory=dict)
    training: list[dict[str, Any]] = field(default_factory=list)
    recipe: dict[str, Any] = field(default_factory=dict)
    recipes: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: folders of more training sequences every fold trained on (never scored)
    extra_sources: list[str] = field(default_factory=list)

    def summary(self, method: str, fold: int | None = None) -> tuple[float, float]:
        """Mean ``(psnr, ssim)`` of ``method`` over all items or those of ``fold``."""
        rows = self.scores[method]
        if fold is not None:
            keep = set(self.folds[fold])
            rows = [r for r in rows if r[0] in keep]
        if not rows:
            return math.nan, math.nan
        return float(np.mean([r[2] for r in rows])), float(np.mean([r[3] for r in rows]))

    def to_json(self) -> dict[str, Any]:
        methods = {}
        for name in self.scores:
            overall = self.summary(name)
            folds = [self.summary(name, f) for f in range(len(self.folds))]
            methods[name] = {
                "psnr": overall[0],
                "ssim": overall[1],
                "folds": [{"psnr": p, "ssim": s} for p, s in folds],
                "items": [
                    {"scene": r[0], "input_index": r[1], "psnr": r[2], "ssim": r[3]}
                    for r in self.scores[name]
                ],
            }
        return {
            "protocol": "sice-7ev",
            "scenes": self.scenes,
            "folds": self.folds,
            "anchors": {k: {"psnr": v[0], "ssim": v[1]} for k, v in ANCHORS.items()},
            "methods": methods,
            "training": self.training,
            "recipe": self.recipe,
            "recipes": self.recipes,
            "extra_sources": self.extra_sources,
        }


def describe_source(folder: str | Path) -> str:
    """``"<folder name>: scene, scene, ..."`` of a folder of scene folders (what a run
    trained on beside its folds, named so a table can say it)."""
    path = Path(folder)
    scenes = sorted(c.name for c in path.iterdir() if c.is_dir()) if path.is_dir() else []
    return f"{path.name}: {', '.join(scenes)}"


def run_protocol(
    sequences: Sequence[SceneSequence],
    folds: int = 2,
    methods: dict[str, ProtocolMethod] | None = None,
    *,
    source: str | Path | None = None,
    work: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    models: Sequence[str] = ("uec",),
    model_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    extra_sources: Sequence[str | Path] = (),
) -> ProtocolResult:
    """Reference methods on every item and, given ``source`` (the folder ``sequences`` were
    loaded from) and ``work`` (a folder for the fold datasets and runs), each of ``models``
    trained per fold with :func:`train_fold` on the other folds' scenes (its default recipe
    plus ``overrides``, then its own ``model_overrides[name]``) and scored on the fold's
    own (scene-disjoint cross-validation). ``extra_sources`` (see :func:`train_fold`) join
    every fold's training scenes; they are never scored.

    ``result.recipe`` is the first model's resolved recipe, ``result.recipes`` every
    model's; ``result.training`` rows name their model."""
    methods = PROTOCOL_METHODS if methods is None else methods
    split = scene_folds(len(sequences), folds)
    result = ProtocolResult([s.name for s in sequences], split)
    items = build_items(sequences)
    for name, method in methods.items():
        scores = score_method(method, items)
        result.scores[name] = [
            (i.scene, i.input_index, p, s) for i, (p, s) in zip(items, scores, strict=True)
        ]
    if source is None or work is None:
        return result

    names = [s.name for s in sequences]
    result.extra_sources = [describe_source(p) for p in extra_sources]
    for model_name in models:
        # As the folds are trained: the overrides' model_config/data_options tables are merged.
        changes = {**(overrides or {}), **(model_overrides or {}).get(model_name, {})}
        resolved = recipe(model_name).replace(**changes).to_dict()
        result.recipes[model_name] = resolved
        if not result.recipe:
            result.recipe = resolved
        result.scores[model_name] = []
        for f, test_scenes in enumerate(split):
            train_scenes = [s for s in range(len(sequences)) if s not in set(test_scenes)]
            model, stats, run = train_fold(
                source, [names[s] for s in train_scenes], [names[s] for s in test_scenes],
                Path(work) / model_name / f"fold{f}", model=model_name, overrides=changes,
                extra_sources=extra_sources,
            )  # fmt: skip
            test_items = build_items(sequences, test_scenes)
            scores = score_model(model, test_items)
            result.scores[model_name].extend(
                (i.scene, i.input_index, p, s) for i, (p, s) in zip(test_items, scores, strict=True)
            )
            info = {
                "model": model_name, "fold": f, "train_scenes": train_scenes,
                "test_scenes": test_scenes, "run": str(run), "steps": stats.steps,
                "seconds": stats.seconds, "steps_per_second": stats.steps_per_second,
                "final_loss": stats.final_loss, "device": stats.device, "amp": stats.amp,
                "psnr": float(np.mean([p for p, _ in scores])),
                "ssim": float(np.mean([s for _, s in scores])),
            }  # fmt: skip
            result.training.append(info)
            if log is not None:
                log(
                    f"{model_name} fold {f}: {stats.steps} steps in {stats.seconds:.0f} s "
                    f"({stats.steps_per_second:.1f} steps/s on {stats.device}, amp "
                    f"{stats.amp}), PSNR {info['psnr']:.2f} dB, "
                    f"SSIM {info['ssim']:.3f}"
                )
    return result
