"""Validation during training: val rows every ``val_every`` steps scored like ``expokit eval``,
the best checkpoint (kept across resume, the default of eval and infer), a missing val split,
and the line saying whether the model ever beat the fair baseline."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from expokit.models.checkpoint import find_best, load_model, step_dir
from expokit.models.reference import REFERENCE_METHODS
from expokit.models.train import (
    VALIDATION_FILE,
    TrainConfig,
    TrainError,
    ValidationSummary,
    recipe,
    train,
)
from tests.models.test_data import build_sequences

TINY_MODEL = {"feature_size": 32, "pixel_samples": 256}
FAIR = {name for name, m in REFERENCE_METHODS.items() if not m.peeks("other-scene")}


def build_split_sequences(folder: Path) -> Path:
    """A sequences dataset of five synthetic scenes: two train, two val, one test."""
    from expokit.core.synthetic import demo_scene
    from expokit.core.transfer import srgb_encode
    from expokit.curation.build.config import BuildConfig
    from expokit.curation.build.driver import build_dataset
    from expokit.curation.build.splits import SplitSpec

    source = folder / "src"
    for s, name in enumerate(("window", "texture", "gradient", "texture", "window")):
        radiance = demo_scene(name, 40, 56, seed=s)
        scene = source / f"scene{s}"
        scene.mkdir(parents=True)
        for k, ev in enumerate((-2, -1, 0, 1, 2)):
            rgb = srgb_encode(np.clip(radiance * 2.0**ev, 0, 1))
            cv2.imwrite(str(scene / f"{k + 1}.png"), np.rint(rgb * 255).astype(np.uint8)[..., ::-1])
    lists = {"train": ("scene0", "scene1"), "val": ("scene2", "scene3"), "test": ("scene4",)}
    config = BuildConfig(splits=SplitSpec(lists=lists))
    summary = build_dataset([source], folder / "ds", config, progress=False, durable=False)
    assert summary.ok, summary.failures
    return folder / "ds"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_split_sequences(tmp_path_factory.mktemp("valdata"))


def tiny(data: Path, out: Path, **values: Any) -> TrainConfig:
    """The uec recipe shrunk to seconds, validating every 2 steps at 32 px."""
    config = recipe("uec").replace(
        data=str(data), out=str(out), steps=6, batch_size=2, resize=32, log_every=3,
        ckpt_every=2, val_every=2, val_size=32, tensorboard=False, threads=1,
        model_config=TINY_MODEL,
    )  # fmt: skip
    return config.replace(**values)


def _log(run: Path) -> list[dict[str, str]]:
    with (run / "log.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _val_rows(run: Path) -> dict[int, float]:
    return {int(r["step"]): float(r["val_psnr"]) for r in _log(run) if r["val_psnr"]}


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_val_rows_every_val_every_steps_scored_as_eval_scores(data: Path, tmp_path: Path) -> None:
    from expokit.models.evaluate import EvalConfig, evaluate

    run = tmp_path / "run"
    said: list[str] = []
    summary = train(tiny(data, run), progress=False, echo=said.append)
    rows = _log(run)
    # loss rows every 3 steps, val rows every 2 (each with the loss so far), both at the end
    assert [int(r["step"]) for r in rows] == [2, 3, 4, 6]
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    val = {int(r["step"]): r for r in rows if r["val_psnr"]}
    assert sorted(val) == [2, 4, 6] and rows[1]["val_psnr"] == ""
    baselines = {(r["val_baseline"], r["val_baseline_psnr"]) for r in val.values()}
    assert len(baselines) == 1  # scored once: it does not change while the model trains
    ((name, baseline_psnr),) = baselines
    assert name in FAIR | {"gain_to_train_mean"} and all(
        math.isfinite(float(r["val_psnr"])) for r in val.values()
    )
    assert any(f"8 pairs of split 'val' at 32 px; fair baseline {name}" in s for s in said)

    # The very same numbers from `expokit eval --split val --reference other-scene --resize 32`
    # (its own reader, reference rule and runner) on the best checkpoint.
    result = evaluate(data, run, EvalConfig(splits=("val",), reference="other-scene", resize=32))
    table, methods = result.summary["splits"]["val"], result.summary["methods"]
    fair = {
        m: table[m]["all"]["psnr"]
        for m, info in methods.items()
        if info["kind"] == "reference" and not info["peeking"]
    }
    assert FAIR | {"gain_to_train_mean"} <= set(fair)
    assert float(baseline_psnr) == pytest.approx(max(fair.values()), abs=1e-6)
    assert fair[name] == max(fair.values())
    scores = _val_rows(run)
    best_step = max(scores, key=lambda s: (scores[s], -s))  # the first of the highest
    assert result.summary["checkpoint"]["step"] == best_step
    assert result.summary["checkpoint"]["path"] == str(run / "checkpoints" / "best")
    assert table["uec"]["all"]["psnr"] == pytest.approx(scores[best_step], abs=1e-6)

    # The best folder holds that step's weights (a step folder exists for every val step).
    best = find_best(run)
    assert best == run / "checkpoints" / "best"
    assert _same(_weights(best), _weights(step_dir(run, best_step)))
    meta = json.loads((best / "meta.json").read_text())
    assert meta["checkpoint"] == "best" and meta["step"] == best_step
    assert meta["val_psnr"] == pytest.approx(scores[best_step], rel=1e-9)
    assert (meta["val_baseline"], meta["val_split"], meta["val_pairs"]) == (name, "val", 8)

    record = json.loads((run / VALIDATION_FILE).read_text())
    assert summary.validation is not None
    assert record["best_step"] == best_step == summary.validation.best_step
    assert record["beat_baseline"] == (scores[best_step] > float(baseline_psnr))
    assert record["verdict"] in summary.report()

    # Validating changes nothing that is learnt: the same weights without it.
    plain = train(tiny(data, tmp_path / "plain", val_every=0), progress=False, echo=lambda _: None)
    assert _same(_weights(step_dir(run, 6)), _weights(step_dir(tmp_path / "plain", 6)))
    assert plain.validation is not None and plain.validation.off == "val_every = 0"
    assert "val_psnr" not in _log(tmp_path / "plain")[0] and find_best(tmp_path / "plain") is None


def test_eval_and_infer_default_to_the_best_and_the_checkpoints_folder_to_the_last(
    data: Path, tmp_path: Path
) -> None:
    from expokit.cli import cli
    from expokit.curation.dataset.format import load_dataset

    run = tmp_path / "run"
    summary = train(tiny(data, run, steps=4), progress=False, echo=lambda _: None)
    assert summary.validation is not None and summary.validation.best_step is not None
    best_step = summary.validation.best_step
    runner = CliRunner()
    for ckpt, folder, step in (
        (run, run / "checkpoints" / "best", best_step),
        (run / "checkpoints", step_dir(run, 4), 4),
    ):
        out = tmp_path / f"eval-{folder.name}"
        args = ["eval", "--ckpt", str(ckpt), str(data), "--split", "val"]
        done = runner.invoke(cli, [*args, "--resize", "32", "--out", str(out), "--no-progress"])
        assert done.exit_code == 0, done.output
        recorded = json.loads((out / "summary.json").read_text())["checkpoint"]
        assert (recorded["path"], recorded["step"]) == (str(folder), step)
    manifest = load_dataset(data).manifest
    image, reference = (
        data / manifest["input_path"].iloc[0],
        data / manifest["target_path"].iloc[1],
    )
    for ckpt, folder, step in ((run, run / "checkpoints" / "best", best_step),
                               (run / "checkpoints", step_dir(run, 4), 4)):  # fmt: skip
        args = ["infer", str(image), "--ckpt", str(ckpt), "--ref", str(reference)]
        done = runner.invoke(cli, [*args, "--out", str(tmp_path / "inf"), "--no-progress"])
        assert done.exit_code == 0, done.output
        assert f"model uec (step {step}) from {folder}" in done.output
    assert load_model(run, prefer="last")[1].folder == step_dir(run, 4)


def test_resume_keeps_the_best_so_far(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny(data, run, steps=2, val_every=1), progress=False, echo=lambda _: None)
    best = run / "checkpoints" / "best"
    meta = json.loads((best / "meta.json").read_text())
    kept_step, weights = meta["step"], _weights(best)
    # A best no later step can reach: a resume that forgot it would replace it.
    (best / "meta.json").write_text(json.dumps({**meta, "val_psnr": 99.0}))
    said: list[str] = []
    summary = train(tiny(data, run, steps=4, val_every=1), resume=True, progress=False,
                    echo=said.append)  # fmt: skip
    assert f"best so far: step {kept_step}, val PSNR 99.00 dB ({best})" in said
    later = _val_rows(run)
    assert sorted(later) == [1, 2, 3, 4] and max(later[3], later[4]) < 99.0
    assert json.loads((best / "meta.json").read_text())["step"] == kept_step
    assert _same(_weights(best), weights)
    assert summary.validation is not None
    assert (summary.validation.best_step, summary.validation.best_psnr) == (kept_step, 99.0)
    assert f"best 99.00 dB at step {kept_step}" in (summary.validation.verdict() or "")


def test_resume_before_the_best_finds_the_same_best_again(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = tiny(data, run, steps=4, val_every=1, ckpt_every=1)
    straight = train(config, progress=False, echo=lambda _: None).validation
    assert straight is not None and straight.best_step is not None
    weights = _weights(run / "checkpoints" / "best")
    for step in (3, 4):  # as if killed after step 2
        shutil.rmtree(step_dir(run, step))
    said: list[str] = []
    again = train(config, resume=True, progress=False, echo=said.append).validation
    assert again is not None
    dropped = [s for s in said if "dropped (validation finds the best again)" in s]
    assert bool(dropped) == (straight.best_step > 2)  # a best from steps being redone
    # The resume is exact, so the same best comes back: step, score and weights.
    assert (again.best_step, again.best_psnr) == (straight.best_step, straight.best_psnr)
    assert _same(_weights(run / "checkpoints" / "best"), weights)


def test_missing_or_one_scene_val_split_is_said_once_and_training_goes_on(
    data: Path, tmp_path: Path
) -> None:
    seq = build_sequences(tmp_path / "seq")  # every scene in train: no val split
    run = tmp_path / "run"
    said: list[str] = []
    summary = train(tiny(seq, run, steps=4), progress=False, echo=said.append)
    notes = [s for s in said if s.startswith("no validation:")]
    assert len(notes) == 1
    assert "no split 'val'; the dataset has splits: train" in notes[0]
    assert summary.step == 4 and summary.checkpoint == step_dir(run, 4)
    assert find_best(run) is None and load_model(run)[1].step == 4
    assert "val_psnr" not in _log(run)[0]
    assert summary.validation is not None and summary.validation.verdict() is None
    assert not any("fair baseline" in line for line in summary.report())
    record = json.loads((run / VALIDATION_FILE).read_text())
    assert "no split 'val'" in record["off"] and record["best_step"] is None
    said.clear()
    train(tiny(data, tmp_path / "one", steps=2, val_split="test"), progress=False,
          echo=said.append)  # fmt: skip
    assert [s for s in said if "split 'test' has 1 scene (scene4)" in s and "two" in s]


def test_a_model_that_cannot_beat_the_fair_baseline_says_so(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from expokit.cli import cli
    from expokit.models.uec import UEC

    # A corrector that returns its input scores as the identity method does, which the best
    # fair method matches at most.
    monkeypatch.setattr(UEC, "enhance", lambda self, image, reference=None: image)
    run = tmp_path / "run"
    file = tmp_path / "t.toml"
    file.write_text(
        "resize = 32\nbatch_size = 2\nval_size = 32\ntensorboard = false\nthreads = 1\n"
        "[model_config]\nfeature_size = 32\npixel_samples = 128\n"
    )
    args = ["train", "--model", "uec", str(data), "--out", str(run), "--config"]
    done = CliRunner().invoke(cli, [*args, str(file), "--steps", "1", "--no-progress"])
    assert done.exit_code == 0, done.output
    record = json.loads((run / VALIDATION_FILE).read_text())
    identity = record["baseline_scores"]["identity"]
    assert record["best_psnr"] == pytest.approx(identity, abs=1e-9) and record["best_step"] == 1
    assert record["baseline_psnr"] == max(record["baseline_scores"].values()) > identity
    label = record["baseline"].replace("_", " ")
    line = (
        f"model never beat the fair baseline on val: best {identity:.2f} dB at step 1 vs "
        f"{label} {record['baseline_psnr']:.2f} dB"
    )
    assert line in done.output.splitlines() and record["verdict"] == line
    assert record["beat_baseline"] is False and record["margin_db"] < 0


def test_the_verdict_says_by_how_much_and_a_tie_is_no_win() -> None:
    def summary(best: float) -> ValidationSummary:
        return ValidationSummary(
            split="val", every=100, pairs=16, baseline="gain_to_reference",
            baseline_psnr=18.1, best_step=300, best_psnr=best,
        )  # fmt: skip

    assert summary(19.4).verdict() == (
        "model beat the fair baseline on val by 1.30 dB: best 19.40 dB at step 300 vs gain to "
        "reference 18.10 dB"
    )
    assert summary(19.4).beat_baseline is True
    assert summary(18.1).verdict() == (
        "model never beat the fair baseline on val: best 18.10 dB at step 300 vs gain to "
        "reference 18.10 dB"
    )
    assert summary(18.1).beat_baseline is False
    off = ValidationSummary(split="val", every=0, off="val_every = 0")
    assert off.verdict() is None and off.beat_baseline is None


def test_val_fields_are_checked() -> None:
    for values, text in (
        ({"val_every": -1}, "val_every must be >= 0"),
        ({"val_pairs": 0}, "val_pairs must be >= 1"),
        ({"val_size": 8}, "val_size must be in 16..16384"),
        ({"val_split": ""}, "val_split must name a split"),
    ):
        with pytest.raises(TrainError, match=text):
            TrainConfig(model="uec", **values)
    assert recipe("uec").val_every > 0 and recipe("uec").val_split == "val"
