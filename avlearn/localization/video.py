"""Heatmaps of where the sound is over a whole video: the windows, the maps, the overlay.

:func:`stream_maps` slides non-overlapping windows of ``num_frames`` model frames over a video
(:func:`window_starts`) and scores every grid location of each window against the audio of the
matching audio window; :func:`localize_video` draws the maps over the *original* frames at the
original frame rate and size and writes the MP4 with the sound that was localized (mono) and a
PNG strip of key frames.

Memory does not grow with the video's length, nor with a long keyframe interval: each pass reads
the file once, front to back (:func:`stream_frames`), converting only the frames it keeps to
RGB and holding at most a batch of windows (model pass) or a chunk of :func:`chunk_frames`
frames, about ``_CHUNK_BYTES`` of pixels (overlay pass) at once; only the grid-resolution maps
are kept (:class:`OverlayWriter`). On a 60 s 720p clip with sound this holds ``avlearn localize``'s
peak resident memory to ~1 GB, most of it the libraries (``benchmarks/results/localize_memory.md``).

Used by ``avlearn localize`` (:mod:`avlearn.localization.cli`) and ``avlearn serve``
(:mod:`avlearn.serve.session`), which shows a frame's map from the same windows.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import math
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from einops import rearrange
from torch import Tensor
from tqdm import tqdm

from avlearn.data.audio import build_spectrogram
from avlearn.data.decode import ClipSpec, DecodeError, decode_clip, probe_duration, read_audio
from avlearn.data.decoding.frames import decode_size, display_rotation, upright
from avlearn.data.decoding.media import open_media, single_threaded, video_stream
from avlearn.localization.inputs import ModelInput, normalize_video
from avlearn.localization.learned import Learned, localization_maps, needs_stages
from avlearn.localization.module import upsample_map
from avlearn.localization.overlay import OverlayWriter, normalize_maps, write_strip_png
from avlearn.media import MediaError, media_info
from avlearn.models.av import AVModel

__all__ = ["NO_AUDIO", "FrameWindows", "Loaded", "OverlayOptions", "chunk_frames", "file_rates",
           "localize_frames", "localize_video", "render_overlay", "sound_rate", "stream_frames",
           "stream_maps", "uint8_frames", "window_starts"]


AudioSource = Callable[[float], Tensor]
WindowSource = Callable[[int, int], Tensor]
"""``(first, n) -> (C, n, H, W)``: ``n`` normalised model frames from model frame ``first`` on."""
# original frames decoded, drawn and encoded at a time: 2 at 720p, 1 at 1080p, 32 at 240p
_CHUNK_BYTES, _CHUNK_FRAMES = 6 * 2**20, 32


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
    spec = ClipSpec(num_frames=n, fps=fps, size=size, audio_seconds=0.0, uint8_frames=True)
    return decode_clip(path, t0 + first / fps, spec).video.permute(1, 2, 3, 0)


def stream_frames(path: str, times: np.ndarray, size: int | None = None) -> Generator[np.ndarray, None, None]:
    """The frame of ``path`` nearest each of ``times`` (s, ascending), ``(H, W, 3)`` uint8, in one pass.

    The frames and pixels of :func:`~avlearn.data.decode.decode_clip` (nearest timestamp, ties to
    the later frame, the last frame past the end; upright; short side ``size``, ``None``: as
    coded), but the file is read once from the keyframe before ``times[0]``, where a clip at a
    time seeks back to a keyframe for every clip, and only the frames chosen are converted to RGB.
    Raises :class:`DecodeError` for an unreadable file.
    """
    if len(times) == 0:
        return
    container = open_media(path)
    try:
        stream = video_stream(container, path)
        single_threaded(stream)  # one core: the model and the encoder use the others
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        container.seek(int(max(times[0] - 1.0 / rate, 0.0) / stream.time_base), stream=stream, backward=True)
        to_rgb = _RGB(size)
        for frame in _nearest_frames(_timed(container.decode(stream), rate, path), times, path):
            yield to_rgb(frame)
    finally:
        container.close()


def _timed(frames: Iterator[Any], rate: float, path: str) -> Iterator[tuple[float, Any]]:
    """``(time, frame)`` of decoded frames; a frame without a timestamp is ``1 / rate`` after the last."""
    last = -math.inf
    try:
        for frame in frames:
            last = float(frame.time) if frame.time is not None else last + 1.0 / rate
            yield last, frame
    except av.FFmpegError as err:
        raise DecodeError(path, f"video track is corrupt ({err})") from None


def _nearest_frames(timed: Iterator[tuple[float, Any]], times: np.ndarray, path: str) -> Iterator[Any]:
    """The frame nearest each target of ``times`` (ascending) among frames in time order, by the rule
    of :func:`~avlearn.data.decoding.frames.nearest` (the earlier frame only when it is nearer by
    more than 0.1 ms); past the last frame, the last frame. Holds two frames."""
    k, prev, prev_t = 0, None, -math.inf
    for t, frame in timed:
        while k < len(times) and t >= times[k]:
            yield prev if prev is not None and times[k] - prev_t < t - times[k] - 1e-4 else frame
            k += 1
        if k == len(times):
            return
        prev, prev_t = frame, t
    if prev is None:
        raise DecodeError(path, f"no video frame decodes at or after {times[0]:.3f} s")
    for _ in range(k, len(times)):
        yield prev


class _RGB:
    """Decoded frames to upright ``(H, W, 3)`` uint8 RGB as the decoder converts them (FFmpeg's
    bicubic scaler on this thread); a frame chosen twice in a row is converted once."""

    def __init__(self, size: int | None) -> None:
        self.size, self.reformatter = size, VideoReformatter()
        self.last: tuple[Any, np.ndarray] | None = None

    def __call__(self, frame: Any) -> np.ndarray:
        if self.last is not None and self.last[0] is frame:
            return self.last[1]
        rotation = display_rotation(frame)
        width, height = decode_size(frame.width, frame.height, self.size, rotation)
        rgb = self.reformatter.reformat(frame, width=width, height=height, format="rgb24",
                                        interpolation="BICUBIC", threads=1).to_ndarray()
        array: np.ndarray = upright(rgb[None], rotation)[0]
        self.last = (frame, array)
        return array


class FrameWindows:
    """A :data:`WindowSource` over a forward-only frame stream: windows are asked for in order of
    their first frame (as :func:`stream_maps` does), and frames before the one asked for are dropped,
    so it holds one window.

    ``frames``: ``(H, W, 3)`` uint8 model frames 0, 1, ... (e.g. :func:`stream_frames`).
    """

    def __init__(self, frames: Iterator[np.ndarray], inp: ModelInput) -> None:
        self.frames, self.inp = frames, inp
        self.buffer: list[np.ndarray] = []
        self.first = 0  # model frame of buffer[0]

    def __call__(self, first: int, n: int) -> Tensor:
        """Shape: ``-> (C, n, H, W)`` normalised."""
        if first < self.first:
            raise ValueError(f"window at frame {first} after one at {self.first}: windows must come in order")
        del self.buffer[: first - self.first]
        self.first = first
        while len(self.buffer) < n:
            self.buffer.append(next(self.frames))
        frames = torch.from_numpy(np.stack(self.buffer[:n]))
        return normalize_video(rearrange(frames, "t h w c -> c t h w").float() / 255, self.inp)


def chunk_frames(frames: Iterator[np.ndarray], max_bytes: int = _CHUNK_BYTES,
                 max_frames: int = _CHUNK_FRAMES) -> Iterator[np.ndarray]:
    """Consecutive frames stacked a chunk at a time, each chunk at most ``max_frames`` frames and
    ``max_bytes`` of pixels (at least one frame). Shape: ``(H, W, 3)`` frames ``-> (n, H, W, 3)``."""
    chunk: list[np.ndarray] = []
    for frame in frames:
        if chunk and (len(chunk) == max_frames or (len(chunk) + 1) * frame.nbytes > max_bytes):
            yield np.stack(chunk)
            chunk = []
        chunk.append(frame)
    if chunk:
        yield np.stack(chunk)


def render_overlay(video: str, start: float, out: Path, maps: Tensor, inp: ModelInput, seconds: float,
                   vrate: float, sound: str, sound_sr: int, opts: OverlayOptions) -> None:
    """Draw ``maps`` over the original frames of ``video`` from ``start`` (s), a chunk of
    :func:`chunk_frames` at a time, into ``out`` (with the sound of ``sound``) and its PNG strip.

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
        first = 0
        originals = stream_frames(video, start + np.arange(total) / vrate)
        for frames in chunk_frames(originals, _CHUNK_BYTES, _CHUNK_FRAMES):
            n = len(frames)
            kept += [frames[i - first].copy() for i in picks if first <= i < first + n]  # not the chunk
            if out.suffix.lower() != ".png":
                if writer is None:
                    writer = OverlayWriter(out, vrate, frames.shape[1:3], 1, sound_sr, opts.cmap)
                writer.add(frames, heat[first : first + n])
            bar.update(n)
            first += n
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

    def audio_at(t: float) -> Tensor:
        return read_audio(sound, inp.audio_start(t), inp.audio_seconds, inp.sample_rate)

    total = max(1, math.floor(seconds * inp.fps + 1e-6))
    with contextlib.closing(stream_frames(video, start + np.arange(total) / inp.fps, inp.size)) as frames:
        maps = stream_maps(model, FrameWindows(frames, inp), audio_at, inp, total, start, opts.batch_size,
                           learned, progress=opts.progress)
    release_freed_memory()  # the model pass's decoder and buffers, before the encoder's come
    render_overlay(video, start, out, maps, inp, seconds, vrate, sound, sound_sr, opts)
    release_freed_memory()


def release_freed_memory() -> None:
    """Hand the heap pages freed so far back to the system (glibc's ``malloc_trim``; nothing elsewhere).

    Frames, codec buffers and float copies are freed after each chunk, but glibc keeps the pages,
    so the process's resident size would carry the largest pass into the next one and to the
    exit (where unloading torch's libraries pages in another ~130 MB of their code)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
