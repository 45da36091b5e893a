"""The rendering sub-package: its public API and its import order."""

from __future__ import annotations

import subprocess
import sys

import pytest

import expokit.curation.rendering as rendering
from expokit.curation.rendering import config, raw_decode, render


def test_public_names_are_the_module_objects() -> None:
    assert rendering.render_batch is render.render_batch
    assert rendering.RenderSummary is render.RenderSummary
    assert rendering.RenderConfig is config.RenderConfig
    assert rendering.OutputFormat is config.OutputFormat
    assert rendering.decode_raw is raw_decode.decode_raw
    assert rendering.RAW_EXTENSIONS is raw_decode.RAW_EXTENSIONS


def test_every_name_in_all_resolves() -> None:
    missing = [name for name in rendering.__all__ if not hasattr(rendering, name)]
    assert missing == []
    assert set(rendering.__all__) <= set(dir(rendering))


def test_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = rendering.no_such_thing


@pytest.mark.parametrize(
    "first",
    [
        "expokit.curation.rendering.render_layout",
        "expokit.curation.rendering.config",
        "expokit.curation.build.sources",
    ],
)
def test_importing_layout_or_config_first_has_no_cycle(first: str) -> None:
    # layout imports rendering.config, and rendering.render imports layout: the package
    # __init__ must not import render eagerly. A fresh interpreter sees the real order.
    code = f"import {first}; from expokit.curation.rendering import render_batch; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
