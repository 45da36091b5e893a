"""The SICE protocol: loading order, items, folds, reference methods, a short UEC run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from expokit.curation.dataset.format import load_dataset
from expokit.models import protocol as P  # noqa: N812
from tests.conftest import shared_path


def _write_sequences(root: Path, scenes: int = 3, exposures: int = 7, size: int = 24) -> None:
    import cv2

    rng = np.random.default_rng(0)
    for s in range(scenes):
        folder = root / f"seq_{s}"
        folder.mkdir(parents=True)
        base = rng.uniform(0.05, 1.0, (size, size, 3))
        for e in range(exposures):
            # file names whose string order differs from their numeric order (9 < 10)
            value = np.clip(base * 2.0 ** (e - exposures // 2) * 0.4, 0, 1)
            rgb = np.round(value * 255).astype(np.uint8)
            cv2.imwrite(str(folder / f"{8 + e}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_natural_order_and_resize(tmp_path: Path) -> None:
    _write_sequences(tmp_path)
    seqs = P.load_sequences(tmp_path, size=16)
    assert [s.name for s in seqs] == ["seq_0", "seq_1", "seq_2"]
    assert seqs[0].files == tuple(f"{8 + e}.png" for e in range(7))
    assert seqs[0].images.shape == (7, 16, 16, 3) and seqs[0].images.dtype == np.uint8
    means = seqs[0].images.reshape(7, -1).mean(axis=1)
    assert np.all(np.diff(means) > 0)  # darkest first


def test_wrong_exposure_count_names_folder(tmp_path: Path) -> None:
    _write_sequences(tmp_path, exposures=6)
    with pytest.raises(P.ProtocolError, match=r"seq_0.*expected 7"):
        P.load_sequences(tmp_path)


def test_items_reference_is_next_scene_middle(tmp_path: Path) -> None:
    _write_sequences(tmp_path)
    seqs = P.load_sequences(tmp_path, size=16)
    items = P.build_items(seqs)
    assert len(items) == 12
    assert [i.input_index for i in items[:4]] == [0, 1, 5, 6]
    last = next(i for i in items if i.scene == 2)
    assert np.array_equal(last.reference, seqs[0].images[3])  # cyclic
    assert np.array_equal(items[0].target, seqs[0].images[3])
    assert np.array_equal(items[0].reference, seqs[1].images[3])


def test_scene_folds_are_disjoint() -> None:
    folds = P.scene_folds(22, 2)
    assert [len(f) for f in folds] == [11, 11]
    assert sorted(folds[0] + folds[1]) == list(range(22)) and not set(folds[0]) & set(folds[1])
    with pytest.raises(P.ProtocolError):
        P.scene_folds(3, 4)


def test_reference_methods_on_synthetic() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(0.01, 0.3, (16, 16, 3))  # target stays below 1: no clipping
    target = np.clip(1.7 * x**0.6, 0, 1)
    out = P.oracle_gain_gamma(x, x, target)
    assert np.abs(out - target).max() < 1e-3  # the curve family holds the truth
    a, g = P.fit_gain_gamma_unclipped(x, target)
    assert a == pytest.approx(1.7, rel=1e-3) and g == pytest.approx(0.6, rel=1e-3)
    ref = np.full((8, 8, 3), 0.4)
    gained = P.gain_to_reference(x, ref, target)
    assert gained.mean() == pytest.approx(0.4, rel=0.05)
    assert P.gain_to_reference(np.zeros_like(x), ref, target).max() == 0


def test_short_training_end_to_end_synthetic(tmp_path: Path) -> None:
    source = tmp_path / "sequences"
    _write_sequences(source, scenes=4, size=48)
    seqs = P.load_sequences(source, size=32)
    result = P.run_protocol(
        seqs, 2, source=source, work=tmp_path / "work",
        overrides={"steps": 3, "batch_size": 2, "ckpt_every": 3},
    )  # fmt: skip
    assert [t["steps"] for t in result.training] == [3, 3]
    # each fold was trained by `expokit train` on a dataset `curate build` made of the
    # other fold's scenes only
    for info in result.training:
        config = json.loads((Path(info["run"]) / "config.json").read_text())["config"]
        assert config["model"] == "uec" and config["steps"] == 3
        dataset = load_dataset(Path(info["run"]).parent / "data")
        train_scenes = set(dataset.manifest.loc[dataset.manifest["split"] == "train", "scene_id"])
        assert train_scenes == {f"seq_{s}" for s in info["train_scenes"]}
    assert len(result.scores["uec"]) == 16
    assert all(math.isfinite(p) and math.isfinite(s) for _, _, p, s in result.scores["uec"])
    data = result.to_json()
    assert set(data["methods"]) == {"identity", "gain_to_reference", "oracle_gain_gamma", "uec"}
    # the peeking oracle beats doing nothing on an exposure ladder
    assert result.summary("oracle_gain_gamma")[0] > result.summary("identity")[0]


def test_training_rows_say_where_and_how_they_ran(tmp_path: Path) -> None:
    """Each fold's row names its device and autocast mode, so the docs' CPU and GPU
    timings can only sit beside each other labelled (here bf16 autocast on the CPU)."""
    import torch

    source = tmp_path / "sequences"
    _write_sequences(source, scenes=4, size=48)
    seqs = P.load_sequences(source, size=32)
    threads = torch.get_num_threads()
    result = P.run_protocol(
        seqs, 2, source=source, work=tmp_path / "work",
        overrides={"steps": 2, "batch_size": 2, "ckpt_every": 2, "amp": "bf16",
                   "device": "cpu", "threads": 1},
    )  # fmt: skip
    assert torch.get_num_threads() == threads  # the run gives its thread count back
    assert [(t["device"], t["amp"]) for t in result.training] == [("cpu (1 thread)", "bf16")] * 2
    assert all(math.isfinite(p) for _, _, p, _ in result.scores["uec"])
    assert result.to_json()["training"][0]["amp"] == "bf16"


@pytest.fixture(scope="module")
def sice() -> list[P.SceneSequence]:
    return P.load_sequences(shared_path("exposure", "sice_7ev_sequences"))


def test_reference_methods_reproduce_anchors(sice: list[P.SceneSequence]) -> None:
    assert len(sice) == 22
    result = P.run_protocol(sice)
    for name in ("identity", "gain_to_reference", "oracle_gain_gamma"):
        psnr, ssim = result.summary(name)
        anchor_psnr, anchor_ssim = P.ANCHORS[name]
        assert psnr == pytest.approx(anchor_psnr, abs=0.15), name
        assert ssim == pytest.approx(anchor_ssim, abs=0.01), name
