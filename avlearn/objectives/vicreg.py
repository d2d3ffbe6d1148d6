"""Cross-modal VICReg: variance-invariance-covariance regularisation between video and audio.

VICReg (Bardes, Ponce & LeCun, ICLR 2022) needs no negatives. Here the two "views" of a clip are
its video and its audio: each modality's projected embedding goes through its own expander
``z = expander(emb)``, and the loss is

``invariance_weight * mean((z_v - z_a)^2)``
``+ variance_weight * (hinge(z_v) + hinge(z_a)) / 2``,
``hinge(z) = mean_d relu(gamma - sqrt(var_d(z) + eps))``
``+ covariance_weight * (c(z_v) + c(z_a))``, ``c(z) = sum of squared off-diagonal covariances / D``

with the paper's default coefficients 25 / 25 / 1. Variance and covariance are statistics of the
*global* batch: each process gathers every process's ``z`` with
:func:`avlearn.distributed.gather_with_grad`. The invariance term is the mean over the local
clips. As for InfoNCE, the mean of the per-rank losses equals the single-process loss on the
concatenated batch and each rank's local gradient is ``world_size`` times the single-process
one, which DDP's (and the engine's, for the expanders) gradient averaging turns into exactly the
single-process gradient.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avlearn.config import ConfigError
from avlearn.distributed import gather_with_grad

from ._checks import check_pair, check_weight, upcast
from .base import Objective, ObjectiveContext

if TYPE_CHECKING:
    from avlearn.models.av import AVOutput

__all__ = ["VICRegConfig", "VICRegLoss", "build_expander", "vicreg_loss"]


@dataclasses.dataclass(frozen=True)
class VICRegConfig:
    """The ``objective:`` section of ``name: vicreg``.

    Attributes:
        invariance_weight, variance_weight, covariance_weight: the coefficients (paper: 25, 25, 1).
        expander_dims: hidden and output sizes of each modality's expander MLP (Linear-BatchNorm-ReLU
            between layers, a plain Linear last, as in VICReg); empty: no expander, the loss reads the
            projected embeddings directly.
        gamma: target standard deviation of every dimension (the hinge).
        eps: added to the variance under the square root.
    """

    invariance_weight: float = 25.0
    variance_weight: float = 25.0
    covariance_weight: float = 1.0
    expander_dims: tuple[int, ...] = (256, 256)
    gamma: float = 1.0
    eps: float = 1e-4

    def __post_init__(self) -> None:
        for key in ("invariance_weight", "variance_weight", "covariance_weight"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"objective.{key} must be a number >= 0, got {value}")
        if self.invariance_weight + self.variance_weight + self.covariance_weight == 0:
            raise ConfigError("objective: the invariance, variance and covariance weights are all 0")
        if any(d < 1 for d in self.expander_dims):
            raise ConfigError(f"objective.expander_dims must all be >= 1, got {list(self.expander_dims)}")
        if not (self.gamma > 0 and self.eps > 0):
            raise ConfigError(f"objective.gamma and objective.eps must be > 0, got {self.gamma}, {self.eps}")


def _variance_hinge(z: Tensor, gamma: float, eps: float) -> tuple[Tensor, Tensor]:
    """``mean_d relu(gamma - std_d)`` and the mean std; ``z (N, D)``."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean(), std.mean()


def _covariance_penalty(z: Tensor) -> Tensor:
    """Sum of squared off-diagonal entries of the covariance of ``z (N, D)``, divided by ``D``."""
    n, d = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (n - 1)
    off = cov - torch.diag_embed(torch.diagonal(cov))
    return off.pow(2).sum() / d


def vicreg_loss(
    z_video: Tensor,
    z_audio: Tensor,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Cross-modal VICReg of the expanded embeddings (not normalised).

    Shape: ``z_video, z_audio (B, D)``, same ``B`` on every rank -> scalar. Logs: ``loss``,
    ``invariance``, ``variance`` (the mean of both hinges), ``covariance`` (the sum over both
    modalities), ``std_video`` / ``std_audio`` (mean per-dimension std of the global batch).
    """
    check_pair(z_video, z_audio)
    for name, w in (("invariance_weight", invariance_weight), ("variance_weight", variance_weight),
                    ("covariance_weight", covariance_weight)):
        check_weight(name, w)
    z_video, z_audio = upcast(z_video), upcast(z_audio)
    invariance = F.mse_loss(z_video, z_audio)  # local mean; the ranks' mean is the global mean
    all_video, all_audio = gather_with_grad(z_video), gather_with_grad(z_audio)  # (W*B, D)
    if all_video.shape[0] < 2:
        raise ValueError("VICReg needs at least 2 clips in the global batch for its variance")
    hinge_v, std_v = _variance_hinge(all_video, gamma, eps)
    hinge_a, std_a = _variance_hinge(all_audio, gamma, eps)
    variance = (hinge_v + hinge_a) / 2
    covariance = _covariance_penalty(all_video) + _covariance_penalty(all_audio)
    value = invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance
    logs = {"loss": value.detach(), "invariance": invariance.detach(), "variance": variance.detach(),
            "covariance": covariance.detach(), "std_video": std_v.detach(), "std_audio": std_a.detach()}
    return value, logs


def build_expander(in_dim: int, dims: tuple[int, ...]) -> nn.Module:
    """VICReg's expander: ``(B, in_dim) -> (B, dims[-1])``; identity when ``dims`` is empty."""
    if not dims:
        return nn.Identity()
    layers: list[nn.Module] = []
    sizes = (in_dim, *dims)
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 1:
            layers += [nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class VICRegLoss(Objective):
    """Cross-modal VICReg with one expander per modality (the objective's own parameters).

    Reads the model's *unnormalised* projected embeddings (``normalize_embeddings = False``).
    Shape: ``compute(out.video_emb (B, d), out.audio_emb (B, d), index)`` -> ``(loss, logs)``.
    """

    config_cls = VICRegConfig
    normalize_embeddings = False

    def __init__(self, embed_dim: int, cfg: VICRegConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or VICRegConfig()
        self.video_expander = build_expander(embed_dim, self.cfg.expander_dims)
        self.audio_expander = build_expander(embed_dim, self.cfg.expander_dims)

    @classmethod
    def build(cls, cfg: VICRegConfig, ctx: ObjectiveContext) -> VICRegLoss:
        return cls(ctx.embed_dim, cfg)

    def compute(self, out: AVOutput, index: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.cfg
        # bf16/fp16 embeddings of an autocast forward meet the float32 expanders outside autocast
        video, audio = upcast(out.video_emb), upcast(out.audio_emb)
        return vicreg_loss(self.video_expander(video), self.audio_expander(audio),
                           c.invariance_weight, c.variance_weight, c.covariance_weight, c.gamma, c.eps)

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"invariance_weight={c.invariance_weight}, variance_weight={c.variance_weight}, "
                f"covariance_weight={c.covariance_weight}")
