"""docs/models.md's generated tables are what scripts/gen_model_tables.py writes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_model_tables", ROOT / "scripts" / "gen_model_tables.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_models_md_matches_the_generated_tables() -> None:
    script = load_script()
    current = script.DOC.read_text(encoding="utf-8")
    assert script.render(current) == current, "run python scripts/gen_model_tables.py"


def test_the_page_has_both_regions() -> None:
    text = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    for name in ("shipped-weights", "sice-protocol", "recipe-speed"):
        assert f"<!-- generated: {name} -->" in text
    assert text.count("<!-- end generated -->") == 3


def test_a_region_is_rewritten_and_the_rest_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = load_script()
    results = tmp_path / "sice_protocol.json"
    entry = {"psnr": 17.0, "ssim": 0.7, "folds": [{"psnr": 16.0, "ssim": 0.6},
                                                   {"psnr": 18.0, "ssim": 0.8}]}  # fmt: skip
    results.write_text(json.dumps({"folds": [[0, 1], [2, 3]], "methods": {
        "identity": {**entry, "psnr": 9.0}, "gain_to_reference": entry,
    }}))  # fmt: skip
    monkeypatch.setitem(script.GENERATORS, "sice-protocol",
                        lambda: script.sice_protocol_table(results))  # fmt: skip
    page = "intro\n<!-- generated: sice-protocol -->\nstale table\n<!-- end generated -->\noutro\n"
    written = script.render(page)
    assert written.startswith("intro\n<!-- generated: sice-protocol -->\n| fold")
    assert written.endswith("<!-- end generated -->\noutro\n")
    assert "| mean | **17.00 / 0.700** | 9.00 / 0.700 |" in written
    assert "stale table" not in written


def test_without_results_the_sice_region_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = load_script()
    missing = tmp_path / "missing.json"
    assert script.sice_protocol_table(missing) is None
    monkeypatch.setitem(script.GENERATORS, "sice-protocol",
                        lambda: script.sice_protocol_table(missing))  # fmt: skip
    page = "<!-- generated: sice-protocol -->\nkept\n<!-- end generated -->\n"
    assert script.render(page) == page


def _protocol_json(path: Path, device: str | None, amp: str = "off") -> None:
    runs = [{"model": "uec", "fold": f, "steps": 600, "seconds": 60.0 + 60 * f,
             **({"device": device, "amp": amp} if device else {})} for f in range(2)]  # fmt: skip
    path.write_text(json.dumps({"training": runs, "machine": {"cpu_cores": 2},
                                "methods": {"uec": {"psnr": 22.0, "ssim": 0.85}}}))  # fmt: skip


def test_the_speed_table_labels_each_device_and_says_when_gpu_figures_are_missing(
    tmp_path: Path,
) -> None:
    script = load_script()
    assert script.recipe_speed_table(tmp_path) is None
    # a file from before devices were recorded: its rows ran on the CPU
    _protocol_json(tmp_path / "sice_protocol.json", None)
    cpu_only = script.recipe_speed_table(tmp_path)
    assert "| `uec` | cpu, 2 cores | off | 600 | 6.7 | 1.5 | 22.00 / 0.850 |" in cpu_only
    assert "No GPU figures yet" in cpu_only and script.CUDA_COMMAND in cpu_only
    _protocol_json(tmp_path / "sice_protocol_cuda.json", "cuda:0 (NVIDIA H100)", "bf16")
    both = script.recipe_speed_table(tmp_path)
    assert "| `uec` | cuda:0 (NVIDIA H100) | bf16 | 600 |" in both
    assert both.count("| `uec` |") == 2 and "No GPU figures yet" not in both
