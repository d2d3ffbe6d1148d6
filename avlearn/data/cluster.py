"""Per-file preprocessing on a Ray cluster: ``avlearn prepare index | reencode ... --engine ray``.

The local engine (:func:`avlearn.data.pool.pool_map`, chosen by
:func:`avlearn.data.executor.parallel_map`) runs one file per task in a process
pool on this machine. With ``--engine ray`` the same module-level function runs as one Ray task
per file on the cluster at ``--address`` (``auto`` inside a Ray job, ``ray://HOST:10001`` from
outside; none: a Ray instance on this machine with ``--workers`` CPUs, started and stopped here).
The results are the same either way, in the input's order:

* an exception inside a task becomes that file's failure row, as locally;
* a task whose worker process dies (an FFmpeg crash, the OOM killer) is retried once by Ray on
  another worker, then becomes a failure row naming the error;
* at most ``max_in_flight`` tasks are submitted at a time, so millions of files do not make
  millions of pending tasks in the driver; a progress bar counts finished files.

Paths travel as they are: every node must see the files at the same paths (a shared or network
filesystem, or the same mount on every node). Ray is an optional dependency:
``pip install 'avlearn[cluster]'``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tqdm import tqdm

from avlearn.data.pool import error_text

__all__ = ["ENGINES", "add_engine_arguments", "ray_map"]

ENGINES = ("local", "ray")
T = TypeVar("T")
R = TypeVar("R")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """``--engine local|ray`` and ``--address`` for a ``prepare`` command."""
    parser.add_argument("--engine", choices=ENGINES, default="local",
                        help="where the per-file work runs: 'local' processes (default) or Ray tasks "
                        "('pip install avlearn[cluster]'); the outputs are the same")
    parser.add_argument("--address", default=None,
                        help="with --engine ray: the cluster ('auto' inside a Ray job, ray://HOST:10001 "
                        "from outside); default: a Ray instance on this machine with --workers CPUs. "
                        "Every node must see the files at the same paths")


def _call(fn: Callable[[Any], Any], item: Any) -> tuple[bool, Any]:
    """Run ``fn(item)`` in a Ray worker: ``(True, result)``, or ``(False, message)`` if it raised."""
    try:
        return True, fn(item)
    except Exception as err:  # one file must not stop the run
        return False, error_text(err)


def _import_ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "--engine ray needs the package 'ray': pip install 'avlearn[cluster]' (or ray==2.60.0)"
        ) from err
    return ray


def ray_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    on_failure: Callable[[T, str], R],
    progress: bool = True,
    desc: str = "",
    address: str | None = None,
    num_cpus: int | None = None,
    max_in_flight: int = 1000,
) -> list[R]:
    """``[fn(item) for item in items]`` as Ray tasks, in order; a failure becomes ``on_failure``.

    Args:
        fn: picklable (module-level) function of one item.
        items: inputs.
        on_failure: turns an item and an error message into its result.
        progress: show a tqdm bar.
        desc: the bar's label.
        address: the Ray cluster; ``None`` starts a local instance (and stops it at the end).
        num_cpus: CPUs of that local instance (ignored with ``address``).
        max_in_flight: tasks submitted and not yet collected, at most.
    """
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                 log_to_driver=False)
    try:
        task = ray.remote(max_retries=1)(_call)
        results: list[R | None] = [None] * len(items)
        in_flight: dict[Any, int] = {}
        todo = iter(range(len(items)))
        with tqdm(total=len(items), desc=desc, unit="file", disable=not progress, dynamic_ncols=True) as bar:
            while True:
                for i in todo:
                    in_flight[task.remote(fn, items[i])] = i
                    if len(in_flight) >= max_in_flight:
                        break
                if not in_flight:
                    break
                done, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in done:
                    i = in_flight.pop(ref)
                    try:
                        ok, value = ray.get(ref)
                    except Exception as err:  # the worker died, twice (Ray retried it once)
                        ok, value = False, f"worker died: {type(err).__name__}: {err}"
                    results[i] = value if ok else on_failure(items[i], value)
                    bar.update()
        return results  # type: ignore[return-value]  # every index was filled
    finally:
        if started:
            ray.shutdown()
