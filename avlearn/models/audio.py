"""Audio encoders: AVID-CMA's 9-layer 2D CNN over spectrograms, plus smaller variants.

Layout (AVID-CMA ``Conv2D``): a 7x7 stride-2 conv stem, then four plain (non-residual) blocks of
two 3x3 conv-BN-ReLU layers with strides 2, 2, 2, 1, and a global max-pool into a 512-d
embedding (4,725,696 parameters, the same as the reference's ``Conv2D(depth=10)``). AVID-CMA feeds
2 s of its dB spectrogram (``spec.kind: avid_db``), 257 frequency bins x 200 frames (10 ms hop); any
``F x T`` works (log-mel 64/80/128 bins included) because pooling is global. The reference lays the
spectrogram out ``T x F``, this network ``F x T``: released weights load with their 2D kernels
transposed (:mod:`avlearn.models.convert_avid`) and then give the same embedding.

Strides: the grid has ``F' = ceil(F / 16)`` and ``T' = ceil(T / 16)``; 257x200 gives 17x13. Every
stage's width and stride is stated in ``stages`` (the contract of :mod:`avlearn.models.contract`).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate
from typing import Literal

import einops
from torch import Tensor, nn

from avlearn.models.contract import AudioOutput, Stage
from avlearn.models.explicit_padding import use_explicit_padding
from avlearn.models.registry import register_audio_encoder
from avlearn.models.weight_init import init_weights

__all__ = [
    "AudioOutput",
    "SpecCNN",
    "avid_spec_cnn9",
    "avid_spec_cnn9_small",
    "avid_spec_cnn9_tiny",
]

Pool = Literal["max", "avg"]


class ConvBlock2d(nn.Sequential):
    """Two 3x3 conv-BN-ReLU layers; the first may stride. No residual connection (as in AVID).

    Shape:
        ``(B, in_channels, F, T) -> (B, out_channels, ceil(F/s), ceil(T/s))``
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class SpecCNN(nn.Module):
    """2D CNN over a spectrogram, returning a pooled embedding and the last time-frequency grid.

    Args:
        widths: output channels of the four blocks.
        stem_width: output channels of the 7x7 stride-2 stem.
        strides: stride of each block's first conv.
        in_channels: spectrogram channels (1 for mono).
        pool: global pooling of the grid, ``"max"`` (AVID-CMA) or ``"avg"``.

    Shape:
        ``spec (B, 1, F, T) -> emb (B, out_dim), grid (B, grid_dim, ceil(F/16), ceil(T/16))``
        (with the default strides).
    """

    stage_names: tuple[str, ...] = ("stem", "block1", "block2", "block3", "block4")
    stages: tuple[Stage, ...]

    def __init__(
        self,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        strides: Sequence[int] = (2, 2, 2, 1),
        in_channels: int = 1,
        pool: Pool = "max",
    ) -> None:
        super().__init__()
        if len(widths) != 4 or len(strides) != 4:
            raise ValueError(f"SpecCNN needs 4 block widths and 4 strides, got {widths} and {strides}")
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        self.in_channels = in_channels
        self.pool = pool
        self.strides = tuple(strides)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
        )
        chans = [stem_width, *widths]
        for i in range(4):
            self.add_module(f"block{i + 1}", ConvBlock2d(chans[i], chans[i + 1], strides[i]))
        # a block's stride applies to both axes; the stem strides 2; the blocks are not residual
        strides_so_far = accumulate((2, *strides), lambda a, b: a * b)
        self.stages = tuple(Stage(name, width, (s, s)) for name, width, s
                            in zip(self.stage_names, (stem_width, *widths), strides_so_far, strict=True))
        self.out_dim: int = widths[-1]
        self.grid_dim: int = widths[-1]
        use_explicit_padding(self)  # CPU bf16 weight gradients: see avlearn.models.explicit_padding
        init_weights(self)

    def grid_size(self, f: int, t: int) -> tuple[int, int]:
        """Grid size ``(F', T')`` for a spectrogram of ``f`` bins by ``t`` frames."""
        f, t = self.stages[-1].grid_size(f, t)
        return f, t

    def forward(self, spec: Tensor, return_stages: bool = False) -> AudioOutput:
        """Encode a batch of spectrograms.

        Shape:
            ``spec``: ``(B, 1, F, T)`` (log-power or log-mel, frequency first).
            Returns ``AudioOutput(emb (B, D), grid (B, C, F', T'), stages)``.
        """
        if spec.ndim != 4 or spec.shape[1] != self.in_channels:
            raise ValueError(f"spec must be (B, {self.in_channels}, F, T), got shape {tuple(spec.shape)}")
        stages: dict[str, Tensor] = {}
        x = spec
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if return_stages:
                stages[name] = x
        emb = einops.reduce(x, "b c f t -> b c", "max" if self.pool == "max" else "mean")
        return AudioOutput(emb=emb, grid=x, stages=stages)


@register_audio_encoder("avid_spec_cnn9")
def avid_spec_cnn9(in_channels: int = 1, pool: Pool = "max") -> SpecCNN:
    """AVID-CMA's audio network: stem 64, blocks 64-128-256-512, 512-d embedding."""
    return SpecCNN((64, 128, 256, 512), 64, (2, 2, 2, 1), in_channels, pool)


@register_audio_encoder("avid_spec_cnn9_small")
def avid_spec_cnn9_small(in_channels: int = 1, pool: Pool = "max") -> SpecCNN:
    """Half width: stem 32, blocks 32-64-128-256, 256-d embedding."""
    return SpecCNN((32, 64, 128, 256), 32, (2, 2, 2, 1), in_channels, pool)


@register_audio_encoder("avid_spec_cnn9_tiny")
def avid_spec_cnn9_tiny(in_channels: int = 1, pool: Pool = "max") -> SpecCNN:
    """Quarter width: stem 16, blocks 16-32-64-128, 128-d embedding. Pairs with ``r2plus1d_tiny``."""
    return SpecCNN((16, 32, 64, 128), 16, (2, 2, 2, 1), in_channels, pool)
