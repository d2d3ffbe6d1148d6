"""The one place where tensors cross processes.

Every collective here is a no-op (identity) when ``torch.distributed`` is unavailable, not
initialised, or has world size 1, so objectives call them unconditionally.

Two gathers, for two purposes:

* :func:`gather_with_grad` -- negatives for in-batch contrastive losses. The backward pass
  all-reduces (sums) the incoming gradient and hands each rank its own slice, so a rank's
  local embeddings receive the gradient of *every* rank's loss with respect to them.
  With per-rank losses ``L_r`` that are means over the local batch, the local gradient is
  ``d(sum_r L_r)/dx = world_size * dL_global/dx``; DDP's gradient averaging then yields the
  gradient of the single-process loss on the concatenated batch.
* :func:`gather_no_grad` -- memory-bank updates and statistics only; the result is detached.

``accelerate.Accelerator.gather`` does *not* carry gradients; do not use it for negatives.
All gathers require the same tensor shape on every rank.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "all_reduce_mean",
    "broadcast_",
    "gather_no_grad",
    "gather_with_grad",
    "is_distributed",
    "leave_process_group",
    "rank",
    "rank_offset_targets",
    "world_size",
]


def is_distributed() -> bool:
    """True when a process group is initialised and has more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 when not running distributed)."""
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size())
    return 1


def rank() -> int:
    """This process's rank (0 when not running distributed)."""
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    return 0


def _all_gather_cat(x: Tensor) -> Tensor:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0; backward = all_reduce(sum) of the gradient, own slice."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.batch = x.shape[0]
        return _all_gather_cat(x)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Tensor) -> Tensor:
        grad = grad_outputs[0].contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.batch
        return grad[start : start + ctx.batch]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from all ranks in rank order, keeping gradients.

    Shape: ``(B, ...) -> (world_size * B, ...)``; rows ``rank*B : (rank+1)*B`` are this
    rank's ``x`` itself. Identity at world size 1.

    Written here rather than on ``torch.distributed.nn.functional.all_gather`` (torch 2.14.1),
    whose backward is the same sum but, on gloo, scatters the incoming gradient into buffers that
    keep its strides: when that gradient is not contiguous (as in the localization loss, whose
    2-process test then fails) ranks receive wrong gradients, off by up to 5.3 on unit-scale
    values in a 2-process measurement (pytorch/pytorch#192920, gloo scatter ignores strides). With
    contiguous gradients the two agreed bit for bit. torch 2.14 also deprecates it (FutureWarning)
    in favour of the private ``torch.distributed._functional_collectives``. The 2-process test
    ``tests/objectives/test_distributed.py::test_gather_sums_every_ranks_gradient`` covers both.
    """
    if not is_distributed():
        return x
    out: Tensor = _GatherWithGrad.apply(x)
    return out


@torch.no_grad()
def gather_no_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from all ranks in rank order, detached (memory-bank updates only).

    Shape: ``(B, ...) -> (world_size * B, ...)``. Returns ``x.detach()`` at world size 1.
    """
    if not is_distributed():
        return x.detach()
    return _all_gather_cat(x.detach())


@torch.no_grad()
def all_reduce_mean(x: Tensor) -> Tensor:
    """Mean of ``x`` over ranks (a new, detached tensor; ``x`` is left untouched)."""
    out = x.detach().clone()
    if not is_distributed():
        return out
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


@torch.no_grad()
def broadcast_(x: Tensor, src: int = 0) -> Tensor:
    """In place: overwrite ``x`` on every rank with rank ``src``'s value. Returns ``x``."""
    if is_distributed():
        dist.broadcast(x, src=src)
    return x


def rank_offset_targets(batch_size: int, device: torch.device | str | None = None) -> Tensor:
    """Targets of this rank's anchors in a gathered batch: ``arange(B) + rank * B``.

    Shape: ``(B,)`` long.
    """
    return torch.arange(batch_size, device=device, dtype=torch.long) + rank() * batch_size


def fresh_accelerator_state() -> None:
    """Forget the precision/accumulation settings of an earlier ``Accelerator`` in this process.

    Accelerate keeps them in process-wide state and refuses a second ``Accelerator`` with another
    ``mixed_precision`` (e.g. two runs in one notebook or test process). The process group
    (``PartialState``) is kept, so this is safe under torchrun/accelerate launch too.
    """
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


def leave_process_group() -> None:
    """Destroy the default process group, if any, before the process exits.

    Left to interpreter shutdown, gloo's worker threads may still be running: both ranks of a
    finished two-process run then abort with "terminate called without an active exception"
    (SIGABRT; seen once in five test-suite runs here, pytorch/pytorch#190489). Only for the end of
    a process: Accelerate's process-wide state still names the group afterwards.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
