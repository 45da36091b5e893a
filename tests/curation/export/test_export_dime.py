"""Issue 11: the DIME export, checked against VECNet's own data code, and ``--rank-map`` for
the sequences layout.

VECNet (github.com/kravrolens/VECNet) reads ``np/{train,test}/{LQ,GT}/<clip>/<frame>``:
``data/util.py`` ``glob_file_list`` = ``sorted(glob(root/'*'))`` for clips and frames,
``data/VEC_dataset.py`` pairs LQ/GT clips with ``zip`` and frames by position (asserting equal
counts), ``index_generation(..., padding='new_info')`` reads 5-frame windows, ``read_img2``
decodes ``.png``/``.jpg``/``.npy`` only, and ``test.py`` divides by ``len(clips) - 10``.
:func:`vecnet_items` below re-implements exactly that and is run on real exports.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil
from pathlib import Path

import click
import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from expokit.calibration.sync import frame_map
from expokit.calibration.sync_record import SyncResult, write_sync_json
from expokit.capture.commands import shoot
from expokit.capture.rig_config import load_rig_config
from expokit.cli.curate_tools import register
from expokit.core.video_io import probe_media
from expokit.curation.build.config import BuildConfig
from expokit.curation.build.driver import build_dataset
from expokit.curation.dataset.format import MANIFEST_FILE, load_dataset
from expokit.curation.export.driver import export_dataset
from expokit.curation.export.layouts import ExportError
from expokit.curation.export.peers import VECNET_OVER_CLIPS, check_dime_peers
from expokit.curation.export.validate import is_export_folder, validate_export
from tests.capture.conftest import write_rig
from tests.curation.build.test_build_capture import write_rig_calibration
from tests.curation.conftest_tools import Spec, make_dataset
from tests.curation.export.test_export_msec_peers import _write_sequences

N_FRAMES = 5  # VECNet's configs: N_frames: 5, padding: new_info


def _cli(command: str, *args: str) -> tuple[int, str]:
    group = click.Group("curate")
    register(group)
    extra = ["--no-progress"]
    result = CliRunner().invoke(group, [command, *args, *extra])
    return result.exit_code, result.output


# --------------------------------------------------------------------------- VECNet, re-implemented


def _glob_file_list(root: str) -> list[str]:
    # data/util.py glob_file_list, verbatim in behaviour (str paths, glob's own sort order)
    return sorted(glob.glob(os.path.join(root, "*")))  # noqa: PTH207, PTH118


def _index_generation(crt_i: int, max_n: int, n: int) -> list[int]:
    """data/util.py index_generation with padding='new_info' (VECNet's configs)."""
    max_n = max_n - 1
    n_pad = n // 2
    out = []
    for i in range(crt_i - n_pad, crt_i + n_pad + 1):
        if i < 0:
            out.append((crt_i + n_pad) + (-i))
        elif i > max_n:
            out.append((crt_i - n_pad) - (i - max_n))
        else:
            out.append(i)
    return out


def vecnet_items(split_root: Path) -> list[tuple[str, list[str], str]]:
    """``VidExCrDataset`` over ``np/<split>``: (clip, the 5 LQ paths, the GT path) per item,
    with VECNet's own assertions plus the ones that would crash it later (an index out of the
    clip, a frame ``read_img2`` cannot decode)."""
    items = []
    subs_lq = _glob_file_list(str(split_root / "LQ"))
    subs_gt = _glob_file_list(str(split_root / "GT"))
    for sub_lq, sub_gt in zip(subs_lq, subs_gt):  # noqa: B905 - VECNet's zip
        folder = os.path.basename(sub_gt)  # noqa: PTH119 - as VECNet does
        paths_lq, paths_gt = _glob_file_list(sub_lq), _glob_file_list(sub_gt)
        max_idx = len(paths_lq)
        assert max_idx == len(paths_gt), "Different number of images in LQ and GT folders"
        for idx in range(max_idx):
            select = _index_generation(idx, max_idx, N_FRAMES)
            assert all(0 <= s < max_idx for s in select), (folder, idx, select)
            lq = [paths_lq[s] for s in select]
            gt = paths_gt[idx : idx + 1][0]
            assert all(p.endswith((".png", ".jpg", ".npy")) for p in [*lq, gt])
            items.append((folder, lq, gt))
    return items


# --------------------------------------------------------------------------- a video dataset


def _write_sync(session_root: Path) -> None:
    files = sorted((session_root / "files").glob("*.avi"))
    reference = next(f for f in files if "_reference_" in f.name)
    test = next(f for f in files if "_test_" in f.name)
    media_a, media_b = probe_media(test), probe_media(reference)
    result = SyncResult(
        media_a=media_a, media_b=media_b, method="brightness", offset_s=0.0, confidence=1.0,
        peak_correlation=1.0, rate_hz=10.0,
        frame_map=frame_map(media_a.frame_times, media_b.frame_times, 0.0),
    )  # fmt: skip
    write_sync_json(result, session_root / "sync.json")


@pytest.fixture(scope="module")
def video_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake-rig movie session (1 s at 10 Hz: 10 frames) built into a video dataset through
    sync.json and a rig calibration; its frames 5..9 are then made a second clip of another
    scene in test (the fake bodies film one scene, so a second session would be a duplicate)."""
    base = tmp_path_factory.mktemp("video")
    config = load_rig_config(write_rig(base))
    session, _ = shoot(config, "video", seconds=1.0, progress=False)
    write_rig_calibration(session.root / "rig_calibration.json", np.eye(3), (96, 64))
    _write_sync(session.root)
    summary = build_dataset([session.root], base / "ds", BuildConfig(), progress=False)
    assert summary.ok, summary.failures
    frame = pd.read_parquet(base / "ds" / MANIFEST_FILE)
    assert frame["frame_index"].tolist() == list(range(10))
    late = frame["frame_index"] >= 5
    frame["split"] = np.where(late, "test", "train")
    for column in ("scene_id", "clip_id"):
        frame[column] = np.where(late, frame[column] + "-b", frame[column])
    frame.to_parquet(base / "ds" / MANIFEST_FILE, index=False)
    return base / "ds"


def test_vecnet_reads_the_same_frames_for_lq_and_gt(video_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "dime"
    code, output = _cli("export", str(video_dataset), "--layout", "dime", "--out", str(out))
    assert code == 0, output
    assert check_dime_peers(out) == ([], [f"np/test holds 1 clip(s): {_UNDER}"])
    manifest = load_dataset(video_dataset).manifest
    index = {r["clip"]: r for r in csv.DictReader((out / "dime_clips.csv").open())}
    frames_total = 0
    for split in ("train", "test"):
        items = vecnet_items(out / "np" / split)
        assert items, split
        for folder, lq_paths, gt_path in items:
            centre = lq_paths[N_FRAMES // 2]
            # the centre LQ frame and the GT frame are the same frame name of one clip
            assert Path(centre).name == Path(gt_path).name
            assert Path(centre).parent.name == Path(gt_path).parent.name == folder
            # ... and the same dataset row: LQ = its input, GT = its target
            clip = index[folder]
            row = manifest[
                (manifest["clip_id"] == clip["clip_id"])
                & (manifest["frame_index"] == int(Path(gt_path).stem))
            ].iloc[0]
            assert row["split"] == split
            lq, gt = cv2.imread(centre), cv2.imread(gt_path)
            assert np.array_equal(lq, cv2.imread(str(video_dataset / row["input_path"])))
            assert np.array_equal(gt, cv2.imread(str(video_dataset / row["target_path"])))
            assert lq.shape == gt.shape
            frames_total += 1
    assert frames_total == len(manifest) >= 2 * N_FRAMES
    # `curate validate EXPORT_DIR` knows it is a DIME export and runs the same check
    code, output = _cli("validate", str(out))
    assert code == 0, output
    assert "np/test holds 1 clip(s)" in output  # a warning, not an error


_UNDER = (
    "VECNet's test.py divides the under-exposure averages by (1 - 10) (lines 110-111), so its "
    "PSNR-under/SSIM-under are meaningless (its overall PSNR/SSIM are fine)"
)


# --------------------------------------------------------------------------- each rule


def _clips(train: int, test: int, frames: int = 5) -> Spec:
    clips = [(f"tr{i}", "c01", frames, "train", -1.0) for i in range(train)]
    clips += [(f"te{i}", "c01", frames, "test", 1.0) for i in range(test)]
    return Spec(stills={}, clips=tuple(clips), size=(24, 32), masks=False)


@pytest.fixture(scope="module")
def good_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("dime")
    make_dataset(base / "ds", _clips(train=2, test=11, frames=6))
    out = base / "out"
    summary = export_dataset(base / "ds", out, "dime", progress=False)
    assert summary.ok, summary.errors
    assert check_dime_peers(out) == ([], [])  # 11 test clips: no over-list id, no warning
    assert len(vecnet_items(out / "np" / "test")) == 11 * 6
    return out


@pytest.fixture
def export(good_export: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(good_export, copy)
    return copy


def _first_clip(out: Path, split: str = "train") -> str:
    return sorted(p.name for p in (out / "np" / split / "LQ").iterdir())[0]


def _fails_validate(out: Path, expected: str) -> None:
    report = validate_export(out, check_hashes=False)
    assert any(expected in p.message for p in report.errors), report.problems
    code, output = _cli("validate", str(out), "--no-hashes")
    assert code == 1 and expected in output


def test_too_short_clip(export: Path) -> None:
    clip = _first_clip(export)
    for side in ("LQ", "GT"):  # 6 -> 4 frames, still identical in LQ and GT
        for name in ("00004.png", "00005.png"):
            (export / "np/train" / side / clip / name).unlink()
    errors, _ = check_dime_peers(export)
    assert errors == [
        f"np/train/{{LQ,GT}}/{clip}: 4 frame(s); VECNet needs >= 5 (5-frame windows, "
        "padding new_info reads index 4)"
    ]
    with pytest.raises(AssertionError):  # VECNet itself: index 4 of a 4-frame clip
        vecnet_items(export / "np/train")
    _fails_validate(export, "4 frame(s); VECNet needs >= 5")


def test_mismatched_frame_names(export: Path) -> None:
    clip = _first_clip(export)
    gt = export / "np/train/GT" / clip
    (gt / "00005.png").rename(gt / "00006.png")
    errors, _ = check_dime_peers(export)
    assert len(errors) == 1 and "hold different frame names" in errors[0]
    assert "('00005.png', '00006.png')" in errors[0]
    # VECNet would silently pair LQ frame 5 with GT frame 6 (counts are equal)
    assert vecnet_items(export / "np/train")
    _fails_validate(export, "hold different frame names")


def test_stray_files(export: Path) -> None:
    clip = _first_clip(export)
    (export / "np/train/LQ" / clip / "notes.txt").write_text("x")
    (export / "np/test/GT/Thumbs.db").write_bytes(b"x")
    (export / "np/train/LQ" / clip / ".hidden").write_text("x")  # glob('*') skips it
    errors, _ = check_dime_peers(export)
    assert any(e.startswith(f"np/train/LQ/{clip}/notes.txt: a stray entry") for e in errors)
    assert any(e.startswith("np/test/GT/Thumbs.db: a stray file") for e in errors)
    assert not any(".hidden" in e for e in errors)
    _fails_validate(export, "a stray")


def test_sizes_and_clip_folders(export: Path) -> None:
    clip = _first_clip(export)
    frame = export / "np/train/GT" / clip / "00002.png"
    assert cv2.imwrite(str(frame), np.zeros((10, 10, 3), np.uint8))
    shutil.rmtree(export / "np/test/GT" / _first_clip(export, "test"))
    errors, _ = check_dime_peers(export)
    assert any("frames differ in size" in e and "10x10: 1 (GT/00002.png)" in e for e in errors)
    assert any("LQ and GT clip folders differ" in e for e in errors)


def test_ten_test_clips_fail_the_export(tmp_path: Path) -> None:
    make_dataset(tmp_path / "ds", _clips(train=1, test=10))
    out = tmp_path / "out"
    code, output = _cli("export", str(tmp_path / "ds"), "--layout", "dime", "--out", str(out))
    assert code == 1
    assert "np/test holds exactly 10 clips" in output and "division by zero" in output
    assert "test.py lines 110-111" in output
    record = json.loads((out / "export.json").read_text())
    assert record["counts"]["error:peer-convention"] == 1
    _fails_validate(out, "np/test holds exactly 10 clips")
    # VECNet's test.py, lines 106-111, with its ten hard-coded over-exposed ids
    clips = {item[0] for item in vecnet_items(out / "np/test")}
    assert len(clips) == len(VECNET_OVER_CLIPS) == 10
    with pytest.raises(ZeroDivisionError):
        _ = 0.0 / (len(clips) - len(VECNET_OVER_CLIPS))


def test_bare_dime_tree_is_detected(good_export: Path, tmp_path: Path) -> None:
    """A DIME tree without export.json (the published download) gets VECNet's rules, with
    every frame type VECNet reads."""
    bare = tmp_path / "DIME"
    shutil.copytree(good_export / "np", bare / "np")
    clip = _first_clip(bare)
    for side in ("LQ", "GT"):
        for png in (bare / "np/train" / side / clip).iterdir():
            np.save(png.with_suffix(".npy"), cv2.imread(str(png)))
            png.unlink()
    assert is_export_folder(bare)
    assert validate_export(bare).problems == []
    (bare / "np/train/LQ" / clip / "00000.npy").unlink()
    code, output = _cli("validate", str(bare))
    assert code == 1 and "hold different frame names" in output


# --------------------------------------------------------------------------- sequences --rank-map


@pytest.fixture(scope="module")
def rank_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("rank")
    source = _write_sequences(base / "src", {"seq-a": 7, "seq-b": 3})
    built = build_dataset([source], base / "ds", BuildConfig(max_side=64), progress=False)
    assert built.ok, built.failures
    return base / "ds"


def test_sequences_refuses_rank_evs_without_a_map(rank_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="--rank-map nearest5") as info:
        export_dataset(rank_dataset, tmp_path / "s", "sequences", progress=False)
    assert "sequences layout" in str(info.value) and "seq-a, seq-b" in str(info.value)
    assert not (tmp_path / "s" / "export.json").exists()
    code, output = _cli(
        "export", str(rank_dataset), "--layout", "sequences", "--out", str(tmp_path / "c")
    )
    assert code == 1 and "--rank-map nearest5" in output


def test_sequences_rank_map_nearest5(rank_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "seq"
    code, output = _cli(
        "export", str(rank_dataset), "--layout", "sequences", "--out", str(out),
        "--rank-map", "nearest5",
    )  # fmt: skip
    assert code == 0, output
    split = load_dataset(rank_dataset).manifest.groupby("scene_id")["split"].first()
    seven = sorted(p.name for p in (out / split["seq-a"] / "seq-a").iterdir())
    # ranks -3 and +3 are skipped; -2..+2 named by the map, not as measured EVs
    assert seven == ["01_N1.5.png", "02_N1.png", "03_0_target.png", "04_P1.png", "05_P1.5.png"]
    three = sorted(p.name for p in (out / split["seq-b"] / "seq-b").iterdir())
    assert three == ["01_N1.png", "02_0_target.png", "03_P1.png"]
    record = json.loads((out / "export.json").read_text())
    assert record["options"]["rank_map"]["name"] == "nearest5"
    assert record["options"]["rank_map"]["scenes"] == ["seq-a", "seq-b"]
    assert record["counts"]["skipped:rank-not-mapped"] == 2
    assert record["counts"]["rows_exported"] == 6
    assert any("rank -2 -> N1.5" in note for note in record["notes"])
