"""Exports: the trees parse with the peers' rules (MSEC, UEC, RECNet, DIME), sources verified."""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from pathlib import Path

import click
import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from expokit.cli.curate_tools import register
from expokit.core.atomic import TEMP_PREFIX
from expokit.core.ev import parse_ev_token
from expokit.core.hashing import sha256_file
from expokit.curation.dataset.format import MANIFEST_FILE, load_dataset
from expokit.curation.export.driver import export_dataset
from expokit.curation.export.layouts import (
    ExportError,
    check_msec_names,
    nearest_msec_token,
    to_uint8,
    unique_names,
)
from expokit.curation.export.peers import DIME_MIN_FRAMES
from expokit.curation.metrics import psnr
from tests.curation.conftest_tools import Spec, make_dataset

MSEC_TOKENS = ("N1.5", "N1", "0", "P1", "P1.5")
INPUT_RE = re.compile(r"^(?P<base>[^_]+_[^_]+)_(?P<token>N1\.5|N1|0|P1|P1\.5)\.JPG$")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export") / "ds"
    spec = Spec(
        stills={
            "beach_01": "train",
            "hall_2": "train",
            "kitchen": "val",
            "lab.x": "test",
            "Hall-2": "test",
        },
        clips=(
            ("street", "c01", 12, "train", -1.0),
            ("street", "c02", 3, "train", -1.0),
            ("park", "c01", 5, "test", 1.0),
            ("yard", "c09", 6, "val", -1.5),
        ),
    )
    make_dataset(root, spec)
    return root


def _cli(*args: str) -> tuple[int, str]:
    group = click.Group("curate")
    register(group)
    result = CliRunner().invoke(group, ["export", *args, "--no-progress"])
    return result.exit_code, result.output


def _no_temp_files(folder: Path) -> None:
    assert not [p for p in folder.rglob(f"{TEMP_PREFIX}*")]


# --------------------------------------------------------------------------- msec


def _parse_msec(split_dir: Path) -> dict[str, dict[str, Path]]:
    """Parse a split folder exactly as the MSEC/UEC/RECNet loaders do; return
    UEC group key -> token -> input file."""
    groups: dict[str, dict[str, Path]] = defaultdict(dict)
    for file in sorted((split_dir / "INPUT_IMAGES").iterdir()):
        match = INPUT_RE.match(file.name)
        assert match, f"{file.name} does not follow <unique>_<tag>_<EV>.JPG"
        stem = file.name[: -len(".JPG")]
        # MSEC: GT = input name minus its last '_' field, plus lower-case .jpg
        gt_name = stem.rsplit("_", 1)[0] + ".jpg"
        assert (split_dir / "GT_IMAGES" / gt_name).is_file(), gt_name
        # RECNet buckets by the last '_' token, which must be an EV token
        assert stem.rsplit("_", 1)[1] in MSEC_TOKENS
        # UEC: group key = name minus its last two '_' fields
        key = stem.rsplit("_", 2)[0]
        assert key and key != "_" and "_" not in key
        assert match["token"] not in groups[key], f"two inputs of {key} share a token"
        groups[key][match["token"]] = file
    return groups


def test_msec_tree_parses_with_peer_rules(pristine: Path, tmp_path: Path) -> None:
    out = tmp_path / "msec"
    # video frames have one EV each: not MSEC scenes (five inputs), skipped with allow_partial
    summary = export_dataset(pristine, out, "msec", progress=False, allow_partial=True)
    assert summary.ok, [str(i) for i in summary.issues]
    dataset = load_dataset(pristine)
    assert summary.rows_exported == int(dataset.manifest["clip_id"].isna().sum())
    # .expokit/ holds the folder's marker and lock (hidden; peers' loaders never list it)
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != ".expokit") == [
        "testing",
        "training",
        "validation",
    ]
    every_name: list[str] = []
    for split_dir in ("training", "validation", "testing"):
        groups = _parse_msec(out / split_dir)
        gts = sorted(p.name for p in (out / split_dir / "GT_IMAGES").iterdir())
        # one UEC group per GT image, and back
        assert sorted(f"{key}_EXPK.jpg" for key in groups) == gts
        for key, members in groups.items():
            sizes = {cv2.imread(str(f)).shape for f in members.values()}
            gt = cv2.imread(str(out / split_dir / "GT_IMAGES" / f"{key}_EXPK.jpg"))
            assert len(sizes) == 1 and gt.shape in sizes  # UEC does not resize
        every_name += [g[: -len(".jpg")] for g in gts]
    # no name is a prefix of another (MSEC globs <name>*), across splits too
    check_msec_names(every_name)
    for a in every_name:
        assert not any(b != a and b.lower().startswith(a.lower()) for b in every_name)
    # still scenes keep all five tokens; names are sanitised, unique part first
    train = _parse_msec(out / "training")
    assert set(train["beach-01"]) == set(MSEC_TOKENS)
    testing = _parse_msec(out / "testing")
    # "Hall-2" (test) and "hall_2" (train) clash on case-insensitive file systems
    assert set(train["hall-2-2"]) == set(MSEC_TOKENS)
    assert "lab-x" in testing and "Hall-2" in testing
    assert "kitchen" in _parse_msec(out / "validation")
    # every test GT is also in expert_c_testing_set, byte for byte
    expert = out / "testing" / "expert_c_testing_set"
    gts = sorted((out / "testing" / "GT_IMAGES").iterdir())
    assert sorted(p.name for p in expert.iterdir()) == [p.name for p in gts]
    for gt in gts:
        assert (expert / gt.name).read_bytes() == gt.read_bytes()
    assert not (out / "training" / "expert_c_testing_set").exists()
    # tokens follow input_ev - target_ev, and pixels match the source
    frame = dataset.manifest.set_index("pair_id")
    row = frame.loc["beach_01/ev-1.5"]
    source = cv2.imread(str(pristine / row["input_path"]))
    exported = cv2.imread(str(train["beach-01"]["N1.5"]))
    assert psnr(source, exported) > 35  # JPEG quality 95
    # a video frame with one EV is incomplete: named, not written
    assert "street-c01-f00000" not in train
    assert {i.reason for i in summary.skipped if "street-c01-f00000" in i.message} == {
        "incomplete-scene"
    }
    # export record and card
    record = json.loads((out / "export.json").read_text())
    assert record["layout"] == "msec"
    assert record["files"]["testing/GT_IMAGES/lab-x_EXPK.jpg"] == sha256_file(
        out / "testing/GT_IMAGES/lab-x_EXPK.jpg"
    )
    card = (out / "README.md").read_text()
    assert "## This export: `msec` layout" in card and "expert_c_testing_set" in card
    _no_temp_files(out)


def test_msec_rounds_to_nearest_token_and_skips_the_rest(tmp_path: Path) -> None:
    spec = Spec(
        stills={"s": "train", "v": "val", "t": "test"},
        evs=(-2.5, -1.4, -1.1, -0.5, 0.1, 0.9, 1.6, 2.2),
        clips=(),
    )
    make_dataset(tmp_path / "ds", spec)
    summary = export_dataset(tmp_path / "ds", tmp_path / "out", "msec", progress=False)
    assert summary.ok  # skipped rows are warnings, not failures
    names = sorted(p.name for p in (tmp_path / "out/training/INPUT_IMAGES").iterdir())
    # -1.4 -> N1.5, -1.1 -> N1, 0.1 -> 0, 0.9 -> P1, 1.6 -> P1.5; -2.5, -0.5, 2.2: no MSEC EV
    assert names == [f"s_EXPK_{t}.JPG" for t in ("0", "N1.5", "N1", "P1.5", "P1")]
    reasons = {i.pair_id: i.reason for i in summary.skipped if i.pair_id.startswith("s/")}
    assert reasons == {
        "s/ev-2.5": "ev-not-representable",
        "s/ev-0.5": "ev-not-representable",
        "s/ev+2.2": "ev-not-representable",
    }
    assert summary.counts_by_reason() == {"skipped:ev-not-representable": 9}
    assert (
        "skipped:ev-not-representable"
        in json.loads((tmp_path / "out/export.json").read_text())["counts"]
    )
    code, output = _cli(str(tmp_path / "ds"), "--layout", "msec", "--out", str(tmp_path / "o2"))
    assert code == 0 and "9 row(s) skipped (9 ev-not-representable)" in output


def test_msec_token_taken_keeps_the_closest(tmp_path: Path) -> None:
    spec = Spec(stills={"s": "train"}, evs=(-1.2, -0.9, 0.0), clips=())
    make_dataset(tmp_path / "ds", spec)
    summary = export_dataset(tmp_path / "ds", tmp_path / "out", "msec", progress=False)
    assert [(i.pair_id, i.reason) for i in summary.skipped] == [("s/ev-1.2", "token-taken")]
    assert "s/ev-0.9" in summary.skipped[0].message


def test_nearest_token_and_name_rules() -> None:
    assert [nearest_msec_token(v) for v in (-1.5, -1.26, -1.24, 0.2, 1.3, 1.9)] == [
        "N1.5",
        "N1.5",
        "N1",
        "0",
        "P1.5",
        None,
    ]
    assert nearest_msec_token(float("nan")) is None
    assert parse_ev_token(nearest_msec_token(0.9, tolerance=0.1) or "") == 1.0
    with pytest.raises(ExportError, match="prefix"):
        check_msec_names(["ab_EXPK", "ab_EXPKX"])
    with pytest.raises(ExportError, match="exactly one"):
        check_msec_names(["a_b_EXPK"])
    with pytest.raises(ExportError, match="exactly one"):
        check_msec_names(["abc"])
    names = unique_names({1: "foo", 2: "Foo", 3: "foo-2"})
    assert len({n.lower() for n in names.values()}) == 3


def test_msec_copies_jpeg_sources_unchanged(tmp_path: Path) -> None:
    spec = Spec(stills={"s": "test"}, clips=(), ext=".jpg")
    dataset = make_dataset(tmp_path / "ds", spec)
    export_dataset(dataset, tmp_path / "out", "msec", progress=False)
    row = dataset.manifest.set_index("pair_id").loc["s/ev+1.0"]
    exported = tmp_path / "out/testing/INPUT_IMAGES/s_EXPK_P1.JPG"
    assert exported.read_bytes() == (tmp_path / "ds" / row["input_path"]).read_bytes()


# --------------------------------------------------------------------------- dime


def test_dime_tree_pairs_by_sorted_position(pristine: Path, tmp_path: Path) -> None:
    out = tmp_path / "dime"
    summary = export_dataset(pristine, out, "dime", progress=False)
    assert summary.ok
    for split in ("train", "test"):
        lq_clips = sorted(p.name for p in (out / "np" / split / "LQ").iterdir())
        gt_clips = sorted(p.name for p in (out / "np" / split / "GT").iterdir())
        assert lq_clips == gt_clips and lq_clips
        for clip in lq_clips:
            lq = sorted(p.name for p in (out / "np" / split / "LQ" / clip).iterdir())
            gt = sorted(p.name for p in (out / "np" / split / "GT" / clip).iterdir())
            assert lq == gt  # DIME pairs by sorted position and asserts equal counts
            assert len(lq) >= DIME_MIN_FRAMES
            assert all(re.fullmatch(r"\d{5}\.png", n) for n in lq)  # lower-case, zero-padded
            assert re.fullmatch(r"\d{3}", clip)
            assert lq == sorted(lq, key=lambda n: int(n[:-4]))  # text order = frame order
    # street/c01 has 12 frames: 00010 sorts after 00009
    index = list(csv.DictReader((out / "dime_clips.csv").open()))
    street = next(r for r in index if r["scene_id"] == "street" and r["clip_id"] == "c01")
    frames = sorted((out / "np/train/LQ" / street["clip"]).iterdir())
    assert [p.name for p in frames][-3:] == ["00009.png", "00010.png", "00011.png"]
    # LQ frame = the row's input, GT frame = its target
    dataset = load_dataset(pristine)
    row = dataset.manifest.set_index("pair_id").loc["street/c01/00010"]
    lq = cv2.imread(str(frames[-2]))
    assert np.array_equal(lq, cv2.imread(str(pristine / row["input_path"])))
    # short clip and val clip skipped, stills skipped
    reasons = {(i.pair_id, i.reason) for i in summary.skipped}
    assert ("street/c02/00000", "short-clip") in reasons
    assert ("yard/c09/00000", "split") in reasons
    assert ("beach_01/ev-1.5", "not-a-frame") in reasons
    assert {r["scene_id"] for r in index} == {"street", "park"}
    assert "dime" in (out / "README.md").read_text()
    _no_temp_files(out)


def test_dime_val_into_test(pristine: Path, tmp_path: Path) -> None:
    summary = export_dataset(pristine, tmp_path / "d", "dime", dime_val="test", progress=False)
    index = list(csv.DictReader((tmp_path / "d/dime_clips.csv").open()))
    yard = next(r for r in index if r["scene_id"] == "yard")
    assert yard["split"] == "val" and yard["dime_split"] == "test"
    assert len(list((tmp_path / "d/np/test/GT" / yard["clip"]).iterdir())) == 6
    assert summary.ok


def test_dime_duplicate_frame_index_is_an_error(root: Path, tmp_path: Path) -> None:
    frame = pd.read_parquet(root / MANIFEST_FILE)
    clip = frame.index[(frame["scene_id"] == "park")]
    frame.loc[clip[1], "frame_index"] = 0
    frame.to_parquet(root / MANIFEST_FILE, index=False)
    summary = export_dataset(root, tmp_path / "d", "dime", progress=False)
    errors = [(i.reason, i.pair_id) for i in summary.errors]
    assert errors == [("frame-count-mismatch", "park/c01/00000")]
    assert "frame_index [0] appears more than once" in summary.errors[0].message
    assert not (tmp_path / "d/np/test").exists()  # nothing half-written for that clip
    code, output = _cli(str(root), "--layout", "dime", "--out", str(tmp_path / "d2"))
    assert code == 1 and "park/c01" in output


def test_dime_removes_a_clip_whose_frame_fails(root: Path, tmp_path: Path) -> None:
    frame = pd.read_parquet(root / MANIFEST_FILE)
    row = frame[frame["pair_id"] == "street/c01/00007"].iloc[0]
    (root / row["target_path"]).unlink()
    summary = export_dataset(root, tmp_path / "d", "dime", progress=False)
    assert [(i.reason, i.pair_id, i.file) for i in summary.errors] == [
        ("missing-file", "street/c01/00007", row["target_path"])
    ]
    # the other clip is there; street/c01 is gone entirely from LQ and GT
    assert not (tmp_path / "d/np/train").exists()
    assert not any(rel.startswith("np/train") for rel in summary.files)
    assert (tmp_path / "d/np/test/LQ").is_dir()


# --------------------------------------------------------------------------- sequences


def test_sequences_folders_in_exposure_order(pristine: Path, tmp_path: Path) -> None:
    out = tmp_path / "seq"
    summary = export_dataset(pristine, out, "sequences", progress=False)
    assert summary.ok
    beach = sorted(p.name for p in (out / "train" / "beach-01").iterdir())
    assert beach == [
        "01_N1.5.png",
        "02_N1.png",
        "03_0.png",
        "04_0_target.png",
        "05_P1.png",
        "06_P1.5.png",
    ]
    evs = [parse_ev_token(n.split("_")[1].split(".png")[0]) for n in beach]
    assert evs == sorted(evs)
    rows = list(csv.DictReader((out / "sequences.csv").open()))
    first = next(r for r in rows if r["folder"] == "beach-01" and r["rank"] == "1")
    assert first["pair_ids"] == "beach_01/ev-1.5" and first["role"] == "input"
    # copied byte for byte
    source = pristine / first["source"]
    assert (out / "train/beach-01/01_N1.5.png").read_bytes() == source.read_bytes()
    # a video frame: its input (EV -1) before its target (EV 0)
    assert sorted(p.name for p in (out / "train/street-c01-f00003").iterdir()) == [
        "01_N1.png",
        "02_0_target.png",
    ]
    _no_temp_files(out)


# --------------------------------------------------------------------------- verification


def test_export_verifies_source_sha256(root: Path, tmp_path: Path) -> None:
    frame = pd.read_parquet(root / MANIFEST_FILE)
    row = frame[frame["pair_id"] == "kitchen/ev+1.0"].iloc[0]
    path = root / row["input_path"]
    cv2.imwrite(str(path), 255 - cv2.imread(str(path)))
    corrupt = frame[frame["pair_id"] == "kitchen/ev-1.0"].iloc[0]
    (root / corrupt["input_path"]).write_bytes(b"not an image")
    frame.loc[frame["pair_id"] == "kitchen/ev-1.0", "input_sha256"] = sha256_file(
        root / corrupt["input_path"]
    )
    frame.to_parquet(root / MANIFEST_FILE, index=False)
    summary = export_dataset(root, tmp_path / "m", "msec", progress=False)
    assert not summary.ok
    errors = {(i.reason, i.pair_id, i.file) for i in summary.errors}
    assert {
        ("sha256-mismatch", "kitchen/ev+1.0", row["input_path"]),
        ("corrupt-image", "kitchen/ev-1.0", corrupt["input_path"]),
    } <= errors
    # a scene is written whole or not at all; validation/ is then empty, which the peer
    # check reports
    assert not list((tmp_path / "m").glob("validation/INPUT_IMAGES/kitchen*"))
    assert any(
        i.reason == "peer-convention" and "validation/INPUT_IMAGES" in i.message
        for i in summary.errors
    )
    code, output = _cli(str(root), "--layout", "msec", "--out", str(tmp_path / "m2"))
    assert code == 1
    assert "kitchen/ev+1.0" in output and row["input_path"] in output


def test_scene_in_two_splits_is_refused(root: Path, tmp_path: Path) -> None:
    frame = pd.read_parquet(root / MANIFEST_FILE)
    frame.loc[frame["pair_id"] == "lab.x/ev+1.0", "split"] = "train"
    frame.to_parquet(root / MANIFEST_FILE, index=False)
    with pytest.raises(ExportError, match=r"scene 'lab.x' is in 2 splits .*lab.x/ev\+1.0"):
        export_dataset(root, tmp_path / "m", "msec", progress=False)
    assert not (tmp_path / "m").exists()
    code, output = _cli(str(root), "--layout", "sequences", "--out", str(tmp_path / "s"))
    assert code == 1 and "scene 'lab.x' is in 2 splits" in output


def test_out_folder_rules_and_reexport(pristine: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not empty"):
        export_dataset(pristine, foreign, "msec", progress=False)
    assert (foreign / "mine.txt").read_text() == "keep me"
    with pytest.raises(ExportError, match="dataset root"):
        export_dataset(pristine, pristine, "msec", progress=False)
    with pytest.raises(ExportError, match="unknown layout"):
        export_dataset(pristine, tmp_path / "x", "coco", progress=False)
    # a second export into the same folder replaces it: no stale files survive
    out = tmp_path / "again"
    export_dataset(pristine, out, "sequences", progress=False)
    export_dataset(pristine, out, "msec", progress=False)
    assert not (out / "sequences.csv").exists() and not (out / "train").exists()
    record = json.loads((out / "export.json").read_text())
    on_disk = {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and ".expokit" not in p.parts
    } - {"export.json"}
    assert on_disk == set(record["files"])


def test_to_uint8_handles_16_bit_grey_and_alpha() -> None:
    sixteen = np.full((4, 5, 3), 65535, np.uint16)
    assert to_uint8(sixteen).dtype == np.uint8 and to_uint8(sixteen).max() == 255
    assert to_uint8(np.full((4, 5), 257 * 10, np.uint16))[0, 0].tolist() == [10, 10, 10]
    assert to_uint8(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)
    assert to_uint8(np.full((2, 2, 3), 0.5, np.float32))[0, 0, 0] == 128
