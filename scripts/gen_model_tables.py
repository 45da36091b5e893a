"""Regenerate the measured tables of docs/models.md from the files that hold the figures.

Usage::

    python scripts/gen_model_tables.py          # rewrite docs/models.md
    python scripts/gen_model_tables.py --check  # exit 1 when docs/models.md is out of date

Each generated region of ``docs/models.md`` lies between ``<!-- generated: NAME -->`` and
``<!-- end generated -->``; the rest of the page is left as it is. Regions:

* ``shipped-weights``: one row per shipped model, from the ``card`` entry of
  ``expokit/models/weights/<name>/meta.json`` (written with ``MODEL_CARD.md`` by
  ``scripts/train_shipped_weights.py``);
* ``sice-protocol``: the SICE cross-validation table per fold, from
  ``benchmarks/results/sice_protocol.json`` (``benchmarks/sice_protocol.py --json``). With
  no such file the region is kept as it is;
* ``recipe-speed``: steps/s and minutes to the score of every model's recipe, one row per
  model and device, from every ``benchmarks/results/sice_protocol*.json`` (the CPU run and,
  where a GPU was at hand, ``sice_protocol.py --device cuda --amp bf16 --json
  benchmarks/results/sice_protocol_cuda.json``); a line says when no GPU figures exist.

``tests/test_model_tables.py`` fails when the page differs from what this script writes.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "models.md"
WEIGHTS = REPO / "expokit" / "models" / "weights"
RESULTS = REPO / "benchmarks" / "results"
SICE_JSON = RESULTS / "sice_protocol.json"
_REGION = re.compile(
    r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.DOTALL
)
#: Column labels of the protocol's methods (``expokit.models.protocol``), in table order.
SICE_LABELS = {
    "uec": "`uec`",
    "recnet": "`recnet`",
    "zerodce": "`zerodce`",
    "gain_to_reference": "global gain to reference",
    "histogram_match": "histogram match",
    "identity": "identity",
    "oracle_gain_gamma": "oracle (peeking)",
    "oracle_gain_gamma_clipped": "oracle, clipped fit (peeking)",
}


def fmt(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def pair(scores: dict[str, Any] | None) -> str:
    """``PSNR / SSIM`` of a ``{"psnr", "ssim"}`` entry (``-`` when absent)."""
    if not scores:
        return "-"
    return f"{fmt(scores.get('psnr'), 2)} / {fmt(scores.get('ssim'), 3)}"


#: Saved tensors that are statistics, not parameters (``uec``'s running target level).
BUFFERS = ("target_level", "target_level_batches")


def parameter_count(weights: Path) -> int:
    """Elements of every parameter tensor in a safetensors file (buffers of :data:`BUFFERS`
    left out), read from its JSON header (no torch: the header is an 8-byte little-endian
    length, then the JSON)."""
    with weights.open("rb") as stream:
        (length,) = struct.unpack("<Q", stream.read(8))
        header = json.loads(stream.read(length))
    total = 0
    for name, entry in header.items():
        if name == "__metadata__" or name.rsplit(".", 1)[-1] in BUFFERS:
            continue
        count = 1
        for side in entry["shape"]:
            count *= side
        total += count
    return total


# ----------------------------------------------------------------------------- regions
def shipped_weights_table(weights: Path = WEIGHTS) -> str:
    """The table of the shipped weights and their scores (their cards)."""
    rows = [
        "| model | params | weights | step | trained on | test PSNR / SSIM | best fair "
        "baseline on test | more held-out scenes: PSNR / SSIM, baseline, verdict | SICE "
        "zero-shot PSNR / SSIM | card |",
        "|---|---:|---:|---:|---|---|---|---|---|---|",
    ]
    for folder in sorted(p for p in weights.iterdir() if (p / "meta.json").is_file()):
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        card = meta.get("card", {})
        test = card.get("test", {})
        data = "rig simulator clips" if meta["model"] == "video" else "renders of synthetic DNGs"
        baseline = "-"
        if test.get("baseline"):
            baseline = (
                f"{test['baseline']}: {fmt(test.get('baseline_psnr'), 2)} / "
                f"{fmt(test.get('baseline_ssim'), 3)}"
            )
        weights_file = folder / "model.safetensors"
        rows.append(
            f"| `{meta['model']}` | {parameter_count(weights_file):,} | "
            f"{weights_file.stat().st_size / 1024:.0f} KiB | {meta['step']} | {data} | "
            f"{pair(test)} | {baseline} | {held_out_cell(card.get('held_out'))} | "
            f"{pair(card.get('sice'))} | "
            f"[MODEL_CARD.md](../expokit/models/weights/{folder.name}/MODEL_CARD.md) |"
        )
    return "\n".join(rows) + "\n"


def held_out_cell(scores: dict[str, Any] | None) -> str:
    """The card's more-held-out-scenes score: model, baseline and verdict (``-``: none)."""
    from expokit.models.evidence import verdict_words

    if not scores:
        return "-"
    verdict = verdict_words(scores.get("status"), scores.get("evidence"))
    return f"{pair(scores)}; baseline {fmt(scores.get('baseline_psnr'), 2)} dB; {verdict}"


def sice_protocol_table(path: Path = SICE_JSON) -> str | None:
    """The per-fold SICE table from the protocol benchmark's JSON; None when absent."""
    if not path.is_file():
        return None
    result = json.loads(path.read_text(encoding="utf-8"))
    methods: dict[str, Any] = result["methods"]
    order = [m for m in SICE_LABELS if m in methods] + sorted(set(methods) - set(SICE_LABELS))
    folds = result["folds"]
    header = "| fold (test scenes) | " + " | ".join(SICE_LABELS.get(m, m) for m in order) + " |"
    rows = [header, "|---" * (len(order) + 1) + "|"]
    fair = [m for m in order if "oracle" not in m]

    def row(label: str, entry: Callable[[str], dict[str, Any]]) -> str:
        best = max(fair, key=lambda m: entry(m).get("psnr") or float("-inf"), default=None)
        cells = [f"**{pair(entry(m))}**" if m == best else pair(entry(m)) for m in order]
        return f"| {label} | " + " | ".join(cells) + " |"

    for f, scenes in enumerate(folds):
        span = f"scenes {scenes[0]}-{scenes[-1]}" if scenes else "no scenes"
        rows.append(row(f"{f} ({span})", lambda m, f=f: methods[m]["folds"][f]))
    rows.append(row("mean", lambda m: methods[m]))
    halves: tuple[tuple[str, Callable[[int], bool]], ...] = (
        ("under-exposed inputs (0, 1)", lambda i: i < 3),
        ("over-exposed inputs (5, 6)", lambda i: i > 3),
    )
    for half, keep in halves:
        rows.append(row(f"mean, {half}", lambda m, keep=keep: by_input(methods[m], keep)))
    anchors = result.get("anchors", {})
    released = anchors.get("uec_released")
    notes = []
    if released:
        notes.append(
            f"Released UEC (MSEC-trained, 17K images; the anchor measured on the same 22 "
            f"scenes, no folds): {pair(released)}."
        )
    notes += evidence_notes(methods, [m for m in fair if m not in SICE_LABELS or m in MODELS])
    for run in result.get("training", []):
        notes.append(
            f"`{run.get('model', 'uec')}` fold {run['fold']}: {run['steps']} steps in "
            f"{run['seconds'] / 60:.1f} min ({run['steps_per_second']:.1f} steps/s)."
        )
    for name, recipe in (result.get("recipes") or {"uec": result.get("recipe", {})}).items():
        shown = {k: v for k, v in recipe.items() if k not in ("data", "out")}
        if shown:
            notes.append(f"`{name}` recipe: `{json.dumps(shown, sort_keys=True)}`.")
    if result.get("extra_sources"):
        notes.append(f"Extra training sequences: {', '.join(result['extra_sources'])}.")
    text = "\n".join(rows) + "\n\n" + "\n".join(f"* {n}" for n in notes)
    return text + "\n\n(Generated from `benchmarks/results/sice_protocol.json`.)\n"


#: How to record the GPU figures (the line the speed table shows while there are none).
CUDA_COMMAND = (
    "python benchmarks/sice_protocol.py --device cuda --amp bf16 --model uec --model recnet "
    "--model zerodce --shared-extras --json benchmarks/results/sice_protocol_cuda.json"
)


def recipe_speed_table(results: Path = RESULTS) -> str | None:
    """Per model and device: steps, steps/s, minutes per fold and the SICE score, from every
    ``sice_protocol*.json`` in ``results``; None when there is none."""
    files = sorted(results.glob("sice_protocol*.json"))
    if not files:
        return None
    rows = [
        "| model | device | amp | steps / fold | steps/s | minutes / fold | SICE PSNR / SSIM "
        "| measured in |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    gpu_rows = 0
    for path in files:
        result = json.loads(path.read_text(encoding="utf-8"))
        machine = result.get("machine") or {}
        runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for run in result.get("training", []):
            # Rows written before devices were recorded ran on the CPU.
            device = run.get("device") or "cpu"
            key = (run.get("model", "uec"), device, run.get("amp") or "off")
            runs.setdefault(key, []).append(run)
        for (model, device, amp), folds in runs.items():
            gpu_rows += device.startswith("cuda")
            cores = machine.get("cpu_cores")
            where = f"{device}, {cores} cores" if cores and device.startswith("cpu") else device
            steps = sum(r["steps"] for r in folds) / len(folds)
            seconds = sum(r["seconds"] for r in folds) / len(folds)
            score = result.get("methods", {}).get(model)
            shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
            rows.append(
                f"| `{model}` | {where} | {amp} | {steps:.0f} | {steps / seconds:.1f} | "
                f"{seconds / 60:.1f} | {pair(score)} | `{shown}` |"
            )
    text = "\n".join(rows) + "\n"
    if not gpu_rows:
        text += (
            "\nNo GPU figures yet: no GPU was at hand where this page was measured. On a "
            f"machine with one, `{CUDA_COMMAND}` records them, and "
            "`python scripts/gen_model_tables.py` adds their rows here.\n"
        )
    return text


#: The protocol's trained models (the other methods are reference methods).
MODELS = ("uec", "recnet", "zerodce")


def evidence_notes(methods: dict[str, Any], models: list[str]) -> list[str]:
    """Per trained model: is it clearly above the best fair reference method, scene by
    scene (:mod:`expokit.models.evidence` on the per-item scores)?"""
    from expokit.models.evidence import paired_evidence

    references = [
        m for m in methods if m not in models and "oracle" not in m and methods[m].get("items")
    ]
    if not references:
        return []
    best = max(references, key=lambda m: methods[m]["psnr"])
    base = {(i["scene"], i["input_index"]): i["psnr"] for i in methods[best]["items"]}
    notes = []
    for model in models:
        items = methods.get(model, {}).get("items", [])
        rows = [(str(i["scene"]), i["psnr"], base[(i["scene"], i["input_index"])])
                for i in items if (i["scene"], i["input_index"]) in base]  # fmt: skip
        evidence = paired_evidence(rows)
        if evidence is None:
            continue
        word = {"above": "clearly above", "below": "clearly below"}.get(
            str(evidence.clear), "not clearly above or below"
        )
        label = SICE_LABELS.get(best, best)
        notes.append(f"`{model}` against the best fair reference method ({label}): {word}; "
                     f"{evidence.describe()}.")  # fmt: skip
    return notes


def by_input(method: dict[str, Any], keep: Callable[[int], bool]) -> dict[str, Any]:
    """Mean ``psnr``/``ssim`` of a method's items whose input index ``keep`` accepts."""
    items = [i for i in method.get("items", []) if keep(int(i["input_index"]))]
    if not items:
        return {}
    return {k: sum(float(i[k]) for i in items) / len(items) for k in ("psnr", "ssim")}


GENERATORS: dict[str, Callable[[], str | None]] = {
    "shipped-weights": shipped_weights_table,
    "sice-protocol": sice_protocol_table,
    "recipe-speed": recipe_speed_table,
}


def render(text: str) -> str:
    """``text`` (docs/models.md) with every known generated region rewritten; a region whose
    generator has no data (None) or an unknown name is kept as it is."""

    def replace(match: re.Match[str]) -> str:
        generator = GENERATORS.get(match["name"])
        body = generator() if generator is not None else None
        if body is None:
            return match.group(0)
        return f"{match.group(1)}{body}{match.group(4)}"

    return _REGION.sub(replace, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is current")
    args = parser.parse_args(argv)
    current = DOC.read_text(encoding="utf-8")
    wanted = render(current)
    if args.check:
        if wanted != current:
            print(f"{DOC} is out of date: run python scripts/gen_model_tables.py")
            return 1
        return 0
    if wanted != current:
        DOC.write_text(wanted, encoding="utf-8")
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
