"""Issue 11: MSEC exports the peers' own loaders accept.

Every exported scene has the five inputs ``N1.5 N1 0 P1 P1.5`` (``_0`` included) and its GT;
``training``, ``validation`` and ``testing`` (with ``expert_c_testing_set``) exist; rank EVs
never become tokens without ``--rank-map``; an incomplete scene is named and fails the export.
The peers' grouping rules are re-implemented here the way their code does it and asserted on
the exported folders.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import click
import cv2
import pandas as pd
import pytest
from click.testing import CliRunner

from expokit.cli.curate_tools import register
from expokit.curation.build.config import BuildConfig
from expokit.curation.build.driver import build_dataset
from expokit.curation.build.splits import (
    SplitSpec,
    assign_splits,
    hash_fraction,
    split_intervals,
)
from expokit.curation.dataset.format import MANIFEST_FILE, load_dataset
from expokit.curation.export.driver import export_dataset
from expokit.curation.export.layouts import ExportError
from expokit.curation.export.peers import check_msec_peers
from expokit.curation.rendering.config import RenderConfig
from expokit.curation.rendering.render import render_batch
from tests.curation.conftest_tools import MSEC_EVS, Spec, _radiance, make_dataset, render

DEMO = Path(__file__).resolve().parents[3] / "curation" / "data" / "demo_raw"
TOKENS = ("N1.5", "N1", "0", "P1", "P1.5")
#: UEC sorts each group by these suffixes and indexes positions 0..4.
UEC_SUFFIXES = ("N1.5.JPG", "N1.JPG", "0.JPG", "P1.JPG", "P1.5.JPG")
#: Ten scene ids whose hash points alone give no test scene (u < 0.9 for all, default salt).
TEN = tuple(f"seq-{i:02d}" for i in range(10))


def _cli(command: str, *args: str) -> tuple[int, str]:
    group = click.Group("curate")
    register(group)
    result = CliRunner().invoke(group, [command, *args, "--no-progress"])
    return result.exit_code, result.output


def assert_peers_accept(out: Path) -> dict[str, dict[str, list[str]]]:
    """The peers' rules, as their code applies them; returns split -> UEC key -> files."""
    found: dict[str, dict[str, list[str]]] = {}
    for split in ("training", "validation", "testing"):
        inputs = out / split / "INPUT_IMAGES"
        assert inputs.is_dir() and (out / split / "GT_IMAGES").is_dir(), split
        files = sorted(p.name for p in inputs.iterdir())
        assert files, f"{split}/INPUT_IMAGES is empty"
        # UEC: key = name minus its last two "_" fields; five per group, one image size
        groups: dict[str, list[str]] = defaultdict(list)
        for name in files:
            groups["_".join(name.split("_")[:-2]) + "_"].append(name)
        for key, members in groups.items():
            assert key != "_" and len(members) == 5, (key, members)
            ordered = [next(m for m in members if m.endswith("_" + s)) for s in UEC_SUFFIXES]
            sizes = {cv2.imread(str(inputs / m)).shape for m in ordered}
            assert len(sizes) == 1, (key, sizes)
        # MSEC: GT = input name minus its last "_" field + ".jpg"; glob <name>* = its inputs
        for name in files:
            stem = name[: -len(".JPG")]
            gt = "_".join(stem.split("_")[:-1]) + ".jpg"
            assert (out / split / "GT_IMAGES" / gt).is_file(), gt
            if split == "testing":
                assert (out / split / "expert_c_testing_set" / gt).is_file(), gt
            base = gt[: -len(".jpg")]
            assert len([f for f in files if f.startswith(base)]) == 5, base
        # RECNet: bucket by the last "_" token; every bucket (0 included) holds every scene
        buckets: dict[str, set[str]] = defaultdict(set)
        for name in files:
            buckets[name[: -len(".JPG")].split("_")[-1]].add(name.rsplit("_", 1)[0])
        assert set(buckets) == set(TOKENS)
        assert all(b == buckets["0"] for b in buckets.values())
        found[split] = dict(groups)
    assert check_msec_peers(out) == []
    return found


# --------------------------------------------------------------------------- splits


def test_hash_splits_give_every_split_a_scene() -> None:
    spec = SplitSpec()
    plain = {s: hash_fraction(s, spec.salt) for s in TEN}
    assert max(plain.values()) < 0.9  # hashing alone: no test scene (the case)
    first = assign_splits(TEN, spec)
    assert set(first.values()) == {"train", "val", "test"}
    assert assign_splits(list(reversed(TEN)), spec) == first  # stable, order-free
    # exactly one scene moved: the one nearest the test interval [0.9, 1) among the scenes
    # of a split that keeps one (val holds a single scene here, so it comes from train)
    assert sum(0.8 <= u < 0.9 for u in plain.values()) == 1
    moved = [s for s in TEN if first[s] == "test"]
    assert moved == [max((s for s in TEN if plain[s] < 0.8), key=lambda s: plain[s])]
    assert all(first[s] == ("train" if plain[s] < 0.8 else "val") for s in TEN if s not in moved)
    assert split_intervals(spec)["test"] == pytest.approx((0.9, 1.0))
    # fewer scenes than splits: the hash decides alone
    assert assign_splits(TEN[:2], spec) == {s: "train" for s in TEN[:2] if plain[s] < 0.8} | {
        s: "val" for s in TEN[:2] if 0.8 <= plain[s] < 0.9
    }
    # a zero fraction stays empty; scenes kept from an earlier build never move
    zero = SplitSpec(fractions=(("train", 0.9), ("val", 0.0), ("test", 0.1)))
    assert "val" not in assign_splits(TEN, zero).values()
    kept = assign_splits(TEN[:3], spec, kept={"old-1": "train", "old-2": "train"})
    assert kept["old-1"] == kept["old-2"] == "train" and set(kept.values()) >= {"val", "test"}
    assert "each empty non-zero split" in spec.to_dict()["rule"]


# --------------------------------------------------------------------------- render


@pytest.fixture(scope="module")
def render_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's path: the four demo DNGs rendered to the MSEC ladder, then built."""
    base = tmp_path_factory.mktemp("render")
    summary = render_batch(
        sorted(DEMO.glob("*.dng")), base / "msec", RenderConfig(layout="msec"), progress=False
    )
    assert summary.ok
    built = build_dataset([base / "msec"], base / "ds", BuildConfig(max_side=160), progress=False)
    assert built.ok, built.failures
    return base / "ds"


def test_render_dataset_exports_five_inputs_per_scene(render_dataset: Path, tmp_path: Path) -> None:
    frame = load_dataset(render_dataset).manifest
    assert (frame["target_ev"] == 0).all() and 0.0 not in set(frame["input_ev"])  # no EV-0 row
    assert set(frame.groupby("scene_id")["split"].first()) == {"train", "val", "test"}
    out = tmp_path / "msec"
    code, output = _cli("export", str(render_dataset), "--layout", "msec", "--out", str(out))
    assert code == 0, output
    groups = assert_peers_accept(out)
    assert sum(len(g) for g in groups.values()) == frame["scene_id"].nunique() == 4
    # _0.JPG is the EV-0 image, i.e. the target (its GT) byte for byte
    for split, keyed in groups.items():
        for key in keyed:
            zero = out / split / "INPUT_IMAGES" / f"{key}EXPK_0.JPG"
            gt = out / split / "GT_IMAGES" / f"{key}EXPK.jpg"
            assert zero.read_bytes() == gt.read_bytes()
    record = json.loads((out / "export.json").read_text())
    assert record["options"]["rank_map"] is None and not record["issues"]
    assert "use their target (an EV-0 exposure) as the _0 input" in (out / "README.md").read_text()
    # curate validate on the export folder runs the same peer check
    code, output = _cli("validate", str(out))
    assert code == 0, output
    victim = next((out / "training" / "INPUT_IMAGES").glob("*_0.JPG"))
    victim.unlink()
    code, output = _cli("validate", str(out))
    assert code == 1
    assert "RECNet bucket '0'" in output and "UEC group" in output and victim.name in output


# --------------------------------------------------------------------------- sequences


def _write_sequences(folder: Path, scenes: dict[str, int]) -> Path:
    """SICE-style folders of EXIF-less JPEGs (so EVs are ranks), ``scene -> exposures``."""
    for seed, (scene, count) in enumerate(scenes.items(), start=1):
        radiance = _radiance(seed, 48, 64)
        (folder / scene).mkdir(parents=True)
        for i in range(count):
            ev = (i - (count - 1) // 2) * 0.7
            assert cv2.imwrite(str(folder / scene / f"{i + 1}.jpg"), render(radiance, ev))
    return folder


@pytest.fixture(scope="module")
def rank_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("seq")
    source = _write_sequences(base / "src", {scene: 7 for scene in TEN})
    config = BuildConfig(max_side=64)
    built = build_dataset([source], base / "ds", config, progress=False, durable=False)
    assert built.ok, built.failures
    return base / "ds"


def test_rank_evs_are_refused_without_a_map(rank_dataset: Path, tmp_path: Path) -> None:
    dataset = load_dataset(rank_dataset)
    assert dataset.info.sources[0]["ev_basis"] == ["rank"]
    # a 10-scene dataset gets a test split (hashing alone gave it none)
    splits = dataset.manifest.groupby("scene_id")["split"].first()
    assert set(splits) == {"train", "val", "test"}
    with pytest.raises(ExportError, match="--rank-map nearest5") as info:
        export_dataset(rank_dataset, tmp_path / "refused", "msec", progress=False)
    assert "ev_basis: rank" in str(info.value) and "seq-00" in str(info.value)
    assert not (tmp_path / "refused" / "export.json").exists()
    code, output = _cli(
        "export", str(rank_dataset), "--layout", "msec", "--out", str(tmp_path / "c")
    )
    assert code == 1 and "--rank-map nearest5" in output


def test_rank_map_nearest5_is_explicit_and_recorded(rank_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "msec"
    code, output = _cli(
        "export", str(rank_dataset), "--layout", "msec", "--out", str(out), "--rank-map", "nearest5"
    )
    assert code == 0, output
    groups = assert_peers_accept(out)
    assert sum(len(g) for g in groups.values()) == 10
    record = json.loads((out / "export.json").read_text())
    mapping = record["options"]["rank_map"]
    assert mapping["name"] == "nearest5" and mapping["scenes"] == sorted(TEN)
    assert mapping["ranks"] == {"-2": "N1.5", "-1": "N1", "+0": "0", "+1": "P1", "+2": "P1.5"}
    # ranks -3 and +3 (the outermost of seven) are skipped, by name
    assert record["counts"]["skipped:rank-not-mapped"] == 20
    assert "rank -2 -> N1.5" in (out / "README.md").read_text()
    # rank -2 of seq-00 (its 2nd file, since the target is the 4th) became N1.5
    frame = load_dataset(rank_dataset).manifest.set_index("pair_id")
    row = frame[(frame["scene_id"] == "seq-00") & (frame["input_ev"] == -2.0)].iloc[0]
    split = {"train": "training", "val": "validation", "test": "testing"}[row["split"]]
    exported = cv2.imread(str(out / split / "INPUT_IMAGES" / "seq-00_EXPK_N1.5.JPG"))
    source = cv2.imread(str(rank_dataset / row["input_path"]))
    assert cv2.PSNR(source, exported) > 35


# --------------------------------------------------------------------------- incomplete


def test_scene_missing_a_token_is_named_and_fails(tmp_path: Path) -> None:
    spec = Spec(
        stills={"alpha": "train", "bravo": "val", "charlie": "test", "delta": "train"},
        evs=MSEC_EVS,
        clips=(),
    )
    make_dataset(tmp_path / "ds", spec)
    frame = pd.read_parquet(tmp_path / "ds" / MANIFEST_FILE)
    frame = frame[~frame["pair_id"].isin(["delta/ev-1.5", "delta/ev+1.0"])]
    frame.to_parquet(tmp_path / "ds" / MANIFEST_FILE, index=False)
    out = tmp_path / "out"
    code, output = _cli("export", str(tmp_path / "ds"), "--layout", "msec", "--out", str(out))
    assert code == 1
    assert "scene 'delta'" in output and "lacks input(s) N1.5 P1 " in output
    assert "--allow-partial" in output
    assert not list(out.glob("*/INPUT_IMAGES/delta*")) and not list(out.glob("*/GT_IMAGES/delta*"))
    assert_peers_accept(out)  # what was written is still complete
    shutil.rmtree(out)
    code, output = _cli(
        "export", str(tmp_path / "ds"), "--layout", "msec", "--out", str(out), "--allow-partial"
    )
    assert code == 0, output
    assert "scene 'delta'" in output and not list(out.glob("*/INPUT_IMAGES/delta*"))
    record = json.loads((out / "export.json").read_text())
    assert record["options"]["allow_partial"] is True
    assert record["counts"]["skipped:incomplete-scene"] == 1


def test_missing_split_folder_is_an_error(tmp_path: Path) -> None:
    spec = Spec(stills={"alpha": "train", "bravo": "train", "charlie": "val"}, clips=())
    make_dataset(tmp_path / "ds", spec)
    summary = export_dataset(tmp_path / "ds", tmp_path / "out", "msec", progress=False)
    assert not summary.ok
    messages = [i.message for i in summary.errors if i.reason == "peer-convention"]
    assert any(m.startswith("testing/INPUT_IMAGES/ is missing") for m in messages)
    assert any("expert_c_testing_set" in m for m in messages)
    code, output = _cli("validate", str(tmp_path / "out"))
    assert code == 1 and "testing/INPUT_IMAGES/ is missing" in output
