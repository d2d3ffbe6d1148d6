"""Worker for ``test_distributed.py``: the same computation at any world size.

Under ``torchrun --nproc_per_node 2`` (gloo) each rank takes its half of a fixed global batch;
the test calls :func:`run` with ``world_size=1`` in-process for the single-process reference.
Usage: ``torchrun ... _dist_worker.py OUT_DIR`` -> ``OUT_DIR/rank{r}.pt``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from avlearn import distributed
from avlearn.objectives.avid import AVIDLoss
from avlearn.objectives.cma import CMALoss
from avlearn.objectives.infonce import infonce_loss
from avlearn.objectives.memory_bank import sample_excluding
from avlearn.objectives.vicreg import vicreg_loss
from tests.torchrun import worker_main

GLOBAL_BATCH, DIM, NUM_ITEMS, NUM_NEGATIVES, STEPS, TEMPERATURE = 8, 6, 21, 5, 2, 0.1


def global_data() -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    shape = (STEPS, GLOBAL_BATCH, DIM)
    index = torch.stack([torch.randperm(NUM_ITEMS, generator=gen)[:GLOBAL_BATCH] for _ in range(STEPS)])
    negatives = torch.stack([sample_excluding(NUM_ITEMS, i.unsqueeze(1), NUM_NEGATIVES, gen) for i in index])
    return {
        "video": F.normalize(torch.randn(shape, generator=gen, dtype=torch.float64), dim=-1),
        "audio": F.normalize(torch.randn(shape, generator=gen, dtype=torch.float64), dim=-1),
        "index": index,
        "negatives": negatives,
    }


def _leaf(x: torch.Tensor) -> torch.Tensor:
    return x.clone().requires_grad_(True)


def _gather_gradients(local: slice) -> dict[str, Any]:
    """``gather_with_grad`` alone: rank ``r``'s loss is ``sum(gathered * weights[r])``.

    Once with a contiguous incoming gradient, once with a transposed one (as an einsum gives).
    """
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(GLOBAL_BATCH, DIM, generator=gen, dtype=torch.float64)
    weights = torch.randn(distributed.world_size(), GLOBAL_BATCH, DIM, generator=gen, dtype=torch.float64)
    mine, mine_t = weights[distributed.rank()], weights[distributed.rank()].T.contiguous()
    out: dict[str, Any] = {"x": x, "weights": weights}
    # the gradient reaching ``g.T`` is contiguous, so the one reaching ``g`` is transposed
    for name, loss_of in (("contiguous", lambda g: (g * mine).sum()),
                          ("transposed", lambda g: (g.T * mine_t).sum())):  # fmt: skip
        leaf = _leaf(x[local])
        gathered = distributed.gather_with_grad(leaf)
        loss_of(gathered).backward()
        out[name] = {"gathered": gathered.detach(), "grad": leaf.grad}
    return out


def run() -> dict[str, Any]:
    """This rank's results on its slice of the global batch (the whole batch at world size 1)."""
    rank, world = distributed.rank(), distributed.world_size()
    data = global_data()
    local = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    out: dict[str, Any] = {"rank": rank, "world_size": world}

    out["gather"] = _gather_gradients(local)
    video, audio = _leaf(data["video"][0, local]), _leaf(data["audio"][0, local])
    loss, _ = infonce_loss(video, audio, TEMPERATURE)
    loss.backward()
    out["infonce"] = {"loss": loss.detach(), "grad_video": video.grad, "grad_audio": audio.grad}

    video, audio = _leaf(3 * data["video"][1, local]), _leaf(data["audio"][1, local])  # not unit norm
    loss, _ = vicreg_loss(video, audio)
    loss.backward()
    out["vicreg"] = {"loss": loss.detach(), "grad_video": video.grad, "grad_audio": audio.grad}

    avid = AVIDLoss(NUM_ITEMS, DIM, num_negatives=NUM_NEGATIVES, within_weight=0.5, bank_dtype=torch.float64)
    out["avid"] = []
    for step in range(STEPS):
        video, audio = _leaf(data["video"][step, local]), _leaf(data["audio"][step, local])
        index, negatives = data["index"][step, local], data["negatives"][step, local]
        loss, _ = avid(video, audio, index, negatives=negatives)
        loss.backward()
        out["avid"].append({"loss": loss.detach(), "grad_video": video.grad, "grad_audio": audio.grad})
    out["avid_state"] = {k: v.clone() for k, v in avid.state_dict().items()}

    cma = CMALoss(NUM_ITEMS, DIM, positive_set_size=3, chunk_size=4)
    cma.load_state_dict(avid.state_dict(), strict=False)
    cma.update_positive_sets()
    out["positive_sets"] = cma.positive_sets.clone()
    return out


if __name__ == "__main__":
    worker_main(run)
