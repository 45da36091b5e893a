"""One QA-flag selection for every reader: export, the PyTorch datasets, train and eval."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pandas as pd
import pytest
from click.testing import CliRunner

from expokit.curation.dataset.flags import flag_list
from expokit.curation.dataset.format import load_dataset
from expokit.curation.dataset.selection import (
    PairSelection,
    SelectionError,
    selection_counts,
)
from expokit.curation.export.driver import export_dataset
from expokit.curation.export.layouts import ExportError


def _flagged(pristine: Path, flag: str) -> set[str]:
    frame = load_dataset(pristine).manifest
    pairs = zip(frame["pair_id"], frame["qa_flags"], strict=True)
    return {p for p, f in pairs if flag in flag_list(f)}


def test_selection_rules_and_errors() -> None:
    frame = pd.DataFrame({"qa_flags": ["", "low_psnr", "misaligned,low_psnr", None, "defocus"]})
    assert PairSelection().apply(frame).index.tolist() == [0, 1, 2, 3, 4]
    assert PairSelection(passed_only=True).apply(frame).index.tolist() == [0, 3]
    assert PairSelection.parse("misaligned, defocus").apply(frame).index.tolist() == [0, 1, 3]
    with pytest.raises(SelectionError, match=r"unknown QA flag\(s\) flicker; known: "):
        PairSelection.parse("flicker")  # v1's flag no longer exists
    with pytest.raises(SelectionError, match="list of flag names"):
        PairSelection("misaligned")  # type: ignore[arg-type]
    with pytest.raises(SelectionError, match="passed_only"):
        PairSelection.from_dict({"passed_only": "yes"})
    counts = selection_counts(frame)
    assert counts[0] == ("(none)", "all pairs", 5)
    assert counts[1] == ("--passed-only", "pairs with no flag", 2)
    assert ("--exclude-flags low_psnr", "without low_psnr", 3) in counts


def test_export_takes_the_selection_and_records_it(pristine: Path, tmp_path: Path) -> None:
    low = _flagged(pristine, "low_psnr")
    assert low  # the test dataset has low-PSNR pairs
    out = tmp_path / "seq"
    summary = export_dataset(
        pristine, out, "sequences", progress=False, selection=PairSelection.parse("low_psnr")
    )
    assert summary.ok
    total = len(load_dataset(pristine).manifest)
    assert summary.rows_total == total and summary.rows_exported == total - len(low)
    record = json.loads((out / "export.json").read_text())
    assert record["options"]["selection"] == {"exclude_flags": ["low_psnr"], "passed_only": False}
    notes = record["notes"]
    assert any("low_psnr" in n and "pairs chosen by QA flags" in n for n in notes)
    listed = (out / "sequences.csv").read_text()
    assert not any(f"{pair}," in listed or f"{pair}\n" in listed for pair in low)


def test_export_refuses_a_selection_that_keeps_nothing(root: Path, tmp_path: Path) -> None:
    from expokit.curation.dataset.format import MANIFEST_FILE

    frame = pd.read_parquet(root / MANIFEST_FILE)
    frame["qa_flags"] = "low_psnr"
    frame.to_parquet(root / MANIFEST_FILE, index=False)
    with pytest.raises(ExportError, match="without flags low_psnr keeps none of its"):
        export_dataset(
            root, tmp_path / "none", "sequences", progress=False,
            selection=PairSelection.parse("low_psnr"),
        )  # fmt: skip
    assert not (tmp_path / "none").exists()


def test_cli_export_passed_only(pristine: Path, tmp_path: Path) -> None:
    from expokit.cli.curate_tools import register

    group = click.Group("curate")
    register(group)
    out = tmp_path / "seq"
    result = CliRunner().invoke(
        group, ["export", str(pristine), "--layout", "sequences", "--out", str(out),
                "--passed-only", "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((out / "export.json").read_text())
    frame = load_dataset(pristine).manifest
    passed = sum(1 for f in frame["qa_flags"] if not flag_list(f))
    assert record["counts"]["rows_exported"] == passed < len(frame)
    bad = CliRunner().invoke(
        group, ["export", str(pristine), "--layout", "sequences", "--out", str(tmp_path / "x"),
                "--exclude-flags", "flicker"],
    )  # fmt: skip
    assert bad.exit_code != 0 and "unknown QA flag(s) flicker" in bad.output


def test_pytorch_datasets_take_the_same_selection(pristine: Path) -> None:
    pytest.importorskip("torch")
    from expokit.models.data import DataError, PairedDataset

    frame = load_dataset(pristine).manifest
    train = frame[frame["split"] == "train"]
    every = PairedDataset(pristine, "train")
    passed = PairedDataset(pristine, "train", passed_only=True)
    without = PairedDataset(pristine, "train", exclude_flags="low_psnr")
    assert len(every) == len(train)
    assert len(passed) == sum(1 for f in train["qa_flags"] if not flag_list(f))
    assert len(without) == sum(1 for f in train["qa_flags"] if "low_psnr" not in flag_list(f))
    assert len(passed) <= len(without) < len(every)
    with pytest.raises(DataError, match="unknown QA flag"):
        PairedDataset(pristine, "train", exclude_flags=["nope"])


def test_eval_scores_only_the_selected_pairs(pristine: Path) -> None:
    pytest.importorskip("torch")
    from expokit.models.evaluate import EvalConfig, evaluate, format_table

    frame = load_dataset(pristine).manifest
    train = frame[frame["split"] == "train"]
    kept = sum(1 for f in train["qa_flags"] if "low_psnr" not in flag_list(f))
    assert 0 < kept < len(train)
    config = EvalConfig(
        splits=("train",), train_split=None, selection=PairSelection.parse("low_psnr")
    )
    result = evaluate(pristine, None, config)
    assert len({r["pair_id"] for r in result.pairs}) == kept
    assert "pairs chosen by QA flags: without flags low_psnr" in format_table(result.summary)
    assert list(result.summary["config"]["selection"]["exclude_flags"]) == ["low_psnr"]
