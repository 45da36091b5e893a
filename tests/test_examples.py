"""The example training configs in ``examples/`` load, resolve and build their model."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CONFIGS = sorted(p for p in EXAMPLES.glob("*.toml") if not p.name.startswith("rig_"))


def test_there_is_an_example_per_model() -> None:
    names = {p.stem.split("_")[0] for p in CONFIGS}
    assert names >= {"uec", "recnet", "video", "zerodce"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_an_example_config_resolves_and_builds_its_model(path: Path) -> None:
    pytest.importorskip("torch")
    from expokit.models.train import check_model_config, resolve_config

    model = path.stem.split("_")[0]
    config = resolve_config(model, config_file=path)
    check_model_config(config, str(path))
    assert config.model == model and config.steps > 0
    from expokit.models.data import pair_selection

    options = config.data_options  # the QA-flag choice is checked as the loaders check it
    pair_selection(options.get("exclude_flags"), options.get("passed_only", False))
