"""The stages import one way: core <- capture <- calibration <- curation <- models.

Every ``import`` in the package is read (module level and inside functions, since lazy
imports are imports too); a stage may import only itself and the stages to its left. The
command line (the ``expokit/cli/`` package), ``demo.py`` and ``schemas.py`` sit on top and may
import all.
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
        "def f():\n    from expokit.curation.dataset.format import load_dataset\n"
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


def module_name(path: Path, root: Path) -> str:
    """``expokit.capture.backends.fake`` of ``root/capture/backends/fake.py`` (a package's
    ``__init__.py`` is the package)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every module of ``known`` that ``path`` imports (module level and lazy alike);
    ``from expokit.capture import simulate`` names the submodule."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in known:
                    found.add(submodule)
                elif node.module in known:
                    found.add(node.module)
    return found


def import_cycles(stage: str, root: Path = PACKAGE) -> list[list[str]]:
    """Every import cycle among the modules of ``stage`` (strongly connected components of
    more than one module, or a module importing itself), each as sorted module names.
    A package importing its own submodules (a face re-exporting them) is not a cycle by
    itself; only a path back from the submodule closes one."""
    paths = {module_name(p, root): p for p in sorted((root / stage).rglob("*.py"))}
    known = set(paths)
    graph = {name: imported_modules(path, known) for name, path in paths.items()}
    # Tarjan's strongly connected components.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph[node]:
                cycles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return sorted(cycles)


#: Import cycles known today, to be cut (docs/structure-notes.md, section 3); the check
#: fails on any other cycle, and on one of these once it is gone (then delete its entry).
KNOWN_CYCLES: dict[str, list[list[str]]] = {
    "core": [],
    "capture": [],  # no exception: the capture circle is cut (expokit.capture.simulator)
    "calibration": [],
    "curation": [],
    "models": [],
}


@pytest.mark.parametrize("stage", ORDER)
def test_no_import_cycle_within_a_stage(stage: str) -> None:
    assert import_cycles(stage) == KNOWN_CYCLES[stage]


def test_the_cycle_check_catches_a_lazy_cycle(tmp_path: Path) -> None:
    stage = tmp_path / "expokit" / "capture"
    (stage / "backends").mkdir(parents=True)
    (stage / "__init__.py").write_text("")
    (stage / "backends" / "__init__.py").write_text("")
    (stage / "a.py").write_text("from expokit.capture.backends.b import x\n")
    (stage / "backends" / "b.py").write_text("def f():\n    from expokit.capture import a\n")
    (stage / "c.py").write_text("import expokit.capture.a\n")
    assert import_cycles("capture", tmp_path / "expokit") == [
        ["expokit.capture.a", "expokit.capture.backends.b"]
    ]


#: Rooms of the curation stage and the rooms each may import (besides itself and the
#: stage's loose modules, ``metrics`` and ``truth``): a dataset is read without the builder
#: or the exporter, and a render knows nothing of datasets.
CURATION_ROOMS: dict[str, set[str]] = {
    "rendering": set(),
    "dataset": set(),
    "export": {"dataset"},
    "build": {"rendering", "dataset"},
}


def room_crossings(root: Path = PACKAGE) -> list[str]:
    """``file:line: room imports room`` for every import between curation rooms not allowed."""
    problems = []
    for room, allowed in CURATION_ROOMS.items():
        for path in sorted((root / "curation" / room).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                for name in names:
                    parts = name.split(".")
                    if parts[:2] != ["expokit", "curation"] or len(parts) < 3:
                        continue
                    target = parts[2]
                    if target in CURATION_ROOMS and target != room and target not in allowed:
                        where = path.relative_to(root.parent)
                        problems.append(f"{where}:{node.lineno}: {room} imports {target}")
    return problems


def test_curation_rooms_import_one_way() -> None:
    assert room_crossings() == []


def test_the_room_check_catches_a_crossing(tmp_path: Path) -> None:
    for room in CURATION_ROOMS:
        (tmp_path / "expokit" / "curation" / room).mkdir(parents=True)
    (tmp_path / "expokit" / "curation" / "dataset" / "bad.py").write_text(
        "def f():\n    from expokit.curation.build.qa import flags_for\n"
    )
    assert room_crossings(tmp_path / "expokit") == [
        "expokit/curation/dataset/bad.py:2: dataset imports build"
    ]
