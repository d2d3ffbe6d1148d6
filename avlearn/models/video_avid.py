"""AVID-CMA's R(2+1)D-18: the video network of Morgado et al. (CVPR 2021) as published.

Written from the definition in facebookresearch/AVID-CMA (``models/video.py``,
``models/network_blocks.py``), which adapts VMZ's R(2+1)D without its widening:

* stem: a full 3x7x7 Conv3d (stride 1,2,2), BN, ReLU, then a 1x3x3 max-pool (stride 1,2,2);
* four stages of two factorised blocks, widths 64-128-256-512; the first block of stages
  2-4 strides 2 in time and space. A block is
  ``spatial 1x3x3 -> BN -> ReLU -> temporal 3x1x1 -> BN -> ReLU -> spatial -> BN -> ReLU ->
  temporal``, added to the shortcut (identity, or a bare 1x1x1 strided conv where the shape
  changes), then one BN and ReLU *after* the sum. The intermediate width equals the output
  width (no widening).

15.4 M parameters (15,379,136); at 3x8x112x112 the grid is ``512 x 1 x 4 x 4`` (spatial stride 32)
and a forward pass costs 6.2 GFLOP (``torch.utils.flop_counter``, a multiply-add counted as 2
FLOPs); at 3x8x224x224 the grid is 1x7x7 and the cost 24.3 GFLOP. (torchvision's layout,
``r2plus1d_18``: 31.3 M parameters, 40.5 / 162.1 GFLOP.) The embedding is a global max-pool, as in the paper.

Parameter names are ours (``stem``, ``layer1``...``layer4``; ``conv_s1``, ``bn_s1`` ... ``bn_out``,
``shortcut`` inside a block); :mod:`avlearn.models.convert_avid` maps the released
checkpoints' names onto them.
"""

from __future__ import annotations

from torch import Tensor, nn

from avlearn.models.explicit_padding import use_explicit_padding
from avlearn.models.registry import register_video_encoder
from avlearn.models.video import Pool, VideoBackbone
from avlearn.models.weight_init import init_weights

__all__ = ["FactorisedBlock", "R2Plus1DAVID", "r2plus1d_18_avid"]


class FactorisedBlock(nn.Module):
    """Two (2+1)D convolutions with a residual sum, normalised after the sum (AVID-CMA's block).

    Args:
        in_planes, planes: input and output channels (also the spatial-to-temporal width).
        stride: stride in time and space of the first spatial/temporal pair and the shortcut.

    Shape:
        ``(B, in_planes, T, H, W) -> (B, planes, ceil(T/s), ceil(H/s), ceil(W/s))``
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv_s1 = nn.Conv3d(in_planes, planes, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False)
        self.bn_s1 = nn.BatchNorm3d(planes)
        self.conv_t1 = nn.Conv3d(planes, planes, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False)
        self.bn_t1 = nn.BatchNorm3d(planes)
        self.conv_s2 = nn.Conv3d(planes, planes, (1, 3, 3), 1, (0, 1, 1), bias=False)
        self.bn_s2 = nn.BatchNorm3d(planes)
        self.conv_t2 = nn.Conv3d(planes, planes, (3, 1, 1), 1, (1, 0, 0), bias=False)
        self.bn_out = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv3d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Shape: ``(B, C_in, T, H, W) -> (B, C_out, T', H', W')``."""
        y = self.relu(self.bn_s1(self.conv_s1(x)))
        y = self.relu(self.bn_t1(self.conv_t1(y)))
        y = self.relu(self.bn_s2(self.conv_s2(y)))
        y = self.conv_t2(y)
        out: Tensor = self.relu(self.bn_out(y + self.shortcut(x)))
        return out


def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [FactorisedBlock(in_planes, planes, stride)]
    layers += [FactorisedBlock(planes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class R2Plus1DAVID(VideoBackbone):
    """AVID-CMA's R(2+1)D (see the module docstring for the layout).

    Args:
        widths: channels of the four stages; ``widths[0]`` is also the stem's.
        blocks: blocks per stage (2, 2, 2, 2 for depth 18).
        in_channels: input channels (3 for RGB).
        pool: global pooling of the grid, ``"max"`` (the paper) or ``"avg"``.

    Shape:
        ``video (B, C, T, H, W) -> emb (B, out_dim), grid (B, grid_dim, ceil(T/8), ceil(H/32), ceil(W/32))``
    """

    stage_strides = (  # the stem's max-pool halves the frame once more than torchvision's layout
        ("stem", (1, 4, 4)), ("layer1", (1, 4, 4)), ("layer2", (2, 8, 8)), ("layer3", (4, 16, 16)),
        ("layer4", (8, 32, 32)),
    )

    def __init__(
        self,
        widths: tuple[int, int, int, int] = (64, 128, 256, 512),
        blocks: tuple[int, int, int, int] = (2, 2, 2, 2),
        in_channels: int = 3,
        pool: Pool = "max",
    ) -> None:
        super().__init__()
        if len(widths) != 4 or len(blocks) != 4:
            raise ValueError(f"R2Plus1DAVID needs 4 stage widths and 4 block counts, got {widths}, {blocks}")
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        self.in_channels, self.pool = in_channels, pool
        self.stem = nn.Sequential(
            nn.Conv3d(in_channels, widths[0], (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
            nn.BatchNorm3d(widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        )
        self.layer1 = _stage(widths[0], widths[0], blocks[0], 1)
        self.layer2 = _stage(widths[0], widths[1], blocks[1], 2)
        self.layer3 = _stage(widths[1], widths[2], blocks[2], 2)
        self.layer4 = _stage(widths[2], widths[3], blocks[3], 2)
        self._state_stages((widths[0], *widths), (0, *blocks))
        use_explicit_padding(self)  # CPU bf16 weight gradients: see avlearn.models.explicit_padding
        init_weights(self)


@register_video_encoder("r2plus1d_18_avid")
def r2plus1d_18_avid(in_channels: int = 3, pool: Pool = "max") -> R2Plus1DAVID:
    """AVID-CMA's R(2+1)D-18: 64-128-256-512, two blocks per stage, 512-d, 15.4 M parameters.

    It takes no ``zero_init_residual`` (a config that sets it is refused at load): the block's last
    BN follows the residual sum, so zeroing it would zero the block's output rather than make it
    the identity.
    """
    return R2Plus1DAVID((64, 128, 256, 512), (2, 2, 2, 2), in_channels, pool)
