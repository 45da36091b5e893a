"""Module-level functions for process-pool tests (spawn workers import them by name)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def square_or_die(item: tuple[int, str]) -> int:
    """``n * n``; kills its own worker (as the OOM killer would) when the tag is ``"die"``."""
    number, tag = item
    if tag == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if tag == "raise":
        raise ValueError(f"bad item {number}")
    time.sleep(0.05)
    return number * number


def sleep_and_report(item: tuple[str, float]) -> int:
    """Write this worker's pid to a file, then sleep (parent-death tests)."""
    folder, seconds = item
    (Path(folder) / f"{os.getpid()}.pid").write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()
