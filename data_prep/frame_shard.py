"""``avlearn prepare shard --format frames``: each video decoded once into JPEG frames at the decode size
and its audio track into 16-bit PCM (the layout: :mod:`avlearn.data.frame_shards`).

A file is decoded with the file path's own pieces (PyAV, one thread; FFmpeg's bicubic scaler straight
to the decode size; the display rotation; the audio reader's downmix and sinc resampler), so a stored
frame is the file path's frame before JPEG. :func:`load_frames` is the per-file task that
:func:`data_prep.shard.write_shards` runs in its pool or on Ray; a file that cannot be decoded is
left out with the reason, as any file the sharder cannot store. :func:`describe` adds the members'
byte offsets to a closed shard's index entry.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tarfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.io import encode_jpeg

from avlearn.data.decoding import media
from avlearn.data.decoding.audio import read_audio_padded
from avlearn.data.decoding.frames import decode_size, display_rotation, upright
from avlearn.data.decoding.media import open_media, video_duration, video_stream
from avlearn.data.decoding.pyav_backend import _rgb
from avlearn.data.frame_shards import FRAMES_FORMAT, to_pcm
from avlearn.data.manifest import VideoInfo

__all__ = ["FRAMES_FORMAT", "FrameOptions", "describe", "encode_video", "load_frames"]


@dataclasses.dataclass(frozen=True)
class FrameOptions:
    """What the frames hold (see ``avlearn prepare shard --help``).

    Attributes:
        decode_size: short side of the stored frames (``data.decode_size``: 128 for 112 crops).
        frame_rate: 0 keeps every frame of the file; ``R > 0`` the frames nearest to ``k / R`` s.
        quality: JPEG quality (1-100).
        sample_rate: the stored audio's rate (``data.sample_rate``).
    """

    decode_size: int = 128
    frame_rate: float = 0.0
    quality: int = 90
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        bad = self.decode_size < 1 or self.frame_rate < 0 or self.sample_rate < 1
        if bad or not 1 <= self.quality <= 100:
            raise ValueError(f"need --decode-size >= 1, --frame-rate >= 0, 1 <= --jpeg-quality <= 100, "
                             f"--sample-rate >= 1; got {self.decode_size}, {self.frame_rate}, "
                             f"{self.quality}, {self.sample_rate}")


def _kept(frames: Iterator[Any], rate: float, last: float) -> Iterator[tuple[float, Any]]:
    """``(time, frame)`` of the frames to store, in order: all of them (``rate == 0``), or the frame
    nearest to each ``k / rate`` up to ``last`` s (ties to the later one, as the clip decoder), once."""
    prev: tuple[float, Any] | None = None
    k, taken = 0, -math.inf
    for frame in frames:
        t = float(frame.time) if frame.time is not None else (prev[0] if prev else 0.0)
        if rate <= 0:
            yield t, frame
            continue
        while k / rate <= t:
            target = k / rate
            pick = prev if prev is not None and target - prev[0] < t - target - 1e-4 else (t, frame)
            if pick[0] > taken:
                taken = pick[0]
                yield pick
            k += 1
        prev = (t, frame)
    if prev is not None and prev[0] > taken and k / rate <= last:  # targets past the last frame
        yield prev


def _jpeg(frame: Any, width: int, height: int, rotation: int, quality: int) -> bytes:
    rgb = upright(_rgb(frame, width, height)[None], rotation)[0]
    chw = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()
    with warnings.catch_warnings():  # deprecated for torchcodec; torchvision is what every machine has
        warnings.simplefilter("ignore", DeprecationWarning)
        return bytes(encode_jpeg(chw, quality=quality).numpy().tobytes())


def _frames(container: Any, stream: Any, path: str,
            opts: FrameOptions) -> tuple[list[float], list[bytes], int, int]:
    """Stored frame times, their JPEGs and the frames' ``(height, width)``."""
    times: list[float] = []
    jpegs: list[bytes] = []
    size = (0, 0)
    duration = video_duration(container, stream)
    try:
        for t, frame in _kept(container.decode(stream), opts.frame_rate, duration):
            rotation = display_rotation(frame)
            width, height = decode_size(frame.width, frame.height, opts.decode_size, rotation)
            jpegs.append(_jpeg(frame, width, height, rotation, opts.quality))
            times.append(round(t, 6))
            size = (height, width) if rotation not in (90, 270) else (width, height)
    except media.av_module().FFmpegError as err:
        raise ValueError(f"video track is corrupt ({err})") from None
    if not jpegs:
        raise ValueError("no video frame decodes")
    return times, jpegs, size[0], size[1]


def _audio(container: Any, path: str, end: float, sample_rate: int) -> tuple[bytes, int, list[float]]:
    """The whole track as PCM bytes, its samples and its span (s) per the stream header."""
    if not container.streams.audio:
        return b"", 0, [0.0, 0.0]
    stream = container.streams.audio[0]
    tb = float(stream.time_base or 0)
    first = float(stream.start_time or 0) * tb
    last = first + float(stream.duration or 0) * tb if stream.duration else end
    wav, _ = read_audio_padded(container, path, 0.0, max(last, end), sample_rate)
    return to_pcm(wav), int(wav.shape[0]), [round(first, 6), round(last, 6)]


def encode_video(path: str, opts: FrameOptions) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The ``.jpgs`` and ``.pcm`` members of the file at ``path`` and what its record adds."""
    container = open_media(path)
    try:
        stream = video_stream(container, path)
        media.single_threaded(stream)
        duration = video_duration(container, stream)
        times, jpegs, height, width = _frames(container, stream, path, opts)
        end = duration if math.isfinite(duration) else times[-1]
        pcm, samples, span = _audio(container, path, end, opts.sample_rate)
    finally:
        container.close()
    record = {"height": height, "width": width, "video_duration": duration, "frame_times": times,
              "frame_bytes": [len(j) for j in jpegs], "sample_rate": opts.sample_rate,
              "audio_samples": samples, "audio_span": span}
    return {"jpgs": b"".join(jpegs), "pcm": pcm}, record


def load_frames(job: tuple[VideoInfo, FrameOptions]
                ) -> tuple[dict[str, bytes], dict[str, Any], VideoInfo] | str:
    """The per-file task of ``write_shards`` (module level: picklable for the pool and Ray)."""
    row, opts = job
    try:
        members, record = encode_video(row.path, opts)
    except Exception as err:  # one bad file is reported, never fatal (the pool would say the same)
        reason = getattr(err, "reason", None) or f"{type(err).__name__}: {err}"
        return f"cannot decode: {reason}"
    return members, record, dataclasses.replace(row, has_audio=bool(record["audio_samples"]))


def describe(tar: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    """A closed shard's ``samples``: each record's row fields and its members' ``[offset, size]``."""
    where: dict[str, list[int]] = {}
    with tarfile.open(tar) as tf:
        for member in tf.getmembers():
            where[member.name] = [member.offset_data, member.size]
    samples = []
    for record in records:
        key = f"{record['index']:09d}"
        samples.append({k: record[k] for k in ("video_id", "duration", "fps", "has_audio", "label")}
                       | {suffix: where[f"{key}.{suffix}"] for suffix in ("json", "jpgs", "pcm")})
    return {"samples": samples}


def head(opts: FrameOptions) -> dict[str, Any]:
    """What the shard index records of the options (a resume must match it)."""
    return {"frames": json.loads(json.dumps(dataclasses.asdict(opts)))}
