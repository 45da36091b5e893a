"""Shared fixtures: the shared developer data set (skipped cleanly when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EXPOKIT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """Path inside ../shared/data; skips the calling test when it is not there."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


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
