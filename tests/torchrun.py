"""Shared plumbing for tests that run a worker script in several gloo processes under torchrun.

A worker module defines ``run() -> dict`` (this rank's results, with ``"rank"``) and ends with
``if __name__ == "__main__": worker_main(run)``; the test calls :func:`run_ranks` and compares the
ranks' results with ``run()`` called in-process (world size 1).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ranks(worker: str | Path, out: Path, world: int = 2) -> list[dict[str, Any]]:
    """Run ``worker`` under torchrun with ``world`` processes; return each rank's saved results."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(world),
        "--master-addr", "127.0.0.1", "--master-port", str(free_port()), str(worker), str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world)]


def worker_main(run: Callable[[], dict[str, Any]]) -> None:
    """Body of a worker script: join the gloo group, save ``run()`` to ``OUT/rank{r}.pt``."""
    assert "RANK" in os.environ, "run under torchrun"
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        result = run()
        torch.save(result, Path(sys.argv[1]) / f"rank{result['rank']}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()
