"""Synchronised audio-visual clip decoding: one interface, two backends (``"pyav"``, ``"decord"``).

A clip is ``num_frames`` frames sampled at ``fps`` starting at ``start`` seconds, plus a mono
waveform window at ``sample_rate``. All times are on the file's presentation clock (what
``PyAV`` reports as ``frame.time``), so the audio and the video of one request line up.

Frames are turned upright as the file's display matrix says (phone videos): ``size`` and the
returned ``(H, W)`` are those of the displayed picture. (decord mishandles such files, so the
``"decord"`` backend decodes them with PyAV.)

Frame choice: frame ``i`` of the clip is the file's frame whose timestamp is nearest to
``start + i / fps`` (ties go to the later frame). Past the last frame the last frame repeats.

Audio window: with ``audio_align="start"`` (default) it is
``[start + audio_offset, start + audio_offset + audio_seconds)``; with ``"center"`` it is
centred on the video clip (``start + num_frames / fps / 2``) and then shifted by
``audio_offset``. Samples outside the audio track are zeros. Audio is always decoded with
PyAV (decord's AudioReader is 1-20 ms misaligned): seek ~0.1 s before the window, decode,
place every decoded frame by its timestamp (sample exact), downmix to mono by averaging
the channels (all but LFE), then resample with a band-limited (sinc) resampler.

Cost (``"pyav"``): only the chosen frames are converted to RGB, by FFmpeg's scaler straight to
the decode size; codecs and scaler run on the calling thread (a DataLoader worker is one core).
:func:`stage_times` profiles where a clip's decoding time goes.

Example::

    spec = ClipSpec(num_frames=8, fps=16, size=112, audio_seconds=2.0, sample_rate=16000)
    clip = decode_clip("video.mp4", start=1.25, spec=spec, backend="decord")
    clip.video.shape  # (3, 8, 112, 112) float32 in [0, 1]
    clip.audio.shape  # (32000,) float32
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torchaudio

if TYPE_CHECKING:
    from av.video.reformatter import VideoReformatter

__all__ = [
    "DECODERS",
    "Clip",
    "ClipSpec",
    "DecodeError",
    "MediaBytes",
    "MediaSource",
    "audio_window_start",
    "clip_frame_times",
    "decode_clip",
    "decode_clips",
    "get_decoder",
    "probe_audio_duration",
    "probe_duration",
    "read_audio",
    "stage_times",
]

_AUDIO_PREROLL = 0.1  # seconds decoded before an audio window: AAC frames need their predecessor
_HINT = ("check it with `avlearn prepare index` (which marks unusable files 'bad') "
         "or remove it from the manifest")


class DecodeError(RuntimeError):
    """A file that cannot give the requested clip; the message names the file, the reason, the fix."""

    def __init__(self, path: str | os.PathLike[str] | MediaBytes, reason: str, hint: str = _HINT) -> None:
        self.path = str(path)
        self.reason = reason
        self.hint = hint
        super().__init__(f"cannot decode {self.path}: {reason}; {hint}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across DataLoader workers
        return (DecodeError, (self.path, self.reason, self.hint))


@dataclasses.dataclass(frozen=True)
class MediaBytes:
    """A media file held in memory (e.g. a member of a WebDataset shard), decoded like a file.

    ``name`` is what error messages and failure reports show (e.g. ``shard-000003.tar:vid12.mp4``).
    """

    name: str
    data: bytes = dataclasses.field(repr=False)

    def __str__(self) -> str:
        return self.name


MediaSource = str | os.PathLike[str] | MediaBytes
"""A decoder's input: a file path or :class:`MediaBytes`."""


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """What to decode around a start time.

    Attributes:
        num_frames: frames in the clip (T).
        fps: sampling rate of the clip's frames (not the file's rate).
        size: ``(H, W)``; an int resizes the short side to it keeping the aspect ratio;
            ``None`` keeps the file's size.
        audio_seconds: length of the audio window; 0 decodes no audio.
        sample_rate: output audio sample rate in Hz.
        audio_offset: seconds, signed, added to the audio window's start (AV-offset augmentation).
        audio_align: ``"start"``: the window starts with the clip; ``"center"``: it is centred on it.
        uint8_frames: hand the frames over as uint8 (``Clip.video`` then a ``(C, T, H, W)`` view
            of ``(T, H, W, C)`` memory) for transforms that crop and resize in 8 bits
            (``VideoAugConfig.fused``); the dataset sets it from its transform.
    """

    num_frames: int = 8
    fps: float = 16.0
    size: int | tuple[int, int] | None = 112
    audio_seconds: float = 2.0
    sample_rate: int = 16000
    audio_offset: float = 0.0
    audio_align: Literal["start", "center"] = "start"
    uint8_frames: bool = False

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ValueError(f"ClipSpec.num_frames must be >= 1, got {self.num_frames}")
        if self.fps <= 0:
            raise ValueError(f"ClipSpec.fps must be > 0, got {self.fps}")
        if self.audio_seconds < 0 or self.sample_rate <= 0:
            raise ValueError(f"ClipSpec: need audio_seconds >= 0 and sample_rate > 0, got "
                             f"{self.audio_seconds}, {self.sample_rate}")
        if self.audio_align not in ("start", "center"):
            raise ValueError(f"ClipSpec.audio_align must be 'start' or 'center', got {self.audio_align!r}")

    @property
    def video_seconds(self) -> float:
        return self.num_frames / self.fps

    @property
    def num_samples(self) -> int:
        return round(self.audio_seconds * self.sample_rate)


@dataclasses.dataclass
class Clip:
    """A decoded clip.

    Shape:
        video: ``(C, T, H, W)`` float32 in [0, 1], RGB (uint8 with ``ClipSpec.uint8_frames``).
        audio: ``(S,)`` float32 mono waveform, ``S = round(audio_seconds * sample_rate)``.
        frame_times: ``(T,)`` timestamps (s) of the file frames that were used.
        extra_audio: ``(S,)`` windows read from the same open file at the ``extra_audio`` starts
            given to :func:`decode_clip` (e.g. AVTS-style shifted negatives), in that order.
        audio_padded: seconds of ``audio``'s window outside the audio track (zeros: before its
            start or past its end, e.g. a file whose sound stops before its pictures).
    """

    video: torch.Tensor
    audio: torch.Tensor
    start: float
    audio_start: float
    frame_times: np.ndarray
    extra_audio: list[torch.Tensor] = dataclasses.field(default_factory=list)
    audio_padded: float = 0.0


def clip_frame_times(start: float, spec: ClipSpec) -> np.ndarray:
    """Target times ``start + i / fps`` of the clip's frames. Shape ``(T,)``."""
    return start + np.arange(spec.num_frames, dtype=np.float64) / spec.fps


def audio_window_start(start: float, spec: ClipSpec) -> float:
    """Start time (s) of the audio window for a clip starting at ``start`` (see module doc)."""
    if spec.audio_align == "center":
        return start + spec.video_seconds / 2 - spec.audio_seconds / 2 + spec.audio_offset
    return start + spec.audio_offset


def _nearest(times: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index into sorted ``times`` of the entry nearest each target (ties: the later one)."""
    if len(times) == 1:
        return np.zeros(len(targets), dtype=np.int64)
    right = np.clip(np.searchsorted(times, targets, side="left"), 1, len(times) - 1)
    left = right - 1
    take_left = (targets - times[left]) < (times[right] - targets) - 1e-4
    return np.where(take_left, left, right).astype(np.int64)


def _out_size(width: int, height: int, size: int | tuple[int, int] | None) -> tuple[int, int]:
    """(W, H) to resize a ``width x height`` frame to."""
    if size is None:
        return width, height
    if isinstance(size, int):
        if width <= height:
            return size, max(1, round(height * size / width))
        return max(1, round(width * size / height)), size
    return int(size[1]), int(size[0])


def _display_rotation(frame: Any) -> int:
    """Degrees (0, 90, 180, 270) the display matrix turns a decoded frame counter-clockwise."""
    return round(float(getattr(frame, "rotation", 0) or 0) / 90.0) % 4 * 90


def _decode_size(width: int, height: int, size: int | tuple[int, int] | None,
                 rotation: int) -> tuple[int, int]:
    """(W, H) to decode a coded ``width x height`` frame to, so that after ``rotation`` it has ``size``."""
    if rotation in (90, 270):
        out_w, out_h = _out_size(height, width, size)  # the displayed picture is transposed
        return out_h, out_w
    return _out_size(width, height, size)


def _upright(frames: np.ndarray, rotation: int) -> np.ndarray:
    """``(T, H, W, 3)`` frames turned ``rotation`` degrees counter-clockwise."""
    return np.rot90(frames, k=rotation // 90, axes=(1, 2)) if rotation else frames


def _to_video_tensor(frames: np.ndarray, uint8: bool = False) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 -> ``(C, T, H, W)`` float32 in [0, 1] (or the uint8 itself), channels-last
    in memory (no copy to planar layout: a crop copies only what it keeps, and that copy is planar)."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)
    return video if uint8 else video.float().div_(255.0)


# ------------------------------------------------------------------------------------ profiling


class _StageClock:
    """Adds the seconds since the previous lap to a stage's total, only while profiling is on."""

    def __init__(self) -> None:
        self.totals: dict[str, float] | None = None
        self.last = 0.0
        self.clock: Callable[[], float] = time.perf_counter

    def start(self) -> None:
        if self.totals is not None:
            self.last = self.clock()

    def lap(self, stage: str) -> None:
        if self.totals is not None:
            now = self.clock()
            self.totals[stage] = self.totals.get(stage, 0.0) + now - self.last
            self.last = now


_CLOCK = _StageClock()


@contextlib.contextmanager
def stage_times(clock: Callable[[], float] = time.perf_counter) -> Iterator[dict[str, float]]:
    """Profile the PyAV decoder: seconds per stage, summed over the clips decoded in the block.

    Stages: ``open`` (open the file, read its header), ``video seek``, ``video decode``,
    ``frame convert`` (YUV -> RGB at the decode size, in FFmpeg), ``to tensor``, ``audio seek``,
    ``audio decode``, ``audio downmix`` (sample conversion and placement), ``resample``, ``close``.
    One thread at a time; off (a no-op per stage) outside the block. ``clock``: wall time by
    default; ``time.process_time`` counts CPU time instead (steadier on a shared machine).

    Example::

        with stage_times() as times:
            decode_clip(path, 1.0, spec)
        times  # {"open": 0.0009, "video seek": 0.0001, "video decode": 0.004, ...}
    """
    if _CLOCK.totals is not None:
        raise RuntimeError("stage_times() is already active")
    totals: dict[str, float] = {}
    _CLOCK.totals, _CLOCK.clock = totals, clock
    try:
        yield totals
    finally:
        _CLOCK.totals = None


# ------------------------------------------------------------------------------ frame decoding

_THREAD = threading.local()


@functools.cache
def _av() -> ModuleType:
    """PyAV, imported at the first decode: importing this module needs no PyAV (a GPU machine that
    trains from memory, ``benchmarks/gpu``), decoding does."""
    try:
        import av
    except ImportError as err:
        raise ImportError(f"decoding media needs PyAV ({err}); install it: pip install av") from err
    return av


def _reformatter() -> VideoReformatter:
    """This thread's frame converter: one FFmpeg scaler context reused for every frame of a size."""
    reformatter: VideoReformatter | None = getattr(_THREAD, "reformatter", None)
    if reformatter is None:
        _av()  # PyAV, or a message saying how to install it
        from av.video.reformatter import VideoReformatter

        reformatter = _THREAD.reformatter = VideoReformatter()
    return reformatter


def _rgb(frame: Any, width: int, height: int) -> np.ndarray:
    """A decoded frame as ``(height, width, 3)`` uint8 RGB, scaled (bicubic) by FFmpeg in one thread."""
    rgb = _reformatter().reformat(frame, width=width, height=height, format="rgb24",
                                  interpolation="BICUBIC", threads=1)
    array: np.ndarray = rgb.to_ndarray()
    return array


def _single_threaded(stream: Any) -> None:
    """Decode on the calling thread: a DataLoader worker is one core, codec threads only contend.

    Only possible before the stream's first packet is decoded (a container passed in may be
    further along): then the codec keeps its setting.
    """
    codec = stream.codec_context
    if not codec.is_open:
        codec.thread_count = 1


def _open(path: MediaSource) -> Any:
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
        return _av().open(str(p))
    except (_av().FFmpegError, OSError, ValueError) as err:
        detail = getattr(err, "strerror", None) or str(err)  # FFmpeg's str() repeats the path
        raise DecodeError(p, f"not a readable media file ({detail})") from None


def _open_bytes(media: MediaBytes) -> Any:
    if not media.data:
        raise DecodeError(media, "file is empty (0 bytes)")
    try:
        return _av().open(io.BytesIO(media.data))
    except (_av().FFmpegError, OSError, ValueError) as err:
        detail = getattr(err, "strerror", None) or str(err)
        raise DecodeError(media, f"not a readable media file ({detail})") from None


def _decord_source(path: MediaSource) -> Any:
    """What ``decord.VideoReader`` opens: a path, or a file object over in-memory bytes."""
    return io.BytesIO(path.data) if isinstance(path, MediaBytes) else str(path)


def _video_stream(container: Any, path: MediaSource) -> Any:
    if not container.streams.video:
        raise DecodeError(path, "has no video track")
    return container.streams.video[0]


def _video_duration(container: Any, stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base) + float((stream.start_time or 0) * stream.time_base)
    if container.duration is not None:
        return float(container.duration / _av().time_base)
    return math.inf


def probe_audio_duration(path: MediaSource) -> float:
    """Duration (s) of the file's audio track (container duration as a fallback; 0 without either)."""
    container = _open(path)
    try:
        stream = container.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        return float(container.duration or 0) / 1e6
    finally:
        container.close()


def probe_duration(path: MediaSource) -> float:
    """Duration (s) of the file's video track (container duration as a fallback)."""
    container = _open(path)
    try:
        return _video_duration(container, _video_stream(container, path))
    finally:
        container.close()


# ---------------------------------------------------------------------------------------- audio


@functools.lru_cache(maxsize=16)
def _resampler(orig: int, new: int) -> torchaudio.transforms.Resample:
    return torchaudio.transforms.Resample(orig, new)


_SAMPLE_TYPES: dict[str, type[np.generic]] = {
    "u8": np.uint8, "s16": np.int16, "s32": np.int32, "flt": np.float32, "dbl": np.float64,
}


def _frame_samples(frame: Any, keep: list[int]) -> np.ndarray:
    """Channels ``keep`` of a decoded audio frame as ``(len(keep), n)`` float32, whatever its sample
    format. Reads the frame's planes directly (PyAV's ``to_ndarray`` would stack every channel)."""
    fmt = frame.format
    dtype = _SAMPLE_TYPES.get(fmt.name.removesuffix("p"))
    n = frame.samples
    arr: np.ndarray
    if dtype is None:  # no plain NumPy type: let PyAV convert it
        arr = np.asarray(frame.to_ndarray())
        if not fmt.is_planar:
            arr = arr.reshape(-1, len(frame.layout.channels)).T
        arr = arr[keep]
    elif fmt.is_planar:
        planes = frame.planes
        if len(keep) == 1:
            arr = np.frombuffer(planes[keep[0]], dtype, count=n)[None]
        else:
            arr = np.stack([np.frombuffer(planes[i], dtype, count=n) for i in keep])
    else:
        channels = len(frame.layout.channels)
        arr = np.frombuffer(frame.planes[0], dtype, count=n * channels).reshape(n, channels).T[keep]
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / 32768.0
    if arr.dtype == np.int32:
        return arr.astype(np.float32) / 2147483648.0
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) - 128.0) / 128.0
    return arr.astype(np.float32, copy=False)


def _round_ratio(num: int, den: int) -> int:
    """``round(num / den)`` exactly, ties to even (as ``round(Fraction(num, den))``); ``den > 0``."""
    q, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and q % 2):
        q += 1
    return q


def _downmix_channels(frame: Any) -> list[int]:
    """The channels whose mean is the mono downmix: the full-range ones. The LFE channel is left
    out (as in standard downmixes): it carries only a low-passed copy and would dilute the rest."""
    names = [ch.name for ch in frame.layout.channels]
    return [i for i, name in enumerate(names) if name != "LFE"] or list(range(len(names)))


def read_audio(
    source: str | os.PathLike[str] | Any,
    start: float,
    seconds: float,
    sample_rate: int,
    path: str | os.PathLike[str] | None = None,
) -> torch.Tensor:
    """Mono audio of ``[start, start + seconds)`` at ``sample_rate``, zeros outside the track.

    Args:
        source: a path, or an open PyAV input container (then ``path`` names it in errors).
        start: window start on the file's clock (s); may be negative.
        seconds: window length (s).
        sample_rate: output rate (Hz); the track is resampled when it differs.

    Returns:
        ``(S,)`` float32, ``S = round(seconds * sample_rate)``.
    """
    own = not hasattr(source, "streams")
    container: Any = _open(source) if own else source
    name = str(source if own else (path or getattr(container, "name", "<container>")))
    try:
        return _read_audio(container, name, start, seconds, sample_rate)
    finally:
        if own:
            container.close()


def _read_audio(container: Any, path: str, start: float, seconds: float, sample_rate: int) -> torch.Tensor:
    return _read_audio_padded(container, path, start, seconds, sample_rate)[0]


def _read_audio_padded(container: Any, path: str, start: float, seconds: float,
                       sample_rate: int) -> tuple[torch.Tensor, float]:
    """:func:`_read_audio` and the seconds of the window that no decoded audio frame covered."""
    n_out = round(seconds * sample_rate)
    if n_out == 0:
        return torch.zeros(0), 0.0
    if not container.streams.audio:
        raise DecodeError(path, "has no audio track (audio-visual training needs one)")
    stream = container.streams.audio[0]
    _single_threaded(stream)
    sr_in = int(stream.codec_context.sample_rate or stream.rate or 0)
    if sr_in <= 0:
        raise DecodeError(path, "audio track has no sample rate")
    # Native-rate window [a0, a0 + length) in absolute sample numbers (sample n plays at n / sr_in),
    # widened by a margin so the resampler's edges fall outside the samples we keep.
    g = math.gcd(sr_in, sample_rate)
    unit_in, unit_out = sr_in // g, sample_rate // g
    k = 0 if sr_in == sample_rate else math.ceil(32 / unit_out)
    margin_in, margin_out = k * unit_in, k * unit_out
    a0 = round(start * sr_in) - margin_in
    length = math.ceil(n_out * unit_in / unit_out) + 2 * margin_in
    buf = np.zeros(length, dtype=np.float32)

    tb = stream.time_base
    seek_t = max(a0 / sr_in - _AUDIO_PREROLL, 0.0)
    keep: list[int] = []  # the channels averaged into mono (all but LFE) for `layout`
    layout = ""
    inner = (a0 + margin_in, a0 + length - margin_in)  # the native samples the output is made of
    covered = 0
    _CLOCK.start()
    try:
        container.seek(int(seek_t / tb), stream=stream, backward=True, any_frame=False)
        _CLOCK.lap("audio seek")
        for packet in container.demux(stream):
            done = False
            for frame in packet.decode():
                if frame.pts is None:
                    continue
                tb_frame = frame.time_base  # integer maths: Fractions cost ~30 us a frame
                first = _round_ratio(frame.pts * tb_frame.numerator * sr_in, tb_frame.denominator)
                if first >= a0 + length:
                    done = True
                    break
                n = frame.samples
                lo, hi = max(first, a0), min(first + n, a0 + length)
                if hi <= lo:
                    continue
                _CLOCK.lap("audio decode")
                if frame.layout.name != layout:
                    layout, keep = frame.layout.name, _downmix_channels(frame)
                samples = _frame_samples(frame, keep)
                mono = samples[0] if len(keep) == 1 else samples.mean(axis=0)
                buf[lo - a0 : hi - a0] = mono[lo - first : hi - first]
                covered += max(0, min(hi, inner[1]) - max(lo, inner[0]))
                _CLOCK.lap("audio downmix")
            if done:
                break
    except _av().FFmpegError as err:
        raise DecodeError(path, f"audio track is corrupt ({err})") from None
    _CLOCK.lap("audio decode")
    wav = torch.from_numpy(buf)
    if sr_in != sample_rate:
        wav = _resampler(sr_in, sample_rate)(wav)[margin_out : margin_out + n_out]
    if wav.shape[0] < n_out:
        wav = torch.nn.functional.pad(wav, (0, n_out - wav.shape[0]))
    wav = wav[:n_out].contiguous()
    _CLOCK.lap("resample")
    return wav, max(0, inner[1] - inner[0] - covered) / sr_in


# ---------------------------------------------------------------------------------------- video


def _extra_audio(container: Any, path: MediaSource, starts: Sequence[float],
                 spec: ClipSpec) -> list[torch.Tensor]:
    """``spec.audio_seconds`` windows at ``starts`` from the already open ``container``."""
    return [_read_audio(container, str(path), at, spec.audio_seconds, spec.sample_rate) for at in starts]


def _check_start(path: MediaSource, start: float, duration: float) -> None:
    if not math.isfinite(start):
        raise DecodeError(path, f"start time {start} is not a number", hint="pass a finite start")
    if start >= duration:
        raise DecodeError(path, f"clip start {start:.3f} s is past the end of the video ({duration:.3f} s)",
                          hint="choose a start below the duration recorded in the manifest")


def _decode_pyav(path: MediaSource, start: float, spec: ClipSpec,
                 extra_audio: Sequence[float] = ()) -> Clip:
    _CLOCK.start()
    container = _open(path)
    try:
        stream = _video_stream(container, path)
        _single_threaded(stream)
        _CLOCK.lap("open")
        return _decode_pyav_window(container, stream, path, start, spec, extra_audio)
    finally:
        container.close()
        _CLOCK.lap("close")


def decode_clips(path: str | os.PathLike[str], starts: Sequence[float], spec: ClipSpec) -> list[Clip]:
    """Clips of ``spec`` at each of ``starts`` from one open of the file (PyAV), in the order given.

    Each clip's frames equal ``decode_clip(path, start, spec)``'s, its audio to ~1e-6 (the AAC
    decoder carries overlap state across a seek); the file is opened (header parsed, codecs set
    up) once instead of once per clip. Windows are decoded in time order.
    """
    _CLOCK.start()
    container = _open(path)
    try:
        stream = _video_stream(container, path)
        _single_threaded(stream)
        _CLOCK.lap("open")
        order = sorted(range(len(starts)), key=lambda i: starts[i])
        clips = {i: _decode_pyav_window(container, stream, path, starts[i], spec, ()) for i in order}
        return [clips[i] for i in range(len(starts))]
    finally:
        container.close()
        _CLOCK.lap("close")


def _decode_pyav_window(container: Any, stream: Any, path: MediaSource, start: float,
                        spec: ClipSpec, extra_audio: Sequence[float]) -> Clip:
    """The clip at ``start`` from an open container (see :func:`decode_clip`)."""
    duration = _video_duration(container, stream)
    _check_start(path, start, duration)
    targets = clip_frame_times(start, spec)
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    tb = stream.time_base
    # Keep the last frame before the first target and every frame up to the first frame at or
    # after the last target: exactly the candidates the nearest-timestamp rule can choose from.
    # Frames stay in the decoder's YUV until the choice is made: only the chosen ones are converted.
    seek_t = max(targets[0] - 1.0 / rate, 0.0)
    container.seek(int(seek_t / tb), stream=stream, backward=True)
    _CLOCK.lap("video seek")
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
    except _av().FFmpegError as err:
        raise DecodeError(path, f"video track is corrupt ({err})") from None
    if not kept:
        raise DecodeError(path, f"no video frame decodes at or after {start:.3f} s")
    _CLOCK.lap("video decode")
    chosen = _nearest(np.asarray(times), targets)
    rotation = _display_rotation(kept[0])
    width, height = _decode_size(kept[0].width, kept[0].height, spec.size, rotation)
    cache = {int(i): _rgb(kept[int(i)], width, height) for i in np.unique(chosen)}
    frames = _upright(np.stack([cache[int(i)] for i in chosen]), rotation)
    _CLOCK.lap("frame convert")
    video = _to_video_tensor(frames, spec.uint8_frames)
    _CLOCK.lap("to tensor")
    audio_start = audio_window_start(start, spec)
    audio, padded = _read_audio_padded(container, str(path), audio_start, spec.audio_seconds,
                                       spec.sample_rate)
    extra = _extra_audio(container, path, extra_audio, spec)
    _CLOCK.start()
    return Clip(video, audio, start, audio_start, np.asarray(times)[chosen], extra, padded)


def _decode_decord(path: MediaSource, start: float, spec: ClipSpec,
                   extra_audio: Sequence[float] = ()) -> Clip:
    import decord  # imported lazily: its import is slow and only this backend needs it

    container = _open(path)  # header (size, duration) and the audio come from PyAV
    try:
        stream = _video_stream(container, path)
        try:  # the display rotation is on decoded frames: decode the first one
            rotation = _display_rotation(next(container.decode(stream), None))
        except _av().FFmpegError as err:
            raise DecodeError(path, f"video track is corrupt ({err})") from None
        if rotation:
            # decord 0.6 turns the picture but keeps the coded W x H (90/270 come out squashed, and
            # the transposed size fails): rotated files (rare: phone videos) go through PyAV.
            container.close()
            return _decode_pyav(path, start, spec, extra_audio)
        width, height = _out_size(stream.codec_context.width, stream.codec_context.height, spec.size)
        try:
            reader = decord.VideoReader(_decord_source(path), ctx=decord.cpu(0), width=width, height=height,
                                        num_threads=1)
        except Exception as err:  # decord raises its own DECORDError (a RuntimeError) or others
            raise DecodeError(path, f"video track cannot be read ({err})") from None
        n = len(reader)
        if n == 0:
            raise DecodeError(path, "video track has no frames")
        times = reader.get_frame_timestamp(np.arange(n))
        _check_start(path, start, float(times[-1, 1]))
        targets = clip_frame_times(start, spec)
        chosen = _nearest(times[:, 0].astype(np.float64), targets)
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
        audio, padded = _read_audio_padded(container, str(path), audio_start, spec.audio_seconds,
                                           spec.sample_rate)
        video = _to_video_tensor(frames, spec.uint8_frames)
        extra = _extra_audio(container, path, extra_audio, spec)
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
        int(i): _av().VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").to_ndarray(
            width=width, height=height, format="rgb24", interpolation="BICUBIC")
        for i, img in zip(np.unique(chosen), native, strict=True)
    }
    return np.stack([resized[int(i)] for i in chosen])


Decoder = Callable[[MediaSource, float, ClipSpec, Sequence[float]], Clip]

DECODERS: dict[str, Decoder] = {"pyav": _decode_pyav, "decord": _decode_decord}


def get_decoder(name: str) -> Decoder:
    """The decoding function registered under ``name``; unknown names list the valid ones."""
    try:
        return DECODERS[name]
    except KeyError:
        raise ValueError(f"unknown decode backend {name!r}; valid: {', '.join(sorted(DECODERS))}") from None


def decode_clip(path: MediaSource, start: float, spec: ClipSpec, backend: str = "pyav",
                extra_audio: Sequence[float] = ()) -> Clip:
    """Decode the clip of ``spec`` starting at ``start`` seconds (see the module doc for timing).

    ``extra_audio``: starts (s) of further audio windows of ``spec.audio_seconds`` to read from
    the same open file into ``Clip.extra_audio`` (one open instead of one per window).

    Raises:
        DecodeError: missing, empty or unreadable file, no video/audio track, start past the end.
    """
    return get_decoder(backend)(path, start, spec, extra_audio)
