"""Checkpoints: weights as safetensors in step folders, with the model's name and config.

Layout of a training run folder ``RUN``::

    RUN/config.json                      resolved training config
    RUN/log.csv                          step, loss parts, learning rate, seconds
    RUN/validation.json                  val split, fair baseline, best step, verdict
    RUN/checkpoints/step_00000100/
        model.safetensors                weights only (no pickle: safe to load from anywhere)
        meta.json                        format, version, model name and config, step
        training_state.pt                optimizer, scheduler, RNG states, step (for --resume)
    RUN/checkpoints/best/                the step with the highest val PSNR so far
        model.safetensors, meta.json     meta adds checkpoint "best", val_psnr, val_baseline...

``load_model(CKPT_OR_RUN)`` accepts a step folder (``best`` included), a
``model.safetensors`` file or a run folder: its best checkpoint when there is one, else its
newest step (``prefer="last"``, or the folder ``RUN/checkpoints`` itself, always means the
newest step). :func:`load_pretrained` loads the weights shipped with expokit
(``expokit/models/weights/<model>/``, a checkpoint folder plus ``config.json`` and
``MODEL_CARD.md``; made by ``scripts/train_shipped_weights.py``). :func:`save_best`
replaces ``best/`` as a whole: it writes a complete sibling folder and swaps it in by two
renames, so a reader sees the old best or the new one (after a kill between the renames,
:func:`find_best` finds the old one under :data:`BEST_OLD_DIR`).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from expokit.core.atomic import (
    TEMP_PREFIX,
    atomic_write_bytes,
    atomic_write_json,
    describe_os_error,
)
from expokit.core.errors import ExpokitError, OutputError
from expokit.models.base import ModelError
from expokit.models.registry import MODELS, create_model

if TYPE_CHECKING:
    from expokit.models.base import Baseline

CHECKPOINT_FORMAT = "expokit-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINTS_DIR = "checkpoints"
WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"
STATE_FILE = "training_state.pt"
#: The best checkpoint's folder inside ``RUN/checkpoints``, and where the previous one sits
#: for the moment of a swap.
BEST_DIR = "best"
BEST_OLD_DIR = ".best-old"
#: The folder of the shipped pretrained weights inside the ``expokit.models`` package.
PRETRAINED_DIR = "weights"
_STEP_DIR = re.compile(r"step_(\d{8})")
_BEST_TEMP = f"{TEMP_PREFIX}*-{BEST_DIR}"
Prefer = Literal["best", "last"]


class CheckpointError(ExpokitError):
    """A checkpoint cannot be used (missing, another format or version, another model)."""


#: Keys of ``meta.json`` that :class:`CheckpointMeta` holds as fields; any other key (the
#: training config, world size, a best checkpoint's val figures) is kept in ``extra``.
_META_FIELDS = ("format", "format_version", "model", "model_config", "step")


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint folder's ``meta.json`` says: the one reader and writer of that file.

    Attributes
    ----------
    model
        The registered model name (:mod:`expokit.models.registry`).
    step
        The training step the weights are from (a whole number >= 0).
    model_config
        Keyword arguments that rebuild the model.
    extra
        Every other key: ``train_config``, ``world_size``; a best checkpoint's
        ``checkpoint`` ("best") and ``val_*`` figures.
    """

    model: str
    step: int
    model_config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: object, path: str | Path) -> CheckpointMeta:
        """The record of the parsed ``meta.json`` at ``path``; any problem names the file and
        the field.

        Raises
        ------
        CheckpointError
            Not a JSON object, another format or version, or a field of the wrong type.
        """
        if not isinstance(data, dict):
            kind = "an array" if isinstance(data, list) else f"a {type(data).__name__}"
            raise CheckpointError(
                f"{path}: not an expokit checkpoint description (a JSON object), but {kind}"
            )
        if data.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"{path}: not an expokit checkpoint (format {data.get('format')!r})"
            )
        if data.get("format_version") != CHECKPOINT_VERSION:
            raise CheckpointError(
                f"{path}: checkpoint format version {data.get('format_version')!r}; this "
                f"expokit reads version {CHECKPOINT_VERSION}"
            )
        model, step, config = data.get("model"), data.get("step"), data.get("model_config")
        if not isinstance(model, str) or not model:
            raise CheckpointError(f"{path}: model must be a model name, got {model!r}")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise CheckpointError(f"{path}: step must be a whole number >= 0, got {step!r}")
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise CheckpointError(f"{path}: model_config must be an object, got {config!r}")
        extra = {k: v for k, v in data.items() if k not in _META_FIELDS}
        return cls(model=model, step=step, model_config=dict(config), extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The ``meta.json`` object (extras first, so they never shadow a field)."""
        return {
            **self.extra,
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "model": self.model,
            "model_config": dict(self.model_config),
            "step": self.step,
        }

    def number(self, key: str) -> float | None:
        """The finite number stored under the extra ``key`` (a val figure), else None."""
        value = self.extra.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value) if value == value and abs(value) != float("inf") else None

    def write(self, folder: Path) -> None:
        """Write ``folder/meta.json`` atomically."""
        atomic_write_json(folder / META_FILE, self.to_dict())


def step_dir(run: str | Path, step: int) -> Path:
    return Path(run) / CHECKPOINTS_DIR / f"step_{step:08d}"


def newest_step_dir(run: str | Path) -> Path | None:
    """The newest complete step folder of ``run`` (one whose meta.json exists), or None."""
    folder = Path(run) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return None
    steps = sorted(
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if (m := _STEP_DIR.fullmatch(p.name)) and (p / META_FILE).is_file()
    )
    return steps[-1][1] if steps else None


def best_dir(run: str | Path) -> Path:
    return Path(run) / CHECKPOINTS_DIR / BEST_DIR


def find_best(run: str | Path) -> Path | None:
    """The complete best checkpoint of ``run`` (``checkpoints/best``, or the previous best
    a killed swap left in ``checkpoints/.best-old``), or None."""
    folder = Path(run) / CHECKPOINTS_DIR
    for candidate in (folder / BEST_DIR, folder / BEST_OLD_DIR):
        if (candidate / META_FILE).is_file():
            return candidate
    return None


def resolve_checkpoint(path: str | Path, *, prefer: Prefer = "best") -> Path:
    """The checkpoint folder meant by ``path``.

    ``path`` is a checkpoint folder (a step folder or ``best``), its weights file, a run
    folder (its best checkpoint when ``prefer`` is ``best`` and there is one, else its
    newest step) or a run's ``checkpoints`` folder (always its newest step: the explicit
    way to skip the best).
    """
    given = Path(path)
    if given.is_file() and given.name == WEIGHTS_FILE:
        return given.parent
    if given.is_dir() and (given / META_FILE).is_file():
        return given
    if given.is_dir():
        in_run = not (given / CHECKPOINTS_DIR).is_dir() and given.name == CHECKPOINTS_DIR
        run = given.parent if in_run else given
        best = None if in_run or prefer == "last" else find_best(run)
        if best is not None:
            return best
        newest = newest_step_dir(run)
        if newest is None:
            raise CheckpointError(f"{given}: no checkpoint in it (no {CHECKPOINTS_DIR}/step_*)")
        return newest
    raise CheckpointError(f"{given}: no such checkpoint (give a run folder or a step folder)")


def _write_folder(
    model: Baseline,
    folder: Path,
    meta: CheckpointMeta,
    training_state: dict[str, Any] | None,
) -> None:
    """Weights, the training state (if any), then ``meta.json``: a folder with it is whole.

    Both are serialised in memory and written by :func:`atomic_write_bytes`: writing straight
    to the file, safetensors and ``torch.save`` turn a full disk into their own
    ``RuntimeError``; through Python's own write it is an ``OSError`` that becomes an
    :class:`OutputError` saying "disk full while writing <file>".
    """
    import torch
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(folder / WEIGHTS_FILE, save(state))
    if training_state is not None:
        buffer = io.BytesIO()
        torch.save(training_state, buffer)
        atomic_write_bytes(folder / STATE_FILE, buffer.getvalue())
    meta.write(folder)


def _meta(model: Baseline, step: int, extra_meta: Mapping[str, Any] | None) -> CheckpointMeta:
    return CheckpointMeta(
        model=model.name, step=step, model_config=dict(model.config), extra=dict(extra_meta or {})
    )


def save_checkpoint(
    model: Baseline,
    run: str | Path,
    step: int,
    *,
    extra_meta: dict[str, Any] | None = None,
    training_state: dict[str, Any] | None = None,
) -> Path:
    """Write weights, meta and (optionally) the training state for ``step``; return the folder.

    Files are written atomically; ``meta.json`` last, so a folder with it is complete.
    """
    folder = step_dir(run, step)
    _write_folder(model, folder, _meta(model, step, extra_meta), training_state)
    return folder


def save_best(
    model: Baseline, run: str | Path, step: int, *, extra_meta: dict[str, Any] | None = None
) -> Path:
    """Make ``model`` (at ``step``) the run's best checkpoint, ``RUN/checkpoints/best``.

    Weights and meta (``"checkpoint": "best"`` plus ``extra_meta``: the val figures) go to
    a new sibling folder first; then the old ``best`` is renamed away, the new one renamed
    in and the old one deleted. The caller holds the run's lock, so leftovers of a killed
    swap are stale and are removed here.

    Raises
    ------
    OutputError
        A rename or delete failed (disk full, read-only, ...).
    """
    final = best_dir(run)
    parent = final.parent
    old = parent / BEST_OLD_DIR
    parent.mkdir(parents=True, exist_ok=True)
    for leftover in parent.glob(_BEST_TEMP):
        shutil.rmtree(leftover, ignore_errors=True)
    fresh = parent / f"{TEMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}-{BEST_DIR}"
    meta = _meta(model, step, {"checkpoint": BEST_DIR, **(extra_meta or {})})
    try:
        _write_folder(model, fresh, meta, None)
        if final.is_dir():
            if old.exists():
                shutil.rmtree(old)
            final.rename(old)
        fresh.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(fresh, ignore_errors=True)
        raise OutputError(describe_os_error(exc, final)) from exc
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    return final


def remove_best(run: str | Path) -> None:
    """Delete the run's best checkpoint (and any swap leftover)."""
    parent = Path(run) / CHECKPOINTS_DIR
    for folder in (parent / BEST_DIR, parent / BEST_OLD_DIR, *parent.glob(_BEST_TEMP)):
        shutil.rmtree(folder, ignore_errors=True)


def read_meta(folder: Path) -> CheckpointMeta:
    """The checked ``meta.json`` of a checkpoint folder (:meth:`CheckpointMeta.from_dict`)."""
    path = folder / META_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint description ({exc})") from None
    return CheckpointMeta.from_dict(data, path)


@dataclass(frozen=True)
class LoadedCheckpoint:
    """The checkpoint :func:`load_model` rebuilt a model from: its folder and its meta.

    Attributes
    ----------
    folder
        The checkpoint folder used (a step folder or ``best``).
    meta
        Its checked ``meta.json``.
    """

    folder: Path
    meta: CheckpointMeta

    @property
    def model(self) -> str:
        """The registered model name."""
        return self.meta.model

    @property
    def step(self) -> int:
        """The training step of the weights."""
        return self.meta.step

    @property
    def model_config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild the model."""
        return self.meta.model_config

    @property
    def weights(self) -> Path:
        """The folder's ``model.safetensors``."""
        return self.folder / WEIGHTS_FILE

    @property
    def is_best(self) -> bool:
        """Whether this is a run's best checkpoint (``"checkpoint": "best"``)."""
        return self.meta.extra.get("checkpoint") == BEST_DIR

    @property
    def val_psnr(self) -> float | None:
        """A best checkpoint's val PSNR (dB), else None."""
        return self.meta.number("val_psnr")

    def summary(self) -> dict[str, Any]:
        """``{"path", "model", "step", "model_config"}``: what an evaluation's summary.json
        records of the checkpoint."""
        return {
            "path": str(self.folder),
            "model": self.model,
            "step": self.step,
            "model_config": dict(self.model_config),
        }


def load_model(
    path: str | Path, *, expect: str | None = None, prefer: Prefer = "best"
) -> tuple[Baseline, LoadedCheckpoint]:
    """Rebuild the model stored at ``path`` in eval mode (``path`` and ``prefer`` as in
    :func:`resolve_checkpoint`: a run folder means its best checkpoint, if any).

    The returned record names the folder used and holds its checked ``meta.json``; a best
    checkpoint's meta has ``"checkpoint": "best"`` and its val figures in ``extra``.

    Raises
    ------
    CheckpointError
        Missing files, another format or version, a model name expokit does not know, a
        model other than ``expect``, or weights that do not fit the model.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = resolve_checkpoint(path, prefer=prefer)
    meta = read_meta(folder)
    name = meta.model
    if expect is not None and name != expect:
        raise CheckpointError(f"{folder}: a checkpoint of model {name!r}, not {expect!r}")
    try:
        model = create_model(name, **meta.model_config)
    except ModelError as exc:
        if name not in MODELS:
            raise
        raise CheckpointError(f"{folder / META_FILE}: model_config: {exc}") from None
    weights = folder / WEIGHTS_FILE
    try:
        state = load_file(str(weights))
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(f"{weights}: unreadable weights ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{weights}: weights do not fit model {name!r}: {first}") from None
    model.eval()
    return model, LoadedCheckpoint(folder=folder, meta=meta)


# ----------------------------------------------------------------------------- shipped weights


def pretrained_root() -> Path:
    """The folder of the shipped weights, ``expokit/models/weights`` (one folder per model)."""
    return Path(str(resources.files("expokit.models") / PRETRAINED_DIR))


def shipped_models() -> tuple[str, ...]:
    """Names of the models with shipped weights (a folder with ``meta.json``), sorted."""
    root = pretrained_root()
    if not root.is_dir():
        return ()
    return tuple(sorted(p.name for p in root.iterdir() if (p / META_FILE).is_file()))


def pretrained_dir(name: str) -> Path:
    """The checkpoint folder of the weights shipped for model ``name``.

    Raises
    ------
    CheckpointError
        No weights ship for ``name`` (the message lists those that do).
    """
    shipped = shipped_models()
    if name not in shipped:
        listed = ", ".join(shipped) if shipped else "none in this installation"
        raise CheckpointError(f"--model {name}: no shipped weights for it; shipped: {listed}")
    return pretrained_root() / name


def load_pretrained(name: str) -> tuple[Baseline, LoadedCheckpoint]:
    """The shipped pretrained ``name`` model in eval mode, as :func:`load_model` returns it.

    Raises
    ------
    CheckpointError
        No weights ship for ``name``, or they do not load (see :func:`load_model`).
    """
    return load_model(pretrained_dir(name), expect=name)
