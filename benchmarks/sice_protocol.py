"""The SICE protocol table: reference methods and a UEC trained per fold (docs/models.md).

Run from the repository root::

    python benchmarks/sice_protocol.py                      # 2 folds, uec's default recipe
    python benchmarks/sice_protocol.py --minutes 2 --json out.json
    python benchmarks/sice_protocol.py --no-train           # reference methods only
    python benchmarks/sice_protocol.py --set 'model_config={"start": "gain"}'  # a variant

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


def parse_setting(text: str) -> tuple[str, object]:
    """``KEY=JSON`` (a bare word is taken as a string) as ``(key, value)``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--set {text!r}: expected KEY=JSON")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


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
        help="recipe override, e.g. lr=0.005 or model_config={...} (tables are merged)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        recipe_overrides = dict(parse_setting(text) for text in args.set)
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
        )  # fmt: skip
    folds = len(result.folds)
    head = f"{'method':<58}" + "".join(f"{'fold ' + str(f):>15}" for f in range(folds))
    print(head + f"{'overall':>15}{'anchor':>15}")
    for name in result.scores:
        label = P.all_methods().get(name)
        text = label.label if label else f"uec (ours, {result.recipe.get('steps')} steps max)"
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
