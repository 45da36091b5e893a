"""`curate build --executor ray` on a local Ray instance gives the in-process manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from expokit.curation.build.config import BuildConfig
from expokit.curation.build.driver import build_dataset
from tests.conftest import shared_path

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_ray_executor_matches_local(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    source = shared_path("exposure", "sice_7ev_sequences")
    folder = tmp_path / "src"
    for name in ("seq_0057", "seq_0207", "seq_0501"):
        shutil.copytree(source / name, folder / name)
    config = BuildConfig(max_side=128)
    local = build_dataset([folder], tmp_path / "local", config, progress=False, durable=False)
    remote = build_dataset(
        [folder], tmp_path / "ray", config, workers=2, executor="ray", progress=False, durable=False
    )
    assert local.ok and remote.ok and remote.built == 3
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "ray" / "manifest.parquet"),
        pd.read_parquet(tmp_path / "local" / "manifest.parquet"),
    )
