"""Data loaders on tiny format-v1 datasets: shapes, ranges, RGB order, one crop per item,
seeded determinism, splits, sequences, clips, the sampler and the errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from expokit.models.data import (
    ClipDataset,
    DataError,
    PairedDataset,
    PairWeights,
    SequenceDataset,
    TrainSampler,
    collate,
    make_loader,
    open_dataset,
    read_rgb,
)
from tests.curation.conftest_tools import make_dataset

H, W = 48, 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stills (4 scenes x 5 EVs + shared targets, masks; train/val/test) and 3 clips."""
    root = tmp_path_factory.mktemp("data") / "tiny"
    make_dataset(root)
    return root


def build_sequences(
    folder: Path, scenes: int = 3, evs: tuple[int, ...] = (-2, -1, 0, 1, 2)
) -> Path:
    """A sequences dataset built by `curate build` from synthetic exposure folders."""
    from expokit.core.synthetic import demo_scene
    from expokit.core.transfer import srgb_encode
    from expokit.curation.build.config import BuildConfig
    from expokit.curation.build.driver import build_dataset

    source = folder / "src"
    for s, name in enumerate(("window", "texture", "gradient", "texture")[:scenes]):
        radiance = demo_scene(name, 40, 56, seed=s)
        scene = source / f"scene{s}"
        scene.mkdir(parents=True)
        for k, ev in enumerate(evs):
            rgb = srgb_encode(np.clip(radiance * 2.0**ev, 0, 1))
            cv2.imwrite(str(scene / f"{k + 1}.png"), np.rint(rgb * 255).astype(np.uint8)[..., ::-1])
    out = folder / "seq"
    from expokit.curation.build.splits import SplitSpec

    # Every scene in train: with 3 scenes the default fractions would give each split one.
    config = BuildConfig(splits=SplitSpec(fractions=(("train", 1.0),)))
    summary = build_dataset([source], out, config, progress=False, durable=False)
    assert summary.ok, summary.failures
    return out


@pytest.fixture(scope="module")
def sequences(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sequences(tmp_path_factory.mktemp("seqdata"))


def _manifest_row(root: Path, pair_id: str) -> dict[str, object]:
    from expokit.curation.dataset.format import load_dataset

    frame = load_dataset(root).manifest
    return dict(frame[frame["pair_id"] == pair_id].iloc[0])


# --------------------------------------------------------------------------- paired


def test_paired_items_shapes_ranges_evs_and_masks(tiny: Path) -> None:
    data = PairedDataset(tiny, "train")
    assert len(data) == 10 + 9  # two still scenes x 5 EVs, clips of 6 + 3 frames
    item = data[0]
    assert item["input"].shape == item["target"].shape == (3, H, W)
    assert item["mask"].shape == (1, H, W)
    for key in ("input", "target", "mask"):
        assert item[key].dtype == torch.float32
        assert float(item[key].min()) >= 0 and float(item[key].max()) <= 1
    assert set(item["mask"].unique().tolist()) == {0.0, 1.0}
    # make_dataset's mask: valid rows 2..H-3, columns 3..W-2.
    assert item["mask"][0, :2].sum() == 0 and item["mask"][0, 2:-2, 3:-1].min() == 1
    row = _manifest_row(tiny, data.describe(0)["pair_id"])
    assert float(item["input_ev"]) == row["input_ev"] and float(item["target_ev"]) == 0.0
    assert data.describe(0)["input_path"] == row["input_path"]
    # The darker input really is darker than its target.
    assert item["input"].mean() < item["target"].mean()


def test_rgb_order_and_16_bit_files(tiny: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(tiny, root)
    data = PairedDataset(root, "test")
    info = data.describe(0)
    red = np.zeros((H, W, 3), np.uint8)
    red[..., 2] = 255  # BGR on disk: pure red
    assert cv2.imwrite(str(root / str(info["input_path"])), red)
    blueish = np.zeros((H, W, 3), np.uint16)
    blueish[..., 0] = 65535  # blue, 16 bit
    blueish[..., 1] = 16384  # green at 0.25
    assert cv2.imwrite(str(root / str(info["target_path"])), blueish)
    item = data[0]
    assert item["input"][:, 5, 5].tolist() == [1.0, 0.0, 0.0]
    assert item["target"][:, 5, 5].tolist() == pytest.approx([0.0, 16384 / 65535, 1.0])
    assert read_rgb(root / str(info["target_path"])).dtype == np.uint16
    grey = root / "grey.png"
    cv2.imwrite(str(grey), np.full((4, 4), 7, np.uint8))
    assert read_rgb(grey).shape == (4, 4, 3)
    (root / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken\.png: not a readable image"):
        read_rgb(root / "broken.png")


def test_one_crop_and_flip_for_input_target_and_mask(tiny: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "coords"
    shutil.copytree(tiny, root)
    data = PairedDataset(root, "val", crop=(20, 24), flip=True, vflip=True, seed=3)
    yy, xx = np.mgrid[0:H, 0:W]
    coded = np.stack([np.zeros_like(xx), yy * 4, xx * 3], axis=2).astype(np.uint8)  # BGR
    checker = (((yy // 3 + xx // 5) % 2) * 255).astype(np.uint8)
    from expokit.curation.dataset.format import load_dataset

    for row in load_dataset(root).manifest.itertuples():
        if row.split == "val":
            cv2.imwrite(str(root / str(row.input_path)), coded)
            cv2.imwrite(str(root / str(row.target_path)), coded)
            cv2.imwrite(str(root / str(row.mask_path)), checker)
    flips = set()
    for index in range(40):
        item = data[index]
        assert item["input"].shape == (3, 20, 24)
        assert torch.equal(item["input"], item["target"])
        ys = (item["input"][1] * 255 / 4).round().long()
        xs = (item["input"][0] * 255 / 3).round().long()  # R: x * 3
        expected = ((ys // 3 + xs // 5) % 2).float()
        assert torch.equal(item["mask"][0], expected)
        flips.add((bool(xs[0, 0] > xs[0, -1]), bool(ys[0, 0] > ys[-1, 0])))
    assert flips == {(False, False), (True, False), (False, True), (True, True)}


def test_seeded_items_are_reproducible(tiny: Path) -> None:
    a = PairedDataset(tiny, "train", crop=16, flip=True, seed=7)
    b = PairedDataset(tiny, "train", crop=16, flip=True, seed=7)
    c = PairedDataset(tiny, "train", crop=16, flip=True, seed=8)
    assert all(torch.equal(a[i]["input"], b[i]["input"]) for i in range(5))
    assert any(not torch.equal(a[i]["input"], c[i]["input"]) for i in range(5))
    # A later draw of the same item (index + len) is the same pair, another crop.
    n = len(a)
    assert int(a[2 + n]["index"]) == 2
    assert any(not torch.equal(a[i]["input"], a[i + n]["input"]) for i in range(5))


def test_split_selection_and_errors(tiny: Path) -> None:
    assert {PairedDataset(tiny, s).describe(0)["scene_id"] for s in ("val", "test")} == {
        "kitchen",
        "lab.x",
    }
    assert len(PairedDataset(tiny, None)) == 34
    with pytest.raises(
        DataError, match=r"no split 'training'; the dataset has splits: test, train, val"
    ):
        PairedDataset(tiny, "training")
    assert len(PairedDataset(tiny, "train", scenes=["hall_2"])) == 5
    with pytest.raises(DataError, match=r"no scene.*kitchen"):
        PairedDataset(tiny, "train", scenes=["kitchen"])
    with pytest.raises(DataError, match="smaller than the crop 100x100"):
        PairedDataset(tiny, "train", crop=100)[0]
    with pytest.raises(DataError, match="crop"):
        PairedDataset(tiny, "train", crop=[1, 2, 3])
    with pytest.raises(DataError, match=r"unknown option.*colour"):
        open_dataset("paired", tiny, "train", colour=True)


def test_resize_and_collate_sizes(tiny: Path) -> None:
    item = PairedDataset(tiny, "train", resize=(24, 30))[0]
    assert item["input"].shape == (3, 24, 30) and item["mask"].shape == (1, 24, 30)
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    small = {"input": torch.zeros(3, 4, 4)}
    with pytest.raises(DataError, match=r"different sizes.*set crop or resize"):
        collate([small, {"input": torch.zeros(3, 4, 5)}])


# --------------------------------------------------------------------------- sequences


def test_sequences_from_a_built_dataset(sequences: Path) -> None:
    data = SequenceDataset(sequences, "train", crop=32, seed=1)
    assert [len(s.exposures) for s in data.sequences] == [5, 5, 5]
    assert [e.ev for e in data.sequences[0].exposures] == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert len(data) == 3 * 5 * 4 and data.weights is None  # every ordered pair, uniform
    for index in range(12):
        item = data[index]
        info = data.describe(index)
        assert item["input"].shape == item["reference"].shape == (3, 32, 32)
        assert torch.equal(item["reference"], item["target"])  # UEC trains this way
        assert float(item["input_ev"]) == info["input_ev"] != info["target_ev"]
        assert item["ref_dark"].mean() < item["ref_bright"].mean()
    # The monotonicity pair comes from another scene: none of this scene's exposures.
    data = SequenceDataset(sequences, "train", seed=1)
    for index in (0, 25, 50):
        item = data[index]
        scene = data.sequences[data.pairs[index][0]]
        own = [
            torch.from_numpy(read_rgb(data.dataset.path(e.path))).permute(2, 0, 1).float() / 255
            for e in scene.exposures
        ]
        assert not any(torch.allclose(item["ref_dark"], image) for image in own)
        assert any(torch.allclose(item["target"], image) for image in own)


def test_pair_weights_and_evaluation_protocol(sequences: Path) -> None:
    protocol = SequenceDataset.evaluation_protocol(sequences, "train", size=24)
    assert len(protocol) == 3 * 4  # inputs EV -2, -1, +1, +2; target the middle (EV 0)
    assert {p[2] for p in protocol.pairs} == {2} and {p[1] for p in protocol.pairs} == {0, 1, 3, 4}
    item = protocol[0]
    assert item["input"].shape == (3, 24, 24) and "ref_dark" not in item
    info = protocol.describe(0)
    assert info["reference_path"] != info["target_path"]
    # The reference is the *next* scene's middle exposure, at the target's size.
    s = protocol.pairs[0][0]
    other = protocol.sequences[(s + 1) % 3]
    assert info["reference_path"] == other.exposures[2].path
    weighted = SequenceDataset(
        sequences, "train", pair_weights={"middle_target": 3.0, "extremes": 1, "extreme_input": 2.0}
    )
    weights = dict(zip(weighted.pairs, weighted.weights or [], strict=True))
    assert weights[(0, 0, 2)] == 6.0 and weights[(0, 1, 2)] == 3.0
    assert weights[(0, 0, 1)] == 2.0 and weights[(0, 2, 1)] == 1.0
    with pytest.raises(DataError, match=r"unknown key.*middle"):
        PairWeights.from_value({"middle": 2.0})
    with pytest.raises(DataError, match="no pairs"):
        PairWeights(middle_target=0, other_target=0)


def test_sequence_errors_name_what_is_missing(tiny: Path, sequences: Path) -> None:
    with pytest.raises(
        DataError, match=r"model 'uec' needs multi-exposure sequences.*one exposure"
    ):
        open_dataset("uec", tiny, "train", scenes=["street"])
    with pytest.raises(DataError, match="at least two scenes"):
        SequenceDataset(sequences, "train", scenes=["scene1"])
    single = SequenceDataset(sequences, "train", scenes=["scene1"], other_pairs=False)
    assert set(single[0]) >= {"input", "target", "reference"}
    with pytest.raises(DataError, match="reference_from"):
        SequenceDataset(sequences, "train", reference_from="target")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- clips


def test_clip_windows_centre_and_edges(tiny: Path) -> None:
    data = ClipDataset(tiny, "train", num_frames=5, crop=16, seed=2)
    assert len(data) == 6 + 3  # one item per frame (edges clamped)
    item = data[0]
    assert item["frames"].shape == item["target_frames"].shape == (5, 3, 16, 16)
    assert item["frame_mask"].shape == (5, 1, 16, 16)
    assert torch.equal(item["input"], item["frames"][2]) and torch.equal(
        item["mask"], item["frame_mask"][2]
    )
    # Frame 0 is the centre: the window repeats it on the left.
    assert torch.equal(item["frames"][0], item["frames"][2])
    assert not torch.equal(item["frames"][3], item["frames"][2])  # the clip drifts
    assert data.describe(0)["frame_index"] == 0
    assert len(ClipDataset(tiny, "train", num_frames=5, edge="skip")) == 2  # c01 frames 2, 3
    with pytest.raises(DataError, match="odd"):
        ClipDataset(tiny, "train", num_frames=4)
    with pytest.raises(DataError, match=r"a clip loader needs video clips.*still pairs only"):
        ClipDataset(tiny, "val")


# --------------------------------------------------------------------------- sampling


def test_train_sampler_shards_ranks_and_resumes() -> None:
    n = 10
    streams = [TrainSampler(n, seed=4, rank=r, world_size=3) for r in range(3)]
    per_rank = 4  # ceil(10 / 3)
    first_epoch = [s.draw(p) % n for s in streams for p in range(per_rank)]
    assert set(first_epoch) == set(range(n))  # every item (two repeated as padding)
    draws = [s.draw(p) for s in streams for p in range(20)]
    assert len(set(draws)) == len(draws)  # every draw seeds its own augmentation
    later = TrainSampler(n, seed=4, rank=1, world_size=3, start=7)
    it = iter(later)
    assert [next(it) for _ in range(5)] == [streams[1].draw(p) for p in range(7, 12)]
    weighted = TrainSampler(3, weights=[1.0, 0.0, 9.0], seed=0)
    counts = np.bincount([weighted.draw(p) % 3 for p in range(600)], minlength=3)
    assert counts[1] == 0 and counts[2] > 6 * counts[0]


def test_make_loader_batches(tiny: Path, sequences: Path) -> None:
    loader = make_loader("paired", tiny, "train", batch_size=3, options={"crop": 16, "flip": True})
    batch = next(iter(loader))
    assert batch["input"].shape == (3, 3, 16, 16) and batch["input_ev"].shape == (3,)
    seq = make_loader("uec", sequences, "train", batch_size=2, options={"resize": 32})
    batch = next(iter(seq))
    assert set(batch) >= {"input", "target", "reference", "ref_dark", "ref_bright", "mask"}
    assert batch["ref_bright"].shape == (2, 3, 32, 32)
    evaluation = make_loader("paired", tiny, "test", train=False, batch_size=4)
    assert sum(len(b["index"]) for b in evaluation) == 5 + 5
