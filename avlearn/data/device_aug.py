"""Augmentation on the accelerator (``data.augment_on: device``): workers only decode and draw.

With ``augment_on: worker`` (the default) each DataLoader worker decodes a clip and applies the
whole augmentation chain (:func:`~avlearn.data.transforms.build_video_transform`,
:func:`~avlearn.data.transforms.build_audio_transform`). With ``augment_on: device`` the worker
decodes the frames as uint8 at the decode size and the waveform, makes **the same random draws
from the same per-sample generator, in the same order** (crop box, flip, colour jitter order and
factors, greyscale; volume gain, spectrogram masks) and ships them in the sample; the training
process then applies them to the whole batch on the accelerator with :class:`BatchAugment`,
through the transforms' own ``apply`` functions (:func:`~avlearn.data.transforms.resized_crop`,
:meth:`~avlearn.data.transforms.FusedColor.apply`, ...). On the CPU the two paths give the same
tensors (float tolerance: reductions run in another order); on a GPU the 8-bit resize runs in
float (no uint8 kernel there), within about 1/255 before normalisation.

Sample keys added in device mode (see :class:`DeferredVideo`, :class:`DeferredAudio`):
``video`` ``(3, T, H, W)`` uint8 (not augmented), ``video_aug`` ``(P,)`` float64 (the draws, laid
out as :data:`VIDEO_PARAMS`), ``audio`` ``(S,)`` waveform, ``audio_aug`` (dict: ``gain`` ``()``,
``time_keep`` ``(T_a,)``, ``freq_keep`` ``(F,)``) and, with shifted audio, ``audio_shifted_aug``.

Example::

    ds = AVClipDataset(m, spec, video_transform=DeferredVideo(vcfg),
                       audio_transform=DeferredAudio(acfg, scfg))
    augment = BatchAugment(vcfg, acfg, scfg).to("cuda")
    for batch in DataLoader(ds, batch_size=64, collate_fn=av_collate, num_workers=8):
        batch = augment(batch, torch.device("cuda"))  # video (B, 3, T, 112, 112), audio (B, 1, F, T_a)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from avlearn.data.audio import SpecConfig, build_spectrogram
from avlearn.data.transforms import (
    AudioAugConfig,
    ColorJitter,
    FrequencyMask,
    FusedColor,
    JitterDraw,
    Normalize,
    RandomGrayscale,
    RandomResizedCrop,
    TimeMask,
    VideoAugConfig,
    _coin,
    _uniform,
    resized_crop,
)

__all__ = ["AUGMENT_ON", "VIDEO_PARAMS", "BatchAugment", "DeferredAudio", "DeferredVideo", "pad_frames"]

AUGMENT_ON: tuple[str, ...] = ("worker", "device")
VIDEO_PARAMS: tuple[str, ...] = ("top", "left", "height", "width", "flip", "jitter", "order0", "order1",
                                 "order2", "order3", "brightness", "contrast", "saturation", "hue", "grey")
"""Layout of ``video_aug``: crop box, flip (0/1), jitter applied (0/1), its operation order and factors,
greyscale (0/1)."""


def _jitter(cfg: VideoAugConfig) -> ColorJitter:
    return ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, p=cfg.color_jitter_p,
                       hue_mode=cfg.hue_mode)


class DeferredVideo:
    """The training video chain of a :class:`VideoAugConfig`, split: draws in the worker, pixels later.

    ``draw_params`` consumes the generator exactly as ``build_video_transform(cfg, train=True)``
    would (fused or not) and returns the draws; the clip itself stays the decoder's uint8 frames
    (``uint8_input``).

    Shape:
        ``draw_params``: video ``(3, T, H, W)`` -> ``(len(VIDEO_PARAMS),)`` float64.
    """

    uint8_input = True

    def __init__(self, cfg: VideoAugConfig) -> None:
        self.cfg = cfg
        self.crop = RandomResizedCrop(cfg.size, scale=cfg.crop_scale, ratio=cfg.crop_ratio)
        self.jitter = _jitter(cfg)

    def draw_params(self, video: Tensor, generator: torch.Generator) -> Tensor:
        top, left, h, w = self.crop.params(video.shape[-2], video.shape[-1], generator)
        flip = _coin(generator, self.cfg.flip_p)
        drawn = self.jitter.draw(generator)
        grey = _coin(generator, self.cfg.grayscale_p)
        unused = ([0, 1, 2, 3], [1.0, 1.0, 1.0, 0.0])  # no jitter: identity order and factors
        order, factors = unused if drawn is None else (drawn[0], list(drawn[1:]))
        values = [top, left, h, w, flip, drawn is not None, *order, *factors, grey]
        return torch.tensor([float(v) for v in values], dtype=torch.float64)

    def __repr__(self) -> str:
        return f"DeferredVideo({self.cfg})"


class DeferredAudio:
    """The training audio chain of an :class:`AudioAugConfig`, split like :class:`DeferredVideo`.

    ``draw_params`` consumes the generator as ``build_audio_transform(cfg, spec, train=True)``
    would (volume gain, then time masks, then frequency masks) and returns them; the waveform
    stays as decoded.

    Shape:
        ``draw_params``: waveform ``(S,)`` -> ``{"gain": (), "time_keep": (T_a,), "freq_keep": (F,)}``.
    """

    def __init__(self, cfg: AudioAugConfig, spec: SpecConfig) -> None:
        self.cfg, self.spec = cfg, spec
        self.time_mask = TimeMask(cfg.time_mask_width, cfg.time_masks, fill=cfg.mask_fill)
        self.freq_mask = FrequencyMask(cfg.freq_mask_width, cfg.freq_masks, fill=cfg.mask_fill)

    def draw_params(self, wav: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        gain = _uniform(generator, *self.cfg.volume) if self.cfg.volume != (1.0, 1.0) else 1.0
        frames, bins = self.spec.num_frames(wav.shape[-1]), self.spec.num_bins
        time_keep = (self.time_mask.keep(frames, generator) if self.cfg.time_masks > 0
                     else torch.ones(frames, dtype=torch.bool))
        freq_keep = (self.freq_mask.keep(bins, generator) if self.cfg.freq_masks > 0
                     else torch.ones(bins, dtype=torch.bool))
        gain_t = torch.tensor(gain, dtype=torch.float32)
        return {"gain": gain_t, "time_keep": time_keep, "freq_keep": freq_keep}

    def __repr__(self) -> str:
        return f"DeferredAudio({self.cfg}, {self.spec})"


def pad_frames(videos: list[Tensor]) -> list[Tensor]:
    """Zero-pad clips of different frame sizes to the largest (bottom and right), so they stack.

    Crop boxes drawn on a clip lie inside its own frames, so the padding never enters a crop.

    Shape:
        ``[(C, T, H_i, W_i)] -> [(C, T, max H, max W)]``.
    """
    height = max(v.shape[-2] for v in videos)
    width = max(v.shape[-1] for v in videos)
    if all(v.shape[-2:] == (height, width) for v in videos):
        return videos
    return [nn.functional.pad(v, (0, width - v.shape[-1], 0, height - v.shape[-2])) for v in videos]


class BatchAugment(nn.Module):
    """Apply the draws of :class:`DeferredVideo` / :class:`DeferredAudio` to a collated batch.

    Holds the spectrogram front end (a buffer-only module: ``.to(device)`` moves it). Runs
    outside autocast, in float32, like the worker path.

    Shape:
        ``video (B, 3, T, H, W)`` uint8 + ``video_aug (B, P)`` -> ``(B, 3, T, size, size)`` float32;
        ``audio (B, S)`` + ``audio_aug`` -> ``(B, 1, F, T_a)``.
    """

    def __init__(self, video: VideoAugConfig, audio: AudioAugConfig, spec: SpecConfig) -> None:
        super().__init__()
        self.video_cfg, self.audio_cfg = video, audio
        self.size = (video.size, video.size)
        jitter = _jitter(video)
        norm = (video.mean, video.std) if video.normalize else (None, None)
        self.fused = FusedColor(jitter, video.grayscale_p, *norm) if video.fused else None
        self.jitter = jitter
        self.normalize = Normalize(video.mean, video.std) if video.normalize else None
        self.spectrogram = build_spectrogram(spec)
        self.time_mask = TimeMask(audio.time_mask_width, audio.time_masks, fill=audio.mask_fill)
        self.freq_mask = FrequencyMask(audio.freq_mask_width, audio.freq_masks, fill=audio.mask_fill)

    def forward(self, batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
        """The batch with ``video``, ``audio`` (and ``audio_shifted``) augmented on ``device``."""
        out = dict(batch)
        with torch.autocast(device.type, enabled=False):
            video = batch["video"].to(device, non_blocking=True)
            out["video"] = self.video(video, batch["video_aug"])
            out["audio"] = self.audio(batch["audio"].to(device, non_blocking=True), batch["audio_aug"])
            if "audio_shifted" in batch:
                shifted = batch["audio_shifted"].to(device, non_blocking=True)
                out["audio_shifted"] = self.audio(shifted, batch["audio_shifted_aug"])
        return out

    def video(self, video: Tensor, params: Tensor) -> Tensor:
        """Crop, flip, colour, greyscale and normalise each clip with its own draws.

        Shape:
            ``video (B, 3, T, H, W)`` uint8 (or float in [0, 1]), ``params (B, P)`` -> ``(B, 3, T, s, s)``.
        """
        rows = params.tolist()  # one transfer; the crop boxes size the kernels
        clips = []
        for clip, p in zip(video.unbind(0), rows, strict=True):
            top, left, h, w = (int(v) for v in p[:4])
            if self.fused is None and clip.dtype == torch.uint8:  # the float frames the worker path crops
                clip, top, left = clip[..., top : top + h, left : left + w].float().div_(255.0), 0, 0
            x = resized_crop(clip, (top, left, h, w), self.size)
            clips.append(torch.flip(x, dims=(-1,)) if p[4] else x)
        if self.fused is not None:
            return self._fused_colour(torch.stack(clips), rows)
        out = []
        for x, p in zip(clips, rows, strict=True):
            if p[5]:
                x = self.jitter.apply(x, _jitter_draw(p))
            if p[14]:
                x = RandomGrayscale.apply(x)
            out.append(self.normalize(x) if self.normalize is not None else x)
        return torch.stack(out)

    def _fused_colour(self, video: Tensor, rows: list[list[float]]) -> Tensor:
        """:class:`FusedColor` on the batch: the maps composed per clip (3 x 3, float64, on the CPU
        from the clips' mean colours), applied in one batched product."""
        assert self.fused is not None
        means = rearrange(video.mean(dim=(3, 4)), "b c t -> b t c").double().cpu()  # (B, T, 3)
        maps = [self.fused.compose(_jitter_draw(p) if p[5] else None, bool(p[14]), _const(m))
                for p, m in zip(rows, means.unbind(0), strict=True)]
        a = torch.stack([m[0] for m in maps])
        offset = torch.stack([m[1].expand(video.shape[2], 3) for m in maps])
        applied = torch.tensor([m[2] for m in maps])
        return self.fused.apply(video, a, offset, applied)

    def audio(self, wav: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        """Gain, spectrogram, time and frequency masks, per item.

        Shape:
            ``wav (B, S)``, ``params["gain"] (B,)``, ``time_keep (B, T_a)``, ``freq_keep (B, F)``
            -> ``(B, 1, F, T_a)``.
        """
        gain = params["gain"].to(wav.device, torch.float32)
        if self.audio_cfg.volume != (1.0, 1.0):
            wav = wav * rearrange(gain, "b -> b 1")
        spec: Tensor = self.spectrogram(wav)
        if self.audio_cfg.time_masks > 0:
            spec = self.time_mask.apply(spec, params["time_keep"])
        if self.audio_cfg.freq_masks > 0:
            spec = self.freq_mask.apply(spec, params["freq_keep"])
        return spec


def _const(value: Tensor) -> Callable[[], Tensor]:
    return lambda: value


def _jitter_draw(p: list[float]) -> JitterDraw:
    """The :meth:`ColorJitter.draw` tuple stored in a ``video_aug`` row."""
    return [int(v) for v in p[6:10]], p[10], p[11], p[12], p[13]
