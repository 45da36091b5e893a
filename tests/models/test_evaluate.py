"""expokit eval: identity-like checkpoints match identity, groups, references, E_warp, files,
bad input and the command line, on a tiny synthetic dataset (stills and one test clip)."""

from __future__ import annotations

import csv
import json
import math
import re
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

REFERENCES = [
    "identity", "gain_to_mid_grey", "gain_to_train_mean", "exposure_ratio_of_train",
    "gain_to_reference", "histogram_match", "oracle_gain_gamma",
]  # fmt: skip
#: The reference methods that never see a target, whatever the reference mode.
FAIR_ALWAYS = {"identity", "gain_to_mid_grey", "gain_to_train_mean", "exposure_ratio_of_train"}


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
    from expokit.curation.dataset.format import load_dataset
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
    # ... because under `same` they see the target: labelled so
    methods = result.summary["methods"]
    assert {n for n, m in methods.items() if m["peeking"]} == {
        "gain_to_reference", "histogram_match", "oracle_gain_gamma",
    }  # fmt: skip


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
    assert len(rows) == 10 * len(REFERENCES) and {r["method"] for r in rows} == set(REFERENCES)
    assert summary["comparison"]["test"]["status"] == "no-model"
    assert summary["split_size"]["test"] == {
        "pairs": 10, "scenes": 2, "too_small": True,
        "warning": summary["split_size"]["test"]["warning"],
        "rule": {"min_pairs": 20, "min_scenes": 2},
    }  # fmt: skip
    assert (out / "clips.csv").read_text().count("\n") == 1 + len(REFERENCES)
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
        ["eval", "--ckpt", str(identity_uec), str(root), "--split", "test",
         "--out", str(out), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "oracle gain+gamma fitted to target (peeking)" in result.output
    assert "| uec (step 7) | yes |" in result.output  # it is given the target as reference
    assert "NOT A FAIR COMPARISON" in result.output
    assert (out / "summary.json").is_file()
    bad = runner.invoke(cli, ["eval", str(root), "--split", "nope", "--no-progress"])
    assert bad.exit_code == 1 and "error:" in bad.output and "nope" in bad.output


def test_uint8_conversion_rounds_and_clips() -> None:
    assert to_uint8(np.array([[[-0.1, 0.5, 1.2]]])).tolist() == [[[0, 128, 255]]]


# --------------------------------------------------------------------------- peeking, verdicts


def _last_line(table: str) -> str:
    return [line for line in table.splitlines() if line.strip()][-1]


def test_who_peeks_depends_on_the_reference_mode(root: Path, identity_uec: Path) -> None:
    """Under `same` gain/histogram to reference and uec see the target; under other-scene
    they do not; the oracle always does; the fixed-level gains and identity never."""
    fair_always = FAIR_ALWAYS
    for mode, peeking in (
        ("same", {"uec", "gain_to_reference", "histogram_match", "oracle_gain_gamma"}),
        ("other-scene", {"oracle_gain_gamma"}),
        ("train-scene", {"oracle_gain_gamma"}),
    ):
        result = evaluate(root, identity_uec, EvalConfig(reference=mode))  # type: ignore[arg-type]
        methods = result.summary["methods"]
        assert {n for n, m in methods.items() if m["peeking"]} == peeking, mode
        assert not fair_always & peeking
        assert result.summary["fair_baselines"]["methods"] == [
            n for n in REFERENCES if n not in peeking
        ]
        table = format_table(result.summary)
        for name, info in methods.items():
            assert f"| {info['label']} | {'yes' if name in peeking else 'no'} |" in table


def test_video_model_does_not_peek_under_same(root: Path, tmp_path: Path) -> None:
    save_checkpoint(VideoNet(frames=3), tmp_path / "run", 1)
    result = evaluate(root, tmp_path / "run")
    assert result.summary["methods"]["video"]["peeking"] is False
    assert result.summary["comparison"]["test"]["status"] in ("above", "below", "level")


def test_verdict_names_the_best_fair_baseline_and_says_below(
    root: Path, identity_uec: Path
) -> None:
    """An identity-like uec scores what identity scores; on this ladder the gain to
    mid-grey does better, so the model is BELOW it by the difference of the two means."""
    result = evaluate(root, identity_uec, EvalConfig(reference="other-scene"))
    summary = result.summary
    table = summary["splits"]["test"]
    fair = [n for n, m in summary["methods"].items() if m["kind"] == "reference"
            and not m["peeking"]]  # fmt: skip
    best = max(fair, key=lambda n: table[n]["all"]["psnr"])
    verdict = summary["comparison"]["test"]
    assert verdict["baseline"] == best and verdict["model"] == "uec"
    delta = table["uec"]["all"]["psnr"] - table[best]["all"]["psnr"]
    assert delta < 0 and verdict["delta_psnr"] == pytest.approx(delta)
    assert verdict["delta_ssim"] == pytest.approx(
        table["uec"]["all"]["ssim"] - table[best]["all"]["ssim"]
    )
    assert verdict["status"] == "below"
    line = _last_line(format_table(summary))
    label = summary["methods"][best]["label"]
    assert line.startswith(f"model vs best fair baseline: {delta:+.2f} dB ({label})")
    assert "BELOW" in line and line == verdict["line"]


def test_a_peeking_model_is_not_compared_as_fair(root: Path, identity_uec: Path) -> None:
    result = evaluate(root, identity_uec)  # reference same: uec is given the target
    verdict = result.summary["comparison"]["test"]
    assert verdict["model_peeks"] is True and verdict["status"] == "not-fair"
    assert "NOT A FAIR COMPARISON" in _last_line(format_table(result.summary))
    # the best fair baseline under `same` is never a reference-taking method
    assert verdict["baseline"] in FAIR_ALWAYS


def test_train_level_is_measured_on_the_training_split_only(root: Path) -> None:
    from expokit.curation.dataset.format import load_dataset
    from expokit.models.data import read_rgb
    from expokit.models.reference import mean_luminance

    dataset = load_dataset(root)
    train = dataset.manifest[dataset.manifest["split"] == "train"]
    targets = sorted(set(train["target_path"]))
    want = np.mean([mean_luminance(read_rgb(dataset.path(t)) / 255.0) for t in targets])
    result = evaluate(root)
    level = result.summary["fair_baselines"]["train_level"]
    assert level["level"] == pytest.approx(want, rel=1e-9) and level["split"] == "train"
    assert level["targets"] == len(targets)
    # the training split has one target, the train-scene reference: both gains agree
    scene = evaluate(root, config=EvalConfig(reference="train-scene"))
    gain, mean = _by(scene.pairs, "gain_to_reference"), _by(scene.pairs, "gain_to_train_mean")
    for pair_id, row in gain.items():
        assert mean[pair_id]["psnr"] == pytest.approx(row["psnr"])
    assert {p["reference"] for p in scene.pairs} == {"beach_01"}
    # scoring the training split itself: no level from it, and no train-scene reference
    own = evaluate(root, config=EvalConfig(splits=("train",)))
    assert "gain_to_train_mean" not in own.summary["methods"]
    assert "scored itself" in own.summary["fair_baselines"]["train_level"]["off"]
    assert "exposure_ratio_of_train" not in own.summary["methods"]
    assert "scored itself" in own.summary["fair_baselines"]["train_ratio"]["off"]
    with pytest.raises(EvalError, match="train-scene needs a training split"):
        evaluate(root, config=EvalConfig(splits=("train",), reference="train-scene"))


def test_small_splits_get_a_warning(root: Path) -> None:
    result = evaluate(root, config=EvalConfig(splits=("test", "val", "all")))
    sizes = result.summary["split_size"]
    assert (sizes["test"]["pairs"], sizes["test"]["scenes"], sizes["test"]["too_small"]) == (
        10, 2, True,
    )  # fmt: skip
    assert (sizes["val"]["pairs"], sizes["val"]["scenes"], sizes["val"]["too_small"]) == (
        5, 1, True,
    )  # fmt: skip
    # every row: 3 still scenes x 5 EVs + a 5-frame clip = 20 pairs from 4 scenes
    assert (sizes["all"]["pairs"], sizes["all"]["scenes"], sizes["all"]["too_small"]) == (
        20, 4, False,
    )  # fmt: skip
    tables = format_table(result.summary).split("\n\n")
    assert "WARNING: split 'test' is too small" in tables[0] and "10 pairs" in tables[0]
    assert "WARNING: split 'val' is too small" in tables[1] and "1 scene " in tables[1]
    assert "WARNING" not in tables[2]
    for table in tables:
        assert _last_line(table).startswith("model vs best fair baseline:")


# --------------------------------------------------------------------------- non-finite


def _nan_uec(tmp_path: Path) -> Path:
    model = UEC(feature_size=16)
    with torch.no_grad():
        model.corrector.conv3.weight[0, 0] = float("nan")
    return save_checkpoint(model, tmp_path / "nan_run", 5)


def test_nan_weights_are_refused_naming_the_file(root: Path, tmp_path: Path) -> None:
    from expokit.models.checkpoint import CheckpointError

    folder = _nan_uec(tmp_path)
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*NaN or infinite") as info:
        evaluate(root, tmp_path / "nan_run")
    assert str(folder / "model.safetensors") in str(info.value)
    assert "corrector.conv3.weight" in str(info.value)
    out = tmp_path / "out"
    bad = CliRunner().invoke(
        cli, ["eval", "--ckpt", str(tmp_path / "nan_run"), str(root), "--out",
              str(out), "--no-progress"],
    )  # fmt: skip
    assert bad.exit_code == 1 and "model.safetensors" in bad.output and "NaN" in bad.output
    assert not (out / "summary.json").exists()


class _NaNModel(torch.nn.Module):
    """Finite weights, NaN output: what eval must refuse to score."""

    name = "nanout"
    data_kind = "paired"
    needs_reference = False

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def enhance(self, image: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        return image * self.scale * float("nan")


def test_nan_model_output_is_an_error_not_a_score(root: Path) -> None:
    with pytest.raises(EvalError, match="NaN or infinite values; refusing to score"):
        evaluate(root, model=_NaNModel(), config=EvalConfig(splits=("val",)))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- --save-images


def _links(page: Path) -> list[str]:
    import re

    return re.findall(r"(?:href|src)='([^']+)'", page.read_text())


def test_save_images_writes_triptychs_and_a_page(
    root: Path, identity_uec: Path, tmp_path: Path
) -> None:
    import cv2

    from expokit.curation.dataset.format import load_dataset
    from expokit.models.data import read_rgb

    folder = tmp_path / "images"
    result = evaluate(root, identity_uec, EvalConfig(reference="other-scene"), images=folder)
    pngs = sorted(folder.glob("test/*.png"))
    assert len(pngs) == 10  # one per scored pair
    dataset = load_dataset(root)
    row = dataset.manifest.set_index("pair_id").loc["lab.x/ev-1.5"]
    x, t = read_rgb(dataset.path(row["input_path"])), read_rgb(dataset.path(row["target_path"]))
    (one,) = [p for p in pngs if p.name.endswith("lab.x-ev-1.5.png")]
    image = cv2.imread(str(one))[..., ::-1]
    assert image.shape == (48, 3 * 64, 3)
    # input | output (identity-like uec: the input) | target
    assert np.array_equal(image[:, :64], x) and np.array_equal(image[:, 128:], t)
    assert np.abs(image[:, 64:128].astype(int) - x).max() <= 1
    page = folder / "index.html"
    assert result.summary["images"] == str(page)
    text = page.read_text()
    assert "http://" not in text and "https://" not in text
    links = _links(page)
    assert links and all((folder / link).is_file() for link in links)
    assert all(not link.startswith("/") for link in links)
    assert result.summary["comparison"]["test"]["line"] in text
    # the best pair by model PSNR comes first: the EV 0 pair (identical images)
    first = re.search(r"<figure><a href='([^']+)'", text)
    assert first is not None and first.group(1).endswith("lab.x-evplus0.0.png")


def test_reference_only_images_show_the_best_fair_baseline(root: Path, tmp_path: Path) -> None:
    import cv2

    from expokit.curation.dataset.format import load_dataset
    from expokit.models.data import read_rgb
    from expokit.models.evaluate import method_from_summary

    folder = tmp_path / "refimages"
    result = evaluate(root, config=EvalConfig(splits=("val",)), images=folder)
    best = result.summary["comparison"]["val"]["baseline"]
    method = method_from_summary(result.summary, best)
    dataset = load_dataset(root)
    row = dataset.manifest.set_index("pair_id").loc["kitchen/ev-1.0"]
    x = read_rgb(dataset.path(row["input_path"])) / 255.0
    t = read_rgb(dataset.path(row["target_path"])) / 255.0
    from expokit.models.data import read_mask

    mask = read_mask(dataset.path(row["mask_path"])).astype(bool)
    want = to_uint8(method.run(x, t, t, mask))
    (one,) = folder.glob("val/*kitchen-ev-1.0.png")
    image = cv2.imread(str(one))[..., ::-1]
    assert image.shape == (48, 192, 3) and np.array_equal(image[:, 64:128], want)
    assert len(list(folder.glob("val/*.png"))) == 5
    assert all((folder / link).is_file() for link in _links(folder / "index.html"))


def test_cli_eval_save_images_and_train_scene(
    root: Path, identity_uec: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cli_images"
    result = CliRunner().invoke(
        cli,
        ["eval", "--ckpt", str(identity_uec), str(root), "--reference", "train-scene",
         "--save-images", str(out), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "| uec (step 7) | no |" in result.output
    assert "BELOW the fair baseline" in result.output
    assert (out / "index.html").is_file() and len(list(out.glob("test/*.png"))) == 10


def test_train_ratio_is_the_training_pairs_fixed_exposure(tmp_path: Path) -> None:
    """Injected truth: every training clip is 1 EV under its target (a rig's fixed
    exposure), so the training split's ratio is 2 with no spread, and on a test clip
    exposed the same way the exposure change by it beats the gain to the train mean."""
    from expokit.models.evaluate import method_from_summary

    folder = tmp_path / "rig"
    make_dataset(folder, Spec(
        stills={"kitchen": "val"},
        clips=(("street", "c01", 6, "train", -1.0), ("yard", "c01", 4, "train", -1.0),
               ("park", "c01", 5, "test", -1.0)),
    ))  # fmt: skip
    result = evaluate(folder, config=EvalConfig(reference="train-scene"))
    ratio = result.summary["fair_baselines"]["train_ratio"]
    assert ratio["ratio"] == pytest.approx(2.0, rel=0.01) and ratio["split"] == "train"
    assert ratio["ev"] == pytest.approx(1.0, abs=0.015) and ratio["log2_spread"] < 0.01
    assert (ratio["pairs"], ratio["of_pairs"]) == (10, 10)
    test = result.summary["splits"]["test"]
    change = test["exposure_ratio_of_train"]["all"]["psnr"]
    assert change > 40 and change > test["gain_to_train_mean"]["all"]["psnr"]
    assert result.summary["comparison"]["test"]["baseline"] == "exposure_ratio_of_train"
    rebuilt = method_from_summary(result.summary, "exposure_ratio_of_train")
    assert rebuilt.label == result.summary["methods"]["exposure_ratio_of_train"]["label"]


def test_train_ratio_is_left_out_with_the_reason_when_every_training_pair_is_clipped(
    tmp_path: Path,
) -> None:
    """Training clips 6 EV over their targets are white: no pixel is unclipped in both, so
    no ratio is measured (said in summary.json) and the table goes on without it."""
    folder = tmp_path / "white"
    make_dataset(folder, Spec(
        stills={"kitchen": "val"},
        clips=(("street", "c01", 4, "train", 6.0), ("park", "c01", 4, "test", -1.0)),
    ))  # fmt: skip
    result = evaluate(folder, config=EvalConfig(reference="train-scene"))
    ratio = result.summary["fair_baselines"]["train_ratio"]
    assert "no pair has unclipped pixels" in ratio["off"] and ratio["pairs"] == 0
    assert "exposure_ratio_of_train" not in result.summary["methods"]
    assert "gain_to_train_mean" in result.summary["methods"]
