"""`expokit curate validate`: every problem listed, each naming its row and file."""

from __future__ import annotations

import json
from pathlib import Path

import click
import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from expokit.cli.curate_tools import register
from expokit.core.hashing import sha256_file
from expokit.curation.dataset.format import INFO_FILE, MANIFEST_FILE
from expokit.curation.dataset.validate import Problem, validate_dataset
from tests.curation.conftest_tools import Spec, make_dataset


def _manifest(root: Path) -> pd.DataFrame:
    return pd.read_parquet(root / MANIFEST_FILE)


def _save(root: Path, frame: pd.DataFrame) -> None:
    # Written with pandas directly, as a person editing the manifest by hand would.
    frame.to_parquet(root / MANIFEST_FILE, index=False)


def _codes(problems: list[Problem]) -> list[str]:
    return [p.code for p in problems]


def _cli(*args: str) -> tuple[int, str]:
    group = click.Group("curate")
    register(group)
    result = CliRunner().invoke(group, ["validate", *args, "--no-progress"])
    return result.exit_code, result.output


def test_clean_dataset_passes(pristine: Path) -> None:
    report = validate_dataset(pristine)
    assert report.ok, [str(p) for p in report.problems]
    assert report.problems == []
    assert report.rows == 34
    # every distinct input, target and mask file was read
    frame = _manifest(pristine)
    distinct = set(frame["input_path"]) | set(frame["target_path"]) | set(frame["mask_path"])
    assert report.files_checked == len(distinct)
    code, output = _cli(str(pristine))
    assert code == 0, output
    assert "0 error(s)" in output


def test_file_problems_are_all_listed_with_row_and_file(root: Path) -> None:
    frame = _manifest(root)
    ids = frame["pair_id"].tolist()
    # 1. missing input
    missing = frame.loc[0, "input_path"]
    (root / missing).unlink()
    # 2. corrupt input whose recorded sha256 matches the garbage (so only decoding fails)
    corrupt = frame.loc[1, "input_path"]
    (root / corrupt).write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    frame.loc[1, "input_sha256"] = sha256_file(root / corrupt)
    # 3. changed file: sha256 mismatch
    changed = frame.loc[5, "input_path"]
    image = cv2.imread(str(root / changed))
    cv2.imwrite(str(root / changed), 255 - image)
    # 4. target of another size
    resized = frame.loc[20, "target_path"]
    cv2.imwrite(str(root / resized), np.zeros((40, 64, 3), np.uint8))
    frame.loc[20, "target_sha256"] = sha256_file(root / resized)
    # 5. mask of another size
    bad_mask = frame.loc[21, "mask_path"]
    cv2.imwrite(str(root / bad_mask), np.full((10, 10), 255, np.uint8))
    _save(root, frame)

    report = validate_dataset(root)
    assert not report.ok
    by_code = {p.code: p for p in report.problems}
    assert by_code["missing-file"].pair_id == ids[0]
    assert by_code["missing-file"].file == missing
    assert by_code["corrupt-image"].pair_id == ids[1]
    assert by_code["corrupt-image"].file == corrupt
    assert by_code["sha256-mismatch"].pair_id == ids[5]
    assert by_code["sha256-mismatch"].file == changed
    size = [p for p in report.problems if p.code == "size-mismatch" and p.pair_id == ids[20]]
    assert size and "64x40" in size[0].message
    assert by_code["mask-size-mismatch"].pair_id == ids[21]
    assert by_code["mask-size-mismatch"].file == bad_mask
    # Nothing else is reported against the rows that were left alone.
    touched = {ids[i] for i in (0, 1, 5, 20, 21)}
    assert {p.pair_id for p in report.errors} <= touched

    code, output = _cli(str(root))
    assert code == 1
    for problem in (by_code["missing-file"], by_code["corrupt-image"]):
        assert problem.pair_id in output and str(problem.file) in output


def test_a_target_shared_by_rows_is_reported_per_row(root: Path) -> None:
    frame = _manifest(root)
    target = frame.loc[0, "target_path"]
    sharing = frame.loc[frame["target_path"] == target, "pair_id"].tolist()
    assert len(sharing) == 5
    (root / target).unlink()
    report = validate_dataset(root)
    assert sorted(p.pair_id for p in report.errors if p.code == "missing-file") == sorted(sharing)


def test_scene_in_two_splits(root: Path) -> None:
    frame = _manifest(root)
    moved = frame.index[frame["scene_id"] == "kitchen"][:2]
    frame.loc[moved, "split"] = "test"
    _save(root, frame)
    report = validate_dataset(root)
    overlap = [p for p in report.errors if p.code == "split-overlap"]
    assert len(overlap) == 1
    assert "'kitchen'" in overlap[0].message and "test:" in overlap[0].message
    assert all(pid in overlap[0].message for pid in frame.loc[moved, "pair_id"])


def test_clip_frame_count_mismatch(root: Path) -> None:
    frame = _manifest(root)
    clip = frame.index[(frame["scene_id"] == "street") & (frame["clip_id"] == "c01")]
    frame.loc[clip[3], "frame_index"] = frame.loc[clip[2], "frame_index"]
    frame.loc[clip[4], "target_path"] = frame.loc[clip[5], "target_path"]
    frame.loc[clip[4], "target_sha256"] = frame.loc[clip[5], "target_sha256"]
    _save(root, frame)
    report = validate_dataset(root)
    mismatch = [p for p in report.errors if p.code == "frame-count-mismatch"]
    messages = " | ".join(p.message for p in mismatch)
    assert "street/c01: frame_index 2 is used by 2 rows" in messages
    assert "6 distinct input frames (LQ) but 5 distinct target frames (GT)" in messages
    assert frame.loc[clip[2], "pair_id"] in messages


def test_hand_edited_manifest_every_problem(root: Path) -> None:
    frame = _manifest(root)
    ids = frame["pair_id"].tolist()
    widths = frame["width"].astype(str).astype(object)
    widths[3] = "wide"
    frame["width"] = widths  # a string column with one value that is no integer
    frame["psnr_db"] = frame["psnr_db"].astype(object)
    frame.loc[7, "psnr_db"] = "high"
    frame["psnr_db"] = frame["psnr_db"].astype(str)
    frame.loc[8, "input_path"] = "/etc/passwd"
    frame.loc[9, "target_path"] = "images/../../outside.png"
    frame.loc[11, "pair_id"] = ids[10]
    frame.loc[12, "mask_path"] = "C:\\masks\\m.png"
    _save(root, frame)

    report = validate_dataset(root)
    assert not report.ok
    problems = [str(p) for p in report.errors]
    dtype = [p for p in report.errors if p.code == "wrong-dtype"]
    assert {(p.pair_id, p.message.split("'")[1]) for p in dtype} == {
        (ids[3], "width"),
        (ids[7], "psnr_db"),
    }, problems
    paths = {p.pair_id: p for p in report.errors if p.code == "bad-path"}
    assert paths[ids[8]].file == "/etc/passwd" and "absolute" in paths[ids[8]].message
    assert paths[ids[9]].file == "images/../../outside.png" and "'..'" in paths[ids[9]].message
    assert "absolute" in paths[ids[12]].message
    duplicate = [p for p in report.errors if p.code == "duplicate-pair-id"]
    assert len(duplicate) == 1 and duplicate[0].pair_id == ids[10]
    assert "#10" in duplicate[0].message and "#11" in duplicate[0].message
    # the unsafe paths were never opened (no missing-file for /etc/passwd)
    assert not any(p.code == "missing-file" and p.pair_id == ids[8] for p in report.problems)


def test_missing_column_and_unknown_column(root: Path) -> None:
    frame = _manifest(root).drop(columns=["ssim"])
    frame["my_note"] = "x"
    _save(root, frame)
    report = validate_dataset(root)
    assert "missing-column" in _codes(report.errors)
    assert any(p.code == "extra-column" and p.severity == "warning" for p in report.problems)


@pytest.mark.parametrize(
    ("version", "expected"),
    [(0, "expokit curate upgrade"), (3, "upgrade expokit"), ("one", "version 'one'")],
)
def test_unknown_format_version(root: Path, version: object, expected: str) -> None:
    info_path = root / INFO_FILE
    info = json.loads(info_path.read_text())
    info["format_version"] = version
    info_path.write_text(json.dumps(info))
    report = validate_dataset(root)
    assert len(report.problems) == 1
    problem = report.problems[0]
    assert problem.file == INFO_FILE and expected in problem.message
    assert f"version {version!r}" in problem.message
    code, output = _cli(str(root))
    assert code == 1 and expected in output


def test_not_a_dataset(tmp_path: Path) -> None:
    report = validate_dataset(tmp_path)
    assert not report.ok and "not an expokit dataset" in report.problems[0].message


def test_unreadable_manifest(root: Path) -> None:
    (root / MANIFEST_FILE).write_bytes(b"PAR1 not really")
    report = validate_dataset(root)
    assert _codes(report.problems) == ["unreadable-manifest"]


def test_valid_rectangle_outside_image(root: Path) -> None:
    frame = _manifest(root)
    frame.loc[2, "valid_w"] = 500
    _save(root, frame)
    report = validate_dataset(root)
    assert [(p.code, p.pair_id) for p in report.errors] == [
        ("valid-region", frame.loc[2, "pair_id"])
    ]


def test_json_output_and_hash_skip(root: Path, tmp_path: Path) -> None:
    frame = _manifest(root)
    changed = root / frame.loc[0, "input_path"]
    cv2.imwrite(str(changed), 255 - cv2.imread(str(changed)))
    assert not validate_dataset(root).ok
    assert validate_dataset(root, check_hashes=False).ok
    out = tmp_path / "problems.json"
    code, _ = _cli(str(root), "--json", str(out))
    assert code == 1
    data = json.loads(out.read_text())
    assert data["ok"] is False
    assert data["problems"][0]["code"] == "sha256-mismatch"
    assert data["problems"][0]["pair_id"] == frame.loc[0, "pair_id"]


def test_jpeg_dataset_without_masks_passes(tmp_path: Path) -> None:
    spec = Spec(stills={"a": "train", "b": "test"}, clips=(), ext=".jpg", masks=False)
    make_dataset(tmp_path / "jpg", spec)
    assert validate_dataset(tmp_path / "jpg").ok
