"""The training loop: a few `uec` steps on a tiny sequences dataset, checkpoints, logs, exact
resume, stops (time, NaN), the config file, the command and two processes under torchrun."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from expokit.core.lock import RootInUseError, RootLock, lock_holder
from expokit.core.roots import root_kind
from expokit.models.checkpoint import CheckpointError, load_model, step_dir
from expokit.models.data import DataError, SequenceDataset
from expokit.models.train import (
    RECIPES,
    TrainConfig,
    TrainError,
    TrainWarning,
    recipe,
    resolve_config,
    train,
    weights_checksum,
)
from tests.models.test_data import build_sequences

TINY_MODEL = {"feature_size": 32, "pixel_samples": 256}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def seq(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sequences(tmp_path_factory.mktemp("train"))


def tiny(data: Path, out: Path, **values: Any) -> TrainConfig:
    """The uec recipe shrunk to seconds: 32 px images, small thumbnails, 4 steps."""
    config = recipe("uec").replace(
        data=str(data), out=str(out), steps=4, batch_size=2, resize=32, log_every=2,
        ckpt_every=2, tensorboard=False, threads=1, model_config=TINY_MODEL,
    )  # fmt: skip
    return config.replace(**values)


def _log(run: Path) -> list[dict[str, str]]:
    with (run / "log.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_tensorboard_events_hold_the_logged_loss_and_val_scores(seq: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    said: list[str] = []
    # seq has no val split: validate on its three train scenes (the events are the point)
    config = tiny(seq, run, tensorboard=True, val_every=3, val_split="train", val_size=32)
    train(config, progress=False, echo=said.append)
    assert any("TensorBoard events in" in line for line in said)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    rows = _log(run)
    logged = {int(row["step"]): float(row["loss"]) for row in rows}
    assert sorted(logged) == [2, 3, 4]  # log_every 2, val_every 3, the end
    scalars = {e.step: e.value for e in events.Scalars("train/loss")}
    assert set(scalars) == set(logged)
    for step, loss in logged.items():
        assert scalars[step] == pytest.approx(loss, rel=1e-4)
    for tag, column in (("val/psnr", "val_psnr"), ("val/baseline_psnr", "val_baseline_psnr")):
        values = {int(r["step"]): float(r[column]) for r in rows if r[column]}
        assert sorted(values) == [3, 4] and all(math.isfinite(v) for v in values.values())
        board = {e.step: e.value for e in events.Scalars(tag)}
        assert board == pytest.approx(values, rel=1e-6)


def test_uec_trains_logs_and_writes_loadable_checkpoints(seq: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = tiny(seq, run)
    said: list[str] = []
    summary = train(config, progress=False, echo=said.append)
    # the recipe has no corrector iterations: the "camera" start's response curve (64) and
    # the level's weight are what trains (the released networks' 19,388 stay frozen); its
    # pairs all target the middle exposure (12 items; 60 with every exposure as a target)
    assert "model uec (sequence data): 65 trainable parameters" in said[0]
    assert "12 training items" in said[0]
    assert (summary.start_step, summary.step, summary.stopped) == (0, 4, "done")
    assert summary.last_loss is not None and math.isfinite(summary.last_loss)
    assert summary.checkpoint == step_dir(run, 4)
    model, meta = load_model(run)
    assert meta.step == 4 and meta.model == "uec" and model.config["feature_size"] == 32
    assert weights_checksum(model) == summary.checksum
    assert meta.meta.extra["train_config"] == config.to_dict()
    for step in (2, 4):
        assert (step_dir(run, step) / "training_state.pt").is_file()
    state = torch.load(step_dir(run, 4) / "training_state.pt", weights_only=True)
    assert state["step"] == 4 and len(state["rng"]) == 1 and "optimizer" in state
    rows = _log(run)
    assert [int(r["step"]) for r in rows] == [2, 4]
    assert {"loss", "mse", "monotonic", "lr", "seconds"} <= set(rows[0])
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert float(rows[1]["lr"]) < float(rows[0]["lr"])  # cosine decay
    saved = json.loads((run / "config.json").read_text())
    assert saved["config"] == config.to_dict() and saved["parameters"] == 65
    assert root_kind(run) == "run"
    with RootLock(run, "test"):  # released at the end
        pass


def test_resume_is_exact_warns_on_change_and_refuses_a_used_folder(
    seq: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    config = tiny(seq, run)
    train(config, progress=False, echo=lambda _: None)
    straight = _weights(step_dir(run, 4))
    # Lose the last checkpoint (as if killed after step 2) and resume: the same weights.
    shutil.rmtree(step_dir(run, 4))
    summary = train(config, resume=True, progress=False, echo=lambda _: None)
    assert (summary.start_step, summary.step) == (2, 4)
    resumed = _weights(step_dir(run, 4))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert [int(r["step"]) for r in _log(run)] == [2, 4]
    # Further, with a changed learning rate: a warning naming it, and the new rate used.
    longer = config.replace(steps=6, lr=0.003)
    with pytest.warns(
        TrainWarning, match=r"resuming step 4 with a changed config: lr: 0.01 -> 0.003"
    ):
        summary = train(longer, resume=True, progress=False, echo=lambda _: None)
    assert (summary.start_step, summary.step) == (4, 6)
    assert [int(r["step"]) for r in _log(run)] == [2, 4, 6]
    factor = float(_log(run)[2]["lr"]) / 0.003
    assert 0.05 <= factor < 0.5  # near the end of the cosine over 6 steps, from the new lr
    with pytest.raises(TrainError, match=r"already holds checkpoints .*pass --resume"):
        train(longer, progress=False, echo=lambda _: None)
    with pytest.raises(TrainError, match=r"newest checkpoint is step 6.*raise --steps"):
        train(longer, resume=True, progress=False, echo=lambda _: None)
    with RootLock(run, "another trainer"), pytest.raises(RootInUseError, match="another trainer"):
        train(longer.replace(steps=8), resume=True, progress=False, echo=lambda _: None)


def test_ema_saves_the_average_and_resumes_exactly(seq: Path, tmp_path: Path) -> None:
    # The average does not change what is trained: the trained weights of an ema run are
    # a plain run's, and its checkpoint after 2 steps holds their average, w1 + d (w2 - w1)
    # from w1 (the first update copies), by hand.
    plain, averaged = tmp_path / "plain", tmp_path / "ema"
    decay = 0.25
    train(tiny(seq, plain, ckpt_every=1), progress=False, echo=lambda _: None)
    config = tiny(seq, averaged, ckpt_every=1, ema_decay=decay)
    train(config, progress=False, echo=lambda _: None)
    w1, w2 = _weights(step_dir(plain, 1)), _weights(step_dir(plain, 2))
    saved = _weights(step_dir(averaged, 2))
    state = torch.load(step_dir(averaged, 2) / "training_state.pt", weights_only=True)
    assert state["ema_updates"] == 2
    trained = state["trained_weights"]
    parameters = {name for name, _ in load_model(step_dir(plain, 1))[0].named_parameters()}
    moved = [k for k in parameters if not torch.equal(w1[k], w2[k])]
    assert moved  # the test means something only if a step changed weights
    for key in w1:
        assert torch.equal(trained[key], w2[key]), key
        if key in parameters:
            expected = w1[key] + (1 - decay) * (w2[key] - w1[key])
            assert torch.allclose(saved[key], expected, atol=1e-7), key
        else:  # buffers (the running level, its batch count) are the model's, not averaged
            assert torch.equal(saved[key], w2[key]), key
    assert any(not torch.equal(saved[k], w2[k]) for k in moved)
    # Resume from step 2 (as if killed after it): the straight run's average and weights.
    straight = step_dir(averaged, 4)
    kept = tmp_path / "straight"
    shutil.copytree(straight, kept)
    for step in (3, 4):
        shutil.rmtree(step_dir(averaged, step))
    train(config, resume=True, progress=False, echo=lambda _: None)
    assert all(torch.equal(_weights(kept)[k], _weights(straight)[k]) for k in w1)
    before = torch.load(kept / "training_state.pt", weights_only=True)
    after = torch.load(straight / "training_state.pt", weights_only=True)
    assert after["ema_updates"] == before["ema_updates"] == 4
    assert all(torch.equal(before["trained_weights"][k], after["trained_weights"][k]) for k in w1)
    # What eval and infer load is the average.
    model, _ = load_model(straight, expect="uec")
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], _weights(straight)[k]) for k in w1)
    with pytest.raises(TrainError, match=r"ema_decay must be in \[0, 1\)"):
        tiny(seq, tmp_path / "bad", ema_decay=1.0)


def test_damaged_trained_weights_stop_a_resume_naming_the_file(seq: Path, tmp_path: Path) -> None:
    run = tmp_path / "ema"
    config = tiny(seq, run, ckpt_every=2, ema_decay=0.5)
    train(config, progress=False, echo=lambda _: None)
    state_file = step_dir(run, 4) / "training_state.pt"
    state = torch.load(state_file, weights_only=True)
    damaged = {
        "not a state dict": ([1, 2], r"trained_weights must be a state dict, got a list"),
        "a missing tensor": (
            dict(list(state["trained_weights"].items())[1:]),
            r"trained_weights do not fit the model",
        ),
    }
    for trained, message in damaged.values():
        torch.save({**state, "trained_weights": trained}, state_file)
        with pytest.raises(CheckpointError, match=message) as caught:
            train(config.replace(steps=6), resume=True, progress=False, echo=lambda _: None)
        assert str(state_file) in str(caught.value)
    assert not step_dir(run, 6).exists()  # nothing was trained on from a damaged state


def test_parameter_groups_keep_their_lr_scale_when_resumed(seq: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    model_config = {"feature_size": 32, "pixel_samples": 128, "iterations": 1}
    config = tiny(seq, run, model_config={**model_config, "network_lr_scale": 0.25})

    def group_lrs(step: int) -> list[float]:
        state = torch.load(step_dir(run, step) / "training_state.pt", weights_only=True)
        return [group["lr"] for group in state["optimizer"]["param_groups"]]

    train(config, progress=False, echo=lambda _: None)
    scalars, networks = group_lrs(4)
    assert networks == pytest.approx(0.25 * scalars)
    # resumed with another lr: both groups follow it, the ratio kept
    with pytest.warns(TrainWarning, match="lr: 0.01 -> 0.002"):
        train(config.replace(steps=6, lr=0.002), resume=True, progress=False, echo=lambda _: None)
    scalars, networks = group_lrs(6)
    assert networks == pytest.approx(0.25 * scalars) and scalars < 0.002


def test_time_limit_stops_cleanly_with_a_checkpoint(seq: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    summary = train(
        tiny(seq, run, max_minutes=1e-9, amp="bf16"), progress=False, echo=lambda _: None
    )
    assert (summary.step, summary.stopped) == (1, "time")
    assert summary.last_loss is not None and math.isfinite(summary.last_loss)
    assert summary.checkpoint == step_dir(run, 1) and load_model(run)[1].step == 1
    assert [int(r["step"]) for r in _log(run)] == [1]


def test_nan_loss_stops_and_names_the_step(
    seq: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from expokit.models.uec import UEC

    original = UEC.training_loss
    calls = {"n": 0}

    def poisoned(self: UEC, batch: dict[str, torch.Tensor]) -> Any:
        loss, parts = original(self, batch)
        calls["n"] += 1
        return (loss * float("nan"), parts) if calls["n"] == 3 else (loss, parts)

    monkeypatch.setattr(UEC, "training_loss", poisoned)
    run = tmp_path / "run"
    with pytest.raises(TrainError, match=r"loss is not finite at step 3 of uec.*step_00000002"):
        train(tiny(seq, run), progress=False, echo=lambda _: None)
    assert step_dir(run, 2).is_dir() and not step_dir(run, 3).exists()


def test_nan_in_a_batch_names_the_file(seq: Path, tmp_path: Path) -> None:
    data = tmp_path / "seq"
    shutil.copytree(seq, data)
    from expokit.curation.dataset.format import load_dataset

    rel = str(load_dataset(data).manifest["input_path"].iloc[0])
    image = np.full((40, 56, 3), 0.5, np.float32)
    image[3, 4] = np.nan
    ok, encoded = cv2.imencode(".tiff", image)
    assert ok
    (data / rel).write_bytes(encoded.tobytes())  # float TIFF bytes under the .png name
    config = tiny(data, tmp_path / "run", steps=40, batch_size=4, ckpt_every=100)
    with pytest.raises(DataError, match=rf"{re.escape(rel)}: holds NaN or infinite values"):
        train(config, progress=False, echo=lambda _: None)
    # The loop's own check (a backstop for NaN made after loading) names key, step and item.
    from expokit.models.train import _check_batch

    batch = {"input": torch.zeros(2, 3, 4, 4), "index": torch.tensor([0, 1])}
    batch["input"][1, 0, 0, 0] = float("inf")
    dataset = SequenceDataset(seq, "train")
    with pytest.raises(TrainError, match=r"step 7: batch key 'input' holds NaN.*\(item scene0/"):
        _check_batch(batch, 7, dataset)


def test_config_file_types_recipes_and_precedence(tmp_path: Path) -> None:
    assert set(RECIPES) == {"uec", "recnet", "zerodce", "video"}
    assert all(name == config.model for name, config in RECIPES.items())
    file = tmp_path / "train.toml"
    file.write_text(
        'model = "uec"\nsteps = 50\nlr = 1\ncrop = 0\n[model_config]\nfeature_size = 64\n'
        "[data_options]\ncache = false\n"
    )
    config = resolve_config(None, config_file=file, overrides={"steps": 7, "seed": None})
    assert config.steps == 7 and config.lr == 1.0 and isinstance(config.lr, float)
    assert config.crop is None and config.resize == RECIPES["uec"].resize
    assert config.model_config == {
        "feature_size": 64, "pixel_samples": 1024, "start": "camera", "response_knots": 64,
        "iterations": 0,
    }  # fmt: skip
    # Tables merge into the recipe's: the pair weights stay, cache is overridden.
    assert config.data_options["cache"] is False and "pair_weights" in config.data_options
    file.write_text('[train]\nmodel = "uec"\nsteps = "many"\n')
    with pytest.raises(TrainError, match=r"train\.toml: steps must be an integer, got 'many'"):
        resolve_config(None, config_file=file)
    file.write_text("flip = 1\n")
    with pytest.raises(TrainError, match="flip must be true or false"):
        resolve_config("uec", config_file=file)
    file.write_text("stepz = 1\n")
    with pytest.raises(TrainError, match=r"unknown training key.*stepz"):
        resolve_config("uec", config_file=file)
    with pytest.raises(TrainError, match="no model given"):
        resolve_config(None)
    with pytest.raises(TrainError, match="amp must be one of off, bf16, fp16"):
        TrainConfig(model="uec", amp="fp8")
    with pytest.raises(TrainError, match="data_options: set crop as top-level"):
        TrainConfig(model="uec", data_options={"crop": 3})
    file.write_text('val_every = 0\nval_split = "test"\n')
    config = resolve_config("uec", config_file=file, overrides={"val_every": 7})
    assert (config.val_every, config.val_split) == (7, "test")
    file.write_text("val_every = -2\n")
    with pytest.raises(TrainError, match=r"val_every must be >= 0 \(0: off\), got -2"):
        resolve_config("uec", config_file=file)


def test_train_command(seq: Path, tmp_path: Path) -> None:
    from expokit.cli import cli

    file = tmp_path / "t.toml"
    file.write_text(
        "resize = 32\nbatch_size = 2\nlog_every = 1\ntensorboard = false\nthreads = 1\n"
        "[model_config]\nfeature_size = 32\npixel_samples = 128\n"
    )
    run = tmp_path / "run"
    args = ["train", str(seq), "--model", "uec", "--out", str(run)]
    args += ["--config", str(file), "--steps", "2", "--no-progress"]
    result = CliRunner().invoke(cli, [*args, "--val-every", "0"])
    assert result.exit_code == 0, result.output
    assert "65 trainable parameters" in result.output
    assert f"checkpoint: {step_dir(run, 2)}" in result.output
    assert json.loads((run / "config.json").read_text())["config"]["val_every"] == 0
    assert "no validation" not in result.output  # switched off: nothing to report
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1 and "error:" in again.output and "--resume" in again.output
    bad = CliRunner().invoke(cli, [*args[:4], "--out", str(tmp_path / "x"), "--split", "nope"])
    assert bad.exit_code == 1 and "no split 'nope'; the dataset has splits: train" in bad.output


@pytest.mark.slow
def test_two_processes_under_torchrun(seq: Path, tmp_path: Path) -> None:
    file = tmp_path / "t.toml"
    file.write_text(
        "resize = 32\nbatch_size = 2\nlog_every = 2\nckpt_every = 2\ntensorboard = false\n"
        'val_every = 1\nval_split = "train"\nval_size = 32\n'
        # the released corrector's 3 iterations: its networks' gradients are all-reduced too
        "[model_config]\nfeature_size = 32\npixel_samples = 128\niterations = 3\n"
    )
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
        "-m", "expokit.cli", "train", "--model", "uec", str(seq), "--out", str(run),
        "--config", str(file), "--steps", "4", "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=env, cwd=REPO, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ranks = dict(
        (int(m[1]), (int(m[2]), int(m[3]), m[4], int(m[5])))
        for m in re.finditer(
            r"rank (\d)/2 \(pid (\d+)\): step (\d+), weights checksum (\S+) \(best step (\d+)\)",
            done.stdout,
        )
    )
    assert set(ranks) == {0, 1}, done.stdout
    (pid0, step0, sum0, best0), (pid1, step1, sum1, best1) = ranks[0], ranks[1]
    assert step0 == step1 == 4 and sum0 == sum1  # both trained, in step, to the same weights
    # Rank 0 validated; both agree on the best, which is the highest logged val PSNR.
    scores = {int(r["step"]): float(r["val_psnr"]) for r in _log(run) if r["val_psnr"]}
    assert sorted(scores) == [1, 2, 3, 4]
    assert best0 == best1 == max(scores, key=lambda s: (scores[s], -s))
    assert json.loads((run / "checkpoints" / "best" / "meta.json").read_text())["step"] == best0
    assert "2 process(es)" in done.stdout and "checkpoint:" in done.stdout
    # Only rank 0 wrote: it held the run's lock; the checkpoint is rank 0's and carries the
    # RNG states of both ranks.
    holder = lock_holder(run)
    assert holder is not None and holder["pid"] == pid0 != pid1
    model, meta = load_model(run, prefer="last")
    assert meta.meta.extra["world_size"] == 2 and repr(weights_checksum(model)) == sum0
    state = torch.load(step_dir(run, 4) / "training_state.pt", weights_only=True)
    assert len(state["rng"]) == 2 and state["world_size"] == 2
    assert [int(r["step"]) for r in _log(run)] == [1, 2, 3, 4]


@pytest.mark.parametrize("name", ["zerodce", "recnet", "video"])
def test_the_loop_is_generic_over_baselines(name: str, tmp_path: Path) -> None:
    from expokit.models.evaluate import EvalConfig, evaluate
    from tests.curation.conftest_tools import make_dataset

    make_dataset(tmp_path / "ds")  # still pairs and clips, with masks
    # Validated on every train pair (two still scenes and a clip scene: its windows too).
    config = recipe(name).replace(
        data=str(tmp_path / "ds"), out=str(tmp_path / "run"), steps=2, batch_size=2, crop=32,
        log_every=1, threads=1, tensorboard=False, val_every=1, val_split="train",
        val_pairs=1000, val_size=32,
    )  # fmt: skip
    summary = train(config, progress=False, echo=lambda _: None)
    assert summary.step == 2 and summary.last_loss is not None and math.isfinite(summary.last_loss)
    model, meta = load_model(run := tmp_path / "run", prefer="last")
    assert model.name == name and meta.step == 2 and len(_log(run)) == 2
    scores = {int(r["step"]): float(r["val_psnr"]) for r in _log(run)}
    assert all(math.isfinite(v) for v in scores.values())
    val = summary.validation
    assert val is not None and val.best_step == max(scores, key=lambda s: (scores[s], -s))
    # with the training's thread count: another one sums convolutions in another order
    # (~1e-5 dB apart), and validation and evaluation must agree to 1e-6 dB
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        scored = evaluate(
            tmp_path / "ds", run, EvalConfig(splits=("train",), reference="other-scene", resize=32)
        ).summary["splits"]["train"]
    finally:
        torch.set_num_threads(threads)
    assert scored[name]["all"]["pairs"] == val.pairs
    assert scored[name]["all"]["psnr"] == pytest.approx(scores[val.best_step], abs=1e-6)
    if name == "video":  # the clip window follows the model's frames
        with pytest.raises(TrainError, match="num_frames = 5 but model 'video' is configured"):
            train(
                config.replace(out=str(tmp_path / "r5"), data_options={"num_frames": 5}),
                progress=False, echo=lambda _: None,
            )  # fmt: skip


@pytest.mark.parametrize(
    ("name", "model_config"),
    [("uec", {}), ("zerodce", {}), ("recnet", {}), ("video", {}),
     # the shipped zerodce's and recnet's options (scripts/train_shipped_weights.py)
     ("zerodce", {"target_weight": 10.0, "white_level": True, "max_curve_side": 8,
                  "start": "linear-gain"}),
     ("recnet", {"start": "linear-gain"})],  # the shipped recnet's start
)  # fmt: skip
def test_every_recipe_trains_under_bf16_autocast(
    name: str, model_config: dict[str, Any], tmp_path: Path
) -> None:
    # The path `--amp bf16` takes on a GPU, here on the CPU: the losses stay finite, the
    # weights move and are saved as float32 (what eval and infer load).
    from tests.curation.conftest_tools import make_dataset

    make_dataset(tmp_path / "ds")
    config = recipe(name).replace(
        data=str(tmp_path / "ds"), out=str(tmp_path / "run"), steps=2, batch_size=2, crop=32,
        resize=None, log_every=1, ckpt_every=1, threads=1, tensorboard=False, val_every=0,
        amp="bf16",
    )  # fmt: skip
    config = config.replace(model_config={**config.model_config, **model_config})
    summary = train(config, progress=False, echo=lambda _: None)
    assert summary.amp == "bf16" and summary.device == "cpu (1 thread)"
    assert all(math.isfinite(float(r["loss"])) for r in _log(tmp_path / "run"))
    first, saved = (_weights(step_dir(tmp_path / "run", step)) for step in (1, 2))
    assert all(t.dtype == torch.float32 for t in saved.values() if t.is_floating_point())
    assert any(not torch.equal(saved[k], first[k]) for k in first)


_TRAINER_WITH_WORKER = """
import os, sys, time
import torch
from torch.utils.data import DataLoader, Dataset
from expokit.core.lock import RootLock

class Slow(Dataset):
    def __len__(self): return 4
    def __getitem__(self, i):
        with open(sys.argv[2], "w") as f: f.write(str(os.getpid()))
        time.sleep(60)
        return torch.zeros(1)

with RootLock(sys.argv[1], "expokit train"):
    next(iter(DataLoader(Slow(), num_workers=1, multiprocessing_context="fork")))
"""


@pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="loaders fork on Linux only")
def test_forked_loader_worker_does_not_keep_the_run_locked(tmp_path: Path) -> None:
    """A DataLoader worker outlives its trainer's ``kill -9``; the run's lock is free at
    once (the at-fork hook of expokit.core.lock, no worker_init_fn needed)."""
    import signal
    import time

    run, pid_file = tmp_path / "run", tmp_path / "worker.pid"
    run.mkdir()
    trainer = subprocess.Popen(
        [sys.executable, "-c", _TRAINER_WITH_WORKER, str(run), str(pid_file)]
    )
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        worker = int(pid_file.read_text())
        trainer.send_signal(signal.SIGKILL)
        trainer.wait()
        os.kill(worker, 0)  # the worker still runs (it notices its parent's death later)
        with RootLock(run, "expokit train --resume"):
            pass
    finally:
        trainer.kill()
        trainer.wait()
        if worker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
