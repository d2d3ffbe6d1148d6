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

from collections.abc import Callable

from torch import Tensor

from avlearn.models.contract import VideoOutput
from avlearn.models.registry import register_video_encoder
from avlearn.models.vit import SIZES, PatchViT, Pool, PosEmbed

__all__ = ["VARIANTS", "VideoViT"]


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


# name: (size, tubelet, what it is); each registers a builder taking ``in_channels`` and ``pool``
VARIANTS: dict[str, tuple[str, tuple[int, int, int], str]] = {
    "vit_video_tiny": ("tiny", (2, 16, 16), "4 blocks of 128 (4 heads) over 2x16x16 tubelets; for CPU runs"),
    "vit_video_p8_tiny": ("tiny", (2, 8, 8), "tiny, 2x8x8 tubelets: 4 x 4 tokens per 32 px frame"),
    "vit_video_small": ("small", (2, 16, 16), "ViT-S (12 x 384, 6 heads) over 2x16x16 tubelets"),
    "vit_video_base": ("base", (2, 16, 16), "ViT-B (12 x 768, 12 heads) over 2x16x16 tubelets, 86.2 M"),
    "vit_frame_tiny": ("tiny", (1, 16, 16), "vit_video_tiny over 1x16x16 patches: each frame its own tokens"),
    "vit_frame_small": ("small", (1, 16, 16), "ViT-S over 1x16x16 patches"),
    "vit_frame_base": ("base", (1, 16, 16), "ViT-B over 1x16x16, 85.6 M; on one 224 px frame CAV-MAE's"),
    "vit_frame_base11": ("base11", (1, 16, 16), "ViT-B's first 11 blocks over 1x16x16: CAV-MAE's "
                                                "modality-specific visual branch (model.fusion_depth: 1)"),
}


def _builder(size: str, tubelet: tuple[int, int, int], what: str) -> Callable[..., VideoViT]:
    """The registered builder of one variant."""
    def build(in_channels: int = 3, pool: Pool = "avg") -> VideoViT:
        return VideoViT(size, tubelet, in_channels, pool)
    build.__doc__ = what
    return build


for _name, _variant in VARIANTS.items():
    register_video_encoder(_name)(_builder(*_variant))
