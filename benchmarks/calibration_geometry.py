"""Accuracy and speed of expokit's rig homography against plain OpenCV; prints ratios.

Run from the repository root::

    python benchmarks/calibration_geometry.py              # ../shared/data/stereo/homography_graf
    python benchmarks/calibration_geometry.py --repeat 5
    python benchmarks/calibration_geometry.py --graf DIR   # folder with graf1/graf3/H1to3p.xml

It takes about half a minute on a 2-core machine with the default 3 repeats.

Data: the Oxford "graffiti" pair shipped with OpenCV, ``graf1.png`` (test) -> ``graf3.png``
(reference), 800x640, with the ground-truth homography ``H1to3p.xml`` (itself good to about
1 px, so errors below that cannot be ranked). Error = distance between the estimated and the
true homography's images of a 10-px grid over graf1 (mean and max, reference pixels).
Times are medians of ``--repeat`` runs after one warm-up, ``time.perf_counter``, in one
process, so both ways see the same machine state.

What is measured
----------------
naive
    What people write: grayscale ``cv2.imread``, ``SIFT_create().detectAndCompute`` on both
    images, ``BFMatcher.knnMatch(k=2)`` with Lowe's ratio 0.75, ``findHomography(RANSAC,
    3.0)``.
expokit, features only
    :func:`expokit.calibration.geometry.calibrate_geometry` with the flip fixed and ECC off:
    reading + hashing the files, exposure-matched 8-bit images, SIFT + ratio 0.75,
    ``USAC_MAGSAC``, the degeneracy checks, valid region, JSON (QA images off).
expokit, + ECC
    The same plus the coarse-to-fine ECC refinement (the shipped default except the flip).
expokit, default
    Everything as shipped: automatic flip detection (SIFT on four flips of the test image),
    ECC, QA images.
2.5 EV darker
    The same ways with graf1 darkened by 2.5 EV (gain 2^-2.5, Gaussian noise sigma 2, uint8):
    the rig's situation. The naive way sees an image with a quarter of the contrast.

Ratios printed: naive error / expokit error (> 1: expokit more accurate) and expokit time /
naive time (the price of it).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def default_graf_dir() -> Path:
    root = os.environ.get("EXPOKIT_SHARED_DATA")
    base = Path(root) if root else REPO.parent / "shared" / "data"
    return base / "stereo" / "homography_graf"


def load_truth(folder: Path) -> Any:
    import cv2

    storage = cv2.FileStorage(str(folder / "H1to3p.xml"), cv2.FILE_STORAGE_READ)
    truth = storage.getNode("H13").mat()
    storage.release()
    return truth


def naive_homography(test: Path, reference: Path) -> Any:
    """Plain OpenCV: SIFT, ratio 0.75, RANSAC 3 px."""
    import cv2

    a = cv2.imread(str(test), cv2.IMREAD_GRAYSCALE)
    b = cv2.imread(str(reference), cv2.IMREAD_GRAYSCALE)
    sift = cv2.SIFT_create()
    ka, da = sift.detectAndCompute(a, None)
    kb, db = sift.detectAndCompute(b, None)
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < 0.75 * n.distance]
    src = np.float32([ka[m.queryIdx].pt for m in good])
    dst = np.float32([kb[m.trainIdx].pt for m in good])
    h, _ = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
    return h


def expokit_homography(test: Path, reference: Path, out: Path, variant: str) -> Any:
    from expokit.calibration.geometry import GeometryConfig, calibrate_geometry

    configs = {
        "features": GeometryConfig(flip="none", ecc=None, qa_images=False),
        "ecc": GeometryConfig(flip="none", qa_images=False),
        "default": GeometryConfig(),
    }
    return calibrate_geometry([reference], [test], out, config=configs[variant]).homography


def timed(fn: Callable[[], Any], repeat: int) -> tuple[Any, float]:
    fn()  # warm-up: page cache, OpenCV's lazy initialisation
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return result, statistics.median(times)


def darkened_copy(graf1: Path, out: Path) -> Path:
    import cv2

    image = cv2.imread(str(graf1))
    rng = np.random.default_rng(0)
    dark = image.astype(np.float64) * 2.0**-2.5 + rng.normal(0.0, 2.0, image.shape)
    path = out / "graf1_minus2.5EV.png"
    cv2.imwrite(str(path), np.clip(np.round(dark), 0, 255).astype(np.uint8))
    return path


def geometry_benchmark(graf_dir: Path | None = None, repeat: int = 3) -> dict[str, Any]:
    """Run the comparison, print the table and the ratios; return the numbers."""
    import cv2

    from expokit.calibration.homography import homography_grid_error

    folder = graf_dir or default_graf_dir()
    graf1, graf3 = folder / "graf1.png", folder / "graf3.png"
    truth = load_truth(folder)
    size = (800, 640)
    print("expokit calibration geometry benchmark")
    print("=" * 38)
    print(
        f"python {platform.python_version()}, OpenCV {cv2.__version__}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}"
    )
    print(f"data: {folder} (graf1 -> graf3 vs H1to3p), median of {repeat} runs after 1 warm-up")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="expokit-geo-bench-") as tmp_str:
        tmp = Path(tmp_str)
        cases = {"as shot": graf1, "2.5 EV darker": darkened_copy(graf1, tmp)}
        for case, test in cases.items():
            ways: dict[str, Callable[[], Any]] = {
                "naive SIFT+RANSAC": lambda t=test: naive_homography(t, graf3),
                "expokit features only": lambda t=test: expokit_homography(
                    t, graf3, tmp / "f", "features"
                ),
                "expokit + ECC": lambda t=test: expokit_homography(t, graf3, tmp / "e", "ecc"),
                "expokit default": lambda t=test: expokit_homography(
                    t, graf3, tmp / "d", "default"
                ),
            }
            print(f"\n{case}:")
            print(f"  {'way':<24} {'mean px':>8} {'max px':>8} {'time s':>8}")
            for name, fn in ways.items():
                h, seconds = timed(fn, repeat)
                mean, worst = homography_grid_error(h, truth, size)
                results[(case, name)] = (mean, worst, seconds)
                print(f"  {name:<24} {mean:8.3f} {worst:8.3f} {seconds:8.3f}")
            naive = results[(case, "naive SIFT+RANSAC")]
            print("  ratios against naive (error: naive / expokit; time: expokit / naive):")
            for name in list(ways)[1:]:
                mean, worst, seconds = results[(case, name)]
                print(
                    f"    {name:<22} mean error {naive[0] / mean:5.2f}x  max error "
                    f"{naive[1] / worst:5.2f}x  time {seconds / naive[2]:5.2f}x"
                )
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graf", type=Path, default=None, help="folder with graf1/graf3/H1to3p")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per way (median)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    folder = args.graf or default_graf_dir()
    if not (folder / "H1to3p.xml").is_file():
        print(f"graf data not found in {folder} (pass --graf DIR)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.ERROR)  # the pipeline's INFO lines would drown the table
    geometry_benchmark(folder, max(1, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
