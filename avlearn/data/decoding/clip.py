"""What a decoder is asked for and what it returns: :class:`ClipSpec`, :class:`Clip`, the media a clip
is read from (a path or :class:`MediaBytes`), :class:`DecodeError`, where the audio window starts.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Literal

import numpy as np
import torch

__all__ = ["Clip", "ClipSpec", "DecodeError", "MediaBytes", "MediaSource", "audio_window_start"]


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


def audio_window_start(start: float, spec: ClipSpec) -> float:
    """Start time (s) of the audio window for a clip starting at ``start`` (see module doc)."""
    if spec.audio_align == "center":
        return start + spec.video_seconds / 2 - spec.audio_seconds / 2 + spec.audio_offset
    return start + spec.audio_offset
