"""Root markers (a folder expokit made) and the one-writer-per-root lock."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from expokit.core.errors import OutputError
from expokit.core.lock import RootInUseError, RootLock, lock_holder
from expokit.core.roots import MARKER_FILE, claim_root, is_expokit_root, root_kind


def test_claim_new_empty_and_own_folders(tmp_path: Path) -> None:
    new = claim_root(tmp_path / "a" / "b", "dataset")
    assert root_kind(new) == "dataset" and (new / MARKER_FILE).is_file()
    assert claim_root(new, "dataset") == new  # re-runs reuse it
    empty = tmp_path / "empty"
    empty.mkdir()
    claim_root(empty, "export")
    assert root_kind(empty) == "export" and is_expokit_root(empty)


def test_foreign_and_other_kind_folders_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "README.md").write_text("my thesis")
    with pytest.raises(
        OutputError, match=r"not empty and was not made by expokit \(it holds README.md\)"
    ):
        claim_root(foreign, "dataset")
    assert (foreign / "README.md").read_text() == "my thesis"
    assert not (foreign / MARKER_FILE).exists()
    render = claim_root(tmp_path / "r", "render")
    with pytest.raises(OutputError, match="is an expokit render folder, not a dataset folder"):
        claim_root(render, "dataset")
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(OutputError, match="is a file"):
        claim_root(file, "export")
    link = tmp_path / "link"
    link.symlink_to(render, target_is_directory=True)
    with pytest.raises(OutputError, match="symbolic link"):
        claim_root(link, "render")


def test_legacy_roots_are_adopted(tmp_path: Path) -> None:
    old = tmp_path / "old"
    (old / "meta").mkdir(parents=True)
    (old / "meta" / "info.json").write_text("{}")
    (old / "README.md").write_text("card")
    assert claim_root(old, "dataset") == old and root_kind(old) == "dataset"
    render = tmp_path / "render"
    render.mkdir()
    (render / "manifest.parquet").write_bytes(b"foreign")
    with pytest.raises(OutputError, match="not made by expokit"):
        claim_root(render, "render")  # a manifest alone does not prove a render folder


def test_second_writer_is_told_who_holds_the_root(tmp_path: Path) -> None:
    with RootLock(tmp_path, "expokit curate build"):
        with pytest.raises(
            RootInUseError, match=rf"in use by pid {os.getpid()} \(expokit curate build"
        ):
            RootLock(tmp_path, "expokit curate export").acquire()
        assert lock_holder(tmp_path)["purpose"] == "expokit curate build"
    with RootLock(tmp_path, "expokit curate export") as lock:  # released: free again
        assert lock_holder(tmp_path)["pid"] == os.getpid()
        assert lock.path.is_file()


def test_a_lock_held_by_another_process_and_taken_over_after_kill_9(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import pathlib, time
                from expokit.core.lock import RootLock
                lock = RootLock({str(tmp_path)!r}, "expokit render").acquire()
                pathlib.Path({str(ready)!r}).write_text("1")
                time.sleep(60)
                """
            ),
        ]
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline and holder.poll() is None
            time.sleep(0.05)
        with pytest.raises(RootInUseError, match=rf"pid {holder.pid} \(expokit render"):
            RootLock(tmp_path, "expokit curate build").acquire()
    finally:
        holder.kill()  # SIGKILL: no cleanup code runs, the lock file stays behind
        holder.wait()
    assert lock_holder(tmp_path)["pid"] == holder.pid  # stale record left on disk
    with RootLock(tmp_path, "expokit curate build"):
        assert lock_holder(tmp_path)["pid"] == os.getpid()
