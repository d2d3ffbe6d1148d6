"""A hand-written re-implementation of CAV-MAE's fine-tuning model (``CAVMAEFT``), for tests only.

Written from ``src/models/cav_mae.py`` of YuanGongND/cav-mae, with its module names, so that
``RefCAVMAEFT().state_dict()`` has the key names and shapes of the released fine-tuned checkpoints
(less their ``module.`` prefix) at base sizes. The blocks, patch embedding and sin-cos table are the
pretraining port's (``tests/objectives/_cav_mae_reference.py``). Its steps are the reference's
``forward(a, v, mode)`` for ``multimodal``, ``audioonly`` and ``videoonly``: audio given as
``(B, frames, bins)`` and transposed, positions (learned: ``tr_pos=True``) then the modality tokens
added, the modality-specific blocks, then the shared blocks (joint norms on the concatenated tokens,
or the modality's norms), the final norm, the mean over tokens, ``mlp_head``. Plain on purpose: no
code of avlearn.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tests.objectives._cav_mae_reference import RefBlock, RefPatchEmbed, sincos_table


class RefCAVMAEFT(nn.Module):
    """``cav_mae.CAVMAEFT`` at free sizes (the reference: 128 bins, 1024 frames, 224 px, patch 16,
    768 wide, 11 + 1 blocks, 12 heads)."""

    def __init__(self, label_dim: int = 5, bins: int = 32, frames: int = 64, img: int = 32, p: int = 16,
                 dim: int = 128, specific: int = 4, shared: int = 1, heads: int = 4) -> None:
        super().__init__()
        self.rows_a, self.cols_a, self.side_v = bins // p, frames // p, img // p
        self.patch_embed_a, self.patch_embed_v = RefPatchEmbed(1, dim, p), RefPatchEmbed(3, dim, p)
        self.modality_a = nn.Parameter(torch.zeros(1, 1, dim))
        self.modality_v = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed_a = nn.Parameter(torch.zeros(1, self.rows_a * self.cols_a, dim))
        self.pos_embed_v = nn.Parameter(torch.zeros(1, self.side_v**2, dim))
        self.blocks_a = nn.ModuleList(RefBlock(dim, heads) for _ in range(specific))
        self.blocks_v = nn.ModuleList(RefBlock(dim, heads) for _ in range(specific))
        self.blocks_u = nn.ModuleList(RefBlock(dim, heads) for _ in range(shared))
        self.norm_a, self.norm_v, self.norm = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, label_dim))

    def randomise(self, seed: int = 0, positions: str = "learned") -> RefCAVMAEFT:
        """Random weights away from their initial values (so a swapped norm shows); positions the sin-cos
        tables, plus noise for ``"learned"`` (what fine-tuning leaves)."""
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in self.named_parameters():
                mean = 1.0 if name.endswith("weight") and param.ndim == 1 else 0.0
                scale = 0.1 if param.ndim == 1 or "modality" in name else (2.0 / sum(param.shape[:2])) ** 0.5
                param.copy_(mean + scale * torch.randn(param.shape, generator=gen))
            for param, (rows, cols) in ((self.pos_embed_a, (self.rows_a, self.cols_a)),
                                        (self.pos_embed_v, (self.side_v, self.side_v))):
                table = torch.from_numpy(sincos_table(param.shape[-1], rows, cols)).float()[None]
                noise = 0.05 * torch.randn(param.shape, generator=gen) if positions == "learned" else 0.0
                param.copy_(table + noise)
        return self

    def embed(self, a: Tensor | None, v: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        if a is not None:
            a = self.patch_embed_a(a.unsqueeze(1).transpose(2, 3)) + self.pos_embed_a + self.modality_a
            for blk in self.blocks_a:
                a = blk(a)
        if v is not None:
            v = self.patch_embed_v(v) + self.pos_embed_v + self.modality_v
            for blk in self.blocks_v:
                v = blk(v)
        return a, v

    def forward(self, a: Tensor | None, v: Tensor | None, mode: str = "multimodal") -> Tensor:
        a, v = self.embed(a, v)
        if mode == "multimodal":
            assert a is not None and v is not None
            x = torch.cat((a, v), dim=1)
            for blk in self.blocks_u:
                x = blk(x)
            x = self.norm(x)
        elif mode == "audioonly":
            assert a is not None
            for blk in self.blocks_u:
                a = blk(a, "a")
            x = self.norm_a(a)
        else:
            assert mode == "videoonly" and v is not None
            for blk in self.blocks_u:
                v = blk(v, "v")
            x = self.norm_v(v)
        return self.mlp_head(x.mean(dim=1))  # type: ignore[no-any-return]
