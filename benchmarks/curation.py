"""Curation benchmark: both parts of issue 6 in one run (not a test).

* build (``benchmarks/curation_build.py``): pairs per second for ``expokit curate build``,
  with and without per-pair ECC refinement, on 1 and 2 workers;
* report (``benchmarks/curation_report.py``): report generation time for 1,000 pairs.

    python benchmarks/curation.py
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    for script in ("curation_build.py", "curation_report.py"):
        print(f"\n=== {script} ===", flush=True)
        sys.argv = [str(HERE / script)]
        try:
            runpy.run_path(str(HERE / script), run_name="__main__")
        except SystemExit as exit_:
            if exit_.code not in (None, 0):
                raise
