"""Batch normalisation over the *global* batch of all processes, on any device (gloo included).

With one process per device, plain BatchNorm normalises each process's share of the batch on its
own, so a 2-process run is not the same computation as one process on the same global batch (and
small per-process batches make noisy statistics). ``torch.nn.SyncBatchNorm`` fixes that on GPUs
only; :class:`GlobalBatchNorm` does it everywhere. Per layer it makes one all-gather of each
process's per-channel ``(mean, variance, count)`` in the forward pass and one of
``(sum dy, sum dy * xhat)`` in the backward pass, so gradients also flow through the shared
statistics exactly as in the single-process computation. The element-wise work runs in PyTorch's
batch-norm kernels plus two fused multiply-adds; an earlier version built from element-wise autograd
ops cost a 2-process CPU step 2x the time of per-process BatchNorm (benchmarks/results/scaling_cpu.md
has the current cost).

``convert_global_batchnorm(model)`` swaps every ``BatchNorm1d/2d/3d`` in place (weights and
running statistics kept). Outside training, or when no process group with more than one process
is running, the layers behave exactly like the BatchNorm they replaced.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GlobalBatchNorm", "convert_global_batchnorm"]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _channel_shape(x: Tensor) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.dim() - 2)


def _all_gather(t: Tensor, world: int) -> Tensor:
    """``t: (N,)`` on every process -> ``(world, N)``, row r from process r."""
    parts = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(parts, t)
    return torch.stack(parts)


def _all_gather_sum(t: Tensor, world: int) -> Tensor:
    return _all_gather(t, world).sum(0)


class _GlobalBatchNormFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float,
                world: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        c = x.shape[1]
        # per-channel mean and biased variance of this process's share; on CPU the batch-norm kernel
        # is 3x faster than torch.var_mean over dims (0, 2, ...) (checked equal there; elsewhere var_mean)
        if x.device.type == "cpu":
            mean_l, var_l = torch.batch_norm_update_stats(x, None, None, 0.0)
        else:
            var_l, mean_l = torch.var_mean(x, dim=[0, *range(2, x.dim())], correction=0)
        local = torch.cat([mean_l, var_l, mean_l.new_full((1,), float(x.numel() // c))])
        stats = _all_gather(local, world)  # (W, 2C+1): every process's mean, variance and count
        counts = stats[:, -1:]
        n = counts.sum()
        mean = (stats[:, :c] * counts).sum(0) / n
        # Chan et al.'s pooled variance: within-process variance plus the spread of the means
        var = ((stats[:, c : 2 * c] + (stats[:, :c] - mean) ** 2) * counts).sum(0) / n
        y = F.batch_norm(x, mean, var, weight, bias, training=False, momentum=0.0, eps=eps)
        invstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.n, ctx.eps, ctx.world = n, eps, world
        ctx.mark_non_differentiable(mean, var, n)
        return y, mean, var, n

    @staticmethod
    def backward(ctx: Any, dy: Tensor, *_stats: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, mean, invstd = ctx.saved_tensors
        c = x.shape[1]
        w = weight if weight is not None else torch.ones_like(mean)
        dy = dy.contiguous()
        # local per-channel sums: grad_weight = sum(dy * xhat), grad_bias = sum(dy), natively
        _, sum_dy_xhat, sum_dy = torch.ops.aten.native_batch_norm_backward(
            dy, x, w, None, None, mean, invstd, True, ctx.eps, [False, True, True])
        grad_w = sum_dy_xhat if weight is not None and ctx.needs_input_grad[1] else None
        grad_b = sum_dy if ctx.needs_input_grad[2] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            # the statistics are shared, so their gradient is summed over processes (an all-gather and
            # a local sum: on gloo a small all-gather takes half the time of an all-reduce)
            total = _all_gather_sum(torch.cat([sum_dy, sum_dy_xhat]), ctx.world)
            mean_dy, mean_dy_xhat = total[:c] / ctx.n, total[c:] / ctx.n
            k = w * invstd
            shape = _channel_shape(x)
            # dx = k * (dy - mean(dy) - xhat * mean(dy * xhat)), xhat = (x - mean) * invstd, written as
            # k dy + c1 x + c0 per channel: two passes and no (x - mean) temporary
            c1 = -k * invstd * mean_dy_xhat
            c0 = -k * mean_dy - c1 * mean
            grad_x = torch.addcmul(c0.view(shape), dy, k.view(shape))
            grad_x.addcmul_(x, c1.view(shape))
        return grad_x, grad_w, grad_b, None, None


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
        dtype = torch.promote_types(input.dtype, torch.float32)  # statistics in fp32+, also under autocast
        weight = None if self.weight is None else self.weight.to(dtype)
        bias = None if self.bias is None else self.bias.to(dtype)
        y, mean, var, n = _GlobalBatchNormFn.apply(
            input.to(dtype), weight, bias, self.eps, dist.get_world_size())
        with torch.no_grad():
            assert self.num_batches_tracked is not None and self.running_mean is not None
            assert self.running_var is not None
            self.num_batches_tracked.add_(1)
            m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            self.running_mean.mul_(1 - m).add_(mean.to(self.running_mean.dtype), alpha=m)
            unbiased = var * n / (n - 1).clamp_min(1)
            self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
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
