"""Worker for ``test_distributed.py``: the localization loss on this rank's half of a fixed batch.

Usage: ``torchrun --nproc-per-node 2 _dist_worker.py OUT_DIR`` -> ``OUT_DIR/rank{r}.pt``; the
test calls :func:`run` in-process (world size 1) for the single-process reference.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from avlearn import distributed
from avlearn.objectives.localization import localization_loss
from tests.torchrun import worker_main

GLOBAL_BATCH, DIM, TEMPERATURE = 6, 5, 0.1


def run() -> dict[str, Any]:
    rank, world = distributed.rank(), distributed.world_size()
    gen = torch.Generator().manual_seed(0)
    grid = F.normalize(torch.randn(GLOBAL_BATCH, DIM, 1, 2, 3, generator=gen, dtype=torch.float64), dim=1)
    audio = F.normalize(torch.randn(GLOBAL_BATCH, DIM, generator=gen, dtype=torch.float64), dim=1)
    local = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    g, a = grid[local].clone().requires_grad_(True), audio[local].clone().requires_grad_(True)
    loss, _ = localization_loss(g, a, TEMPERATURE)
    loss.backward()
    return {"rank": rank, "world_size": world, "loss": loss.detach(),
            "grad_grid": g.grad, "grad_audio": a.grad}


if __name__ == "__main__":
    worker_main(run)
