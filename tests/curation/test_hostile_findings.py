"""Reproduced hostile findings against curation: a rebuild that fails on the output side
keeps the earlier rows, `curate card` leaves a foreign folder alone, and `curate validate`
names foreign entries in ``images/``."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from expokit.curation.build.config import BuildConfig
from expokit.curation.dataset.format import load_dataset
from tests.curation.build.test_build_trust import build, run_cli, scene_table, write_sequences

CONFIG = BuildConfig(max_side=64)
SCENES = ["a1", "a2", "a3", "a4"]


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, Path]:
    """A source of four scenes (2 pairs each) built once into ``ds``: 8 rows."""
    source = write_sequences(tmp_path / "session", SCENES, seed=3)
    out = tmp_path / "ds"
    assert build([source], out).ok
    assert len(scene_table(out)) == 8
    return source, out


def _change_every_scene(source: Path) -> None:
    """New content for every scene, so a rebuild re-processes (and rewrites) all of them."""
    write_sequences(source, SCENES, seed=4)


def _disk_fills_in(monkeypatch: pytest.MonkeyPatch, folder: str, after: int) -> None:
    """Every write below ``images/<folder>/`` after the first ``after`` fails with ENOSPC,
    as a disk that fills up in the middle of that scene."""
    real = Path.write_bytes
    count = {"n": 0}

    def write_bytes(self: Path, data: bytes) -> int:
        if f"/images/{folder}/" in self.as_posix():
            count["n"] += 1
            if count["n"] > after:
                raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


@pytest.mark.parametrize("after", [0, 1, 2])
def test_disk_full_while_rebuilding_a_scene_keeps_every_earlier_row(
    built: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, after: int
) -> None:
    """Finding 1: a full disk while writing a rebuilt scene's images dropped that scene's
    rows and those of the scenes the stopped batch never reached (8 -> 4)."""
    source, out = built
    before = scene_table(out)
    files = {p: p.read_bytes() for p in (out / "images").rglob("*") if p.is_file()}
    _change_every_scene(source)
    _disk_fills_in(monkeypatch, "a2", after)
    summary = build([source], out)
    assert not summary.ok
    assert any(scene == "a2" and "disk full" in error for scene, error in summary.failures)
    after_table = scene_table(out)
    assert sorted(after_table["pair_id"]) == sorted(before["pair_id"])  # 8 rows stay
    # The failed scene's earlier images are untouched (staged writes never replaced them).
    a2 = before[before["scene_id"] == "a2"].reset_index(drop=True)
    kept = after_table[after_table["scene_id"] == "a2"].reset_index(drop=True)
    assert kept.equals(a2)
    for path, data in files.items():
        if "/images/a2/" in path.as_posix():
            assert path.read_bytes() == data
    assert not [p for p in (out / "images" / "a2").iterdir() if p.name.startswith(".~")]
    load_dataset(out)  # the manifest stays valid
    # The failed record lists no outputs: removing the scene still deletes its kept files.
    monkeypatch.undo()
    removed = build([], out, remove_scenes=["a2"])
    assert removed.removed == [("a2", 3)] and not (out / "images" / "a2").exists()


def test_disk_full_rebuild_exits_non_zero_and_keeps_rows_on_the_cli(
    built: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, out = built
    _change_every_scene(source)
    _disk_fills_in(monkeypatch, "a1", 1)
    result = run_cli(str(source), "-o", str(out), "--max-side", "64")
    assert result.exit_code == 1, result.output
    assert "failed: scene a1:" in result.output and "disk full" in result.output
    assert len(scene_table(out)) == 8


def test_a_scene_folder_linked_out_of_the_root_keeps_its_earlier_rows(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    """Finding 1: a scene folder replaced by a link out of the root made its rebuild fail
    and dropped its rows (16 -> 12 in the report); now the rows stay, nothing is written
    through the link, and the failure is named."""
    source, out = built
    before = scene_table(out)
    outside = tmp_path / "victim"
    shutil.move(out / "images" / "a3", outside)
    (out / "images" / "a3").symlink_to(outside, target_is_directory=True)
    victim = {p.name: p.read_bytes() for p in outside.iterdir()}
    _change_every_scene(source)
    summary = build([source], out)
    ((scene, error),) = summary.failures
    assert scene == "a3" and "outside" in error
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == victim
    after_table = scene_table(out)
    assert sorted(after_table["pair_id"]) == sorted(before["pair_id"])
    assert any("a3: its rebuild failed" in note for note in summary.notes)


def test_an_unexpected_crash_while_writing_keeps_the_earlier_rows(
    built: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer raising something no one expected (a crash record) keeps the rows too."""
    import expokit.curation.build.pair as build_module

    source, out = built
    before = scene_table(out)
    _change_every_scene(source)
    real = build_module.encode_image
    calls = {"n": 0}

    def encode(image: np.ndarray, ext: str, config: BuildConfig) -> bytes:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("encoder blew up")
        return real(image, ext, config)

    monkeypatch.setattr(build_module, "encode_image", encode)
    summary = build([source], out)
    assert len(summary.failures) == 1 and "encoder blew up" in summary.failures[0][1]
    assert sorted(scene_table(out)["pair_id"]) == sorted(before["pair_id"])


# --------------------------------------------------------------------------- curate card


def _tools(*args: str) -> tuple[int, str]:
    import click

    from expokit.cli.curate_tools import register

    group = click.Group("curate")
    register(group)
    result = CliRunner().invoke(group, list(args))
    return result.exit_code, result.output


def test_card_on_a_foreign_folder_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    """Finding 3: `curate card FOREIGN_DIR` made ``.expokit/lock`` in it."""
    folder = tmp_path / "my_project"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    code, output = _tools("card", str(folder))
    assert code == 1 and "info.json" in output, output
    assert "Traceback" not in output
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_card_still_writes_the_card_of_a_dataset(root: Path) -> None:
    (root / "README.md").unlink(missing_ok=True)
    code, output = _tools("card", str(root))
    assert code == 0, output
    assert (root / "README.md").is_file()


# --------------------------------------------------------------------------- curate validate


def test_validate_names_another_commands_folder_inside_images(root: Path) -> None:
    """Finding 4: a train/eval output folder inside ``images/`` went unnoticed."""
    from expokit.core.roots import claim_root
    from expokit.curation.dataset.validate import validate_dataset

    claim_root(root / "images" / "run1", "run", what="run folder")
    (root / "images" / "run1" / "model.pt").write_bytes(b"weights")
    scene = sorted(p for p in (root / "images").iterdir() if p.name != "run1")[0]
    (scene / "eval").mkdir()
    claim_root(scene / "eval", "evaluation")
    (root / "images" / "stray.txt").write_text("left here")
    report = validate_dataset(root, progress=False)
    found = {(p.code, p.file, p.severity) for p in report.problems}
    assert ("foreign-folder", "images/run1", "error") in found
    assert ("foreign-folder", f"images/{scene.name}/eval", "error") in found
    assert ("foreign-entry", "images/stray.txt", "warning") in found
    assert not report.ok
    code, output = _tools("validate", str(root), "--no-progress")
    assert code == 1 and "images/run1" in output and "expokit run folder" in output


def test_validate_passes_a_dataset_with_nothing_foreign_in_images(root: Path) -> None:
    from expokit.curation.dataset.validate import validate_dataset

    report = validate_dataset(root, progress=False)
    assert report.ok and report.problems == [], [str(p) for p in report.problems]
