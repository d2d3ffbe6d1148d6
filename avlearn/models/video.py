"""Video encoders after torchvision's R(2+1)D-18, and small variants for CPU runs.

The network follows torchvision's ``r2plus1d_18`` layout (and reuses its ``BasicBlock`` /
``Conv2Plus1D`` blocks), so the parameter names and shapes of ``r2plus1d_18`` here are those of
torchvision's model without ``fc``: its state dict loads directly. Smaller variants change the
stage widths and blocks per stage.

Strides: the grid has ``T' = ceil(T / 8)``, ``H' = ceil(H / 16)``, ``W' = ceil(W / 16)``; for 8
frames at 112x112 that is a ``1 x 7 x 7`` grid of ``grid_dim`` channels. Every stage's width and
stride is stated in ``stages`` (the contract of :mod:`avlearn.models.contract`).

This is *not* AVID-CMA's video network: torchvision widens each (2+1)D convolution (the
intermediate width keeps the parameter count of a full 3x3x3 conv), uses a factorised stem
without max-pool and a BN-projected shortcut: 31.3 M parameters against the paper's 15.4 M.
The paper's network is ``r2plus1d_18_avid`` in :mod:`avlearn.models.video_avid`; both share
:class:`VideoBackbone`. The embedding is a global max-pool by default (as in AVID-CMA);
``pool="avg"`` gives torchvision's average pool.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import einops
from torch import Tensor, nn
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D

from avlearn.models.contract import Stage, VideoOutput
from avlearn.models.explicit_padding import use_explicit_padding
from avlearn.models.registry import register_video_encoder
from avlearn.models.weight_init import init_weights

__all__ = [
    "R2Plus1D",
    "VideoBackbone",
    "VideoOutput",
    "r2plus1d_18",
    "r2plus1d_small",
    "r2plus1d_tiny",
]

Pool = Literal["max", "avg"]


class R2Plus1DStem(nn.Sequential):
    """Factorised stem: a 1x7x7 spatial conv (stride 1,2,2), then a 3x1x1 temporal conv.

    Shape:
        ``(B, in_channels, T, H, W) -> (B, out_channels, T, ceil(H/2), ceil(W/2))``
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv3d(in_channels, mid_channels, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid_channels, out_channels, (3, 1, 1), stride=1, padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
        )


def _make_stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    downsample: nn.Module | None = None
    if stride != 1 or in_planes != planes:
        downsample = nn.Sequential(
            nn.Conv3d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm3d(planes),
        )
    layers = [BasicBlock(in_planes, planes, Conv2Plus1D, stride, downsample)]
    layers += [BasicBlock(planes, planes, Conv2Plus1D) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class VideoBackbone(nn.Module):
    """Our convolutional video encoders: stages run in order, the last one pooled into the embedding.

    A subclass lists ``stage_strides`` (each stage's name and its output's stride ``(t, h, w)``
    relative to the clip), builds a module under each name, sets ``in_channels`` and ``pool``, and
    states its widths with :meth:`_state_stages`; that fills the contract
    (:class:`~avlearn.models.contract.VideoEncoder`): ``stages``, ``grid_dim``, ``out_dim``.

    Shape:
        ``video (B, C, T, H, W) -> emb (B, out_dim), grid (B, grid_dim, T', H', W')``
    """

    stage_strides: tuple[tuple[str, tuple[int, int, int]], ...] = (
        ("stem", (1, 2, 2)), ("layer1", (1, 2, 2)), ("layer2", (2, 4, 4)), ("layer3", (4, 8, 8)),
        ("layer4", (8, 16, 16)),
    )
    in_channels: int
    pool: Pool
    out_dim: int
    grid_dim: int
    stages: tuple[Stage, ...]

    def _state_stages(self, widths: Sequence[int], blocks: Sequence[int]) -> None:
        """Set ``stages`` from each stage's width and residual blocks (0: the stage is one block),
        in ``stage_strides`` order; the last stage is the grid and its pooled embedding."""
        self.stages = tuple(
            Stage(name, width, stride, tuple(f"{name}.{i}" for i in range(count)))
            for (name, stride), width, count in zip(self.stage_strides, widths, blocks, strict=True)
        )
        self.out_dim = self.grid_dim = self.stages[-1].channels

    @property
    def stage_names(self) -> tuple[str, ...]:
        """Names of the stages, input to output."""
        return tuple(stage.name for stage in self.stages)

    @classmethod
    def grid_size(cls, t: int, h: int, w: int) -> tuple[int, int, int]:
        """Grid size ``(T', H', W')`` for an input clip of ``t`` frames at ``h x w``."""
        st, sh, sw = cls.stage_strides[-1][1]
        return math.ceil(t / st), math.ceil(h / sh), math.ceil(w / sw)

    def forward(self, video: Tensor, return_stages: bool = False) -> VideoOutput:
        """Encode a batch of clips.

        Shape:
            ``video``: ``(B, C, T, H, W)``, float, normalised RGB.
            Returns ``VideoOutput(emb (B, D), grid (B, C', T', H', W'), stages)``.
        """
        if video.ndim != 5 or video.shape[1] != self.in_channels:
            raise ValueError(
                f"video must be (B, {self.in_channels}, T, H, W), got shape {tuple(video.shape)}"
            )
        stages: dict[str, Tensor] = {}
        x = video
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if return_stages:
                stages[name] = x
        return VideoOutput(emb=_global_pool(x, self.pool), grid=x, stages=stages)


class R2Plus1D(VideoBackbone):
    """R(2+1)D over RGB clips in torchvision's layout, returning a pooled embedding and the last grid.

    Args:
        widths: channels of the four stages (``layer1`` ... ``layer4``).
        blocks: residual blocks per stage.
        stem_width: channels between the stem's spatial and temporal convs (45 in R(2+1)D-18).
        in_channels: input channels (3 for RGB).
        pool: global pooling of the grid into the embedding, ``"max"`` (AVID-CMA) or ``"avg"``.
        zero_init_residual: start each residual block as the identity (last BN gamma = 0).

    Shape:
        ``video (B, C, T, H, W) -> emb (B, out_dim), grid (B, grid_dim, ceil(T/8), ceil(H/16), ceil(W/16))``
    """

    def __init__(
        self,
        widths: Sequence[int] = (64, 128, 256, 512),
        blocks: Sequence[int] = (2, 2, 2, 2),
        stem_width: int = 45,
        in_channels: int = 3,
        pool: Pool = "max",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(widths) != 4 or len(blocks) != 4:
            raise ValueError(f"R2Plus1D needs 4 stage widths and 4 block counts, got {widths} and {blocks}")
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        self.widths = tuple(widths)
        self.blocks = tuple(blocks)
        self.in_channels = in_channels
        self.pool = pool
        self.stem = R2Plus1DStem(in_channels, stem_width, widths[0])
        self.layer1 = _make_stage(widths[0], widths[0], blocks[0], stride=1)
        self.layer2 = _make_stage(widths[0], widths[1], blocks[1], stride=2)
        self.layer3 = _make_stage(widths[1], widths[2], blocks[2], stride=2)
        self.layer4 = _make_stage(widths[2], widths[3], blocks[3], stride=2)
        self._state_stages((widths[0], *widths), (0, *blocks))
        use_explicit_padding(self)  # CPU bf16 weight gradients: see avlearn.models.explicit_padding
        init_weights(self, zero_init_residual=zero_init_residual)


def _global_pool(grid: Tensor, pool: Pool) -> Tensor:
    """``(B, C, T', H', W') -> (B, C)`` by max or mean over all positions."""
    return einops.reduce(grid, "b c t h w -> b c", "max" if pool == "max" else "mean")


@register_video_encoder("r2plus1d_18")
def r2plus1d_18(in_channels: int = 3, pool: Pool = "max", zero_init_residual: bool = False) -> R2Plus1D:
    """torchvision's R(2+1)D-18: widths 64-128-256-512, 2 blocks per stage, 512-d, 31.3 M parameters.

    Not AVID-CMA's network (that is ``r2plus1d_18_avid``, :mod:`avlearn.models.video_avid`)."""
    return R2Plus1D((64, 128, 256, 512), (2, 2, 2, 2), 45, in_channels, pool, zero_init_residual)


@register_video_encoder("r2plus1d_small")
def r2plus1d_small(in_channels: int = 3, pool: Pool = "max", zero_init_residual: bool = False) -> R2Plus1D:
    """Half-width, one block per stage: widths 32-64-128-256, 256-d. For quick experiments."""
    return R2Plus1D((32, 64, 128, 256), (1, 1, 1, 1), 22, in_channels, pool, zero_init_residual)


@register_video_encoder("r2plus1d_tiny")
def r2plus1d_tiny(in_channels: int = 3, pool: Pool = "max", zero_init_residual: bool = False) -> R2Plus1D:
    """Quarter-width, one block per stage: widths 16-32-64-128, 128-d. Trains in minutes on CPU."""
    return R2Plus1D((16, 32, 64, 128), (1, 1, 1, 1), 11, in_channels, pool, zero_init_residual)
