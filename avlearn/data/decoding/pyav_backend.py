"""The ``"pyav"`` backend: only the chosen frames are converted to RGB, by FFmpeg's scaler straight to
the decode size; codecs and scaler run on the calling thread (a DataLoader worker is one core).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from avlearn.data.decoding import media
from avlearn.data.decoding.audio import clip_with_audio
from avlearn.data.decoding.clip import Clip, ClipSpec, DecodeError, MediaSource
from avlearn.data.decoding.clock import CLOCK
from avlearn.data.decoding.frames import (
    check_start,
    clip_frame_times,
    decode_size,
    display_rotation,
    nearest,
    to_video_tensor,
    upright,
)
from avlearn.data.decoding.media import av_module, open_media, video_duration, video_stream

if TYPE_CHECKING:
    from av.video.reformatter import VideoReformatter

__all__ = ["decode_clips", "decode_pyav"]


_THREAD = threading.local()


def _reformatter() -> VideoReformatter:
    """This thread's frame converter: one FFmpeg scaler context reused for every frame of a size."""
    reformatter: VideoReformatter | None = getattr(_THREAD, "reformatter", None)
    if reformatter is None:
        av_module()  # PyAV, or a message saying how to install it
        from av.video.reformatter import VideoReformatter

        reformatter = _THREAD.reformatter = VideoReformatter()
    return reformatter


def _rgb(frame: Any, width: int, height: int) -> np.ndarray:
    """A decoded frame as ``(height, width, 3)`` uint8 RGB, scaled (bicubic) by FFmpeg in one thread."""
    rgb = _reformatter().reformat(frame, width=width, height=height, format="rgb24",
                                  interpolation="BICUBIC", threads=1)
    array: np.ndarray = rgb.to_ndarray()
    return array


def decode_pyav(path: MediaSource, start: float, spec: ClipSpec,
                extra_audio: Sequence[float] = ()) -> Clip:
    with _opened(path) as (container, stream):
        return _decode_pyav_window(container, stream, path, start, spec, extra_audio)


def decode_clips(path: str | os.PathLike[str], starts: Sequence[float], spec: ClipSpec) -> list[Clip]:
    """Clips of ``spec`` at each of ``starts`` from one open of the file (PyAV), in the order given.

    Each clip's frames equal ``decode_clip(path, start, spec)``'s, its audio to ~1e-6 (the AAC
    decoder carries overlap state across a seek); the file is opened (header parsed, codecs set
    up) once instead of once per clip. Windows are decoded in time order.
    """
    with _opened(path) as (container, stream):
        order = sorted(range(len(starts)), key=lambda i: starts[i])
        clips = {i: _decode_pyav_window(container, stream, path, starts[i], spec, ()) for i in order}
        return [clips[i] for i in range(len(starts))]


@contextlib.contextmanager
def _opened(path: MediaSource) -> Iterator[tuple[Any, Any]]:
    """``(container, video stream)`` of ``path``, codecs on this thread; closed at the block's end."""
    CLOCK.start()
    container = open_media(path)
    try:
        stream = video_stream(container, path)
        media.single_threaded(stream)
        CLOCK.lap("open")
        yield container, stream
    finally:
        container.close()
        CLOCK.lap("close")


def _decode_pyav_window(container: Any, stream: Any, path: MediaSource, start: float,
                        spec: ClipSpec, extra_audio: Sequence[float]) -> Clip:
    """The clip at ``start`` from an open container (see :func:`decode_clip`)."""
    duration = video_duration(container, stream)
    check_start(path, start, duration)
    targets = clip_frame_times(start, spec)
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    tb = stream.time_base
    # Keep the last frame before the first target and every frame up to the first frame at or
    # after the last target: exactly the candidates the nearest-timestamp rule can choose from.
    # Frames stay in the decoder's YUV until the choice is made: only the chosen ones are converted.
    seek_t = max(targets[0] - 1.0 / rate, 0.0)
    container.seek(int(seek_t / tb), stream=stream, backward=True)
    CLOCK.lap("video seek")
    kept: list[Any] = []
    times: list[float] = []
    last_t = -math.inf
    try:
        for frame in container.decode(stream):
            t = float(frame.time) if frame.time is not None else last_t + 1.0 / rate
            last_t = t
            if t < targets[0]:
                kept, times = [frame], [t]
                continue
            kept.append(frame)
            times.append(t)
            if t >= targets[-1]:
                break
    except av_module().FFmpegError as err:
        raise DecodeError(path, f"video track is corrupt ({err})") from None
    if not kept:
        raise DecodeError(path, f"no video frame decodes at or after {start:.3f} s")
    CLOCK.lap("video decode")
    chosen = nearest(np.asarray(times), targets)
    rotation = display_rotation(kept[0])
    width, height = decode_size(kept[0].width, kept[0].height, spec.size, rotation)
    cache = {int(i): _rgb(kept[int(i)], width, height) for i in np.unique(chosen)}
    frames = upright(np.stack([cache[int(i)] for i in chosen]), rotation)
    CLOCK.lap("frame convert")
    video = to_video_tensor(frames, spec.uint8_frames)
    CLOCK.lap("to tensor")
    clip = clip_with_audio(container, path, start, spec, video, np.asarray(times)[chosen], extra_audio)
    CLOCK.start()
    return clip
