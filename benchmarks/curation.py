"""Curation benchmark: both parts of issue 6 in one run (not a test).

* build (``benchmarks/curation_build.py``): pairs per second for ``expokit curate build``,
  with and without per-pair ECC refinement, on 1 and 2 workers;
* report (``benchmarks/curation_report.py``): report generation time for 1,000 pairs.

    python benchmarks/curation.py
"""

from __future__ import annotations

from _scripts import run_scripts  # a sibling script: benchmarks/ is on sys.path when run

if __name__ == "__main__":
    run_scripts(("curation_build.py", "curation_report.py"))
