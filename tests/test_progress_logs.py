"""Long commands write plain progress lines, not bar frames, when stderr is not a terminal
(click's runner stands in for a log file or CI)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from expokit.cli import cli
from expokit.core.progress import ENV_VAR
from tests.models.test_data import build_sequences


@pytest.fixture(scope="module")
def seq(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sequences(tmp_path_factory.mktemp("progress"))


@pytest.fixture(autouse=True)
def _no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_curate_validate_logs_plain_progress_lines(seq: Path) -> None:
    result = CliRunner().invoke(cli, ["curate", "validate", str(seq)])
    assert result.exit_code == 0, result.output
    assert "\r" not in result.stderr
    assert re.search(r"^validate: \d+/\d+ file \([\d.]+ file/s, ETA \d+:\d\d\)$",
                     result.stderr, re.M), result.stderr  # fmt: skip
    assert re.search(r"^validate: done, \d+ file in \d+:\d\d \([\d.?]+ file/s\)$",
                     result.stderr, re.M), result.stderr  # fmt: skip


def test_train_logs_step_loss_and_eta_lines(seq: Path, tmp_path: Path) -> None:
    config = tmp_path / "t.toml"
    config.write_text(
        "resize = 32\nbatch_size = 2\nlog_every = 1\ntensorboard = false\nthreads = 1\n"
        "val_every = 0\n[model_config]\nfeature_size = 32\npixel_samples = 128\n"
    )
    args = ["train", str(seq), "--model", "uec", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(cli, [*args, "--config", str(config), "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert "\r" not in result.stderr
    assert re.search(
        r"^train uec: 1/2 step \([\d.]+ step/s, ETA \d+:\d\d\) loss=[\d.e+-]+$",
        result.stderr,
        re.M,
    ), result.stderr
    assert re.search(r"^train uec: done, 2 step in \d+:\d\d", result.stderr, re.M)
    assert "train uec" not in result.stdout  # the command's own report stays clean
