"""What every baseline shares: tensor conventions, the batch keys, the model interface.

Conventions (all models, all data loaders)
------------------------------------------
* Images are ``float32`` tensors ``(B, 3, H, W)`` in ``[0, 1]``, **RGB**, sRGB-encoded (the
  files' own transfer: what a person sees and what the metrics in ``docs/metrics.md`` use).
* Masks are ``float32`` ``(B, 1, H, W)`` in ``{0, 1}``: 1 where the aligned pair is valid.
  Losses and metrics count only masked pixels.
* Video clips are ``(B, N, 3, H, W)`` with the centre frame ``N // 2`` as the one to restore.

Batch keys (a ``dict[str, Tensor]``; a loader fills the keys its kind needs)
------------------------------------------------------------------------------
``input``, ``target``, ``mask``
    every kind: the image to correct, what it should become, where the pair is valid.
``reference``
    ``sequence`` kind: an image whose exposure the output should take (UEC's second image;
    at evaluation the target exposure's reference, e.g. another scene's middle exposure).
``ref_dark``, ``ref_bright``
    ``sequence`` kind: two exposures of *another* scene, ``ref_dark`` darker (UEC's
    monotonicity term: correcting towards ``ref_bright`` must not give a darker output).
``frames``, ``target_frames``, ``frame_mask``
    ``clip`` kind: ``(B, N, 3, H, W)`` input and target frames and ``(B, N, 1, H, W)`` masks.
``input_ev``, ``target_ev``
    ``(B,)`` float EVs from the manifest (NaN when unknown).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from expokit.core.errors import ExpokitError

Batch = dict[str, torch.Tensor]
DataKind = Literal["paired", "sequence", "clip"]


class ModelError(ExpokitError):
    """A model cannot run on what it was given (wrong channels, NaN, missing batch keys)."""


def check_image(tensor: torch.Tensor, name: str = "input") -> torch.Tensor:
    """``tensor`` when it is a finite ``(B, 3, H, W)`` float image, else :class:`ModelError`."""
    if tensor.ndim != 4 or tensor.shape[1] != 3:
        raise ModelError(
            f"{name}: expected an RGB batch of shape (B, 3, H, W), got {tuple(tensor.shape)}"
        )
    if not tensor.is_floating_point():
        raise ModelError(f"{name}: expected a float tensor in [0, 1], got {tensor.dtype}")
    if not torch.isfinite(tensor).all():
        raise ModelError(f"{name}: holds NaN or infinite values")
    return tensor


def check_int(model: str, key: str, value: object, minimum: int) -> int:
    """``value`` when it is a whole number (not a bool, not text) >= ``minimum``.

    Model constructors take their sizes from JSON and TOML, where ``"32"`` or ``-1`` are easy
    to write: refused here, naming the key, before torch fails on them (or, for a loop count,
    silently runs zero times).

    Raises
    ------
    ModelError
        ``"<model>: <key> must be an integer >= <minimum>, got <value>"``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ModelError(f"{model}: {key} must be an integer >= {minimum}, got {value!r}")
    return value


def check_number(model: str, key: str, value: object, minimum: float = 0.0) -> float:
    """``value`` when it is a finite number (not a bool, not text) >= ``minimum``.

    Raises
    ------
    ModelError
        ``"<model>: <key> must be a number >= <minimum>, got <value>"``.
    """
    ok = not isinstance(value, bool) and isinstance(value, int | float)
    if not ok or not math.isfinite(float(value)) or float(value) < minimum:  # type: ignore[arg-type]
        raise ModelError(f"{model}: {key} must be a number >= {minimum:g}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def register_running_level(
    module: nn.Module, start_level: float, name: str = "target_level"
) -> None:
    """Give ``module`` the buffers :func:`fold_running_level` updates: ``name`` (starting at
    ``start_level``) and ``<name>_batches`` (0), saved with the weights."""
    module.register_buffer(name, torch.tensor(start_level))
    module.register_buffer(f"{name}_batches", torch.tensor(0))


def fold_running_level(
    level: torch.Tensor, batches: torch.Tensor, value: torch.Tensor, momentum: float
) -> None:
    """Fold one batch's ``value`` (a scalar) into the running ``level`` buffer in place: the
    first batches average (weight ``1 / n``), then ``momentum``; ``batches`` counts them."""
    with torch.no_grad():
        count = int(batches) + 1
        weight = max(momentum, 1 / count)
        level.mul_(1 - weight).add_(weight * value.to(level.dtype))
        batches.fill_(count)


def require(batch: Batch, *keys: str, model: str) -> None:
    """Raise :class:`ModelError` naming the keys a batch lacks for ``model``."""
    missing = [k for k in keys if k not in batch]
    if missing:
        raise ModelError(
            f"model {model!r} needs batch keys {', '.join(missing)} (see expokit.models.base)"
        )


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class Baseline(nn.Module, ABC):
    """A trainable baseline: ``training_loss`` for training, ``enhance`` for inference.

    Subclasses set :attr:`name` and :attr:`data_kind`, take only JSON-able keyword arguments
    in ``__init__`` (stored in :attr:`config` so a checkpoint can rebuild the model), and
    accept images of any size in :meth:`enhance`.
    """

    name: ClassVar[str]
    data_kind: ClassVar[DataKind]
    #: Whether :meth:`enhance` needs a reference image (UEC: the target exposure).
    needs_reference: ClassVar[bool] = False

    def __init__(self, **config: Any) -> None:
        super().__init__()
        self.config: dict[str, Any] = dict(config)

    @abstractmethod
    def training_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss to minimise and named parts for the log."""

    @abstractmethod
    def enhance(self, image: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """Corrected ``image`` ``(B, 3, H, W)`` in ``[0, 1]``, any ``H, W``.

        For clip models ``image`` is ``(B, N, 3, H, W)`` and the result is the centre frame.
        """

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter groups: ``{"params": [...], "lr_scale": s}``, each
        trained at ``s`` times the recipe's lr (default: one group of every parameter)."""
        return [{"params": list(self.parameters()), "lr_scale": 1.0}]

    def evaluate_batch(self, batch: Batch) -> torch.Tensor:
        """Output for a loader batch (what evaluation scores against ``target``)."""
        return self.enhance(batch["input"], batch.get("reference"))
