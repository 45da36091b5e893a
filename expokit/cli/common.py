"""Pieces shared by the command-line modules."""

from __future__ import annotations

import errno
import functools
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from expokit.core.errors import ExpokitError, is_disk_full


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses NaN and infinity (click lets both through a
    range, and ``nan`` fails every later comparison silently)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class _FiniteFloat(click.types.FloatParamType):
    """A float option of any sign that refuses NaN and infinity."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


#: A finite float option (``type=FINITE_FLOAT``), any sign.
FINITE_FLOAT = _FiniteFloat()


P = ParamSpec("P")
R = TypeVar("R")

#: ``errno`` values of a file that may not be written or read (reported without a traceback).
_DENIED_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def fail(message: str) -> NoReturn:
    """Print ``error: <message>`` in red on stderr and exit with status 1."""
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(1)


def describe_os_error(exc: OSError) -> str | None:
    """One-line message for a full disk or a permission problem, naming the file.

    ``None`` for any other ``OSError`` (a bug or an unexpected condition: it keeps its
    traceback).
    """
    name = exc.filename if exc.filename is not None else "a file"
    if is_disk_full(exc):
        return f"disk full (or quota exceeded) while writing {name}"
    if exc.errno == errno.EROFS:
        return f"cannot write {name}: read-only file system"
    if isinstance(exc, PermissionError) or exc.errno in _DENIED_ERRNOS:
        return f"{name}: permission denied"
    return None


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Decorate a click command so that expected failures end it with one red line.

    :class:`~expokit.core.errors.ExpokitError` (and an ``OSError`` of a full disk or a
    denied permission, see :func:`describe_os_error`) becomes ``error: <message>`` on
    stderr and exit status 1, without a traceback. Whatever the command printed before
    the failure stays printed. Put it directly above the function, below the click
    decorators.
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ExpokitError as exc:
            fail(str(exc))
        except OSError as exc:
            message = describe_os_error(exc)
            if message is None:
                raise
            fail(message)

    wrapper.reports_errors = True  # type: ignore[attr-defined]  # checked by the tests
    return wrapper


def selection_options(command: Callable[P, R]) -> Callable[P, R]:
    """``--exclude-flags FLAG,...`` and ``--passed-only``: which pairs a command uses by their
    QA flags (:class:`expokit.curation.dataset.selection.PairSelection`), the same for ``curate
    export``, ``train`` and ``eval``."""
    command = click.option(
        "--passed-only", is_flag=True, help="Use only pairs with no QA flag (docs/qa.md)."
    )(command)
    return click.option(
        "--exclude-flags",
        default=None,
        metavar="FLAG,...",
        help="Leave out pairs carrying any of these QA flags (docs/qa.md) [default: none].",
    )(command)


def out_option(
    help: str,
    *,
    dest: str = "out_dir",
    required: bool = False,
    default: Path | None = None,
    dir_okay: bool = True,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--out/-o PATH``: where a command writes (a folder, or a file with ``dir_okay=False``).

    ``help`` says what goes there; a ``default`` is shown in the help.
    """
    return click.option(
        "--out",
        "-o",
        dest,
        required=required,
        type=click.Path(path_type=Path, dir_okay=dir_okay),
        default=default,
        show_default=default is not None,
        help=help,
    )


def workers_option(
    *,
    default: int | None = 1,
    minimum: int = 1,
    dest: str = "workers",
    help: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--workers/-j N``: how many worker processes (at least ``minimum``)."""
    return click.option(
        "--workers",
        "-j",
        dest,
        type=click.IntRange(min=minimum),
        default=default,
        show_default=default is not None,
        help=help,
    )


def device_option(
    *, default: str | None, help: str, choices: Sequence[str] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--device NAME``: the torch device (``choices``: a closed list, else free text such
    as ``cuda:1``, checked by the command)."""
    return click.option(
        "--device",
        type=None if choices is None else click.Choice(list(choices)),
        default=default,
        show_default=default is not None,
        help=help,
    )


def seed_option(
    *, default: int | None = 0, help: str | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--seed N``: the random seed (an integer)."""
    return click.option(
        "--seed", type=int, default=default, show_default=default is not None, help=help
    )


def progress_option(plural: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--no-progress``: hide the progress bar (``plural``: a command showing several)."""
    text = "Hide the progress bars." if plural else "Hide the progress bar."
    return click.option("--no-progress", is_flag=True, help=text)
