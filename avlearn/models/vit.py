"""Vision transformers over patches: what the video and the audio ViT share.

A :class:`PatchViT` cuts its input into non-overlapping patches (a strided convolution), adds position
embeddings, runs pre-norm transformer blocks with joint attention over all tokens, a final LayerNorm,
and pools the tokens (mean by default: there is no class token). It is CAV-MAE's modality branch
(Gong et al., ICLR 2023): ViT-B blocks with qkv bias, ``nn.LayerNorm`` at torch's eps 1e-5 (timm's
default is 1e-6), fixed 2-D sin-cos position embeddings, MAE's initialisation. The modalities differ
only in their patch and input layout: :mod:`avlearn.models.vit_video` (tubelets over ``(T, H, W)``)
and :mod:`avlearn.models.vit_audio` (16x16 patches over ``(F, T)``).

The blocks are timm's (``timm.models.vision_transformer.Block``): attention through
``F.scaled_dot_product_attention``, parameter names ``blocks.i.attn.qkv`` ... as in the released
MAE / CAV-MAE checkpoints. timm 1.0.31 installs in ~4 s (a 2.8 MB wheel, 18 MB installed; its other
dependencies are already ours).

**Stages** (the contract of :mod:`avlearn.models.contract`): the blocks in four groups, equal when four
divides the depth; group ``k`` ends at block ``ceil((k + 1) depth / 4) - 1`` (CAV-MAE's 11
modality-specific blocks: 3, 3, 3, 2). Each block
is followed by a parameter-free :class:`TokenGrid`, ``grids.i``, that lays its tokens out as a
channels-first grid ``(B, D, *grid)``; a stage is named by the grid module of its last block and
lists its blocks' grid modules, so per-block analysis (:mod:`avlearn.analysis.blocks`) hooks grids,
not tokens. The last grid is taken after the final LayerNorm (it is ``output.grid``); the earlier
ones are the residual stream. Every stage has the width ``D`` and the patch size as its stride.

**Sizes that the patch does not divide** are zero-padded at the end of each axis (as a padded
convolution would be), so the grid is ``ceil(size / patch)`` as :meth:`Stage.grid_size` says.

**Keep-mask** (for masked modelling): ``forward(x, keep=mask)`` with ``keep`` a boolean ``(B, N)``
over the ``N`` patch tokens (in ``rearrange(grid, "b d ... -> b (...) d")`` order) drops the ``False``
tokens after the position embeddings and before the blocks. Every sample must keep the same count
``n``; the kept tokens stay in their position order (the reference shuffles them: attention and the
mean do not see the order). The embedding pools the kept tokens; ``output.grid`` has zeros at the
dropped cells; :meth:`PatchViT.tokens` returns the kept tokens ``(B, n, D)`` themselves.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import einops
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from avlearn.models.contract import Stage

__all__ = ["SIZES", "PatchViT", "PosEmbed", "TokenGrid", "keep_tokens", "sincos_1d", "sincos_2d", "sincos_3d"]

Pool = Literal["max", "avg"]
PosEmbed = Literal["sincos", "learned"]
NUM_STAGES = 4


# (width, depth, heads); tiny is ours (4 blocks of 128 for CPU runs, the width of r2plus1d_tiny);
# small is ViT-S/16's, base ViT-B/16's; base11 ViT-B's first 11 blocks, CAV-MAE's modality-specific
# branches (its 12th block is shared between the modalities: avlearn.models.fusion)
SIZES: dict[str, tuple[int, int, int]] = {"tiny": (128, 4, 4), "small": (384, 12, 6), "base": (768, 12, 12),
                                          "base11": (768, 11, 12)}


def sincos_1d(dim: int, positions: Tensor) -> Tensor:
    """MAE's 1-D sin-cos embedding: ``[sin(p w_i), cos(p w_i)]``, ``w_i = 10000^(-2i / dim)``, float64.

    Shape: ``positions (N,) -> (N, dim)``.
    """
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.double()[:, None] * omega[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_2d(dim: int, h: int, w: int) -> Tensor:
    """MAE's 2-D sin-cos embedding of an ``h x w`` grid, row-major: the first half of the channels
    encodes the column ``w``, the second half the row ``h`` (MAE's ``meshgrid(grid_w, grid_h)``).

    Shape: ``(h * w, dim)``, float64.
    """
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.cat([sincos_1d(dim // 2, cols.flatten()), sincos_1d(dim // 2, rows.flatten())], dim=1)


def sincos_3d(dim: int, t: int, h: int, w: int) -> Tensor:
    """Sin-cos embedding of a ``t x h x w`` grid, ``(t h w)`` order: the 2-D one of ``(h, w)`` plus a
    1-D one of the time step less its value at step 0, so a one-step grid gets exactly the 2-D
    embedding (CAV-MAE's single frame).

    Shape: ``(t * h * w, dim)``, float64.
    """
    steps = torch.arange(t)
    temporal = sincos_1d(dim, steps) - sincos_1d(dim, steps[:1])
    return einops.rearrange(temporal[:, None] + sincos_2d(dim, h, w)[None], "t n d -> (t n) d")


@lru_cache(maxsize=32)
def _sincos(dim: int, grid: tuple[int, ...], device: torch.device | None = None,
            dtype: torch.dtype = torch.float32) -> Tensor:
    """Fixed embedding ``(1, N, dim)`` of a 2-D or 3-D grid, computed once per size, device and dtype."""
    table = sincos_3d(dim, *grid) if len(grid) == 3 else sincos_2d(dim, *grid)
    return table[None].to(device=device, dtype=dtype)


class TokenGrid(nn.Module):
    """A block's tokens as a channels-first grid (a view, no copy): the module a stage names.

    Shape: ``tokens (B, N, D), grid (g1, ..., gk) -> (B, D, g1, ..., gk)`` with ``N = g1 * ... * gk``.
    """

    def forward(self, tokens: Tensor, grid: tuple[int, ...]) -> Tensor:
        axes = " ".join(f"g{i}" for i in range(len(grid)))
        sizes = {f"g{i}": n for i, n in enumerate(grid)}
        return einops.rearrange(tokens, f"b ({axes}) d -> b d {axes}", **sizes)


class PatchViT(nn.Module):
    """A ViT over non-overlapping patches of a ``k``-D input (``k`` = 2 or 3 axes after the channels).

    Args:
        patch: patch size along each input axis (``(2, 16, 16)`` tubelets, ``(16, 16)`` spectrogram patches).
        in_channels: input channels.
        width: token dimension ``D``; depth: blocks (at least 4: four stages); heads: attention heads.
        mlp_ratio: hidden width of each block's MLP over ``D``.
        pool: ``"avg"`` (CAV-MAE: the mean of the tokens) or ``"max"`` over the tokens.
        pos_embed: ``"sincos"`` (fixed, any input size) or ``"learned"`` (a parameter for the grid
            of ``input_size``, started at the sin-cos values; other sizes are refused).
        input_size: the input's size along the patched axes; needed by ``pos_embed="learned"``.

    Shape:
        ``x (B, C, *size) -> emb (B, D), grid (B, D, *ceil(size / patch))``
    """

    stages: tuple[Stage, ...]
    axes: tuple[str, ...] = ()  # names of the patched input axes, for messages (``T, H, W``; ``F, T``)

    def __init__(self, patch: tuple[int, ...], in_channels: int, width: int, depth: int, heads: int,
                 mlp_ratio: float = 4.0, pool: Pool = "avg", pos_embed: PosEmbed = "sincos",
                 input_size: tuple[int, ...] | None = None) -> None:
        super().__init__()
        _check_args(patch, width, depth, pool, pos_embed, input_size)
        self.patch, self.in_channels, self.pool = tuple(patch), in_channels, pool
        ends = [0, *(math.ceil((k + 1) * depth / NUM_STAGES) for k in range(NUM_STAGES))]
        self.stages = tuple(Stage(f"grids.{ends[k + 1] - 1}", width, self.patch,
                                  tuple(f"grids.{i}" for i in range(ends[k], ends[k + 1])))
                            for k in range(NUM_STAGES))
        self.out_dim = self.grid_dim = width
        self.patch_embed = _patch_projection(self.patch, in_channels, width)
        self.pos_embed: nn.Parameter | None = None
        if input_size is not None and pos_embed == "learned":
            table = _sincos(width, self.grid_size(*input_size), torch.device("cpu"))
            self.pos_embed = nn.Parameter(table.clone())
        # nn.LayerNorm's eps is torch's 1e-5, as in CAV-MAE (timm's ViT passes 1e-6)
        self.blocks = nn.ModuleList(
            Block(width, heads, mlp_ratio, qkv_bias=True, norm_layer=nn.LayerNorm) for _ in range(depth))
        for block in self.blocks:
            attn = block.get_submodule("attn")
            attn.fused_attn = True  # type: ignore[assignment]  # F.scaled_dot_product_attention, always
        self.norm = nn.LayerNorm(width)
        self.grids = nn.ModuleList(TokenGrid() for _ in range(depth))
        self._init_weights()

    def _init_weights(self) -> None:
        """MAE's (and CAV-MAE's): the patch projection and every Linear xavier-uniform (as a matrix),
        Linear biases 0, LayerNorms 1 and 0; the patch projection's bias keeps torch's default."""
        nn.init.xavier_uniform_(self.patch_embed.weight.view(self.patch_embed.weight.shape[0], -1))
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # LayerNorms start at weight 1, bias 0 in torch already

    def grid_size(self, *size: int) -> tuple[int, ...]:
        """Token grid for an input of ``size`` along the patched axes: ``ceil(size / patch)``."""
        return self.stages[-1].grid_size(*size)

    def embed(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """Patch tokens with their position embeddings, and the token grid.

        Shape: ``x (B, C, *size) -> (B, N, D)``, ``N = prod(grid)``, tokens in ``(g1 ... gk)`` order.
        """
        if x.ndim != len(self.patch) + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} takes (B, {self.in_channels}, "
                             f"{', '.join(self.axes)}), got shape {tuple(x.shape)}")
        grid = self.grid_size(*x.shape[2:])
        pads = [n * p - s for n, p, s in zip(grid, self.patch, x.shape[2:], strict=True)]
        if any(pads):  # F.pad lists the last axis first: (before, after) pairs
            x = F.pad(x, [v for pad in reversed(pads) for v in (0, pad)])
        tokens = einops.rearrange(self.patch_embed(x), "b d ... -> b (...) d")
        return tokens + self._positions(grid, tokens), grid

    def _positions(self, grid: tuple[int, ...], tokens: Tensor) -> Tensor:
        """Position embeddings ``(1, N, D)`` for ``grid``, in the tokens' dtype and device."""
        if self.pos_embed is None:
            return _sincos(self.out_dim, grid, tokens.device, tokens.dtype)
        if self.pos_embed.shape[1] != tokens.shape[1]:
            raise ValueError(f"learned position embeddings are for {self.pos_embed.shape[1]} tokens; "
                             f"this input gives a {' x '.join(map(str, grid))} grid")
        return self.pos_embed.to(tokens.dtype)

    def tokens(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """The encoder's output tokens (after the final LayerNorm), only the kept ones with ``keep``.

        Shape: ``x (B, C, *size)``, ``keep (B, N)`` bool with ``n`` True per row -> ``(B, n, D)``.
        """
        tokens, _ = self.embed(x)
        tokens = keep_tokens(tokens, keep) if keep is not None else tokens
        for block in self.blocks:
            tokens = block(tokens)
        out: Tensor = self.norm(tokens)
        return out

    def encode(self, x: Tensor, return_stages: bool = False,
            keep: Tensor | None = None) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """``(emb (B, D), grid (B, D, *grid), stages)``: what ``forward`` returns (module doc)."""
        if keep is not None:
            if return_stages:
                raise ValueError("return_stages needs every token: a keep-mask drops some")
            kept = self.tokens(x, keep)
            grid = self.grid_size(*x.shape[2:])
            full = kept.new_zeros(keep.shape[0], keep.shape[1], kept.shape[-1]).masked_scatter(
                keep[..., None], kept)  # the kept tokens in place, zeros elsewhere
            return self._pooled(kept), self.grids[-1](full, grid), {}
        tokens, grid = self.embed(x)
        maps: dict[str, Tensor] = {}
        for i, block in enumerate(self.blocks):
            tokens = block(tokens)
            if i == len(self.blocks) - 1:
                tokens = self.norm(tokens)
            maps[f"grids.{i}"] = self.grids[i](tokens, grid)
        stages = {stage.name: maps[stage.name] for stage in self.stages} if return_stages else {}
        return self._pooled(tokens), maps[self.stages[-1].name], stages

    def _pooled(self, tokens: Tensor) -> Tensor:
        """``(B, N, D) -> (B, D)``: mean (``pool="avg"``) or max over the tokens."""
        return einops.reduce(tokens, "b n d -> b d", "max" if self.pool == "max" else "mean")



def keep_tokens(tokens: Tensor, keep: Tensor) -> Tensor:
    """The tokens that ``keep`` marks, in their order; every row must keep as many.

    Shape: ``tokens (B, N, D)``, ``keep (B, N)`` bool -> ``(B, n, D)``.
    """
    if keep.dtype != torch.bool or keep.shape != tokens.shape[:2]:
        raise ValueError(f"keep must be a bool mask of shape {tuple(tokens.shape[:2])} (B, N tokens), "
                         f"got {keep.dtype} {tuple(keep.shape)}")
    counts = keep.sum(dim=1)
    if bool((counts != counts[0]).any()):
        raise ValueError(f"keep must keep the same count of tokens per sample, got {counts.tolist()}")
    kept: Tensor = einops.rearrange(tokens[keep], "(b n) d -> b n d", b=tokens.shape[0])
    return kept


def _patch_projection(patch: tuple[int, ...], in_channels: int, width: int) -> nn.Conv2d | nn.Conv3d:
    """The strided convolution that maps each patch to a token."""
    if len(patch) == 3:
        t, h, w = patch
        return nn.Conv3d(in_channels, width, kernel_size=(t, h, w), stride=(t, h, w))
    f, t = patch
    return nn.Conv2d(in_channels, width, kernel_size=(f, t), stride=(f, t))


def _check_args(patch: tuple[int, ...], width: int, depth: int, pool: str, pos_embed: str,
                input_size: tuple[int, ...] | None) -> None:
    """Refuse settings the encoder cannot honour, naming the fix."""
    if len(patch) not in (2, 3):
        raise ValueError(f"patch must have 2 or 3 sizes, got {patch}")
    if depth < NUM_STAGES:
        raise ValueError(f"depth must be at least {NUM_STAGES} (four stages of blocks), got {depth}")
    if width % 4:
        raise ValueError(f"width must be a multiple of 4 (sin-cos halves of sin and cos), got {width}")
    if pool not in ("max", "avg"):
        raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
    if pos_embed not in ("sincos", "learned"):
        raise ValueError(f"pos_embed must be 'sincos' or 'learned', got {pos_embed!r}")
    if pos_embed == "learned" and (input_size is None or len(input_size) != len(patch)):
        raise ValueError(f"pos_embed='learned' needs input_size, the input's {len(patch)} patched sizes")

