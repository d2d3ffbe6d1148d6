"""Worker for ``test_sync_bn.py``: a conv + BatchNorm3d net on this rank's half of a fixed batch.

Usage: ``torchrun --nproc-per-node 2 _sync_bn_worker.py OUT_DIR`` -> ``OUT_DIR/rank{r}.pt``; the
test calls :func:`run` in-process (world size 1, plain BatchNorm) for the reference. With
``AVLEARN_SYNC_BN_DEVICE=cuda`` every rank computes on the one GPU (gloo carries cuda tensors), which
takes GlobalBatchNorm's non-CPU statistics branch; results come back on the CPU.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from avlearn import distributed
from avlearn.models.sync_bn import convert_global_batchnorm
from tests.torchrun import worker_main

GLOBAL_BATCH = 6


def run() -> dict[str, Any]:
    rank, world = distributed.rank(), distributed.world_size()
    torch.manual_seed(0)
    device = torch.device(os.environ.get("AVLEARN_SYNC_BN_DEVICE", "cpu"))
    net = nn.Sequential(nn.Conv3d(2, 3, 1), nn.BatchNorm3d(3), nn.ReLU(), nn.Conv3d(3, 2, 1)).double()
    with torch.no_grad():  # non-trivial affine parameters
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.uniform_(-0.5, 0.5)
    convert_global_batchnorm(net)
    net.to(device)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(GLOBAL_BATCH, 2, 2, 3, 3, generator=gen, dtype=torch.float64) * 3 + 1
    share = x[rank * GLOBAL_BATCH // world : (rank + 1) * GLOBAL_BATCH // world]
    local = share.to(device).requires_grad_(True)
    y = net(local)
    loss = (y**2).mean()  # mean over this rank's samples: the global loss is the mean over ranks
    loss.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    if world > 1:  # what DDP does to parameter gradients
        for g in grads.values():
            dist.all_reduce(g)
            g /= world
    assert local.grad is not None
    return {
        "rank": rank,
        "world_size": world,
        "device": y.device.type,
        "out": y.detach().cpu(),
        "grad_input": local.grad.cpu(),
        "grads": {n: g.cpu() for n, g in grads.items()},
        "running_mean": net[1].running_mean.cpu(),
        "running_var": net[1].running_var.cpu(),
        "bn_type": type(net[1]).__name__,
    }


if __name__ == "__main__":
    worker_main(run)
