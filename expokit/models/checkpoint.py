"""Checkpoints: weights as safetensors in step folders, with the model's name and config.

Layout of a training run folder ``RUN``::

    RUN/config.json                      resolved training config
    RUN/log.csv                          step, loss parts, learning rate, seconds
    RUN/checkpoints/step_00000100/
        model.safetensors                weights only (no pickle: safe to load from anywhere)
        meta.json                        format, version, model name and config, step
        training_state.pt                optimizer, scheduler, RNG states, step (for --resume)

``load_model(CKPT_OR_RUN)`` accepts a step folder, a ``model.safetensors`` file or a run
folder (its newest step).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expokit.core.atomic import atomic_path, atomic_write_json
from expokit.core.errors import ExpokitError

if TYPE_CHECKING:
    from expokit.models.base import Baseline

CHECKPOINT_FORMAT = "expokit-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINTS_DIR = "checkpoints"
WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"
STATE_FILE = "training_state.pt"
_STEP_DIR = re.compile(r"step_(\d{8})")


class CheckpointError(ExpokitError):
    """A checkpoint cannot be used (missing, another format or version, another model)."""


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


def resolve_checkpoint(path: str | Path) -> Path:
    """The step folder meant by ``path`` (run folder, step folder or weights file)."""
    given = Path(path)
    if given.is_file() and given.name == WEIGHTS_FILE:
        return given.parent
    if given.is_dir() and (given / META_FILE).is_file():
        return given
    if given.is_dir():
        newest = newest_step_dir(given)
        if newest is None:
            raise CheckpointError(f"{given}: no checkpoint in it (no {CHECKPOINTS_DIR}/step_*)")
        return newest
    raise CheckpointError(f"{given}: no such checkpoint (give a run folder or a step folder)")


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
    import torch
    from safetensors.torch import save_file

    folder = step_dir(run, step)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp))
    if training_state is not None:
        with atomic_path(folder / STATE_FILE) as tmp:
            torch.save(training_state, tmp)
    atomic_write_json(
        folder / META_FILE,
        {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "model": model.name,
            "model_config": model.config,
            "step": step,
            **(extra_meta or {}),
        },
    )
    return folder


def read_meta(folder: Path) -> dict[str, Any]:
    """The checked ``meta.json`` of a step folder."""
    path = folder / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint description ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an expokit checkpoint (format {meta.get('format')!r})")
    if meta.get("format_version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {meta.get('format_version')!r}; this expokit "
            f"reads version {CHECKPOINT_VERSION}"
        )
    return meta


def load_model(path: str | Path, *, expect: str | None = None) -> tuple[Baseline, dict[str, Any]]:
    """Rebuild the model stored at ``path`` (run, step folder or weights file) in eval mode.

    Raises
    ------
    CheckpointError
        Missing files, another format or version, a model name expokit does not know, a
        model other than ``expect``, or weights that do not fit the model.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from expokit.models.registry import create_model

    folder = resolve_checkpoint(path)
    meta = read_meta(folder)
    name = str(meta.get("model"))
    if expect is not None and name != expect:
        raise CheckpointError(f"{folder}: a checkpoint of model {name!r}, not {expect!r}")
    model = create_model(name, **dict(meta.get("model_config") or {}))
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
    return model, {**meta, "path": str(folder)}
