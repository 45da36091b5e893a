"""Speed of ``expokit align live``'s fast path against a full ``check_alignment`` per pair.

Run from the repository root::

    python benchmarks/align_live.py                 # 60 pairs at 1024x680
    python benchmarks/align_live.py --pairs 120 --size 1024x680 --full-checks 3

It takes about a minute on a 2-core machine with the defaults.

Data: generated live-view pairs (:class:`expokit.calibration.live.SyntheticPreviewSource`:
a procedural scene, the test view rotated 0.8 deg, 2 % larger, shifted (6, -4) px,
mirrored left-right, 2 EV darker, sRGB JPEG at quality 92, the scene jittering 0.3 px
between frames), decoded from JPEG bytes by every way measured.

What is measured
----------------
full check
    :func:`expokit.calibration.alignment_check.check_alignment` on every pair (the JPEGs
    written to a temporary folder first): flip detection, SIFT + ``USAC_MAGSAC``, ECC,
    photometry, focus, parallax. Shipped default ``max_side`` 2000 and the 1024 that
    ``align live`` uses for its own full checks.
live, blocking
    :class:`expokit.calibration.live.LiveAnalyzer` with the full check every 15 pairs run
    in line (the pair that gets it waits for it).
live (shipped)
    The same with the periodic full checks in a background thread (only the first pair
    blocks).

Pairs/s is pairs over wall time of the whole run (the first, blocking full check included);
latency is per pair (median and p95 over the pairs after the first, ``time.perf_counter``).
The figures' agreement is printed too: largest roll / scale / shift difference of the live
path from the full check on the same pairs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def full_checks(pairs: list[tuple[bytes, bytes]], max_side: int) -> tuple[list[float], list[Any]]:
    from expokit.calibration.alignment_check import AlignmentCheckConfig, check_alignment

    config = AlignmentCheckConfig(max_side=max_side)
    times, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (ref, test) in enumerate(pairs):
            t0 = time.perf_counter()
            ref_path, test_path = Path(tmp) / f"r{i}.jpg", Path(tmp) / f"t{i}.jpg"
            ref_path.write_bytes(ref)
            test_path.write_bytes(test)
            results.append(check_alignment(ref_path, test_path, config))
            times.append(time.perf_counter() - t0)
    return times, results


def live_run(pairs: list[tuple[bytes, bytes]], background: bool) -> tuple[float, list[Any]]:
    from expokit.calibration.live import LiveAnalyzer, LiveConfig

    analyzer = LiveAnalyzer(LiveConfig(background=background))
    t0 = time.perf_counter()
    results = [analyzer.analyze(ref, test) for ref, test in pairs]
    wall = time.perf_counter() - t0
    analyzer.close()
    return wall, results


def main(argv: list[str] | None = None) -> dict[str, float]:
    import cv2

    from expokit.calibration.live import SyntheticPreviewSource

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=60, help="live-view pairs (default 60)")
    parser.add_argument("--size", default="1024x680", help="frame size WxH (default 1024x680)")
    parser.add_argument(
        "--full-checks", type=int, default=3, help="pairs given the full check (default 3)"
    )
    args = parser.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    source = SyntheticPreviewSource(
        (w, h), roll_deg=0.8, scale=1.02, shift=(6.0, -4.0), ev=-2.0, jitter_px=0.3
    )
    pairs = [source.read_pair() for _ in range(args.pairs)]

    print("expokit align live benchmark")
    print("=" * 28)
    print(
        f"python {platform.python_version()}, OpenCV {cv2.__version__}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}"
    )
    print(f"data: {args.pairs} generated {w}x{h} JPEG pairs; full check on {args.full_checks}")
    rows: dict[str, tuple[float, float, float]] = {}
    subset = pairs[: args.full_checks]
    reference: list[Any] = []
    for side in (2000, 1024):
        times, reference = full_checks(subset, side)
        rate = len(times) / sum(times)
        rows[f"full check (max_side {side})"] = (rate, statistics.median(times), _p95(times))
    for name, background in (("live, blocking", False), ("live (shipped)", True)):
        wall, results = live_run(pairs, background)
        latency = [r.latency_ms / 1e3 for r in results[1:]]
        rows[name] = (len(results) / wall, statistics.median(latency), _p95(latency))
        modes = sum(r.mode == "full" for r in results)
        print(f"{name}: {modes} of {len(results)} pairs waited for a full check")
    print()
    print(f"{'way':28s} {'pairs/s':>8s} {'median ms':>10s} {'p95 ms':>8s}")
    for name, (rate, med, p95) in rows.items():
        print(f"{name:28s} {rate:8.2f} {med * 1e3:10.1f} {p95 * 1e3:8.1f}")
    full_rate = rows["full check (max_side 2000)"][0]
    live_rate = rows["live (shipped)"][0]
    blocking_rate = rows["live, blocking"][0]
    print()
    print(f"ratio live (shipped) / full check pairs/s: {live_rate / full_rate:.1f}x")
    print(f"ratio live, blocking / full check pairs/s: {blocking_rate / full_rate:.1f}x")
    median_ratio = rows["full check (max_side 2000)"][1] / rows["live (shipped)"][1]
    print(f"ratio full check / live (shipped) median latency: {median_ratio:.1f}x")
    _, live_results = live_run(subset, background=False)
    worst = [
        max(abs(a.roll_deg - b.roll_deg) for a, b in zip(live_results, reference, strict=True)),
        max(abs(a.scale_pct - b.scale_pct) for a, b in zip(live_results, reference, strict=True)),
        max(
            float(np.hypot(a.shift_px[0] - b.shift_px[0], a.shift_px[1] - b.shift_px[1]))
            for a, b in zip(live_results, reference, strict=True)
        ),
    ]
    print(
        f"live vs full check on the same pairs: roll {worst[0]:.4f} deg, "
        f"scale {worst[1]:.4f} %, shift {worst[2]:.3f} px (largest differences)"
    )
    return {"live_pairs_per_s": live_rate, "full_pairs_per_s": full_rate}


if __name__ == "__main__":
    main()
