"""The ``"decord"`` backend: decord decodes the frames (resized by it), PyAV reads the header and the
audio. decord mishandles files with a display rotation (phone videos): those go through PyAV.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from avlearn.data.decoding.audio import read_audio_padded, read_extra_audio
from avlearn.data.decoding.clip import (
    Clip,
    ClipSpec,
    DecodeError,
    MediaBytes,
    MediaSource,
    audio_window_start,
    check_start,
    clip_frame_times,
    display_rotation,
    nearest,
    out_size,
    to_video_tensor,
)
from avlearn.data.decoding.media import av_module, open_media, video_stream
from avlearn.data.decoding.pyav_backend import decode_pyav

__all__ = ["decode_decord"]


def _decord_source(path: MediaSource) -> Any:
    """What ``decord.VideoReader`` opens: a path, or a file object over in-memory bytes."""
    return io.BytesIO(path.data) if isinstance(path, MediaBytes) else str(path)


def decode_decord(path: MediaSource, start: float, spec: ClipSpec,
                   extra_audio: Sequence[float] = ()) -> Clip:
    import decord  # imported lazily: its import is slow and only this backend needs it

    container = open_media(path)  # header (size, duration) and the audio come from PyAV
    try:
        stream = video_stream(container, path)
        try:  # the display rotation is on decoded frames: decode the first one
            rotation = display_rotation(next(container.decode(stream), None))
        except av_module().FFmpegError as err:
            raise DecodeError(path, f"video track is corrupt ({err})") from None
        if rotation:
            # decord 0.6 turns the picture but keeps the coded W x H (90/270 come out squashed, and
            # the transposed size fails): rotated files (rare: phone videos) go through PyAV.
            container.close()
            return decode_pyav(path, start, spec, extra_audio)
        width, height = out_size(stream.codec_context.width, stream.codec_context.height, spec.size)
        try:
            reader = decord.VideoReader(_decord_source(path), ctx=decord.cpu(0), width=width, height=height,
                                        num_threads=1)
        except Exception as err:  # decord raises its own DECORDError (a RuntimeError) or others
            raise DecodeError(path, f"video track cannot be read ({err})") from None
        n = len(reader)
        if n == 0:
            raise DecodeError(path, "video track has no frames")
        times = reader.get_frame_timestamp(np.arange(n))
        check_start(path, start, float(times[-1, 1]))
        targets = clip_frame_times(start, spec)
        chosen = nearest(times[:, 0].astype(np.float64), targets)
        try:
            frames = reader.get_batch(chosen.tolist()).asnumpy()
        except Exception as err:
            if (width, height) == (stream.codec_context.width, stream.codec_context.height):
                raise DecodeError(path, f"video frames cannot be decoded ({err})") from None
            # decord's resize breaks for some output sizes (e.g. 48x32 from 96x64: it returns padded
            # 4-channel rows and get_batch fails, dmlc/decord#336): decode at the file's size instead.
            frames = _decord_frames_resized(decord, path, chosen, width, height)
        del reader
        audio_start = audio_window_start(start, spec)
        audio, padded = read_audio_padded(container, str(path), audio_start, spec.audio_seconds,
                                           spec.sample_rate)
        video = to_video_tensor(frames, spec.uint8_frames)
        extra = read_extra_audio(container, path, extra_audio, spec)
        return Clip(video, audio, start, audio_start, times[chosen, 0].astype(np.float64), extra, padded)
    finally:
        container.close()


def _decord_frames_resized(decord: Any, path: MediaSource, chosen: np.ndarray,
                           width: int, height: int) -> np.ndarray:
    """Frames ``chosen`` decoded by decord at the file's size, then resized. Shape ``(T, H, W, 3)``."""
    try:
        reader = decord.VideoReader(_decord_source(path), ctx=decord.cpu(0), num_threads=1)
        native = reader.get_batch(np.unique(chosen).tolist()).asnumpy()
    except Exception as err:
        raise DecodeError(path, f"video frames cannot be decoded ({err})") from None
    resized = {
        int(i): av_module().VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").to_ndarray(
            width=width, height=height, format="rgb24", interpolation="BICUBIC")
        for i, img in zip(np.unique(chosen), native, strict=True)
    }
    return np.stack([resized[int(i)] for i in chosen])
