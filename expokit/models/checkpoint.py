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
newest step). :func:`save_best` replaces ``best/`` as a whole: it writes a complete sibling
folder and swaps it in by two renames, so a reader sees the old best or the new one (after a
kill between the renames, :func:`find_best` finds the old one under :data:`BEST_OLD_DIR`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from expokit.core.atomic import TEMP_PREFIX, atomic_path, atomic_write_json, describe_os_error
from expokit.core.errors import ExpokitError, OutputError

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
_STEP_DIR = re.compile(r"step_(\d{8})")
_BEST_TEMP = f"{TEMP_PREFIX}*-{BEST_DIR}"
Prefer = Literal["best", "last"]


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
    meta: dict[str, Any],
    training_state: dict[str, Any] | None,
) -> None:
    """Weights, the training state (if any), then ``meta.json``: a folder with it is whole."""
    import torch
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp))
    if training_state is not None:
        with atomic_path(folder / STATE_FILE) as tmp:
            torch.save(training_state, tmp)
    atomic_write_json(folder / META_FILE, meta)


def _meta(model: Baseline, step: int, extra_meta: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "model": model.name,
        "model_config": model.config,
        "step": step,
        **(extra_meta or {}),
    }


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


def load_model(
    path: str | Path, *, expect: str | None = None, prefer: Prefer = "best"
) -> tuple[Baseline, dict[str, Any]]:
    """Rebuild the model stored at ``path`` in eval mode (``path`` and ``prefer`` as in
    :func:`resolve_checkpoint`: a run folder means its best checkpoint, if any).

    The returned meta is the folder's ``meta.json`` plus ``path`` (the folder used); a
    best checkpoint's has ``"checkpoint": "best"`` and its val figures.

    Raises
    ------
    CheckpointError
        Missing files, another format or version, a model name expokit does not know, a
        model other than ``expect``, or weights that do not fit the model.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from expokit.models.registry import create_model

    folder = resolve_checkpoint(path, prefer=prefer)
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
