"""What a decoder is asked for and what it returns: :class:`ClipSpec`, :class:`Clip`, the media a clip
is read from (a path or :class:`MediaBytes`), :class:`DecodeError`, and the frame geometry both
backends share (which file frame each clip frame is, the decode size, the display rotation).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Literal

import numpy as np
import torch

__all__ = ["Clip", "ClipSpec", "DecodeError", "MediaBytes", "MediaSource", "audio_window_start",
           "check_start", "clip_frame_times", "decode_size", "display_rotation", "nearest",
           "out_size", "to_video_tensor", "upright"]


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


def nearest(times: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index into sorted ``times`` of the entry nearest each target (ties: the later one)."""
    if len(times) == 1:
        return np.zeros(len(targets), dtype=np.int64)
    right = np.clip(np.searchsorted(times, targets, side="left"), 1, len(times) - 1)
    left = right - 1
    take_left = (targets - times[left]) < (times[right] - targets) - 1e-4
    return np.where(take_left, left, right).astype(np.int64)


def out_size(width: int, height: int, size: int | tuple[int, int] | None) -> tuple[int, int]:
    """(W, H) to resize a ``width x height`` frame to."""
    if size is None:
        return width, height
    if isinstance(size, int):
        if width <= height:
            return size, max(1, round(height * size / width))
        return max(1, round(width * size / height)), size
    return int(size[1]), int(size[0])


def display_rotation(frame: Any) -> int:
    """Degrees (0, 90, 180, 270) the display matrix turns a decoded frame counter-clockwise."""
    return round(float(getattr(frame, "rotation", 0) or 0) / 90.0) % 4 * 90


def decode_size(width: int, height: int, size: int | tuple[int, int] | None,
                 rotation: int) -> tuple[int, int]:
    """(W, H) to decode a coded ``width x height`` frame to, so that after ``rotation`` it has ``size``."""
    if rotation in (90, 270):
        out_w, out_h = out_size(height, width, size)  # the displayed picture is transposed
        return out_h, out_w
    return out_size(width, height, size)


def upright(frames: np.ndarray, rotation: int) -> np.ndarray:
    """``(T, H, W, 3)`` frames turned ``rotation`` degrees counter-clockwise."""
    return np.rot90(frames, k=rotation // 90, axes=(1, 2)) if rotation else frames


def to_video_tensor(frames: np.ndarray, uint8: bool = False) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 -> ``(C, T, H, W)`` float32 in [0, 1] (or the uint8 itself), channels-last
    in memory (no copy to planar layout: a crop copies only what it keeps, and that copy is planar)."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)
    return video if uint8 else video.float().div_(255.0)


def check_start(path: MediaSource, start: float, duration: float) -> None:
    if not math.isfinite(start):
        raise DecodeError(path, f"start time {start} is not a number", hint="pass a finite start")
    if start >= duration:
        raise DecodeError(path, f"clip start {start:.3f} s is past the end of the video ({duration:.3f} s)",
                          hint="choose a start below the duration recorded in the manifest")
