"""Every models setting and record is type/range-checked where it is read: a bad value is
one line naming the file (or option) and the field."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from expokit.cli import cli
from expokit.models.checkpoint import CheckpointError
from expokit.models.evaluate import EvalConfig, EvalError
from expokit.models.infer import InferConfig, InferenceError
from expokit.models.train import TrainConfig, TrainError, TrainingState, resolve_config
from tests.curation.conftest_tools import make_dataset

_STATE: dict[str, Any] = {"step": 3, "optimizer": {}, "scheduler": {}, "scaler": {}}


def test_training_state_record_round_trips_and_names_a_bad_field(tmp_path: Path) -> None:
    path = tmp_path / "training_state.pt"
    state = TrainingState.from_dict({**_STATE, "elapsed_s": 12, "world_size": 1}, path)
    assert (state.step, state.elapsed_s, state.world_size, state.rng) == (3, 12.0, 1, [])
    assert TrainingState.from_dict(state.to_dict(), path) == state
    bad: list[tuple[dict[str, Any], str]] = [
        ({"elapsed_s": -1.0}, "elapsed_s must be a finite number >= 0, got -1.0"),
        ({"elapsed_s": math.inf}, "elapsed_s must be a finite number >= 0, got inf"),
        ({"elapsed_s": "1"}, "elapsed_s must be a finite number >= 0, got '1'"),
        ({"world_size": 0}, "world_size must be a whole number >= 1, got 0"),
        ({"step": True}, "step must be a whole number >= 0, got True"),
        ({"rng": "x"}, "rng must be a list of RNG states, got a str"),
        ({"scaler": None}, "training state has no scaler state"),
    ]
    for change, message in bad:
        with pytest.raises(CheckpointError) as caught:
            TrainingState.from_dict({**_STATE, **change}, path)
        assert str(caught.value) == f"{path}: {message}"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"weight_decay": math.inf}, "weight_decay must be a finite number >= 0, got inf"),
        ({"grad_clip": math.nan}, "grad_clip must be a finite number >= 0 (0: off), got nan"),
        ({"max_minutes": math.inf}, "max_minutes must be a finite number > 0 or 0 (off)"),
        ({"split": ""}, "split must name a split"),
    ],
)
def test_train_config_refuses_non_finite_and_empty_values(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(TrainError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(model="uec", **values)


def test_a_config_file_value_out_of_range_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "train.toml"
    file.write_text('model = "uec"\nsteps = 0\n')
    with pytest.raises(TrainError) as caught:
        resolve_config(None, config_file=file)
    assert str(caught.value) == f"{file}: invalid training config: steps must be >= 1, got 0"


def test_a_bad_model_config_value_names_the_file_and_the_field(tmp_path: Path) -> None:
    file = tmp_path / "train.toml"
    file.write_text('model = "uec"\n[model_config]\nfeature_size = 0\n')
    with pytest.raises(TrainError) as caught:
        resolve_config(None, config_file=file)
    assert str(caught.value) == (
        f"{file}: model_config: uec: feature_size must be an integer >= 1, got 0"
    )
    file.write_text('model = "recnet"\n[model_config]\nwidth = 3\n')
    with pytest.raises(TrainError, match=r"train\.toml: model_config: model 'recnet'"):
        resolve_config(None, config_file=file)
    # through the command: one line, exit 1, no traceback
    file.write_text('model = "zerodce"\n[model_config]\nexposure_level = "high"\n')
    result = CliRunner().invoke(cli, ["train", "--config", str(file)])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "model_config: zerodce: exposure_level" in lines[0]
    assert str(file) in lines[0] and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"min_ev_error": math.inf}, "min_ev_error must be a finite number (EV), got inf"),
        ({"min_ev_error": -1.0}, "min_ev_error must be in [0, inf) (EV), got -1.0"),
        ({"resize": 16.5}, "resize (px) must be a whole number, got 16.5"),
        ({"resize": 8}, "resize (px) must be in 16..16384, got 8"),
    ],
)
def test_eval_config_checks_types_and_ranges(values: dict[str, Any], message: str) -> None:
    with pytest.raises(EvalError) as caught:
        EvalConfig(**values)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lut_size": True}, "lut_size must be a whole number, got True"),
        ({"lut_size": 200}, "lut_size must be in 2..127, got 200"),
        ({"crf": 18.0}, "crf must be a whole number, got 18.0"),
        ({"tile": 16, "tile_overlap": 8}, "tile_overlap must be in 0..7 for tile 16"),
        ({"preset": "quick"}, "preset must be one of ultrafast, superfast, veryfast"),
        ({"fast_uec": 1}, "fast_uec must be true or false, got 1"),
    ],
)
def test_infer_config_checks_types_and_ranges(values: dict[str, Any], message: str) -> None:
    with pytest.raises(InferenceError) as caught:
        InferConfig(**values)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"passed_only": "yes"}, r"passed_only: expected true or false, got 'yes'"),
        ({"exclude_flags": 5}, r"exclude_flags: expected a list of flag names, got 5"),
        ({"seed": True}, r"seed: expected an integer, got True"),
        ({"cache": 1}, r"cache: expected true or false, got 1"),
    ],
)
def test_bad_data_options_name_the_option(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    from expokit.models.data import DataError, PairedDataset

    root = tmp_path / "ds"
    make_dataset(root)
    with pytest.raises(DataError, match=message):
        PairedDataset(root, "train", **options)  # type: ignore[arg-type]


def test_a_bool_is_not_a_frame_count(tmp_path: Path) -> None:
    from expokit.models.data import ClipDataset, DataError

    root = tmp_path / "ds"
    make_dataset(root)
    with pytest.raises(DataError, match=r"num_frames: expected an odd number >= 1 .*got True"):
        ClipDataset(root, "train", num_frames=True)
