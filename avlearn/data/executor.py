"""Where per-file preprocessing runs: :func:`parallel_map` sends the work to the local process pool
(:mod:`avlearn.data.pool`) or to Ray (:mod:`avlearn.data.cluster`), with the same results.

The prober (:mod:`avlearn.data.probe`), the re-encoder and the sharder call it; it knows nothing of
what they compute.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from avlearn.data.cluster import ray_map
from avlearn.data.pool import pool_map

__all__ = ["parallel_map"]

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    on_failure: Callable[[T, str], R],
    progress: bool = True,
    desc: str = "",
    engine: str = "local",
    address: str | None = None,
) -> list[R]:
    """``[fn(item) for item in items]`` on this machine or on Ray, with a progress bar; order is kept.

    ``engine="local"``: in a process pool (:func:`avlearn.data.pool.pool_map`); ``engine="ray"``: as
    Ray tasks (:func:`avlearn.data.cluster.ray_map`, on the cluster at
    ``address`` or a local instance with ``workers`` CPUs), with the same results.

    Never raises for one item: an exception in ``fn`` becomes ``on_failure(item, message)``.
    When a worker process dies (which breaks the whole pool), the unfinished items run again in
    a fresh pool; an item that was unfinished at two breaks runs alone, and if it breaks that
    pool too it gets ``on_failure``. So one crashing file costs a few restarts, not the run.

    Args:
        fn: picklable (module-level) function of one item.
        items: inputs.
        workers: processes; ``<= 1`` runs in this process (a crash there is fatal).
        on_failure: turns an item and an error message into its result.
        progress: show a tqdm bar.
        desc: the bar's label.
        engine: ``local`` or ``ray``.
        address: the Ray cluster (``engine="ray"`` only).
    """
    if engine == "ray":
        return ray_map(fn, items, on_failure, progress, desc, address, num_cpus=max(workers, 1))
    if engine != "local":
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    return pool_map(fn, items, workers, on_failure, progress, desc)
