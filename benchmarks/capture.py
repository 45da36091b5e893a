"""Capture benchmark: pairs per second and trigger skew, threaded (barrier) vs sequential.

Not a test. Runs the real capture path (``expokit.capture.runner``: barrier threads, writer
thread, fsynced journal, atomic file writes) against

* the **fake backend** with a configured USB trigger latency and jitter, idle and with the
  CPU loaded by busy processes, and
* the **gphoto2 virtual camera** bundled in the python-gphoto2 wheel (real libgphoto2 code
  path). It is one device for every Camera object and is not thread-safe, so only
  sequential pairs are measured there, in a subprocess (it allows ~26 captures a process).

Skew is the spread of the host monotonic clock read just before each camera's trigger call
(the Python side; a body adds its own 0.3-1.5 s USB latency on top). Target: threaded skew
under 5 ms.

    python benchmarks/capture.py [--pairs 40] [--latency 0.05] [--jitter 0.01]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RIG = """
backend = "{backend}"
output_root = "{root}"
ev_offset = -2.0
trigger_mode = "{mode}"
[retry]
attempts = 2
backoff_s = 0.01
trigger_timeout_s = 10
[roles.reference]
serial = "{ref}"
settings = {{ {ref_settings} }}
[roles.test]
serial = "{test}"
settings = {{ {test_settings} }}
"""

FAKE_CAMERAS = """
[[fake.cameras]]
serial = "REF"
latency_s = {latency}
jitter_s = {jitter}
seed = 1
[[fake.cameras]]
serial = "TST"
vendor = "canon"
latency_s = {latency}
jitter_s = {jitter}
seed = 2
"""


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "median_ms": statistics.median(ordered) * 1e3,
        "p95_ms": p95 * 1e3,
        "max_ms": ordered[-1] * 1e3,
    }


def _burn(stop_at: float) -> None:
    x = 0
    while time.monotonic() < stop_at:
        x += 1


def run_fake(mode: str, pairs: int, latency: float, jitter: float, load: int) -> dict[str, Any]:
    from expokit.capture.commands import shoot
    from expokit.capture.journal import read_journal
    from expokit.capture.rig_config import load_rig_config

    with tempfile.TemporaryDirectory() as tmp:
        rig = Path(tmp) / "rig.toml"
        settings = 'shutter = "1/125", image_format = "JPEG Fine"'
        rig.write_text(
            RIG.format(
                backend="fake",
                root=Path(tmp, "s").as_posix(),
                mode=mode,
                ref="REF",
                test="TST",
                ref_settings=settings,
                test_settings='image_format = "JPEG Fine"',
            )
            + FAKE_CAMERAS.format(latency=latency, jitter=jitter)
        )
        burners = []
        if load:
            ctx = multiprocessing.get_context("spawn")
            stop_at = time.monotonic() + 3600
            burners = [ctx.Process(target=_burn, args=(stop_at,), daemon=True) for _ in range(load)]
            for proc in burners:
                proc.start()
        try:
            start = time.perf_counter()
            session, report = shoot(load_rig_config(rig), "pair", count=pairs, progress=False)
            seconds = time.perf_counter() - start
        finally:
            for proc in burners:
                proc.terminate()
        events, _ = read_journal(session.root / "journal.jsonl")
    skews: dict[int, list[float]] = {}
    for event in events:
        if event["event"] == "triggered":
            skews.setdefault(event["index"], []).append(event["t_before"])
    spreads = [max(v) - min(v) for v in skews.values() if len(v) == 2]
    return {
        "backend": "fake",
        "mode": mode,
        "load": load,
        "pairs": pairs,
        "pairs_per_s": pairs / seconds,
        **_stats(spreads),
        "failed": len(report.shots_failed),
    }


VIRTUAL_SINGLE = r"""
import json, sys, time
from expokit.capture.factory import open_camera
n = int(sys.argv[1])
cam = open_camera("gphoto2")
cam.connect()
latencies, totals = [], []
for _ in range(n):
    t0 = time.perf_counter()
    cam.trigger()
    t1 = time.perf_counter()
    f = cam.wait_for_file(10)
    cam.download(f)
    t2 = time.perf_counter()
    latencies.append(t1 - t0)
    totals.append(t2 - t0)
cam.disconnect()
print(json.dumps({"trigger_s": latencies, "shot_s": totals}))
"""


def _virtual_single(env: dict[str, str], shots: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", VIRTUAL_SINGLE, str(shots)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return {
        "shots": shots,
        "trigger_median_ms": statistics.median(data["trigger_s"]) * 1e3,
        "shot_median_ms": statistics.median(data["shot_s"]) * 1e3,
        "sequential_pairs_per_s": 1 / (2 * statistics.median(data["shot_s"])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--jitter", type=float, default=0.01)
    parser.add_argument("--load", type=int, default=2, help="busy processes for the loaded run")
    args = parser.parse_args()
    print("expokit capture benchmark")
    print(
        f"fake trigger latency {args.latency * 1e3:.0f} ms +- {args.jitter * 1e3:.0f} ms, "
        f"{args.pairs} pairs, {os.cpu_count()} CPUs"
    )
    print(
        f"{'backend':8s} {'mode':10s} {'load':>4s} {'pairs/s':>8s} {'skew median':>12s} "
        f"{'p95':>9s} {'max':>9s}"
    )
    rows = []
    for load in (0, args.load):
        for mode in ("threaded", "sequential"):
            row = run_fake(mode, args.pairs, args.latency, args.jitter, load)
            rows.append(row)
            print(
                f"{'fake':8s} {mode:10s} {load:4d} {row['pairs_per_s']:8.2f} "
                f"{row['median_ms']:9.3f} ms {row['p95_ms']:6.3f} ms {row['max_ms']:6.3f} ms"
            )
    idle = {r["mode"]: r for r in rows if r["load"] == 0}
    speed = idle["threaded"]["pairs_per_s"] / idle["sequential"]["pairs_per_s"]
    skew = idle["sequential"]["median_ms"] / max(idle["threaded"]["median_ms"], 1e-6)
    print(f"threaded vs sequential (idle): {speed:.2f}x pairs/s, skew median {skew:.0f}x lower")
    worst = max(r["p95_ms"] for r in rows if r["mode"] == "threaded")
    print(
        f"target: threaded skew p95 < 5 ms on the Python side: {'met' if worst < 5 else 'MISSED'}"
        f" (worst p95 {worst:.3f} ms)"
    )
    virtual = _virtual_single({**os.environ, "VCAMERADIR": _vcam_dir()}, 10)
    print(
        "gphoto2 virtual camera, one device, sequential: "
        f"trigger {virtual['trigger_median_ms']:.2f} ms, "
        f"trigger+wait+download {virtual['shot_median_ms']:.2f} ms per shot -> "
        f"{virtual['sequential_pairs_per_s']:.1f} pairs/s if it played both roles"
    )


def _vcam_dir() -> str:
    import cv2
    import numpy as np

    folder = Path(tempfile.mkdtemp(prefix="expokit-vcam-"))
    cv2.imwrite(str(folder / "shot.jpg"), np.full((480, 640, 3), 128, np.uint8))
    return str(folder)


if __name__ == "__main__":
    main()
