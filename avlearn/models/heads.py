"""Projection heads mapping encoder embeddings into the joint audio-visual space.

AVID-CMA projects each modality's 512-d embedding with ``proj_dim: [512, 512, 128]``:
Linear-ReLU-Linear-ReLU-Linear with biases and no BatchNorm (:class:`AVIDHead`, ``head: avid_mlp``);
its loss L2-normalises the result. :class:`MLPHead` (``head: mlp``) is our own lighter
Linear-BN-ReLU-Linear, the default of our configs.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AVIDHead", "IdentityHead", "LinearHead", "MLPHead"]


class _Head(nn.Module):
    """Base: ``forward(feat, normalize)`` projects and optionally L2-normalises."""

    out_dim: int

    def project(self, feat: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, feat: Tensor, normalize: bool = True) -> Tensor:
        """Project encoder embeddings.

        Shape:
            ``feat (B, D) -> (B, out_dim)``; unit L2 norm per row when ``normalize``.
        """
        if feat.ndim != 2:
            raise ValueError(f"a head takes (B, D) embeddings, got shape {tuple(feat.shape)}")
        z = self.project(feat)
        return F.normalize(z, dim=-1) if normalize else z


class MLPHead(_Head):
    """Linear-BN-ReLU-Linear (ours; AVID-CMA's head is :class:`AVIDHead`).

    Shape:
        ``(B, in_dim) -> (B, out_dim)``
    """

    def __init__(self, in_dim: int, out_dim: int = 128, hidden_dim: int = 512) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def project(self, feat: Tensor) -> Tensor:
        out: Tensor = self.net(feat)
        return out


class AVIDHead(_Head):
    """AVID-CMA's projection: Linear-ReLU-Linear-ReLU-Linear, no BatchNorm (``[512, 512, 128]``).

    Both hidden layers are ``hidden_dim`` wide; every Linear has a bias.

    Shape:
        ``(B, in_dim) -> (B, out_dim)``
    """

    def __init__(self, in_dim: int, out_dim: int = 128, hidden_dim: int = 512) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def project(self, feat: Tensor) -> Tensor:
        out: Tensor = self.net(feat)
        return out


class LinearHead(_Head):
    """A single linear projection.

    Shape:
        ``(B, in_dim) -> (B, out_dim)``
    """

    def __init__(self, in_dim: int, out_dim: int = 128, hidden_dim: int = 0) -> None:
        super().__init__()
        del hidden_dim  # accepted so every head builds from the same arguments
        self.out_dim = out_dim
        self.net = nn.Linear(in_dim, out_dim)

    def project(self, feat: Tensor) -> Tensor:
        out: Tensor = self.net(feat)
        return out


class IdentityHead(_Head):
    """No projection: the joint space is the encoder embedding itself (``out_dim = in_dim``).

    ``out_dim`` and ``hidden_dim`` are accepted and ignored, so every head builds from the same
    arguments.

    Shape:
        ``(B, in_dim) -> (B, in_dim)``
    """

    def __init__(self, in_dim: int, out_dim: int | None = None, hidden_dim: int = 0) -> None:
        super().__init__()
        del out_dim, hidden_dim
        self.out_dim = in_dim

    def project(self, feat: Tensor) -> Tensor:
        return feat
