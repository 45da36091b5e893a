"""Execute the notebooks and store them with their outputs, so a code host shows the figures.

Run from anywhere: ``python scripts/execute_notebook.py [NOTEBOOK ...]`` (default: every
``notebooks/*.ipynb``). Each notebook runs top to bottom in a fresh ``python3`` kernel
(nbclient, the settings tests/test_notebooks.py uses) inside a temporary folder, then is
written back with what would change from run to run removed, so executing an unchanged
notebook again gives the same file:

- cell execution timestamps (``metadata.execution``) are dropped;
- the notebook metadata stays as stored (nbclient would add the kernel's Python version);
- in text outputs, what differs between runs of the same cells reads as a placeholder: the
  temporary work folder (``<tmp>/expokit-walkthrough``), capture session time stamps in
  file names (``YYYYMMDD-HHMMSS``) and the wall time of a training run (``<t> s``).

Every code cell records a digest of the source it ran (``metadata.expokit.executed_source``),
so the test can tell a cell edited after the last run (stale outputs) from a fresh one.
"""

from __future__ import annotations

import copy
import hashlib
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbclient
import nbformat

REPOSITORY = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPOSITORY / "notebooks").glob("*.ipynb"))
KERNEL_NAME = "python3"
#: seconds one cell may run
CELL_TIMEOUT_S = 300
#: cell metadata key holding what the script recorded about the run
METADATA_KEY = "expokit"
#: (pattern, replacement) of text that changes from run to run of unchanged cells
VOLATILE_TEXT: tuple[tuple[re.Pattern[str], str], ...] = (
    # the walkthrough's tempfile.mkdtemp(prefix="expokit-walkthrough-") folder
    (
        re.compile(r"(?:[A-Za-z]:)?[^\s'\"]*?[/\\]expokit-walkthrough-[A-Za-z0-9_]+"),
        "<tmp>/expokit-walkthrough",
    ),
    # capture sessions are named <%Y%m%d-%H%M%S>-<name> (expokit.capture.session)
    (re.compile(r"\b\d{8}-\d{6}(?=-)"), "YYYYMMDD-HHMMSS"),
    # TrainSummary.report(): "... from step 0 to 25 of 25 in 1.2 s on 1 process(es)"
    (re.compile(r"(\bof [\d,]+(?: \([^)]*\))? in )\d+(?:\.\d+)? s\b"), r"\1<t> s"),
)


def source_digest(source: str) -> str:
    """First 16 hex digits of the SHA-256 of a cell's source (UTF-8)."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def execute(notebook: Any, cwd: Path) -> Any:
    """A copy of ``notebook`` (nbformat v4) executed in a fresh kernel whose working
    folder is ``cwd``; raises nbclient's CellExecutionError when a cell fails."""
    executed = copy.deepcopy(notebook)
    client = nbclient.NotebookClient(
        executed,
        timeout=CELL_TIMEOUT_S,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return executed


def _stable_text(text: str) -> str:
    for pattern, replacement in VOLATILE_TEXT:
        text = pattern.sub(replacement, text)
    return text


def _stable_output(output: Any) -> None:
    """Replace :data:`VOLATILE_TEXT` in a stream's text or a result's ``text/*`` data."""
    if output.get("output_type") == "stream":
        output["text"] = _stable_text(output["text"])
    for mime, value in output.get("data", {}).items():
        if mime.startswith("text/") and isinstance(value, str):
            output["data"][mime] = _stable_text(value)


def stable(executed: Any, stored_metadata: Any) -> Any:
    """``executed`` with the run-to-run differences removed and each code cell's source
    digest recorded (modified in place and returned)."""
    executed.metadata = copy.deepcopy(stored_metadata)
    for cell in executed.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        cell.metadata[METADATA_KEY] = {"executed_source": source_digest(cell.source)}
        for output in cell.outputs:
            _stable_output(output)
    return executed


def store_executed(path: Path) -> int:
    """Execute the notebook at ``path`` and write it back with its outputs; its size in bytes."""
    stored = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="expokit-notebook-") as cwd:
        executed = execute(stored, Path(cwd))
    result = stable(executed, stored.metadata)
    nbformat.validate(result)
    # nbformat.writes gives the layout Jupyter saves (indent 1); the newline ends the file.
    text = nbformat.writes(result) + "\n"
    path.write_text(text, encoding="utf-8")
    return len(text.encode("utf-8"))


def main(arguments: list[str]) -> int:
    paths = [Path(a) for a in arguments] or NOTEBOOKS
    for path in paths:
        size = store_executed(path)
        print(f"wrote {path} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
