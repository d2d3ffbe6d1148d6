"""A video classifier for fine-tuning: an encoder, dropout and a linear layer on its pooled embedding."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["VideoClassifier"]


class VideoClassifier(nn.Module):
    """A video encoder, dropout and a linear classifier on its pooled embedding.

    ``encoder`` returns an output with ``emb (B, D)`` and states ``out_dim`` (``D``).

    Shape:
        ``video (B, C, T, H, W) -> logits (B, num_classes)``
    """

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        out_dim: int = encoder.out_dim  # type: ignore[assignment]
        self.classifier = nn.Linear(out_dim, num_classes)

    def forward(self, video: Tensor, freeze_encoder: bool = False) -> Tensor:
        """Logits; with ``freeze_encoder`` the encoder runs without gradient and in eval mode."""
        if freeze_encoder:
            was_training = self.encoder.training
            self.encoder.eval()
            with torch.no_grad():
                emb = self.encoder(video).emb
            self.encoder.train(was_training)
        else:
            emb = self.encoder(video).emb
        logits: Tensor = self.classifier(self.dropout(emb))
        return logits
