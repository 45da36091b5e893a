"""`expokit train --exclude-flags/--passed-only`: the run trains on the pairs the selection
keeps, says so, and records it in config.json."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from tests.models.test_data import build_sequences


@pytest.fixture(scope="module")
def flagged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test sequences with every pair of the first training scene flagged misaligned."""
    from expokit.curation.dataset.format import MANIFEST_FILE

    root = build_sequences(tmp_path_factory.mktemp("sel"))
    frame = pd.read_parquet(root / MANIFEST_FILE)
    first = sorted(frame.loc[frame["split"] == "train", "scene_id"].unique())[0]
    frame.loc[frame["scene_id"] == first, "qa_flags"] = "misaligned"
    frame.to_parquet(root / MANIFEST_FILE, index=False)
    return root


def _items(output: str) -> int:
    found = re.search(r"(\d+) training items in split 'train'", output)
    assert found, output
    return int(found.group(1))


def test_train_uses_and_records_the_selection(flagged: Path, tmp_path: Path) -> None:
    from expokit.cli import cli

    base = ["train", str(flagged), "--model", "zerodce", "--steps", "1",
            "--val-every", "0", "--crop", "0", "--loader-workers", "0",
            "--no-progress"]  # fmt: skip
    every = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "a")])
    assert every.exit_code == 0, every.output
    chosen = CliRunner().invoke(
        cli, [*base, "--out", str(tmp_path / "b"), "--exclude-flags", "misaligned"]
    )
    assert chosen.exit_code == 0, chosen.output
    assert "(without flags misaligned)" in chosen.output
    assert _items(chosen.output) < _items(every.output)
    options = json.loads((tmp_path / "b" / "config.json").read_text())["config"]["data_options"]
    assert options["exclude_flags"] == "misaligned" and options["passed_only"] is False
    bad = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "c"), "--exclude-flags", "x"])
    assert bad.exit_code == 1 and "unknown QA flag(s) x" in bad.output
    shutil.rmtree(tmp_path / "a")
