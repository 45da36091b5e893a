"""Calibration benchmark: both halves of issue 5 in one run (not a test).

* geometry (``benchmarks/calibration_geometry.py``): homography error (mean / max over a grid
  against the ground truth ``H1to3p.xml``) and time on graf1 -> graf3, expokit's features +
  ECC against plain OpenCV SIFT + RANSAC, as shot and with the test image 2.5 EV darker;
* sync (``benchmarks/calibration_sync.py``): offset error and time on 10-minute clips built
  from the shared audio, expokit's coarse-to-fine correlation against one plain full-length
  FFT correlation at 48 kHz, with and without clock drift.

    python benchmarks/calibration.py
"""

from __future__ import annotations

from _scripts import run_scripts  # a sibling script: benchmarks/ is on sys.path when run

if __name__ == "__main__":
    run_scripts(("calibration_geometry.py", "calibration_sync.py"))
