"""Clips from shards of pre-decoded frames (``avlearn prepare shard --format frames``): JPEG frames at
the decode size and 16-bit PCM audio, read with the standard library and torchvision only.

Why: decoding H.264 costs a DataLoader worker most of a clip's CPU time. Here the writer decodes
each video once; a worker reads a clip's JPEG bytes and its PCM window by byte offset and decodes
the JPEGs with :func:`torchvision.io.decode_jpeg`, which takes a list (a batch) and a device
(``device="cuda"``: nvJPEG), so the decoding can move to the GPU with :func:`decode_jpegs`.

**What a stored clip is**: one sample per *video*, holding every frame of the video (or, with
``--frame-rate R``, the frames nearest to a grid of ``R`` per second) and its whole audio track. A
training clip is drawn from it as from the file: a random start (and rate, with
``data.fps_choices``), the nearest stored frame to each ``start + i / fps``, the audio window of
``data.audio_align`` with a random AV offset, shifted-audio negatives. Fixed windows would fix
``data.fps`` and the starts at writing time and remove the temporal augmentations. Storing every
frame makes a sample's frames *the file path's frames* (same nearest-timestamp choice, same FFmpeg
scaling to the decode size, then JPEG): a batch differs from the file path's only by the JPEG loss.

**Layout** of ``DIR`` (global index ``g`` dense over the files written, in manifest order; key
``{g:09d}``)::

    DIR/index.json           the shard index (below)
    DIR/shard-000000.tar     plain (uncompressed) tar; per sample three members, in name order:
        {key}.jpgs           the frames' baseline JPEGs back to back, upright, ``height x width``
                             (short side = decode size); frame k starts at sum(frame_bytes[:k])
        {key}.json           the record: {"video_id", "index": g, "duration", "fps", "label",
                             "has_audio", "source", "height", "width", "video_duration": s,
                             "frame_times": [s, ...], "frame_bytes": [n, ...], "sample_rate",
                             "audio_samples", "audio_span": [s0, s1]}
        {key}.pcm            mono int16 little-endian at sample_rate; sample m plays at m / sample_rate
                             s on the file's clock (empty without audio); value / 32768 = the waveform

``index.json``::

    {"format": "avlearn-frames/1", "complete": true, "num_samples": N, "classes": [...],
     "manifest_sha256": ..., "frames": {"decode_size": 128, "frame_rate": 0, "quality": 90,
     "sample_rate": 16000},
     "shards": [{"name": "shard-000000.tar", "num_samples": n, "first_index": g0, "end_index": g0 + n,
                 "bytes": ..., "samples": [{"video_id", "duration", "fps", "has_audio", "label",
                 "json": [offset, size], "jpgs": [offset, size], "pcm": [offset, size]}, ...]}],
     "failures": [{"row", "path", "video_id", "reason"}, ...]}

Offsets are of the members' data in the tar file, so a reader seeks (``os.pread``) to a clip's
record, its frames' byte span and its audio window without reading the rest: random access, hence
a map-style dataset behind the loader's sampler (local or mounted shard files).

**Against the file path's batch** (same indices and seeds): frames differ by the JPEG loss only
(tests bound it); audio is the file path's within int16 quantisation (``<= 1/32768``) when the
source's sample rate is ``sample_rate``; otherwise the writer resampled the whole track once, so a
window starts on the output sample grid, at most half a sample (31 us at 16 kHz) from the file
path's. ``audio_padded`` counts the window outside ``audio_span`` (the track's extent per its header).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

import numpy as np
import torch
from torchvision.io import decode_jpeg

from avlearn.config import ConfigError
from avlearn.data.clips import AVClips, AVSettings, ClipItem
from avlearn.data.dataset import FileSource, NoUsableVideoError
from avlearn.data.decode import Clip, ClipSpec, DecodeError, audio_window_start, clip_frame_times
from avlearn.data.decoding.frames import check_start, nearest, to_video_tensor
from avlearn.data.manifest import VideoInfo
from avlearn.data.sources import TRAIN_SOURCES, clip_spec, train_transforms

if TYPE_CHECKING:
    from avlearn.data.config import DataConfig

__all__ = [
    "FRAMES_FORMAT",
    "PCM_SCALE",
    "FrameAVClips",
    "FrameReader",
    "FrameRecord",
    "FrameShardDataset",
    "build_frame_dataset",
    "decode_jpegs",
    "to_pcm",
]

logger = logging.getLogger(__name__)

FRAMES_FORMAT = "avlearn-frames/1"
PCM_SCALE = 32768.0
"""int16 PCM value / PCM_SCALE = the waveform in [-1, 1)."""
_HINT = "re-run `avlearn prepare shard MANIFEST --out DIR --format frames` (or restore the shard's file)"


def to_pcm(wav: torch.Tensor) -> bytes:
    """``(S,)`` float waveform -> int16 little-endian bytes (rounded, clipped): the ``.pcm`` member."""
    q = np.clip(np.rint(wav.numpy().astype(np.float64) * PCM_SCALE), -32768, 32767)
    return q.astype("<i2").tobytes()


def decode_jpegs(jpegs: Sequence[torch.Tensor], device: str | torch.device = "cpu") -> torch.Tensor:
    """Decode a batch of JPEGs (1-D uint8 tensors of their bytes) of one size in one call.

    ``device="cuda"`` decodes them on the GPU (nvJPEG) and returns a CUDA tensor.

    Shape: returns ``(T, H, W, 3)`` uint8 (channels last, as the file decoders' frames).
    """
    with warnings.catch_warnings():  # deprecated for torchcodec, which the GPU machine lacks
        warnings.simplefilter("ignore", DeprecationWarning)
        frames = decode_jpeg(list(jpegs), device=device)
    return torch.stack(frames).permute(0, 2, 3, 1).contiguous()


# ------------------------------------------------------------------------------------ the index


@dataclasses.dataclass(frozen=True)
class _Sample:
    """Where one sample's members are: the shard file and the (offset, size) of each member's data."""

    shard: str
    json: tuple[int, int]
    jpgs: tuple[int, int]
    pcm: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class FrameRecord:
    """A sample's ``.json`` record as the reader needs it.

    Attributes:
        times: ``(F,)`` stored frames' timestamps (s); ``starts``: ``(F + 1,)`` byte offsets of each
        JPEG in the ``.jpgs`` member (the last: its size); ``audio_span``: the track's extent (s).
    """

    name: str
    height: int
    width: int
    video_duration: float
    times: np.ndarray
    starts: np.ndarray
    sample_rate: int
    audio_samples: int
    audio_span: tuple[float, float]

    @classmethod
    def parse(cls, name: str, data: bytes) -> FrameRecord:
        rec = json.loads(data)
        starts = np.concatenate([[0], np.cumsum(np.asarray(rec["frame_bytes"], dtype=np.int64))])
        span = rec.get("audio_span") or [0.0, 0.0]
        return cls(name, int(rec["height"]), int(rec["width"]), float(rec["video_duration"]),
                   np.asarray(rec["frame_times"], dtype=np.float64), starts, int(rec["sample_rate"]),
                   int(rec["audio_samples"]), (float(span[0]), float(span[1])))


class FrameReader:
    """The shard index of a frames layout and positional reads of its members (``os.pread``: no
    shared file offset, so forked DataLoader workers may share the object; files open lazily per process).

    Args:
        index: ``DIR/index.json`` (a local or mounted path: reads seek).
    """

    def __init__(self, index: str | os.PathLike[str]) -> None:
        self.location = str(index)
        data = _load_index(self.location)
        self.options: dict[str, Any] = dict(data["frames"])
        self.classes: tuple[str, ...] = tuple(data.get("classes", []))
        self.manifest_sha256 = str(data.get("manifest_sha256", ""))
        self.rows, self._samples = self._read_samples(data["shards"])
        if not self.rows:
            raise ValueError(f"{index}: no samples (every file was left out: see its 'failures'); {_HINT}")
        self._fds: dict[str, int] = {}
        self._pid = os.getpid()

    def _read_samples(self, shards: list[dict[str, Any]]) -> tuple[list[VideoInfo], dict[str, _Sample]]:
        rows: list[VideoInfo] = []
        samples: dict[str, _Sample] = {}
        folder = Path(self.location).parent
        for shard in shards:
            url = str(folder / shard["name"])
            for k, s in enumerate(shard["samples"]):
                name = f"{url}:{int(shard['first_index']) + k:09d}"
                rows.append(VideoInfo(path=name, video_id=str(s["video_id"]), duration=float(s["duration"]),
                                      fps=float(s["fps"]), has_video=True, has_audio=bool(s["has_audio"]),
                                      label=str(s["label"])))
                samples[name] = _Sample(url, _span(s["json"]), _span(s["jpgs"]), _span(s["pcm"]))
        return rows, samples

    @property
    def decode_size(self) -> int:
        return int(self.options["decode_size"])

    @property
    def sample_rate(self) -> int:
        return int(self.options["sample_rate"])

    def __getstate__(self) -> dict[str, Any]:  # spawned workers open their own files
        return {**self.__dict__, "_fds": {}}

    def _read(self, shard: str, offset: int, size: int) -> bytes:
        if self._pid != os.getpid():  # a forked worker: descriptors are shared, but pread keeps no offset
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(shard)
        if fd is None:
            fd = self._fds[shard] = os.open(shard, os.O_RDONLY)
        data = os.pread(fd, size, offset)
        if len(data) != size:
            raise OSError(f"{shard} is truncated: {size} bytes at {offset} asked, {len(data)} read")
        return data

    def record(self, name: str) -> FrameRecord:
        """The ``.json`` record of sample ``name`` (a row's path)."""
        s = self._samples[name]
        return FrameRecord.parse(name, self._read(s.shard, *s.json))

    def jpegs(self, name: str, rec: FrameRecord, frames: np.ndarray) -> list[torch.Tensor]:
        """The JPEG bytes of stored frames ``frames`` (sorted, unique), read as one span."""
        s = self._samples[name]
        lo, hi = int(rec.starts[frames[0]]), int(rec.starts[frames[-1] + 1])
        span = torch.frombuffer(bytearray(self._read(s.shard, s.jpgs[0] + lo, hi - lo)), dtype=torch.uint8)
        return [span[int(rec.starts[f]) - lo : int(rec.starts[f + 1]) - lo] for f in frames]

    def audio(self, name: str, rec: FrameRecord, start: float, num: int) -> tuple[torch.Tensor, float]:
        """``num`` samples from ``start`` s (rounded to the sample grid; zeros outside the stored
        track) as ``(S,)`` float32, and the seconds of the window outside the track's span."""
        first = round(start * rec.sample_rate)
        lo, hi = max(first, 0), min(first + num, rec.audio_samples)
        wav = torch.zeros(num)
        if hi > lo:
            s = self._samples[name]
            pcm = np.frombuffer(self._read(s.shard, s.pcm[0] + 2 * lo, 2 * (hi - lo)), dtype="<i2")
            wav[lo - first : hi - first] = torch.from_numpy(pcm.astype(np.float32)) / PCM_SCALE
        t0, t1 = first / rec.sample_rate, (first + num) / rec.sample_rate
        inside = max(0.0, min(t1, rec.audio_span[1]) - max(t0, rec.audio_span[0]))
        return wav, (t1 - t0) - inside


def _load_index(location: str) -> dict[str, Any]:
    """The index at ``location``, or a ValueError that says what it is instead and how to write one."""
    try:
        data: dict[str, Any] = json.loads(Path(location).read_text())
    except (OSError, ValueError) as err:
        data = {"error": f"{type(err).__name__}: {err}"}
    if data.get("format") == FRAMES_FORMAT and data.get("complete"):
        return data
    found = data.get("error") or f"format={data.get('format')!r}, complete={data.get('complete')}"
    raise ValueError(f"{location} is not a complete frame shard index of format {FRAMES_FORMAT} ({found}); "
                     f"{_HINT}")


def _span(pair: Sequence[int]) -> tuple[int, int]:
    return int(pair[0]), int(pair[1])


# ---------------------------------------------------------------------------------- the source


class FrameAVClips(AVClips):
    """:class:`~avlearn.data.clips.AVClips` whose clips are read from a :class:`FrameReader` (same
    draws, same frame choice, same transforms); ``device``: where the JPEGs are decoded."""

    def __init__(self, reader: FrameReader, spec: ClipSpec, backend: str = "pyav", *,
                 device: str = "cpu", **settings: Any) -> None:
        if spec.size != reader.decode_size:
            raise ValueError(f"{reader.location} holds frames at decode size {reader.decode_size}, the "
                             f"clips ask for {spec.size}: set data.decode_size={reader.decode_size} or "
                             f"write shards with --decode-size {spec.size}")
        if spec.audio_seconds > 0 and spec.sample_rate != reader.sample_rate:
            raise ValueError(f"{reader.location} holds audio at {reader.sample_rate} Hz, the clips ask "
                             f"for {spec.sample_rate} Hz: set data.sample_rate={reader.sample_rate} or "
                             f"write shards with --sample-rate {spec.sample_rate}")
        super().__init__(spec, backend, **settings)
        self.reader = reader
        self.device = device

    def read_clip(self, item: ClipItem, start: float, spec: ClipSpec,
                  extra_audio: Sequence[float] = ()) -> Clip:
        name = str(item.media)
        try:
            rec = self.reader.record(name)
        except (OSError, ValueError, KeyError) as err:
            raise DecodeError(name, f"record unreadable ({type(err).__name__}: {err})", _HINT) from None
        check_start(name, start, rec.video_duration)
        chosen = nearest(rec.times, clip_frame_times(start, spec))
        stored, where = np.unique(chosen, return_inverse=True)
        try:
            frames = decode_jpegs(self.reader.jpegs(name, rec, stored), self.device)[torch.from_numpy(where)]
        except RuntimeError as err:  # a corrupt JPEG
            raise DecodeError(name, f"frames unreadable ({err})", _HINT) from None
        video = to_video_tensor(frames.cpu().numpy(), spec.uint8_frames)
        audio_start = audio_window_start(start, spec)
        audio, padded = self.reader.audio(name, rec, audio_start, spec.num_samples)
        extra = [self.reader.audio(name, rec, at, spec.num_samples)[0] for at in extra_audio]
        return Clip(video, audio, start, audio_start, rec.times[chosen], extra, padded)


class FrameShardDataset(FileSource):
    """Random synchronised clips from frame shards: :class:`~avlearn.data.dataset.AVClipDataset`
    over the shards' samples (same sample numbering, draws, retries, failure counting and sample
    dict); map-style, so the loader deals it out with its sampler.

    Args:
        index: ``DIR/index.json`` of ``avlearn prepare shard --format frames``.
        spec: its ``size`` must be the shards' decode size and its ``sample_rate`` theirs.
        backend: unused (kept for the sources' common signature).
        device: where JPEGs are decoded (``cpu``; ``cuda`` in the training process only).
        settings: as :class:`~avlearn.data.dataset.AVClipDataset`'s (``class_to_idx`` default: the
            index's classes).

    Sample: as :class:`~avlearn.data.dataset.AVClipDataset`'s; ``index`` runs over the usable
    samples (``0 .. num_videos - 1``).
    """

    clips: FrameAVClips

    def __init__(self, index: str | os.PathLike[str], spec: ClipSpec, backend: str = "pyav", *,
                 device: str = "cpu", **settings: Unpack[AVSettings]) -> None:
        self.reader = FrameReader(index)
        classes: Mapping[str, int] | None = settings.pop("class_to_idx", None)
        if classes is None and self.reader.classes:
            classes = {name: i for i, name in enumerate(self.reader.classes)}
        self.clips = FrameAVClips(self.reader, spec, backend, device=device, name="FrameShardDataset",
                                  log=logger, class_to_idx=classes, **settings)
        self.read(self.reader.rows)


@TRAIN_SOURCES.add("frames")
def build_frame_dataset(cfg: DataConfig, require_audio: bool = True) -> FrameShardDataset:
    """``data.source: frames``: training clips from the frame shards at ``cfg.shards``, with the file
    path's transforms."""
    if not cfg.shards:
        raise ConfigError("data.source=frames but data.shards is empty: write them with `avlearn prepare "
                          "shard MANIFEST --out DIR --format frames` and set data.shards=DIR/index.json",
                          key="data.shards")
    video_transform, audio_transform = train_transforms(cfg)
    try:
        return FrameShardDataset(
            cfg.shards, clip_spec(cfg), cfg.backend, clips_per_video=cfg.clips_per_video,
            max_av_offset=cfg.max_av_offset, shifted_audio=cfg.shifted_audio, fps_choices=cfg.fps_choices,
            video_transform=video_transform, audio_transform=audio_transform, seed=cfg.seed,
            require_audio=require_audio,
        )
    except (ValueError, NoUsableVideoError) as err:
        raise ConfigError(f"data.shards={cfg.shards}: {err}", key="data.shards") from None
