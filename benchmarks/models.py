"""Speed of the baselines (issue 10): parameters, inference time, training steps/s, fast UEC.

Run from the repository root (not a test; nothing here is timed in the test suite)::

    python benchmarks/models.py                  # CPU, all models whose module exists
    python benchmarks/models.py --quick          # small sizes, a minute or so
    python benchmarks/models.py --full           # networks at full 12 MP / 4K (slow on CPU)
    python benchmarks/models.py --ckpt RUN       # UEC figures with trained weights
    python benchmarks/models.py --device cuda    # the same figures on a GPU

What is measured, per model of ``expokit.models.registry.MODELS`` (a model whose module is
not there yet is skipped with a note):

parameters
    trainable parameters.
inference
    seconds per 12 MP image (4000x3000) and per 4K frame (3840x2160), ``enhance`` in
    ``no_grad`` on a smooth random image. On CPU the networks take tens of seconds at these
    sizes, so by default they run at ``--probe-mp`` megapixels and the time is scaled by the
    pixel count (all four models are fully convolutional or pointwise, so time is linear in
    pixels; the column says ``scaled``); ``--full`` runs them at full size.
training
    optimizer steps per second of ``model.training_loss`` + Adam at ``--batch`` x
    ``--crop``^2 synthetic batches (every batch key any model needs).
fast UEC (the ``uec`` row)
    ``expokit.models.infer.fast_uec`` (thumbnail -> lambdas -> baked ``--lut-size``^3 LUT ->
    8-bit remap) measured at full 12 MP and 4K, against the naive ways in the same run: the
    network on every pixel and the float ``grid_sample`` LUT (``models.uec.apply_lut``).
    Agreement: PSNR between the LUT output and the network output, and the PSNR difference
    of the two against a real target (SICE: the darkest exposure of a scene corrected towards
    the next scene's middle exposure, scored against its own middle exposure) when
    ``../shared/data`` is there.

Timings are the best of ``--repeat`` runs. On a shared 2-core machine they vary by up to 2x
between runs; compare ratios from one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("EXPOKIT_SHARED_DATA", REPO.parent / "shared" / "data"))
SIZES = {"12 MP": (3000, 4000), "4K": (2160, 3840)}


def best_time(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Best wall seconds over ``repeat`` runs, the CPU seconds of that run, the result."""
    best, cpu, result = float("inf"), 0.0, None
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall = time.perf_counter() - start
        if wall < best:
            best, cpu = wall, time.process_time() - start_cpu
    return best, cpu, result


def smooth_u8(h: int, w: int, seed: int = 0) -> np.ndarray:
    """``(h, w, 3)`` uint8: upsampled random colours plus noise (natural-ish statistics)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 40), max(2, w // 40), 3), dtype=np.uint8)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    return np.clip(big + rng.integers(-4, 5, (h, w, 3)), 0, 255).astype(np.uint8)


def synthetic_batch(model: Any, batch: int, crop: int, device: Any) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(0)

    def img() -> torch.Tensor:
        return torch.rand(batch, 3, crop, crop, generator=g).to(device)

    frames = int(getattr(model, "frames", 3)) if model.data_kind == "clip" else 3
    clip = torch.rand(batch, frames, 3, crop, crop, generator=g).to(device)
    return {
        "input": img() * 0.3,
        "target": img(),
        "mask": torch.ones(batch, 1, crop, crop, device=device),
        "reference": img(),
        "ref_dark": img() * 0.3,
        "ref_bright": img() * 0.3 + 0.6,
        "frames": clip * 0.3,
        "target_frames": clip,
        "frame_mask": torch.ones(batch, frames, 1, crop, crop, device=device),
        "input_ev": torch.full((batch,), -2.0, device=device),
        "target_ev": torch.zeros(batch, device=device),
    }


def train_rate(model: Any, args: argparse.Namespace, device: Any) -> float:
    import torch

    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    data = synthetic_batch(model, args.batch, args.crop, device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss, _ = model.training_loss(data)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    model.eval()
    return args.steps / (time.perf_counter() - start)


def network_time(
    model: Any, hw: tuple[int, int], args: argparse.Namespace, device: Any
) -> tuple[float, str]:
    """Seconds per ``enhance`` at ``hw`` (measured, or scaled from ``--probe-mp``)."""
    import torch

    h, w = hw
    note = "measured"
    if not args.full:
        scale = (args.probe_mp * 1e6 / (h * w)) ** 0.5
        if scale < 1:
            h, w, note = round(h * scale), round(w * scale), "scaled"
    x = torch.from_numpy(smooth_u8(h, w)).permute(2, 0, 1)[None].float().div(255).to(device)
    if model.data_kind == "clip":
        x = x[:, None].expand(-1, int(getattr(model, "frames", 3)), -1, -1, -1)
    ref = x[:, :, :64, :64] if model.needs_reference else None

    def run() -> None:
        with torch.no_grad():
            model.enhance(x, ref)
        if device.type == "cuda":
            torch.cuda.synchronize()

    seconds, _, _ = best_time(run, args.repeat)
    return seconds * (hw[0] * hw[1]) / (h * w), note


def sice_protocol() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The issue's SICE protocol: per scene the 2 darkest and 2 brightest exposures as
    inputs, the middle one as target, the next scene's middle exposure as reference, all
    resized to 256x256 (bilinear); ``(input, target, reference)`` RGB uint8 triplets."""
    import cv2

    root = SHARED / "exposure" / "sice_7ev_sequences"
    if not root.is_dir():
        return []
    scenes = sorted(p for p in root.iterdir() if p.is_dir())

    def exposures(scene: Path) -> list[np.ndarray]:
        files = sorted(p for p in scene.iterdir() if p.suffix.lower() in (".jpg", ".png"))
        return [
            np.ascontiguousarray(
                cv2.resize(
                    np.asarray(cv2.imread(str(p))), (256, 256), interpolation=cv2.INTER_LINEAR
                )[..., ::-1]
            )
            for p in files
        ]

    loaded = [exposures(scene) for scene in scenes]
    triplets = []
    for i, images in enumerate(loaded):
        following = loaded[(i + 1) % len(loaded)]
        middle = len(images) // 2
        for source in (*images[:2], *images[-2:]):
            triplets.append((source, images[middle], following[len(following) // 2]))
    return triplets


def psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def time_fast_uec(
    model: Any, rgb: np.ndarray, ref_thumb: Any, args: argparse.Namespace
) -> tuple[float, float, float]:
    """Wall and CPU seconds of ``fast_uec`` on ``rgb``; wall seconds of the float
    ``grid_sample`` LUT (``models.uec.apply_lut``, bake excluded) on the same image."""
    import torch

    from expokit.models.infer import fast_uec, uec_correction
    from expokit.models.uec import apply_lut, bake_lut

    lut_s, lut_cpu, _ = best_time(
        lambda: fast_uec(model, rgb, ref_thumb, args.lut_size), args.repeat
    )
    image = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        lut = bake_lut(model, uec_correction(model, rgb, ref_thumb), args.lut_size)
        grid_s, _, _ = best_time(lambda: apply_lut(lut, image), 1)
    return lut_s, lut_cpu, grid_s


def fast_uec_figures(model: Any, args: argparse.Namespace) -> None:
    import torch

    from expokit.models.infer import fast_uec, thumbnail_u8, to_u8

    model = model.cpu().eval()
    reference = smooth_u8(512, 512, 7)
    ref_thumb = thumbnail_u8(reference, model.feature_size)
    threads = torch.get_num_threads()
    print(f"\nfast UEC: {args.lut_size}^3 LUT, 8-bit remap (CPU, {threads} threads)")
    print(f"{'size':>8} {'LUT s':>7} {'LUT cpu s':>9} {'grid_sample s':>13} {'network s':>9} "
          f"{'vs network':>10} {'vs grid':>8}")  # fmt: skip
    for label, (h, w) in SIZES.items():
        if args.quick:
            h, w, label = h // 4, w // 4, f"{label}/16"
        lut_s, lut_cpu, grid_s = time_fast_uec(model, smooth_u8(h, w, 1), ref_thumb, args)
        net_s, note = network_time(model, (h, w), args, torch.device("cpu"))
        print(f"{label:>8} {lut_s:7.3f} {lut_cpu:9.3f} {grid_s:13.3f} {net_s:9.2f} "
              f"{net_s / lut_s:9.0f}x {grid_s / lut_s:7.1f}x  (network {note})")  # fmt: skip
    # agreement on the SICE protocol (when ../shared/data is there), else a random image
    triplets = sice_protocol()
    if not triplets:
        print("agreement: ../shared/data not found; one random 1 MP image, no target")
        triplets = [(smooth_u8(864, 1152, 3), np.zeros(0), reference)]
    agree, p_net, p_lut = [], [], []
    for source, target, ref in triplets:
        fast = fast_uec(model, source, thumbnail_u8(ref, model.feature_size), args.lut_size)
        with torch.no_grad():
            x = torch.from_numpy(source).permute(2, 0, 1)[None].float() / 255
            r = torch.from_numpy(ref).permute(2, 0, 1)[None].float() / 255
            network = to_u8(model.enhance(x, r))
        agree.append(psnr_u8(fast, network))
        if target.size:
            p_net.append(psnr_u8(network, target))
            p_lut.append(psnr_u8(fast, target))
    print(f"agreement over {len(triplets)} images: LUT vs network (both uint8) mean "
          f"{np.mean(agree):.2f} dB, min {np.min(agree):.2f} dB")  # fmt: skip
    if p_net:
        diff = np.array(p_lut) - np.array(p_net)
        print(f"SICE protocol vs target: network {np.mean(p_net):.3f} dB, LUT "
              f"{np.mean(p_lut):.3f} dB, mean difference {diff.mean():+.4f} dB "
              f"(largest per image {np.abs(diff).max():.4f})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="sizes / 16, fewer steps")
    parser.add_argument("--full", action="store_true", help="networks at full size")
    parser.add_argument("--probe-mp", type=float, default=0.5, help="network size (scaled)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--lut-size", type=int, default=33)
    parser.add_argument("--ckpt", type=Path, default=None, help="UEC checkpoint or run")
    parser.add_argument("--models", default=None, help="comma-separated subset")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.quick:
        args.probe_mp, args.steps, args.repeat = min(args.probe_mp, 0.25), 3, 2

    import torch

    from expokit.models.base import parameter_count
    from expokit.models.registry import MODELS, create_model

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device")
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} CPU threads; "
          f"training at batch {args.batch} x {args.crop}^2, {args.steps} steps")  # fmt: skip
    print(f"{'model':>8} {'params':>8} {'12 MP s':>9} {'4K s':>8} {'train steps/s':>14}")
    names = args.models.split(",") if args.models else list(MODELS)
    uec_model = None
    for name in names:
        module = MODELS[name].split(":")[0]
        if importlib.util.find_spec(f"expokit.models.{module}") is None:
            print(f"{name:>8} skipped: models/{module}.py does not exist yet")
            continue
        if name == "uec" and args.ckpt is not None:
            from expokit.models.checkpoint import load_model

            model, _ = load_model(args.ckpt, expect="uec")
        else:
            model = create_model(name)
        model = model.to(device).eval()
        times = []
        for hw in SIZES.values():
            if args.quick:
                hw = (hw[0] // 4, hw[1] // 4)
            seconds, note = network_time(model, hw, args, device)
            times.append(seconds)
        rate = train_rate(copy.deepcopy(model), args, device)  # keep the weights
        size_note = " (sizes/16)" if args.quick else ""
        print(f"{name:>8} {parameter_count(model):8,d} {times[0]:9.2f} {times[1]:8.2f} "
              f"{rate:14.2f}  network {note}{size_note}")  # fmt: skip
        if name == "uec":
            uec_model = model
    if uec_model is not None:
        fast_uec_figures(uec_model, args)


if __name__ == "__main__":
    main()
