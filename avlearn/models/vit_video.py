"""Video ViTs over space-time patches (tubelets) with joint attention, registered ``vit_video_*``.

A clip ``(B, 3, T, H, W)`` is cut into ``t x p x p`` tubelets (``2 x 16 x 16`` by default), one token
each, with fixed sin-cos position embeddings (:func:`~avlearn.models.vit.sincos_3d`) and every token
attending to every other (:class:`~avlearn.models.vit.PatchViT`). With one frame and a tubelet depth of
1 (``vit_frame_base`` on ``(B, 3, 1, 224, 224)``) it is CAV-MAE's visual branch: 14 x 14 = 196 tokens
with MAE's 2-D sin-cos embeddings. The grid is ``(B, D, ceil(T/t), ceil(H/p), ceil(W/p))``; 16 frames
at 224 px in 2x16x16 tubelets give 8 x 14 x 14 = 1568 tokens.

Sizes (:data:`~avlearn.models.vit.SIZES`): ``tiny`` 4 blocks of 128 (ours, for CPU runs), ``small``
ViT-S (12 x 384, 6 heads), ``base`` ViT-B (12 x 768, 12 heads, 85.6 M parameters as a frame encoder:
ViT-B/16's 86.57 M less its classifier head, class token and learned position table).
``vit_video_p8_tiny`` takes 2x8x8 tubelets for the 32 px clips of the synthetic benchmarks.
"""

from __future__ import annotations

from torch import Tensor

from avlearn.models.contract import VideoOutput
from avlearn.models.registry import register_video_encoder
from avlearn.models.vit import SIZES, PatchViT, Pool, PosEmbed

__all__ = ["VideoViT", "vit_frame_base", "vit_frame_small", "vit_frame_tiny", "vit_video_base",
           "vit_video_p8_tiny", "vit_video_small", "vit_video_tiny"]


class VideoViT(PatchViT):
    """A ViT over tubelets of RGB clips (module doc).

    Args:
        size: ``"tiny"``, ``"small"`` or ``"base"`` (width, depth, heads: :data:`~avlearn.models.vit.SIZES`).
        tubelet: patch size ``(t, h, w)``.
        in_channels, pool, pos_embed: as :class:`~avlearn.models.vit.PatchViT`.
        input_size: ``(T, H, W)`` of the clips, for ``pos_embed="learned"``.

    Shape:
        ``video (B, C, T, H, W) -> emb (B, D), grid (B, D, ceil(T/t), ceil(H/h), ceil(W/w))``
    """

    axes = ("T", "H", "W")

    def __init__(self, size: str = "base", tubelet: tuple[int, int, int] = (2, 16, 16), in_channels: int = 3,
                 pool: Pool = "avg", pos_embed: PosEmbed = "sincos",
                 input_size: tuple[int, int, int] | None = None) -> None:
        width, depth, heads = SIZES[size]
        super().__init__(tubelet, in_channels, width, depth, heads, pool=pool, pos_embed=pos_embed,
                         input_size=input_size)

    def forward(self, video: Tensor, return_stages: bool = False, keep: Tensor | None = None) -> VideoOutput:
        """Encode clips; ``keep (B, N)`` bool drops tokens before the blocks (:mod:`avlearn.models.vit`).

        Shape: ``video (B, C, T, H, W)`` -> ``VideoOutput(emb (B, D), grid (B, D, T', H', W'), stages)``.
        """
        emb, grid, stages = self.encode(video, return_stages, keep)
        return VideoOutput(emb=emb, grid=grid, stages=stages)


@register_video_encoder("vit_video_tiny")
def vit_video_tiny(in_channels: int = 3, pool: Pool = "avg") -> VideoViT:
    """4 blocks of 128 (4 heads) over 2x16x16 tubelets; 128-d. For CPU runs."""
    return VideoViT("tiny", (2, 16, 16), in_channels, pool)


@register_video_encoder("vit_video_p8_tiny")
def vit_video_p8_tiny(in_channels: int = 3, pool: Pool = "avg") -> VideoViT:
    """``vit_video_tiny`` over 2x8x8 tubelets: a 32 px frame is 4 x 4 tokens, not 2 x 2."""
    return VideoViT("tiny", (2, 8, 8), in_channels, pool)


@register_video_encoder("vit_video_small")
def vit_video_small(in_channels: int = 3, pool: Pool = "avg") -> VideoViT:
    """ViT-S (12 x 384, 6 heads) over 2x16x16 tubelets; 384-d."""
    return VideoViT("small", (2, 16, 16), in_channels, pool)


@register_video_encoder("vit_video_base")
def vit_video_base(in_channels: int = 3, pool: Pool = "avg") -> VideoViT:
    """ViT-B (12 x 768, 12 heads) over 2x16x16 tubelets; 768-d, 86.2 M parameters."""
    return VideoViT("base", (2, 16, 16), in_channels, pool)


@register_video_encoder("vit_frame_tiny")
def vit_frame_tiny(in_channels: int = 3, pool: Pool = "avg") -> VideoViT:
    """``vit_video_tiny`` with 1x16x16 patches: each frame its own tokens."""
    return VideoViT("tiny", (1, 16, 16), in_channels, pool)


@register_video_encoder("vit_frame_small")
def vit_frame_small(in_channels: int = 3, pool: Pool = "avg") -> VideoViT:
    """ViT-S with 1x16x16 patches: each frame its own tokens."""
    return VideoViT("small", (1, 16, 16), in_channels, pool)


@register_video_encoder("vit_frame_base")
def vit_frame_base(in_channels: int = 3, pool: Pool = "avg") -> VideoViT:
    """ViT-B with 1x16x16 patches; on one 224 px frame, CAV-MAE's visual branch. 85.6 M parameters."""
    return VideoViT("base", (1, 16, 16), in_channels, pool)
