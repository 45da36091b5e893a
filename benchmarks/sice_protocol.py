"""The SICE protocol table: reference methods and a UEC trained per fold (docs/models.md).

Run from the repository root::

    python benchmarks/sice_protocol.py                      # 2 folds, uec's default recipe
    python benchmarks/sice_protocol.py --minutes 2 --json out.json
    python benchmarks/sice_protocol.py --no-train           # reference methods only
    python benchmarks/sice_protocol.py --set 'model_config={"start": "gain"}'  # a variant
    python benchmarks/sice_protocol.py --model uec --model recnet  # each model, same folds
    python benchmarks/sice_protocol.py --model recnet --set recnet:steps=2000  # one model's
    python benchmarks/sice_protocol.py --extra more_sequences/  # more training scenes

Reads ``../shared/data/exposure/sice_7ev_sequences`` (or ``--data``); prints a message and
exits 0 when it is absent. Each fold is trained as a user would (``curate build`` with the
fold as split lists, then ``expokit train --model uec`` with the default recipe) in
``--work`` (a temporary folder by default). Prints method, PSNR/SSIM per fold and overall,
with the anchors beside, and writes the per-item scores, training stats and recipe as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "exposure" / "sice_7ev_sequences"


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

    from expokit.models import protocol as P  # noqa: N812

    sequences = P.load_sequences(args.data)
    overrides = {**recipe_overrides, "max_minutes": args.minutes, "seed": args.seed}
    if args.steps is not None:
        overrides["steps"] = args.steps
    with tempfile.TemporaryDirectory(prefix="sice-protocol-") as temp:
        result = P.run_protocol(
            sequences, args.folds, P.all_methods(),
            source=None if args.no_train else args.data, work=args.work or Path(temp),
            overrides=overrides, log=lambda line: print(line, flush=True),
            models=models, model_overrides=model_overrides, extra_sources=args.extra,
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
    args.json.write_text(json.dumps(result.to_json(), indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
