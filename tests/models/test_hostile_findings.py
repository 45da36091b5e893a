"""Reproduced hostile findings in train / eval / infer, each pinned: clean result folders
under a lock, named one-line errors instead of tracebacks, leftovers of killed runs."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from expokit.cli import cli
from expokit.core.atomic import TEMP_PREFIX
from expokit.core.errors import OutputError
from expokit.core.lock import RootInUseError, RootLock
from expokit.models.base import ModelError
from expokit.models.checkpoint import (
    META_FILE,
    STATE_FILE,
    CheckpointError,
    CheckpointMeta,
    load_model,
    read_meta,
    save_checkpoint,
    step_dir,
)
from expokit.models.data import DataError, open_dataset
from expokit.models.evaluate import EvalConfig, evaluate
from expokit.models.infer import infer_paths
from expokit.models.registry import create_model
from expokit.models.train import (
    TrainConfig,
    TrainError,
    TrainWarning,
    load_config_file,
    train,
)
from tests.curation.conftest_tools import Spec, make_dataset
from tests.models.test_data import build_sequences
from tests.models.test_train import tiny

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def seq(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sequences(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def stills(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Test split: one still scene and one clip (clips.csv); val: one still scene."""
    folder = tmp_path_factory.mktemp("hostile-eval") / "ds"
    spec = Spec(
        stills={"beach_01": "train", "kitchen": "val", "lab.x": "test"},
        clips=(("park", "c01", 3, "test", 1.0),),
    )
    make_dataset(folder, spec)
    return folder


@pytest.fixture(scope="module")
def trained(seq: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-step uec run (checkpoints at steps 1 and 2), copied by the tests."""
    run = tmp_path_factory.mktemp("trained") / "run"
    train(tiny(seq, run, steps=2, ckpt_every=1), progress=False, echo=lambda _: None)
    return run


def _copy_run(trained: Path, tmp_path: Path, drop_last: bool = True) -> Path:
    """A copy of the trained run; without its step 2 (resume starts at step 1)."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    if drop_last:
        shutil.rmtree(step_dir(run, 2))
    return run


def _resume(seq: Path, run: Path, **values: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainWarning)  # the copy's out differs: expected
        return train(
            tiny(seq, run, steps=2, ckpt_every=1, **values),
            resume=True,
            progress=False,
            echo=lambda _: None,
        )


def _one_line_error(result: Any) -> str:
    """The single ``error: ...`` line of a failed command (no traceback)."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


# ----------------------------------------------------------------- 1. clean result, locks


def test_eval_into_an_earlier_eval_folder_leaves_no_old_clips_csv(
    stills: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    evaluate(stills, config=EvalConfig(splits=("test",)), out=out)
    assert (out / "clips.csv").is_file()
    evaluate(stills, config=EvalConfig(splits=("val",)), out=out)  # val has no clips
    assert (out / "summary.json").is_file() and not (out / "clips.csv").exists()


def test_eval_save_images_starts_from_an_empty_images_folder(stills: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    evaluate(stills, config=EvalConfig(splits=("test",)), images=images)
    assert list((images / "test").glob("*.png"))
    evaluate(stills, config=EvalConfig(splits=("val",)), images=images)
    assert not (images / "test").exists() and list((images / "val").glob("*.png"))


def test_eval_holds_the_output_folder_lock(stills: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    evaluate(stills, config=EvalConfig(splits=("val",)), out=out)
    with (
        RootLock(out, "another eval"),
        pytest.raises(RootInUseError, match="another eval"),
    ):
        evaluate(stills, config=EvalConfig(splits=("val",)), out=out)


def test_infer_holds_the_output_folder_lock(tmp_path: Path) -> None:
    image = tmp_path / "in" / "a.png"
    image.parent.mkdir()
    cv2.imwrite(str(image), np.full((8, 8, 3), 90, np.uint8))
    out = tmp_path / "out"
    model = create_model("recnet").eval()
    infer_paths(model, [image], out, progress=False)
    with RootLock(out, "another infer"), pytest.raises(RootInUseError, match="another infer"):
        infer_paths(model, [image], out, progress=False)


# ----------------------------------------------------------------- 2. named errors


@pytest.mark.parametrize("content", ["[1, 2]", '"a string"'], ids=["array", "string"])
def test_meta_json_that_is_not_an_object_is_named(
    trained: Path, tmp_path: Path, seq: Path, content: str
) -> None:
    run = _copy_run(trained, tmp_path)
    meta = step_dir(run, 1) / META_FILE
    meta.write_text(content)
    with pytest.raises(CheckpointError, match=r"meta\.json: not an expokit checkpoint descr"):
        load_model(step_dir(run, 1))
    with pytest.raises(CheckpointError, match=r"meta\.json: not an expokit checkpoint descr"):
        _resume(seq, run)
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.full((8, 8, 3), 90, np.uint8))
    infer = CliRunner().invoke(
        cli, ["infer", "--ckpt", str(step_dir(run, 1)), str(image), "-o", str(tmp_path / "o")]
    )
    assert "meta.json" in _one_line_error(infer)
    evaluation = CliRunner().invoke(
        cli, ["eval", "--ckpt", str(step_dir(run, 1)), str(seq), "--split", "train"]
    )
    assert "meta.json" in _one_line_error(evaluation)


@pytest.mark.parametrize("step", ["3", -1, 1.5, None, True])
def test_a_bad_meta_step_is_named(trained: Path, tmp_path: Path, step: object) -> None:
    folder = _copy_run(trained, tmp_path) / "checkpoints" / "step_00000001"
    data = json.loads((folder / META_FILE).read_text())
    (folder / META_FILE).write_text(json.dumps({**data, "step": step}))
    with pytest.raises(CheckpointError, match=r"meta\.json: step must be a whole number"):
        read_meta(folder)


def test_a_meta_step_that_does_not_match_its_folder_is_not_resumed(
    trained: Path, tmp_path: Path, seq: Path
) -> None:
    folder = step_dir(_copy_run(trained, tmp_path), 1)
    data = json.loads((folder / META_FILE).read_text())
    (folder / META_FILE).write_text(json.dumps({**data, "step": 7}))
    with pytest.raises(CheckpointError, match="step 7 does not match its folder step_00000001"):
        _resume(seq, tmp_path / "run")


def test_checkpoint_meta_is_the_one_record_of_meta_json(trained: Path) -> None:
    meta = read_meta(step_dir(trained, 2))
    assert isinstance(meta, CheckpointMeta) and (meta.model, meta.step) == ("uec", 2)
    assert meta.extra["world_size"] == 1 and "train_config" in meta.extra
    again = CheckpointMeta.from_dict(meta.to_dict(), "x")
    assert again == meta
    with pytest.raises(CheckpointError, match="model_config must be an object"):
        CheckpointMeta.from_dict({**meta.to_dict(), "model_config": [1]}, "x/meta.json")


def test_a_damaged_config_json_is_named_on_resume(trained: Path, tmp_path: Path, seq: Path) -> None:
    run = _copy_run(trained, tmp_path)
    for damaged in ("[]", "{not json", '{"config": 5}'):
        (run / "config.json").write_text(damaged)
        with pytest.raises(TrainError, match=r"config\.json: damaged"):
            _resume(seq, run)
    (run / "config.json").unlink()  # missing: checked against the checkpoint's own config
    assert _resume(seq, run).step == 2


def _rng_bad(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "rng": [{"python": "nonsense", "numpy": {}, "torch": torch.zeros(3)}]}


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: torch.save([1, 2, 3], path),
        lambda path: torch.save(_rng_bad(torch.load(path, weights_only=True)), path),
        lambda path: path.write_bytes(pickle.dumps(os.getcwd)),
        lambda path: path.write_bytes(b""),
    ],
    ids=["list", "bad-rng", "foreign-pickle", "empty"],
)
def test_a_damaged_training_state_is_named(
    trained: Path, tmp_path: Path, seq: Path, damage: Any
) -> None:
    run = _copy_run(trained, tmp_path)
    damage(step_dir(run, 1) / STATE_FILE)
    with pytest.raises(CheckpointError, match=r"training_state\.pt"):
        _resume(seq, run)


def test_an_empty_training_state_is_one_line_not_aborted(
    trained: Path, tmp_path: Path, seq: Path
) -> None:
    run = _copy_run(trained, tmp_path)
    (step_dir(run, 1) / STATE_FILE).write_bytes(b"")
    config = tmp_path / "tiny.toml"
    config.write_text(
        "resize = 32\nbatch_size = 2\ntensorboard = false\nthreads = 1\n"
        "[model_config]\nfeature_size = 32\npixel_samples = 256\n"
    )
    result = CliRunner().invoke(
        cli,
        ["train", "--model", "uec", str(seq), "--out", str(run), "--config",
         str(config), "--steps", "2", "--resume", "--no-progress"],
    )  # fmt: skip
    line = _one_line_error(result)
    assert "training_state.pt" in line and "Aborted" not in result.output


@pytest.mark.parametrize(
    ("model", "key", "value"),
    [
        ("uec", "feature_size", -1),
        ("uec", "feature_size", 0),
        ("uec", "feature_size", "32"),
        ("uec", "iterations", -3),
        ("recnet", "channels", "32"),
        ("recnet", "blocks", 0),
        ("zerodce", "channels", "32"),
        ("zerodce", "iterations", -3),
        ("video", "width", "24"),
    ],
)
def test_bad_model_config_values_are_refused_naming_the_key(
    model: str, key: str, value: object
) -> None:
    with pytest.raises(ModelError, match=rf"{model}: {key} must be an integer >= \d"):
        create_model(model, **{key: value})


def test_uec_iterations_below_zero_does_not_train(seq: Path, tmp_path: Path) -> None:
    # 0 is the start curve alone (its learnt scalars); below that is refused by name
    config = tiny(seq, tmp_path / "run")
    config = config.replace(model_config={**config.model_config, "iterations": -3})
    with pytest.raises(ModelError, match="uec: iterations must be an integer >= 0, got -3"):
        train(config, progress=False, echo=lambda _: None)


def test_bad_model_config_in_a_checkpoint_names_the_file_and_key(
    trained: Path, tmp_path: Path
) -> None:
    folder = step_dir(_copy_run(trained, tmp_path, drop_last=False), 2)
    data = json.loads((folder / META_FILE).read_text())
    data["model_config"]["feature_size"] = "32"
    (folder / META_FILE).write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"meta\.json: model_config: uec: feature_size"):
        load_model(folder)


def test_a_json_train_config_that_is_an_array_is_named(tmp_path: Path) -> None:
    file = tmp_path / "train.json"
    file.write_text("[1, 2]")
    with pytest.raises(TrainError, match=r"train\.json: a training config must be an object"):
        load_config_file(file)


@pytest.mark.parametrize("scenes", [5, "scene0", ["scene0", 3]])
def test_scenes_must_be_a_list_of_names(seq: Path, scenes: object) -> None:
    with pytest.raises(DataError, match=r"scenes \(data_options\.scenes\): expected a list"):
        open_dataset("uec", seq, "train", scenes=scenes)


def test_a_list_of_scenes_still_works(seq: Path) -> None:
    dataset = open_dataset("uec", seq, "train", scenes=["scene0", "scene1"], resize=32)
    assert set(dataset.rows["scene_id"].astype(str)) == {"scene0", "scene1"}


@pytest.mark.parametrize("seed", [2**63, 2**64, -1])
def test_seeds_outside_32_bits_are_refused_cleanly(seq: Path, tmp_path: Path, seed: int) -> None:
    with pytest.raises(TrainError, match=r"seed must be in 0\.\.4294967295"):
        TrainConfig(seed=seed)
    result = CliRunner().invoke(
        cli,
        ["train", "--model", "uec", str(seq), "--out", str(tmp_path / "r"),
         "--seed", str(seed)],
    )  # fmt: skip
    assert "seed must be in" in _one_line_error(result)


def test_recnet_too_small_image_fails_alone_and_the_others_go_on(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    cv2.imwrite(str(inputs / "a_tiny.png"), np.full((2, 2, 3), 90, np.uint8))
    cv2.imwrite(str(inputs / "b_good.png"), np.full((12, 10, 3), 90, np.uint8))
    results = infer_paths(create_model("recnet").eval(), [inputs], tmp_path / "out", progress=False)
    by_name = {r.path.name: r for r in results}
    assert by_name["b_good.png"].ok and (tmp_path / "out" / "b_good.png").is_file()
    error = by_name["a_tiny.png"].error
    assert error is not None and "a_tiny.png" in error and "too small" in error


def test_a_full_disk_while_writing_a_checkpoint_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Path.write_bytes

    def full(self: Path, data: Any) -> int:
        if self.name.endswith(STATE_FILE):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return original(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    model = create_model("uec", feature_size=16)
    with pytest.raises(OutputError, match=r"disk full while writing .*training_state\.pt"):
        save_checkpoint(model, tmp_path / "run", 1, training_state={"step": 1})
    leftovers = list((tmp_path / "run").rglob(f"{TEMP_PREFIX}*"))
    assert leftovers == []


def test_torch_save_never_writes_the_state_file_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.save to a path turns ENOSPC into a RuntimeError without errno; expokit writes
    the bytes itself, so a full disk is an OSError it can name."""
    seen: list[object] = []
    original = torch.save

    def spy(obj: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        seen.append(target)
        if isinstance(target, str | os.PathLike):
            raise RuntimeError("PytorchStreamWriter failed writing file data/0")
        original(obj, target, *args, **kwargs)

    monkeypatch.setattr(torch, "save", spy)
    save_checkpoint(create_model("uec", feature_size=16), tmp_path / "run", 1,
                    training_state={"step": 1})  # fmt: skip
    assert seen and (step_dir(tmp_path / "run", 1) / STATE_FILE).is_file()


# ----------------------------------------------------------------- 3. leftovers


def test_resume_removes_temp_files_of_a_killed_checkpoint_write(
    trained: Path, tmp_path: Path, seq: Path
) -> None:
    run = _copy_run(trained, tmp_path)
    dead = 2**31 - 7  # above any pid_max: no such process
    folder = run / "checkpoints" / "step_00000002"
    folder.mkdir()
    stale = folder / f"{TEMP_PREFIX}{dead}-0123456789ab-{STATE_FILE}"
    stale.write_bytes(b"half a state")
    _resume(seq, run)
    assert not stale.exists()


def test_tensorboard_holds_each_step_once_after_a_resume(seq: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    config = tiny(seq, run, steps=4, log_every=1, ckpt_every=2, tensorboard=True)
    train(config, progress=False, echo=lambda _: None)
    shutil.rmtree(step_dir(run, 4))  # killed after logging steps 3 and 4
    train(config, resume=True, progress=False, echo=lambda _: None)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    steps = [e.step for e in events.Scalars("train/loss")]
    assert sorted(steps) == [1, 2, 3, 4]


_KILLED_TRAINER = """
import sys
from pathlib import Path
from expokit.models.train import train
from tests.models.test_train import tiny
config = tiny(Path(sys.argv[1]), Path(sys.argv[2]), steps=100000, ckpt_every=1, num_workers=1)
train(config, progress=False, echo=lambda _: None)
"""


def test_loader_workers_do_not_keep_the_run_locked_after_kill_9(seq: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_TRAINER, str(seq), str(run)], cwd=REPO, env=env
    )
    try:
        deadline = time.monotonic() + 120
        while not step_dir(run, 2).joinpath(META_FILE).is_file():
            assert proc.poll() is None, "the trainer stopped early"
            assert time.monotonic() < deadline, "the trainer wrote no checkpoint"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The workers outlive their parent for a moment; the lock must be free at once.
    with RootLock(run, "resume right after kill -9"):
        pass


def test_train_and_eval_refuse_an_output_folder_inside_the_dataset(seq: Path, stills: Path) -> None:
    with pytest.raises(OutputError, match=r"run folder .*images.* is inside the dataset"):
        train(tiny(seq, seq / "images" / "run"), progress=False, echo=lambda _: None)
    assert not (seq / "images" / "run").exists()
    with pytest.raises(OutputError, match="is inside the dataset"):
        evaluate(stills, config=EvalConfig(splits=("val",)), out=stills / "images" / "eval")
    with pytest.raises(OutputError, match="is inside the dataset"):
        evaluate(stills, config=EvalConfig(splits=("val",)), images=stills / "report")
    assert not (stills / "images" / "eval").exists() and not (stills / "report").exists()
