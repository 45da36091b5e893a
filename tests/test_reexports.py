"""No module re-exports another's names; only a package's ``__init__`` is a face.

Every ``from expokit.X import name`` in the package, the tests, the benchmarks, the scripts
and the notebook must name a module that defines ``name`` (or a sub-module of a package),
so each name has one home a reader can find.
"""

from __future__ import annotations

import ast
import functools
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@functools.cache
def _defined(module: str, root: Path) -> frozenset[str] | None:
    path = root / (module.replace(".", "/") + ".py")
    if not path.is_file():
        return None  # a package (its __init__ is a face) or not ours
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return frozenset(names)


def _sources(root: Path) -> list[tuple[str, str]]:
    found = [
        (str(p.relative_to(root)), p.read_text(encoding="utf-8"))
        for folder in ("expokit", "tests", "benchmarks", "scripts")
        for p in sorted((root / folder).rglob("*.py"))
    ]
    for notebook in sorted((root / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        found.append((str(notebook.relative_to(root)), code))
    return found


def imports_of_reexported_names(root: Path = REPO) -> list[str]:
    """``file: from module import name`` for each import of a name ``module`` only imports."""
    problems = []
    for where, text in _sources(root):
        for node in ast.walk(ast.parse(text)):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.level == 0):
                continue
            if not node.module.startswith("expokit."):
                continue
            defined = _defined(node.module, root)
            if defined is None:
                continue
            package = root / node.module.replace(".", "/")
            for alias in node.names:
                if alias.name not in defined and not (package / f"{alias.name}.py").is_file():
                    problems.append(f"{where}: from {node.module} import {alias.name}")
    return sorted(set(problems))


def test_every_name_is_imported_from_its_home() -> None:
    assert imports_of_reexported_names() == []


def test_the_check_catches_an_import_through_a_module(tmp_path: Path) -> None:
    (tmp_path / "expokit").mkdir()
    (tmp_path / "expokit" / "home.py").write_text("VALUE = 1\n")
    (tmp_path / "expokit" / "relay.py").write_text("from expokit.home import VALUE\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text(
        "from expokit.relay import VALUE\nfrom expokit.home import VALUE\n"
    )
    assert imports_of_reexported_names(tmp_path) == ["tests/t.py: from expokit.relay import VALUE"]
