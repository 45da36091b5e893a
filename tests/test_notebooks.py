"""The walkthrough notebook runs top to bottom in a real Jupyter kernel (nbclient) and shows
its figures; it is stored without outputs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
#: code cells with a line calling this must display at least one PNG figure
FIGURE_CALL = re.compile(r"^show\(fig\)", re.MULTILINE)


def _execute(notebook: Path, cwd: Path) -> Any:
    nbformat = pytest.importorskip("nbformat", reason="install the dev extra (nbformat)")
    nbclient = pytest.importorskip("nbclient", reason="install the dev extra (nbclient)")
    from jupyter_client.kernelspec import NoSuchKernel

    nb = nbformat.read(notebook, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    try:
        client.execute()
    except (NoSuchKernel, RuntimeError) as exc:
        if isinstance(exc, nbclient.exceptions.CellExecutionError):
            raise
        pytest.fail(
            f"{notebook.name}: the Jupyter kernel 'python3' could not start ({exc}); "
            "install ipykernel in this environment (pip install -e '.[dev]')"
        )
    return nb


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
        pngs = sum("image/png" in output.get("data", {}) for output in cell.outputs)
        if FIGURE_CALL.search(cell.source):
            assert pngs >= 1, f"{notebook.name} cell {index} draws a figure but shows no PNG"
        figures += pngs
    if notebook.name == "walkthrough.ipynb":
        # EV ladder, rig overlay, sync peak, QA distributions, loss curve, input/output/target
        assert figures >= 6, f"walkthrough shows {figures} figures, expected 6"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_clean(notebook: Path) -> None:
    nbformat = pytest.importorskip("nbformat", reason="install the dev extra (nbformat)")
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    dirty = [
        index
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"{notebook.name}: cells {dirty} hold outputs; store it without outputs"


def test_there_is_a_walkthrough() -> None:
    assert any(p.name == "walkthrough.ipynb" for p in NOTEBOOKS)
