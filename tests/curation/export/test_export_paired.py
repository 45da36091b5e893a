"""The ``paired`` export, checked against BasicSR's own path pairing.

BasicSR (github.com/XPixelGroup/BasicSR) ``PairedImageDataset`` pairs ``dataroot_lq`` and
``dataroot_gt`` with ``basicsr/data/data_util.py``: ``paired_paths_from_folder`` lists both
folders with ``scandir`` (plain files not starting with ``.``, not recursive), asserts equal
counts and, per GT file, asserts that ``filename_tmpl.format(basename) + ext`` is in the LQ
list; ``paired_paths_from_meta_info_file`` takes the first space-separated token of each
line of ``meta_info_file`` as the GT name and builds the LQ name the same way. LOL-style
loaders pair ``low``/``high`` files by equal name. :func:`basicsr_pairs` re-implements both
and is run on real exports.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from expokit.cli.curate_tools import register
from expokit.core.hashing import sha256_file
from expokit.curation.dataset.format import load_dataset
from expokit.curation.dataset.selection import PairSelection
from expokit.curation.export.driver import export_dataset
from expokit.curation.export.peers import PAIRED_META_INFO, check_paired_peers
from expokit.curation.export.validate import validate_export
from tests.curation.conftest_tools import make_dataset

FILENAME_TMPL = "{}"  # BasicSR's default, and what the paired layout is written for


def _cli(command: str, *args: str) -> tuple[int, str]:
    group = click.Group("curate")
    register(group)
    result = CliRunner().invoke(group, [command, *args])
    return result.exit_code, result.output


# ------------------------------------------------------------------ BasicSR, re-implemented


def _scandir(folder: str) -> list[str]:
    """basicsr/utils/misc.py scandir(folder): relative names of plain, non-hidden files."""
    return [e.name for e in os.scandir(folder) if not e.name.startswith(".") and e.is_file()]


def basicsr_pairs(split_root: Path, meta_info: bool) -> list[tuple[str, str]]:
    """``(lq_path, gt_path)`` as PairedImageDataset builds them (folder or meta_info mode)."""
    input_folder, gt_folder = str(split_root / "lq"), str(split_root / "gt")
    if meta_info:
        with (split_root / PAIRED_META_INFO).open() as fin:
            gt_names = [line.split(" ")[0] for line in fin]
        paths = []
        for gt_name in gt_names:
            basename, ext = os.path.splitext(os.path.basename(gt_name))  # noqa: PTH119, PTH122
            input_name = f"{FILENAME_TMPL.format(basename)}{ext}"
            paths.append(
                (os.path.join(input_folder, input_name), os.path.join(gt_folder, gt_name))  # noqa: PTH118
            )
        return paths
    input_paths = _scandir(input_folder)
    gt_paths = _scandir(gt_folder)
    assert len(input_paths) == len(gt_paths)
    paths = []
    for gt_path in gt_paths:
        basename, ext = os.path.splitext(os.path.basename(gt_path))  # noqa: PTH119, PTH122
        input_name = f"{FILENAME_TMPL.format(basename)}{ext}"
        assert input_name in input_paths, f"{input_name} is not in lq_paths."
        paths.append(
            (os.path.join(input_folder, input_name), os.path.join(gt_folder, gt_path))  # noqa: PTH118
        )
    return paths


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("paired") / "ds"
    make_dataset(root)
    return root


def test_every_lq_finds_its_gt_and_nothing_else(dataset_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = _cli("export", str(dataset_root), "--layout", "paired", "--out", str(out),
                        "--no-progress")  # fmt: skip
    assert code == 0, output
    manifest = load_dataset(dataset_root).manifest
    index = pd.read_csv(out / "paired.csv")
    for split, rows in manifest.groupby("split"):
        split_root = out / str(split)
        by_folder = basicsr_pairs(split_root, meta_info=False)
        by_meta = basicsr_pairs(split_root, meta_info=True)
        assert sorted(by_folder) == sorted(by_meta)
        assert len(by_folder) == len(rows)
        lq_names = {Path(lq).name for lq, _ in by_folder}
        assert lq_names == set(_scandir(str(split_root / "lq")))  # every lq file is paired
        assert lq_names == set(_scandir(str(split_root / "gt")))  # LOL-style: same names
        for lq, gt in by_folder:
            assert Path(lq).is_file() and Path(gt).is_file()
        # The name leads back to its row; its gt is that row's target, pixel for pixel.
        listed = index[index["split"] == split].set_index("file")
        assert set(listed.index) == lq_names
        assert set(listed["pair_id"]) == set(rows["pair_id"])
        for name, entry in listed.iterrows():
            target = cv2.imread(str(dataset_root / entry["target_path"]), cv2.IMREAD_COLOR)
            written = cv2.imread(str(split_root / "gt" / str(name)), cv2.IMREAD_COLOR)
            assert np.array_equal(target, written)
        meta_lines = (split_root / PAIRED_META_INFO).read_text().splitlines()
        height, width = int(rows["height"].iloc[0]), int(rows["width"].iloc[0])
        assert all(line.endswith(f" ({height},{width},3)") for line in meta_lines)
    # A target shared by the five inputs of a still scene is written once per input name.
    beach = index[index["pair_id"].str.startswith("beach_01/")]
    assert len(beach) == 5 and beach["file"].is_unique
    assert "beach-01-N1p5.png" in set(beach["file"]) and "beach-01-P1p5.png" in set(beach["file"])
    record = json.loads((out / "export.json").read_text())
    assert record["layout"] == "paired"
    assert all(sha256_file(out / rel) == digest for rel, digest in record["files"].items())
    code, output = _cli("validate", str(out), "--no-progress")
    assert code == 0, output


def test_selection_and_reexport_remove_only_own_files(dataset_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export_dataset(dataset_root, out, "paired", progress=False)
    stray = out / "train" / "notes.txt"
    stray.write_text("mine")
    manifest = load_dataset(dataset_root).manifest
    flagged = manifest[manifest["qa_flags"].str.contains("low_psnr")]
    assert len(flagged), "the generated dataset should flag some pairs"
    summary = export_dataset(
        dataset_root,
        out,
        "paired",
        progress=False,
        selection=PairSelection.parse("low_psnr", False),
    )
    assert summary.ok
    assert summary.rows_exported == len(manifest) - len(flagged)
    assert summary.removed and all(rel.split("/")[1] in ("lq", "gt") for rel in summary.removed)
    assert stray.read_text() == "mine"
    assert any("notes.txt" in kept for kept in summary.kept)
    written = (
        {p.name for p in (out / "train" / "lq").iterdir()}
        | {p.name for p in (out / "test" / "lq").iterdir()}
        | {p.name for p in (out / "val" / "lq").iterdir()}
    )
    assert len(written) == summary.rows_exported
    record = json.loads((out / "export.json").read_text())
    assert record["options"]["selection"] == {"exclude_flags": ["low_psnr"], "passed_only": False}
    assert validate_export(out).ok


def test_the_check_finds_a_missing_gt_and_a_bad_meta_info(
    dataset_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    export_dataset(dataset_root, out, "paired", progress=False)
    victim = sorted((out / "val" / "gt").iterdir())[0]
    victim.unlink()
    problems = check_paired_peers(out)
    assert any(f"val/lq/{victim.name}: no gt/{victim.name}" in p for p in problems)
    assert any("lq holds" in p for p in problems)
    assert any(f"{PAIRED_META_INFO}, line" in p for p in problems)
    code, output = _cli("validate", str(out), "--no-progress")
    assert code == 1 and victim.name in output
