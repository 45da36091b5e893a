"""Run several benchmark scripts in one process, one after the other (used by the combined
``calibration.py`` and ``curation.py`` benchmarks)."""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_scripts(names: Sequence[str]) -> None:
    """Run ``benchmarks/<name>`` as ``__main__`` for each name; stop on a non-zero exit."""
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        sys.argv = [str(HERE / name)]
        try:
            runpy.run_path(str(HERE / name), run_name="__main__")
        except SystemExit as exit_:
            if exit_.code not in (None, 0):
                raise
