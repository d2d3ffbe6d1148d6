"""``avlearn localize``: heatmap video of where the sound is.

Usage::

    avlearn localize VIDEO --checkpoint CKPT --out out.mp4 [--audio OTHER] [--start S --seconds D]

``localize`` decodes the video at the model's frame rate and size (the settings stored with the
checkpoint's run config, or the AVID defaults: 8 frames at 16 fps, short side 112, 2 s of
16 kHz audio), slides non-overlapping windows of ``num_frames`` frames over it, scores every
grid location of each window against the audio of the matching audio window (of the video
itself or of ``--audio``) and draws the maps over the *original* frames at the original
frame rate and size. The maps come from the localizer trained with the encoders when the
checkpoint has one (``x.localizer.safetensors`` next to ``x.safetensors``, written by a run with
``localization.weight > 0``), else post hoc from the model's own projection heads (see
:meth:`AVLocalizer.posthoc`); ``--localizer posthoc`` or ``--localizer FILE`` chooses. The MP4
carries the sound that was localized (mono); a PNG strip of key
frames is written next to it (``--out x.png`` writes only the strip).

Memory does not grow with the video's length: the model's windows are decoded a batch at a time
(:func:`stream_maps`), only the grid-resolution maps are kept, and the original frames are
decoded, drawn over and encoded ``_CHUNK`` at a time (:class:`OverlayWriter`). Progress bars
show both passes (``--quiet`` hides them).

Scoring on the synthetic collection is ``avlearn evaluate localization``
(:mod:`avlearn.localization.evaluate`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from avlearn.data.audio import build_spectrogram
from avlearn.data.decode import ClipSpec, DecodeError, decode_clip, probe_duration, read_audio
from avlearn.localization.export import Learned, localization_maps
from avlearn.localization.inputs import (
    CHECKPOINT_HELP,
    LOCALIZER_HELP,
    ModelInput,
    load_for_localization,
    normalize_video,
)
from avlearn.localization.module import upsample_map
from avlearn.localization.overlay import OverlayWriter, normalize_maps, write_strip_png
from avlearn.media import MediaError, media_info
from avlearn.models.av import AVModel
from avlearn.models.checkpoint import CheckpointError

__all__ = [
    "NO_AUDIO",
    "Loaded",
    "file_rates",
    "localize_file",
    "localize_frames",
    "main",
    "sound_rate",
    "stream_maps",
    "uint8_frames",
    "window_starts",
]


AudioSource = Callable[[float], Tensor]
WindowSource = Callable[[int, int], Tensor]
"""``(first, n) -> (C, n, H, W)``: ``n`` normalised model frames from model frame ``first`` on."""
_CHUNK = 32  # original frames decoded, drawn and encoded at a time


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
        out = model(clips, spectrogram(wavs))
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


def _override(inp: ModelInput, args: argparse.Namespace) -> ModelInput:
    changes = {k: getattr(args, k) for k in ("fps", "size", "num_frames", "audio_seconds")
               if getattr(args, k) is not None}
    return dataclasses.replace(inp, **changes)


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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avlearn localize", description=__doc__.split("\n\n")[0])
    p.add_argument("video", help="any video file with a sound track")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--localizer", default="auto", help=LOCALIZER_HELP)
    p.add_argument("--out", required=True, help="output .mp4 (plus a .png strip next to it) or .png")
    p.add_argument("--audio", help="localize this file's sound instead of the video's own")
    p.add_argument("--start", type=float, default=0.0, help="start time in seconds")
    p.add_argument("--seconds", type=float, help="length to process (default: to the end)")
    p.add_argument("--fps", type=float, help="model frame rate (default: the checkpoint's)")
    p.add_argument("--size", type=int, help="model short side in pixels (default: the checkpoint's)")
    p.add_argument("--num-frames", type=int, help="frames per window (default: the checkpoint's)")
    p.add_argument("--audio-seconds", type=float, help="audio per window (default: the checkpoint's)")
    p.add_argument("--strip-frames", type=int, default=6, help="key frames in the PNG strip")
    p.add_argument("--per-frame", action="store_true", help="normalise each frame's map on its own")
    p.add_argument("--cmap", default="jet", choices=["jet", "inferno"])
    p.add_argument("--batch-size", type=int, default=4, help="windows run through the model at a time")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def uint8_frames(path: str, t0: float, fps: float, size: int | None, first: int, n: int) -> Tensor:
    """``(n, H, W, 3)`` uint8: frames ``first .. first + n - 1`` of ``path`` at ``fps`` from ``t0`` (s)."""
    spec = ClipSpec(num_frames=n, fps=fps, size=size, audio_seconds=0.0)
    clip = decode_clip(path, t0 + first / fps, spec).video
    return (clip * 255).round_().to(torch.uint8).permute(1, 2, 3, 0)


def _chunks(total: int, size: int = _CHUNK) -> Iterator[tuple[int, int]]:
    """``(first, n)`` of consecutive chunks of at most ``size`` covering ``total``."""
    for first in range(0, total, size):
        yield first, min(size, total - first)


def _render(args: argparse.Namespace, out: Path, maps: Tensor, inp: ModelInput, seconds: float, vrate: float,
            sound: str, sound_sr: int) -> None:
    """Draw ``maps`` over the original frames, ``_CHUNK`` at a time, into ``out`` and its PNG strip."""
    total = max(1, math.floor(seconds * vrate + 1e-6))
    # original frame i (time i / vrate) takes the map of the nearest model frame
    idx = np.clip(np.round(np.arange(total) / vrate * inp.fps).astype(np.int64), 0, len(maps) - 1)
    heat = normalize_maps(maps.numpy()[idx], per_frame=args.per_frame)  # (total, H', W'): small
    picks = np.unique(np.round(np.linspace(0, total - 1, min(args.strip_frames, total))).astype(np.int64))
    kept: list[np.ndarray] = []  # the strip's key frames
    writer: OverlayWriter | None = None
    bar = tqdm(total=total, desc="localize: overlay", unit="frame", disable=args.quiet, dynamic_ncols=True)
    try:
        for first, n in _chunks(total):
            frames = uint8_frames(args.video, args.start, vrate, None, first, n).numpy()
            kept += [frames[i - first] for i in picks if first <= i < first + n]
            if out.suffix.lower() != ".png":
                if writer is None:
                    writer = OverlayWriter(out, vrate, frames.shape[1:3], 1, sound_sr, args.cmap)
                writer.add(frames, heat[first : first + n])
            bar.update(n)
        if writer is not None:
            writer.finish(read_audio(sound, args.start, total / vrate, sound_sr).numpy())
            writer.close()
            print(f"wrote {out} ({total} frames at {vrate:g} fps)")
    finally:
        bar.close()
    strip = out if out.suffix.lower() == ".png" else out.with_suffix(".png")
    write_strip_png(np.stack(kept), heat[picks], strip, n=len(kept), cmap=args.cmap)
    print(f"wrote {strip}")


Loaded = tuple[AVModel, ModelInput, "Learned | None"]
"""What :func:`load_for_localization` returns: the model, its input settings, its localizer."""


def localize_file(argv: list[str], loaded: Loaded | None = None) -> Path:
    """Run ``avlearn localize ARGV`` without exiting; with ``loaded`` the model is not read again
    (``--checkpoint`` still required, unused). Returns the output path; raises :class:`DecodeError`,
    :class:`CheckpointError` or :class:`ValueError`. ``avlearn serve`` renders its MP4s with it."""
    args = _parser().parse_args(argv)
    out = Path(args.out)
    _localize(args, out, loaded)
    return out


def _localize(args: argparse.Namespace, out: Path, loaded: Loaded | None = None) -> None:
    model, inp, learned = loaded or load_for_localization(args.checkpoint, args.localizer)
    inp = _override(inp, args)
    duration = probe_duration(args.video)
    seconds = duration - args.start if args.seconds is None else min(args.seconds, duration - args.start)
    if not math.isfinite(seconds) or seconds <= 0:
        raise DecodeError(args.video, f"nothing to process from {args.start} s (duration {duration:.3f} s)",
                          hint="pass a --start below the duration")
    vrate, _ = file_rates(args.video)
    sound = args.audio or args.video
    sound_sr = sound_rate(sound)

    def read_window(first: int, n: int) -> Tensor:
        frames = uint8_frames(args.video, args.start, inp.fps, inp.size, first, n)
        return normalize_video(frames.permute(3, 0, 1, 2).float() / 255, inp)

    def audio_at(t: float) -> Tensor:
        return read_audio(sound, inp.audio_start(t), inp.audio_seconds, inp.sample_rate)

    total = max(1, math.floor(seconds * inp.fps + 1e-6))
    maps = stream_maps(model, read_window, audio_at, inp, total, args.start, args.batch_size, learned,
                       progress=not args.quiet)
    _render(args, out, maps, inp, seconds, vrate, sound, sound_sr)


def main(argv: list[str] | None = None) -> int:
    """``avlearn localize``; returns the exit code."""
    args = _parser().parse_args(argv)
    out = Path(args.out)
    if out.suffix.lower() not in (".mp4", ".mkv", ".mov", ".png"):
        print(f"avlearn localize: --out must end in .mp4, .mkv, .mov or .png, got {out}", file=sys.stderr)
        return 2
    try:
        _localize(args, out)
    except CheckpointError as err:  # --checkpoint or --localizer names no usable file: usage
        print(f"avlearn localize: {err}", file=sys.stderr)
        return 2
    except (DecodeError, ValueError) as err:
        print(f"avlearn localize: {err}", file=sys.stderr)
        return 1
    return 0
