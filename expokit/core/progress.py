"""Progress of long commands: a bar on a terminal, plain lines in a log, nothing when off.

Every long command reports progress through :func:`show_progress` (not named
``progress``: that is the callers' on/off flag). What it prints depends on where it goes:

* ``enabled=False`` (``--no-progress``): nothing at all.
* the stream (default ``sys.stderr``) is a terminal: a tqdm bar.
* anything else (a log file, a pipe, CI): no bar frames and no ``\\r``; plain lines
  ``desc: n/total unit (x.x unit/s, ETA m:ss)`` on the first item, then at most every
  ``interval_s`` seconds, and ``desc: done, N unit in m:ss (x.x unit/s)`` at the end. With
  an unknown total: ``desc: n unit (x.x unit/s)``. A postfix text (e.g. the loss) is
  appended to each line when set.

The environment variable ``EXPOKIT_PROGRESS`` overrides the choice for tests and CI:
``bar`` (a bar even off a terminal), ``plain`` (plain lines even on a terminal) or ``off``
(nothing, as ``--no-progress``). Any other value, or none, chooses by the stream. It never
turns progress on where the command was asked for none.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import IO, Any, Generic, Literal, TypeVar, overload

from tqdm import tqdm

T = TypeVar("T")

Mode = Literal["bar", "plain", "off"]
ENV_VAR = "EXPOKIT_PROGRESS"
DEFAULT_INTERVAL_S = 10.0


def _is_tty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def choose_mode(enabled: bool, stream: IO[str]) -> Mode:
    """How progress shows on ``stream``: ``"off"`` when not ``enabled``, else what
    ``EXPOKIT_PROGRESS`` says, else ``"bar"`` on a terminal and ``"plain"`` elsewhere."""
    if not enabled:
        return "off"
    override = os.environ.get(ENV_VAR, "").strip().lower()
    if override in ("bar", "plain", "off"):
        return override  # type: ignore[return-value]  # checked just above
    return "bar" if _is_tty(stream) else "plain"


def format_duration(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from one hour on) of a duration in seconds (>= 0)."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _format_rate(rate: float) -> str:
    # One decimal reads well from 0.1/s up; slower work keeps two significant digits.
    return f"{rate:.1f}" if rate >= 0.1 else f"{rate:.2g}"


def write_line(line: str, file: IO[str] | None = None) -> None:
    """Print ``line`` to ``file`` (default ``sys.stdout``) without breaking a bar on the
    terminal (``tqdm.write`` there, a plain ``print`` otherwise)."""
    target = sys.stdout if file is None else file
    if _is_tty(sys.stderr) or _is_tty(target):
        tqdm.write(line, file=target)
    else:
        print(line, file=target, flush=True)


class Progress(Generic[T]):
    """Progress of one loop; made by :func:`show_progress`.

    Count with :meth:`update` (or iterate over it when it wraps an iterable), show extra
    text with :meth:`set_postfix_str`, print messages with :meth:`write` and end with
    :meth:`close` (or use it as a context manager; iterating to the end closes it too).
    """

    def __init__(
        self,
        iterable: Iterable[T] | None,
        *,
        total: int | None,
        desc: str,
        unit: str,
        mode: Mode,
        stream: IO[str],
        interval_s: float,
        initial: int,
        leave: bool,
        dynamic_ncols: bool,
        clock: Callable[[], float],
    ) -> None:
        self.iterable = iterable
        self.desc = desc
        self.unit = unit
        self.mode: Mode = mode
        self.stream = stream
        self.interval_s = interval_s
        self.initial = initial
        self.n = initial
        self.total = total
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            self.total = len(iterable)  # type: ignore[arg-type]  # has __len__
        self.postfix = ""
        self.closed = False
        self._clock = clock
        self._started = clock()
        self._last_line: float | None = None  # clock() when the last plain line was printed
        self._bar: tqdm[Any] | None = None
        if mode == "bar":
            self._bar = tqdm(
                total=self.total, initial=initial, desc=desc, unit=unit, leave=leave,
                dynamic_ncols=dynamic_ncols, file=stream, disable=False,
            )  # fmt: skip

    # -- counting --------------------------------------------------------------------
    def update(self, n: int = 1) -> None:
        """Count ``n`` more items done."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "plain":
            now = self._clock()
            if self._last_line is None or now - self._last_line >= self.interval_s:
                self._print(self._status_line(now))
                self._last_line = now

    def set_postfix_str(self, text: str) -> None:
        """Show ``text`` after the counts (on the bar at its next redraw; appended to the
        plain lines)."""
        self.postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def write(self, line: str, file: IO[str] | None = None) -> None:
        """Print ``line`` (default to ``sys.stdout``) without breaking the bar."""
        target = sys.stdout if file is None else file
        if self._bar is not None:
            tqdm.write(line, file=target)
        else:
            print(line, file=target, flush=True)

    def close(self) -> None:
        """End the progress: close the bar, or print the plain ``done`` line. Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "plain":
            self._print(self._done_line(self._clock()))

    # -- protocols -------------------------------------------------------------------
    def __iter__(self) -> Iterator[T]:
        if self.iterable is None:
            raise TypeError("this progress wraps no iterable: count with update()")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> Progress[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- plain lines -----------------------------------------------------------------
    def _rate(self, now: float) -> float | None:
        """Items per second in this run (from ``initial`` on), or None when not measurable."""
        elapsed = now - self._started
        done = self.n - self.initial
        return done / elapsed if elapsed > 0 and done > 0 else None

    def _status_line(self, now: float) -> str:
        rate = self._rate(now)
        speed = "?" if rate is None else _format_rate(rate)
        if self.total is None:
            line = f"{self.desc}: {self.n} {self.unit} ({speed} {self.unit}/s)"
        else:
            left = max(0, self.total - self.n)
            eta = "?" if rate is None else format_duration(left / rate)
            line = (
                f"{self.desc}: {self.n}/{self.total} {self.unit} ({speed} {self.unit}/s, ETA {eta})"
            )
        return f"{line} {self.postfix}" if self.postfix else line

    def _done_line(self, now: float) -> str:
        rate = self._rate(now)
        speed = "?" if rate is None else _format_rate(rate)
        elapsed = format_duration(now - self._started)
        done = self.n - self.initial
        line = f"{self.desc}: done, {done} {self.unit} in {elapsed} ({speed} {self.unit}/s)"
        return f"{line} {self.postfix}" if self.postfix else line

    def _print(self, line: str) -> None:
        # Flushed, so a log being followed (tail -f) sees each line when it is written.
        print(line, file=self.stream, flush=True)


@overload
def show_progress(
    iterable: Iterable[T],
    *,
    total: int | None = None,
    desc: str,
    unit: str,
    enabled: bool = True,
    stream: IO[str] | None = None,
    interval_s: float = DEFAULT_INTERVAL_S,
    initial: int = 0,
    leave: bool = True,
    dynamic_ncols: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> Progress[T]: ...


@overload
def show_progress(
    iterable: None = None,
    *,
    total: int | None = None,
    desc: str,
    unit: str,
    enabled: bool = True,
    stream: IO[str] | None = None,
    interval_s: float = DEFAULT_INTERVAL_S,
    initial: int = 0,
    leave: bool = True,
    dynamic_ncols: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> Progress[Any]: ...


def show_progress(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str,
    unit: str,
    enabled: bool = True,
    stream: IO[str] | None = None,
    interval_s: float = DEFAULT_INTERVAL_S,
    initial: int = 0,
    leave: bool = True,
    dynamic_ncols: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> Progress[Any]:
    """Progress of a loop over ``iterable`` (or counted with ``update``), shown as the
    module docstring says.

    Parameters
    ----------
    iterable
        Items to wrap: iterating the result yields them and counts each one. None: count
        with :meth:`Progress.update`.
    total
        Number of items expected (default ``len(iterable)`` when it has one); None: unknown.
    desc, unit
        What runs (``"validate"``) and what it counts (``"file"``, singular).
    enabled
        False (``--no-progress``): nothing is printed at all.
    stream
        Where the bar or the lines go; default ``sys.stderr`` at the time of the call.
    interval_s
        Least time between two plain lines, in seconds (the first and ``done`` lines are
        always printed).
    initial
        Count to start from (a resumed run); rates and ``done`` count from it.
    leave, dynamic_ncols
        Passed to the tqdm bar (keep it on screen when done; follow terminal resizes).
    clock
        Monotonic seconds; tests pass a fake one.
    """
    target = sys.stderr if stream is None else stream
    return Progress(
        iterable, total=total, desc=desc, unit=unit, mode=choose_mode(enabled, target),
        stream=target, interval_s=interval_s, initial=initial, leave=leave,
        dynamic_ncols=dynamic_ncols, clock=clock,
    )  # fmt: skip
