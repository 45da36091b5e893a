"""Loading, validating and writing beside a dataset: names, links and output paths.

Issue 9: names that become folders are checked again on load; an image symlinked out of
the dataset fails validation; ``curate csv --out`` and ``validate --json`` never replace a
dataset's files, an input or a file they did not write; readers wait for a running build.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import pandas as pd
import pytest
from click.testing import CliRunner

from expokit.cli.curate_tools import register
from expokit.core.hashing import sha256_file
from expokit.core.lock import RootInUseError, RootLock
from expokit.core.paths import PathEscapeError
from expokit.curation.dataset.format import (
    INFO_FILE,
    MANIFEST_FILE,
    DatasetError,
    is_manifest_csv,
    load_dataset,
)
from expokit.curation.dataset.report import build_report
from expokit.curation.dataset.validate import validate_dataset
from expokit.curation.export.driver import export_dataset
from tests.curation.conftest_tools import Spec, make_dataset

SMALL = Spec(
    stills={"beach": "train", "lab": "test"},
    evs=(-1.0, 0.0),
    clips=(("street", "c01", 2, "train", -1.0),),
    masks=False,
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dataset-trust") / "ds"
    make_dataset(root, SMALL)
    return root


def _cli(*args: str) -> tuple[int, str]:
    group = click.Group("curate")
    register(group)
    result = CliRunner().invoke(group, list(args))
    return result.exit_code, result.output


# --------------------------------------------------------------------------- load


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("split", "../../evil"),
        ("scene_id", "../outside"),
        ("scene_id", "hall 2"),
        ("clip_id", "a/b"),
        ("split", ".hidden"),
    ],
)
def test_unsafe_names_are_refused_on_load(root: Path, column: str, value: str) -> None:
    frame = pd.read_parquet(root / MANIFEST_FILE)
    frame[column] = frame[column].astype(object)
    frame.loc[3, column] = value
    frame.to_parquet(root / MANIFEST_FILE, index=False)
    with pytest.raises(DatasetError) as caught:
        load_dataset(root)
    message = str(caught.value)
    assert f"row {frame.loc[3, 'pair_id']}, column {column}: {value!r}" in message
    assert "not a safe name" in message
    # validate reports it too, with its own code, naming the row
    report = validate_dataset(root)
    unsafe = [p for p in report.errors if p.code == "unsafe-name"]
    assert [(p.pair_id, value in p.message) for p in unsafe] == [(frame.loc[3, "pair_id"], True)]


def test_dataset_path_refuses_links_that_leave_the_root(root: Path, tmp_path: Path) -> None:
    dataset = load_dataset(root)
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"x")
    (root / "images" / "out.png").symlink_to(outside)
    (root / "images" / "in.png").symlink_to(root / "images" / "beach" / "beach_target.png")
    with pytest.raises(PathEscapeError, match="outside"):
        dataset.path("images/out.png")
    assert dataset.path("images/in.png").read_bytes()  # a link that stays inside is fine
    with pytest.raises(DatasetError, match=r"'\.\.'"):
        dataset.path("images/../../outside.png")


def test_loaded_manifest_hash_is_what_was_read(root: Path, tmp_path: Path) -> None:
    dataset = load_dataset(root)
    loaded = sha256_file(root / MANIFEST_FILE)
    assert dataset.manifest_sha256 == loaded
    # a build replaces the manifest after the export loaded it: the record keeps the truth
    frame = pd.read_parquet(root / MANIFEST_FILE)
    frame.iloc[:1].to_parquet(root / MANIFEST_FILE, index=False)
    export_dataset(dataset, tmp_path / "out", "msec", progress=False)
    record = json.loads((tmp_path / "out" / "export.json").read_text())
    assert record["dataset"]["manifest_sha256"] == loaded != sha256_file(root / MANIFEST_FILE)


def test_readers_wait_for_a_running_build(root: Path, tmp_path: Path) -> None:
    with RootLock(root, "expokit curate build"):
        with pytest.raises(RootInUseError, match=r"in use by pid \d+ \(expokit curate build\)"):
            export_dataset(root, tmp_path / "out", "msec", progress=False)
        with pytest.raises(RootInUseError, match="before reporting on it"):
            build_report(root, progress=False)
    assert not (tmp_path / "out").exists() and not (root / "report").exists()
    # once the build is gone (lock released), both run
    assert export_dataset(root, tmp_path / "out", "sequences", progress=False).ok


# --------------------------------------------------------------------------- validate


def test_image_symlinked_out_of_the_dataset_fails_validation(root: Path, tmp_path: Path) -> None:
    frame = load_dataset(root).manifest
    rel = str(frame.loc[1, "input_path"])
    outside = tmp_path / "outside.png"
    shutil.copy(root / rel, outside)
    (root / rel).unlink()
    (root / rel).symlink_to(outside)
    report = validate_dataset(root)
    problems = [p for p in report.errors if p.code == "symlink-outside-root"]
    assert [(p.pair_id, p.file) for p in problems] == [(frame.loc[1, "pair_id"], rel)]
    assert str(outside) in problems[0].message
    code, output = _cli("validate", str(root), "--no-progress")
    assert code == 1 and "symlink-outside-root" in output


# --------------------------------------------------------------------------- output paths


def test_csv_out_never_replaces_data_or_foreign_files(root: Path, tmp_path: Path) -> None:
    manifest = (root / MANIFEST_FILE).read_bytes()
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    for target, expected in (
        (root / MANIFEST_FILE, "one of this command's inputs"),
        (root / INFO_FILE, "one of this command's inputs"),
        (root / "images" / "beach" / "list.csv", "is a file of the expokit folder"),
        (video, "is not an earlier output"),
    ):
        code, output = _cli("csv", str(root), "--out", str(target))
        assert code == 1 and expected in output, output
    assert (root / MANIFEST_FILE).read_bytes() == manifest
    assert video.read_bytes() == b"\x00\x00\x00\x18ftypmp42"
    assert not (root / "images" / "beach" / "list.csv").exists()
    # the default ROOT/manifest.csv is written, and rewritten (it is ours)
    for _ in range(2):
        code, output = _cli("csv", str(root))
        assert code == 0, output
    assert is_manifest_csv(root / "manifest.csv")
    assert len(pd.read_csv(root / "manifest.csv")) == len(load_dataset(root).manifest)


def test_validate_json_never_replaces_data_or_foreign_files(root: Path, tmp_path: Path) -> None:
    info = (root / INFO_FILE).read_bytes()
    foreign = tmp_path / "settings.json"
    foreign.write_text('{"mine": true}')
    for target, expected in (
        (root / INFO_FILE, "one of this command's inputs"),
        (root / MANIFEST_FILE, "one of this command's inputs"),
        (foreign, "is not an earlier output"),
    ):
        code, output = _cli("validate", str(root), "--no-progress", "--json", str(target))
        assert code == 1 and expected in output and "rows," not in output, output
    assert (root / INFO_FILE).read_bytes() == info
    assert json.loads(foreign.read_text()) == {"mine": True}
    report = tmp_path / "report.json"
    for _ in range(2):  # an earlier report is replaced
        code, output = _cli("validate", str(root), "--no-progress", "--json", str(report))
        assert code == 0, output
    assert json.loads(report.read_text())["ok"] is True
