"""Speed of ``expokit curate build``: pairs per second, with and without ECC, 1 and 2 workers.

Run from the repository root::

    python benchmarks/curation_build.py                    # SICE scenes in ../shared/data
    python benchmarks/curation_build.py --max-side 256     # downscaled outputs
    python benchmarks/curation_build.py --source my_sequences/ --scenes 10
    python benchmarks/curation_build.py --synthetic        # generated pairs, no shared data

Inputs: the 22 SICE sequences of ``../shared/data/exposure/sice_7ev_sequences`` (or
``$EXPOKIT_SHARED_DATA``; 7 exposures of 512x512 each, so 6 pairs per scene), else (or with
``--synthetic``) generated 7-exposure sequences of a procedural texture, each exposure
shifted by a pixel so ECC has something to do.

What is measured
----------------
end to end
    ``build_dataset`` (discovery, per-scene work, manifest and info.json, durable writes) into
    a fresh folder, for ``ecc_refine`` off/on and ``workers`` 1/2, each in a fresh
    subprocess (so import and pool start-up are paid as a user pays them); the best and the
    median of ``--repeat`` runs, and the CPU use of the best run (``cpu %``: CPU seconds of
    the process and its pool workers over wall seconds; well under ``workers x 100`` means
    the machine was busy with something else). ``workers=2`` uses the spawn pool of
    ``map_unordered``.
per-pair stages
    In this process, on the first scene's pairs: reading both images, alignment (plain and
    with ECC), the gain fit, PSNR/SSIM and clipping, the DIS residual, PNG encoding.

About 6 minutes on a 2-core machine with the defaults (12 builds of 132 pairs). Timings on
shared machines vary run to run by up to 2x; the ``cpu %`` column tells contended runs apart.
Heavy libraries are imported inside functions only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EXPOKIT_SHARED_DATA", REPO.parent / "shared" / "data"))
SICE = SHARED / "exposure" / "sice_7ev_sequences"


def make_synthetic(folder: Path, scenes: int, size: int = 512) -> Path:
    """``scenes`` folders of 7 exposures (-3..+3 EV) of a texture, each shifted by 1 px."""
    import cv2
    import numpy as np

    from expokit.core.synthetic import demo_scene
    from expokit.core.transfer import srgb_encode

    for index in range(scenes):
        scene = demo_scene("texture", size, size, seed=index)[..., ::-1] * 0.5
        target = folder / f"syn_{index:03d}"
        target.mkdir(parents=True)
        for rank, ev in enumerate(range(-3, 4)):
            shift = np.array([[1.0, 0, rank - 3], [0, 1, 0.5 * (rank - 3)]])
            image = np.rint(srgb_encode(scene * 2.0**ev) * 255).astype(np.uint8)
            moved = cv2.warpAffine(image, shift, (size, size), borderMode=cv2.BORDER_REFLECT)
            cv2.imwrite(str(target / f"{rank}.png"), moved)
    return folder


def source_folder(args: argparse.Namespace, scratch: Path) -> tuple[Path, str]:
    if not args.synthetic and args.source is None and SICE.is_dir():
        chosen, label = SICE, f"SICE ({SICE})"
    elif args.source is not None:
        chosen, label = Path(args.source), str(args.source)
    else:
        return make_synthetic(scratch / "synthetic", args.scenes or 8), "synthetic texture"
    if args.scenes:
        subset = scratch / "subset"
        for child in sorted(p for p in chosen.iterdir() if p.is_dir())[: args.scenes]:
            shutil.copytree(child, subset / child.name)
        return subset, f"{label}, first {args.scenes} scenes"
    return chosen, label


def child(source: str, out: str, ecc: bool, workers: int, max_side: int | None) -> None:
    """One timed build (run in a fresh interpreter); prints a JSON line."""
    import resource

    from expokit.curation.build.config import BuildConfig
    from expokit.curation.build.driver import build_dataset

    config = BuildConfig(ecc_refine=ecc, max_side=max_side)
    started = time.perf_counter()
    summary = build_dataset([source], out, config, workers=workers, progress=False)
    seconds = time.perf_counter() - started
    # CPU seconds of this process and its pool workers: cpu / seconds shows whether the
    # machine gave the run the cores it asked for (shared machines often do not).
    usage = [resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    record = {"seconds": seconds, "cpu": cpu, "pairs": summary.pairs}
    print(json.dumps({**record, "failures": len(summary.failures)}))


def timed_build(
    source: Path, scratch: Path, ecc: bool, workers: int, max_side: int | None, repeat: int
) -> dict[str, Any]:
    runs = []
    for attempt in range(repeat):
        out = scratch / f"out-{int(ecc)}-{workers}-{attempt}"
        call = f"child({str(source)!r}, {str(out)!r}, {ecc!r}, {workers}, {max_side!r})"
        code = (
            f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"from curation_build import child; {call}"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
        shutil.rmtree(out, ignore_errors=True)
    best = min(runs, key=lambda r: r["seconds"])
    return {
        "seconds": best["seconds"],
        "median": statistics.median(r["seconds"] for r in runs),
        "cpu": best["cpu"] / best["seconds"],
        "pairs": best["pairs"],
        "rate": best["pairs"] / best["seconds"],
        "failures": best["failures"],
    }


def stage_breakdown(source: Path, max_side: int | None) -> list[tuple[str, float]]:
    """Median milliseconds per pair of each stage, on the first scene (in this process)."""
    import numpy as np

    from expokit.curation.build.align import (
        align_pair,
        downscale,
        fit_gain,
        flow_residual,
        normalise_exposure,
    )
    from expokit.curation.build.config import BuildConfig
    from expokit.curation.build.qa import pair_figures
    from expokit.curation.build.sources import discover, load_image
    from expokit.curation.build.task import encode_image

    config = BuildConfig(max_side=max_side)
    scene = discover(source, config).scenes[0]
    levels = (2, 253)
    times: dict[str, list[float]] = {}

    def clock(name: str, start: float) -> float:
        now = time.perf_counter()
        times.setdefault(name, []).append((now - start) * 1e3)
        return now

    for pair in scene.pairs:
        t = time.perf_counter()
        a = load_image(pair.input).pixels
        b = load_image(pair.target).pixels
        t = clock("read input + target", t)
        aligned = align_pair(a, b, None)
        t = clock("align (no ECC)", t)
        refined = align_pair(a, b, None, ecc=True)
        t = clock("align with ECC", t)
        (a2, b2), valid, _ = downscale([aligned.image, b], aligned.valid, max_side)
        t = clock("downscale", t)
        gain = fit_gain(a2, b2, valid, levels)
        normalised = normalise_exposure(a2, gain)
        t = clock("gain fit + normalise", t)
        pair_figures(normalised, a2, b2, valid, levels)
        t = clock("PSNR/SSIM + clipping", t)
        flow_residual(normalised, b2, valid, levels)
        t = clock("DIS residual", t)
        encode_image(np.ascontiguousarray(a2), ".png", config)
        encode_image(np.ascontiguousarray(b2), ".png", config)
        clock("PNG encode x2", t)
        del refined
    return [(name, statistics.median(values)) for name, values in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="a sequences folder (default: shared SICE)")
    parser.add_argument("--synthetic", action="store_true", help="use generated sequences")
    parser.add_argument("--scenes", type=int, default=None, help="use the first N scenes")
    parser.add_argument("--max-side", type=int, default=None, help="downscale outputs")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per configuration")
    args = parser.parse_args()
    import cv2

    with tempfile.TemporaryDirectory(prefix="expokit-bench-") as tmp:
        scratch = Path(tmp)
        source, label = source_folder(args, scratch)
        print(f"source: {label}")
        print(f"cpus: {os.cpu_count()}, OpenCV {cv2.__version__}, max_side {args.max_side}")
        print()
        print(f"best of {args.repeat} fresh-process runs per configuration")
        head = f"{'configuration':24s} {'pairs':>6s} {'best s':>8s} {'median s':>9s}"
        print(f"{head} {'pairs/s':>8s} {'cpu %':>6s}")
        results = {}
        for ecc in (False, True):
            for workers in (1, 2):
                r = timed_build(source, scratch, ecc, workers, args.max_side, args.repeat)
                results[(ecc, workers)] = r
                name = f"{'ECC' if ecc else 'no ECC'}, workers={workers}"
                note = f"  ({r['failures']} failed scenes)" if r["failures"] else ""
                row = f"{name:24s} {r['pairs']:6d} {r['seconds']:8.2f} {r['median']:9.2f}"
                print(f"{row} {r['rate']:8.2f} {100 * r['cpu']:6.0f}{note}")
        print()
        for ecc in (False, True):
            speedup = results[(ecc, 2)]["rate"] / results[(ecc, 1)]["rate"]
            print(f"{'ECC' if ecc else 'no ECC'}: workers=2 / workers=1 = {speedup:.2f}x")
        cost = results[(False, 1)]["rate"] / results[(True, 1)]["rate"]
        print(f"ECC costs {cost:.2f}x the time of a build without it (workers=1)")
        print()
        print("per-pair stages (median ms, first scene, this process):")
        for name, ms in stage_breakdown(source, args.max_side):
            print(f"  {name:24s} {ms:8.2f}")


if __name__ == "__main__":
    main()
