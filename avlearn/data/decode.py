"""Synchronised audio-visual clip decoding: one interface, one backend per file (``"pyav"``, ``"decord"``).

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

A backend is one file of :mod:`avlearn.data.decoding` with a function of the :class:`Decoder`
signature, plus one line in :data:`DECODERS`; an unknown name is an error listing the valid ones.
The audio (:mod:`~avlearn.data.decoding.audio`) and the file header
(:mod:`~avlearn.data.decoding.media`) are read with PyAV by every backend.

Example::

    spec = ClipSpec(num_frames=8, fps=16, size=112, audio_seconds=2.0, sample_rate=16000)
    clip = decode_clip("video.mp4", start=1.25, spec=spec, backend="decord")
    clip.video.shape  # (3, 8, 112, 112) float32 in [0, 1]
    clip.audio.shape  # (32000,) float32
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from avlearn.data.decoding.audio import read_audio
from avlearn.data.decoding.clip import (
    Clip,
    ClipSpec,
    DecodeError,
    MediaBytes,
    MediaSource,
    audio_window_start,
)
from avlearn.data.decoding.clock import stage_times
from avlearn.data.decoding.decord_backend import decode_decord
from avlearn.data.decoding.frames import clip_frame_times
from avlearn.data.decoding.media import probe_audio_duration, probe_duration
from avlearn.data.decoding.pyav_backend import decode_clips, decode_pyav

__all__ = [
    "DECODERS",
    "Clip",
    "ClipSpec",
    "DecodeError",
    "Decoder",
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


class Decoder(Protocol):
    """A video backend: the clip of ``spec`` at ``start`` seconds of ``path``, with further audio
    windows of ``spec.audio_seconds`` at the ``extra_audio`` starts in ``Clip.extra_audio``.

    It must follow the module doc's timing (nearest frames, the audio window, the display rotation)
    and raise :class:`DecodeError` for a file that cannot give the clip.
    """

    def __call__(self, path: MediaSource, start: float, spec: ClipSpec,
                 extra_audio: Sequence[float] = ()) -> Clip: ...


DECODERS: dict[str, Decoder] = {"pyav": decode_pyav, "decord": decode_decord}


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
