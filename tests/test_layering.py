"""The stages import one way: core <- capture <- calibration <- curation <- models.

Every ``import`` in the package is read (module level and inside functions, since lazy
imports are imports too); a stage may import only itself and the stages to its left. The
command line (``expokit/cli*.py``, ``demo.py``, ``info.py``) sits on top and may import all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "expokit"
ORDER = ("core", "capture", "calibration", "curation", "models")


def imported_stages(path: Path) -> list[tuple[int, str]]:
    """``(line, stage)`` of every ``expokit.<stage>`` import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "expokit":  # from expokit import curation
                names = [f"expokit.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}:{node.lineno}: relative import; write expokit.<stage>")
        for name in names:
            parts = name.split(".")
            if parts[0] == "expokit" and len(parts) > 1 and parts[1] in ORDER:
                found.append((node.lineno, parts[1]))
    return found


def against_the_grain(root: Path = PACKAGE) -> list[str]:
    problems = []
    for stage in ORDER:
        for path in sorted((root / stage).rglob("*.py")):
            for line, target in imported_stages(path):
                if ORDER.index(target) > ORDER.index(stage):
                    problems.append(
                        f"{path.relative_to(root.parent)}:{line}: {stage} imports {target}"
                    )
    return problems


def test_stages_import_only_to_their_left() -> None:
    assert against_the_grain() == []


def test_the_check_catches_an_import_against_the_grain(tmp_path: Path) -> None:
    for stage in ORDER:
        (tmp_path / "expokit" / stage).mkdir(parents=True)
    (tmp_path / "expokit" / "capture" / "bad.py").write_text(
        "def f():\n    from expokit.curation.dataset import load_dataset\n"
    )
    (tmp_path / "expokit" / "core" / "worse.py").write_text("import expokit.models.uec\n")
    (tmp_path / "expokit" / "models" / "fine.py").write_text("from expokit.capture import x\n")
    assert against_the_grain(tmp_path / "expokit") == [
        "expokit/core/worse.py:1: core imports models",
        "expokit/capture/bad.py:2: capture imports curation",
    ]


def test_stage_folders_are_the_package_and_card_links_point_at_them() -> None:
    repo = PACKAGE.parent
    for stage in ORDER[1:]:
        assert (PACKAGE / stage).is_dir() and not (PACKAGE / stage).is_symlink()
        link = repo / stage
        if link.is_symlink():  # a checkout without symlink support has a text file here
            assert link.resolve() == (PACKAGE / stage).resolve()
        else:
            pytest.skip(f"{link} is not a symbolic link in this checkout")
