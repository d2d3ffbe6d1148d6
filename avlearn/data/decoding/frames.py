"""The frame geometry both video backends share: which file frame each clip frame is (the nearest
timestamp, ties to the later frame), the decode size, the display rotation, the clip tensor.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from avlearn.data.decoding.clip import ClipSpec, DecodeError, MediaSource

__all__ = ["check_start", "clip_frame_times", "decode_size", "display_rotation", "nearest", "out_size",
           "to_video_tensor", "upright"]


def clip_frame_times(start: float, spec: ClipSpec) -> np.ndarray:
    """Target times ``start + i / fps`` of the clip's frames. Shape ``(T,)``."""
    return start + np.arange(spec.num_frames, dtype=np.float64) / spec.fps


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
