"""expokit eval: identity-like checkpoints match identity, groups, references, E_warp, files,
bad input and the command line, on a tiny synthetic dataset (stills and one test clip)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from expokit.cli import cli
from expokit.core.errors import OutputError
from expokit.curation.metrics import psnr
from expokit.models.checkpoint import save_checkpoint
from expokit.models.evaluate import (
    EvalConfig,
    EvalError,
    evaluate,
    format_table,
    linear_mean_luminance,
    to_uint8,
    warping_error,
)
from expokit.models.uec import UEC
from expokit.models.video import VideoNet
from tests.curation.conftest_tools import Spec, make_dataset

REFERENCES = ["identity", "gain_to_reference", "histogram_match", "oracle_gain_gamma"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Test split: still scene lab.x (EVs -1.5..1.5, target 0) and clip park/c01 (5 frames,
    input EV +1); val: kitchen only (no clip)."""
    folder = tmp_path_factory.mktemp("eval") / "ds"
    spec = Spec(
        stills={"beach_01": "train", "kitchen": "val", "lab.x": "test"},
        clips=(("park", "c01", 5, "test", 1.0),),
    )
    make_dataset(folder, spec)
    return folder


@pytest.fixture(scope="module")
def identity_uec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A UEC checkpoint whose lambda is always 0 and that starts from the input itself:
    its output is its input."""
    model = UEC(feature_size=16, start="input")
    with torch.no_grad():
        model.predictor.fc4.weight.zero_()
        model.predictor.fc4.bias.zero_()
    run = tmp_path_factory.mktemp("runs") / "uec"
    save_checkpoint(model, run, 7)
    return run


def _by(pairs: list[dict], method: str) -> dict[str, dict]:
    return {p["pair_id"]: p for p in pairs if p["method"] == method}


def test_references_only_scores_every_pair_and_groups(root: Path) -> None:
    result = evaluate(root)
    assert {p["method"] for p in result.pairs} == set(REFERENCES)
    identity = _by(result.pairs, "identity")
    assert len(identity) == 5 + 5
    table = result.summary["splits"]["test"]["identity"]
    assert (table["all"]["pairs"], table["under"]["pairs"], table["over"]["pairs"]) == (10, 2, 7)
    # identity's PSNR is the input against the target inside the mask, on uint8
    from expokit.curation.dataset import load_dataset
    from expokit.models.data import read_mask, read_rgb

    dataset = load_dataset(root)
    row = dataset.manifest.set_index("pair_id").loc["lab.x/ev-1.5"]
    x, t = read_rgb(dataset.path(row["input_path"])), read_rgb(dataset.path(row["target_path"]))
    mask = read_mask(dataset.path(row["mask_path"])).astype(bool)
    assert identity["lab.x/ev-1.5"]["psnr"] == pytest.approx(psnr(x, t, 255.0, mask))
    assert identity["lab.x/ev+0.0"]["exposure"] == "same"
    # with the target as reference, every reference method beats doing nothing on average
    test = result.summary["splits"]["test"]
    assert test["gain_to_reference"]["all"]["psnr"] > test["identity"]["all"]["psnr"]
    assert test["oracle_gain_gamma"]["all"]["psnr"] > test["gain_to_reference"]["all"]["psnr"]
    assert result.summary["methods"]["oracle_gain_gamma"]["peeking"] is True


def test_identity_like_uec_checkpoint_matches_identity(root: Path, identity_uec: Path) -> None:
    result = evaluate(root, identity_uec, EvalConfig(references=True))
    model, identity = _by(result.pairs, "uec"), _by(result.pairs, "identity")
    assert set(model) == set(identity)
    for pair_id, row in model.items():
        assert row["psnr"] == pytest.approx(identity[pair_id]["psnr"], abs=1e-9)
        assert row["ssim"] == pytest.approx(identity[pair_id]["ssim"], abs=1e-9)
    assert result.summary["checkpoint"]["step"] == 7
    assert "uec (step 7)" in format_table(result.summary)


def test_untrained_video_checkpoint_matches_identity_and_gets_ewarp(
    root: Path, tmp_path: Path
) -> None:
    save_checkpoint(VideoNet(frames=3), tmp_path / "run", 1)
    result = evaluate(root, tmp_path / "run")
    model, identity = _by(result.pairs, "video"), _by(result.pairs, "identity")
    for pair_id, row in model.items():
        assert row["psnr"] == pytest.approx(identity[pair_id]["psnr"], abs=1e-9)
    clips = {c["method"]: c for c in result.clips}
    assert clips["video"]["frames"] == 5
    assert clips["video"]["ewarp"] == pytest.approx(clips["identity"]["ewarp"], abs=1e-9)
    assert math.isfinite(clips["video"]["flicker"]) and clips["video"]["flicker"] > 0
    video = result.summary["splits"]["test"]["video"]["video"]
    assert video["clips"] == 1 and video["ewarp_target"] is not None
    assert "E_warp" in format_table(result.summary)


def test_ewarp_is_zero_for_a_static_clip_and_larger_for_a_flickering_one() -> None:
    rng = np.random.default_rng(0)
    base = np.kron(rng.uniform(0.1, 0.9, (8, 8, 3)), np.ones((6, 6, 1)))  # 48x48, textured
    static = [base.copy() for _ in range(4)]
    assert warping_error(static, static) == pytest.approx(0.0, abs=1e-8)
    flickering = [np.clip(base * (1.3 if t % 2 else 0.8), 0, 1) for t in range(4)]
    assert warping_error(flickering, static) > 1e-2
    # a moving clip whose outputs move with it is consistent too
    moving = [np.roll(base, 2 * t, axis=1) for t in range(4)]
    assert warping_error(moving, moving) < 0.2 * warping_error(flickering, static)
    means = [linear_mean_luminance(f) for f in flickering]
    assert max(means) / min(means) > 1.5


def test_other_scene_reference_uses_the_next_scene(root: Path) -> None:
    result = evaluate(root, config=EvalConfig(reference="other-scene"))
    refs = {p["scene_id"]: p["reference"] for p in result.pairs}
    assert refs == {"lab.x": "park", "park": "lab.x"}
    with pytest.raises(EvalError, match="at least two scenes"):
        evaluate(root, config=EvalConfig(splits=("val",), reference="other-scene"))


def test_resize_and_ev_filter(root: Path) -> None:
    result = evaluate(root, config=EvalConfig(resize=32, min_ev_error=1.2))
    ids = sorted(_by(result.pairs, "identity"))
    assert ids == ["lab.x/ev+1.5", "lab.x/ev-1.5"]
    with pytest.raises(EvalError, match="no pair"):
        evaluate(root, config=EvalConfig(min_ev_error=5))


def test_files_are_written(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    evaluate(root, out=out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["format"] == "expokit-evaluation" and summary["checkpoint"] is None
    with (out / "pairs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40 and {r["method"] for r in rows} == set(REFERENCES)
    assert (out / "clips.csv").read_text().count("\n") == 1 + 4
    evaluate(root, out=out)  # an evaluation folder is reused
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        evaluate(root, out=tmp_path / "other")


def test_bad_input(root: Path, tmp_path: Path, identity_uec: Path) -> None:
    with pytest.raises(EvalError, match=r"no split 'nope'.*test"):
        evaluate(root, config=EvalConfig(splits=("nope",)))
    save_checkpoint(VideoNet(frames=3), tmp_path / "video", 1)
    with pytest.raises(EvalError, match="no clip rows"):
        evaluate(root, tmp_path / "video", EvalConfig(splits=("val",)))
    with pytest.raises(EvalError, match="nothing to evaluate"):
        evaluate(root, config=EvalConfig(references=False))
    with pytest.raises(EvalError, match="reference"):
        EvalConfig(reference="next")  # type: ignore[arg-type]
    from expokit.models.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="no checkpoint"):
        evaluate(root, tmp_path)


def test_cli_eval(root: Path, identity_uec: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(
        cli,
        ["eval", "--ckpt", str(identity_uec), "--data", str(root), "--split", "test",
         "--out", str(out), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "oracle gain+gamma fitted to target (peeking)" in result.output
    assert "| uec (step 7) |" in result.output
    assert (out / "summary.json").is_file()
    bad = runner.invoke(cli, ["eval", "--data", str(root), "--split", "nope", "--no-progress"])
    assert bad.exit_code == 1 and "error:" in bad.output and "nope" in bad.output


def test_uint8_conversion_rounds_and_clips() -> None:
    assert to_uint8(np.array([[[-0.1, 0.5, 1.2]]])).tolist() == [[[0, 128, 255]]]
