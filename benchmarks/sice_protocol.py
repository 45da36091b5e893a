"""The SICE protocol table: reference methods and a UEC trained per fold (docs/models.md).

Run from the repository root::

    python benchmarks/sice_protocol.py                      # 2 folds, uec's default recipe
    python benchmarks/sice_protocol.py --minutes 2 --json out.json
    python benchmarks/sice_protocol.py --no-train           # reference methods only
    python benchmarks/sice_protocol.py --set 'model_config={"start": "gain"}'  # a variant
    python benchmarks/sice_protocol.py --model uec --model recnet  # each model, same folds
    python benchmarks/sice_protocol.py --model recnet --set recnet:steps=2000  # one model's
    python benchmarks/sice_protocol.py --extra more_sequences/  # more training scenes
    python benchmarks/sice_protocol.py --shared-extras  # + the shared data's other sequences
    python benchmarks/sice_protocol.py --device cuda --amp bf16 \
        --json benchmarks/results/sice_protocol_cuda.json  # the same recipes on a GPU

Reads ``../shared/data/exposure/sice_7ev_sequences`` (or ``--data``); prints a message and
exits 0 when it is absent. Each fold is trained as a user would (``curate build`` with the
fold as split lists, then ``expokit train --model uec`` with the default recipe) in
``--work`` (a temporary folder by default). Prints method, PSNR/SSIM per fold and overall,
with the anchors beside, and writes the per-item scores, training stats (steps, seconds,
steps/s, the device in words and the autocast mode of every fold) and recipe as JSON, with
the machine it ran on. ``scripts/gen_model_tables.py`` puts each such JSON of
``benchmarks/results/`` in docs/models.md; the CPU and the GPU figures sit side by side there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_DATA = SHARED / "exposure" / "sice_7ev_sequences"
#: The RAW renders' EV ladder: 7 exposures 1 EV apart, the middle metered to mean 0.18.
EXTRA_RENDER_EVS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)


def stage_shared_extras(shared: Path, work: Path, raw_renders: bool = False) -> Path | None:
    """More training sequences from the shared data (research use: never shipped), as a
    folder of scene folders in exposure order for ``--extra``; None when absent.

    * the Memorial Church (Debevec & Malik): exposures 0061-0065 of its 16, 1 EV apart,
      brightest first, so the middle one is the 0063 (mean 110 / 255);
    * Merianos & Mitianoudis' three 3-exposure scenes (middle: the second);
    * with ``raw_renders``, every valid RAW of ``raw/`` rendered by expokit's own pipeline
      (:func:`expokit.curation.rendering.render.render_batch`, :data:`EXTRA_RENDER_EVS`,
      EV 0 metered to mean 0.18: an exact linear-light ladder, MSEC-style). Measured: they
      cost 1.2 dB on fold 0 (docs/models.md): an exact linear ladder is what the start curve
      already inverts, unlike a camera's own exposures.

    Files are linked, not copied; renders go to ``work/raw_renders``.
    """
    from expokit.core.ev import parse_ev_token
    from expokit.curation.rendering.config import MeterSpec, RenderConfig
    from expokit.curation.rendering.render import render_batch

    exposure = shared / "exposure"
    staged = work / "extra_sequences"
    if staged.exists():
        shutil.rmtree(staged)
    scenes: dict[str, list[Path]] = {}
    memorial = exposure / "memorial_debevec_16ev"
    if memorial.is_dir():
        scenes["memorial_church"] = [memorial / f"memorial{n:04d}.png" for n in range(61, 66)]
    merianos = exposure / "merianos_3ev"
    if merianos.is_dir():
        for scene in sorted(p for p in merianos.iterdir() if p.is_dir()):
            scenes[f"merianos_{scene.name}"] = sorted(scene.glob("*.jpg"))
    raw_dir = shared / "raw"
    raws = sorted(p for p in raw_dir.glob("*") if p.is_file()) if raw_renders else []
    if raws:
        config = RenderConfig(evs=EXTRA_RENDER_EVS, meter=MeterSpec("mean", 0.18))
        summary = render_batch(raws, work / "raw_renders", config, progress=False)
        for raw, _error in summary.failures:
            print(f"extra sequences: {raw} not rendered, left out")
        for folder in sorted((work / "raw_renders").iterdir()):
            files = sorted(folder.glob("*.jpg"))
            if len(files) == len(EXTRA_RENDER_EVS):
                by_ev = sorted(files, key=lambda f: parse_ev_token(f.stem.rsplit("_", 1)[-1]))
                scenes[f"render_{folder.name}"] = by_ev
    scenes = {k: v for k, v in scenes.items() if v and all(f.is_file() for f in v)}
    if not scenes:
        return None
    for name, files in scenes.items():
        folder = staged / name
        folder.mkdir(parents=True)
        for i, file in enumerate(files):
            (folder / f"e{i}_{file.name}").symlink_to(file.resolve())
    return staged


def parse_setting(text: str) -> tuple[str | None, str, object]:
    """``[MODEL:]KEY=JSON`` (a bare word is taken as a string) as ``(model, key, value)``;
    ``model`` is None for a setting of every model."""
    key, sep, value = text.partition("=")
    model, colon, name = key.rpartition(":")
    if not sep or not name:
        raise ValueError(f"--set {text!r}: expected [MODEL:]KEY=JSON")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return (model if colon else None), name, parsed


def machine() -> dict[str, object]:
    """What the figures were measured on: torch, CPU cores, the GPU when there is one."""
    import platform

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "torch": torch.__version__, "python": platform.python_version(),
        "cpu_cores": os.cpu_count(), "processor": platform.processor() or platform.machine(),
        "gpu": gpu, "cuda": torch.version.cuda if gpu else None,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per fold")
    parser.add_argument("--steps", type=int, default=None, help="steps per fold [recipe]")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="fold datasets and runs")
    parser.add_argument("--no-train", action="store_true", help="reference methods only")
    parser.add_argument("--json", type=Path, default=Path("sice_protocol.json"))
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=JSON",
        help="recipe override, e.g. lr=0.005 or uec:model_config={...} (MODEL: for one "
        "model only; tables are merged)",
    )  # fmt: skip
    parser.add_argument(
        "--extra", action="append", default=[], type=Path, metavar="DIR",
        help="a folder of more exposure-sequence scene folders every fold also trains on",
    )  # fmt: skip
    parser.add_argument(
        "--shared-extras", action="store_true",
        help="also train every fold on the shared data's other exposure sequences "
        "(stage_shared_extras)",
    )  # fmt: skip
    parser.add_argument(
        "--raw-renders", action="store_true",
        help="with --shared-extras: add 7-EV renders of the shared RAWs",
    )  # fmt: skip
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default=None,
        help="where every fold trains [recipe: auto]; scoring runs on the CPU",
    )  # fmt: skip
    parser.add_argument(
        "--amp", choices=("off", "bf16", "fp16"), default=None,
        help="autocast mode of the training [recipe: off]",
    )  # fmt: skip
    parser.add_argument(
        "--model", action="append", default=None, metavar="NAME",
        help="model to train per fold (repeatable; default uec)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    models = args.model or ["uec"]
    recipe_overrides: dict[str, object] = {}
    model_overrides: dict[str, dict[str, object]] = {}
    try:
        for text in args.set:
            model, key, value = parse_setting(text)
            if model is None:
                recipe_overrides[key] = value
            elif model not in models:
                raise ValueError(f"--set {text!r}: {model!r} is not a --model of this run")
            else:
                model_overrides.setdefault(model, {})[key] = value
    except ValueError as exc:
        parser.error(str(exc))
    if not args.data.is_dir():
        print(f"skipped: SICE sequences not found at {args.data}")
        return 0
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: torch sees no CUDA device on this machine")

    from expokit.models import protocol as P  # noqa: N812

    sequences = P.load_sequences(args.data)
    overrides = {**recipe_overrides, "max_minutes": args.minutes, "seed": args.seed}
    if args.steps is not None:
        overrides["steps"] = args.steps
    for key in ("device", "amp"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    with tempfile.TemporaryDirectory(prefix="sice-protocol-") as temp:
        work = args.work or Path(temp)
        extras = list(args.extra)
        if args.shared_extras and not args.no_train:
            staged = stage_shared_extras(args.data.parents[1], work, args.raw_renders)
            extras += [staged] if staged is not None else []
        result = P.run_protocol(
            sequences, args.folds, P.all_methods(),
            source=None if args.no_train else args.data, work=work,
            overrides=overrides, log=lambda line: print(line, flush=True),
            models=models, model_overrides=model_overrides, extra_sources=extras,
        )  # fmt: skip
    folds = len(result.folds)
    head = f"{'method':<58}" + "".join(f"{'fold ' + str(f):>15}" for f in range(folds))
    print(head + f"{'overall':>15}{'anchor':>15}")
    for name in result.scores:
        label = P.all_methods().get(name)
        steps = result.recipes.get(name, {}).get("steps")
        text = label.label if label else f"{name} (ours, {steps} steps max)"
        cells = [result.summary(name, f) for f in range(folds)] + [result.summary(name)]
        anchor = P.ANCHORS.get(name)
        row = f"{text:<58}" + "".join(f"{p:>8.2f} {s:.3f}" for p, s in cells)
        row += f"{anchor[0]:>8.2f} {anchor[1]:.3f}" if anchor else f"{'':>15}"
        print(row)
    rp, rs = P.ANCHORS["uec_released"]
    pad = 15 * (folds + 1)
    print(f"{'released UEC (MSEC-trained, anchor only)':<58}{'':>{pad}}{rp:>8.2f} {rs:.3f}")
    args.json.write_text(json.dumps({**result.to_json(), "machine": machine()}, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
