"""Model names -> classes, imported lazily (``expokit train --model NAME``)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from expokit.models.base import ModelError

if TYPE_CHECKING:
    from expokit.models.base import Baseline

#: name -> "module:Class" below ``expokit.models``.
MODELS: dict[str, str] = {
    "uec": "uec:UEC",
    "recnet": "recnet:RECNet",
    "zerodce": "zerodce:ZeroDCE",
    "video": "video:VideoNet",
}


def model_class(name: str) -> type[Baseline]:
    """The class registered as ``name``."""
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    module_name, class_name = MODELS[name].split(":")
    module = importlib.import_module(f"expokit.models.{module_name}")
    cls: type[Baseline] = getattr(module, class_name)
    return cls


def create_model(name: str, **config: Any) -> Baseline:
    """A new model ``name`` built with ``config`` (unknown keys are an error)."""
    cls = model_class(name)
    try:
        return cls(**config)
    except TypeError as exc:
        raise ModelError(f"model {name!r}: bad configuration {config}: {exc}") from None
