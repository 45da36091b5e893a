"""Run one pure per-item function over many items: in-process, a spawn process pool, or Ray.

The same function runs under every executor, so results do not depend on the choice.
Per-item failures are the function's business (it should return a failure record); an
exception escaping it, or a worker that dies, is turned into a result by ``on_error`` so a
batch always runs to the end.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from functools import partial
from typing import Any, Literal, TypeVar, cast

from tqdm import tqdm

from expokit.core.errors import ExpokitError

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
    """Yield ``(index, fn(items[index]))`` as items finish, with a tqdm progress bar.

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
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=not progress or None)
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


def _map_process_pool(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    on_error: Callable[[T, BaseException], R],
    bar: tqdm[Any],
) -> Iterator[tuple[int, R]]:
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_limit_native_threads,
        initargs=(threads,),
    ) as pool:
        futures: dict[Future[R], int] = {pool.submit(fn, item): i for i, item in enumerate(items)}
        for future in as_completed(futures):
            index = futures[future]
            bar.update(1)
            yield index, _settle(future.result, items[index], on_error)


def _map_ray(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    on_error: Callable[[T, BaseException], R],
    bar: tqdm[Any],
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
