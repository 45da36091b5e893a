"""Errors that the command-line program reports as one clear line, without a traceback."""

from __future__ import annotations

from pathlib import Path


class ExpokitError(Exception):
    """Base class for expected failures (bad input, unusable output folder, ...)."""


class InputFileError(ExpokitError):
    """A specific input file cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class OutputError(ExpokitError):
    """An output location cannot be written (missing, not a folder, read-only, disk full)."""
