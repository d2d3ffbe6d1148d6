"""Opening media with PyAV (both backends read the header and the audio with it): a path or
:class:`~avlearn.data.decoding.clip.MediaBytes`, its video track, durations, single-threaded codecs.

PyAV is imported at the first open: importing this module needs no PyAV (a GPU machine that trains
from memory, ``benchmarks/gpu``), decoding does.
"""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path
from types import ModuleType
from typing import Any

from avlearn.data.decoding.clip import DecodeError, MediaBytes, MediaSource

__all__ = ["av_module", "open_media", "probe_audio_duration", "probe_duration", "readable", "single_threaded",
           "video_duration", "video_stream"]


@functools.cache
def av_module() -> ModuleType:
    """PyAV, imported at the first decode: importing this module needs no PyAV (a GPU machine that
    trains from memory, ``benchmarks/gpu``), decoding does."""
    try:
        import av
    except ImportError as err:
        raise ImportError(f"decoding media needs PyAV ({err}); install it: pip install av") from err
    return av


def single_threaded(stream: Any) -> None:
    """Decode on the calling thread: a DataLoader worker is one core, codec threads only contend.

    Only possible before the stream's first packet is decoded (a container passed in may be
    further along): then the codec keeps its setting.
    """
    codec = stream.codec_context
    if not codec.is_open:
        codec.thread_count = 1


def open_media(path: MediaSource) -> Any:
    if isinstance(path, MediaBytes):
        return _open_bytes(path)
    p = Path(path)
    if not p.exists():
        raise DecodeError(p, "file not found")
    if p.is_dir():
        raise DecodeError(p, "is a directory, not a media file")
    if p.stat().st_size == 0:
        raise DecodeError(p, "file is empty (0 bytes)")
    try:
        return av_module().open(str(p))
    except (av_module().FFmpegError, OSError, ValueError) as err:
        detail = getattr(err, "strerror", None) or str(err)  # FFmpeg's str() repeats the path
        raise DecodeError(p, f"not a readable media file ({detail})") from None


def _open_bytes(media: MediaBytes) -> Any:
    if not media.data:
        raise DecodeError(media, "file is empty (0 bytes)")
    try:
        return av_module().open(readable(media))
    except (av_module().FFmpegError, OSError, ValueError) as err:
        detail = getattr(err, "strerror", None) or str(err)
        raise DecodeError(media, f"not a readable media file ({detail})") from None


def readable(source: MediaSource) -> str | io.BytesIO:
    """What a reader that takes a path or a file object opens: the path, or a file over the bytes."""
    return io.BytesIO(source.data) if isinstance(source, MediaBytes) else str(source)


def video_stream(container: Any, path: MediaSource) -> Any:
    if not container.streams.video:
        raise DecodeError(path, "has no video track")
    return container.streams.video[0]


def video_duration(container: Any, stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base) + float((stream.start_time or 0) * stream.time_base)
    if container.duration is not None:
        return float(container.duration / av_module().time_base)
    return math.inf


def probe_audio_duration(path: MediaSource) -> float:
    """Duration (s) of the file's audio track (container duration as a fallback; 0 without either)."""
    container = open_media(path)
    try:
        stream = container.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        return float(container.duration or 0) / 1e6
    finally:
        container.close()


def probe_duration(path: MediaSource) -> float:
    """Duration (s) of the file's video track (container duration as a fallback)."""
    container = open_media(path)
    try:
        return video_duration(container, video_stream(container, path))
    finally:
        container.close()
