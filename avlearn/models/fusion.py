"""CAV-MAE's shared layers: transformer blocks that both modalities go through, with per-modality norms.

CAV-MAE (Gong et al., ICLR 2023) runs each modality through its own ViT blocks, then through blocks
shared by the two. A shared block has one attention and one MLP but three pairs of LayerNorms:
``norm1`` / ``norm2`` for the joint sequence (audio tokens, then video tokens), ``norm1_a`` /
``norm2_a`` for audio alone and ``norm1_v`` / ``norm2_v`` for video alone. Pretraining runs it three
times a step: on the joint sequence (reconstruction), and on each modality alone (the contrastive
term). :class:`SharedFusion` holds those blocks, the joint path's final LayerNorm and the two learned
modality tokens, as one optional part of :class:`~avlearn.models.av.AVModel` (``model.fusion_depth``):
the shared weights are stored once (safetensors refuses tensors shared between entries).

**What runs** (the reference's ``forward_encoder`` / ``forward_feat``), for modality ``m`` and its
:class:`~avlearn.models.vit.PatchViT` encoder ``E_m``:

* :meth:`SharedFusion.specific`: ``E_m.embed`` (patches + fixed sin-cos positions) ``+ modality_m``,
  the keep-mask, ``E_m.blocks`` -- without ``E_m.norm``;
* :meth:`SharedFusion.joint`: ``cat(audio, video)`` through every shared block (joint norms), then
  ``norm``;
* :meth:`SharedFusion.single`: one modality's tokens through every shared block with that modality's
  norms, then ``E_m.norm``: **the encoder's own final LayerNorm is the reference's ``norm_a`` /
  ``norm_v``**, so nothing of the model is left unused in pretraining, and an encoder used alone
  (linear probes, fine-tuning with ``--init``) is the modality-specific blocks and that norm, without
  the modality token and the shared blocks (the model's ``encode_*`` has both);
* :meth:`SharedFusion.encode`: ``single(specific(x))``, every token, mean-pooled: the reference's
  ``forward_feat`` (its retrieval embedding); :class:`~avlearn.models.av.AVModel` with a fusion
  encodes through it (``encode_video``, ``encode_audio``, ``forward``).

With more than one shared block the reference's single-modality loop is ``for blk in blocks_u: ca =
blk(a, 'a')`` (every block on the modality-specific tokens, only the last one's output kept: a slip
its ``forward_feat`` and fine-tuning model do not make); we chain the blocks, as those do. With one
shared block (CAV-MAE's 11 + 1) the two are the same.

**Names** (for a converter of the released checkpoints; ``module.`` prefix of ``DataParallel`` dropped):

============================================  ===============================================
reference (``CAVMAE`` / ``CAVMAEFT``)         ours (:class:`~avlearn.models.av.AVModel`)
============================================  ===============================================
``patch_embed_a.proj.{weight,bias}``          ``audio_encoder.patch_embed.*`` (Conv2d over ``(F, T)``)
``patch_embed_v.proj.weight`` (768,3,16,16)   ``video_encoder.patch_embed.weight`` (768,3,1,16,16)
``pos_embed_a`` / ``pos_embed_v``             not stored: fixed sin-cos, recomputed (pretraining)
``modality_a`` / ``modality_v``               ``fusion.modality_a`` / ``fusion.modality_v``
``blocks_a.i.{norm1,attn,norm2,mlp}.*``       ``audio_encoder.blocks.i.*`` (``blocks_v``: video)
``blocks_a.i.norm{1,2}_{a,v}.*``              dropped: never used by the reference
``blocks_u.i.*`` (all 8 norms, attn, mlp)     ``fusion.blocks.i.*`` (same names)
``norm_a`` / ``norm_v``                       ``audio_encoder.norm`` / ``video_encoder.norm``
``norm``                                      ``fusion.norm``
``decoder_*``, ``mask_token``                 the objective's decoder (:mod:`avlearn.objectives.cav_mae`)
============================================  ===============================================

Shapes: tokens ``(B, N, D)`` in the encoder's patch order (audio ``(F', T')`` frequency-major as the
reference's, after its transpose of ``(B, 1024, 128)`` to ``(B, 1, 128, 1024)``; video ``(T', H', W')``).
"""

from __future__ import annotations

from typing import Literal

import einops
import torch
from timm.layers.attention import Attention
from timm.layers.mlp import Mlp
from torch import Tensor, nn

from avlearn.models.contract import AudioOutput, VideoOutput
from avlearn.models.vit import PatchViT, keep_tokens

__all__ = ["Modality", "SharedBlock", "SharedFusion", "build_fusion"]

Modality = Literal["a", "v"]


class SharedBlock(nn.Module):
    """A pre-norm transformer block with one attention and MLP and a LayerNorm pair per input kind.

    ``modality=None``: the joint sequence (``norm1``, ``norm2``); ``"a"`` / ``"v"``: one modality
    alone (``norm1_a`` ... ``norm2_v``). Attention through ``F.scaled_dot_product_attention``
    (timm's ``Attention``, qkv bias), GELU MLP, ``nn.LayerNorm`` at eps 1e-5, as the reference.

    Shape: ``(B, N, D) -> (B, N, D)``.
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        # the reference's order of definition (its state-dict order)
        self.norm1, self.norm1_a, self.norm1_v = (nn.LayerNorm(width) for _ in range(3))
        self.attn = Attention(width, heads, qkv_bias=True)
        self.attn.fused_attn = True  # type: ignore[misc]  # F.scaled_dot_product_attention, always
        self.norm2, self.norm2_a, self.norm2_v = (nn.LayerNorm(width) for _ in range(3))
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def forward(self, x: Tensor, modality: Modality | None = None) -> Tensor:
        suffix = "" if modality is None else f"_{modality}"
        x = x + self.attn(self.get_submodule(f"norm1{suffix}")(x))
        out: Tensor = x + self.mlp(self.get_submodule(f"norm2{suffix}")(x))
        return out


class SharedFusion(nn.Module):
    """CAV-MAE's shared blocks, its joint final norm and its modality tokens (module doc).

    Args:
        width: token width ``D`` of both encoders.
        heads: attention heads.
        depth: shared blocks (CAV-MAE: 1 after 11 modality-specific ones).
        mlp_ratio: MLP hidden width over ``D``.
    """

    def __init__(self, width: int, heads: int, depth: int = 1, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"a fusion needs at least one shared block, got depth {depth}")
        self.modality_a = nn.Parameter(torch.zeros(1, 1, width))
        self.modality_v = nn.Parameter(torch.zeros(1, 1, width))
        self.blocks = nn.ModuleList(SharedBlock(width, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self._init_weights()

    def _init_weights(self) -> None:
        """As the reference: modality tokens N(0, 0.02), Linears xavier-uniform, biases 0, norms 1 and 0."""
        for token in (self.modality_a, self.modality_v):
            nn.init.normal_(token, std=0.02)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def specific(self, encoder: PatchViT, x: Tensor, modality: Modality,
                 keep: Tensor | None = None) -> tuple[Tensor, tuple[int, ...]]:
        """Tokens after the encoder's own blocks (its final norm not applied), and the token grid.

        Shape: ``x (B, C, *size)``, ``keep (B, N)`` bool (``n`` True per row) -> ``(B, n, D)``
        (``n = N`` without ``keep``), grid ``(g1, ..., gk)`` with ``N = g1 ... gk``.
        """
        tokens, grid = encoder.embed(x)
        token = self.modality_a if modality == "a" else self.modality_v
        tokens = tokens + token.to(tokens.dtype)
        if keep is not None:
            tokens = keep_tokens(tokens, keep)
        for block in encoder.blocks:
            tokens = block(tokens)
        return tokens, grid

    def joint(self, audio: Tensor, video: Tensor) -> Tensor:
        """Audio then video tokens through the shared blocks with the joint norms, then ``norm``.

        Shape: ``audio (B, n_a, D), video (B, n_v, D) -> (B, n_a + n_v, D)``.
        """
        x = torch.cat([audio, video], dim=1)
        for block in self.blocks:
            x = block(x)
        out: Tensor = self.norm(x)
        return out

    def single(self, tokens: Tensor, modality: Modality, final_norm: nn.Module) -> Tensor:
        """One modality's tokens through the shared blocks with its norms, then ``final_norm`` (its
        encoder's ``norm``: the reference's ``norm_a`` / ``norm_v``).

        Shape: ``(B, n, D) -> (B, n, D)``.
        """
        for block in self.blocks:
            tokens = block(tokens, modality)
        out: Tensor = final_norm(tokens)
        return out

    def encode(self, encoder: PatchViT, x: Tensor, modality: Modality) -> VideoOutput | AudioOutput:
        """Every token through the encoder and the shared blocks alone, mean-pooled (the reference's
        ``forward_feat``): ``VideoOutput`` for ``"v"``, ``AudioOutput`` for ``"a"``.

        Shape: ``x (B, C, *size) -> emb (B, D), grid (B, D, *grid)``.
        """
        tokens, grid = self.specific(encoder, x, modality)
        tokens = self.single(tokens, modality, encoder.norm)
        emb = einops.reduce(tokens, "b n d -> b d", "mean")
        grid_map = encoder.grids[-1](tokens, grid)
        return AudioOutput(emb, grid_map) if modality == "a" else VideoOutput(emb, grid_map)


def build_fusion(video_encoder: nn.Module, audio_encoder: nn.Module, depth: int) -> SharedFusion:
    """The shared blocks for two ViT encoders of one width (their heads and MLP ratio).

    Raises ``ValueError`` naming ``model.video_arch`` / ``model.audio_arch`` when either is not a
    :class:`~avlearn.models.vit.PatchViT` or the widths differ.
    """
    for key, encoder in (("video_arch", video_encoder), ("audio_arch", audio_encoder)):
        if not isinstance(encoder, PatchViT):
            raise ValueError(f"model.fusion_depth={depth} (CAV-MAE's shared blocks) needs ViT encoders; "
                             f"model.{key} builds a {type(encoder).__name__}: choose a vit_* architecture")
    assert isinstance(video_encoder, PatchViT) and isinstance(audio_encoder, PatchViT)
    if video_encoder.out_dim != audio_encoder.out_dim:
        raise ValueError(f"model.fusion_depth={depth} needs encoders of one width; model.video_arch is "
                         f"{video_encoder.out_dim} wide, model.audio_arch {audio_encoder.out_dim}")
    attn = video_encoder.blocks[0].get_submodule("attn")
    mlp = video_encoder.blocks[0].get_submodule("mlp")
    heads = int(getattr(attn, "num_heads"))  # noqa: B009 (timm's attribute, untyped)
    ratio = getattr(mlp, "fc1").out_features / video_encoder.out_dim  # noqa: B009
    return SharedFusion(video_encoder.out_dim, heads, depth, ratio)
