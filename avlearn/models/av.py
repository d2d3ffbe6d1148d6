"""The audio-visual pair: two encoders and two projection heads, with named outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch
from torch import Tensor, nn

from avlearn.models.contract import AudioEncoder, AudioOutput, VideoEncoder, VideoOutput
from avlearn.models.fusion import SharedFusion
from avlearn.models.vit import PatchViT
from avlearn.models.weight_init import init_weights, zero_init_residual_bn

__all__ = ["AVModel", "AVOutput", "AudioEncoder", "VideoEncoder", "init_weights", "zero_init_residual_bn"]


@dataclass
class AVOutput:
    """What :class:`AVModel` returns for a batch of paired clips.

    Attributes:
        video_emb: projected video embedding ``(B, d)`` (unit norm when normalised).
        audio_emb: projected audio embedding ``(B, d)`` (unit norm when normalised).
        video_feat: video encoder embedding before the head ``(B, D_v)``.
        audio_feat: audio encoder embedding before the head ``(B, D_a)``.
        video_grid: last video feature grid ``(B, C_v, T', H', W')``.
        audio_grid: last audio feature grid ``(B, C_a, F', T'')``.
        audio_shifted_emb: projected embedding ``(B, d)`` of each clip's time-shifted audio, only
            when the forward was given ``audio_shifted`` (hard negatives, see ``data.shifted_audio``).
        video_stages: every named stage's output ``{name: (B, C_s, T_s, H_s, W_s)}``, only when the
            forward was called with ``video_stages=True`` (a localizer on a finer grid reads one).
    """

    video_emb: Tensor
    audio_emb: Tensor
    video_feat: Tensor
    audio_feat: Tensor
    video_grid: Tensor
    audio_grid: Tensor
    audio_shifted_emb: Tensor | None = None
    video_stages: dict[str, Tensor] = field(default_factory=dict)


class AVModel(nn.Module):
    """Video and audio encoders with their projection heads (built elsewhere, passed in).

    The encoders keep the contract of :mod:`avlearn.models.contract`. A model with its weights comes
    from :func:`avlearn.models.weights.load_av_model` (a run dir, an export or a run checkpoint).

    Args:
        video_encoder: ``(B, C, T, H, W) -> VideoOutput(emb (B, D_v), grid)``.
        audio_encoder: ``(B, 1, F, T) -> AudioOutput(emb (B, D_a), grid)``.
        video_head: ``(B, D_v) -> (B, d)``; takes ``normalize=`` (see :mod:`avlearn.models.heads`).
        audio_head: ``(B, D_a) -> (B, d)``.
        fusion: ``None`` (every model but CAV-MAE's: nothing changes), or shared blocks both encoders
            feed (:class:`~avlearn.models.fusion.SharedFusion`, state keys ``fusion.*``); then each
            modality is encoded through its encoder and the shared blocks alone, mean-pooled
            (:meth:`SharedFusion.encode <avlearn.models.fusion.SharedFusion.encode>`), before its head.
    """

    def __init__(
        self,
        video_encoder: nn.Module,
        audio_encoder: nn.Module,
        video_head: nn.Module,
        audio_head: nn.Module,
        fusion: SharedFusion | None = None,
    ) -> None:
        super().__init__()
        v_out, a_out = getattr(video_head, "out_dim", None), getattr(audio_head, "out_dim", None)
        if v_out is not None and a_out is not None and v_out != a_out:
            raise ValueError(f"video and audio heads must project to the same size, got {v_out} and {a_out}")
        self.video_encoder = video_encoder
        self.audio_encoder = audio_encoder
        self.video_head = video_head
        self.audio_head = audio_head
        self.fusion = fusion  # None registers nothing: the state dict of a model without one is unchanged

    @property
    def embed_dim(self) -> int:
        """Size ``d`` of the joint embedding."""
        return int(getattr(self.video_head, "out_dim", 0))

    def encode_video(self, video: Tensor, normalize: bool = True) -> Tensor:
        """Shape: ``video (B, C, T, H, W) -> (B, d)``."""
        out: Tensor = self.video_head(self._video(video).emb, normalize=normalize)
        return out

    def encode_audio(self, spec: Tensor, normalize: bool = True) -> Tensor:
        """Shape: ``spec (B, 1, F, T) -> (B, d)``."""
        out: Tensor = self.audio_head(self._audio(spec).emb, normalize=normalize)
        return out

    def _video(self, video: Tensor, stages: bool = False) -> VideoOutput:
        """The video encoder's output, through the fusion's shared blocks when there is one."""
        if self.fusion is None:
            # only ask for stages when needed: some encoders (e.g. test doubles) take the video alone
            out: VideoOutput = (self.video_encoder(video, return_stages=True) if stages
                                else self.video_encoder(video))
            return out
        if stages:
            raise ValueError("a model with shared blocks (model.fusion_depth > 0) gives its last grid only, "
                             "no video stages; use the last grid (e.g. localization.grid_stage: '')")
        return cast(VideoOutput, self.fusion.encode(cast(PatchViT, self.video_encoder), video, "v"))

    def _audio(self, spec: Tensor) -> AudioOutput:
        """The audio encoder's output, through the fusion's shared blocks when there is one."""
        if self.fusion is None:
            out: AudioOutput = self.audio_encoder(spec)
            return out
        return cast(AudioOutput, self.fusion.encode(cast(PatchViT, self.audio_encoder), spec, "a"))

    def forward(self, video: Tensor, audio: Tensor, normalize: bool = True,
                audio_shifted: Tensor | None = None, video_stages: bool = False) -> AVOutput:
        """Encode paired clips (and, optionally, each clip's time-shifted audio).

        Shape:
            ``video (B, C, T, H, W)``, ``audio (B, 1, F, T)``, ``audio_shifted (B, 1, F, T)`` ->
            :class:`AVOutput`.
        """
        if video.shape[0] != audio.shape[0]:
            raise ValueError(f"video and audio batch sizes differ: {video.shape[0]} vs {audio.shape[0]}")
        v = self._video(video, video_stages)
        b = audio.shape[0]
        if audio_shifted is not None:
            if audio_shifted.shape != audio.shape:
                raise ValueError(f"audio_shifted must have audio's shape {tuple(audio.shape)}, "
                                 f"got {tuple(audio_shifted.shape)}")
            audio = torch.cat([audio, audio_shifted])  # one pass: BatchNorm sees both windows
        a = self._audio(audio)
        audio_emb = self.audio_head(a.emb, normalize=normalize)
        return AVOutput(
            video_emb=self.video_head(v.emb, normalize=normalize),
            audio_emb=audio_emb[:b],
            video_feat=v.emb,
            audio_feat=a.emb[:b],
            video_grid=v.grid,
            audio_grid=a.grid[:b],
            audio_shifted_emb=audio_emb[b:] if audio_shifted is not None else None,
            video_stages=dict(v.stages) if video_stages else {},
        )
