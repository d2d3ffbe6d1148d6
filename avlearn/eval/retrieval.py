"""Cross-modal retrieval: does a clip's video embedding find its own audio among N, and back?

``retrieval_metrics`` is a pure function of two ``(N, D)`` embedding matrices whose row ``i``
are the two modalities of clip ``i``; ``evaluate_retrieval`` embeds a loader's clips with a
model (eval mode, no gradient) and applies it. Chance recall@k is ``k / N``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from avlearn.eval.inference import run_inference
from avlearn.models.av import AVModel

__all__ = ["embed_clips", "evaluate_retrieval", "retrieval_metrics"]


def retrieval_metrics(video_emb: Tensor, audio_emb: Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Recall@k of video->audio (``v2a``) and audio->video (``a2v``) retrieval by cosine similarity.

    Shape: ``video_emb, audio_emb (N, D)``; row ``i`` of each is clip ``i``. A query counts as
    found at ``k`` when fewer than ``k`` candidates score strictly higher than its partner
    (ties resolve in the query's favour). Returns ``{"v2a_r1", "v2a_r5", "a2v_r1", "a2v_r5",
    "chance_r1", "n"}`` (recalls in ``[0, 1]``).
    """
    if video_emb.dim() != 2 or video_emb.shape != audio_emb.shape:
        raise ValueError(
            f"video_emb {tuple(video_emb.shape)} and audio_emb {tuple(audio_emb.shape)} must both be (N, D)"
        )
    n = video_emb.shape[0]
    if n < 1:
        raise ValueError("retrieval needs at least one clip")
    v = F.normalize(video_emb.detach().double(), dim=1)
    a = F.normalize(audio_emb.detach().double(), dim=1)
    sim = v @ a.T  # (N, N): video i vs audio j
    out: dict[str, float] = {"n": float(n), "chance_r1": 1.0 / n}
    for name, s in (("v2a", sim), ("a2v", sim.T)):
        rank = (s > s.diagonal().unsqueeze(1)).sum(dim=1)  # candidates beating the partner
        for k in ks:
            out[f"{name}_r{k}"] = float((rank < k).double().mean())
    return out


def embed_clips(
    model: AVModel, batches: Iterable[Mapping[str, Any]], device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """Embeddings of every clip of ``batches`` (dicts with ``video (B, C, T, H, W)``, ``audio (B, 1, F, T)``).

    Returns ``video_emb, audio_emb (N, d)`` float32 on the CPU, L2-normalised. The model is put
    in eval mode and restored to its previous mode afterwards (:func:`run_inference`).
    """

    def step(batch: Mapping[str, Any]) -> dict[str, Tensor]:
        out = model(batch["video"].to(device), batch["audio"].to(device))
        return {"video": out.video_emb.float(), "audio": out.audio_emb.float()}

    emb = run_inference(model, batches, step, progress, desc="embed clips")
    return emb["video"], emb["audio"]


def evaluate_retrieval(
    model: AVModel, batches: Iterable[Mapping[str, Any]], device: torch.device | str = "cpu"
) -> dict[str, float]:
    """Embed every clip of ``batches`` (centre-cropped, unaugmented) and score retrieval.

    Each process evaluates the whole loader it is given (no collectives), so give it a loader
    over the full held-out set; the result is the same on every process.
    """
    video_emb, audio_emb = embed_clips(model, batches, device)
    return retrieval_metrics(video_emb, audio_emb)
