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


DOCS = [PACKAGE.parent / "README.md", *sorted((PACKAGE.parent / "docs").rglob("*.md"))]
_PACKAGES = "core|capture|calibration|curation|models|cli"
_FILE_REF = re.compile(rf"`((?:expokit/)?(?:{_PACKAGES})/[\w/]+\.py)`")
_DOTTED_REF = re.compile(rf"\bexpokit\.((?:{_PACKAGES})(?:\.\w+)+)")


def stale_doc_references(docs: list[Path], root: Path = PACKAGE) -> list[str]:
    """``doc: reference`` for every module path or dotted module name a document names
    that does not exist (a dotted name may end in one or two attribute names)."""
    stale = []
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        for match in _FILE_REF.finditer(text):
            rel = match.group(1).removeprefix("expokit/")
            if not (root / rel).is_file():
                stale.append(f"{doc.name}: {match.group(1)}")
        for match in _DOTTED_REF.finditer(text):
            parts = match.group(1).split(".")
            found = next(
                (
                    i
                    for i in range(len(parts), 0, -1)
                    if (root / Path(*parts[:i])).with_suffix(".py").is_file()
                    or (root / Path(*parts[:i]) / "__init__.py").is_file()
                ),
                0,
            )
            if found < len(parts) - 2 or found == 0:
                stale.append(f"{doc.name}: {match.group(0)}")
    return stale


def test_docs_name_only_modules_that_exist() -> None:
    assert stale_doc_references(DOCS) == []


def test_the_doc_check_catches_a_moved_module(tmp_path: Path) -> None:
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "a.py").write_text("")
    doc = tmp_path / "x.md"
    doc.write_text("see `core/a.py`, `core/b.py`, expokit.core.a.f and expokit.core.gone.f")
    assert stale_doc_references([doc], tmp_path) == [
        "x.md: core/b.py",
        "x.md: expokit.core.gone.f",
    ]
