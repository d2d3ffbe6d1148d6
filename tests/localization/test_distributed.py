"""2-process gloo run of the localization loss vs the single-process loss on the whole batch.

Each rank's loss is the mean over its local anchors (so the mean over ranks equals the
single-process loss) and its local gradients are ``world_size`` times the single-process ones.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from . import _dist_worker

WORLD = 2
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_process_loss_and_gradients_match_single_process(tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(WORLD),
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        str(Path(_dist_worker.__file__)), str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    single = _dist_worker.run()
    assert [r["world_size"] for r in ranks] == [WORLD] * WORLD and single["world_size"] == 1
    torch.testing.assert_close(torch.stack([r["loss"] for r in ranks]).mean(), single["loss"])
    for key in ("grad_grid", "grad_audio"):
        for r, expected in zip(ranks, single[key].chunk(WORLD), strict=True):
            torch.testing.assert_close(r[key], WORLD * expected)
