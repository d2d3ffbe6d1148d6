"""The local engine of per-file preprocessing: a process pool that survives a crashing file.

:func:`pool_map` runs a module-level function over items in a pool of processes, in order. An
exception in the function becomes that item's failure row; a worker process that dies (an FFmpeg
crash, the OOM killer) breaks the pool, and the unfinished items run again in a fresh one (an item
unfinished at two breaks runs alone, and a failure row if it breaks that pool too).
:func:`avlearn.data.executor.parallel_map` chooses between this and Ray (:mod:`avlearn.data.cluster`).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from tqdm import tqdm

__all__ = ["CRASH_MESSAGE", "error_text", "pool_map", "process_pool"]

T = TypeVar("T")
R = TypeVar("R")

CRASH_MESSAGE = "the worker process died handling this file (a crash in FFmpeg, or out of memory)"


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes started by a fresh server process (``forkserver``), not forked
    from this one.

    Why: a fork copies this process's memory but not its other threads. An object the parent still
    holds that owns threads (a PyAV codec context kept alive by a traceback, tqdm's monitor) is then
    half-alive in the child, and the child waits forever on its lock when it frees or uses it (seen
    as a hung test worker). The server starts before any such state, so its children start clean;
    each imports the function's module once.
    """
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver"))


def error_text(err: BaseException) -> str:
    """``"TypeName: message"`` of an exception (FFmpeg's repeat the file name; the row has it already)."""
    text = getattr(err, "strerror", None) or str(err)
    return f"{type(err).__name__}: {text}"


def pool_map(fn: Callable[[T], R], items: Sequence[T], workers: int, on_failure: Callable[[T, str], R],
             progress: bool = True, desc: str = "") -> list[R]:
    """``[fn(item) for item in items]`` in a pool of ``workers`` processes (``<= 1``: in this process,
    where a crash is fatal) with a progress bar; order is kept (see the module doc for failures)."""
    results: list[R | None] = [None] * len(items)
    with tqdm(total=len(items), desc=desc, unit="file", disable=not progress, dynamic_ncols=True) as bar:
        if workers <= 1 or len(items) < 2:
            for i, item in enumerate(items):
                try:
                    results[i] = fn(item)
                except Exception as err:  # one item must not stop the run
                    results[i] = on_failure(item, error_text(err))
                bar.update()
        else:
            pending = list(range(len(items)))
            suspects: set[int] = set()
            while pending:
                broken = _pool_round(fn, items, pending, workers, on_failure, results, bar)
                for i in (i for i in broken if i in suspects):  # unfinished at two breaks: alone
                    results[i] = _run_alone(fn, items[i], on_failure)
                    bar.update()
                pending = [i for i in broken if i not in suspects]
                suspects.update(broken)
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def _pool_round(
    fn: Callable[[T], R],
    items: Sequence[T],
    pending: list[int],
    workers: int,
    on_failure: Callable[[T, str], R],
    results: list[R | None],
    bar: tqdm[Any],
) -> list[int]:
    """Run ``pending`` in one pool; returns the indices left unfinished because the pool broke."""
    broken: list[int] = []
    todo = iter(pending)
    inflight: dict[Future[R], int] = {}
    with process_pool(min(workers, len(pending))) as pool:

        def fill() -> None:
            while len(inflight) < 4 * workers:
                i = next(todo, None)
                if i is None:
                    return
                try:
                    inflight[pool.submit(fn, items[i])] = i
                except BrokenProcessPool:
                    broken.append(i)
                    broken.extend(todo)
                    return

        fill()
        while inflight:
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            for fut in done:
                i = inflight.pop(fut)
                try:
                    results[i] = fut.result()
                except BrokenProcessPool:
                    broken.append(i)
                    continue
                except Exception as err:  # e.g. a result that does not pickle
                    results[i] = on_failure(items[i], error_text(err))
                bar.update()
            fill()
    return sorted(broken)


def _run_alone(fn: Callable[[T], R], item: T, on_failure: Callable[[T, str], R]) -> R:
    with process_pool(1) as pool:
        try:
            return pool.submit(fn, item).result()
        except BrokenProcessPool:
            return on_failure(item, CRASH_MESSAGE)
        except Exception as err:
            return on_failure(item, error_text(err))
