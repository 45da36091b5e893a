"""Exports delete only their own files, resume after a kill, never write or read outside.

Issue 9: a crafted ``export.json`` made export delete ``../victims/a.txt``; a killed export
could not be resumed; a split named ``../../evil`` and images symlinked out of the dataset
were followed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pandas as pd
import pytest
from click.testing import CliRunner

from expokit.cli.curate_tools import register
from expokit.core.atomic import TEMP_PREFIX
from expokit.core.hashing import sha256_file
from expokit.core.lock import RootInUseError, RootLock
from expokit.curation.dataset.format import MANIFEST_FILE, Dataset, load_dataset
from expokit.curation.export.driver import PROGRESS_JOURNAL, export_dataset
from expokit.curation.export.layouts import ExportError
from expokit.curation.export.record import EXPORT_RECORD
from tests.curation.conftest_tools import Spec, make_dataset

REPO_ROOT = Path(__file__).resolve().parents[3]
SMALL = Spec(
    stills={"beach": "train", "kitchen": "val", "lab": "test"},
    evs=(-1.5, -1.0, 0.0, 1.0, 1.5),  # an MSEC scene needs all five inputs
    clips=(("street", "c01", 5, "train", -1.0),),
    masks=False,
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trust") / "ds"
    make_dataset(root, SMALL)
    return root


@pytest.fixture
def root(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "ds"
    shutil.copytree(pristine, copy, symlinks=True)
    return copy


def _cli(*args: str) -> tuple[int, str]:
    group = click.Group("curate")
    register(group)
    result = CliRunner().invoke(group, ["export", *args, "--no-progress"])
    return result.exit_code, result.output


def _data_files(out: Path) -> set[str]:
    """Files of an export folder as peers' loaders see them (expokit's state left out)."""
    return {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if (p.is_file() or p.is_symlink()) and ".expokit" not in p.relative_to(out).parts
    } - {EXPORT_RECORD}


def _record(out: Path) -> dict:
    return json.loads((out / EXPORT_RECORD).read_text())


# --------------------------------------------------------------------------- cleanup


def test_crafted_record_cannot_delete_outside_out(pristine: Path, tmp_path: Path) -> None:
    victims = tmp_path / "victims"
    victims.mkdir()
    (victims / "a.txt").write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("a person's note")
    stale = out / "old" / "stale.jpg"
    stale.parent.mkdir()
    stale.write_bytes(b"written by an earlier export")
    (out / EXPORT_RECORD).write_text(
        json.dumps(
            {
                "files": {
                    "../victims/a.txt": "x",
                    str(victims / "a.txt"): sha256_file(victims / "a.txt"),
                    "mine.txt": "0" * 64,  # recorded, but the file changed since
                    "old/stale.jpg": sha256_file(stale),
                }
            }
        )
    )
    summary = export_dataset(pristine, out, "sequences", progress=False)
    assert summary.ok
    assert (victims / "a.txt").read_text() == "precious"
    assert (out / "mine.txt").read_text() == "a person's note"
    # the one listed file that is inside and unchanged is expokit's: removed
    assert not stale.exists() and not stale.parent.exists()
    assert summary.removed == ["old/stale.jpg"]
    kept = "\n".join(summary.kept)
    assert "../victims/a.txt: not removed" in kept and "'..'" in kept
    assert "is absolute" in kept
    assert "mine.txt: not removed: changed since expokit wrote it" in kept
    assert _record(out)["kept"] == summary.kept
    # the CLI says what it left
    code, output = _cli(str(pristine), "--layout", "sequences", "--out", str(out))
    assert code == 0 and "warning: mine.txt: not written by expokit" in output


def test_a_listed_path_through_a_link_out_is_refused(pristine: Path, tmp_path: Path) -> None:
    victims = tmp_path / "victims"
    victims.mkdir()
    (victims / "a.txt").write_text("precious")
    out = tmp_path / "out"
    export_dataset(pristine, out, "sequences", progress=False)
    (out / "train" / "link").symlink_to(victims)
    record = _record(out)
    record["files"]["train/link/a.txt"] = sha256_file(victims / "a.txt")
    (out / EXPORT_RECORD).write_text(json.dumps(record))
    with pytest.raises(ExportError, match=r"symbolic links that leave it \(train/link\)"):
        export_dataset(pristine, out, "msec", progress=False)
    assert (victims / "a.txt").read_text() == "precious"


@pytest.mark.parametrize(
    "content", ["{not json", "[1, 2]", '{"files": ["a.jpg"]}', '{"files": {"a.jpg": 3}}']
)
def test_malformed_record_is_an_error_naming_it(
    pristine: Path, tmp_path: Path, content: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / EXPORT_RECORD).write_text(content)
    with pytest.raises(ExportError, match=r"export\.json: not a valid export record"):
        export_dataset(pristine, out, "msec", progress=False)
    assert sorted(p.name for p in out.iterdir() if p.name != ".expokit") == [EXPORT_RECORD]


def test_foreign_and_dataset_folders_are_refused(root: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(ExportError, match="not empty and was not made by expokit"):
        export_dataset(root, foreign, "msec", progress=False)
    with pytest.raises(ExportError, match=r"inside the dataset's own files \(images/\)"):
        export_dataset(root, root / "images" / "export", "msec", progress=False)
    with pytest.raises(ExportError, match="contains the dataset"):
        export_dataset(root, tmp_path, "msec", progress=False)
    assert not (root / "images" / "export").exists()
    assert (foreign / "notes.txt").read_text() == "keep"


def test_a_second_export_into_the_folder_is_locked_out(pristine: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export_dataset(pristine, out, "msec", progress=False)
    with RootLock(out, "expokit curate export"):
        with pytest.raises(RootInUseError, match=r"in use by pid \d+ \(expokit curate export"):
            export_dataset(pristine, out, "msec", progress=False)
        code, output = _cli(str(pristine), "--layout", "msec", "--out", str(out))
        assert code == 1 and f"in use by pid {os.getpid()}" in output


# --------------------------------------------------------------------------- resume


def _killed_export(root: Path, out: Path, layout: str, after: int) -> subprocess.CompletedProcess:
    """Run ``expokit curate export`` in a child that SIGKILLs itself after ``after`` files.

    The kill comes from inside (right after the journal entry of the next file, before
    that file is written), so the test needs no timing.
    """
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from expokit.core.hashing import sha256_bytes
        from expokit.curation.export.layouts import ExportWriter
        original = ExportWriter.write
        count = 0
        def write(self, rel, data):
            global count
            if count == {after}:
                self.journal.announce(rel, sha256_bytes(data))
                os.kill(os.getpid(), signal.SIGKILL)
            count += 1
            original(self, rel, data)
        ExportWriter.write = write
        from expokit.cli import main
        sys.argv = ["expokit", "curate", "export", {str(root)!r}, "--layout", {layout!r},
                    "--out", {str(out)!r}, "--no-progress"]
        main()
        """
    )
    return subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


def test_killed_export_is_completed_by_a_rerun(pristine: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    killed = _killed_export(pristine, out, "sequences", after=5)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (out / EXPORT_RECORD).exists()
    assert len(_data_files(out)) == 5
    journal = [json.loads(line) for line in (out / PROGRESS_JOURNAL).read_text().splitlines()]
    assert len(journal) == 6  # the sixth file was announced, then the process died
    # the same command again completes it, into the same folder
    code, output = _cli(str(pristine), "--layout", "sequences", "--out", str(out))
    assert code == 0, output
    record = _record(out)
    assert _data_files(out) == set(record["files"])
    reference = tmp_path / "reference"
    export_dataset(pristine, reference, "sequences", progress=False)
    assert set(record["files"]) == set(_record(reference)["files"])
    for rel, digest in record["files"].items():
        assert sha256_file(out / rel) == digest
    assert not (out / PROGRESS_JOURNAL).exists()
    assert not list(out.rglob(f"{TEMP_PREFIX}*"))


def test_rerun_after_a_kill_leaves_no_stray_of_the_killed_run(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    killed = _killed_export(root, out, "msec", after=8)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    written = _data_files(out)
    assert written and any(p.startswith("training/") for p in written)
    # the dataset loses its train scenes before the re-run: their files must go
    frame = pd.read_parquet(root / MANIFEST_FILE)
    frame = frame[frame["split"] != "train"]
    frame.to_parquet(root / MANIFEST_FILE, index=False)
    summary = export_dataset(root, out, "msec", progress=False)
    # no train scene left: only the peer check's complaint that training/ is missing
    assert {i.reason for i in summary.errors} == {"peer-convention"}
    assert all("training/" in i.message for i in summary.errors) and not summary.kept
    assert _data_files(out) == set(summary.files)
    assert not any(p.startswith("training/") for p in _data_files(out))
    assert set(summary.removed) == {p for p in written if p.startswith("training/")}


def test_a_torn_last_journal_line_is_ignored_but_an_edited_journal_is_an_error(
    pristine: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    export_dataset(pristine, out, "msec", progress=False)
    journal = out / PROGRESS_JOURNAL
    journal.write_text('{"file": "README.md", "sha256": "ab"}\n{"file": "trai')
    assert export_dataset(pristine, out, "msec", progress=False, allow_partial=True).ok
    journal.write_text('garbage\n{"file": "README.md", "sha256": "ab"}\n')
    with pytest.raises(ExportError, match=r"export-progress\.jsonl, line 1: not a progress"):
        export_dataset(pristine, out, "msec", progress=False)


# --------------------------------------------------------------------------- names, links


def test_unsafe_split_never_becomes_a_folder(pristine: Path, tmp_path: Path) -> None:
    dataset = load_dataset(pristine)
    frame = dataset.manifest.copy()
    evil = frame["scene_id"] == "beach"
    frame["split"] = frame["split"].astype(object)
    frame.loc[evil, "split"] = "../../evil"
    frame["split"] = frame["split"].astype("string")
    bad_ids = set(frame.loc[evil, "pair_id"])
    first_bad = frame.loc[evil, "pair_id"].iloc[0]
    out = tmp_path / "a" / "b" / "out"
    summary = export_dataset(
        Dataset(pristine, dataset.info, frame), out, "sequences", progress=False
    )
    assert not summary.ok
    unsafe = [i for i in summary.errors if i.reason == "unsafe-name"]
    assert {i.pair_id for i in unsafe} == bad_ids
    assert "'../../evil'" in unsafe[0].message
    assert not (tmp_path / "evil").exists() and not (tmp_path / "a" / "evil").exists()
    assert all(not p.startswith("..") for p in summary.files)
    # written to disk, the same manifest is refused on load, naming row and column
    frame.to_parquet(pristine.parent / "m.parquet", index=False)
    copy = tmp_path / "ds"
    shutil.copytree(pristine, copy)
    shutil.copy(pristine.parent / "m.parquet", copy / MANIFEST_FILE)
    code, output = _cli(str(copy), "--layout", "sequences", "--out", str(out))
    assert code == 1
    assert f"row {first_bad}, column split: '../../evil' is not a safe name" in output


def test_image_symlinked_out_of_the_dataset_is_not_exported(root: Path, tmp_path: Path) -> None:
    frame = load_dataset(root).manifest
    rel = str(frame.loc[0, "input_path"])
    outside = tmp_path / "outside.png"
    shutil.copy(root / rel, outside)  # same bytes: the SHA-256 would match
    (root / rel).unlink()
    (root / rel).symlink_to(outside)
    out = tmp_path / "out"
    summary = export_dataset(root, out, "sequences", progress=False)
    issues = [i for i in summary.errors if i.reason == "symlink-outside-root"]
    assert [(i.pair_id, i.file) for i in issues] == [(frame.loc[0, "pair_id"], rel)]
    exported = [out / p for p in summary.files]
    assert all(p.read_bytes() != outside.read_bytes() for p in exported)
    code, output = _cli(str(root), "--layout", "sequences", "--out", str(out))
    assert code == 1 and f"[{frame.loc[0, 'pair_id']}] {rel}:" in output
