"""CAV-MAE: masked audio-visual reconstruction plus a cross-modal contrastive term (Gong et al., ICLR 2023).

The objective drives the forward itself (:meth:`CAVMAELoss.forward_loss`): per modality a random
keep-mask of ``round_down(N (1 - ratio))`` tokens per sample (unstructured, the same count in every
sample: 0.75 masked in the paper), the modality-specific ViT blocks on the kept tokens, then the
model's shared blocks (:class:`~avlearn.models.fusion.SharedFusion`) three times: on the joint
sequence, which a decoder the objective owns (:class:`CAVMAEDecoder`) turns back into every patch of
both modalities, and on each modality alone, whose mean-pooled tokens the contrastive term compares.

``loss = mae_weight * (mse_audio + mse_video) + contrastive_weight * nce``

* ``mse_m`` (:func:`masked_patch_mse`): mean over the *masked* patches of the squared error of the
  prediction against the patch's pixels, each patch normalised by its own mean and variance first
  (``norm_pix_loss``, on in the reference's run script; its class default is off);
* ``nce`` (:func:`cav_mae_nce`): InfoNCE between the L2-normalised mean-pooled single-modality
  outputs, temperature 0.05, one direction only -- each video picks its audio among the batch's
  audios (the reference's ``log_softmax(audio @ video.T, dim=0)``), no projection head;
  negatives are the process's own batch, as the reference's per-GPU ``DataParallel`` sub-batches.

The model's output (:class:`~avlearn.models.av.AVOutput`, what the engine checks): ``*_feat`` are
those mean-pooled single-modality outputs of the kept tokens, ``*_emb`` their L2-normalised copies
(``model.head: identity`` is required: CAV-MAE trains no projection head), ``*_grid`` the single-
modality tokens on the encoder's grid with zeros at the masked cells. Without masks (``model(video,
audio)``, ``encode_video`` / ``encode_audio``, held-out retrieval) the model encodes through the same
blocks (:meth:`SharedFusion.encode <avlearn.models.fusion.SharedFusion.encode>`): its embedding is the
reference's retrieval feature. An encoder loaded alone (linear probes, ``--init``) has neither the
shared blocks nor the modality token (:mod:`avlearn.models.fusion`).

Differences from the reference (``YuanGongND/cav-mae``, ``src/models/cav_mae.py``), all without effect
on the loss of one step on the same weights, inputs and masks (``tests/objectives/test_cav_mae.py``):
kept tokens stay in position order (the reference shuffles them; attention and means ignore the
order); several shared blocks are chained in the single-modality passes (the reference's loop keeps
only the last block's output of the modality-specific tokens: the same with its one shared block);
under several processes the per-process losses are averaged by DDP (``DataParallel`` summed the
sub-batches' losses, a constant factor on the gradient); the decoder's sin-cos position tables and its
blocks' unused per-modality norms are not stored.

Decoder names (for a converter): ``decoder_embed``, ``mask_token``, ``decoder_modality_a`` /
``_v``, ``decoder_blocks.i`` (timm blocks: the reference's ``norm1_a`` ... keys are unused there),
``decoder_norm``, ``decoder_pred_a`` / ``_v``: the reference's, under ``decoder.``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, cast

import einops
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from avlearn.config import ConfigError
from avlearn.models.av import AVModel, AVOutput
from avlearn.models.fusion import SharedFusion
from avlearn.models.registry import AUDIO_ENCODERS, VIDEO_ENCODERS, ModelConfig
from avlearn.models.vit import PatchViT, sincos_2d, sincos_3d

from ._checks import check_temperature, upcast
from .base import Objective, ObjectiveContext, RunFacts

__all__ = [
    "CAVMAEConfig",
    "CAVMAEDecoder",
    "CAVMAEForward",
    "CAVMAELoss",
    "CAVMAENetwork",
    "cav_mae_nce",
    "masked_patch_mse",
    "patchify",
    "random_keep",
]


@dataclasses.dataclass(frozen=True)
class CAVMAEConfig:
    """The ``objective:`` section of ``name: cav_mae`` (defaults: the paper's run script).

    Attributes:
        mask_ratio_audio, mask_ratio_video: fraction of each modality's tokens masked, in [0, 1).
        mae_weight: factor on the sum of the two reconstruction losses (run script: 1.0).
        contrastive_weight: factor on the contrastive term (0.01).
        temperature: of the contrastive term (0.05).
        norm_pix_loss: reconstruct each patch normalised by its own mean and variance (run script: on).
        decoder_width, decoder_depth, decoder_heads: the decoder's transformer (512, 8, 16).
    """

    mask_ratio_audio: float = 0.75
    mask_ratio_video: float = 0.75
    mae_weight: float = 1.0
    contrastive_weight: float = 0.01
    temperature: float = 0.05
    norm_pix_loss: bool = True
    decoder_width: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16

    def __post_init__(self) -> None:
        for key in ("mask_ratio_audio", "mask_ratio_video"):
            value = getattr(self, key)
            if not (math.isfinite(value) and 0 < value < 1):
                raise ConfigError(f"objective.{key} must be in (0, 1) (the masked fraction), got {value}")
        for key in ("mae_weight", "contrastive_weight"):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) >= 0):
                raise ConfigError(f"objective.{key} must be >= 0, got {getattr(self, key)}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"objective.temperature must be > 0, got {self.temperature}")
        if min(self.decoder_width, self.decoder_depth, self.decoder_heads) < 1:
            raise ConfigError("objective.decoder_width, decoder_depth and decoder_heads must be >= 1")
        if self.decoder_width % self.decoder_heads or self.decoder_width % 4:
            raise ConfigError(f"objective.decoder_width ({self.decoder_width}) must be a multiple of "
                              f"decoder_heads ({self.decoder_heads}) and of 4 (sin-cos positions)")


# --------------------------------------------------------------------------- pure functions


def random_keep(batch: int, tokens: int, ratio: float, device: torch.device | None = None) -> Tensor:
    """A random keep-mask with ``int(tokens (1 - ratio))`` True per row, drawn as the reference
    does (the smallest of ``torch.rand(batch, tokens)`` are kept: the same draw keeps the same set).

    Shape: ``-> (batch, tokens)`` bool.
    """
    n_keep = int(tokens * (1 - ratio))
    if not 1 <= n_keep < tokens:
        raise ValueError(f"masking {ratio} of {tokens} tokens keeps {n_keep}: at least one token must be "
                         "kept and one masked; lower the mask ratio or use larger inputs")
    noise = torch.rand(batch, tokens, device=device)
    kept = noise.argsort(dim=1)[:, :n_keep]
    return torch.zeros(batch, tokens, dtype=torch.bool, device=device).scatter_(1, kept, True)


def patchify(x: Tensor, patch: tuple[int, ...]) -> Tensor:
    """The pixels of every patch, in the encoders' token order, each patch ``(p1 ... pk c)``
    (the reference's ``nhwpqc`` order of an image or a spectrogram).

    Shape: ``(B, C, *size) -> (B, N, prod(patch) * C)``; the patch must divide ``size``.
    """
    if x.ndim != len(patch) + 2 or any(s % p for s, p in zip(x.shape[2:], patch, strict=True)):
        raise ValueError(f"CAV-MAE reconstructs whole patches: patch {patch} must divide the input's "
                         f"sizes {tuple(x.shape[2:])}; change the clip or spectrogram size")
    if len(patch) == 2:
        return einops.rearrange(x, "b c (h p) (w q) -> b (h w) (p q c)", p=patch[0], q=patch[1])
    t, p, q = patch
    return einops.rearrange(x, "b c (n t) (h p) (w q) -> b (n h w) (t p q c)", t=t, p=p, q=q)


def masked_patch_mse(pred: Tensor, target: Tensor, keep: Tensor, norm_pix: bool = True) -> Tensor:
    """Mean squared error over the masked patches (``keep`` False), each patch's pixels normalised by
    their own mean and (unbiased) variance first when ``norm_pix`` (``(x - m) / sqrt(var + 1e-6)``).

    Shape: ``pred, target (B, N, P)``, ``keep (B, N)`` bool -> scalar.
    """
    target = upcast(target)
    if norm_pix:
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = (upcast(pred) - target).square().mean(dim=-1)
    masked = (~keep).to(per_patch.dtype)
    return (per_patch * masked).sum() / masked.sum()


def cav_mae_nce(audio: Tensor, video: Tensor, temperature: float = 0.05) -> tuple[Tensor, Tensor]:
    """The reference's one-direction InfoNCE: each video scores the batch's audios, its own is the target.

    Shape: ``audio, video (B, D)`` (normalised here) -> ``(loss, accuracy)`` scalars.
    """
    check_temperature(temperature)
    audio, video = F.normalize(upcast(audio), dim=-1), F.normalize(upcast(video), dim=-1)
    logits = video @ audio.T / temperature  # row i: video i against every audio
    targets = torch.arange(audio.shape[0], device=audio.device)
    accuracy = (logits.detach().argmax(dim=1) == targets).float().mean()
    return F.cross_entropy(logits, targets), accuracy


# --------------------------------------------------------------------------- decoder and network


@lru_cache(maxsize=16)
def _positions(width: int, grid: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> Tensor:
    """Fixed sin-cos table ``(1, N, width)`` of a token grid (MAE's; one frame gives the 2-D table)."""
    table = sincos_3d(width, *grid) if len(grid) == 3 else sincos_2d(width, *grid)
    return table[None].to(device=device, dtype=dtype)


class CAVMAEDecoder(nn.Module):
    """One transformer over both modalities' tokens, masked ones as a learned token, and a linear
    prediction head per modality (the reference's decoder; names in the module doc).

    Args:
        width: encoder width ``D``; audio_patch / video_patch: patch sizes (``(16, 16)``,
            ``(t, p, p)``); audio_channels / video_channels: input channels.
        decoder_width, depth, heads: of the decoder's transformer (paper: 512, 8, 16).

    Shape: the joint sequence's audio part ``(B, n_a, D)`` and video part ``(B, n_v, D)``, ``keep_audio
    (B, N_a)``, ``keep_video (B, N_v)`` -> ``(pred_audio (B, N_a, P_a), pred_video (B, N_v, P_v))``.
    """

    def __init__(self, width: int, audio_patch: tuple[int, ...], video_patch: tuple[int, ...],
                 audio_channels: int = 1, video_channels: int = 3, decoder_width: int = 512,
                 depth: int = 8, heads: int = 16) -> None:
        super().__init__()
        self.decoder_embed = nn.Linear(width, decoder_width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_width))
        self.decoder_modality_a = nn.Parameter(torch.zeros(1, 1, decoder_width))
        self.decoder_modality_v = nn.Parameter(torch.zeros(1, 1, decoder_width))
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_width, heads, 4.0, qkv_bias=True, norm_layer=nn.LayerNorm) for _ in range(depth))
        for block in self.decoder_blocks:
            block.get_submodule("attn").fused_attn = True  # type: ignore[assignment]
        self.decoder_norm = nn.LayerNorm(decoder_width)
        self.decoder_pred_a = nn.Linear(decoder_width, math.prod(audio_patch) * audio_channels)
        self.decoder_pred_v = nn.Linear(decoder_width, math.prod(video_patch) * video_channels)
        for token in (self.mask_token, self.decoder_modality_a, self.decoder_modality_v):
            nn.init.normal_(token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, audio: Tensor, video: Tensor, keep_audio: Tensor, keep_video: Tensor,
                grid_audio: tuple[int, ...], grid_video: tuple[int, ...]) -> tuple[Tensor, Tensor]:
        audio = self._unmasked(self.decoder_embed(audio), keep_audio)
        video = self._unmasked(self.decoder_embed(video), keep_video)
        x = torch.cat([audio + self._embedding(grid_audio, audio, self.decoder_modality_a),
                       video + self._embedding(grid_video, video, self.decoder_modality_v)], dim=1)
        for block in self.decoder_blocks:
            x = block(x)
        x = self.decoder_norm(x)
        n_audio = keep_audio.shape[1]
        return self.decoder_pred_a(x[:, :n_audio]), self.decoder_pred_v(x[:, n_audio:])

    def _unmasked(self, kept: Tensor, keep: Tensor) -> Tensor:
        """Kept tokens at their positions, the mask token elsewhere: ``(B, n, d), (B, N) -> (B, N, d)``."""
        placed = kept.new_zeros(*keep.shape, kept.shape[-1]).masked_scatter(keep[..., None], kept)
        return torch.where(keep[..., None], placed, self.mask_token.to(kept.dtype))

    def _embedding(self, grid: tuple[int, ...], like: Tensor, modality: Tensor) -> Tensor:
        """Positions of ``grid`` plus the modality token: ``(1, N, d)``."""
        return _positions(like.shape[-1], grid, like.device, like.dtype) + modality.to(like.dtype)


@dataclasses.dataclass
class CAVMAEForward:
    """What :class:`CAVMAENetwork` returns.

    Attributes:
        av: the model's output (module doc): embeddings of the kept tokens' single-modality passes.
        pred_audio: ``(B, N_a, P_a)`` predicted pixels of every audio patch.
        pred_video: ``(B, N_v, P_v)``.
    """

    av: AVOutput
    pred_audio: Tensor
    pred_video: Tensor


class CAVMAENetwork(nn.Module):
    """The model (ViT encoders and shared blocks) and the objective's decoder, as one module for DDP.

    Shape: ``video (B, C, T, H, W)``, ``audio (B, 1, F, T)``, ``keep_video (B, N_v)``,
    ``keep_audio (B, N_a)`` bool -> :class:`CAVMAEForward`.
    """

    def __init__(self, model: AVModel, decoder: CAVMAEDecoder) -> None:
        super().__init__()
        self.model, self.decoder = model, decoder

    def forward(self, video: Tensor, audio: Tensor, keep_video: Tensor, keep_audio: Tensor,
                normalize: bool = True) -> CAVMAEForward:
        model = self.model
        fusion = cast(SharedFusion, model.fusion)
        enc_v, enc_a = _vit(model.video_encoder), _vit(model.audio_encoder)
        a, grid_a = fusion.specific(enc_a, audio, "a", keep_audio)
        v, grid_v = fusion.specific(enc_v, video, "v", keep_video)
        joint = fusion.joint(a, v)
        pred_a, pred_v = self.decoder(joint[:, : a.shape[1]], joint[:, a.shape[1]:], keep_audio, keep_video,
                                      grid_a, grid_v)
        single_a, single_v = fusion.single(a, "a", enc_a.norm), fusion.single(v, "v", enc_v.norm)
        feat_a, feat_v = single_a.mean(dim=1), single_v.mean(dim=1)
        av = AVOutput(
            video_emb=model.video_head(feat_v, normalize=normalize),
            audio_emb=model.audio_head(feat_a, normalize=normalize),
            video_feat=feat_v, audio_feat=feat_a,
            video_grid=_on_grid(enc_v, single_v, keep_video, grid_v),
            audio_grid=_on_grid(enc_a, single_a, keep_audio, grid_a),
        )
        return CAVMAEForward(av, pred_a, pred_v)


def _vit(encoder: nn.Module) -> PatchViT:
    if not isinstance(encoder, PatchViT):
        raise TypeError(f"CAV-MAE needs ViT encoders, got a {type(encoder).__name__}")
    return encoder


def _on_grid(encoder: PatchViT, kept: Tensor, keep: Tensor, grid: tuple[int, ...]) -> Tensor:
    """Kept tokens on the encoder's grid, zeros at masked cells: ``(B, n, D) -> (B, D, *grid)``."""
    full = kept.new_zeros(*keep.shape, kept.shape[-1]).masked_scatter(keep[..., None], kept)
    out: Tensor = encoder.grids[-1](full, grid)
    return out


# --------------------------------------------------------------------------- the objective


class CAVMAELoss(Objective):
    """CAV-MAE's objective (module doc). Its decoder is built for the model by :meth:`network` and
    checkpointed in its state (``"objective"``); it is not exported."""

    config_cls = CAVMAEConfig

    def __init__(self, cfg: CAVMAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.decoder: CAVMAEDecoder | None = None
        self._patches: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())

    @classmethod
    def build(cls, cfg: CAVMAEConfig, ctx: ObjectiveContext) -> CAVMAELoss:
        return cls(cfg)

    @classmethod
    def check_run(cls, cfg: CAVMAEConfig, run: RunFacts) -> None:
        """Refuse what CAV-MAE cannot run: data.shifted_audio, a localizer, models without ViT
        encoders and shared blocks, a projection head, max pooling; each error names the key."""
        super().check_run(cfg, run)
        if run.localizer:
            raise ValueError("objective.name=cav_mae drives the forward with token masks, which a learned "
                             "localizer's wrapper does not pass: set localization.weight=0")
        if run.model is not None:
            check_model(run.model)

    def network(self, model: AVModel) -> nn.Module:
        """The model with a new decoder for its encoders (built here: it needs their widths and patches)."""
        if model.fusion is None:
            raise ValueError("objective.name=cav_mae runs the model's shared blocks: "
                             "set model.fusion_depth: 1")
        enc_v, enc_a = _vit(model.video_encoder), _vit(model.audio_encoder)
        c = self.cfg
        self.decoder = CAVMAEDecoder(enc_v.out_dim, enc_a.patch, enc_v.patch, enc_a.in_channels,
                                     enc_v.in_channels, c.decoder_width, c.decoder_depth, c.decoder_heads)
        self._patches = (enc_a.patch, enc_v.patch)
        return CAVMAENetwork(model, self.decoder)

    def forward_loss(self, net: Callable[..., Any], batch: Mapping[str, Tensor]
                     ) -> tuple[Tensor, dict[str, Tensor], AVOutput]:
        """Draw the masks, run ``net`` (:class:`CAVMAENetwork`) once, score it.

        Logs: ``loss``, ``mae_audio``, ``mae_video``, ``nce``, ``nce_acc`` (top-1 of video -> audio).
        """
        if self.decoder is None:
            raise RuntimeError("CAVMAELoss.network(model) builds the decoder: call it before forward_loss")
        video, audio = batch["video"], batch["audio"]
        (patch_a, patch_v), c = self._patches, self.cfg
        target_a, target_v = patchify(audio, patch_a), patchify(video, patch_v)
        keep_a = random_keep(audio.shape[0], target_a.shape[1], c.mask_ratio_audio, audio.device)
        keep_v = random_keep(video.shape[0], target_v.shape[1], c.mask_ratio_video, video.device)
        out: CAVMAEForward = net(video, audio, keep_video=keep_v, keep_audio=keep_a)
        return (*self.score(out, target_a, target_v, keep_a, keep_v), out.av)

    def score(self, out: CAVMAEForward, target_audio: Tensor, target_video: Tensor, keep_audio: Tensor,
              keep_video: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``(loss, logs)`` of a forward against the patch pixels ``(B, N, P)`` and the masks used."""
        c = self.cfg
        mae_a = masked_patch_mse(out.pred_audio, target_audio, keep_audio, c.norm_pix_loss)
        mae_v = masked_patch_mse(out.pred_video, target_video, keep_video, c.norm_pix_loss)
        nce, accuracy = cav_mae_nce(out.av.audio_feat, out.av.video_feat, c.temperature)
        loss = c.mae_weight * (mae_a + mae_v) + c.contrastive_weight * nce
        logs = {"loss": loss.detach(), "mae_audio": mae_a.detach(), "mae_video": mae_v.detach(),
                "nce": nce.detach(), "nce_acc": accuracy}
        return loss, logs

    def compute(self, out: AVOutput, index: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError("CAV-MAE masks tokens before the encoders: call forward_loss")

    def extra_repr(self) -> str:
        return ", ".join(f"{f.name}={getattr(self.cfg, f.name)}" for f in dataclasses.fields(self.cfg))


def check_model(model: ModelConfig) -> None:
    """Raise ``ValueError`` naming the ``model.*`` key unless it describes a CAV-MAE model: ViT
    encoders (built on the meta device to see), shared blocks, no projection head, mean pooling."""
    registries = {"video_arch": VIDEO_ENCODERS, "audio_arch": AUDIO_ENCODERS}
    for key, registry in registries.items():
        name = getattr(model, key)
        with torch.device("meta"):
            encoder = registry[name]()
        if not isinstance(encoder, PatchViT):
            raise ValueError(f"objective.name=cav_mae masks ViT tokens: model.{key}={name} is a "
                             f"{type(encoder).__name__}; choose a vit_* architecture "
                             "(vit_frame_base11 / vit_audio_base11 as the paper, vit_video_p8_tiny on a CPU)")
    fixes = {"fusion_depth": (model.fusion_depth >= 1, "1 (the shared blocks the objective runs)"),
             "head": (model.head == "identity", "identity (CAV-MAE trains no projection head)"),
             "video_pool": (model.video_pool == "avg", "avg (the mean over tokens)"),
             "audio_pool": (model.audio_pool == "avg", "avg (the mean over tokens)")}
    for key, (ok, fix) in fixes.items():
        if not ok:
            raise ValueError(f"objective.name=cav_mae needs model.{key}: {fix}; got {getattr(model, key)!r}")
