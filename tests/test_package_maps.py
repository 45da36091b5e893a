"""Each stage's ``__init__`` docstring is a true map: it names every module of the stage."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "expokit"
STAGES = ("core", "capture", "calibration", "curation", "models")


def unnamed_modules(stage: str, root: Path = PACKAGE) -> list[str]:
    """Modules of ``stage`` whose name its ``__init__`` docstring does not mention."""
    doc = (root / stage / "__init__.py").read_text(encoding="utf-8")
    modules = sorted(
        p.relative_to(root / stage).with_suffix("").as_posix()
        for p in (root / stage).rglob("*.py")
        if p.name != "__init__.py"
    )
    return [m for m in modules if not re.search(rf"\b{re.escape(m.split('/')[-1])}\b", doc)]


@pytest.mark.parametrize("stage", STAGES)
def test_the_stage_map_names_every_module(stage: str) -> None:
    assert unnamed_modules(stage) == [], f"add them to expokit/{stage}/__init__.py's map"


def test_the_check_catches_a_module_missing_from_the_map(tmp_path: Path) -> None:
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "__init__.py").write_text('"""* :mod:`a` - one."""\n')
    (tmp_path / "core" / "a.py").write_text("")
    (tmp_path / "core" / "b.py").write_text("")
    assert unnamed_modules("core", tmp_path) == ["b"]
