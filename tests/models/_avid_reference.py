"""A hand-written re-implementation of AVID-CMA's networks, for tests only.

Written from the definitions in facebookresearch/AVID-CMA (``models/video.py``,
``models/network_blocks.py``, ``models/audio.py``, ``models/av_wrapper.py``), with the same
module names, so that ``ReferenceAVWrapper().state_dict()`` has the key names and shapes of the
released checkpoints (behind DistributedDataParallel's ``module.`` prefix) and its forward is the
reference's: video ``(B, 3, T, H, W)``, spectrogram laid out ``(B, 1, T, F)``, unnormalised
``[512, 512, 128]`` projections. It is deliberately plain (no shared code with avlearn).
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import Tensor, nn


class RefR2P1DBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: tuple[int, int, int] = (1, 1, 1)) -> None:
        super().__init__()
        self.spt_conv1 = nn.Conv3d(cin, cout, (1, 3, 3), (1, stride[1], stride[2]), (0, 1, 1), bias=False)
        self.spt_bn1 = nn.BatchNorm3d(cout)
        self.tmp_conv1 = nn.Conv3d(cout, cout, (3, 1, 1), (stride[0], 1, 1), (1, 0, 0), bias=False)
        self.tmp_bn1 = nn.BatchNorm3d(cout)
        self.spt_conv2 = nn.Conv3d(cout, cout, (1, 3, 3), 1, (0, 1, 1), bias=False)
        self.spt_bn2 = nn.BatchNorm3d(cout)
        self.tmp_conv2 = nn.Conv3d(cout, cout, (3, 1, 1), 1, (1, 0, 0), bias=False)
        self.out_bn = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU()
        self.res = cin != cout or any(s != 1 for s in stride)
        if self.res:
            self.res_conv = nn.Conv3d(cin, cout, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu(self.spt_bn1(self.spt_conv1(x)))
        y = self.relu(self.tmp_bn1(self.tmp_conv1(y)))
        y = self.tmp_conv2(self.relu(self.spt_bn2(self.spt_conv2(y))))
        return self.relu(self.out_bn(y + (self.res_conv(x) if self.res else x)))  # type: ignore[no-any-return]


class RefR2Plus1D(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv3d(3, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False), nn.BatchNorm3d(64), nn.ReLU(),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        )
        s2 = (2, 2, 2)
        self.conv2x = nn.Sequential(RefR2P1DBlock(64, 64), RefR2P1DBlock(64, 64))
        self.conv3x = nn.Sequential(RefR2P1DBlock(64, 128, s2), RefR2P1DBlock(128, 128))
        self.conv4x = nn.Sequential(RefR2P1DBlock(128, 256, s2), RefR2P1DBlock(256, 256))
        self.conv5x = nn.Sequential(RefR2P1DBlock(256, 512, s2), RefR2P1DBlock(512, 512))
        self.pool = nn.AdaptiveMaxPool3d((1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        for stage in (self.conv1, self.conv2x, self.conv3x, self.conv4x, self.conv5x):
            x = stage(x)
        return self.pool(x)  # type: ignore[no-any-return]


class RefBasic2DBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))  # type: ignore[no-any-return]


class RefConv2D(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.block1 = RefBasic2DBlock(64, 64, (2, 2))
        self.block2 = RefBasic2DBlock(64, 128, (2, 2))
        self.block3 = RefBasic2DBlock(128, 256, (2, 2))
        self.block4 = RefBasic2DBlock(256, 512)
        self.pool = nn.AdaptiveMaxPool2d((1, 1))

    def forward(self, x: Tensor) -> Tensor:
        for stage in (self.conv1, self.block1, self.block2, self.block3, self.block4):
            x = stage(x)
        return self.pool(x)  # type: ignore[no-any-return]


class RefHead(nn.Module):
    """``Linear-ReLU-Linear-ReLU-Linear`` for ``proj_dims = [512, 512, 128]``; no BatchNorm."""

    def __init__(self, in_dim: int, proj_dims: tuple[int, ...] = (512, 512, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, d in enumerate(proj_dims):
            layers.append(nn.Linear(in_dim, d))
            in_dim = d
            if i < len(proj_dims) - 1:
                layers.append(nn.ReLU())
        self.projection = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection(x)  # type: ignore[no-any-return]


class ReferenceAVWrapper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.video_model = RefR2Plus1D()
        self.audio_model = RefConv2D()
        self.video_proj = RefHead(512)
        self.audio_proj = RefHead(512)

    def forward(self, video: Tensor, audio_tf: Tensor) -> tuple[Tensor, Tensor]:
        """``video (B, 3, T, H, W)``, ``audio_tf (B, 1, T, F)`` -> unnormalised ``(B, 128)`` each."""
        v = self.video_model(video).flatten(1)
        a = self.audio_model(audio_tf).flatten(1)
        return self.video_proj(v), self.audio_proj(a)


M = TypeVar("M", bound=nn.Module)


def randomise(model: M, seed: int = 0) -> M:
    """Random values in every parameter and BN statistic (so eval-mode BN is not the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(7)
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.ndim >= 2:  # conv / linear weights: keep activations O(1)
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
    return model
