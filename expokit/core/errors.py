"""Errors that the command-line program reports as one clear line, without a traceback."""

from __future__ import annotations

import errno
from pathlib import Path

#: ``errno`` values that mean "no room left": a full disk, or a full disk quota.
DISK_FULL_ERRNOS = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None
)


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


def is_disk_full(exc: BaseException) -> bool:
    """True when ``exc``, or an exception it was raised from, is a full disk or quota.

    Looks at the ``errno`` (``ENOSPC``, ``EDQUOT``) of every :class:`OSError` in the chain
    ``exc``, ``exc.__cause__``, ... (and ``__context__`` unless suppressed with
    ``raise ... from None``), so an :class:`OutputError` raised ``from`` the ``OSError`` of a
    failed write counts; the message text is never inspected.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return True
        if current.__cause__ is not None:
            current = current.__cause__
        elif not current.__suppress_context__:
            current = current.__context__
        else:
            current = None
    return False
