"""Where a sound is in the picture: cosine similarity of an audio embedding with every grid location.

The video encoder's last feature grid ``(B, C, T', H', W')`` keeps a feature per location; the
localizer projects every location and the audio into one space, L2-normalises both, and scores
each location by its cosine with the audio: a map ``(B, T', H', W')`` per clip.

Two ways to build the projections:

* :meth:`AVLocalizer.posthoc` (no training): for an AVID / CMA pretrained :class:`AVModel`, apply
  the model's own *video projection head* to each location's feature, so the locations live in
  the joint space where the audio embedding (``model.encode_audio``, ``AVOutput.audio_emb``) is
  compared with whole clips. The clip embedding is the (max-)pool of the same grid, so a location
  scores as the clip would if it were made of that location alone. Use it in ``eval()`` mode:
  an MLP head's BatchNorm would otherwise take statistics over locations.
* :meth:`AVLocalizer.learned`: a 1x1x1 ``Conv3d`` on the grid and a ``Linear`` on the audio
  embedding (or audio encoder feature), trained e.g. with
  :func:`avlearn.objectives.localization.localization_loss`.

The audio row ``b`` is compared with clip ``b``: pass the clip's own sound, or another clip's
(a batch of one audio row is broadcast to every clip).
"""

from __future__ import annotations

from typing import Literal

import einops
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avlearn.models.av import AVModel

__all__ = ["AVLocalizer", "PerLocation", "similarity_map", "upsample_map"]


def _check_grid(name: str, grid: Tensor) -> None:
    if grid.dim() != 5:
        raise ValueError(f"{name} must be a feature grid (B, C, T', H', W'), got shape {tuple(grid.shape)}")


def similarity_map(grid_emb: Tensor, audio_emb: Tensor) -> Tensor:
    """Dot product of each location with its clip's audio row (cosine when both are normalised).

    Shape:
        ``grid_emb (B, D, T', H', W')``, ``audio_emb (B, D)`` or ``(1, D)`` (broadcast)
        ``-> (B, T', H', W')``.
    """
    _check_grid("grid_emb", grid_emb)
    if audio_emb.dim() != 2 or audio_emb.shape[1] != grid_emb.shape[1]:
        raise ValueError(
            f"audio_emb must be (B, {grid_emb.shape[1]}) to match grid_emb {tuple(grid_emb.shape)}, "
            f"got {tuple(audio_emb.shape)}"
        )
    if audio_emb.shape[0] == 1 and grid_emb.shape[0] != 1:
        audio_emb = audio_emb.expand(grid_emb.shape[0], -1)
    if audio_emb.shape[0] != grid_emb.shape[0]:
        raise ValueError(
            f"audio_emb has {audio_emb.shape[0]} rows but grid_emb has {grid_emb.shape[0]} clips; "
            "pass one audio row per clip, or a single row for all"
        )
    return torch.einsum("bdthw,bd->bthw", grid_emb, audio_emb)


def upsample_map(
    maps: Tensor,
    size: tuple[int, int] | tuple[int, int, int],
    temporal: Literal["linear", "nearest"] = "linear",
) -> Tensor:
    """Resize localization maps to frames: bilinear in space, linear (or nearest) in time.

    Spatial resizing is half-pixel-centred (``align_corners=False``, as ``cv2.resize`` with
    ``INTER_LINEAR``); a map with ``T' = 1`` is repeated over all ``T`` frames.

    Shape:
        ``maps (B, T', H', W')`` and ``size = (H, W)`` ``-> (B, T', H, W)``;
        ``size = (T, H, W)`` ``-> (B, T, H, W)``.
    """
    if maps.dim() != 4:
        raise ValueError(f"maps must be (B, T', H', W'), got shape {tuple(maps.shape)}")
    if len(size) not in (2, 3) or any(int(s) < 1 for s in size):
        raise ValueError(f"size must be (H, W) or (T, H, W) of positive ints, got {size}")
    if temporal not in ("linear", "nearest"):
        raise ValueError(f"temporal must be 'linear' or 'nearest', got {temporal!r}")
    b, t = maps.shape[:2]
    height, width = int(size[-2]), int(size[-1])
    frames = einops.rearrange(maps, "b t h w -> (b t) 1 h w")
    frames = F.interpolate(frames.float(), size=(height, width), mode="bilinear", align_corners=False)
    out = einops.rearrange(frames, "(b t) 1 h w -> b t h w", b=b, t=t)
    if len(size) == 2 or int(size[0]) == t:
        return out
    steps = einops.rearrange(out, "b t h w -> b (h w) t")
    if temporal == "linear":
        steps = F.interpolate(steps, size=int(size[0]), mode="linear", align_corners=False)
    else:
        steps = F.interpolate(steps, size=int(size[0]), mode="nearest")
    return einops.rearrange(steps, "b (h w) t -> b t h w", h=height, w=width)


class PerLocation(nn.Module):
    """Apply a module made for embeddings ``(N, C) -> (N, D)`` at every location of a grid.

    Shape:
        ``(B, C, T', H', W') -> (B, D, T', H', W')``.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, grid: Tensor) -> Tensor:
        _check_grid("grid", grid)
        b, _, t, h, w = grid.shape
        rows = einops.rearrange(grid, "b c t h w -> (b t h w) c")
        out: Tensor = self.module(rows)
        return einops.rearrange(out, "(b t h w) d -> b d t h w", b=b, t=t, h=h, w=w)


class AVLocalizer(nn.Module):
    """Project grid and audio into one space and score every location by its cosine with the audio.

    Args:
        video_proj: ``(B, C, T', H', W') -> (B, D, T', H', W')`` (e.g. ``Conv3d(C, D, 1)`` or
            :class:`PerLocation` around a projection head).
        audio_proj: ``(B, A) -> (B, D)`` (e.g. ``Linear(A, D)`` or ``Identity``).

    Shape:
        ``forward(video_grid (B, C, T', H', W'), audio (B, A) or (1, A)) -> (B, T', H', W')``,
        cosine similarities in ``[-1, 1]``.
    """

    def __init__(self, video_proj: nn.Module, audio_proj: nn.Module) -> None:
        super().__init__()
        self.video_proj = video_proj
        self.audio_proj = audio_proj

    @classmethod
    def learned(cls, grid_dim: int, audio_dim: int, embed_dim: int = 128) -> AVLocalizer:
        """Trainable projections: ``Conv3d(grid_dim, embed_dim, 1)`` and ``Linear(audio_dim, embed_dim)``."""
        if min(grid_dim, audio_dim, embed_dim) < 1:
            raise ValueError(f"dimensions must be >= 1, got {grid_dim}, {audio_dim}, {embed_dim}")
        return cls(nn.Conv3d(grid_dim, embed_dim, kernel_size=1), nn.Linear(audio_dim, embed_dim))

    @classmethod
    def posthoc(cls, model: AVModel) -> AVLocalizer:
        """No new weights: the model's video head at every location; the audio is ``audio_emb``.

        ``forward`` then takes ``AVOutput.video_grid`` and ``AVOutput.audio_emb`` (or
        ``model.encode_audio(spec)``). The head is shared with ``model`` (not copied).
        """
        grid_dim = getattr(model.video_encoder, "grid_dim", None)
        out_dim = getattr(model.video_encoder, "out_dim", None)
        if grid_dim is not None and out_dim is not None and grid_dim != out_dim:
            raise ValueError(
                f"post hoc localization applies the video head (input {out_dim}) to grid features of "
                f"size {grid_dim}; they must match. Use AVLocalizer.learned(...) instead"
            )
        return cls(PerLocation(model.video_head), nn.Identity())

    def project(self, video_grid: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        """Projected, L2-normalised grid and audio.

        Shape:
            ``video_grid (B, C, T', H', W')``, ``audio (N, A)`` ``-> (B, D, T', H', W')``, ``(N, D)``.
        """
        _check_grid("video_grid", video_grid)
        if audio.dim() != 2:
            raise ValueError(f"audio must be an embedding batch (B, A), got shape {tuple(audio.shape)}")
        grid_emb = F.normalize(self.video_proj(video_grid), dim=1)
        audio_emb = F.normalize(self.audio_proj(audio), dim=-1)
        return grid_emb, audio_emb

    def forward(self, video_grid: Tensor, audio: Tensor) -> Tensor:
        """Cosine map of each clip's locations with its audio row; shape ``(B, T', H', W')``."""
        grid_emb, audio_emb = self.project(video_grid, audio)
        return similarity_map(grid_emb, audio_emb)

    @staticmethod
    def upsample(
        maps: Tensor,
        size: tuple[int, int] | tuple[int, int, int],
        temporal: Literal["linear", "nearest"] = "linear",
    ) -> Tensor:
        """See :func:`upsample_map`; shape ``(B, T', H', W') -> (B, [T|T'], H, W)``."""
        return upsample_map(maps, size, temporal)
