"""Pieces shared by the command-line modules."""

from __future__ import annotations

import errno
import functools
import math
import sys
from collections.abc import Callable
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


def warn(message: str) -> None:
    """Print ``warning: <message>`` in yellow on stderr."""
    click.secho(f"warning: {message}", fg="yellow", err=True)


def _deprecated_alias(
    old: str, new: str, dest: str, type: Any = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Hidden option ``old`` kept for one release: it warns and hands its value to ``dest``.

    Eager, so it is read before the parameter it stands for; that parameter's callback
    (:func:`_take_alias`) takes the value when it was not given itself.
    """

    def remember(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value is not None:
            warn(f"{old} is deprecated; {new}")
            ctx.meta[_alias_key(dest)] = value

    return click.option(
        old,
        f"_deprecated_{dest}",
        type=type,
        default=None,
        hidden=True,
        is_eager=True,
        expose_value=False,
        callback=remember,
    )


def _alias_key(dest: str) -> str:
    return f"expokit.deprecated_alias.{dest}"


def given_on_command_line(ctx: click.Context, name: str) -> bool:
    """True when parameter ``name`` was set on the command line (not left at its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _take_alias(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """``value``, or the deprecated alias's value when the parameter itself was not given."""
    assert param.name is not None
    aliased = ctx.meta.get(_alias_key(param.name))
    if not given_on_command_line(ctx, param.name) and aliased is not None:
        return aliased
    return value


def dataset_argument(
    *, required: bool = True, exists: bool = True
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Positional ``DATASET``: the root folder of the dataset a command reads (into ``root``).

    Every command that reads one dataset takes it this way (``curate *``, ``train``,
    ``eval``).
    """
    return click.argument(
        "root",
        type=click.Path(path_type=Path, exists=exists, file_okay=False),
        required=required,
        metavar="DATASET",
    )


def dataset_argument_with_data_alias(
    *, required: bool
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """:func:`dataset_argument` that also takes the deprecated ``--data ROOT`` (hidden).

    ``required``: without either form the command stops with a usage error naming DATASET.
    """
    path = click.Path(path_type=Path, exists=True, file_okay=False)

    def dataset(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        value = _take_alias(ctx, param, value)
        if value is None and required:
            raise click.MissingParameter(ctx=ctx, param=param)
        return value

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        func = click.argument(
            "root",
            type=path,
            required=False,
            metavar="DATASET" if required else "[DATASET]",
            callback=dataset,
        )(func)
        return _deprecated_alias(
            "--data", "pass the dataset as the first argument", "root", type=path
        )(func)

    return decorate


def jobs_option(
    *,
    default: int = 1,
    dest: str = "workers",
    help: str = "Parallel worker processes.",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-j/--jobs N``: how many worker processes (at least 1).

    ``--workers N`` is a hidden, deprecated alias (one release).
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        func = click.option(
            "--jobs",
            "-j",
            dest,
            type=click.IntRange(min=1),
            default=default,
            callback=_take_alias,
            help=help,
        )(func)
        return _deprecated_alias("--workers", "use -j/--jobs", dest, type=click.IntRange(min=1))(
            func
        )

    return decorate


def loader_workers_option(
    *,
    dest: str = "num_workers",
    help: str = "DataLoader worker processes (0: load in the main process) [recipe default].",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--loader-workers N``: torch DataLoader workers (``None``: the recipe's value).

    ``--workers N`` is a hidden, deprecated alias (one release); ``-j`` is not: it means
    processes elsewhere.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        func = click.option(
            "--loader-workers",
            dest,
            type=click.IntRange(min=0),
            default=None,
            callback=_take_alias,
            help=help,
        )(func)
        return _deprecated_alias(
            "--workers", "use --loader-workers", dest, type=click.IntRange(min=0)
        )(func)

    return decorate


#: The ``--device`` default of every command: CUDA when available, else CPU.
DEFAULT_DEVICE = "auto"


def device_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--device NAME``: the torch device, ``auto`` by default (free text such as
    ``cuda:1``, checked by the command)."""
    return click.option(
        "--device",
        default=DEFAULT_DEVICE,
        show_default=True,
        help="Torch device: auto (CUDA when available, else CPU), cpu, cuda or cuda:N.",
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
