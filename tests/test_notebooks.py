"""The walkthrough notebook runs top to bottom in a real Jupyter kernel (nbclient) and shows
its figures; it is stored executed (so a code host shows the outputs), and the stored copy
is what the current cells give: ``python scripts/execute_notebook.py`` refreshes it."""

from __future__ import annotations

import base64
import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPOSITORY / "notebooks").glob("*.ipynb"))
SCRIPT = REPOSITORY / "scripts" / "execute_notebook.py"
REFRESH = "run python scripts/execute_notebook.py"
#: code cells with a line calling this must display at least one PNG figure
FIGURE_CALL = re.compile(r"^show\(fig\)", re.MULTILINE)
#: a code host shows the notebook inline; keep it light
MAX_STORED_BYTES = 2_000_000


def _script() -> ModuleType:
    """scripts/execute_notebook.py as a module: the test runs notebooks as the script does."""
    pytest.importorskip("nbformat", reason="install the dev extra (nbformat)")
    pytest.importorskip("nbclient", reason="install the dev extra (nbclient)")
    spec = importlib.util.spec_from_file_location("execute_notebook", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(notebook: Path) -> Any:
    nbformat = pytest.importorskip("nbformat", reason="install the dev extra (nbformat)")
    return nbformat.read(notebook, as_version=4)


def _execute(notebook: Path, cwd: Path) -> Any:
    import nbclient
    from jupyter_client.kernelspec import NoSuchKernel

    script = _script()
    try:
        return script.execute(_read(notebook), cwd)
    except (NoSuchKernel, RuntimeError) as exc:
        if isinstance(exc, nbclient.exceptions.CellExecutionError):
            raise
        pytest.fail(
            f"{notebook.name}: the Jupyter kernel 'python3' could not start ({exc}); "
            "install ipykernel in this environment (pip install -e '.[dev]')"
        )


def _pngs(cell: Any) -> list[bytes]:
    """The decoded PNG outputs of a code cell, in output order."""
    return [
        base64.b64decode(output["data"]["image/png"])
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_shows_its_figures(notebook: Path, tmp_path: Path) -> None:
    nb = _execute(notebook, tmp_path)
    figures = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        kinds = [output.output_type for output in cell.outputs]
        assert "error" not in kinds, f"{notebook.name} cell {index} raised an error"
        pngs = len(_pngs(cell))
        if FIGURE_CALL.search(cell.source):
            assert pngs >= 1, f"{notebook.name} cell {index} draws a figure but shows no PNG"
        figures += pngs
    if notebook.name == "walkthrough.ipynb":
        # EV ladder, rig overlay, sync peak, QA distributions, loss curve, input/output/target
        assert figures >= 6, f"walkthrough shows {figures} figures, expected 6"

    # The stored copy holds the outputs of these very cells: same cells, same sources, and a
    # stored figure wherever this run drew one (structure only: pixels vary with libraries).
    stored = _read(notebook)
    assert [(c.cell_type, c.source) for c in stored.cells] == [
        (c.cell_type, c.source) for c in nb.cells
    ], f"{notebook.name}: the stored cells differ from those executed; {REFRESH}"
    for index, (fresh, kept) in enumerate(zip(nb.cells, stored.cells, strict=True)):
        if fresh.cell_type == "code":
            assert len(_pngs(kept)) == len(_pngs(fresh)), (
                f"{notebook.name} cell {index} shows {len(_pngs(fresh))} figure(s) when run but "
                f"{len(_pngs(kept))} stored; {REFRESH}"
            )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_executed_and_fresh(notebook: Path) -> None:
    """Every code cell holds the outputs of its current source, without volatile metadata."""
    nbformat = pytest.importorskip("nbformat", reason="install the dev extra (nbformat)")
    script = _script()
    nb = _read(notebook)
    nbformat.validate(nb)
    assert notebook.stat().st_size < MAX_STORED_BYTES, f"{notebook.name} is too large"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        recorded = cell.metadata.get(script.METADATA_KEY, {}).get("executed_source")
        assert recorded == script.source_digest(cell.source) and cell.execution_count, (
            f"{notebook.name} cell {index} was edited after it was executed (or never was); "
            f"{REFRESH}"
        )
        assert "execution" not in cell.metadata, f"{notebook.name} cell {index}: timestamps"
        assert "error" not in [o.output_type for o in cell.outputs], f"cell {index} failed"
        if FIGURE_CALL.search(cell.source):
            assert _pngs(cell), f"{notebook.name} cell {index} stores no figure; {REFRESH}"
    assert "version" not in nb.metadata.get("language_info", {}), f"kernel metadata; {REFRESH}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_figures_are_not_empty(notebook: Path) -> None:
    """Each stored PNG decodes, and is not a single colour (a blank panel or figure)."""
    cv2 = pytest.importorskip("cv2")
    for index, cell in enumerate(_read(notebook).cells):
        for png in _pngs(cell):
            image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
            assert image is not None, f"{notebook.name} cell {index}: an undecodable PNG"
            colours = np.unique(image.reshape(-1, image.shape[2] if image.ndim == 3 else 1), axis=0)
            assert len(colours) > 1, f"{notebook.name} cell {index}: a figure of one colour"


def test_there_is_a_walkthrough() -> None:
    assert any(p.name == "walkthrough.ipynb" for p in NOTEBOOKS)
