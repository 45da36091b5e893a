"""rendering: RAW files to multi-EV images, the stage behind ``expokit render``.

Modules
-------
raw_decode
    One LibRaw pass to linear 16-bit RGB with every parameter explicit; white balance,
    metadata and sanity checks.
config
    :class:`RenderConfig`, the typed, validated, hashable set of render parameters, and
    :class:`OutputFormat`.
render
    The per-RAW render function and the batch driver behind ``expokit render``; runs and
    completion records go through :mod:`expokit.core.runs`, shared with ``curate build``.
render_layout
    Output names and folders of a render (the ``sequence`` and ``msec`` render layouts;
    not the export layouts of :mod:`expokit.curation.export.layouts`).
render_manifest
    The render manifest (``manifest.parquet`` of a render folder: one row per output
    file); not the dataset manifest of :mod:`expokit.curation.dataset.format`.

The public names below are loaded on first use (PEP 562), so importing
``expokit.curation.rendering.config`` (as :mod:`.render_layout` does) does not pull in the
batch driver, which itself imports :mod:`.render_layout`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from expokit.curation.rendering.config import (
        LAYOUTS,
        METER_STATISTICS,
        WB_POLICIES,
        MeterSpec,
        OutputFormat,
        RenderConfig,
    )
    from expokit.curation.rendering.raw_decode import (
        RAW_EXTENSIONS,
        DecodedRaw,
        RawMetadata,
        choose_white_balance,
        decode_raw,
        library_versions,
        read_metadata,
    )
    from expokit.curation.rendering.render import (
        RenderSummary,
        RenderTask,
        discover_raw_files,
        encode_image,
        meter_offset,
        render_arrays,
        render_batch,
        render_raw,
    )

#: Public name -> the module (below this package) that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        (
            "LAYOUTS",
            "METER_STATISTICS",
            "WB_POLICIES",
            "MeterSpec",
            "OutputFormat",
            "RenderConfig",
        ),
        "config",
    ),
    **dict.fromkeys(
        (
            "RAW_EXTENSIONS",
            "DecodedRaw",
            "RawMetadata",
            "choose_white_balance",
            "decode_raw",
            "library_versions",
            "read_metadata",
        ),
        "raw_decode",
    ),
    **dict.fromkeys(
        (
            "RenderSummary",
            "RenderTask",
            "discover_raw_files",
            "encode_image",
            "meter_offset",
            "render_arrays",
            "render_batch",
            "render_raw",
        ),
        "render",
    ),
}

__all__ = [
    "LAYOUTS",
    "METER_STATISTICS",
    "RAW_EXTENSIONS",
    "WB_POLICIES",
    "DecodedRaw",
    "MeterSpec",
    "OutputFormat",
    "RawMetadata",
    "RenderConfig",
    "RenderSummary",
    "RenderTask",
    "choose_white_balance",
    "decode_raw",
    "discover_raw_files",
    "encode_image",
    "library_versions",
    "meter_offset",
    "read_metadata",
    "render_arrays",
    "render_batch",
    "render_raw",
]


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
