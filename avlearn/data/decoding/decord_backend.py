"""The ``"decord"`` backend: decord decodes the frames (resized by it), PyAV reads the header and the
audio. decord mishandles files with a display rotation (phone videos): those go through PyAV.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from avlearn.data.decoding.audio import clip_with_audio
from avlearn.data.decoding.clip import Clip, ClipSpec, DecodeError, MediaSource
from avlearn.data.decoding.frames import (
    check_start,
    clip_frame_times,
    display_rotation,
    nearest,
    out_size,
    to_video_tensor,
)
from avlearn.data.decoding.media import av_module, open_media, readable, video_stream
from avlearn.data.decoding.pyav_backend import decode_pyav

__all__ = ["decode_decord"]


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
            reader = decord.VideoReader(readable(path), ctx=decord.cpu(0), width=width, height=height,
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
        video = to_video_tensor(frames, spec.uint8_frames)
        return clip_with_audio(container, path, start, spec, video, times[chosen, 0].astype(np.float64),
                               extra_audio)
    finally:
        container.close()


def _decord_frames_resized(decord: Any, path: MediaSource, chosen: np.ndarray,
                           width: int, height: int) -> np.ndarray:
    """Frames ``chosen`` decoded by decord at the file's size, then resized. Shape ``(T, H, W, 3)``."""
    try:
        reader = decord.VideoReader(readable(path), ctx=decord.cpu(0), num_threads=1)
        native = reader.get_batch(np.unique(chosen).tolist()).asnumpy()
    except Exception as err:
        raise DecodeError(path, f"video frames cannot be decoded ({err})") from None
    resized = {
        int(i): av_module().VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").to_ndarray(
            width=width, height=height, format="rgb24", interpolation="BICUBIC")
        for i, img in zip(np.unique(chosen), native, strict=True)
    }
    return np.stack([resized[int(i)] for i in chosen])
