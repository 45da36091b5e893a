"""Speed of expokit's multi-EV RAW render against the naive rawpy way; prints ratios.

Run from the repository root::

    python benchmarks/render.py                      # real RAWs in ../shared/data/raw
    python benchmarks/render.py --raw a.CR2 b.NEF    # your own files
    python benchmarks/render.py --repeat 5 --batch-copies 4
    python benchmarks/render.py --skip-workers       # without the process-pool section

It takes about 3 minutes on a 2-core machine with the default inputs (the workers section,
three fresh subprocesses rendering 9 files ``--worker-repeat`` times, is half of that).

Inputs are the RAW files in ``../shared/data/raw`` (or ``$EXPOKIT_SHARED_DATA/raw``; the
``invalid/`` folder is skipped), else the synthetic DNGs shipped in
``curation/data/demo_raw``. Every number is the median of ``--repeat`` timed runs
(``time.perf_counter``) after one untimed warm-up; per-file medians are summed for totals.

What is measured, per RAW file and in total
-------------------------------------------
naive
    What people do today for an MSEC ladder (EV -1.5, -1, 0, +1, +1.5): five separate
    ``rawpy.imread(f).postprocess(exp_shift=2**ev, no_auto_bright=True)`` calls (8-bit
    output, ``exp_shift`` clamped to rawpy's 0.25..8), then, for "with encoding", five
    ``cv2.imwrite`` JPEGs at quality 95 (after RGB->BGR).
plain postprocess
    One ``rawpy.imread(f).postprocess()`` with rawpy's defaults: the cost of a single decode.
expokit
    ``decode_raw(f)`` (one LibRaw pass to linear 16-bit) and the five EVs of
    ``render_arrays(linear, RenderConfig())`` materialised as arrays ("to arrays"); the same
    plus ``encode_image`` to JPEG bytes and writing the files ("with encoding"); and
    ``render_batch([f], out, RenderConfig(), progress=False)`` end to end, with
    ``durable=True`` (the default: fsync of every output) and ``durable=False``.
breakdown
    Where expokit's time goes: ``rawpy.imread``, LibRaw ``postprocess`` with expokit's
    parameters, the rest of ``decode_raw`` (EXIF, sanity checks), LUT build and LUT
    application per EV, JPEG encoding per EV, file writes, and the SHA-256 of the RAW.
LUT variants
    The LUT step as shipped (:func:`expokit.core.transfer.apply_luts`: 64-row bands cast
    to indices once, every EV applied per band, on threads) against the naive per-EV
    ``np.take`` on the negative-stride BGR view and two intermediate variants, all checked
    byte-identical; with the totals they would give.
workers
    A batch of >= 8 files (the inputs copied ``--batch-copies`` times under distinct names)
    rendered by ``render_batch`` with ``workers=1`` (in-process) and ``workers=2`` (spawn
    process pool, one OpenMP thread per worker on 2 cores), each in a fresh subprocess; and
    ``workers=1`` with ``OMP_NUM_THREADS=1``. LibRaw is built with OpenMP, so one in-process
    worker already uses every core for parts of the demosaic: ``workers=2`` against
    ``workers=1`` (default threads) is the speedup a user sees; against ``workers=1`` with
    one OpenMP thread it is the pure process scaling.

Targets: naive / expokit >= 4x; expokit to arrays / one plain postprocess <= 1.3x;
``workers=2`` / ``workers=1`` >= 1.8x on 2 cores. Heavy libraries (rawpy, cv2) are imported
inside functions only, so spawned pool workers that re-import this script load LibRaw's
OpenMP runtime after the pool initializer has set ``OMP_NUM_THREADS``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
DEMO_RAW_DIR = REPO / "curation" / "data" / "demo_raw"
MSEC_EVS: tuple[float, ...] = (-1.5, -1.0, 0.0, 1.0, 1.5)
EXP_SHIFT_RANGE = (0.25, 8.0)  # rawpy/LibRaw accept exp_shift only in this range
MIN_BATCH_FILES = 8
CHILD_FLAG = "--_child"

Samples = dict[str, dict[str, list[float]]]  # metric -> file -> seconds per repeat


# --------------------------------------------------------------------------- inputs


def shared_raw_dir() -> Path:
    root = os.environ.get("EXPOKIT_SHARED_DATA")
    return (Path(root) if root else REPO.parent / "shared" / "data") / "raw"


def default_inputs() -> tuple[list[Path], str]:
    """Real RAWs from the shared data (not ``invalid/``), else the shipped synthetic DNGs."""
    from expokit.curation.rendering.raw_decode import RAW_EXTENSIONS

    shared = shared_raw_dir()
    if shared.is_dir():
        found = sorted(
            p for p in shared.glob("*.*") if p.is_file() and p.suffix.lower() in RAW_EXTENSIONS
        )
        if found:
            return found, f"shared data {shared}"
    demo = sorted(p for p in DEMO_RAW_DIR.glob("*.dng") if p.is_file())
    return demo, f"shipped synthetic DNGs {DEMO_RAW_DIR}"


# --------------------------------------------------------------------------- the measured ways


def naive_once(path: Path, out: Path) -> tuple[float, float]:
    """Five rawpy decodes (one per EV) and five JPEG writes; returns (decode_s, encode_s)."""
    import cv2
    import rawpy

    decode = encode = 0.0
    for ev in MSEC_EVS:
        shift = min(max(2.0**ev, EXP_SHIFT_RANGE[0]), EXP_SHIFT_RANGE[1])
        t0 = time.perf_counter()
        with rawpy.imread(str(path)) as raw:
            rgb = raw.postprocess(exp_shift=shift, no_auto_bright=True)
        t1 = time.perf_counter()
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(
            str(out / f"{path.stem}_{ev:+g}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95]
        ):
            raise RuntimeError(f"cv2.imwrite failed for {path}")
        t2 = time.perf_counter()
        decode += t1 - t0
        encode += t2 - t1
    return decode, encode


def plain_once(path: Path) -> float:
    import rawpy

    t0 = time.perf_counter()
    with rawpy.imread(str(path)) as raw:
        raw.postprocess()
    return time.perf_counter() - t0


def expokit_once(path: Path, out: Path) -> dict[str, float]:
    """``decode_raw`` + ``render_arrays`` (timed per yielded EV) + ``encode_image`` + write."""
    from expokit.curation.rendering.config import RenderConfig
    from expokit.curation.rendering.raw_decode import decode_raw
    from expokit.curation.rendering.render import encode_image, render_arrays

    config = RenderConfig()
    t0 = time.perf_counter()
    decoded = decode_raw(path)
    times = {"decode": time.perf_counter() - t0, "lut": 0.0, "encode": 0.0, "write": 0.0}
    outputs = render_arrays(decoded.linear, config)
    while True:
        t0 = time.perf_counter()
        item = next(outputs, None)  # builds the LUT of this EV and applies it
        t1 = time.perf_counter()
        if item is None:
            break
        ev, fmt, image = item
        data = encode_image(image, fmt, config)
        t2 = time.perf_counter()
        (out / f"{path.stem}_{ev:+g}{fmt.suffix}").write_bytes(data)
        t3 = time.perf_counter()
        times["lut"] += t1 - t0
        times["encode"] += t2 - t1
        times["write"] += t3 - t2
    return times


def decode_parts_once(path: Path) -> dict[str, float]:
    """The steps of ``decode_raw`` timed one by one (private helpers), LUT builds, SHA-256."""
    import rawpy

    from expokit.core.hashing import sha256_file
    from expokit.core.transfer import exposure_lut
    from expokit.curation.rendering.raw_decode import (
        _check_raw_data,
        _check_render,
        choose_white_balance,
        libraw_params,
        read_metadata,
    )

    marks = [time.perf_counter()]
    with rawpy.imread(str(path)) as raw:
        marks.append(time.perf_counter())
        raw.unpack()
        marks.append(time.perf_counter())
        _check_raw_data(raw, path)
        marks.append(time.perf_counter())
        read_metadata(raw, path)
        _, wb = choose_white_balance(raw, "camera")
        marks.append(time.perf_counter())
        linear = np.asarray(raw.postprocess(**libraw_params(wb, "AHD")), dtype=np.uint16)
        marks.append(time.perf_counter())
        _check_render(linear, path)
        marks.append(time.perf_counter())
    for ev in MSEC_EVS:
        exposure_lut(2.0**ev, 8, "srgb")
    marks.append(time.perf_counter())
    sha256_file(path)
    marks.append(time.perf_counter())
    keys = ("imread", "unpack", "check_raw", "metadata", "process", "check_render", "lut_build")
    parts = {k: marks[i + 1] - marks[i] for i, k in enumerate(keys)}
    parts["sha256"] = marks[-1] - marks[-2]
    return parts


def batch_once(path: Path, out: Path, durable: bool) -> float:
    from expokit.curation.rendering.config import RenderConfig
    from expokit.curation.rendering.render import render_batch

    t0 = time.perf_counter()
    summary = render_batch([path], out, RenderConfig(), progress=False, durable=durable)
    elapsed = time.perf_counter() - t0
    if not summary.ok or summary.rendered != 1:
        raise RuntimeError(f"render_batch failed for {path}: {summary.failures}")
    return elapsed


# --------------------------------------------------------------------------- LUT variants


Image = npt.NDArray[np.integer]
LadderFn = Callable[[Sequence[Image]], list[Image]]


def _lut_variant_fns(
    view: npt.NDArray[np.uint16], pool: ThreadPoolExecutor, threads: int
) -> dict[str, LadderFn]:
    """Ways to map ``(H, W, 3)`` 16-bit BGR through every EV's LUT; the naive one first.

    One-off copies (contiguous BGR, ``intp`` indices) are inside the timed call."""
    from expokit.core.transfer import apply_lut, apply_luts

    del pool  # apply_luts manages its own threads

    def per_ev(luts: Sequence[Image]) -> list[Image]:
        return [apply_lut(view, lut) for lut in luts]

    def contiguous(luts: Sequence[Image]) -> list[Image]:
        bgr = np.ascontiguousarray(view)
        return [np.take(lut, bgr) for lut in luts]

    def intp_once(luts: Sequence[Image]) -> list[Image]:
        index = view.astype(np.intp)
        return [np.take(lut, index) for lut in luts]

    return {
        "naive: np.take(lut, rgb[..., ::-1]) per EV": per_ev,
        "np.take on one contiguous BGR copy": contiguous,
        "np.take on one intp index copy": intp_once,
        "shipped apply_luts (64-row bands), 1 thread": lambda luts: apply_luts(view, luts),
        f"shipped apply_luts (64-row bands), {threads} threads": lambda luts: apply_luts(
            view, luts, threads=threads
        ),
    }


def lut_variants(files: Sequence[Path], repeat: int) -> dict[str, dict[str, float]]:
    """Median seconds of each LUT variant for all MSEC EVs, per file (checked byte-identical)."""
    from expokit.core.transfer import exposure_lut
    from expokit.curation.rendering.raw_decode import decode_raw

    threads = os.cpu_count() or 1
    luts = [exposure_lut(2.0**ev, 8, "srgb") for ev in MSEC_EVS]
    result: dict[str, dict[str, float]] = defaultdict(dict)
    with ThreadPoolExecutor(threads) as pool:
        for path in files:
            view = decode_raw(path).linear[..., ::-1]
            variants = _lut_variant_fns(view, pool, threads)
            reference = next(iter(variants.values()))(luts)
            for name, fn in variants.items():
                if not all(np.array_equal(a, b) for a, b in zip(fn(luts), reference, strict=True)):
                    raise AssertionError(f"LUT variant {name!r} differs from the naive per-EV one")
            del reference
            samples: dict[str, list[float]] = defaultdict(list)
            for _ in range(repeat):
                for name, fn in variants.items():
                    t0 = time.perf_counter()
                    fn(luts)
                    samples[name].append(time.perf_counter() - t0)
            for name, values in samples.items():
                result[name][path.name] = statistics.median(values)
    return dict(result)


# --------------------------------------------------------------------------- workers


def _import_render_module(_: int) -> float:
    """Seconds a fresh pool worker spends importing ``expokit.curation.rendering.render``."""
    t0 = time.perf_counter()
    import expokit.curation.rendering.render  # noqa: F401

    return time.perf_counter() - t0


def child_main(spec: dict[str, Any]) -> None:
    """In a fresh interpreter: time ``render_batch`` over a folder; print JSON on stdout."""
    from expokit.core.parallel import map_unordered
    from expokit.curation.rendering.config import RenderConfig
    from expokit.curation.rendering.render import render_batch

    workers = int(spec["workers"])
    batch, scratch = Path(spec["batch"]), Path(spec["scratch"])
    config = RenderConfig()
    pool_start = worker_import = None
    if workers > 1:
        # Starting the spawn pool alone (interpreters, no expokit import), then a pool whose
        # workers import the module that render_raw lives in, as every real pool does.
        t0 = time.perf_counter()
        list(map_unordered(abs, [1, 2], workers=workers, on_error=lambda i, e: 0, progress=False))
        pool_start = time.perf_counter() - t0
        imports = map_unordered(
            _import_render_module,
            [1, 2],
            workers=workers,
            on_error=lambda i, e: -1.0,
            progress=False,
        )
        worker_import = max(seconds for _, seconds in imports)
    render_batch([spec["warmup"]], scratch / "warmup", config, workers=1, progress=False)
    times = []
    for i in range(int(spec["repeat"])):
        out = scratch / f"run{i}"
        t0 = time.perf_counter()
        summary = render_batch([batch], out, config, workers=workers, progress=False)
        times.append(time.perf_counter() - t0)
        if not summary.ok:
            raise RuntimeError(f"render_batch failed: {summary.failures}")
        files = summary.rendered
        shutil.rmtree(out)
    print(
        json.dumps(
            {
                "times": times,
                "files": files,
                "pool_start": pool_start,
                "worker_import": worker_import,
            }
        )
    )


def run_child(
    workers: int, omp: str | None, batch: Path, warmup: Path, scratch: Path, repeat: int
) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if omp is not None:
        env["OMP_NUM_THREADS"] = omp
    scratch.mkdir(parents=True, exist_ok=True)
    spec = {
        "workers": workers,
        "batch": str(batch),
        "warmup": str(warmup),
        "scratch": str(scratch),
        "repeat": repeat,
    }
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), CHILD_FLAG, json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker benchmark child failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def make_batch(files: Sequence[Path], copies: int, folder: Path) -> list[Path]:
    """Copy every file ``copies`` times as ``c<k>_<name>`` (symlinks would be resolved to one
    path by ``discover_raw_files`` and rendered once)."""
    folder.mkdir(parents=True)
    made = []
    for k in range(1, copies + 1):
        for path in files:
            target = folder / f"c{k}_{path.name}"
            shutil.copyfile(path, target)
            made.append(target)
    return made


# --------------------------------------------------------------------------- reporting


def machine_facts() -> list[str]:
    import cv2
    import rawpy

    from expokit.curation.rendering.raw_decode import library_versions

    versions = library_versions()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return [
        f"python {platform.python_version()} on {platform.platform()} ({platform.machine()})",
        f"cpu: os.cpu_count()={os.cpu_count()}, usable={affinity}, "
        f"processor={platform.processor() or '?'}",
        f"rawpy {versions['rawpy']}, LibRaw {versions['libraw']}, "
        f"OpenMP={rawpy.flags.get('OPENMP') if rawpy.flags else '?'}; numpy {np.__version__}; "
        f"OpenCV {cv2.__version__} (cv2 threads {cv2.getNumThreads()})",
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}",
    ]


def med(samples: Samples, metric: str, name: str) -> float:
    return statistics.median(samples[metric][name])


def fmt_s(seconds: float) -> str:
    return f"{seconds:8.3f}"


def ratio_line(label: str, num: float, den: float, target: tuple[str, float] | None) -> str:
    """``label  num/den  target ... met/MISSED``; ``target`` is ``(">=" or "<=", value)``."""
    value = num / den if den > 0 else math.inf
    if target is None:
        return f"  {label:<58} {value:6.2f}x"
    op, bound = target
    ok = value >= bound if op == ">=" else value <= bound
    return f"  {label:<58} {value:6.2f}x   target {op} {bound:<4g} {'met' if ok else 'MISSED'}"


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(
        h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))
    )
    print(line)
    print("-" * len(line))
    for row in rows:
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", nargs="+", type=Path, help="RAW files (default: shared data)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement")
    parser.add_argument(
        "--batch-copies",
        type=int,
        default=None,
        help=f"copies of the inputs in the workers batch (default: enough for >= "
        f"{MIN_BATCH_FILES} files)",
    )
    parser.add_argument(
        "--worker-repeat",
        type=int,
        default=None,
        help="timed runs per workers variant (default: --repeat)",
    )
    parser.add_argument("--skip-workers", action="store_true", help="skip the workers section")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.batch_copies is not None and args.batch_copies < 1:
        parser.error("--batch-copies must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.raw:
        files = [p.resolve() for p in args.raw]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            print(f"no such file: {', '.join(missing)}", file=sys.stderr)
            return 2
        source = "--raw"
    else:
        files, source = default_inputs()
    if not files:
        print("no RAW files to benchmark", file=sys.stderr)
        return 2

    from expokit.curation.rendering.raw_decode import decode_raw

    print("expokit render benchmark")
    print("=" * 24)
    for fact in machine_facts():
        print(fact)
    print(f"inputs ({source}), median of {args.repeat} runs after 1 warm-up:")
    sizes: dict[str, tuple[int, int]] = {}
    for path in files:
        height, width = decode_raw(path).linear.shape[:2]
        sizes[path.name] = (width, height)
        mib = path.stat().st_size / 2**20
        print(
            f"  {path.name:<32} {width:>5}x{height:<5} {width * height / 1e6:5.1f} MP"
            f" {mib:6.1f} MiB"
        )
    names = [p.name for p in files]
    total_mp = sum(w * h for w, h in sizes.values()) / 1e6

    samples: Samples = defaultdict(lambda: defaultdict(list))
    with tempfile.TemporaryDirectory(prefix="expokit-bench-") as tmp_str:
        tmp = Path(tmp_str)
        scratch = tmp / "scratch"
        scratch.mkdir()
        # Warm-up: page cache for every file, every code path once on the smallest file.
        for path in files:
            path.read_bytes()
            plain_once(path)
        smallest = min(files, key=lambda p: sizes[p.name][0] * sizes[p.name][1])
        naive_once(smallest, scratch)
        expokit_once(smallest, scratch)
        decode_parts_once(smallest)
        batch_once(smallest, tmp / "warm", durable=False)

        runs = 0
        for repeat in range(args.repeat):
            for path in files:
                n = path.name
                naive_dec, naive_enc = naive_once(path, scratch)
                samples["naive.arrays"][n].append(naive_dec)
                samples["naive.encoded"][n].append(naive_dec + naive_enc)
                samples["naive.encode"][n].append(naive_enc)
                samples["plain"][n].append(plain_once(path))
                parts = expokit_once(path, scratch)
                for key, value in parts.items():
                    samples[f"expokit.{key}"][n].append(value)
                samples["expokit.arrays"][n].append(parts["decode"] + parts["lut"])
                samples["expokit.encoded"][n].append(sum(parts.values()))
                for key, value in decode_parts_once(path).items():
                    samples[f"parts.{key}"][n].append(value)
                for durable in (True, False) if repeat % 2 else (False, True):
                    out = tmp / f"batch{runs}"
                    runs += 1
                    samples[f"batch.durable={durable}"][n].append(batch_once(path, out, durable))
                    shutil.rmtree(out)

        # ------------------------------------------------------------------ main table
        def total(metric: str) -> float:
            return sum(med(samples, metric, n) for n in names)

        columns = [
            ("naive", "naive.arrays"),
            ("naive+jpg", "naive.encoded"),
            ("plain pp", "plain"),
            ("expokit", "expokit.arrays"),
            ("expokit+jpg", "expokit.encoded"),
            ("batch fsync", "batch.durable=True"),
            ("batch nosync", "batch.durable=False"),
        ]
        print()
        print("Seconds per RAW (5 EVs; 'naive'/'expokit' = to arrays, '+jpg' = JPEGs written)")
        rows = [[n] + [fmt_s(med(samples, m, n)) for _, m in columns] for n in names]
        rows.append(["TOTAL"] + [fmt_s(total(m)) for _, m in columns])
        print_table(["file", *[c for c, _ in columns]], rows)

        print()
        print("Ratios (totals)")
        ratios: list[tuple[str, str, str, tuple[str, float] | None]] = [
            ("naive / expokit, to arrays", "naive.arrays", "expokit.arrays", (">=", 4)),
            ("naive / expokit, with JPEGs written", "naive.encoded", "expokit.encoded", (">=", 4)),
            (
                "naive+jpg / render_batch durable=True",
                "naive.encoded",
                "batch.durable=True",
                (">=", 4),
            ),
            (
                "naive+jpg / render_batch durable=False",
                "naive.encoded",
                "batch.durable=False",
                (">=", 4),
            ),
            ("expokit to arrays / one plain postprocess", "expokit.arrays", "plain", ("<=", 1.3)),
            ("expokit with JPEGs / one plain postprocess", "expokit.encoded", "plain", None),
            (
                "render_batch durable=True / one plain postprocess",
                "batch.durable=True",
                "plain",
                None,
            ),
        ]
        for label, num, den, target in ratios:
            print(ratio_line(label, total(num), total(den), target))
        print("  per file (naive/expokit arrays, expokit arrays/plain):")
        for n in names:
            a = med(samples, "naive.arrays", n) / med(samples, "expokit.arrays", n)
            b = med(samples, "expokit.arrays", n) / med(samples, "plain", n)
            print(f"    {n:<32} {a:5.2f}x   {b:5.2f}x")
        # Ceiling: naive costs ~5 decodes, expokit >= 1 decode + 5 LUTs.
        print(
            "  ceiling with free LUTs: naive (5 decodes) / expokit decode_raw alone = "
            f"{total('naive.arrays') / total('expokit.decode'):.2f}x"
        )

        # ------------------------------------------------------------------ breakdown
        print()
        print("Where expokit's time goes (seconds, totals over all files; per EV = / 5 / files)")
        decode = total("expokit.decode")
        part = {k: total(f"parts.{k}") for k in ("imread", "unpack", "check_raw", "metadata")}
        part.update({k: total(f"parts.{k}") for k in ("process", "check_render", "lut_build")})
        lut, encode, write = total("expokit.lut"), total("expokit.encode"), total("expokit.write")
        batch, nosync = total("batch.durable=True"), total("batch.durable=False")
        decode_steps = sum(v for k, v in part.items() if k != "lut_build")
        per_ev = len(MSEC_EVS) * len(names)
        pieces = [
            ("decode_raw (all)", decode),
            ("  rawpy.imread (open + identify)", part["imread"]),
            ("  LibRaw unpack (read + decompress raw data)", part["unpack"]),
            ("  sanity check of the raw data", part["check_raw"]),
            ("  metadata + EXIF (exifread) + white balance", part["metadata"]),
            ("  LibRaw processing (demosaic, colour, 16-bit linear)", part["process"]),
            ("  white/black render check", part["check_render"]),
            ("  decode_raw - these steps (run-to-run noise)", decode - decode_steps),
            ("render_arrays, 5 EVs (LUT build + apply)", lut),
            ("  LUT build (exposure_lut)", part["lut_build"]),
            ("  LUT apply (np.take on the BGR view)", lut - part["lut_build"]),
            ("encode_image (JPEG q95), 5 EVs", encode),
            ("file write, 5 EVs (no fsync)", write),
            (
                "render_batch (durable=False) - all of the above",
                nosync - decode - lut - encode - write,
            ),
            ("  of which sha256 of the RAW", total("parts.sha256")),
            ("fsync cost (durable=True - durable=False)", batch - nosync),
        ]
        for label, seconds in pieces:
            share = 100 * seconds / batch if batch > 0 else 0.0
            print(f"  {label:<56} {fmt_s(seconds)}  {share:5.1f}% of render_batch")
        lut_apply = lut - part["lut_build"]
        print(
            f"  per EV and file: LUT apply {1e3 * lut_apply / per_ev:.1f} ms "
            f"({1e9 * lut_apply / (len(MSEC_EVS) * total_mp * 1e6):.2f} ns/pixel), "
            f"JPEG encode {1e3 * encode / per_ev:.1f} ms"
        )
        print(
            f"  per EV and file, naive: rawpy decode {1e3 * total('naive.arrays') / per_ev:.1f} ms"
            f", RGB->BGR + imwrite {1e3 * total('naive.encode') / per_ev:.1f} ms"
        )

        # ------------------------------------------------------------------ LUT variants
        print()
        print(
            "LUT variants: all 5 EVs of all files, seconds (median of "
            f"{args.repeat}; every variant byte-identical to the naive one)"
        )
        variants = lut_variants(files, args.repeat)
        for name, per_file in variants.items():
            seconds = sum(per_file.values())
            projected = decode + part["lut_build"] + seconds
            print(
                f"  {name:<50} {fmt_s(seconds)}  -> decode_raw + LUTs {projected:.3f} s: "
                f"naive/expokit {total('naive.arrays') / projected:.2f}x, "
                f"expokit/plain {projected / total('plain'):.2f}x"
            )

        # ------------------------------------------------------------------ workers
        if not args.skip_workers:
            copies = args.batch_copies or max(1, math.ceil(MIN_BATCH_FILES / len(files)))
            batch_files = make_batch(files, copies, tmp / "batch_in")
            worker_repeat = args.worker_repeat or args.repeat
            print()
            print(
                f"Workers: render_batch over {len(batch_files)} files ({copies} copies), "
                f"durable=True, median of {worker_repeat}, each variant in a fresh subprocess"
            )
            variants_w = [
                ("workers=1, OpenMP default", 1, None),
                ("workers=1, OMP_NUM_THREADS=1", 1, "1"),
                ("workers=2 (spawn pool, 1 OMP thread each)", 2, None),
            ]
            results: dict[str, float] = {}
            for i, (label, workers, omp) in enumerate(variants_w):
                res = run_child(
                    workers, omp, tmp / "batch_in", smallest, tmp / f"child{i}", worker_repeat
                )
                results[label] = statistics.median(res["times"])
                note = ""
                if res["pool_start"]:
                    note = (
                        f"  (pool start {res['pool_start']:.2f} s; importing "
                        "expokit.curation.rendering.render in a worker "
                        f"{res['worker_import']:.2f} s)"
                    )
                runs_s = ", ".join(f"{t:.2f}" for t in res["times"])
                print(f"  {label:<44} {fmt_s(results[label])} s  [{runs_s}]{note}")
            w1, w1_single, w2 = (results[v[0]] for v in variants_w)
            print(ratio_line("workers=2 vs workers=1 (what a user sees)", w1, w2, (">=", 1.8)))
            print(ratio_line("workers=2 vs workers=1 with OMP_NUM_THREADS=1", w1_single, w2, None))
            print(
                ratio_line(
                    "OpenMP gain in-process (workers=1: OMP=1 / default)", w1_single, w1, None
                )
            )
            ideal = w1_single / 2
            print(
                f"  ideal workers=2 time (OMP=1 time / 2, no overhead): {ideal:.2f} s, took "
                f"{w2:.2f} s; best possible workers=2 vs workers=1 here: {w1 / ideal:.2f}x"
            )

    print()
    print(f"benchmark wall time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == CHILD_FLAG:
        child_main(json.loads(sys.argv[2]))
        sys.exit(0)
    sys.exit(main())
