"""The synthetic DNG writer and the shipped demo RAWs it made."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from expokit.core.hashing import sha256_file
from expokit.core.synthetic import DEMO_SCENES, demo_scene, write_demo_set, write_dng
from expokit.demo import demo_raw_dir


def test_write_is_deterministic(tmp_path: Path) -> None:
    scene = demo_scene("window", 64, 96)
    write_dng(tmp_path / "a.dng", scene, noise_sigma=3, seed=1)
    write_dng(tmp_path / "b.dng", scene, noise_sigma=3, seed=1)
    assert sha256_file(tmp_path / "a.dng") == sha256_file(tmp_path / "b.dng")


def test_shipped_demo_raws_are_reproducible(tmp_path: Path) -> None:
    shipped = sorted(demo_raw_dir().glob("*.dng"))
    assert len(shipped) == len(DEMO_SCENES)
    made = sorted(write_demo_set(tmp_path))
    assert [p.name for p in made] == [p.name for p in shipped]
    for a, b in zip(made, shipped, strict=True):
        assert sha256_file(a) == sha256_file(b), f"{b} differs from what synthetic.py makes"


@pytest.mark.parametrize("kind", DEMO_SCENES)
def test_scenes_are_finite_nonnegative(kind: str) -> None:
    scene = demo_scene(kind, 50, 70)
    assert scene.shape == (50, 70, 3) and scene.dtype == np.float32
    assert np.isfinite(scene).all() and scene.min() >= 0


def test_unknown_scene() -> None:
    with pytest.raises(ValueError):
        demo_scene("moon")
