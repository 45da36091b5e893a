"""The root lock (:mod:`expokit.core.lock`) across ``fork``."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest


def test_a_forked_child_does_not_keep_the_lock_after_its_parent_dies(tmp_path: Path) -> None:
    """The parent (holding the lock) forks a child that outlives it; once the parent is
    gone the root is free at once, though the child still runs."""
    import os
    import signal
    import time

    from expokit.core.lock import RootInUseError, RootLock

    root = tmp_path / "root"
    read, write = os.pipe()
    parent = os.fork()
    if parent == 0:  # the "trainer"
        os.close(read)
        held = RootLock(root, "test trainer").acquire()  # noqa: F841 - kept open
        child = os.fork()
        if child == 0:  # the "worker": sleeps past the trainer's death
            time.sleep(5)
            os._exit(0)
        os.write(write, str(child).encode())
        os.close(write)
        time.sleep(30)
        os._exit(0)
    os.close(write)
    child = int(os.read(read, 32).decode())
    os.close(read)
    try:
        with pytest.raises(RootInUseError):
            RootLock(root, "test").acquire()
        os.kill(parent, signal.SIGKILL)
        os.waitpid(parent, 0)
        with RootLock(root, "test resume"):  # free although the child still runs
            os.kill(child, 0)  # the child is alive
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
