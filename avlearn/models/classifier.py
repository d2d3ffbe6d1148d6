"""Classifiers for fine-tuning: encoders, dropout and a linear layer on their pooled embeddings.

:class:`VideoClassifier` classifies the video encoder's embedding; :class:`AVClassifier` is the
audio-visual fusion head: the pooled video and audio embeddings are concatenated and one linear
layer reads both (late fusion of embeddings, as a linear probe of both encoders would; CAV-MAE
instead fine-tunes through its joint layer, see ``avlearn/models/fusion.py``). Both name the batch
entries they read in ``inputs`` and compute their joint embedding with ``embed``, so a training
loop calls ``model(*(batch[k] for k in model.inputs))`` without asking which one it holds.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["AVClassifier", "VideoClassifier"]


def _embed(encoder: nn.Module, x: Tensor, frozen: bool) -> Tensor:
    """``encoder``'s pooled embedding ``(B, D)``; ``frozen``: without gradient and in eval mode."""
    if not frozen:
        return encoder(x).emb  # type: ignore[no-any-return]
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        emb: Tensor = encoder(x).emb
    encoder.train(was_training)
    return emb


class VideoClassifier(nn.Module):
    """A video encoder, dropout and a linear classifier on its pooled embedding.

    ``encoder`` returns an output with ``emb (B, D)`` and states ``out_dim`` (``D``).

    Shape:
        ``video (B, C, T, H, W) -> logits (B, num_classes)``
    """

    inputs = ("video",)

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        out_dim: int = encoder.out_dim  # type: ignore[assignment]
        self.classifier = nn.Linear(out_dim, num_classes)

    def embed(self, video: Tensor, freeze_encoder: bool = False) -> Tensor:
        """The embedding the classifier reads. Shape: ``video (B, C, T, H, W) -> (B, D)``."""
        return _embed(self.encoder, video, freeze_encoder)

    def forward(self, video: Tensor, freeze_encoder: bool = False) -> Tensor:
        """Logits; with ``freeze_encoder`` the encoder runs without gradient and in eval mode."""
        logits: Tensor = self.classifier(self.dropout(self.embed(video, freeze_encoder)))
        return logits


class AVClassifier(nn.Module):
    """The fusion head: video and audio encoders, their pooled embeddings concatenated, dropout and a
    linear classifier.

    Each encoder returns an output with ``emb`` and states ``out_dim``.

    Shape:
        ``video (B, C, T, H, W), audio (B, 1, F, T_a) -> logits (B, num_classes)``; the embedding is
        ``(B, D_v + D_a)``, video first.
    """

    inputs = ("video", "audio")

    def __init__(self, video_encoder: nn.Module, audio_encoder: nn.Module, num_classes: int,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.video_encoder = video_encoder
        self.audio_encoder = audio_encoder
        self.dropout = nn.Dropout(dropout)
        out_dim = int(video_encoder.out_dim) + int(audio_encoder.out_dim)  # type: ignore[arg-type]
        self.classifier = nn.Linear(out_dim, num_classes)

    def embed(self, video: Tensor, audio: Tensor, freeze_encoder: bool = False) -> Tensor:
        """Both embeddings side by side. Shape: ``-> (B, D_v + D_a)``."""
        return torch.cat([_embed(self.video_encoder, video, freeze_encoder),
                          _embed(self.audio_encoder, audio, freeze_encoder)], dim=1)

    def forward(self, video: Tensor, audio: Tensor, freeze_encoder: bool = False) -> Tensor:
        """Logits; with ``freeze_encoder`` both encoders run without gradient and in eval mode."""
        logits: Tensor = self.classifier(self.dropout(self.embed(video, audio, freeze_encoder)))
        return logits
