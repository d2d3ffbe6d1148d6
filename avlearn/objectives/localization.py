"""Localization by multiple-instance contrast (EZ-VSL, Mo & Morgado 2022).

A clip and a sound match when *some* location of the clip matches the sound: the score of
clip ``i`` with sound ``j`` is ``s[i, j] = max over (t, h, w) of grid_i[:, t, h, w] . audio_j``.
True pairs are contrasted against the other clips' sounds (video -> audio) and the other
sounds' clips (audio -> video) with a softmax cross-entropy at ``temperature``.

With ``top_fraction = f > 0`` the score is the mean of the ``ceil(f * L)`` best of the ``L``
locations instead of their max (ours, in the spirit of LVS's soft positive region, Chen et al.
2021): every location of the sounding object is pulled towards the sound, not only the best one,
so the map covers the object rather than peaking on one cell of it.

EZ-VSL sums the two directions; here they are averaged (as :func:`avlearn.objectives.infonce.
infonce_loss` does), so ``weight = 2`` reproduces EZ-VSL's scale.

Distributed: both the audio embeddings and the projected grids are gathered from every process
with :func:`avlearn.distributed.gather_with_grad` (the a -> v direction needs every clip's grid),
and targets are offset by rank; at world size 1 the gathers are the identity. Each rank's loss is
the mean over its local anchors, as for InfoNCE.
"""

from __future__ import annotations

import math

import einops
import torch
import torch.nn.functional as F
from torch import Tensor

from avlearn.distributed import gather_with_grad, rank_offset_targets
from avlearn.objectives._checks import check_normalized, check_temperature, upcast

__all__ = ["check_top_fraction", "localization_loss", "mil_scores"]


def check_top_fraction(top_fraction: float) -> None:
    """Raise ``ValueError`` unless ``top_fraction`` lies in ``[0, 1]``."""
    if not 0 <= top_fraction <= 1:
        raise ValueError(f"top_fraction must be in [0, 1] (0: the max over locations), got {top_fraction}")


def _check_inputs(grid_emb: Tensor, audio_emb: Tensor) -> None:
    if grid_emb.dim() != 5:
        raise ValueError(f"grid_emb must be (B, D, T', H', W'), got shape {tuple(grid_emb.shape)}")
    if audio_emb.dim() != 2:
        raise ValueError(f"audio_emb must be (B, D), got shape {tuple(audio_emb.shape)}")
    if grid_emb.shape[:2] != audio_emb.shape:
        raise ValueError(
            f"grid_emb {tuple(grid_emb.shape)} and audio_emb {tuple(audio_emb.shape)} must agree on "
            "the batch size B and the embedding size D"
        )
    if audio_emb.shape[0] == 0:
        raise ValueError("empty batch (B = 0); pass at least one clip")


def mil_scores(grid_emb: Tensor, audio_emb: Tensor, top_fraction: float = 0.0) -> Tensor:
    """``s[i, j] = max over locations of grid_emb[i] . audio_emb[j]`` (``top_fraction = 0``), or the
    mean of the ``ceil(top_fraction * L)`` largest of those ``L`` dot products.

    Shape:
        ``grid_emb (B, D, T', H', W')``, ``audio_emb (N, D)`` ``-> (B, N)``.
    """
    flat = einops.rearrange(grid_emb, "b d t h w -> b (t h w) d")
    sims = torch.einsum("bld,nd->bnl", flat, audio_emb)
    if top_fraction <= 0:
        return sims.max(dim=-1).values
    k = max(1, math.ceil(top_fraction * sims.shape[-1]))
    return sims.topk(k, dim=-1).values.mean(dim=-1)


def localization_loss(
    grid_emb: Tensor, audio_emb: Tensor, temperature: float = 0.03, top_fraction: float = 0.0
) -> tuple[Tensor, dict[str, Tensor]]:
    """Symmetric max-over-locations contrastive loss (EZ-VSL).

    Shape:
        ``grid_emb (B, D, T', H', W')`` L2-normalised along ``D`` at every location,
        ``audio_emb (B, D)`` L2-normalised -> scalar ``(L_v2a + L_a2v) / 2``. ``top_fraction``:
        see :func:`mil_scores` (0: EZ-VSL's max).
        Logs: ``loss``, ``loss_v2a``, ``loss_a2v``, ``pos_sim`` / ``neg_sim`` (mean max-cosine of
        true / other pairs), ``acc_v2a``, ``acc_a2v`` (top-1 retrieval by the max-cosine).
    """
    check_temperature(temperature)
    check_top_fraction(top_fraction)
    _check_inputs(grid_emb, audio_emb)
    check_normalized("audio_emb", audio_emb)
    check_normalized("grid_emb (per location)", einops.rearrange(grid_emb, "b d t h w -> (b t h w) d"))
    all_audio = gather_with_grad(audio_emb)  # (W*B, D)
    all_grid = gather_with_grad(grid_emb)  # (W*B, D, T', H', W')
    if all_audio.shape[0] < 2:
        raise ValueError("the localization loss needs at least 2 clips in the global batch")
    targets = rank_offset_targets(audio_emb.shape[0], device=audio_emb.device)
    s_v2a = mil_scores(grid_emb, all_audio, top_fraction)  # (B, W*B): local clips vs every sound
    s_a2v = mil_scores(all_grid, audio_emb, top_fraction).T  # (B, W*B): local sounds vs every clip
    loss_v2a = F.cross_entropy(upcast(s_v2a) / temperature, targets)
    loss_a2v = F.cross_entropy(upcast(s_a2v) / temperature, targets)
    value = (loss_v2a + loss_a2v) / 2
    with torch.no_grad():
        sim = s_v2a.detach().float()
        positive = F.one_hot(targets, sim.shape[1]).bool()
        logs = {
            "loss": value.detach(),
            "loss_v2a": loss_v2a.detach(),
            "loss_a2v": loss_a2v.detach(),
            "pos_sim": sim[positive].mean(),
            "neg_sim": sim[~positive].mean(),
            "acc_v2a": (s_v2a.detach().argmax(1) == targets).float().mean(),
            "acc_a2v": (s_a2v.detach().argmax(1) == targets).float().mean(),
        }
    return value, logs
