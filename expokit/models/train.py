"""The training loop behind ``expokit train``: generic over :class:`~expokit.models.base.Baseline`.

``train(TrainConfig(...))`` trains ``config.model`` on the ``config.split`` rows of the dataset
``config.data`` and writes the run folder ``config.out`` (layout in
:mod:`expokit.models.checkpoint`): ``config.json`` (resolved config), ``log.csv``,
``checkpoints/step_*`` (safetensors weights + training state), optionally TensorBoard events.

* One loss per step from ``model.training_loss(batch)``; AdamW, warm-up then cosine decay.
* Checkpoints every ``ckpt_every`` steps, at the end and when ``max_minutes`` runs out; the
  training state holds optimizer, scheduler, grad scaler, the python/numpy/torch RNG states
  of every rank and the step, so ``resume=True`` continues exactly where it stopped (the data
  stream too: :class:`~expokit.models.data.TrainSampler` restarts at the saved draw).
* A NaN/inf loss or a NaN in a batch stops training with a :class:`TrainError` naming the
  step; nothing is written for that step.
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
import random
import re
import sys
import time
import tomllib
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_type_hints

import numpy as np
import torch
from torch import nn

from expokit.core.errors import ExpokitError
from expokit.models.base import Batch, parameter_count
from expokit.models.checkpoint import (
    STATE_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    newest_step_dir,
    read_meta,
    save_checkpoint,
)

if TYPE_CHECKING:
    from expokit.models.base import Baseline

AMP_MODES = ("off", "bf16", "fp16")
SCHEDULES = ("cosine", "constant")
CONFIG_FILE = "config.json"
LOG_FILE = "log.csv"
#: Config keys that may change on ``--resume`` without a warning (they steer the run, not
#: what is learnt).
_RUN_CONTROL = "steps max_minutes num_workers log_every ckpt_every device tensorboard threads"
RUN_CONTROL_KEYS = frozenset(_RUN_CONTROL.split())


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
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}")
        need(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        need(0 <= self.final_lr <= 1, f"final_lr must be in [0, 1], got {self.final_lr}")
        need(self.grad_clip >= 0, f"grad_clip must be >= 0, got {self.grad_clip}")
        need(self.crop is None or self.crop >= 1, f"crop must be >= 1 or 0 (off), got {self.crop}")
        need(
            self.resize is None or self.resize >= 1, f"resize must be >= 1 or 0, got {self.resize}"
        )
        need(self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}")
        need(self.threads >= 0, f"threads must be >= 0, got {self.threads}")
        need(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")
        need(self.ckpt_every >= 1, f"ckpt_every must be >= 1, got {self.ckpt_every}")
        need(
            self.max_minutes is None or self.max_minutes > 0,
            f"max_minutes must be > 0, got {self.max_minutes}",
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
        return cls(**merged)

    def replace(self, **values: Any) -> TrainConfig:
        """A copy with ``values`` (``None`` values are ignored), types checked."""
        return TrainConfig.from_dict({k: v for k, v in values.items() if v is not None}, base=self)


def _check_type(key: str, value: Any, hint: Any, prefix: str) -> Any:
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
    # lr 1e-2 cosine to 5 %, the model's default starting gain.
    "uec": TrainConfig(
        model="uec",
        steps=1500,
        batch_size=16,
        lr=1e-2,
        final_lr=0.05,
        crop=None,
        resize=64,  # every scene the same shape; the corrector is pointwise
        flip=True,
        log_every=25,
        ckpt_every=500,
        model_config={"feature_size": 32, "pixel_samples": 1024},
        data_options={
            "cache": True,  # a few hundred files read thousands of times
            "reference_from": "other",  # the test situation: another scene's exposure
            # mostly the pairs the task needs: the middle exposure as target, extreme inputs
            "pair_weights": {
                "middle_target": 4.0,
                "other_target": 1.0,
                "extremes": 2,
                "extreme_input": 2.0,
                "other_input": 1.0,
            },
        },
    ),
    # Measured on the 22 SICE scenes (2 folds, docs/models.md): ~3 and ~2 CPU-minutes.
    "recnet": TrainConfig(model="recnet", steps=900, batch_size=8, lr=2e-3, crop=64),
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
    return config.replace(model=name, **dict(overrides or {}))


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

    def report(self) -> list[str]:
        loss = "n/a" if self.last_loss is None else f"{self.last_loss:.5g}"
        why = "" if self.stopped == "done" else " (time limit reached)"
        return [
            f"trained {self.model} ({self.parameters:,} parameters) from step "
            f"{self.start_step} to {self.step} of {self.steps}{why} in {self.seconds:.1f} s"
            f" on {self.world_size} process(es); last loss {loss}",
            f"checkpoint: {self.checkpoint}",
        ]


class _CsvLog:
    """``RUN/log.csv``: one row per ``log_every`` steps; rows past ``start`` dropped."""

    def __init__(self, path: Path, start: int) -> None:
        self.path = path
        self.columns: list[str] | None = None
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                self.columns = list(reader.fieldnames or []) or None
                rows = [
                    r for r in reader if r.get("step", "").isdigit() and int(r["step"]) <= start
                ]
            if self.columns:
                self._write(rows, "w")
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
        if self.columns is None:
            self.columns = list(row)
            self._write([row], "w")
        else:
            self._write([row], "a")


def _tensorboard(run: Path, enabled: bool, echo: Callable[[str], None]) -> Any:
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    echo(f"TensorBoard events in {run / 'tensorboard'}")
    return SummaryWriter(str(run / "tensorboard"))


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


def _prepare_run(config: TrainConfig, resume: bool) -> tuple[Any, Path | None, int]:
    """Rank 0: claim and lock the run folder, find the checkpoint to resume from."""
    from expokit.core.lock import RootLock
    from expokit.core.roots import claim_root

    run = Path(config.out)
    claim_root(run, "run", what="run folder")
    lock = RootLock(run, "expokit train").acquire()
    try:
        newest = newest_step_dir(run)
        if newest is not None and not resume:
            raise TrainError(
                f"{run} already holds checkpoints (newest {newest.name}); pass --resume to "
                "continue that run or choose another --out"
            )
        start = 0
        if newest is not None:
            meta = read_meta(newest)
            if meta.get("model") != config.model:
                raise CheckpointError(
                    f"{newest}: a checkpoint of model {meta.get('model')!r}, not {config.model!r}"
                )
            if not (newest / STATE_FILE).is_file():
                raise CheckpointError(f"{newest}: no {STATE_FILE}; cannot resume from it")
            start = int(meta["step"])
            saved = run / CONFIG_FILE
            try:
                old = json.loads(saved.read_text(encoding="utf-8")).get("config", {})
            except (OSError, ValueError):
                old = {}
            changes = _config_changes(old, config.to_dict())
            if changes:
                warnings.warn(
                    TrainWarning(
                        f"{run}: resuming step {start} with a changed config: " + "; ".join(changes)
                    ),
                    stacklevel=3,
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

    Raises
    ------
    TrainError
        Bad config, a run folder that already has checkpoints (without ``resume``), a NaN
        loss (naming the step), no CUDA when asked for.
    DataError, ModelError, CheckpointError, OutputError, RootInUseError
        From the data, the model, the checkpoint or the run folder, naming the problem.
    """
    from tqdm import tqdm

    from expokit.models.data import batch_loader, open_dataset
    from expokit.models.registry import create_model, model_class

    say: Callable[[str], None] = echo or tqdm.write
    if not config.model or not config.data or not config.out:
        raise TrainError("training needs model, data and out (--model, --data, --out)")
    kind = model_class(config.model).data_kind
    world = World.from_env()
    device = pick_device(config.device, world)
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    owns_group = _init_group(world, device)
    lock = None
    try:
        seed_everything(config.seed)
        model = create_model(config.model, **config.model_config).to(device)
        n_params = parameter_count(model)
        options = dict(config.data_options)
        frames = getattr(model, "frames", None)
        # A clip model's window decides the loader's, unless both are given and differ.
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

        # Rank 0 claims the run folder; everybody learns where to start (or why not).
        setup: dict[str, Any] = {"error": None, "start": 0, "checkpoint": None}
        if world.main:
            try:
                lock, newest, setup["start"] = _prepare_run(config, resume)
                setup["checkpoint"] = None if newest is None else str(newest)
            except ExpokitError as exc:
                _broadcast(world, {"error": str(exc)})
                raise
        setup = _broadcast(world, setup)
        if setup["error"]:
            raise TrainError(setup["error"])
        start: int = setup["start"]
        run = Path(config.out)

        checkpoint = Path(setup["checkpoint"]) if setup["checkpoint"] else None
        if world.main:
            say(
                f"model {config.model} ({kind} data): {n_params:,} trainable parameters; "
                f"{len(dataset)} training items in split {config.split!r}; device {device}"
                + (f" x {world.size} processes" if world.distributed else "")
            )
            if checkpoint is not None:
                say(f"resuming from {checkpoint} (step {start})")
            elif resume:
                say(f"no checkpoint in {run} yet: starting at step 0")
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config))
        scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
        elapsed_before = 0.0
        seed_everything(config.seed * 1000 + world.rank + 1)
        if checkpoint is not None:
            elapsed_before = _restore(
                checkpoint, model, optimizer, scheduler, scaler, world, config
            )
        wrapped: nn.Module = _LossModule(model)
        if world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            wrapped = DistributedDataParallel(
                wrapped, device_ids=[device.index] if device.type == "cuda" else None
            )
        loader = batch_loader(
            dataset, train=True, batch_size=config.batch_size, num_workers=config.num_workers,
            seed=config.seed, rank=world.rank, world_size=world.size,
            start=start * config.batch_size,
        )  # fmt: skip

        log: _CsvLog | None = None
        board = None
        if world.main:
            from expokit import __version__
            from expokit.core.atomic import atomic_write_json

            atomic_write_json(
                run / CONFIG_FILE,
                {
                    "config": config.to_dict(),
                    "data_kind": kind,
                    "parameters": n_params,
                    "world_size": world.size,
                    "device": str(device),
                    "resumed_from": start if checkpoint is not None else None,
                    "written": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "expokit_version": __version__,
                    "torch_version": torch.__version__,
                },
            )
            log = _CsvLog(run / LOG_FILE, start)
            board = _tensorboard(run, config.tensorboard, say)

        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp)
        bar = tqdm(
            total=config.steps, initial=start, disable=not (progress and world.main),
            desc=f"train {config.model}", unit="step", dynamic_ncols=True, file=sys.stderr,
        )  # fmt: skip
        step = start
        stopped = "done"
        last_loss: float | None = None
        saved: Path | None = checkpoint
        window: dict[str, list[float]] = {}
        began = time.monotonic()
        model.train()
        batches: Iterator[Batch] = iter(loader)
        try:
            while step < config.steps:
                batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
                _check_batch(batch, step + 1, dataset)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    loss, parts = wrapped(batch)
                finite = bool(torch.isfinite(loss.detach()).all())
                # Every rank runs backward (DDP synchronises there), even on a bad loss: the
                # flags below then stop all ranks together before any weight changes.
                scaler.scale(loss).backward()
                minutes = (time.monotonic() - began) / 60
                keys = sorted(parts)
                # One all-reduce per step: mean loss and parts, bad-loss and time-up votes.
                flags = torch.tensor(
                    [
                        float(loss.detach()) if finite else 0.0,
                        0.0 if finite else 1.0,
                        float(config.max_minutes is not None and minutes >= config.max_minutes),
                        *(float(parts[k]) if finite else 0.0 for k in keys),
                    ],
                    dtype=torch.float64,
                    device=device,
                )
                if world.distributed:
                    import torch.distributed as dist

                    dist.all_reduce(flags)
                if flags[1] > 0:
                    shown = ", ".join(f"{k}={v:.4g}" for k, v in parts.items())
                    where = f" ({shown})" if not finite and shown else ""
                    raise TrainError(
                        f"loss is not finite at step {step + 1} of {config.model}{where} on "
                        f"{int(flags[1])} process(es): training stopped without saving this "
                        f"step; last checkpoint: {saved or 'none'}. Lower --lr or check the data"
                    )
                if config.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                lr = optimizer.param_groups[0]["lr"]
                scheduler.step()
                step += 1
                last_loss = float(flags[0]) / world.size
                window.setdefault("loss", []).append(last_loss)
                for i, key in enumerate(keys):
                    window.setdefault(key, []).append(float(flags[3 + i]) / world.size)
                bar.update(1)
                bar.set_postfix(loss=f"{last_loss:.4g}", refresh=False)
                time_up = flags[2] > 0
                if log is not None and (
                    step % config.log_every == 0 or step == config.steps or time_up
                ):
                    row: dict[str, Any] = {"step": step}
                    row.update({k: f"{np.mean(v):.6g}" for k, v in window.items()})
                    row["lr"] = f"{lr:.6g}"
                    row["seconds"] = f"{elapsed_before + time.monotonic() - began:.2f}"
                    log.add(row)
                    if board is not None:
                        for key, values in window.items():
                            board.add_scalar(f"train/{key}", float(np.mean(values)), step)
                        board.add_scalar("train/lr", lr, step)
                    window = {}
                if step % config.ckpt_every == 0 or step == config.steps or time_up:
                    saved = _save(
                        model, run, step, config, optimizer, scheduler, scaler, world,
                        elapsed_before + time.monotonic() - began, start,
                    )  # fmt: skip
                if time_up:
                    stopped = "time"
                    if world.main:
                        say(f"time limit of {config.max_minutes} min reached at step {step}")
                    break
        finally:
            bar.close()
            if board is not None:
                board.close()
            del batches
        summary = TrainSummary(
            run=run, model=config.model, parameters=n_params, start_step=start, step=step,
            steps=config.steps, stopped=stopped, last_loss=last_loss,
            checkpoint=saved,
            seconds=time.monotonic() - began, world_size=world.size, rank=world.rank,
            checksum=weights_checksum(model),
        )  # fmt: skip
        if world.distributed:
            # One line per rank: every rank trained the same steps to the same weights.
            print(
                f"rank {world.rank}/{world.size} (pid {os.getpid()}): step {step}, weights "
                f"checksum {summary.checksum!r}",
                flush=True,
            )
        return summary
    finally:
        torch.set_num_threads(threads_before)
        if lock is not None:
            lock.release()
        if owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def step_folder(run: Path, step: int) -> Path:
    from expokit.models.checkpoint import step_dir

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
) -> Path:
    """Gather every rank's RNG state; rank 0 writes the step folder."""
    states = _gather(world, rng_state())
    folder = step_folder(run, step)
    if world.main:
        save_checkpoint(
            model,
            run,
            step,
            extra_meta={"train_config": config.to_dict(), "world_size": world.size},
            training_state={
                "step": step,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": states,
                "world_size": world.size,
                "elapsed_s": elapsed,
            },
        )
    return folder


def _restore(
    folder: Path,
    model: Baseline,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    world: World,
    config: TrainConfig,
) -> float:
    """Load weights and training state of ``folder``; return the seconds trained so far."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        weights = load_file(str(folder / WEIGHTS_FILE), device="cpu")
        model.load_state_dict(weights, strict=True)
    except (OSError, RuntimeError, ValueError, SafetensorError) as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{folder / WEIGHTS_FILE}: cannot resume from it: {first}") from None
    try:
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{folder / STATE_FILE}: unreadable training state ({exc})") from None
    # A resumed run takes the lr and weight decay of the (possibly changed) config.
    factor = lr_factor(config)
    scheduler.base_lrs = [config.lr for _ in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["initial_lr"] = config.lr
        group["lr"] = config.lr * factor(scheduler.last_epoch)
        group["weight_decay"] = config.weight_decay
    rngs = state.get("rng") or []
    if state.get("world_size") == world.size and world.rank < len(rngs):
        set_rng_state(rngs[world.rank])
    return float(state.get("elapsed_s", 0.0))
