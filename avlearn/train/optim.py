"""Optimisers and learning-rate schedules from config (warm-up + cosine or step decay)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import nn

from avlearn.config import InvalidValue

__all__ = ["OptimConfig", "build_optimizer", "build_scheduler", "fuse_on_cuda", "lr_factor"]


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimiser and schedule. Epoch-valued fields may be fractional; the schedule is per step."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-5
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    milestones: list[float] = dataclasses.field(default_factory=list)  # epochs, for "step"
    gamma: float = 0.1
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    clip_grad_norm: float = 0.0  # 0 = off

    def __post_init__(self) -> None:
        def bad(field: str, allowed: str) -> InvalidValue:
            return InvalidValue(field, getattr(self, field), allowed, "optim")

        if self.lr <= 0:
            raise bad("lr", "must be > 0")
        for field in ("weight_decay", "momentum", "warmup_epochs", "clip_grad_norm"):
            if getattr(self, field) < 0:
                raise bad(field, "must be >= 0" + (" (0 = off)" if field == "clip_grad_norm" else ""))
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise bad("betas", "must be [beta1, beta2], each in [0, 1)")


def build_optimizer(params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
                    cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD (Nesterov-free, as AVID) over ``params`` (tensors, or groups with their
    own ``lr``; ``cfg.lr`` is the default)."""
    groups: list[Any] = list(params)
    optimizer: torch.optim.Optimizer
    if cfg.name == "adam":
        optimizer = torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    elif cfg.name == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    fuse_on_cuda(optimizer)
    return optimizer


def fuse_on_cuda(optimizer: torch.optim.Optimizer) -> bool:
    """Adam / AdamW: the fused CUDA kernel when every parameter is on CUDA, else torch's default.

    The default on CUDA is the ``foreach`` implementation (several kernels per parameter list);
    ``fused`` updates all of them in one. On the CPU the optimiser stays exactly as torch builds it,
    so results there do not change. Call it once the parameters are on their device and after an
    optimiser state is loaded (a state brings the flag it was saved with). Returns whether fused.
    """
    if not isinstance(optimizer, torch.optim.Adam):  # AdamW is an Adam
        return False
    params = [p for group in optimizer.param_groups for p in group["params"]]
    fused = bool(params) and all(p.is_cuda and p.is_floating_point() for p in params)
    for group in optimizer.param_groups:
        group["fused"] = True if fused else None
        if fused:
            group["foreach"] = None
            for p in group["params"]:  # a state built unfused keeps its step count on the host
                state = optimizer.state.get(p, {})
                if "step" in state:
                    state["step"] = state["step"].to(p.device, torch.float32)
    return fused


def lr_factor(step: int, steps_per_epoch: int, total_steps: int, cfg: OptimConfig) -> float:
    """Multiplier of ``cfg.lr`` at optimiser step ``step`` (0-based)."""
    warmup = cfg.warmup_epochs * steps_per_epoch
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        epoch = step / max(steps_per_epoch, 1)
        return float(cfg.gamma ** sum(epoch >= m for m in cfg.milestones))
    progress = (step - warmup) / max(total_steps - warmup, 1)
    progress = min(max(progress, 0.0), 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LambdaLR following :func:`lr_factor`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, total_steps, cfg)
    )
