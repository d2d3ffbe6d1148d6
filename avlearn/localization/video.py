"""Heatmaps of where the sound is over a whole video: the windows, the maps, the overlay.

:func:`stream_maps` slides non-overlapping windows of ``num_frames`` model frames over a video
(:func:`window_starts`) and scores every grid location of each window against the audio of the
matching audio window; :func:`localize_video` draws the maps over the *original* frames at the
original frame rate and size and writes the MP4 with the sound that was localized (mono) and a
PNG strip of key frames. Memory does not grow with the video's length: the model's windows are
decoded a batch at a time, only the grid-resolution maps are kept, and the original frames are
decoded, drawn over and encoded ``_CHUNK`` at a time (:class:`OverlayWriter`).

Used by ``avlearn localize`` (:mod:`avlearn.localization.cli`) and ``avlearn serve``
(:mod:`avlearn.serve.session`), which shows a frame's map from the same windows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from avlearn.data.audio import build_spectrogram
from avlearn.data.decode import ClipSpec, DecodeError, decode_clip, probe_duration, read_audio
from avlearn.localization.inputs import ModelInput, normalize_video
from avlearn.localization.learned import Learned, localization_maps, needs_stages
from avlearn.localization.module import upsample_map
from avlearn.localization.overlay import OverlayWriter, normalize_maps, write_strip_png
from avlearn.media import MediaError, media_info
from avlearn.models.av import AVModel

__all__ = ["NO_AUDIO", "Loaded", "OverlayOptions", "file_rates", "localize_frames", "localize_video",
           "render_overlay", "sound_rate", "stream_maps", "uint8_frames", "window_starts"]


AudioSource = Callable[[float], Tensor]
WindowSource = Callable[[int, int], Tensor]
"""``(first, n) -> (C, n, H, W)``: ``n`` normalised model frames from model frame ``first`` on."""
_CHUNK = 32  # original frames decoded, drawn and encoded at a time


Loaded = tuple[AVModel, ModelInput, Learned | None]
"""What :func:`load_for_localization` returns: the model, its input settings, its localizer."""



@dataclasses.dataclass(frozen=True)
class OverlayOptions:
    """How the overlay is drawn: maps normalised per frame or over the video, the colour map, key
    frames in the PNG strip, windows per model batch, progress bars."""

    per_frame: bool = False
    cmap: str = "jet"
    strip_frames: int = 6
    batch_size: int = 4
    progress: bool = True


def window_starts(total: int, length: int) -> list[int]:
    """First frames of non-overlapping windows of ``length`` covering ``total`` frames (the last
    one overlaps its predecessor when ``length`` does not divide ``total``)."""
    starts = list(range(0, max(total - length, 0) + 1, length))
    if starts[-1] + length < total:
        starts.append(total - length)
    return starts


@torch.no_grad()
def stream_maps(
    model: AVModel,
    read_window: WindowSource,
    audio_at: AudioSource,
    inp: ModelInput,
    total: int,
    start: float = 0.0,
    batch_size: int = 4,
    learned: Learned | None = None,
    progress: bool = False,
) -> Tensor:
    """Per-frame maps of ``total`` model frames, decoding ``batch_size`` windows at a time.

    Args:
        read_window: gives the frames of one window (see :data:`WindowSource`); a window of a
            video shorter than ``inp.num_frames`` is padded by repeating its last frame.
        audio_at: ``t -> (S,)`` waveform of the audio window of a clip starting at ``t`` seconds.
        total: model frames (at ``inp.fps``) to cover; ``start``: time (s) of frame 0.
        learned: a learned localizer and its spec; ``None``: post hoc.

    Shape:
        ``-> (total, H', W')`` maps at grid resolution.
    """
    length = inp.num_frames
    starts = window_starts(total, length)
    spectrogram = build_spectrogram(inp.spec)
    maps: Tensor | None = None
    batches = range(0, len(starts), batch_size)
    for b0 in tqdm(batches, desc="localize: windows", unit="batch", disable=not progress, dynamic_ncols=True):
        chunk = starts[b0 : b0 + batch_size]
        clips = torch.stack([_padded(read_window(s, min(length, total - s)), length) for s in chunk])
        wavs = torch.stack([audio_at(start + s / inp.fps) for s in chunk])
        out = model(clips, spectrogram(wavs), video_stages=needs_stages(learned))
        grid_maps = localization_maps(model, out, learned)  # (b, T', H', W')
        window_maps = upsample_map(grid_maps, (length, *grid_maps.shape[-2:]))
        if maps is None:
            maps = torch.zeros(max(total, length), *window_maps.shape[-2:])
        for s, m in zip(chunk, window_maps, strict=True):
            maps[s : s + length] = m
    assert maps is not None
    return maps[:total]


def _padded(video: Tensor, length: int) -> Tensor:
    """``(C, n, H, W) -> (C, length, H, W)``, the last frame repeated."""
    if video.shape[1] >= length:
        return video
    return torch.cat([video, video[:, -1:].expand(-1, length - video.shape[1], -1, -1)], dim=1)


@torch.no_grad()
def localize_frames(
    model: AVModel,
    video: Tensor,
    audio_at: AudioSource,
    inp: ModelInput,
    start: float = 0.0,
    batch_size: int = 4,
    learned: Learned | None = None,
) -> Tensor:
    """Per-frame cosine maps of a decoded video against the audio of each window.

    The whole video in memory; ``avlearn localize`` streams it with :func:`stream_maps`.

    Args:
        model: the pretrained pair (put in ``eval()`` mode by the caller).
        video: ``(C, M, H, W)`` frames at ``inp.fps``, already normalised.
        audio_at: ``t -> (S,)`` waveform of the audio window of a clip starting at ``t`` seconds.
        start: time (s) of frame 0.
        learned: a learned localizer and its spec (:func:`resolve_localizer`); ``None``: post hoc.

    Shape:
        ``-> (M, H', W')`` maps at grid resolution, one per input frame.
    """
    return stream_maps(model, lambda s, n: video[:, s : s + n], audio_at, inp, video.shape[1], start,
                       batch_size, learned)


def file_rates(path: str) -> tuple[float, int | None]:
    """(video frame rate, audio sample rate or None) of a file; :class:`DecodeError` when it is not media."""
    try:
        info = media_info(path)
    except MediaError as err:
        raise DecodeError(path, str(err)) from None
    return info.video_rate, info.sample_rate


NO_AUDIO = "has no audio track"


def sound_rate(path: str, hint: str = "pass --audio with a file that has sound") -> int:
    """Sample rate of the sound to localize in ``path``; :class:`DecodeError` when it has none."""
    _, sr = file_rates(path)
    if sr is None:
        raise DecodeError(path, NO_AUDIO, hint=hint)
    return sr


def uint8_frames(path: str, t0: float, fps: float, size: int | None, first: int, n: int) -> Tensor:
    """``(n, H, W, 3)`` uint8: frames ``first .. first + n - 1`` of ``path`` at ``fps`` from ``t0`` (s)."""
    spec = ClipSpec(num_frames=n, fps=fps, size=size, audio_seconds=0.0)
    clip = decode_clip(path, t0 + first / fps, spec).video
    return (clip * 255).round_().to(torch.uint8).permute(1, 2, 3, 0)


def _chunks(total: int, size: int = _CHUNK) -> Iterator[tuple[int, int]]:
    """``(first, n)`` of consecutive chunks of at most ``size`` covering ``total``."""
    for first in range(0, total, size):
        yield first, min(size, total - first)


def render_overlay(video: str, start: float, out: Path, maps: Tensor, inp: ModelInput, seconds: float,
                   vrate: float, sound: str, sound_sr: int, opts: OverlayOptions) -> None:
    """Draw ``maps`` over the original frames of ``video`` from ``start`` (s), ``_CHUNK`` at a time,
    into ``out`` (with the sound of ``sound``) and its PNG strip.

    Shape: ``maps (M, H', W')``, one per model frame at ``inp.fps``.
    """
    total = max(1, math.floor(seconds * vrate + 1e-6))
    # original frame i (time i / vrate) takes the map of the nearest model frame
    idx = np.clip(np.round(np.arange(total) / vrate * inp.fps).astype(np.int64), 0, len(maps) - 1)
    heat = normalize_maps(maps.numpy()[idx], per_frame=opts.per_frame)  # (total, H', W'): small
    picks = np.unique(np.round(np.linspace(0, total - 1, min(opts.strip_frames, total))).astype(np.int64))
    kept: list[np.ndarray] = []  # the strip's key frames
    writer: OverlayWriter | None = None
    bar = tqdm(total=total, desc="localize: overlay", unit="frame", disable=not opts.progress,
               dynamic_ncols=True)
    try:
        for first, n in _chunks(total):
            frames = uint8_frames(video, start, vrate, None, first, n).numpy()
            kept += [frames[i - first] for i in picks if first <= i < first + n]
            if out.suffix.lower() != ".png":
                if writer is None:
                    writer = OverlayWriter(out, vrate, frames.shape[1:3], 1, sound_sr, opts.cmap)
                writer.add(frames, heat[first : first + n])
            bar.update(n)
        if writer is not None:
            writer.finish(read_audio(sound, start, total / vrate, sound_sr).numpy())
            writer.close()
            print(f"wrote {out} ({total} frames at {vrate:g} fps)")
    finally:
        bar.close()
    strip = out if out.suffix.lower() == ".png" else out.with_suffix(".png")
    write_strip_png(np.stack(kept), heat[picks], strip, n=len(kept), cmap=opts.cmap)
    print(f"wrote {strip}")


def localize_video(video: str, out: Path, loaded: Loaded, audio: str | None = None, start: float = 0.0,
                   seconds: float | None = None, opts: OverlayOptions | None = None) -> None:
    """The overlay video (``.mp4``/``.mkv``/``.mov``, plus a PNG strip) or strip (``.png``) of ``video``
    from ``start`` for ``seconds`` (default: to the end), localizing the sound of ``audio`` (default:
    the video's own). ``loaded``: :func:`~avlearn.localization.inputs.load_for_localization`'s result.
    Raises :class:`DecodeError` naming an unusable file."""
    model, inp, learned = loaded
    opts = opts or OverlayOptions()
    duration = probe_duration(video)
    seconds = duration - start if seconds is None else min(seconds, duration - start)
    if not math.isfinite(seconds) or seconds <= 0:
        raise DecodeError(video, f"nothing to process from {start} s (duration {duration:.3f} s)",
                          hint="pass a --start below the duration")
    vrate, _ = file_rates(video)
    sound = audio or video
    sound_sr = sound_rate(sound)

    def read_window(first: int, n: int) -> Tensor:
        frames = uint8_frames(video, start, inp.fps, inp.size, first, n)
        return normalize_video(frames.permute(3, 0, 1, 2).float() / 255, inp)

    def audio_at(t: float) -> Tensor:
        return read_audio(sound, inp.audio_start(t), inp.audio_seconds, inp.sample_rate)

    total = max(1, math.floor(seconds * inp.fps + 1e-6))
    maps = stream_maps(model, read_window, audio_at, inp, total, start, opts.batch_size, learned,
                       progress=opts.progress)
    render_overlay(video, start, out, maps, inp, seconds, vrate, sound, sound_sr, opts)
