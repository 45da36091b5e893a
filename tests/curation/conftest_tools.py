"""Small synthetic format-v1 datasets for the report, export, validate and card tests.

Imported explicitly (``from tests.curation.conftest_tools import make_dataset``) so the
builder's tests and fixtures stay independent of these.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pandas as pd

from expokit.core.hashing import sha256_file
from expokit.core.transfer import srgb_encode
from expokit.curation.dataset.format import Dataset, DatasetInfo, load_dataset, write_dataset

MSEC_EVS = (-1.5, -1.0, 0.0, 1.0, 1.5)


@dataclass
class Spec:
    """What :func:`make_dataset` builds."""

    #: scene id -> split, for still scenes (one row per input EV, one shared target)
    stills: dict[str, str] = field(
        default_factory=lambda: {
            "beach_01": "train",
            "hall_2": "train",
            "kitchen": "val",
            "lab.x": "test",
        }
    )
    evs: tuple[float, ...] = MSEC_EVS
    #: (scene id, clip id, frames, split, input EV) for video clips
    clips: tuple[tuple[str, str, int, str, float], ...] = (
        ("street", "c01", 6, "train", -1.0),
        ("street", "c02", 3, "train", -1.0),
        ("park", "c01", 5, "test", 1.0),
    )
    size: tuple[int, int] = (48, 64)  # (height, width)
    ext: str = ".png"
    masks: bool = True
    #: scene id -> horizontal shift (px) of its inputs: a misaligned scene for the heat map
    shifts: dict[str, int] = field(default_factory=dict)


def _radiance(seed: int, height: int, width: int) -> npt.NDArray[np.float64]:
    """A smooth linear scene with edges, so blends and differences show structure."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = 0.05 + 0.3 * (x + y) / 2
    image = np.repeat(base[..., None], 3, axis=2) * rng.uniform(0.6, 1.4, 3)
    rows, cols = np.mgrid[0:height, 0:width]
    for _ in range(4):
        cy, cx = rng.uniform(0.1, 0.9, 2) * (height, width)
        r = rng.uniform(0.08, 0.2) * width
        image[(rows - cy) ** 2 + (cols - cx) ** 2 < r**2] = rng.uniform(0.02, 0.8, 3)
    return image


def render(radiance: npt.NDArray[np.float64], ev: float) -> npt.NDArray[np.uint8]:
    """8-bit sRGB BGR of ``radiance`` scaled by ``2**ev``."""
    encoded = srgb_encode(radiance * 2.0**ev)
    return np.asarray(np.round(encoded[..., ::-1] * 255), dtype=np.uint8)


def _write(root: Path, rel: str, image: npt.NDArray[Any]) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return sha256_file(path)


def _row(
    root: Path,
    spec: Spec,
    pair_id: str,
    scene: str,
    stem: str,
    split: str,
    radiance: npt.NDArray[np.float64],
    input_ev: float,
    target_ev: float,
    target_rel: str | None,
    extra: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    height, width = spec.size
    folder = f"images/{scene.replace(' ', '-')}"
    input_rel = f"{folder}/{stem}_input{spec.ext}"
    image = render(radiance, input_ev)
    if spec.shifts.get(scene):
        image = np.roll(image, spec.shifts[scene], axis=1)
    input_sha = _write(root, input_rel, image)
    if target_rel is None:
        target_rel = f"{folder}/{stem}_target{spec.ext}"
    target_path = root / target_rel
    if not target_path.exists():
        _write(root, target_rel, render(radiance, target_ev))
    mask_rel = None
    if spec.masks:
        mask = np.zeros((height, width), np.uint8)
        mask[2 : height - 2, 3 : width - 1] = 255
        mask_rel = f"{folder}/{stem}_mask.png"
        _write(root, mask_rel, mask)
    psnr = float(rng.uniform(18, 42))
    return {
        "pair_id": pair_id,
        "scene_id": scene,
        "source": "render",
        "input_role": "ev",
        "target_role": "reference",
        "input_ev": input_ev,
        "target_ev": target_ev,
        "input_exposure_time_s": 1 / 60 * 2.0**input_ev,
        "input_iso": 100.0,
        "input_f_number": 4.0,
        "target_exposure_time_s": 1 / 60 * 2.0**target_ev,
        "target_iso": 100.0,
        "target_f_number": 4.0,
        "input_path": input_rel,
        "target_path": target_rel,
        "mask_path": mask_rel,
        "input_sha256": input_sha,
        "target_sha256": sha256_file(target_path),
        "source_input": f"/captures/{stem}.CR2",
        "source_target": f"/captures/{stem}_ref.CR2",
        "width": width,
        "height": height,
        "homography": "[[1,0,0],[0,1,0],[0,0,1]]",
        "ecc_correlation": float(rng.uniform(0.9, 1.0)),
        "alignment_residual_px": float(spec.shifts.get(scene, 0) or rng.uniform(0.0, 0.9)),
        "photometric_gain": 2.0 ** (target_ev - input_ev),
        "valid_x": 3,
        "valid_y": 2,
        "valid_w": width - 4,
        "valid_h": height - 4,
        "psnr_db": psnr,
        "ssim": float(rng.uniform(0.6, 0.99)),
        "clipped_dark_input": float(rng.uniform(0, 0.2)),
        "clipped_bright_input": float(rng.uniform(0, 0.2)),
        "clipped_dark_target": float(rng.uniform(0, 0.05)),
        "clipped_bright_target": float(rng.uniform(0, 0.05)),
        "qa_flags": ",".join(
            flag
            for flag, bad in (("low_psnr", psnr < 22), ("misaligned", bool(spec.shifts.get(scene))))
            if bad
        ),
        "split": split,
        **extra,
    }


def make_dataset(root: Path, spec: Spec | None = None) -> Dataset:
    """Write a small dataset (stills scenes with an EV ladder, video clips) and load it."""
    spec = spec or Spec()
    height, width = spec.size
    rows: list[dict[str, Any]] = []
    seed = 0
    for scene, split in spec.stills.items():
        seed += 1
        radiance = _radiance(seed, height, width)
        target_rel = f"images/{scene.replace(' ', '-')}/{scene.replace(' ', '-')}_target{spec.ext}"
        for ev in spec.evs:
            token = f"{ev:+.1f}"
            rows.append(
                _row(
                    root,
                    spec,
                    f"{scene}/ev{token}",
                    scene,
                    f"{scene.replace(' ', '-')}_{token}",
                    split,
                    radiance,
                    ev,
                    0.0,
                    target_rel,
                    {"clip_id": None, "frame_index": None},
                    seed * 100,
                )
            )
    for scene, clip, frames, split, ev in spec.clips:
        seed += 1
        radiance = _radiance(seed, height, width)
        for frame in range(frames):
            # A slow brightness drift, so luminance-over-time plots have something to show.
            moving = radiance * (1 + 0.05 * np.sin(frame / 2))
            rows.append(
                _row(
                    root,
                    spec,
                    f"{scene}/{clip}/{frame:05d}",
                    scene,
                    f"{clip}_{frame:05d}",
                    split,
                    moving,
                    ev,
                    0.0,
                    None,
                    {
                        "clip_id": clip,
                        "frame_index": frame,
                        "target_flicker": 0.002,
                        "gain_instability_ev": 0.004,
                    },
                    seed * 1000 + frame,
                )
            )
    info = DatasetInfo.new(
        name="synthetic-test",
        license="CC-BY-4.0",
        qa_thresholds={"min_psnr_db": 22.0, "max_residual_px": 1.0, "min_ssim": 0.5},
    )
    cameras = ["Canon EOS 5D Mark IV (reference)", "Sony A7 III (test)"]
    info = replace(info, provenance={**info.provenance, "cameras": cameras})
    write_dataset(root, info, pd.DataFrame(rows))
    return load_dataset(root)
