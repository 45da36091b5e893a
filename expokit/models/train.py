"""The training loop behind ``expokit train``: generic over :class:`~expokit.models.base.Baseline`.

``train(TrainConfig(...))`` trains ``config.model`` on the ``config.split`` rows of the dataset
``config.data`` and writes the run folder ``config.out`` (layout in
:mod:`expokit.models.checkpoint`): ``config.json`` (resolved config), ``log.csv``,
``checkpoints/step_*`` (safetensors weights + training state), ``checkpoints/best``,
``validation.json``, optionally TensorBoard events.

* One loss per step from ``model.training_loss(batch)``; AdamW, warm-up then cosine decay.
* Checkpoints every ``ckpt_every`` steps, at the end and when ``max_minutes`` runs out; the
  training state holds optimizer, scheduler, grad scaler, the python/numpy/torch RNG states
  of every rank and the step, so ``resume=True`` continues exactly where it stopped (the data
  stream too: :class:`~expokit.models.data.TrainSampler` restarts at the saved draw).
* A NaN/inf loss or a NaN in a batch stops training with a :class:`TrainError` naming the
  step; nothing is written for that step.
* Validation every ``val_every`` steps and at the end (:class:`_Validator`): val PSNR as
  ``expokit eval --reference other-scene`` computes it, next to the best fair baseline's;
  ``log.csv`` ``val_*`` columns, ``checkpoints/best`` (the highest val PSNR, kept across
  resume), ``validation.json`` with the line saying whether the model ever beat the
  baseline (:class:`ValidationSummary`).
* Under ``torchrun --nproc-per-node N`` it runs DistributedDataParallel (gloo on CPU, nccl on
  CUDA); each rank draws its own share of the batches; only rank 0 writes files.
* Recipes: :data:`RECIPES` holds each model's default :class:`TrainConfig`.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import math
import os
import pickle
import random
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, get_type_hints

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from expokit import __version__
from expokit.core import toml as tomllib
from expokit.core.atomic import (
    atomic_write_json,
    json_safe,
    read_json_object,
    remove_stale_temp_files,
)
from expokit.core.errors import ExpokitError
from expokit.core.lock import RootLock
from expokit.core.progress import show_progress, write_line
from expokit.core.roots import claim_root
from expokit.curation.dataset.format import load_dataset
from expokit.curation.metrics import psnr
from expokit.models.base import Batch, ModelError, parameter_count
from expokit.models.checkpoint import (
    META_FILE,
    STATE_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    CheckpointMeta,
    best_dir,
    find_best,
    newest_step_dir,
    read_meta,
    remove_best,
    save_best,
    save_checkpoint,
    step_dir,
)
from expokit.models.data import (
    DataError,
    batch_loader,
    check_output_folder,
    find_clips,
    open_dataset,
    pair_selection,
    read_mask,
    read_rgb,
    select_rows,
)
from expokit.models.evaluate import PSNR_CAP, EvalConfig, resize_image, scene_targets, train_level
from expokit.models.reference import REFERENCE_METHODS
from expokit.models.registry import create_model, model_class

if TYPE_CHECKING:
    import pandas as pd

    from expokit.models.base import Baseline
    from expokit.models.reference import ReferenceMethod

AMP_MODES = ("off", "bf16", "fp16")
SCHEDULES = ("cosine", "constant")
CONFIG_FILE = "config.json"
LOG_FILE = "log.csv"
#: Config keys that may change on ``--resume`` without a warning (they steer the run, not
#: what is learnt; validation does not touch the weights or RNGs, and a best checkpoint
#: validated another way is dropped on resume, with a line saying so).
_RUN_CONTROL = (
    "steps max_minutes num_workers log_every ckpt_every device tensorboard threads "
    "val_every val_split val_pairs val_size"
)
RUN_CONTROL_KEYS = frozenset(_RUN_CONTROL.split())
#: Seeds are 32-bit: numpy's global seed is, and the derived torch seeds
#: (``seed * 1000 + rank``, ``seed * 1009 + rank``) then stay inside torch's 64-bit range.
MAX_SEED = 2**32 - 1


class TrainError(ExpokitError):
    """Training cannot start or has to stop (bad config, NaN loss, run folder in use)."""


class TrainWarning(UserWarning):
    """Something the user should know that does not stop training (changed config)."""


# --------------------------------------------------------------------------- config


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved as ``RUN/config.json``).

    ``crop``/``resize``/``max_minutes`` of 0 mean "off" (TOML has no null). ``data_options``
    go to the dataset (:func:`expokit.models.data.open_dataset`: ``cache``, ``vflip``,
    ``scenes``, ``pair_weights``, ``reference_from``, ``num_frames``, ...); ``model_config``
    to the model's constructor.
    """

    model: str = ""
    data: str = ""
    out: str = ""
    split: str = "train"
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_steps: int = 0
    #: learning rate at the last step as a fraction of ``lr`` (cosine schedule)
    final_lr: float = 0.05
    #: gradient-norm clip (0: off)
    grad_clip: float = 0.0
    #: decay per step of an exponential moving average of the weights (0: off; e.g. 0.99).
    #: When on, validation, the best checkpoint and every step checkpoint's weights are the
    #: average (what inference loads); the step checkpoints keep the trained weights in
    #: their training state, so ``--resume`` goes on exactly.
    ema_decay: float = 0.0
    crop: int | None = 128
    resize: int | None = None
    flip: bool = True
    seed: int = 0
    num_workers: int = 0
    log_every: int = 10
    ckpt_every: int = 500
    max_minutes: float | None = None
    amp: str = "off"
    device: str = "auto"
    tensorboard: bool = True
    #: CPU threads torch may use per process (0: torch's default)
    threads: int = 0
    #: validate every this many steps and at the end (0: off); see :class:`_Validator`
    val_every: int = 100
    #: the split validated on (a missing one is reported once; training goes on)
    val_split: str = "val"
    #: at most this many val pairs, spread evenly over the split's sorted pair ids
    val_pairs: int = 16
    #: val images are resized to ``val_size x val_size`` (as ``expokit eval --resize``)
    val_size: int = 64
    model_config: dict[str, Any] = field(default_factory=dict)
    data_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("crop", "resize", "max_minutes"):
            if getattr(self, name) == 0:
                setattr(self, name, None)
        problems: list[str] = []

        def need(ok: bool, text: str) -> None:
            if not ok:
                problems.append(text)

        need(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(self.lr > 0 and math.isfinite(self.lr), f"lr must be > 0, got {self.lr}")
        need(
            math.isfinite(self.weight_decay) and self.weight_decay >= 0,
            f"weight_decay must be a finite number >= 0, got {self.weight_decay}",
        )
        need(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}")
        need(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        need(0 <= self.final_lr <= 1, f"final_lr must be in [0, 1], got {self.final_lr}")
        need(
            math.isfinite(self.grad_clip) and self.grad_clip >= 0,
            f"grad_clip must be a finite number >= 0 (0: off), got {self.grad_clip}",
        )
        need(
            0 <= self.ema_decay < 1,
            f"ema_decay must be in [0, 1) (0: off), got {self.ema_decay}",
        )
        need(self.crop is None or self.crop >= 1, f"crop must be >= 1 or 0 (off), got {self.crop}")
        need(
            self.resize is None or self.resize >= 1, f"resize must be >= 1 or 0, got {self.resize}"
        )
        need(self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}")
        need(self.threads >= 0, f"threads must be >= 0, got {self.threads}")
        need(0 <= self.seed <= MAX_SEED, f"seed must be in 0..{MAX_SEED}, got {self.seed}")
        need(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")
        need(self.ckpt_every >= 1, f"ckpt_every must be >= 1, got {self.ckpt_every}")
        need(self.val_every >= 0, f"val_every must be >= 0 (0: off), got {self.val_every}")
        need(bool(self.split), "split must name a split")
        need(bool(self.val_split), "val_split must name a split")
        need(self.val_pairs >= 1, f"val_pairs must be >= 1, got {self.val_pairs}")
        need(16 <= self.val_size <= 16384, f"val_size must be in 16..16384, got {self.val_size}")
        need(
            self.max_minutes is None or (math.isfinite(self.max_minutes) and self.max_minutes > 0),
            f"max_minutes must be a finite number > 0 or 0 (off), got {self.max_minutes}",
        )
        need(self.amp in AMP_MODES, f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        need(
            re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None,
            f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )
        clash = sorted({"crop", "resize", "flip", "seed"} & set(self.data_options))
        need(not clash, f"data_options: set {', '.join(clash)} as top-level keys")
        if problems:
            raise TrainError("invalid training config: " + "; ".join(problems))

    # -- conversion ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any], *, base: TrainConfig | None = None, where: str = ""
    ) -> TrainConfig:
        """``base`` (default: built-in defaults) with ``values`` applied, types checked.

        ``model_config`` and ``data_options`` tables are merged into ``base``'s.
        """
        prefix = f"{where}: " if where else ""
        hints = get_type_hints(cls)
        unknown = sorted(set(values) - set(hints))
        if unknown:
            raise TrainError(
                f"{prefix}unknown training key(s) {', '.join(unknown)}; known: {', '.join(hints)}"
            )
        merged = (base or cls()).to_dict()
        for key, value in values.items():
            checked = _check_type(key, value, hints[key], prefix)
            if key in ("model_config", "data_options"):
                merged[key] = {**merged[key], **checked}
            else:
                merged[key] = checked
        try:
            return cls(**merged)
        except TrainError as exc:
            if not prefix:
                raise
            raise TrainError(f"{prefix}{exc}") from None

    def replace(self, **values: Any) -> TrainConfig:
        """A copy with ``values`` (``None`` values are ignored), types checked."""
        return TrainConfig.from_dict({k: v for k, v in values.items() if v is not None}, base=self)


def _check_type(key: str, value: Any, hint: Any, prefix: str) -> Any:
    """``value`` checked against the :class:`TrainConfig` field type ``hint`` (``None`` only
    for an optional field; a table for a dict field), converted where TOML differs."""
    text = str(hint)
    optional = "None" in text
    if value is None:
        if optional:
            return None
        raise TrainError(f"{prefix}{key} must not be empty")
    if text.startswith("dict"):
        if not isinstance(value, Mapping):
            raise TrainError(f"{prefix}{key} must be a table, got {value!r}")
        return dict(value)
    return _check_scalar(key, value, hint, prefix)


def _check_scalar(key: str, value: Any, hint: Any, prefix: str) -> Any:
    """``value`` of a bool, str, float (an int is taken) or int key, or a
    :class:`TrainError` saying what it must be (a bool is never a number)."""
    text = str(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise TrainError(f"{prefix}{key} must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise TrainError(f"{prefix}{key} must be a string, got {value!r}")
        return value
    if "float" in text:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TrainError(f"{prefix}{key} must be a number, got {value!r}")
        return float(value)
    if "int" in text:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TrainError(f"{prefix}{key} must be an integer, got {value!r}")
        return value
    raise TrainError(f"{prefix}{key}: unsupported type {text}")  # pragma: no cover


#: Each model's default recipe; the values documented (and measured) in docs/models.md.
#: ``expokit train --model NAME`` starts from ``RECIPES[NAME]``; a TOML file and the
#: command-line flags override it.
RECIPES: dict[str, TrainConfig] = {
    # The recipe measured on the SICE protocol (docs/models.md, benchmarks/sice_protocol.py):
    # 64 px images, 32 px thumbnails for the features, 1024 sampled pixels, batch 16,
    # lr 1e-2 cosine to 5 %, the "camera" start (a gain on the light of a learnt 64-knot
    # camera response, with a learnt level: 22.29, 22.25, 22.26 dB over seeds 0-2, where the
    # sRGB "exposure" start scored 20.30), the middle exposure as the only target, 600 steps
    # (~1 CPU-minute). No corrector iterations: trained on 11-15 scenes the corrector fits
    # them, not held-out ones (with the "exposure" start, seeds 0-2: 20.58, 20.00, 17.96 dB
    # with it, 20.30, 20.25, 20.32 without; bounding its lambda or slowing its lr did not
    # close that gap).
    "uec": TrainConfig(
        model="uec",
        steps=600,
        batch_size=16,
        lr=1e-2,
        final_lr=0.05,
        crop=None,
        resize=64,  # every scene the same shape; the corrector is pointwise
        flip=True,
        log_every=25,
        ckpt_every=200,
        model_config={
            "feature_size": 32,
            "pixel_samples": 1024,
            "start": "camera",
            "response_knots": 64,
            "iterations": 0,
        },
        data_options={
            "cache": True,  # a few hundred files read thousands of times
            "reference_from": "other",  # the test situation: another scene's exposure
            # the task's target (the well-exposed middle exposure) only: other targets, with
            # references as dark or bright as they are, teach the learnt level to follow any
            # reference (-1.9 dB on held-out SICE scenes); every input, extremes twice
            "pair_weights": {
                "middle_target": 1.0,
                "other_target": 0.0,
                "extremes": 2,
                "extreme_input": 2.0,
                "other_input": 1.0,
            },
        },
    ),
    # Measured on the 22 SICE scenes (2 folds, docs/models.md): ~3 and ~2 CPU-minutes. The
    # moving average of recnet's weights: 19.30 dB there against 19.05 without (both folds up).
    "recnet": TrainConfig(
        model="recnet", steps=900, batch_size=8, lr=2e-3, crop=64, ema_decay=0.995
    ),
    "zerodce": TrainConfig(model="zerodce", steps=600, batch_size=8, lr=1e-3, crop=64),
    # The clip window follows the model's ``frames`` (model_config), 3 by default.
    "video": TrainConfig(model="video", steps=1000, batch_size=4, lr=5e-4, crop=96),
}


def recipe(model: str) -> TrainConfig:
    """A copy of ``model``'s default recipe (generic defaults for a model without one)."""
    base = RECIPES.get(model)
    return TrainConfig(model=model) if base is None else TrainConfig.from_dict({}, base=base)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The table of a TOML (or JSON) training config file; keys as :class:`TrainConfig`.

    A ``[train]`` table, if present, is used; ``[model_config]`` and ``[data_options]``
    tables are the nested options.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
        data = json.loads(text) if file.suffix.lower() == ".json" else tomllib.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TrainError(f"{file}: cannot read training config: {exc}") from None
    if not isinstance(data, dict):
        kind = "an array" if isinstance(data, list) else f"a {type(data).__name__}"
        raise TrainError(
            f"{file}: a training config must be an object of training keys, not {kind}"
        )
    if isinstance(data.get("train"), dict):
        data = {**{k: v for k, v in data.items() if k != "train"}, **data["train"]}
    return dict(data)


def resolve_config(
    model: str | None,
    *,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Recipe of the model < config file < ``overrides`` (``None`` values ignored)."""
    values = load_config_file(config_file) if config_file is not None else {}
    name = model or values.get("model")
    if not name or not isinstance(name, str):
        raise TrainError("no model given: pass --model NAME or set model in the config file")
    where = str(config_file) if config_file is not None else ""
    config = TrainConfig.from_dict(values, base=recipe(name), where=where)
    config = config.replace(model=name, **dict(overrides or {}))
    check_model_config(config, where)
    return config


def check_model_config(config: TrainConfig, where: str = "") -> None:
    """Build ``config.model`` from ``config.model_config`` once, so that a bad model setting
    is refused before any data is read, named as ``<where>: model_config: <problem>``.

    An unknown model name is the registry's own :class:`ModelError` (not a model_config
    problem). Building these models takes milliseconds; the training run builds its own
    after seeding.

    Raises
    ------
    TrainError
        A ``model_config`` value of the wrong type or out of range, or an unknown key.
    """
    model_class(config.model)  # an unknown model: the registry's error, as before
    try:
        create_model(config.model, **config.model_config)
    except ModelError as exc:
        prefix = f"{where}: " if where else ""
        raise TrainError(f"{prefix}model_config: {exc}") from None


# --------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class World:
    """This process's place in a (torchrun) process group."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @classmethod
    def from_env(cls) -> World:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), size)


def describe_device(device: torch.device) -> str:
    """``device`` in words for a benchmark row: ``"cuda:0 (NVIDIA H100 80GB HBM3)"`` or
    ``"cpu (2 threads)"``; timings are only comparable between rows that say the same."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    threads = torch.get_num_threads()
    return f"{device.type} ({threads} thread{'' if threads == 1 else 's'})"


def pick_device(name: str, world: World) -> torch.device:
    """``auto``: CUDA (this rank's GPU) when present, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainError(f"device {name!r} asked for, but torch sees no CUDA device")
        if name == "cuda":
            return torch.device("cuda", world.local_rank % torch.cuda.device_count())
    return torch.device(name)


def _init_group(world: World, device: torch.device) -> bool:
    """Join the process group torchrun set up; True when this call created it."""
    import torch.distributed as dist

    if not world.distributed or dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    return True


def _broadcast(world: World, value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not world.distributed:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _gather(world: World, value: Any) -> list[Any]:
    if not world.distributed:
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, value)
    return out


# --------------------------------------------------------------------------- state


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (and CUDA) RNG states, as tensors and plain values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # noqa: NPY002
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002 - the global state other code may use
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds code that uses the global RNG
    torch.manual_seed(seed)


def lr_factor(config: TrainConfig) -> Callable[[int], float]:
    """Multiplier of ``lr`` at a step: linear warm-up, then constant or cosine decay."""

    def factor(step: int) -> float:
        if config.warmup_steps and step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.schedule == "constant":
            return 1.0
        span = max(1, config.steps - config.warmup_steps)
        progress = min(1.0, (step - config.warmup_steps) / span)
        return config.final_lr + (1 - config.final_lr) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class _LossModule(nn.Module):
    """Routes ``forward`` to ``training_loss`` so DistributedDataParallel sees the call."""

    def __init__(self, model: Baseline) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return self.model.training_loss(batch)


def weights_checksum(model: nn.Module) -> float:
    """Sum of every parameter in float64 (equal on all ranks of a synchronous run)."""
    with torch.no_grad():
        return float(sum(p.detach().double().sum().item() for p in model.parameters()))


# --------------------------------------------------------------------------- the run


@dataclass
class TrainSummary:
    """What :func:`train` did."""

    run: Path
    model: str
    parameters: int
    start_step: int
    step: int
    steps: int
    stopped: str  # "done" | "time"
    last_loss: float | None
    checkpoint: Path | None
    seconds: float
    world_size: int = 1
    rank: int = 0
    checksum: float = 0.0
    #: what validation found (``off`` says why there was none)
    validation: ValidationSummary | None = None
    #: where it trained, in words (:func:`describe_device`), and the autocast mode
    device: str = "cpu"
    amp: str = "off"

    def report(self) -> list[str]:
        loss = "n/a" if self.last_loss is None else f"{self.last_loss:.5g}"
        why = "" if self.stopped == "done" else " (time limit reached)"
        lines = [
            f"trained {self.model} ({self.parameters:,} parameters) from step "
            f"{self.start_step} to {self.step} of {self.steps}{why} in {self.seconds:.1f} s"
            f" on {self.world_size} process(es); last loss {loss}",
            f"checkpoint: {self.checkpoint}",
        ]
        val = self.validation
        if val is not None and val.best_checkpoint is not None and val.best_psnr is not None:
            lines.append(
                f"best checkpoint: {val.best_checkpoint} (step {val.best_step}, val PSNR "
                f"{val.best_psnr:.2f} dB)"
            )
        verdict = None if val is None else val.verdict()
        if verdict is not None:
            lines.append(verdict)
        return lines


class _CsvLog:
    """``RUN/log.csv``: one row per ``log_every`` steps (and per validation); rows past
    ``start`` dropped. A row with a new column (the val ones) rewrites the file with it, so
    every row keeps every column (empty where a row has no value)."""

    def __init__(self, path: Path, start: int) -> None:
        self.path = path
        self.columns: list[str] | None = None
        self.rows: list[dict[str, Any]] = []
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                self.columns = list(reader.fieldnames or []) or None
                self.rows = [
                    r for r in reader if r.get("step", "").isdigit() and int(r["step"]) <= start
                ]
            if self.columns:
                self._write(self.rows, "w")
            else:
                path.unlink()

    def _write(self, rows: list[dict[str, Any]], mode: str) -> None:
        assert self.columns is not None
        with self.path.open(mode, newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, self.columns, extrasaction="ignore")
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        new = [k for k in row if k not in (self.columns or [])]
        if self.columns is None or new:
            self.columns = [*(self.columns or []), *new]
            self._write(self.rows, "w")
        else:
            self._write([row], "a")


def _tensorboard(
    run: Path, enabled: bool, echo: Callable[[str], None], resumed_from: int | None = None
) -> Any:
    """The run's TensorBoard writer (None when off or not installed).

    A resumed run purges the events past ``resumed_from``: a killed run may have logged
    steps after its last checkpoint, which the resumed run logs again (TensorBoard would
    show those steps twice, and the older values are of a discarded trajectory).
    """
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    echo(f"TensorBoard events in {run / 'tensorboard'}")
    purge = None if resumed_from is None else resumed_from + 1
    return SummaryWriter(str(run / "tensorboard"), purge_step=purge)


# --------------------------------------------------------------------------- validation

#: log.csv columns of a validation row.
VAL_COLUMNS = ("val_psnr", "val_baseline_psnr", "val_baseline")
#: What validation found, written at the end of every run (``RUN/validation.json``).
VALIDATION_FILE = "validation.json"


@dataclass
class ValidationSummary:
    """The val split, its fair baseline and the best checkpoint of a run.

    ``baseline`` is the best non-peeking reference method of
    :mod:`expokit.models.reference` on the val pairs (PSNR means in dB); ``off`` says why
    there was no validation (then the other fields are empty).
    """

    split: str
    every: int
    pairs: int = 0
    baseline: str | None = None
    baseline_psnr: float | None = None
    baseline_scores: dict[str, float] = field(default_factory=dict)
    best_step: int | None = None
    best_psnr: float | None = None
    best_checkpoint: Path | None = None
    off: str | None = None

    @property
    def margin(self) -> float | None:
        """Best val PSNR minus the fair baseline's (dB), or None."""
        if self.best_psnr is None or self.baseline_psnr is None:
            return None
        return self.best_psnr - self.baseline_psnr

    @property
    def beat_baseline(self) -> bool | None:
        margin = self.margin
        return (
            None if self.off is not None or self.baseline is None else bool(margin and margin > 0)
        )

    def verdict(self) -> str | None:
        """One plain line: did the model ever beat the fair baseline on val (None: off)?"""
        if self.off is not None or self.baseline is None or self.baseline_psnr is None:
            return None
        against = f"{self.baseline.replace('_', ' ')} {self.baseline_psnr:.2f} dB"
        if self.best_psnr is None:
            return (
                f"model never beat the fair baseline on {self.split}: no finite val PSNR vs "
                f"{against}"
            )
        best = f"best {self.best_psnr:.2f} dB at step {self.best_step} vs {against}"
        margin = self.best_psnr - self.baseline_psnr
        if margin > 0:
            return f"model beat the fair baseline on {self.split} by {margin:.2f} dB: {best}"
        return f"model never beat the fair baseline on {self.split}: {best}"

    def to_json(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "best_checkpoint": None if self.best_checkpoint is None else str(self.best_checkpoint),
            "margin_db": self.margin,
            "beat_baseline": self.beat_baseline,
            "verdict": self.verdict(),
        }


@dataclass
class _ValItem:
    """One val pair at ``val_size``: the model's input frames (the pair's input, or the clip
    window centred on it), another scene's reference, the target (float and uint8), mask."""

    pair_id: str
    window: list[npt.NDArray[np.float64]]
    reference: npt.NDArray[np.float64]
    target: npt.NDArray[np.float64]
    target8: npt.NDArray[np.uint8]
    mask: npt.NDArray[np.bool_] | None


def _capped_mean(values: list[float]) -> float:
    """Mean PSNR as ``expokit eval`` takes it: NaN skipped, capped at ``PSNR_CAP``."""
    kept = [min(v, PSNR_CAP) for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


class _Validator:
    """Rank 0's validation set: up to ``val_pairs`` pairs of ``val_split``, loaded once at
    ``val_size x val_size``, scored as ``expokit eval --reference other-scene --resize
    val_size`` scores them.

    * Images: float RGB in ``[0, 1]`` resized like ``expokit eval`` (antialiased bilinear,
      rounded to the file's bit depth; masks nearest); PSNR
      (:func:`expokit.curation.metrics.psnr`) on uint8 RGB inside the mask, means capped at
      ``PSNR_CAP``.
    * References follow eval's other-scene rule (never the pair's own target): the target of
      the next scene of the split (sorted, cyclic), the middle frame of that scene's first
      clip for video. Models and reference methods get the same one.
    * The fair baseline is the best of the reference methods that do not peek under the
      other-scene rule (:mod:`expokit.models.reference`), with eval's "global gain to the
      training split's mean" (:func:`expokit.models.evaluate.train_level`) when the training
      split is not the val one. It does not change while training: it is scored once here.
    """

    def __init__(
        self, split: str, items: list[_ValItem], frames: int, methods: list[ReferenceMethod]
    ) -> None:
        self.split = split
        self.items = items
        self.frames = frames
        self.baseline_scores: dict[str, float] = {}
        for method in methods:
            values = []
            for item in items:
                image = item.window[len(item.window) // 2]
                out = method.run(image, item.reference, item.target, item.mask)
                values.append(psnr(_uint8(out), item.target8, 255.0, item.mask))
            self.baseline_scores[method.name] = _capped_mean(values)
        # the best one; NaN never wins, ties go to the first in table order
        finite = {k: v for k, v in self.baseline_scores.items() if not math.isnan(v)}
        self.baseline = max(finite, key=finite.__getitem__) if finite else "identity"
        self.baseline_psnr = self.baseline_scores[self.baseline]

    @classmethod
    def prepare(cls, config: TrainConfig, frames: int) -> _Validator | str:
        """The validator of ``config``, or the reason there is none (a split the dataset
        lacks, one with fewer than two scenes)."""
        import pandas as pd

        dataset = load_dataset(config.data)
        try:
            # Validated on the pairs the run trains on: the same QA-flag selection.
            options = config.data_options
            selection = pair_selection(
                options.get("exclude_flags"), bool(options.get("passed_only", False))
            )
            rows = select_rows(dataset, config.val_split, selection=selection)
        except DataError as exc:
            return str(exc)
        scene_ids = rows["scene_id"].astype(str)
        scenes = sorted(set(scene_ids))
        if len(scenes) < 2:
            return (
                f"{dataset.root}: split {config.val_split!r} has {len(scenes)} scene "
                f"({', '.join(scenes)}); validation takes references from another scene and "
                "needs at least two"
            )
        clip = rows["clip_id"].notna() & rows["frame_index"].notna()
        where: dict[str, tuple[list[dict[str, Any]], int]] = {}
        for found in find_clips(rows[clip]):
            for t, record in enumerate(found.rows):
                where[str(record["pair_id"])] = (found.rows, t)
        reference_of = _other_scene_references(rows, scene_ids)

        ordered = rows.sort_values("pair_id").to_dict("records")
        count = min(config.val_pairs, len(ordered))
        picks = sorted({int(i) for i in np.linspace(0, len(ordered) - 1, count).round()})
        size = config.val_size
        cache: dict[str, npt.NDArray[np.float64]] = {}

        def image(rel: str) -> npt.NDArray[np.float64]:
            if rel not in cache:
                cache[rel] = _val_image(dataset.path(rel), size)
            return cache[rel]

        items: list[_ValItem] = []
        half = frames // 2
        for index in picks:
            record = {str(k): v for k, v in ordered[index].items()}
            pair_id = str(record["pair_id"])
            target = image(str(record["target_path"]))
            mask_rel = record.get("mask_path")
            mask = None
            if isinstance(mask_rel, str) and not pd.isna(mask_rel):
                mask = _val_mask(dataset.path(mask_rel), size)
            if pair_id in where and frames > 1:
                clip_rows, t = where[pair_id]
                last = len(clip_rows) - 1
                window = [
                    image(str(clip_rows[min(max(i, 0), last)]["input_path"]))
                    for i in range(t - half, t + half + 1)
                ]
            else:
                window = [image(str(record["input_path"]))] * frames
            reference = image(reference_of[str(record["scene_id"])])
            items.append(_ValItem(pair_id, window, reference, target, _uint8(target), mask))
        methods = [m for m in REFERENCE_METHODS.values() if not m.peeks("other-scene")]
        level = EvalConfig(
            splits=(config.val_split,), reference="other-scene", resize=size,
            train_split=config.split,
        )  # fmt: skip
        _, train_mean = train_level(dataset, level)
        methods += [train_mean] if train_mean is not None else []
        return cls(config.val_split, items, frames, methods)

    def score(self, model: Baseline, device: torch.device) -> float:
        """Mean val PSNR of ``model`` (put in eval mode by the caller; no gradients)."""

        def tensor(image: npt.NDArray[np.float64]) -> torch.Tensor:
            array = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
            return torch.from_numpy(array).to(device)

        values = []
        with torch.no_grad():
            for item in self.items:
                if self.frames > 1:
                    x = torch.stack([tensor(i) for i in item.window])[None]
                else:
                    x = tensor(item.window[0])[None]
                ref = tensor(item.reference)[None] if model.needs_reference else None
                out = model.enhance(x, ref)[0].float().cpu().numpy().transpose(1, 2, 0)
                values.append(
                    psnr(_uint8(np.asarray(out, np.float64)), item.target8, 255.0, item.mask)
                )
        return _capped_mean(values)


def _other_scene_references(rows: pd.DataFrame, scene_ids: pd.Series) -> dict[str, str]:
    """scene -> target path of its reference: eval's other-scene rule (the next scene in
    sorted order, cyclic; :func:`expokit.models.evaluate.scene_targets` picks its image)."""
    chosen = scene_targets(rows)
    scenes = sorted(set(scene_ids))
    return {s: chosen[scenes[(i + 1) % len(scenes)]] for i, s in enumerate(scenes)}


def _uint8(image: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    from expokit.models.evaluate import to_uint8  # what eval's metrics compare

    return to_uint8(image)


def _val_image(path: Path, size: int) -> npt.NDArray[np.float64]:
    """``(size, size, 3)`` float64 RGB in ``[0, 1]``, read and resized as ``expokit eval``
    reads images (its reader is private)."""
    raw = read_rgb(path)
    levels = 65535.0 if raw.dtype == np.uint16 else 255.0
    image = np.asarray(raw, np.float64) / (levels if raw.dtype.kind == "u" else 1.0)
    return resize_image(np.clip(image, 0.0, 1.0), size, levels)


def _val_mask(path: Path, size: int) -> npt.NDArray[np.bool_]:
    import cv2

    mask = cv2.resize(read_mask(path), (size, size), interpolation=cv2.INTER_NEAREST)
    return np.asarray(mask, bool)


def _validate(validator: _Validator, model: Baseline, device: torch.device) -> float:
    """Val PSNR of ``model``; its train/eval mode and every RNG are as before afterwards,
    so validating does not change what is learnt (or an exact resume)."""
    state = rng_state()
    was_training = model.training
    model.eval()
    try:
        return validator.score(model, device)
    finally:
        model.train(was_training)
        set_rng_state(state)


def _restore_best(
    run: Path, resumed: bool, start: int, config: TrainConfig, pairs: int
) -> tuple[dict[str, Any] | None, str | None]:
    """Rank 0: the best so far of a resumed run (``{"step", "psnr", "path"}``) and a line
    to say, keeping ``best/`` only when it was validated the same way at or before ``start``
    (a best from past the resume point belongs to steps about to be redone)."""
    found = find_best(run)
    if found is None:
        return None, None
    meta: CheckpointMeta | None
    try:
        meta = read_meta(found)
    except CheckpointError:
        meta = None
    extra = {} if meta is None else meta.extra
    step, score = (None, None) if meta is None else (meta.step, meta.number("val_psnr"))
    same = (extra.get("val_split"), extra.get("val_pairs"), extra.get("val_size")) == (
        config.val_split, pairs, config.val_size,
    )  # fmt: skip
    if resumed and step is not None and step <= start and same and score is not None:
        return (
            {"step": step, "psnr": float(score), "path": str(found)},
            f"best so far: step {step}, val PSNR {score:.2f} dB ({found})",
        )
    remove_best(run)
    if not resumed:
        return None, None
    if not same:
        why = "was validated with other val_split/val_pairs/val_size"
    elif step is not None and step > start:
        why = f"is from step {step}, past the resume point {start}"
    else:
        why = "has no usable val PSNR in its meta.json"
    return None, f"{found}: the best checkpoint {why}; dropped (validation finds the best again)"


def _check_batch(batch: Batch, step: int, dataset: Any) -> None:
    for key, value in batch.items():
        if key in ("input_ev", "target_ev") or not value.is_floating_point():
            continue
        if not torch.isfinite(value).all():
            bad = torch.isfinite(value.flatten(1)).all(dim=1).logical_not().nonzero().flatten()
            names = []
            if "index" in batch and hasattr(dataset, "describe"):
                for b in bad.tolist()[:3]:
                    names.append(str(dataset.describe(int(batch["index"][b]))["pair_id"]))
            which = f" (item {', '.join(names)})" if names else ""
            raise TrainError(f"step {step}: batch key {key!r} holds NaN or infinite values{which}")


def _config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if key not in RUN_CONTROL_KEYS and old.get(key) != new.get(key)
    ]


def _saved_config(run: Path, meta: CheckpointMeta) -> dict[str, Any]:
    """The config the run was trained with: ``RUN/config.json``'s (a missing file: the
    checkpoint's own ``train_config``).

    Raises
    ------
    TrainError
        ``config.json`` exists but is not a JSON object with a ``config`` object.
    """
    saved = run / CONFIG_FILE
    if not saved.exists():
        own = meta.extra.get("train_config")
        return dict(own) if isinstance(own, dict) else {}
    data = read_json_object(saved)
    config = None if data is None else data.get("config")
    if not isinstance(config, dict):
        raise TrainError(
            f"{saved}: damaged (not a JSON object with a 'config' object), so the resumed "
            "config cannot be checked against it; remove it to check against the "
            "checkpoint's own train_config"
        )
    return config


def _prepare_run(config: TrainConfig, resume: bool) -> tuple[Any, Path | None, int]:
    """Rank 0: claim and lock the run folder, find the checkpoint to resume from; remove the
    temporary files of killed writes (under the lock: no live writer's)."""
    run = Path(config.out)
    check_output_folder(run, config.data, what="run folder")
    claim_root(run, "run", what="run folder")
    lock = RootLock(run, "expokit train").acquire()
    try:
        remove_stale_temp_files(run)
        newest = newest_step_dir(run)
        if newest is not None and not resume:
            raise TrainError(
                f"{run} already holds checkpoints (newest {newest.name}); pass --resume to "
                "continue that run or choose another --out"
            )
        start = 0
        if newest is not None:
            meta = read_meta(newest)
            if meta.model != config.model:
                raise CheckpointError(
                    f"{newest}: a checkpoint of model {meta.model!r}, not {config.model!r}"
                )
            if f"step_{meta.step:08d}" != newest.name:
                raise CheckpointError(
                    f"{newest / META_FILE}: step {meta.step} does not match its folder "
                    f"{newest.name}; cannot resume from it"
                )
            if not (newest / STATE_FILE).is_file():
                raise CheckpointError(f"{newest}: no {STATE_FILE}; cannot resume from it")
            start = meta.step
            changes = _config_changes(_saved_config(run, meta), config.to_dict())
            if changes:
                warnings.warn(
                    TrainWarning(
                        f"{run}: resuming step {start} with a changed config: " + "; ".join(changes)
                    ),
                    stacklevel=4,  # train's caller: train > _agree_on_start > here
                )
            if start >= config.steps:
                raise TrainError(
                    f"{run}: the newest checkpoint is step {start}, not before --steps "
                    f"{config.steps}; raise --steps to train further"
                )
    except BaseException:
        lock.release()
        raise
    return lock, newest, start


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> TrainSummary:
    """Train ``config.model`` and write the run folder ``config.out`` (see module doc).

    The steps, in order: build the model and the dataset (:func:`_build_model_and_data`),
    agree on where to start (:func:`_agree_on_start`, rank 0 locks the run folder), say what
    the run is (:func:`_announce`), build the optimizer and restore a checkpoint
    (:func:`_build_optimizer`), wrap the model and build the loader, open the run's outputs
    (:func:`_open_outputs`), run the steps (:func:`_run_steps`) and write the summary
    (:func:`_finish`). Threads, the run lock and the process group are given back at the end,
    whatever happened (:class:`_Cleanup`).

    Raises
    ------
    TrainError
        Bad config, a run folder that already has checkpoints (without ``resume``), a NaN
        loss (naming the step), no CUDA when asked for.
    DataError, ModelError, CheckpointError, OutputError, RootInUseError
        From the data, the model, the checkpoint or the run folder, naming the problem.
    """
    say: Callable[[str], None] = echo or write_line
    if not config.model or not config.data or not config.out:
        raise TrainError("training needs model, data and out (--model, --data, --out)")
    kind = model_class(config.model).data_kind
    world = World.from_env()
    device = pick_device(config.device, world)
    cleanup = _Cleanup(threads_before=torch.get_num_threads())
    if config.threads:
        torch.set_num_threads(config.threads)
    cleanup.owns_group = _init_group(world, device)
    try:
        model, dataset, frames = _build_model_and_data(config, kind, device)
        n_params = parameter_count(model)
        start = _agree_on_start(config, resume, world, kind, frames, cleanup)
        _announce(say, config, kind, n_params, dataset, device, world, start, resume)
        optimizer, scheduler, scaler, restored = _build_optimizer(
            config, model, device, world, start.checkpoint
        )
        trainer = _Trainer(
            config=config, world=world, device=device, run=Path(config.out), model=model,
            parameters=n_params,
            wrapped=_wrap_for_world(model, world, device), optimizer=optimizer,
            scheduler=scheduler, scaler=scaler, dataset=dataset, validator=start.validator,
            validation=start.validation, say=say, start=start.step,
            elapsed_before=0.0 if restored is None else restored.elapsed_s,
            amp_dtype={"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp),
            ema=_build_ema(config, model, start.checkpoint, restored),
        )  # fmt: skip
        loader = _build_loader(config, dataset, world, start.step)
        trainer.log, trainer.board = _open_outputs(trainer, kind, start.checkpoint)
        state = _LoopState(step=start.step, saved=start.checkpoint, best=start.best)
        _run_steps(trainer, state, loader, progress)
        return _finish(trainer, state)
    finally:
        cleanup.close()


@dataclass
class _Cleanup:
    """What :func:`train` gives back however it ends: torch's thread count, the run lock
    (rank 0, once taken) and the process group (when :func:`train` created it)."""

    threads_before: int
    owns_group: bool = False
    lock: Any = None

    def close(self) -> None:
        torch.set_num_threads(self.threads_before)
        if self.lock is not None:
            self.lock.release()
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


@dataclass
class _Start:
    """Where every rank starts, as rank 0 found it: the step, the checkpoint resumed from,
    validation (rank 0's validator; the summary fields every rank gets), the best so far and
    the lines rank 0 has to say about it."""

    step: int
    checkpoint: Path | None
    validation: ValidationSummary
    best: dict[str, Any] | None
    validator: _Validator | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class _Trainer:
    """What the step loop works with; fixed for the run (``log``/``board``: rank 0's
    ``log.csv`` and TensorBoard writer, None elsewhere or when off)."""

    config: TrainConfig
    world: World
    device: torch.device
    run: Path
    model: Baseline
    parameters: int
    wrapped: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    dataset: Any
    validator: _Validator | None
    validation: ValidationSummary
    say: Callable[[str], None]
    start: int
    elapsed_before: float
    amp_dtype: torch.dtype | None
    #: the moving average of the weights (``ema_decay``), None when off
    ema: AveragedModel | None = None
    log: _CsvLog | None = None
    board: Any = None

    @property
    def scored(self) -> Baseline:
        """The weights validated and saved: the moving average when on, else the model."""
        return self.model if self.ema is None else cast("Baseline", self.ema.module)


@dataclass
class _LoopState:
    """What changes from step to step: the step done, how the loop stopped, the last mean
    loss, the newest checkpoint, the best so far (``{"step", "psnr", "path"}``), the losses
    since the last log row and when the loop began (``time.monotonic()``)."""

    step: int
    saved: Path | None
    best: dict[str, Any] | None
    stopped: str = "done"
    last_loss: float | None = None
    window: dict[str, list[float]] = field(default_factory=dict)
    began: float = 0.0


def _build_model_and_data(
    config: TrainConfig, kind: str, device: torch.device
) -> tuple[Baseline, Any, int | None]:
    """Seed, build the model on ``device`` and open the training split; also the model's
    ``frames`` (None for a model without one).

    A clip model's window decides the loader's (``data_options.num_frames``), unless both
    are given and differ: that is a :class:`TrainError`, not a silent pick.
    """
    seed_everything(config.seed)
    model = create_model(config.model, **config.model_config).to(device)
    options = dict(config.data_options)
    frames = getattr(model, "frames", None)
    if (
        kind == "clip"
        and isinstance(frames, int)
        and options.setdefault("num_frames", frames) != frames
    ):
        raise TrainError(
            f"data_options.num_frames = {options['num_frames']} but model "
            f"{config.model!r} is configured for {frames} frames; set one of them"
        )
    dataset = open_dataset(
        config.model, config.data, config.split, crop=config.crop, resize=config.resize,
        flip=config.flip, seed=config.seed, **options,
    )  # fmt: skip
    return model, dataset, frames


def _agree_on_start(
    config: TrainConfig, resume: bool, world: World, kind: str, frames: Any, cleanup: _Cleanup
) -> _Start:
    """Rank 0 claims and locks the run folder (the lock goes to ``cleanup`` at once, so it is
    released even when a later step fails) and prepares validation; every rank then learns
    where to start (or why not), whether there is validation and the best so far.

    Rank 0's error is sent to the other ranks first (they raise it as a :class:`TrainError`)
    so no rank waits for a broadcast that never comes.
    """
    setup: dict[str, Any] = {"error": None, "start": 0, "checkpoint": None}
    validator: _Validator | None = None
    notes: list[str] = []
    if world.main:
        try:
            cleanup.lock, newest, setup["start"] = _prepare_run(config, resume)
            setup["checkpoint"] = None if newest is None else str(newest)
            validator, setup["validation"], setup["best"], note = _setup_validation(
                config, frames if kind == "clip" and isinstance(frames, int) else 1,
                newest is not None, setup["start"],
            )  # fmt: skip
            notes += [note] if note else []
        except ExpokitError as exc:
            _broadcast(world, {"error": str(exc)})
            raise
    setup = _broadcast(world, setup)
    if setup["error"]:
        raise TrainError(setup["error"])
    return _Start(
        step=setup["start"],
        checkpoint=Path(setup["checkpoint"]) if setup["checkpoint"] else None,
        validation=ValidationSummary(**setup["validation"]),
        best=setup["best"],
        validator=validator,
        notes=notes,
    )


def _announce(
    say: Callable[[str], None],
    config: TrainConfig,
    kind: str,
    n_params: int,
    dataset: Any,
    device: torch.device,
    world: World,
    start: _Start,
    resume: bool,
) -> None:
    """Rank 0 says what is trained on what, where it starts and how it is validated (or why
    it is not), then the notes of :func:`_agree_on_start`."""
    if not world.main:
        return
    run, validation = Path(config.out), start.validation
    say(
        f"model {config.model} ({kind} data): {n_params:,} trainable parameters; "
        f"{len(dataset)} training items in split {config.split!r}"
        + ("" if dataset.selection.everything else f" ({dataset.selection.describe()})")
        + f"; device {device}"
        + (f" x {world.size} processes" if world.distributed else "")
    )
    if start.checkpoint is not None:
        say(f"resuming from {start.checkpoint} (step {start.step})")
    elif resume:
        say(f"no checkpoint in {run} yet: starting at step 0")
    if validation.off is not None and config.val_every:
        say(f"no validation: {validation.off}; training goes on without a val score")
    elif validation.off is None:
        say(
            f"validating every {config.val_every} steps on {validation.pairs} pairs of "
            f"split {validation.split!r} at {config.val_size} px; fair baseline "
            f"{validation.baseline} {validation.baseline_psnr:.2f} dB"
        )
    for note in start.notes:
        say(note)


def _build_optimizer(
    config: TrainConfig, model: Baseline, device: torch.device, world: World, checkpoint: Any
) -> tuple[
    torch.optim.Optimizer,
    torch.optim.lr_scheduler.LRScheduler,
    torch.amp.GradScaler,
    TrainingState | None,
]:
    """AdamW, the warm-up/decay schedule (:func:`lr_factor`) and the fp16 grad scaler; each
    rank's own seed; then ``checkpoint``'s weights and training state (RNGs included, so a
    resumed run draws what the first one would have). Also that state (None: no
    checkpoint)."""
    groups = [
        {**group, "lr": config.lr * group.get("lr_scale", 1.0)}
        for group in model.parameter_groups()
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config))
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
    restored = None
    seed_everything(config.seed * 1000 + world.rank + 1)
    if checkpoint is not None:
        restored = _restore(checkpoint, model, optimizer, scheduler, scaler, world, config)
    return optimizer, scheduler, scaler, restored


def _build_ema(
    config: TrainConfig,
    model: Baseline,
    checkpoint: Path | None,
    restored: TrainingState | None,
) -> AveragedModel | None:
    """The moving average of ``model``'s weights (``ema_decay``; None when off), resumed from
    ``checkpoint`` when its training state (``restored``) says its weights are one; else the
    average starts at ``model``'s. Buffers are the model's, not averaged (some count, like
    ``uec``'s level batches)."""
    if not config.ema_decay:
        return None
    ema = AveragedModel(
        model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=False
    )
    if checkpoint is not None and restored is not None and restored.trained_weights is not None:
        _restore_weights(checkpoint, cast("Baseline", ema.module))
        ema.n_averaged.fill_(restored.ema_updates)
    return ema


def _wrap_for_world(model: Baseline, world: World, device: torch.device) -> nn.Module:
    """The module whose ``forward`` is the training loss: DistributedDataParallel under
    torchrun (it synchronises gradients in backward), the plain :class:`_LossModule` else."""
    wrapped: nn.Module = _LossModule(model)
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(
            wrapped, device_ids=[device.index] if device.type == "cuda" else None
        )
    return wrapped


def _build_loader(config: TrainConfig, dataset: Any, world: World, start: int) -> Any:
    """This rank's batch loader, restarted at the draw of step ``start``.

    Forked workers need not let go of the run lock themselves: :mod:`expokit.core.lock`
    points a forked child's copy of every held lock at ``/dev/null`` (its at-fork hook), so
    workers outliving a killed trainer never block an immediate ``--resume``.
    """
    return batch_loader(
        dataset, train=True, batch_size=config.batch_size, num_workers=config.num_workers,
        seed=config.seed, rank=world.rank, world_size=world.size,
        start=start * config.batch_size,
    )  # fmt: skip


def _open_outputs(
    trainer: _Trainer, kind: str, checkpoint: Path | None
) -> tuple[_CsvLog | None, Any]:
    """Rank 0 writes ``config.json`` (the resolved config and where the run came from) and
    opens ``log.csv`` and the TensorBoard writer, both cut back to the start step; other
    ranks write nothing (None, None)."""
    if not trainer.world.main:
        return None, None

    config, world, run, start = trainer.config, trainer.world, trainer.run, trainer.start
    atomic_write_json(
        run / CONFIG_FILE,
        {
            "config": config.to_dict(),
            "data_kind": kind,
            "parameters": trainer.parameters,
            "world_size": world.size,
            "device": str(trainer.device),
            "resumed_from": start if checkpoint is not None else None,
            "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "expokit_version": __version__,
            "torch_version": torch.__version__,
        },
    )
    log = _CsvLog(run / LOG_FILE, start)
    board = _tensorboard(
        run, config.tensorboard, trainer.say, start if checkpoint is not None else None
    )
    return log, board


def _run_steps(trainer: _Trainer, state: _LoopState, loader: Any, progress: bool) -> None:
    """The step loop: train a step, then validate, log and checkpoint when due; stop at
    ``config.steps`` or when the time limit is up (all ranks agree on both).

    The progress bar and the TensorBoard writer are closed and the batch iterator (its
    worker processes) dropped however the loop ends.
    """
    config, world = trainer.config, trainer.world
    bar = show_progress(
        total=config.steps, initial=trainer.start, enabled=progress and world.main,
        desc=f"train {config.model}", unit="step", dynamic_ncols=True, stream=sys.stderr,
    )  # fmt: skip
    state.began = time.monotonic()
    trainer.model.train()
    batches: Iterator[Batch] = iter(loader)
    try:
        while state.step < config.steps:
            flags, keys, lr = _train_step(trainer, state, batches)
            _record_losses(trainer, state, flags, keys)
            # The loss first, so the line (or redraw) this step prints carries its own loss.
            bar.set_postfix_str(f"loss={state.last_loss:.4g}")
            bar.update(1)
            time_up = bool(flags[2] > 0)
            last_step = state.step == config.steps or time_up
            val = _validate_if_due(trainer, state, last_step)
            _log_if_due(trainer, state, lr, val, last_step)
            _checkpoint_if_due(trainer, state, time_up)
            if time_up:
                state.stopped = "time"
                if world.main:
                    trainer.say(
                        f"time limit of {config.max_minutes} min reached at step {state.step}"
                    )
                break
    finally:
        bar.close()
        if trainer.board is not None:
            trainer.board.close()
        del batches


def _train_step(
    trainer: _Trainer, state: _LoopState, batches: Iterator[Batch]
) -> tuple[torch.Tensor, list[str], float]:
    """One optimisation step on the next batch: forward and backward, the all-ranks vote
    (:func:`_reduce_step`), then the optimizer and scheduler steps. Returns the reduced
    flags, the loss-part names in their order there and the lr the step used."""
    config, device = trainer.config, trainer.device
    batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
    _check_batch(batch, state.step + 1, trainer.dataset)
    amp = trainer.amp_dtype
    with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        loss, parts = trainer.wrapped(batch)
    finite = bool(torch.isfinite(loss.detach()).all())
    # Every rank runs backward (DDP synchronises there), even on a bad loss: the flags then
    # stop all ranks together before any weight changes.
    trainer.scaler.scale(loss).backward()
    flags, keys = _reduce_step(trainer, state, loss, parts, finite)
    if flags[1] > 0:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in parts.items())
        where = f" ({shown})" if not finite and shown else ""
        raise TrainError(
            f"loss is not finite at step {state.step + 1} of {config.model}{where} on "
            f"{int(flags[1])} process(es): training stopped without saving this "
            f"step; last checkpoint: {state.saved or 'none'}. Lower --lr or check the data"
        )
    optimizer = trainer.optimizer
    if config.grad_clip > 0:
        trainer.scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(trainer.model.parameters(), config.grad_clip)
    trainer.scaler.step(optimizer)
    trainer.scaler.update()
    optimizer.zero_grad(set_to_none=True)
    if trainer.ema is not None:
        trainer.ema.update_parameters(trainer.model)
    lr = optimizer.param_groups[0]["lr"]
    trainer.scheduler.step()
    return flags, keys, lr


def _reduce_step(
    trainer: _Trainer,
    state: _LoopState,
    loss: torch.Tensor,
    parts: dict[str, float],
    finite: bool,
) -> tuple[torch.Tensor, list[str]]:
    """One all-reduce per step: the summed loss and loss parts, the bad-loss votes and the
    time-up votes (``[loss, bad, time_up, *parts]``, float64), so every rank decides alike;
    also the part names in their order there."""
    config = trainer.config
    minutes = (time.monotonic() - state.began) / 60
    keys = sorted(parts)
    flags = torch.tensor(
        [
            float(loss.detach()) if finite else 0.0,
            0.0 if finite else 1.0,
            float(config.max_minutes is not None and minutes >= config.max_minutes),
            *(float(parts[k]) if finite else 0.0 for k in keys),
        ],
        dtype=torch.float64,
        device=trainer.device,
    )
    if trainer.world.distributed:
        import torch.distributed as dist

        dist.all_reduce(flags)
    return flags, keys


def _record_losses(
    trainer: _Trainer, state: _LoopState, flags: torch.Tensor, keys: list[str]
) -> None:
    """Count the step done; keep its mean loss (over ranks) and loss parts for the next log
    row."""
    size = trainer.world.size
    state.step += 1
    state.last_loss = float(flags[0]) / size
    state.window.setdefault("loss", []).append(state.last_loss)
    for i, key in enumerate(keys):
        state.window.setdefault(key, []).append(float(flags[3 + i]) / size)


def _validate_if_due(trainer: _Trainer, state: _LoopState, last_step: bool) -> float | None:
    """Every ``val_every`` steps and at the last step: the val PSNR (None when not due or
    validation is off). A new best is kept as ``checkpoint/best`` by rank 0 (NaN never
    wins); every rank tracks the best step."""
    config, validation = trainer.config, trainer.validation
    if validation.off is not None or not (state.step % config.val_every == 0 or last_step):
        return None
    step = state.step
    val = _val_step(trainer.validator, trainer.scored, trainer.device, trainer.world, step)
    if not math.isnan(val) and (state.best is None or val > state.best["psnr"]):
        state.best = {"step": step, "psnr": val, "path": None}
        if trainer.world.main:
            state.best["path"] = str(
                _save_best(
                    trainer.scored, trainer.run, step, config, trainer.world, validation, val
                )
            )
    return val


def _log_if_due(
    trainer: _Trainer, state: _LoopState, lr: float, val: float | None, last_step: bool
) -> None:
    """Rank 0, every ``log_every`` steps, at the last step and after a validation: a
    ``log.csv`` row (mean losses since the last row, lr, seconds, val columns) and the same
    scalars to TensorBoard; the loss window starts afresh."""
    config, log, board = trainer.config, trainer.log, trainer.board
    step = state.step
    if log is None or not (step % config.log_every == 0 or last_step or val is not None):
        return
    validation, window = trainer.validation, state.window
    row: dict[str, Any] = {"step": step}
    row.update({k: f"{np.mean(v):.6g}" for k, v in window.items()})
    row["lr"] = f"{lr:.6g}"
    row["seconds"] = f"{trainer.elapsed_before + time.monotonic() - state.began:.2f}"
    if val is not None:
        figures = (f"{val:.10g}", f"{validation.baseline_psnr:.10g}")
        row.update(zip(VAL_COLUMNS, (*figures, validation.baseline), strict=True))
    log.add(row)
    if board is not None:
        for key, values in window.items():
            board.add_scalar(f"train/{key}", float(np.mean(values)), step)
        board.add_scalar("train/lr", lr, step)
        if val is not None:
            board.add_scalar("val/psnr", val, step)
            board.add_scalar("val/baseline_psnr", validation.baseline_psnr, step)
    state.window = {}


def _checkpoint_if_due(trainer: _Trainer, state: _LoopState, time_up: bool) -> None:
    """Every ``ckpt_every`` steps, at the last step and when the time is up: a step
    checkpoint with the full training state (every rank takes part: RNG states are
    gathered)."""
    config, step = trainer.config, state.step
    if not (step % config.ckpt_every == 0 or step == config.steps or time_up):
        return
    state.saved = _save(
        trainer.model, trainer.run, step, config, trainer.optimizer, trainer.scheduler,
        trainer.scaler, trainer.world,
        trainer.elapsed_before + time.monotonic() - state.began, trainer.start, trainer.ema,
    )  # fmt: skip


def _finish(trainer: _Trainer, state: _LoopState) -> TrainSummary:
    """Put the best step in the validation summary, rank 0 writes ``validation.json``; the
    run's :class:`TrainSummary`. Under torchrun each rank prints one line (its step, weights
    checksum and best step) so a run can be checked for ranks that drifted apart."""
    world, run, validation, best = trainer.world, trainer.run, trainer.validation, state.best
    if best is not None:
        validation.best_step, validation.best_psnr = int(best["step"]), float(best["psnr"])
        validation.best_checkpoint = best_dir(run)
    if world.main:
        atomic_write_json(run / VALIDATION_FILE, json_safe(validation.to_json()))
    config = trainer.config
    summary = TrainSummary(
        run=run, model=config.model, parameters=trainer.parameters,
        start_step=trainer.start, step=state.step, steps=config.steps, stopped=state.stopped,
        last_loss=state.last_loss, checkpoint=state.saved,
        seconds=time.monotonic() - state.began, world_size=world.size, rank=world.rank,
        checksum=weights_checksum(trainer.model), validation=validation,
        device=describe_device(trainer.device), amp=config.amp,
    )  # fmt: skip
    if world.distributed:
        # One line per rank: every rank trained the same steps to the same weights and
        # agrees on the best step.
        print(
            f"rank {world.rank}/{world.size} (pid {os.getpid()}): step {state.step}, weights "
            f"checksum {summary.checksum!r} (best step {validation.best_step})",
            flush=True,
        )
    return summary


def _setup_validation(
    config: TrainConfig, frames: int, resumed: bool, start: int
) -> tuple[_Validator | None, dict[str, Any], dict[str, Any] | None, str | None]:
    """Rank 0: the validator (or None), the :class:`ValidationSummary` fields every rank
    gets, the best so far and a line about it."""
    fields: dict[str, Any] = {"split": config.val_split, "every": config.val_every}
    run = Path(config.out)
    if not resumed:
        remove_best(run)  # a fresh run's best is its own
    if config.val_every == 0:
        return None, {**fields, "off": "val_every = 0"}, None, None
    prepared = _Validator.prepare(config, frames)
    if isinstance(prepared, str):
        return None, {**fields, "off": prepared}, None, None
    fields.update(
        pairs=len(prepared.items), baseline=prepared.baseline,
        baseline_psnr=prepared.baseline_psnr, baseline_scores=prepared.baseline_scores,
    )  # fmt: skip
    best, note = _restore_best(run, resumed, start, config, len(prepared.items))
    return prepared, fields, best, note


def _val_step(
    validator: _Validator | None, model: Baseline, device: torch.device, world: World, step: int
) -> float:
    """Rank 0 validates; every rank gets its val PSNR (or its error)."""
    result: dict[str, Any] = {"psnr": math.nan, "error": None}
    if world.main:
        assert validator is not None
        try:
            result["psnr"] = _validate(validator, model, device)
        except ExpokitError as exc:
            result["error"] = str(exc)
    result = _broadcast(world, result)
    if result["error"]:
        raise TrainError(f"validation at step {step} failed: {result['error']}")
    return float(result["psnr"])


def _save_best(
    model: Baseline,
    run: Path,
    step: int,
    config: TrainConfig,
    world: World,
    validation: ValidationSummary,
    psnr: float,
) -> Path:
    return save_best(
        model, run, step,
        extra_meta={
            "train_config": config.to_dict(), "world_size": world.size, "val_psnr": psnr,
            "val_baseline": validation.baseline, "val_baseline_psnr": validation.baseline_psnr,
            "val_split": validation.split, "val_pairs": validation.pairs,
            "val_size": config.val_size,
        },
    )  # fmt: skip


def step_folder(run: Path, step: int) -> Path:
    return step_dir(run, step)


def _save(
    model: Baseline,
    run: Path,
    step: int,
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    world: World,
    elapsed: float,
    start: int,
    ema: AveragedModel | None = None,
) -> Path:
    """Gather every rank's RNG state; rank 0 writes the step folder (with ``ema``: the
    average as its weights, the trained weights in the training state)."""
    states = _gather(world, rng_state())
    folder = step_folder(run, step)
    if world.main:
        save_checkpoint(
            model if ema is None else cast("Baseline", ema.module),
            run,
            step,
            extra_meta={"train_config": config.to_dict(), "world_size": world.size},
            training_state=TrainingState(
                step=step,
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict(),
                rng=list(states),
                world_size=world.size,
                elapsed_s=elapsed,
                trained_weights=None if ema is None else model.state_dict(),
                ema_updates=0 if ema is None else int(ema.n_averaged),
            ).to_dict(),
        )
    return folder


@dataclass(frozen=True)
class TrainingState:
    """What a step folder's ``training_state.pt`` holds for ``--resume``.

    Attributes
    ----------
    step
        The step the state is from (a whole number >= 0; None in a file without it).
    optimizer, scheduler, scaler
        The ``state_dict()`` of each.
    rng
        Every rank's RNG states (:func:`rng_state`), by rank.
    world_size
        How many ranks the run had (None in a file without it: the RNGs are not restored).
    elapsed_s
        Seconds trained so far (>= 0).
    trained_weights, ema_updates
        With ``ema_decay``: the trained weights' ``state_dict()`` (the folder's weights are
        their moving average) and how many steps the average has taken in; None and 0
        without.
    """

    step: int | None
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any]
    rng: list[Any] = field(default_factory=list)
    world_size: int | None = None
    elapsed_s: float = 0.0
    trained_weights: dict[str, Any] | None = None
    ema_updates: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Path) -> TrainingState:
        """The record of the loaded state at ``path``; a bad field is a
        :class:`CheckpointError` naming the file and the field."""
        parts: dict[str, dict[str, Any]] = {}
        for key in ("optimizer", "scheduler", "scaler"):
            value = data.get(key)
            if not isinstance(value, dict):
                raise CheckpointError(f"{path}: training state has no {key} state")
            parts[key] = value
        rng = data.get("rng") or []
        if not isinstance(rng, list | tuple):
            kind = type(rng).__name__
            raise CheckpointError(f"{path}: rng must be a list of RNG states, got a {kind}")
        elapsed = data.get("elapsed_s", 0.0)
        if (
            isinstance(elapsed, bool)
            or not isinstance(elapsed, int | float)
            or not math.isfinite(elapsed)
            or elapsed < 0
        ):
            raise CheckpointError(
                f"{path}: elapsed_s must be a finite number >= 0, got {elapsed!r}"
            )
        step, world_size = data.get("step"), data.get("world_size")
        for key, value, minimum in (("step", step, 0), ("world_size", world_size, 1)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < minimum
            ):
                raise CheckpointError(
                    f"{path}: {key} must be a whole number >= {minimum}, got {value!r}"
                )
        trained = data.get("trained_weights")
        if trained is not None and not isinstance(trained, dict):
            kind = type(trained).__name__
            raise CheckpointError(f"{path}: trained_weights must be a state dict, got a {kind}")
        updates = data.get("ema_updates", 0)
        if isinstance(updates, bool) or not isinstance(updates, int) or updates < 0:
            raise CheckpointError(
                f"{path}: ema_updates must be a whole number >= 0, got {updates!r}"
            )
        return cls(
            step=step, rng=list(rng), world_size=world_size, elapsed_s=float(elapsed),
            trained_weights=trained, ema_updates=updates, **parts,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The object ``torch.save`` writes (the keys of every earlier expokit)."""
        return {
            "step": self.step,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "scaler": self.scaler,
            "rng": self.rng,
            "world_size": self.world_size,
            "elapsed_s": self.elapsed_s,
            # only with a moving average: a file without them is what earlier expokit wrote
            **(
                {"trained_weights": self.trained_weights, "ema_updates": self.ema_updates}
                if self.trained_weights is not None
                else {}
            ),
        }


def _restore(
    folder: Path,
    model: Baseline,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    world: World,
    config: TrainConfig,
) -> TrainingState:
    """Load weights and training state of ``folder``; return that state (the seconds
    trained so far are its ``elapsed_s``).

    In order: the weights, the training state file, the trained weights when the folder's
    are their moving average, the optimizer/scheduler/scaler states, the (possibly changed)
    config's lr and weight decay, this rank's RNG states; each damaged part is a
    :class:`CheckpointError` naming its file.
    """
    _restore_weights(folder, model)
    path = folder / STATE_FILE
    state = _read_training_state(path)
    if state.trained_weights is not None:  # the folder's weights are their moving average
        try:
            model.load_state_dict(state.trained_weights)
        except (RuntimeError, KeyError) as exc:
            raise CheckpointError(f"{path}: trained_weights do not fit the model: {exc}") from exc
    parts = (
        ("optimizer", state.optimizer, optimizer),
        ("scheduler", state.scheduler, scheduler),
        ("scaler", state.scaler, scaler),
    )
    for key, saved, part in parts:
        _restore_part(path, key, saved, part)
    _apply_config_lr(config, optimizer, scheduler)
    _restore_rank_rng(path, state, world)
    return state


def _restore_weights(folder: Path, model: Baseline) -> None:
    """``folder``'s safetensors weights into ``model`` (strict: every key must fit)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        weights = load_file(str(folder / WEIGHTS_FILE), device="cpu")
        model.load_state_dict(weights, strict=True)
    except (OSError, RuntimeError, ValueError, SafetensorError) as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{folder / WEIGHTS_FILE}: cannot resume from it: {first}") from None


def _read_training_state(path: Path) -> TrainingState:
    """The checked training state at ``path`` (tensors and plain values only:
    ``weights_only``)."""
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of a foreign file before refusing it
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        # an empty file is an EOFError, which click would print as a bare "Aborted!"
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: unreadable training state ({first})") from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path}: not an expokit training state (a {type(state).__name__}, not a dict)"
        )
    return TrainingState.from_dict(state, path)


def _restore_part(path: Path, key: str, saved: dict[str, Any], part: Any) -> None:
    """Load the ``saved`` state of ``key`` into ``part`` (the optimizer, scheduler or
    scaler)."""
    try:
        part.load_state_dict(saved)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: {key} state does not fit ({first})") from None


def _apply_config_lr(
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> None:
    """A resumed run takes the lr and weight decay of the (possibly changed) config, at the
    schedule's restored position."""
    factor = lr_factor(config)
    base_lrs = [config.lr * group.get("lr_scale", 1.0) for group in optimizer.param_groups]
    scheduler.base_lrs = base_lrs
    for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
        group["initial_lr"] = base
        group["lr"] = base * factor(scheduler.last_epoch)
        group["weight_decay"] = config.weight_decay


def _restore_rank_rng(path: Path, state: TrainingState, world: World) -> None:
    """This rank's saved RNG states, when the run had as many ranks (else the fresh seed
    stays)."""
    rngs = state.rng
    if state.world_size == world.size and world.rank < len(rngs):
        try:
            set_rng_state(rngs[world.rank])
        except (TypeError, ValueError, KeyError, IndexError, RuntimeError, AttributeError) as exc:
            raise CheckpointError(
                f"{path}: rng state of rank {world.rank} is damaged ({exc}); resume from an "
                "earlier step"
            ) from None
