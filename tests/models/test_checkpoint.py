"""models/checkpoint.py: round trip, rejected checkpoints, run folder -> best checkpoint or
newest step, the best folder's swap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from expokit.models.base import ModelError  # noqa: E402
from expokit.models.checkpoint import (  # noqa: E402
    BEST_OLD_DIR,
    META_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    best_dir,
    find_best,
    load_model,
    remove_best,
    resolve_checkpoint,
    save_best,
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
    loaded, checkpoint = load_model(folder, expect="uec")
    assert checkpoint.step == 7 and checkpoint.meta.extra["note"] == "x"
    assert checkpoint.model == "uec" and checkpoint.folder == folder and not checkpoint.is_best
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
    _, checkpoint = load_model(run)
    assert checkpoint.step == 120


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


def _first_weight(folder: Path) -> Any:
    from safetensors.torch import load_file

    weights = load_file(str(folder / WEIGHTS_FILE))
    return weights[sorted(weights)[0]]


def test_run_folder_means_its_best_and_the_checkpoints_folder_its_newest_step(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    early, late = small_uec(), small_uec()
    with torch.no_grad():
        for p in late.parameters():
            p.add_(1.0)
    save_checkpoint(early, run, 1)
    save_checkpoint(late, run, 2)
    assert find_best(run) is None and resolve_checkpoint(run) == step_dir(run, 2)
    best = save_best(early, run, 1, extra_meta={"val_psnr": 21.5})
    assert best == best_dir(run) == resolve_checkpoint(run) == find_best(run)
    model, checkpoint = load_model(run)
    assert (checkpoint.step, checkpoint.is_best, checkpoint.val_psnr) == (1, True, 21.5)
    assert checkpoint.folder == best and checkpoint.summary()["path"] == str(best)
    assert torch.equal(_first_weight_of(model), _first_weight_of(early))
    # The explicit ways to the last step: prefer="last", or the checkpoints folder itself.
    assert resolve_checkpoint(run, prefer="last") == step_dir(run, 2)
    assert resolve_checkpoint(run / "checkpoints") == step_dir(run, 2)
    assert load_model(run / "checkpoints")[1].step == 2
    assert resolve_checkpoint(best) == best  # the best folder as a checkpoint folder
    remove_best(run)
    assert find_best(run) is None and resolve_checkpoint(run) == step_dir(run, 2)


def test_best_is_replaced_whole_and_a_killed_swap_leaves_the_old_one(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first, second = small_uec(), small_uec()
    with torch.no_grad():
        for p in second.parameters():
            p.add_(0.5)
    save_best(first, run, 3)
    save_best(second, run, 7)
    assert load_model(run)[1].step == 7
    assert torch.equal(_first_weight(best_dir(run)), _first_weight_of(second))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best"]
    # Killed between the two renames: only the previous best, under its swap name.
    old = run / "checkpoints" / BEST_OLD_DIR
    best_dir(run).rename(old)
    (run / "checkpoints" / ".~expokit-1-abc-best").mkdir()  # a half-written new one
    assert find_best(run) == old and load_model(run)[1].step == 7
    save_best(first, run, 9)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best"]
    assert load_model(run)[1].step == 9


def _first_weight_of(model: Any) -> Any:
    state = model.state_dict()
    return state[sorted(state)[0]]
