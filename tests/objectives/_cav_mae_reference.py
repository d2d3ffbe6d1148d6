"""A hand-written re-implementation of CAV-MAE's pretraining model, for tests only.

Written from the definitions in YuanGongND/cav-mae (``src/models/cav_mae.py``: ``Block``, ``CAVMAE``;
``src/models/pos_embed.py``), with the reference's module names, so that ``RefCAVMAE().state_dict()``
has its key names and shapes (for base sizes: those of the released checkpoints, less their
``module.`` prefix). Its steps are the reference's: audio given as ``(B, frames, bins)`` and
transposed, the modality tokens added after the positions, masking by sorting noise (kept tokens in
shuffled order, restored with ``ids_restore``), attention written out by hand, the single-modality
passes with the loop as the reference writes it, ``log_softmax(..., dim=0)`` for the one-direction NCE.
Sizes are free (the reference hard-codes 16 px patches, 12 blocks in all and 8 audio rows): patch
``p``, ``specific + shared`` blocks, audio rows ``bins / p``. Plain on purpose: no code of avlearn.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sincos_table(dim: int, rows: int, cols: int) -> np.ndarray:
    """``pos_embed.get_2d_sincos_pos_embed(dim, rows, cols)``, its reshape to ``(2, 1, cols, rows)`` kept."""
    grid = np.stack(np.meshgrid(np.arange(cols, dtype=np.float32), np.arange(rows, dtype=np.float32)), axis=0)
    grid = grid.reshape([2, 1, cols, rows])  # the reference's reshape (it flattens the same way)

    def one_d(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([one_d(dim // 2, grid[0]), one_d(dim // 2, grid[1])], axis=1)


class RefAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))  # type: ignore[no-any-return]


class RefMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))  # type: ignore[no-any-return]


class RefBlock(nn.Module):
    """``cav_mae.Block``: three LayerNorm pairs, one attention and MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1, self.norm1_a, self.norm1_v = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = RefAttention(dim, heads)
        self.norm2, self.norm2_a, self.norm2_v = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mlp = RefMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, modality: str | None = None) -> Tensor:
        n1, n2 = {None: (self.norm1, self.norm2), "a": (self.norm1_a, self.norm2_a),
                  "v": (self.norm1_v, self.norm2_v)}[modality]
        x = x + self.attn(n1(x))
        return x + self.mlp(n2(x))  # type: ignore[no-any-return]


class RefPatchEmbed(nn.Module):
    def __init__(self, cin: int, dim: int, p: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, kernel_size=p, stride=p)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class RefCAVMAE(nn.Module):
    """``cav_mae.CAVMAE`` at free sizes; ``forward(audio (B, frames, bins), imgs (B, 3, H, W), noise_a,
    noise_v)`` with the masking noise given (the reference draws ``torch.rand(B, L)``)."""

    def __init__(self, bins: int = 32, frames: int = 64, img: int = 32, p: int = 8, dim: int = 128,
                 specific: int = 4, shared: int = 1, heads: int = 4, dec_dim: int = 64, dec_depth: int = 2,
                 dec_heads: int = 4, norm_pix_loss: bool = True) -> None:
        super().__init__()
        self.p, self.rows_a, self.cols_a, self.side_v = p, bins // p, frames // p, img // p
        self.n_a, self.n_v = self.rows_a * self.cols_a, self.side_v**2
        self.norm_pix_loss = norm_pix_loss
        self.patch_embed_a, self.patch_embed_v = RefPatchEmbed(1, dim, p), RefPatchEmbed(3, dim, p)
        self.modality_a = nn.Parameter(torch.zeros(1, 1, dim))
        self.modality_v = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed_a = nn.Parameter(torch.zeros(1, self.n_a, dim), requires_grad=False)
        self.pos_embed_v = nn.Parameter(torch.zeros(1, self.n_v, dim), requires_grad=False)
        self.blocks_a = nn.ModuleList(RefBlock(dim, heads) for _ in range(specific))
        self.blocks_v = nn.ModuleList(RefBlock(dim, heads) for _ in range(specific))
        self.blocks_u = nn.ModuleList(RefBlock(dim, heads) for _ in range(shared))
        self.norm_a, self.norm_v, self.norm = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.decoder_embed = nn.Linear(dim, dec_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_dim))
        self.decoder_modality_a = nn.Parameter(torch.zeros(1, 1, dec_dim))
        self.decoder_modality_v = nn.Parameter(torch.zeros(1, 1, dec_dim))
        self.decoder_pos_embed_a = nn.Parameter(torch.zeros(1, self.n_a, dec_dim), requires_grad=False)
        self.decoder_pos_embed_v = nn.Parameter(torch.zeros(1, self.n_v, dec_dim), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(RefBlock(dec_dim, dec_heads) for _ in range(dec_depth))
        self.decoder_norm = nn.LayerNorm(dec_dim)
        self.decoder_pred_a = nn.Linear(dec_dim, p * p)
        self.decoder_pred_v = nn.Linear(dec_dim, p * p * 3)

    def init_weights(self) -> None:
        """Positions from the sin-cos tables, random values elsewhere (all weights are copied across)."""
        audio, video = (self.rows_a, self.cols_a), (self.side_v, self.side_v)
        for name, (rows, cols) in (("pos_embed_a", audio), ("pos_embed_v", video),
                                   ("decoder_pos_embed_a", audio), ("decoder_pos_embed_v", video)):
            param = getattr(self, name)
            param.data.copy_(torch.from_numpy(sincos_table(param.shape[-1], rows, cols)).float()[None])
        for name, param in self.named_parameters():
            if param.requires_grad:  # LayerNorms and tokens away from their 1 / 0 so that a swap shows
                param.data.normal_(1.0 if name.endswith("weight") and param.ndim == 1 else 0.0, 0.1)
                if param.ndim > 1 and "token" not in name and "modality" not in name:
                    nn.init.xavier_uniform_(param.data.view(param.shape[0], -1))

    @staticmethod
    def mask(x: Tensor, ratio: float, noise: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n, length, d = x.shape
        keep = int(length * (1 - ratio))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        x_masked = torch.gather(x, 1, ids_shuffle[:, :keep, None].repeat(1, 1, d))
        mask = torch.ones(n, length)
        mask[:, :keep] = 0
        return x_masked, torch.gather(mask, 1, ids_restore), ids_restore

    def embed(self, a: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        a = self.patch_embed_a(a.unsqueeze(1).transpose(2, 3)) + self.pos_embed_a + self.modality_a
        v = self.patch_embed_v(v) + self.pos_embed_v + self.modality_v
        return a, v

    def forward_encoder(self, a: Tensor, v: Tensor, ratio_a: float, ratio_v: float, noise_a: Tensor,
                        noise_v: Tensor) -> tuple[Tensor, ...]:
        a, v = self.embed(a, v)
        a, mask_a, restore_a = self.mask(a, ratio_a, noise_a)
        v, mask_v, restore_v = self.mask(v, ratio_v, noise_v)
        for blk in self.blocks_a:
            a = blk(a)
        for blk in self.blocks_v:
            v = blk(v)
        x = torch.cat((a, v), dim=1)
        for blk in self.blocks_u:
            x = blk(x)
        x = self.norm(x)
        for blk in self.blocks_u:  # as the reference writes it: each block on the specific tokens
            ca = blk(a, "a")
        ca = self.norm_a(ca)
        for blk in self.blocks_u:
            cv = blk(v, "v")
        cv = self.norm_v(cv)
        return x, mask_a, restore_a, mask_v, restore_v, ca, cv

    def forward_decoder(self, x: Tensor, mask_a: Tensor, restore_a: Tensor, mask_v: Tensor,
                        restore_v: Tensor) -> tuple[Tensor, Tensor]:
        x = self.decoder_embed(x)
        kept_a = self.n_a - int(mask_a[0].sum())
        tokens_a = self.mask_token.repeat(x.shape[0], int(mask_a[0].sum()), 1)
        a_ = torch.cat([x[:, :kept_a], tokens_a], dim=1)
        a_ = torch.gather(a_, 1, restore_a[..., None].repeat(1, 1, x.shape[2]))
        tokens_v = self.mask_token.repeat(x.shape[0], int(mask_v[0].sum()), 1)
        v_ = torch.cat([x[:, kept_a:], tokens_v], dim=1)
        v_ = torch.gather(v_, 1, restore_v[..., None].repeat(1, 1, x.shape[2]))
        x = torch.cat([a_, v_], dim=1)
        x = x + torch.cat([self.decoder_pos_embed_a, self.decoder_pos_embed_v], dim=1)
        x = torch.cat([x[:, : self.n_a] + self.decoder_modality_a,
                       x[:, self.n_a:] + self.decoder_modality_v], dim=1)
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        return self.decoder_pred_a(x[:, : self.n_a]), self.decoder_pred_v(x[:, self.n_a:])

    def patchify(self, imgs: Tensor, c: int) -> Tensor:
        p = self.p
        h, w = imgs.shape[2] // p, imgs.shape[3] // p
        x = imgs.reshape(imgs.shape[0], c, h, p, w, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(imgs.shape[0], h * w, p * p * c)

    def forward_mae_loss(self, inp: Tensor, pred: Tensor, mask: Tensor, modality: str) -> Tensor:
        if modality == "a":
            target = self.patchify(inp.unsqueeze(1).transpose(2, 3), 1)
        else:
            target = self.patchify(inp, 3)
        if self.norm_pix_loss:
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        loss = ((pred - target) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()

    @staticmethod
    def forward_contrastive(audio_rep: Tensor, video_rep: Tensor) -> tuple[Tensor, Tensor]:
        audio_rep, video_rep = F.normalize(audio_rep, dim=-1), F.normalize(video_rep, dim=-1)
        total = torch.mm(audio_rep, video_rep.T) / 0.05
        nce = -torch.mean(torch.diag(F.log_softmax(total, dim=0)))
        acc = (total.softmax(dim=0).argmax(dim=0) == torch.arange(total.shape[0])).sum() / total.shape[0]
        return nce, acc

    def forward(self, audio: Tensor, imgs: Tensor, noise_a: Tensor, noise_v: Tensor, ratio_a: float = 0.75,
                ratio_v: float = 0.75, mae_w: float = 1.0, c_w: float = 0.01) -> dict[str, Tensor]:
        x, mask_a, restore_a, mask_v, restore_v, ca, cv = self.forward_encoder(
            audio, imgs, ratio_a, ratio_v, noise_a, noise_v)
        pred_a, pred_v = self.forward_decoder(x, mask_a, restore_a, mask_v, restore_v)
        mae_a = self.forward_mae_loss(audio, pred_a, mask_a, "a")
        mae_v = self.forward_mae_loss(imgs, pred_v, mask_v, "v")
        nce, acc = self.forward_contrastive(ca.mean(dim=1), cv.mean(dim=1))
        return {"loss": mae_w * (mae_a + mae_v) + c_w * nce, "mae_audio": mae_a, "mae_video": mae_v,
                "nce": nce, "nce_acc": acc, "mask_a": mask_a, "mask_v": mask_v}

    def forward_feat(self, a: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        a, v = self.embed(a, v)
        for blk in self.blocks_a:
            a = blk(a)
        for blk in self.blocks_v:
            v = blk(v)
        for blk in self.blocks_u:
            a = blk(a, "a")
        for blk in self.blocks_u:
            v = blk(v, "v")
        return self.norm_a(a), self.norm_v(v)
