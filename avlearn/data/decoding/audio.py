"""Audio windows, always decoded with PyAV (decord's AudioReader is 1-20 ms misaligned): seek ~0.1 s
before the window, decode, place every decoded frame by its timestamp (sample exact), downmix to
mono by averaging the channels (all but LFE), then resample with a band-limited (sinc) resampler.
Samples outside the audio track are zeros.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torchaudio

from avlearn.data.decoding import media
from avlearn.data.decoding.clip import Clip, ClipSpec, DecodeError, MediaSource, audio_window_start
from avlearn.data.decoding.clock import CLOCK
from avlearn.data.decoding.media import av_module, open_media

__all__ = ["clip_with_audio", "read_audio", "read_audio_padded", "read_extra_audio"]


_AUDIO_PREROLL = 0.1  # seconds decoded before an audio window: AAC frames need their predecessor


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
    container: Any = open_media(source) if own else source
    name = str(source if own else (path or getattr(container, "name", "<container>")))
    try:
        return _read_audio(container, name, start, seconds, sample_rate)
    finally:
        if own:
            container.close()


def _read_audio(container: Any, path: str, start: float, seconds: float, sample_rate: int) -> torch.Tensor:
    return read_audio_padded(container, path, start, seconds, sample_rate)[0]


def read_audio_padded(container: Any, path: str, start: float, seconds: float,
                      sample_rate: int) -> tuple[torch.Tensor, float]:
    """:func:`_read_audio` and the seconds of the window that no decoded audio frame covered."""
    n_out = round(seconds * sample_rate)
    if n_out == 0:
        return torch.zeros(0), 0.0
    if not container.streams.audio:
        raise DecodeError(path, "has no audio track (audio-visual training needs one)")
    stream = container.streams.audio[0]
    media.single_threaded(stream)
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
    CLOCK.start()
    try:
        container.seek(int(seek_t / tb), stream=stream, backward=True, any_frame=False)
        CLOCK.lap("audio seek")
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
                CLOCK.lap("audio decode")
                if frame.layout.name != layout:
                    layout, keep = frame.layout.name, _downmix_channels(frame)
                samples = _frame_samples(frame, keep)
                mono = samples[0] if len(keep) == 1 else samples.mean(axis=0)
                buf[lo - a0 : hi - a0] = mono[lo - first : hi - first]
                covered += max(0, min(hi, inner[1]) - max(lo, inner[0]))
                CLOCK.lap("audio downmix")
            if done:
                break
    except av_module().FFmpegError as err:
        raise DecodeError(path, f"audio track is corrupt ({err})") from None
    CLOCK.lap("audio decode")
    wav = torch.from_numpy(buf)
    if sr_in != sample_rate:
        wav = _resampler(sr_in, sample_rate)(wav)[margin_out : margin_out + n_out]
    if wav.shape[0] < n_out:
        wav = torch.nn.functional.pad(wav, (0, n_out - wav.shape[0]))
    wav = wav[:n_out].contiguous()
    CLOCK.lap("resample")
    return wav, max(0, inner[1] - inner[0] - covered) / sr_in


def read_extra_audio(container: Any, path: MediaSource, starts: Sequence[float],
                     spec: ClipSpec) -> list[torch.Tensor]:
    """``spec.audio_seconds`` windows at ``starts`` from the already open ``container``."""
    return [_read_audio(container, str(path), at, spec.audio_seconds, spec.sample_rate) for at in starts]


def clip_with_audio(container: Any, path: MediaSource, start: float, spec: ClipSpec, video: torch.Tensor,
                    frame_times: np.ndarray, extra_starts: Sequence[float]) -> Clip:
    """The clip of ``video (C, T, H, W)`` with its audio window and the ``extra_starts`` windows read
    from the open ``container``."""
    audio_start = audio_window_start(start, spec)
    audio, padded = read_audio_padded(container, str(path), audio_start, spec.audio_seconds, spec.sample_rate)
    extra = read_extra_audio(container, path, extra_starts, spec)
    return Clip(video, audio, start, audio_start, frame_times, extra, padded)
