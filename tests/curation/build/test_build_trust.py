"""`curate build` keeps what it does not own: incremental rebuilds, explicit removal, one
claimed and locked root, safe names, no writes through links, no duplicate content under
two scene ids, and a dead worker named on its scene (issue 9)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import click
import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result

from expokit.core.atomic import TEMP_PREFIX
from expokit.core.errors import ExpokitError
from expokit.core.lock import RootInUseError, RootLock
from expokit.core.runs import RECORDS_DIR
from expokit.core.synthetic import demo_scene
from expokit.curation.build.config import BuildConfig
from expokit.curation.build.driver import BuildSummary, build_dataset
from expokit.curation.build.scene import FAULT_KILL_SCENE_ENV
from expokit.curation.build.splits import (
    SplitError,
    SplitSpec,
    load_split_lists,
    parse_fractions,
)
from expokit.curation.dataset.format import load_dataset
from tests.curation.conftest_tools import render

CONFIG = BuildConfig(max_side=64)
SIZE = (48, 64)  # height, width


def write_sequences(folder: Path, scenes: Sequence[str], seed: int = 0) -> Path:
    """A folder of sequence folders: three exposures (-1, 0, +1 EV) per scene, each scene
    its own content, so every scene gives 2 pairs."""
    for number, scene in enumerate(scenes):
        radiance = demo_scene("texture", *SIZE, seed=seed * 100 + number).astype(np.float64)
        (folder / scene).mkdir(parents=True, exist_ok=True)
        for rank, ev in enumerate((-1.0, 0.0, 1.0)):
            assert cv2.imwrite(str(folder / scene / f"{rank}.png"), render(radiance, ev))
    return folder


def build(
    sources: Sequence[Path],
    out: Path,
    config: BuildConfig = CONFIG,
    remove_scenes: Sequence[str] = (),
) -> BuildSummary:
    return build_dataset(
        sources, out, config, progress=False, durable=False, remove_scenes=remove_scenes
    )


def scene_table(out: Path) -> pd.DataFrame:
    frame = load_dataset(out).manifest
    columns = ["pair_id", "scene_id", "split", "input_path", "input_sha256", "target_sha256"]
    return frame[columns].sort_values("pair_id").reset_index(drop=True)


def _cli() -> click.Group:
    from expokit.cli.curate_build import register

    @click.group()
    def curate() -> None:
        """Test group standing in for `expokit curate`."""

    register(curate)
    return curate


def run_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(_cli(), ["build", *args, "--no-progress"], env=env)


@pytest.fixture
def two_sources(tmp_path: Path) -> tuple[Path, Path]:
    first = write_sequences(tmp_path / "session_a", ["a1", "a2", "a3"], seed=1)
    second = write_sequences(tmp_path / "session_b", ["b1", "b2", "b3"], seed=2)
    return first, second


# --------------------------------------------------------------------------- rebuilds


def test_second_source_adds_scenes_and_keeps_the_first(
    two_sources: tuple[Path, Path], tmp_path: Path
) -> None:
    """Issue 9: "12 rows became 6" when a second session was built into the dataset."""
    first, second = two_sources
    out = tmp_path / "ds"
    assert build([first], out).ok
    before = scene_table(out)
    assert len(before) == 6
    # Every new scene goes to "holdout": kept scenes must keep the split they had.
    holdout = BuildConfig(max_side=64, splits=SplitSpec(fractions=(("holdout", 1.0),)))
    summary = build([second], out, holdout)
    assert summary.ok and (summary.built, summary.kept) == (3, 3)
    after = scene_table(out)
    assert len(after) == 12
    kept = after[after["scene_id"].str.startswith("a")].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, before)
    assert set(after.loc[after["scene_id"].str.startswith("b"), "split"]) == {"holdout"}
    dataset = load_dataset(out)
    for path in dataset.manifest["input_path"].tolist() + dataset.manifest["target_path"].tolist():
        assert dataset.path(str(path)).is_file()
    info = dataset.info
    assert [s["path"] for s in info.provenance["sources"]] == [
        first.resolve().as_posix(),
        second.resolve().as_posix(),
    ]
    assert info.counts["pairs"] == 12 and info.counts["scenes"] == 6
    assert info.provenance["build"]["scenes"] == 6
    placed = [s for scenes in info.provenance["build"]["scene_splits"].values() for s in scenes]
    assert sorted(placed) == sorted(after["scene_id"].unique())
    card = (out / "README.md").read_text()
    assert "| **total** | 12 |" in card
    # Re-building the first source skips it, keeps the second and lists each source once.
    summary = build([first], out, holdout)
    assert (summary.built, summary.skipped, summary.kept, summary.pairs) == (0, 3, 3, 12)
    assert len(load_dataset(out).info.provenance["sources"]) == 2


def test_split_lists_may_move_kept_scenes_and_typos_are_errors(
    two_sources: tuple[Path, Path], tmp_path: Path
) -> None:
    first, second = two_sources
    out = tmp_path / "ds"
    build([first], out)
    before = scene_table(out).groupby("scene_id")["split"].first().to_dict()
    manifest = (out / "manifest.parquet").read_bytes()
    typo = SplitSpec(lists={"test": ("b1", "a22")}, default_split="train")
    with pytest.raises(SplitError, match=r"1 scene id\(s\) .*: a22 \(6 scene\(s\) known\)"):
        build([second], out, BuildConfig(max_side=64, splits=typo))
    assert (out / "manifest.parquet").read_bytes() == manifest  # nothing written
    assert not (out / "images" / "b1").exists()  # no work done
    lists = SplitSpec(lists={"test": ("b1", "a2")}, default_split="train")
    assert build([second], out, BuildConfig(max_side=64, splits=lists)).ok
    after = scene_table(out).groupby("scene_id")["split"].first().to_dict()
    assert after["a2"] == "test" and after["b1"] == "test"  # placed explicitly
    assert after["b2"] == after["b3"] == "train"  # --default-split: only new scenes
    assert (after["a1"], after["a3"]) == (before["a1"], before["a3"])  # kept their split


def test_remove_scene_deletes_only_its_unchanged_files(
    two_sources: tuple[Path, Path], tmp_path: Path
) -> None:
    first, _ = two_sources
    out = tmp_path / "ds"
    build([first], out)
    rows = scene_table(out)
    files = sorted((out / "images" / "a2").iterdir())
    edited = files[0]
    edited.write_bytes(b"a person's edit")
    mine = out / "images" / "a2" / "notes.txt"
    mine.write_text("not written by expokit")
    manifest = (out / "manifest.parquet").read_bytes()
    result = run_cli("-o", str(out), "--remove-scene", "a9", "--remove-scene", "a2")
    assert result.exit_code == 1 and "no scene a9" in result.output
    assert (out / "manifest.parquet").read_bytes() == manifest and files[1].exists()

    result = run_cli("-o", str(out), "--remove-scene", "a2")
    assert result.exit_code == 0, result.output
    assert f"removed scene a2: {len(files) - 1} file(s) deleted" in result.output
    assert f"left images/a2/{edited.name}: changed since it was built" in result.output
    after = scene_table(out)
    pd.testing.assert_frame_equal(
        after, rows[rows["scene_id"] != "a2"].reset_index(drop=True), check_dtype=False
    )
    assert sorted(p.name for p in (out / "images" / "a2").iterdir()) == sorted(
        [edited.name, mine.name]
    )
    assert not (out / RECORDS_DIR / "a2.json").exists()
    assert (out / RECORDS_DIR / "a1.json").exists()
    info = load_dataset(out).info
    assert info.provenance["build"]["removed"] == ["a2"]
    assert info.counts["scenes"] == 2


def test_a_failed_rebuild_keeps_the_earlier_build_of_its_scene(
    two_sources: tuple[Path, Path], tmp_path: Path
) -> None:
    first, _ = two_sources
    out = tmp_path / "ds"
    build([first], out)
    rows = scene_table(out)
    (first / "a1" / "0.png").write_bytes(b"not an image any more")
    summary = build([first], out)
    assert [s for s, _ in summary.failures] == ["a1"] and "0.png" in summary.failures[0][1]
    assert any("a1: its rebuild failed; the dataset keeps" in n for n in summary.notes)
    pd.testing.assert_frame_equal(scene_table(out), rows)


def test_remove_scene_and_build_it_at_once_is_an_error(
    two_sources: tuple[Path, Path], tmp_path: Path
) -> None:
    first, _ = two_sources
    out = tmp_path / "ds"
    build([first], out)
    with pytest.raises(ExpokitError, match="a1: still found in the given sources"):
        build([first], out, remove_scenes=["a1"])


def test_scene_id_from_another_source_is_refused(
    two_sources: tuple[Path, Path], tmp_path: Path
) -> None:
    first, _ = two_sources
    other = write_sequences(tmp_path / "elsewhere", ["a1"], seed=7)
    out = tmp_path / "ds"
    build([first], out)
    with pytest.raises(ExpokitError, match=rf"'a1' from {other.resolve()} is already in .* from"):
        build([other], out)
    # The same source with a changed scene is an update of that scene only.
    write_sequences(first, ["a1"], seed=9)
    summary = build([first], out)
    assert (summary.built, summary.skipped) == (1, 2)


# --------------------------------------------------------------------------- roots and locks


def test_out_into_a_foreign_folder_is_refused(
    two_sources: tuple[Path, Path], tmp_path: Path
) -> None:
    first, _ = two_sources
    folder = tmp_path / "my_project"
    folder.mkdir()
    (folder / "README.md").write_text("my notes")
    result = run_cli(str(first), "-o", str(folder))
    assert result.exit_code == 1
    assert "not empty and was not made by expokit" in result.output
    assert (folder / "README.md").read_text() == "my notes"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md"]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_second_build_into_one_root_gets_in_use(
    two_sources: tuple[Path, Path], tmp_path: Path
) -> None:
    first, _ = two_sources
    out = tmp_path / "ds"
    build([first], out)
    stale = out / "images" / "a1" / f"{TEMP_PREFIX}{_dead_pid()}-0123456789ab-x.png"
    stale.write_bytes(b"left by a killed run")
    manifest = (out / "manifest.parquet").read_bytes()
    with RootLock(out, "expokit curate build"):
        with pytest.raises(RootInUseError, match=rf"in use by pid {os.getpid()} \(expokit"):
            build([first], out)
        result = run_cli(str(first), "-o", str(out))
        assert result.exit_code == 1 and f"in use by pid {os.getpid()}" in result.output
        assert stale.exists()  # cleanup runs only under the lock
    assert (out / "manifest.parquet").read_bytes() == manifest
    assert build([first], out).skipped == 3
    assert not stale.exists()


# --------------------------------------------------------------------------- names and links


def test_unsafe_split_names_are_refused_where_they_enter(
    two_sources: tuple[Path, Path], tmp_path: Path
) -> None:
    first, _ = two_sources
    out = tmp_path / "ds"
    result = run_cli(str(first), "-o", str(out), "--split-fractions", "../../evil=1")
    assert result.exit_code == 2 and "'../../evil'" in result.output
    assert "--split-fractions" in result.output
    assert not (out / "manifest.parquet").exists()
    with pytest.raises(SplitError, match="'a/b'"):
        parse_fractions("a/b=1")
    with pytest.raises(SplitError, match=r"split name '\.\.'"):
        SplitSpec(fractions=(("..", 1.0),))
    lists = tmp_path / "lists.txt"
    lists.write_text("train a1\n../x a2\n")
    with pytest.raises(SplitError, match=r"lists.txt:2"):
        load_split_lists(lists)
    listed = tmp_path / "lists.json"
    listed.write_text(json.dumps({"train": ["a1", "../../a2"]}))
    with pytest.raises(SplitError, match=r"scene id '../../a2' in .*lists.json"):
        load_split_lists(listed)
    with pytest.raises(SplitError, match="default split 'x y'"):
        SplitSpec(lists={"train": ("a1",)}, default_split="x y")
    result = run_cli(str(first), "-o", str(out), "--remove-scene", "../a1")
    assert result.exit_code == 1 and "scene id '../a1' in --remove-scene" in result.output


def test_scene_folder_linked_outside_is_not_written_through(
    two_sources: tuple[Path, Path], tmp_path: Path
) -> None:
    first, _ = two_sources
    out = tmp_path / "ds"
    build([first], out)
    outside = tmp_path / "victim"
    outside.mkdir()
    shutil.rmtree(out / "images" / "a1")
    (out / "images" / "a1").symlink_to(outside, target_is_directory=True)
    summary = build([first], out)
    assert not summary.ok
    ((scene, error),) = summary.failures
    assert scene == "a1" and "images/a1/" in error and "outside" in error
    assert list(outside.iterdir()) == []
    # A failed rebuild never drops rows (only --remove-scene does): a1's stay, and the
    # note says its files are not intact (validate names them).
    assert sorted(load_dataset(out).manifest["scene_id"].unique()) == ["a1", "a2", "a3"]
    assert any("a1: its rebuild failed" in n and "outside the root" in n for n in summary.notes)


# --------------------------------------------------------------------------- duplicates


def test_one_raw_rendered_under_two_names_is_refused(chart_dng: Path, tmp_path: Path) -> None:
    from expokit.curation.rendering.config import RenderConfig
    from expokit.curation.rendering.render import render_batch

    copy = chart_dng.with_name("chart_copy.dng")
    shutil.copy(chart_dng, copy)
    renders = render_batch([chart_dng, copy], tmp_path / "render", RenderConfig(), progress=False)
    assert renders.ok
    result = run_cli(str(tmp_path / "render"), "-o", str(tmp_path / "ds"), "--max-side", "64")
    assert result.exit_code == 1
    assert "failed: scene chart-copy: " in result.output
    assert "as " in result.output and "of scene chart:" in result.output
    assert "leak between splits" in result.output
    assert load_dataset(tmp_path / "ds").manifest["scene_id"].unique().tolist() == ["chart"]


def test_a_copy_of_a_kept_scene_in_a_new_source_is_refused(
    two_sources: tuple[Path, Path], tmp_path: Path
) -> None:
    first, _ = two_sources
    out = tmp_path / "ds"
    build([first], out)
    later = tmp_path / "later"
    shutil.copytree(first / "a2", later / "renamed")
    write_sequences(later, ["fresh"], seed=5)
    summary = build([later], out)
    assert [s for s, _ in summary.failures] == ["renamed"]
    error = summary.failures[0][1]
    assert f"{(later / 'renamed').resolve()}/" in error and "of scene a2" in error
    assert sorted(load_dataset(out).manifest["scene_id"].unique()) == ["a1", "a2", "a3", "fresh"]


# --------------------------------------------------------------------------- workers


def test_a_killed_worker_is_named_and_a_rerun_builds_only_its_scene(
    two_sources: tuple[Path, Path], tmp_path: Path
) -> None:
    first, _ = two_sources
    out = tmp_path / "ds"
    result = run_cli(
        str(first), "-o", str(out), "--max-side", "64", "-j", "2",
        env={FAULT_KILL_SCENE_ENV: "a2"},
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "failed: scene a2: worker process died (SIGKILL" in result.output
    assert "BrokenProcessPool" not in result.output
    assert sorted(load_dataset(out).manifest["scene_id"].unique()) == ["a1", "a3"]
    summary = build([first], out)
    assert summary.ok and (summary.built, summary.skipped, summary.pairs) == (1, 2, 6)


def test_one_raw_rendered_twice_with_other_settings_is_refused(
    chart_dng: Path, tmp_path: Path
) -> None:
    """The renders differ byte for byte; the RAW they come from is the same file."""
    from expokit.curation.rendering.config import RenderConfig
    from expokit.curation.rendering.render import render_batch

    copy = chart_dng.with_name("other_name.dng")
    shutil.copy(chart_dng, copy)
    first = render_batch([chart_dng], tmp_path / "r1", RenderConfig(), progress=False)
    second = render_batch(
        [copy], tmp_path / "r2", RenderConfig(evs=(-1.0, 0.0, 1.0), jpeg_quality=80),
        progress=False,
    )  # fmt: skip
    assert first.ok and second.ok
    result = run_cli(
        str(tmp_path / "r1"), str(tmp_path / "r2"), "-o", str(tmp_path / "ds"), "--max-side", "64"
    )
    assert result.exit_code == 1, result.output
    assert "failed: scene other-name: " in result.output
    assert "chart.dng of scene chart" in result.output
    assert load_dataset(tmp_path / "ds").manifest["scene_id"].unique().tolist() == ["chart"]
