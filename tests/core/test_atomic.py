import errno
import os
from pathlib import Path

import pytest

from expokit.core.atomic import (
    TEMP_PREFIX,
    atomic_path,
    atomic_write_bytes,
    ensure_writable_dir,
    remove_stale_temp_files,
)
from expokit.core.errors import OutputError


def test_write_creates_parents_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "f.bin"
    atomic_write_bytes(target, b"123")
    assert target.read_bytes() == b"123"
    assert not list(tmp_path.rglob(f"{TEMP_PREFIX}*"))


def test_failure_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert not list(tmp_path.glob(f"{TEMP_PREFIX}*"))


def test_disk_full_message(tmp_path: Path) -> None:
    target = tmp_path / "f.jpg"
    with pytest.raises(OutputError, match=r"disk full while writing .*f\.jpg"), atomic_path(target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_temp_keeps_extension(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "x.png") as tmp:
        assert tmp.suffix == ".png" and tmp.name.startswith(TEMP_PREFIX)
        tmp.write_bytes(b"")


def test_stale_temp_cleanup(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / f"{TEMP_PREFIX}abc-x.jpg").write_bytes(b"x")
    (tmp_path / "keep.jpg").write_bytes(b"x")
    assert remove_stale_temp_files(tmp_path) == 1
    assert (tmp_path / "keep.jpg").exists()


def test_output_folder_that_is_a_file(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        ensure_writable_dir(file)
    with pytest.raises(OutputError, match="not usable"):
        ensure_writable_dir(file / "below")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="permission denied"):
            ensure_writable_dir(folder)
    finally:
        folder.chmod(0o700)


def test_stale_temp_cleanup_spares_live_writers(tmp_path: Path) -> None:
    """A second run's cleanup must not delete a file another live process is writing."""
    import os
    import subprocess
    import sys

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = tmp_path / f"{TEMP_PREFIX}{sleeper.pid}-0123456789ab-x.png"
        live.write_bytes(b"in flight")
        dead_pid = 2**22 + 12345  # above the default pid_max: never a live process
        dead = tmp_path / f"{TEMP_PREFIX}{dead_pid}-0123456789ab-y.png"
        dead.write_bytes(b"left by a killed run")
        with atomic_path(tmp_path / "z.png") as tmp:
            assert tmp.name.startswith(f"{TEMP_PREFIX}{os.getpid()}-")
            tmp.write_bytes(b"")
        assert remove_stale_temp_files(tmp_path) == 1
        assert live.exists() and not dead.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert remove_stale_temp_files(tmp_path) == 1  # the writer is gone now
