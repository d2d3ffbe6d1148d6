"""Audio ViTs over log-mel filterbanks in non-overlapping 16x16 patches, registered ``vit_audio_*``.

A spectrogram ``(B, 1, F, T)`` (frequency first, as every audio encoder here takes it) is cut into
16 x 16 patches, one token each, in frequency-major order, with MAE's fixed 2-D sin-cos position
embeddings over the ``(F', T')`` grid (:func:`~avlearn.models.vit.sincos_2d`). CAV-MAE's audio branch
sees 128 mel bins x 1024 frames: an 8 x 64 grid of 512 tokens. (AST's overlapping stride-10 patches
are a different model.) The grid is ``(B, D, ceil(F/16), ceil(T/16))``, the layout of
:class:`~avlearn.models.contract.AudioOutput`.

Sizes as the video ViTs (:data:`~avlearn.models.vit.SIZES`); ``vit_audio_base`` has 85.25 M parameters.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from avlearn.models.contract import AudioOutput
from avlearn.models.registry import register_audio_encoder
from avlearn.models.vit import SIZES, PatchViT, Pool, PosEmbed

__all__ = ["VARIANTS", "AudioViT"]


class AudioViT(PatchViT):
    """A ViT over 16x16 patches of a spectrogram (module doc).

    Args:
        size: ``"tiny"``, ``"small"`` or ``"base"`` (:data:`~avlearn.models.vit.SIZES`).
        patch: patch size ``(f, t)``.
        in_channels, pool, pos_embed: as :class:`~avlearn.models.vit.PatchViT`.
        input_size: ``(F, T)`` of the spectrograms, for ``pos_embed="learned"``.

    Shape:
        ``spec (B, 1, F, T) -> emb (B, D), grid (B, D, ceil(F/f), ceil(T/t))``
    """

    axes = ("F", "T")

    def __init__(self, size: str = "base", patch: tuple[int, int] = (16, 16), in_channels: int = 1,
                 pool: Pool = "avg", pos_embed: PosEmbed = "sincos",
                 input_size: tuple[int, int] | None = None) -> None:
        width, depth, heads = SIZES[size]
        super().__init__(patch, in_channels, width, depth, heads, pool=pool, pos_embed=pos_embed,
                         input_size=input_size)

    def forward(self, spec: Tensor, return_stages: bool = False, keep: Tensor | None = None) -> AudioOutput:
        """Encode spectrograms; a ``keep (B, N)`` bool mask drops tokens first (:mod:`avlearn.models.vit`).

        Shape: ``spec (B, 1, F, T)`` -> ``AudioOutput(emb (B, D), grid (B, D, F', T'), stages)``.
        """
        emb, grid, stages = self.encode(spec, return_stages, keep)
        return AudioOutput(emb=emb, grid=grid, stages=stages)


# name: (size, what it is); each registers a builder taking ``in_channels`` and ``pool``
VARIANTS: dict[str, tuple[str, str]] = {
    "vit_audio_tiny": ("tiny", "4 blocks of 128 (4 heads); for CPU runs"),
    "vit_audio_small": ("small", "ViT-S (12 x 384, 6 heads)"),
    "vit_audio_base": ("base", "ViT-B (12 x 768, 12 heads), 85.25 M; on 128 x 1024 filterbanks CAV-MAE's"),
    "vit_audio_base11": ("base11", "ViT-B's first 11 blocks: CAV-MAE's modality-specific audio branch "
                                   "(with model.fusion_depth: 1, the shared 12th)"),
}


def _builder(size: str, what: str) -> Callable[..., AudioViT]:
    """The registered builder of one variant."""
    def build(in_channels: int = 1, pool: Pool = "avg") -> AudioViT:
        return AudioViT(size, (16, 16), in_channels, pool)
    build.__doc__ = what
    return build


for _name, _variant in VARIANTS.items():
    register_audio_encoder(_name)(_builder(*_variant))
