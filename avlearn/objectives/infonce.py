"""In-batch cross-modal InfoNCE (symmetric video->audio and audio->video).

Each rank's anchors are scored against the embeddings of the *global* batch, gathered from
every process with :func:`avlearn.distributed.gather_with_grad`; the target of local anchor
``i`` is its partner at ``rank * B + i`` (:func:`avlearn.distributed.rank_offset_targets`).

Distributed convention: each rank's loss is the mean over its ``B`` local anchors, so the
mean of the per-rank losses equals the single-process loss on the concatenated batch. The
gradient a rank receives for its local embeddings is ``world_size`` times the gradient of
that single-process loss (the gather's backward sums every rank's gradient); DDP's averaging
of parameter gradients then gives exactly the single-process parameter gradient.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from avlearn.config import ConfigError
from avlearn.distributed import gather_with_grad, rank_offset_targets

from ._checks import check_normalized, check_pair, check_temperature, upcast
from .base import Objective, ObjectiveContext

if TYPE_CHECKING:
    from avlearn.models.av import AVOutput

__all__ = ["InfoNCEConfig", "InfoNCELoss", "hard_negative_logits", "infonce_loss"]


@dataclasses.dataclass(frozen=True)
class InfoNCEConfig:
    """The ``objective:`` section of ``name: infonce``.

    Attributes:
        temperature: softmax temperature of both directions.
        hard_negative_beta: ``beta`` of hard-negative contrast (Robinson et al., ICLR 2021, HCL's
            ``hard`` estimator with ``tau_plus = 0`` and without its optional clamp): each negative's
            term in the denominator is weighted by ``exp(beta * s / t)`` over the mean of those
            weights, so negatives close to the anchor (e.g. clips of the same object doing another
            action) count more. 0: plain InfoNCE.
    """

    temperature: float = 0.07
    hard_negative_beta: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"objective.temperature must be > 0, got {self.temperature}")
        if not (math.isfinite(self.hard_negative_beta) and self.hard_negative_beta >= 0):
            raise ConfigError(f"objective.hard_negative_beta must be >= 0 (0: plain InfoNCE), "
                              f"got {self.hard_negative_beta}")


def hard_negative_logits(sim: Tensor, targets: Tensor, temperature: float, beta: float) -> Tensor:
    """Logits whose cross-entropy is the hard-negative contrast of HCL (``tau_plus = 0``).

    ``-log(e^(s+/t) / (e^(s+/t) + sum_j w_j e^(s_j/t)))`` with ``w_j = exp(beta s_j / t) /
    mean_k exp(beta s_k / t)`` over each row's negatives ``j`` (gradients flow through the weights,
    as in HCL): a negative's logit is ``(1 + beta) s_j / t - log mean_k exp(beta s_k / t)``; the
    positive's stays ``s+ / t``. ``beta = 0`` gives ``sim / t``.

    Shape: ``sim (B, N)`` cosines, ``targets (B,)`` the positive's column -> ``(B, N)``.
    """
    scaled = upcast(sim) / temperature
    if beta == 0:
        return scaled
    positive = F.one_hot(targets, sim.shape[1]).bool()
    weight_logits = (beta * scaled).masked_fill(positive, float("-inf"))
    log_mean = torch.logsumexp(weight_logits, dim=1, keepdim=True) - math.log(sim.shape[1] - 1)
    return torch.where(positive, scaled, (1 + beta) * scaled - log_mean)


def infonce_loss(
    video_emb: Tensor, audio_emb: Tensor, temperature: float = 0.07, audio_shifted_emb: Tensor | None = None,
    hard_negative_beta: float = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Symmetric cross-modal InfoNCE with negatives from every process.

    Shape: ``video_emb, audio_emb (B, D)`` L2-normalised, same ``B`` on every rank -> scalar
    ``(L_v2a + L_a2v) / 2``. Logs: ``loss``, ``pos_sim`` (mean cosine of matching pairs),
    ``neg_sim`` (mean cosine of the other pairs), ``acc_v2a``, ``acc_a2v`` (top-1 retrieval).

    ``audio_shifted_emb (B, D)``: each clip's audio from another moment of the same video
    (AVTS-style hard negatives). Every video is then also scored against the global batch's
    shifted windows (``W*B`` more negatives, its own among them); logs ``shift_acc``, the
    fraction of videos closer to their own audio than to their own shifted audio.

    ``hard_negative_beta > 0``: negatives weighted by their closeness to the anchor
    (:func:`hard_negative_logits`, both directions, shifted windows among the negatives).
    """
    check_temperature(temperature)
    check_pair(video_emb, audio_emb)
    check_normalized("video_emb", video_emb)
    check_normalized("audio_emb", audio_emb)
    all_video = gather_with_grad(video_emb)  # (W*B, D)
    all_audio = gather_with_grad(audio_emb)
    if all_video.shape[0] < 2:
        raise ValueError("InfoNCE needs at least 2 pairs in the global batch (B * world_size >= 2)")
    targets = rank_offset_targets(video_emb.shape[0], device=video_emb.device)
    sim_v2a = video_emb @ all_audio.T  # (B, W*B)
    sim_a2v = audio_emb @ all_video.T
    shift_logs: dict[str, Tensor] = {}
    if audio_shifted_emb is not None:
        check_pair(video_emb, audio_shifted_emb)
        check_normalized("audio_shifted_emb", audio_shifted_emb)
        sim_shifted = video_emb @ gather_with_grad(audio_shifted_emb).T  # (B, W*B); own at `targets`
        with torch.no_grad():
            own = sim_shifted.detach().gather(1, targets[:, None])[:, 0]
            true = sim_v2a.detach().gather(1, targets[:, None])[:, 0]
            shift_logs["shift_acc"] = (true > own).float().mean()
            shift_logs["shift_sim"] = own.float().mean()
        sim_v2a = torch.cat([sim_v2a, sim_shifted], dim=1)  # targets still index the first W*B
    beta = hard_negative_beta
    loss_v2a = F.cross_entropy(hard_negative_logits(sim_v2a, targets, temperature, beta), targets)
    loss_a2v = F.cross_entropy(hard_negative_logits(sim_a2v, targets, temperature, beta), targets)
    value = (loss_v2a + loss_a2v) / 2
    with torch.no_grad():
        sim = sim_v2a.detach().float()[:, : all_audio.shape[0]]
        positive = F.one_hot(targets, sim.shape[1]).bool()
        logs = {
            "loss": value.detach(),
            "loss_v2a": loss_v2a.detach(),
            "loss_a2v": loss_a2v.detach(),
            "pos_sim": sim[positive].mean(),
            "neg_sim": sim[~positive].mean(),
            "acc_v2a": (sim.argmax(1) == targets).float().mean(),
            "acc_a2v": (sim_a2v.detach().argmax(1) == targets).float().mean(),
            **shift_logs,
        }
    return value, logs


class InfoNCELoss(Objective):
    """Module form of :func:`infonce_loss`; shape ``(B, D), (B, D) -> (loss, logs)``.

    In training it also scores each clip's time-shifted audio (``data.shifted_audio``) when present.
    """

    config_cls = InfoNCEConfig
    uses_shifted_audio = True

    @classmethod
    def build(cls, cfg: InfoNCEConfig, ctx: ObjectiveContext) -> InfoNCELoss:
        return cls(cfg.temperature, cfg.hard_negative_beta)

    def compute(self, out: AVOutput, index: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return infonce_loss(out.video_emb, out.audio_emb, self.temperature, out.audio_shifted_emb,
                            self.hard_negative_beta)

    def __init__(self, temperature: float = 0.07, hard_negative_beta: float = 0.0) -> None:
        super().__init__()
        check_temperature(temperature)
        self.temperature = temperature
        self.hard_negative_beta = hard_negative_beta

    def forward(self, video_emb: Tensor, audio_emb: Tensor,
                audio_shifted_emb: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        return infonce_loss(video_emb, audio_emb, self.temperature, audio_shifted_emb,
                            self.hard_negative_beta)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, hard_negative_beta={self.hard_negative_beta}"
