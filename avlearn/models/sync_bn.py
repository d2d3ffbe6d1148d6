"""Batch normalisation over the *global* batch of all processes, on any device (gloo included).

With one process per device, plain BatchNorm normalises each process's share of the batch on its
own, so a 2-process run is not the same computation as one process on the same global batch (and
small per-process batches make noisy statistics). ``torch.nn.SyncBatchNorm`` fixes that on GPUs
only; :class:`GlobalBatchNorm` does it everywhere with one differentiable all-reduce per layer of
``(sum d, sum d^2, count)`` per channel (``d = x - running_mean``), so gradients also flow through
the shared statistics exactly as in the single-process computation.

``convert_global_batchnorm(model)`` swaps every ``BatchNorm1d/2d/3d`` in place (weights and
running statistics kept). Outside training, or when no process group with more than one process
is running, the layers behave exactly like the BatchNorm they replaced.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from einops import rearrange
from torch import Tensor, nn

__all__ = ["GlobalBatchNorm", "convert_global_batchnorm"]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover every process's batch.

    Shape:
        x: ``(B, C, *)`` (any number of trailing dims, as BatchNorm1d/2d/3d) -> same shape.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected input of shape (B, C, ...), got {tuple(input.shape)}")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and self.track_running_stats and _distributed()):
            return super().forward(input)
        self._check_input_dim(input)
        from torch.distributed.nn.functional import all_reduce

        c = input.shape[1]
        dtype = torch.promote_types(input.dtype, torch.float32)  # statistics in fp32+, also under autocast
        x = rearrange(input, "b c ... -> c (b ...)").to(dtype)
        # one all-reduce of shifted sums: the shift (the running mean, identical on every process)
        # keeps E[d^2] - E[d]^2 from cancelling the way raw E[x^2] - E[x]^2 can
        shift = self.running_mean.detach().to(dtype)[:, None]  # type: ignore[union-attr]
        d = x - shift
        local = torch.cat([d.sum(1), (d * d).sum(1), d.new_full((1,), float(d.shape[1]))])
        total: Tensor = all_reduce(local)  # type: ignore[no-untyped-call]  # differentiable
        n = total[-1]
        mean_d = total[:c] / n
        var = (total[c: 2 * c] / n - mean_d * mean_d).clamp_min(0)
        mean = shift[:, 0] + mean_d
        with torch.no_grad():
            assert self.num_batches_tracked is not None and self.running_mean is not None
            assert self.running_var is not None
            self.num_batches_tracked.add_(1)
            m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            unbiased = var.detach() * n / (n - 1).clamp_min(1)
            self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        shape = (1, c) + (1,) * (input.dim() - 2)
        y = (input.to(dtype) - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        out: Tensor = y.to(input.dtype)
        return out


def convert_global_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer of ``module`` (recursively) by a :class:`GlobalBatchNorm`."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        like = next(iter(module.state_dict().values()), None)
        if like is not None:
            new.to(device=like.device, dtype=like.dtype if like.is_floating_point() else None)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    for name, child in module.named_children():
        swapped = convert_global_batchnorm(child)
        if swapped is not child:
            setattr(module, name, swapped)
    return module
