"""Run one pure per-item function over many items: in-process, a spawn process pool, or Ray.

The same function runs under every executor, so results do not depend on the choice.
Per-item failures are the function's business (it should return a failure record); an
exception escaping it, or a worker that dies, is turned into a result by ``on_error`` so a
batch always runs to the end. A dead worker is pinned on the item that killed it (the
others are re-run), and pool workers exit on their own when their parent process dies.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any, Literal, TypeVar, cast

from expokit.core.errors import ExpokitError
from expokit.core.progress import Progress, show_progress

T = TypeVar("T")
R = TypeVar("R")

Executor = Literal["local", "ray"]
EXECUTORS: tuple[str, ...] = ("local", "ray")

# Native libraries read these when they are first loaded in a worker.
_THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def native_threads() -> int:
    """Threads this process may use for native/numpy work: ``OMP_NUM_THREADS`` if set
    (process pools set it per worker), else the CPU count."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return max(1, os.cpu_count() or 1)


def _limit_native_threads(threads: int) -> None:
    """Pool initializer: give each worker ``threads`` OpenMP/BLAS threads."""
    for var in _THREAD_ENV_VARS:
        os.environ[var] = str(threads)


def _settle(get: Callable[[], R], item: T, on_error: Callable[[T, BaseException], R]) -> R:
    """Result of ``get()``, or ``on_error(item, exc)`` when the task raised or its worker died."""
    try:
        return get()
    except Exception as exc:  # includes BrokenProcessPool and Ray task errors
        return on_error(item, exc)


def map_unordered(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int = 1,
    executor: str = "local",
    on_error: Callable[[T, BaseException], R],
    desc: str = "",
    unit: str = "file",
    progress: bool = True,
) -> Generator[tuple[int, R], None, None]:
    """Yield ``(index, fn(items[index]))`` as items finish, with progress (:mod:`~.progress`).

    Parameters
    ----------
    fn
        A picklable, module-level function. It must be deterministic for byte-identical
        results across executors.
    workers
        ``1`` runs in this process. ``N > 1`` uses a ``spawn`` process pool (``fork`` with
        OpenMP, as in LibRaw, can deadlock); each worker gets ``max(1, cpus // N)`` native
        threads. With ``executor="ray"`` it is the number of CPUs Ray may use when it starts
        a local instance.
    executor
        ``"local"`` or ``"ray"`` (optional extra; joins ``RAY_ADDRESS`` when set, else starts
        a local instance).
    on_error
        Turns an exception escaping ``fn`` (or a dead worker) into a result for that item.
    """
    if workers < 1:
        raise ExpokitError(f"--workers must be >= 1, got {workers}")
    if executor not in EXECUTORS:
        raise ExpokitError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    bar = show_progress(total=len(items), desc=desc, unit=unit, enabled=progress)
    try:
        if executor == "ray":
            yield from _map_ray(fn, items, workers, on_error, bar)
        elif workers == 1 or len(items) <= 1:
            for index, item in enumerate(items):
                result = _settle(partial(fn, item), item, on_error)
                bar.update(1)
                yield index, result
        else:
            yield from _map_process_pool(fn, items, workers, on_error, bar)
    finally:
        bar.close()


class WorkerDiedError(ExpokitError):
    """A pool worker process died (killed, out of memory, crashed in native code)."""


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (killed: out of memory or by a person)" if name == "SIGKILL" else ""
        return f"{name}{hint}"
    return f"exit code {exitcode}"


def _watch_parent(parent_pid: int, interval: float = 0.5) -> None:
    """Exit this worker as soon as its parent is gone (e.g. ``kill -9`` of the parent), so no
    orphan keeps writing or holds memory."""

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="expokit-parent-watch", daemon=True).start()


def _init_worker(threads: int, parent_pid: int) -> None:
    """Pool initializer: native thread budget and the parent watchdog."""
    _limit_native_threads(threads)
    _watch_parent(parent_pid)


def _new_pool(workers: int) -> ProcessPoolExecutor:
    threads = max(1, (os.cpu_count() or 1) // workers)
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads, os.getpid()),
    )


def _exit_codes(pool: ProcessPoolExecutor) -> list[int | None]:
    # ProcessPoolExecutor keeps its processes privately; read them only to explain a death.
    processes = getattr(pool, "_processes", None) or {}
    return [p.exitcode for p in list(processes.values())]


def _run_alone(fn: Callable[[T], R], item: T) -> tuple[bool, Any]:
    """Run ``fn(item)`` in a fresh one-worker pool: ``(True, result_or_exception)`` or
    ``(False, WorkerDiedError)`` when the worker died again."""
    pool = _new_pool(1)
    try:
        future = pool.submit(fn, item)
        # The worker may still be spawning: a death is explained from its exit code, so keep
        # hold of the process before the pool forgets it (a bounded wait, well before the
        # worker can have imported anything and started the item).
        processes: list[Any] = []
        deadline = time.monotonic() + 2.0
        while not processes and not future.done() and time.monotonic() < deadline:
            processes = list((getattr(pool, "_processes", None) or {}).values())
            if not processes:
                time.sleep(0.005)
        try:
            return True, future.result()
        except BrokenProcessPool:
            for process in processes:
                process.join(timeout=5)
            codes = [p.exitcode for p in processes] or _exit_codes(pool)
            # The pool's manager thread reaps the same child: a waitpid that loses that race
            # reads no status (None) though the other one has it a moment later.
            deadline = time.monotonic() + 1.0
            while processes and None in codes and time.monotonic() < deadline:
                time.sleep(0.01)
                codes = [p.exitcode for p in processes]
            died = next((c for c in codes if c not in (0, None)), None)
            return False, WorkerDiedError(
                f"worker process died ({_describe_exit(died)}) while processing this item"
            )
        except Exception as exc:
            return True, exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _map_process_pool(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    on_error: Callable[[T, BaseException], R],
    bar: Progress[Any],
) -> Iterator[tuple[int, R]]:
    """At most ``workers`` items in flight, so when a worker dies the items it may have
    been running are known. Those are re-run one at a time in a fresh worker: the one that
    kills its worker again is named through ``on_error``; the others and every item not
    yet started finish normally."""
    pending = deque(range(len(items)))
    while pending:
        suspects: list[int] = []
        pool = _new_pool(workers)
        try:
            in_flight: dict[Future[R], int] = {}
            while (pending or in_flight) and not suspects:
                while pending and len(in_flight) < workers:
                    index = pending.popleft()
                    in_flight[pool.submit(fn, items[index])] = index
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    index = in_flight.pop(future)
                    if isinstance(future.exception(), BrokenProcessPool):
                        suspects.append(index)
                        continue
                    bar.update(1)
                    yield index, _settle(future.result, items[index], on_error)
                if suspects:
                    suspects += in_flight.values()  # the pool is gone: they died with it
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        for index in sorted(suspects):
            finished, value = _run_alone(fn, items[index])
            bar.update(1)
            if finished and not isinstance(value, BaseException):
                yield index, value
            else:
                yield index, on_error(items[index], value)


def _map_ray(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    on_error: Callable[[T, BaseException], R],
    bar: Progress[Any],
) -> Iterator[tuple[int, R]]:
    try:
        import ray
    except ImportError as exc:
        raise ExpokitError(
            "--executor ray needs the optional Ray extra: pip install 'expokit[ray]'"
        ) from exc
    started_here = False
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        started_here = True
    try:
        remote_fn = ray.remote(num_cpus=1)(fn)
        pending = {remote_fn.remote(item): i for i, item in enumerate(items)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index = pending.pop(ref)
                bar.update(1)
                get = cast(Callable[[], R], partial(ray.get, ref))
                yield index, _settle(get, items[index], on_error)
    finally:
        if started_here:
            ray.shutdown()
