"""Time of ``expokit curate report`` for a synthetic dataset of 1,000 pairs; prints seconds.

Run from the repository root::

    python benchmarks/curation_report.py                     # 1,000 pairs of 128x96 PNGs
    python benchmarks/curation_report.py --pairs 5000 --size 384x256 --workers 4
    python benchmarks/curation_report.py --max-thumbnails 200

A dataset in format v1 is generated in a temporary folder (not timed): still scenes with the
five MSEC EVs (one shared target each) and video clips of 20 frames, a fifth of the rows,
with valid-region masks, plausible QA figures and some flags. ``build_report`` is then timed
end to end (``time.perf_counter``) ``--repeat`` times into fresh folders: the first run
includes importing matplotlib and Jinja2 and building matplotlib's font cache ("cold"), the
later ones do not ("warm", median). Printed: seconds per run, milliseconds per pair, and what
the report holds (pages, thumbnails, figures).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CLIP_FRAMES = 20
EVS = (-1.5, -1.0, 0.0, 1.0, 1.5)


def _render(radiance: np.ndarray, ev: float) -> np.ndarray:
    from expokit.core.transfer import srgb_encode

    return np.asarray(np.round(srgb_encode(radiance * 2.0**ev) * 255), dtype=np.uint8)


def _scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.repeat((0.05 + 0.3 * (rows / height + cols / width) / 2)[..., None], 3, axis=2)
    image = image * rng.uniform(0.6, 1.4, 3)
    for _ in range(5):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(0.05, 0.2) * width
        image[(rows - cy) ** 2 + (cols - cx) ** 2 < r * r] = rng.uniform(0.02, 0.8, 3)
    return image


def make_dataset(root: Path, pairs: int, height: int, width: int) -> float:
    """Write a synthetic format-v1 dataset of ``pairs`` rows; return the seconds it took."""
    import cv2
    import pandas as pd

    from expokit.core.hashing import sha256_file
    from expokit.curation.dataset.format import DatasetInfo, write_dataset

    started = time.perf_counter()
    rng = np.random.default_rng(0)
    mask = np.zeros((height, width), np.uint8)
    mask[2 : height - 2, 3 : width - 3] = 255
    rows: list[dict[str, Any]] = []
    clip_rows = pairs // 5 // CLIP_FRAMES * CLIP_FRAMES

    def write(rel: str, image: np.ndarray) -> str:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        return sha256_file(path)

    def row(scene: str, stem: str, ev: float, split: str, **extra: Any) -> dict[str, Any]:
        psnr = float(rng.normal(30, 5))
        residual = float(rng.gamma(2.0, 0.3))
        flags = [f for f, bad in (("low_psnr", psnr < 20), ("misaligned", residual > 1.5)) if bad]
        return {
            "pair_id": f"{scene}/{stem}",
            "scene_id": scene,
            "source": "render",
            "input_role": "ev",
            "target_role": "reference",
            "input_ev": ev,
            "target_ev": 0.0,
            "width": width,
            "height": height,
            "mask_path": mask_rel,
            "photometric_gain": 2.0**-ev,
            "psnr_db": psnr,
            "ssim": float(rng.uniform(0.6, 1)),
            "alignment_residual_px": residual,
            "ecc_correlation": float(rng.uniform(0.9, 1)),
            "clipped_dark_input": float(rng.uniform(0, 0.2)),
            "clipped_bright_input": float(rng.uniform(0, 0.2)),
            "clipped_dark_target": float(rng.uniform(0, 0.05)),
            "clipped_bright_target": float(rng.uniform(0, 0.05)),
            "valid_x": 3,
            "valid_y": 2,
            "valid_w": width - 6,
            "valid_h": height - 4,
            "flags": ",".join(flags),
            "split": split,
            **extra,
        }

    index = 0
    while len(rows) < pairs - clip_rows:
        scene = f"scene{index:04d}"
        split = ("train", "train", "train", "val", "test")[index % 5]
        radiance = _scene(rng, height, width)
        target_rel = f"images/{scene}/{scene}_target.png"
        target_sha = write(target_rel, _render(radiance, 0.0))
        mask_rel = f"images/{scene}/{scene}_mask.png"
        write(mask_rel, mask)
        for ev in EVS[: pairs - clip_rows - len(rows)]:
            stem = f"ev{ev:+.1f}"
            input_rel = f"images/{scene}/{scene}_{stem}_input.png"
            rows.append(
                row(
                    scene,
                    stem,
                    ev,
                    split,
                    input_path=input_rel,
                    target_path=target_rel,
                    input_sha256=write(input_rel, _render(radiance, ev)),
                    target_sha256=target_sha,
                )
            )
        index += 1
    for clip in range(clip_rows // CLIP_FRAMES):
        scene = f"video{clip:03d}"
        radiance = _scene(rng, height, width)
        mask_rel = f"images/{scene}/{scene}_mask.png"
        write(mask_rel, mask)
        for frame in range(CLIP_FRAMES):
            moving = radiance * (1 + 0.03 * np.sin(frame / 3 + clip))
            stem = f"c01_{frame:05d}"
            input_rel = f"images/{scene}/{stem}_input.png"
            target_rel = f"images/{scene}/{stem}_target.png"
            rows.append(
                row(
                    scene,
                    stem,
                    -1.0,
                    ("train", "test")[clip % 2],
                    clip_id="c01",
                    frame_index=frame,
                    flicker=0.02,
                    input_path=input_rel,
                    target_path=target_rel,
                    input_sha256=write(input_rel, _render(moving, -1.0)),
                    target_sha256=write(target_rel, _render(moving, 0.0)),
                )
            )
    write_dataset(root, DatasetInfo.new(name=f"benchmark-{pairs}"), pd.DataFrame(rows))
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--size", default="128x96", help="WIDTHxHEIGHT of every image")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (first one is cold)")
    parser.add_argument("--max-thumbnails", type=int, default=1000)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    from expokit.curation.dataset.report import build_report

    with tempfile.TemporaryDirectory(prefix="expokit-report-bench-") as tmp:
        root = Path(tmp) / "ds"
        seconds = make_dataset(root, args.pairs, height, width)
        print(
            f"dataset: {args.pairs} pairs of {width}x{height} PNG generated in {seconds:.1f} s "
            "(not timed)"
        )
        times = []
        for run in range(max(1, args.repeat)):
            out = Path(tmp) / f"report{run}"
            started = time.perf_counter()
            index = build_report(
                root, out, max_thumbnails=args.max_thumbnails, workers=args.workers, progress=False
            )
            times.append(time.perf_counter() - started)
            label = "cold" if run == 0 else "warm"
            print(
                f"run {run + 1} ({label}): {times[-1]:.2f} s, "
                f"{1000 * times[-1] / args.pairs:.2f} ms per pair"
            )
        folder = index.parent
        thumbs = len(list((folder / "thumbs").iterdir()))
        figures = len(list((folder / "fig").iterdir()))
        pages = len(list(folder.glob("pairs-*.html")))
        size_mb = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
        warm = statistics.median(times[1:]) if len(times) > 1 else times[0]
        print(
            f"report: {pages} thumbnail pages, {thumbs} thumbnails, {figures} figures, "
            f"index.html {index.stat().st_size / 1e6:.2f} MB, folder {size_mb:.1f} MB"
        )
        print(
            f"report generation for {args.pairs} pairs: {warm:.2f} s warm (median), "
            f"{times[0]:.2f} s cold; {1000 * warm / args.pairs:.2f} ms per pair "
            f"(workers={args.workers})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
