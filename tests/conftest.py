"""Shared fixtures: the shared developer data set (skipped cleanly when absent).

Tests that read ``../shared/data`` (through :func:`shared_path`, directly, from a helper of
their module or from a fixture) are marked ``shared_data`` at collection, so
``-m "not shared_data"`` runs only what a clean clone can; the end of the run says how many
were skipped because the data is absent. Their clean-clone counterparts with known answers:
tests/calibration/test_accuracy_synthetic.py, tests/curation/build/test_sequence_gains_synthetic.py
and tests/test_simulation_chain.py.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EXPOKIT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


#: Start of the skip reason of :func:`shared_path`; the terminal summary counts these.
SHARED_SKIP_REASON = "shared data not available"
SHARED_MARKER = "shared_data"


def shared_path(*parts: str) -> Path:
    """Path inside ../shared/data; skips the calling test when it is not there."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{SHARED_SKIP_REASON}: {path}")
    return path


# --------------------------------------------------------------------------- marker + summary

_USES = re.compile(r"\bshared_path\(|\bshared_raw_dir\b")


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def _shared_helpers(module: Any, cache: dict[str, set[str]]) -> set[str]:
    """Names of ``module``'s functions that reach shared_path, directly or through another."""
    key = getattr(module, "__name__", "")
    if key in cache:
        return cache[key]
    functions: dict[str, str] = {
        name: _source(obj)
        for name, obj in vars(module).items()
        if inspect.isfunction(obj) and getattr(obj, "__module__", None) == key
    }
    found = {name for name, text in functions.items() if _USES.search(text)}
    while True:  # transitive: a helper calling a helper that reads shared data
        calls = re.compile(r"\b(" + "|".join(map(re.escape, found)) + r")\(") if found else None
        more = {n for n, t in functions.items() if n not in found and calls and calls.search(t)}
        if not more:
            break
        found |= more
    cache[key] = found
    return found


def _reads_shared_data(item: pytest.Item, cache: dict[str, set[str]]) -> bool:
    function: Callable[..., Any] | None = getattr(item, "function", None)
    module = getattr(item, "module", None)
    if function is None or module is None:
        return False
    helpers = _shared_helpers(module, cache)
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, helpers)) + r")\(") if helpers else None
    texts = [_source(function)]
    info = getattr(item, "_fixtureinfo", None)
    for defs in info.name2fixturedefs.values() if info is not None else ():
        texts.extend(_source(d.func) for d in defs)
    return any(_USES.search(t) or (pattern and pattern.search(t)) for t in texts)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that reads ../shared/data ``shared_data``."""
    cache: dict[str, set[str]] = {}
    for item in items:
        if _reads_shared_data(item, cache):
            item.add_marker(SHARED_MARKER)


def _skip_reason(report: Any) -> str:
    longrepr = getattr(report, "longrepr", None)
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr or "")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say how many tests skipped because ../shared/data is absent."""
    skipped = terminalreporter.stats.get("skipped", [])
    count = sum(SHARED_SKIP_REASON in _skip_reason(r) for r in skipped)
    if count:
        terminalreporter.write_line(
            f"{count} tests skipped: ../shared/data absent (real-data accuracy tests)"
        )


@pytest.fixture
def shared_raw_dir() -> Path:
    return shared_path("raw")


@pytest.fixture
def chart_dng(tmp_path: Path) -> Path:
    """A 14-bit synthetic Bayer DNG of the colour chart with known radiance."""
    from expokit.core.synthetic import demo_scene, write_dng

    path = tmp_path / "raws" / "chart.dng"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_dng(path, demo_scene("chart", 212, 318), black_level=512, white_level=16383)
    return path


@pytest.fixture
def small_raw_dir(tmp_path: Path) -> Path:
    """Three small synthetic DNGs (different scenes and CFA patterns) in one folder."""
    from expokit.core.synthetic import demo_scene, write_dng

    folder = tmp_path / "small_raws"
    folder.mkdir()
    for i, (scene, cfa) in enumerate([("chart", "RGGB"), ("window", "BGGR"), ("texture", "GBRG")]):
        write_dng(
            folder / f"s{i}_{scene}.dng",
            demo_scene(scene, 120, 180, seed=i),
            cfa=cfa,
            noise_sigma=2.0,
            seed=i,
        )
    return folder
