"""models/checkpoint.py: round trip, rejected checkpoints, run folder -> newest step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from expokit.models.base import ModelError  # noqa: E402
from expokit.models.checkpoint import (  # noqa: E402
    META_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_model,
    resolve_checkpoint,
    save_checkpoint,
    step_dir,
)
from expokit.models.uec import UEC  # noqa: E402


def small_uec() -> UEC:
    torch.manual_seed(0)
    return UEC(iterations=2, feature_size=32)


def test_round_trip_restores_config_weights_and_output(tmp_path: Path) -> None:
    model = small_uec()
    folder = save_checkpoint(model, tmp_path / "run", 7, extra_meta={"note": "x"})
    loaded, meta = load_model(folder, expect="uec")
    assert meta["step"] == 7 and meta["note"] == "x" and meta["model"] == "uec"
    assert loaded.config == model.config and not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    image, reference = torch.rand(1, 3, 40, 48), torch.rand(1, 3, 40, 48)
    with torch.no_grad():
        assert torch.equal(model.enhance(image, reference), loaded.enhance(image, reference))
    # the weights file itself also names the checkpoint
    assert resolve_checkpoint(folder / WEIGHTS_FILE) == folder


def test_run_folder_means_its_newest_complete_step(tmp_path: Path) -> None:
    run = tmp_path / "run"
    model = small_uec()
    save_checkpoint(model, run, 5)
    newest = save_checkpoint(model, run, 120)
    save_checkpoint(model, run, 30)
    unfinished = step_dir(run, 999)  # no meta.json: an interrupted save
    unfinished.mkdir(parents=True)
    (unfinished / WEIGHTS_FILE).write_bytes(b"partial")
    assert resolve_checkpoint(run) == newest
    _, meta = load_model(run)
    assert meta["step"] == 120


def test_empty_run_and_missing_path_are_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint in it"):
        resolve_checkpoint(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_model(tmp_path / "nowhere")


def _edit_meta(folder: Path, **changes: object) -> None:
    meta = json.loads((folder / META_FILE).read_text())
    meta.update(changes)
    (folder / META_FILE).write_text(json.dumps(meta))


def test_checkpoint_of_another_model_is_rejected(tmp_path: Path) -> None:
    folder = save_checkpoint(small_uec(), tmp_path / "run", 1)
    with pytest.raises(CheckpointError, match="model 'uec', not 'zerodce'"):
        load_model(folder, expect="zerodce")
    _edit_meta(folder, model="no_such_model")
    with pytest.raises(ModelError, match="unknown model 'no_such_model'"):
        load_model(folder)


def test_other_format_or_version_is_rejected(tmp_path: Path) -> None:
    folder = save_checkpoint(small_uec(), tmp_path / "run", 1)
    _edit_meta(folder, format_version=2)
    with pytest.raises(CheckpointError, match="format version 2"):
        load_model(folder)
    _edit_meta(folder, format="something-else", format_version=1)
    with pytest.raises(CheckpointError, match="not an expokit checkpoint"):
        load_model(folder)
    (folder / META_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable checkpoint description"):
        load_model(folder)


def test_truncated_or_missing_weights_are_errors(tmp_path: Path) -> None:
    folder = save_checkpoint(small_uec(), tmp_path / "run", 1)
    weights = folder / WEIGHTS_FILE
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable weights"):
        load_model(folder)
    weights.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="unreadable weights"):
        load_model(folder)
    weights.unlink()
    with pytest.raises(CheckpointError, match="unreadable weights"):
        load_model(folder)


def test_weights_that_do_not_fit_the_config_are_rejected(tmp_path: Path) -> None:
    folder = save_checkpoint(small_uec(), tmp_path / "run", 1)
    _edit_meta(folder, model_config={**small_uec().config, "corrector_width": 16})
    with pytest.raises(CheckpointError, match="do not fit model 'uec'"):
        load_model(folder)
