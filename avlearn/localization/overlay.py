"""Heatmaps drawn over frames: a colour map, alpha blending, MP4 (with the original sound) and PNG strips.

The colour at a pixel comes from a 256-entry table of matplotlib's ``"jet"`` or ``"inferno"``
indexed by the map value in ``[0, 1]``; its opacity is ``max_alpha * value``, so low scores leave
the frame as it is. Maps of any size are resized (bilinearly) to the frames' size. Compositing
is image work (numpy, Pillow), not a chart; only the colour tables come from matplotlib.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image

from avlearn.media import AVWriter

__all__ = ["COLORMAPS", "OverlayWriter", "apply_colormap", "blend", "normalize_maps", "write_overlay_video",
           "write_strip_png"]


def _lut(name: str) -> np.ndarray:
    """matplotlib's colour map ``name`` sampled at 256 values in ``[0, 1]``. Shape: ``(256, 3)`` uint8."""
    rgba = colormaps[name](np.linspace(0.0, 1.0, 256))
    return np.round(np.asarray(rgba)[:, :3] * 255).astype(np.uint8)


COLORMAPS: dict[str, np.ndarray] = {name: _lut(name) for name in ("jet", "inferno")}

Colormap = Literal["jet", "inferno"]


def apply_colormap(values: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """Colours of values in ``[0, 1]`` (clipped). Shape: ``(...) -> (..., 3)`` uint8."""
    try:
        table = COLORMAPS[cmap]
    except KeyError:
        raise ValueError(f"unknown colour map {cmap!r}; valid: {', '.join(sorted(COLORMAPS))}") from None
    idx = np.round(np.clip(np.nan_to_num(values), 0.0, 1.0) * 255).astype(np.int64)
    colored: np.ndarray = table[idx]
    return colored


def _resize_maps(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    if maps.shape[1:] == (height, width):
        return maps.astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[:, None]
    out = F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)
    resized: np.ndarray = out[:, 0].numpy()
    return resized


def normalize_maps(maps: np.ndarray, per_frame: bool = False) -> np.ndarray:
    """Min-max to ``[0, 1]`` over the whole video (default) or per frame; flat maps become 0.

    Shape: ``(T, H, W) -> (T, H, W)`` float32.
    """
    m = np.asarray(maps, dtype=np.float32)
    axes = (1, 2) if per_frame else (0, 1, 2)
    lo, hi = m.min(axis=axes, keepdims=True), m.max(axis=axes, keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    out: np.ndarray = np.where(hi > lo, (m - lo) / span, 0.0).astype(np.float32)
    return out


def blend(frames: np.ndarray, maps: np.ndarray, cmap: str = "jet", max_alpha: float = 0.6) -> np.ndarray:
    """Colour maps (values in ``[0, 1]``) over frames, opacity ``max_alpha * value``.

    Shape: ``frames (T, H, W, 3)`` uint8, ``maps (T, h, w)`` (resized to ``H x W``)
    ``-> (T, H, W, 3)`` uint8.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got shape {frames.shape}")
    if maps.ndim != 3 or maps.shape[0] != frames.shape[0]:
        raise ValueError(f"maps must be (T, h, w) with T = {frames.shape[0]}, got shape {maps.shape}")
    if not 0 <= max_alpha <= 1:
        raise ValueError(f"max_alpha must be in [0, 1], got {max_alpha}")
    height, width = frames.shape[1:3]
    out = np.empty_like(frames, dtype=np.uint8)
    for i in range(frames.shape[0]):
        values = np.clip(_resize_maps(maps[i : i + 1], height, width)[0], 0.0, 1.0)
        for top in range(0, height, _BAND):  # the float temporaries of a band, not of a frame
            rows = slice(top, top + _BAND)
            out[i, rows] = _mix(frames[i, rows], values[rows], cmap, max_alpha)
    return out


_BAND = 64  # rows blended at a time: a full-HD frame's float copies would take ~150 MB


def _mix(pixels: np.ndarray, values: np.ndarray, cmap: str, max_alpha: float) -> np.ndarray:
    """Colours of ``values`` over ``pixels``, opacity ``max_alpha * value`` (each pixel on its own).

    Shape: ``pixels (h, W, 3)`` uint8, ``values (h, W)`` in ``[0, 1]`` ``-> (h, W, 3)`` uint8."""
    colors = apply_colormap(values, cmap).astype(np.float32)
    alpha = (max_alpha * values)[..., None]
    mixed = pixels.astype(np.float32) * (1 - alpha) + colors * alpha
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def _even(frames: np.ndarray) -> np.ndarray:
    """Pad odd heights / widths by repeating the last row / column (H.264 in yuv420p needs even sizes)."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if not (pad_h or pad_w):
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def write_overlay_video(
    frames: np.ndarray,
    maps: np.ndarray,
    fps: float,
    audio: np.ndarray | None,
    sample_rate: int,
    path: str | Path,
    cmap: str = "jet",
    max_alpha: float = 0.6,
) -> Path:
    """Write the frames with their heatmaps as an H.264 MP4, with ``audio`` muxed back (AAC).

    Args:
        frames: ``(T, H, W, 3)`` uint8, any ``H, W`` (odd sizes are padded by one edge pixel).
        maps: ``(T, h, w)`` values in ``[0, 1]`` (see :func:`normalize_maps`), resized to ``H x W``.
        fps: frame rate of ``frames``.
        audio: ``(S,)`` or ``(C, S)`` float waveform in ``[-1, 1]``, or ``None`` for a silent video.
        sample_rate: of ``audio``.
        path: output ``.mp4``.

    Returns:
        The path written.
    """
    channels = None if audio is None else (1 if np.ndim(audio) == 1 else int(np.shape(audio)[0]))
    with OverlayWriter(path, fps, frames.shape[1:3], channels, sample_rate, cmap, max_alpha) as writer:
        writer.add(frames, maps)
        if audio is not None:
            writer.finish(audio)
    return Path(path)


class OverlayWriter:
    """:func:`write_overlay_video` chunk by chunk: memory holds one chunk of frames, not the video.

    Args:
        path: output ``.mp4``.
        fps: frame rate of the frames.
        size: ``(H, W)`` of the frames (odd sizes are padded by one edge pixel).
        audio_channels: channels of the audio given to :meth:`finish`, ``None`` for a silent video.
        sample_rate, cmap, max_alpha: as for :func:`write_overlay_video`.

    Writes the same bytes as :func:`write_overlay_video` on the whole video.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], audio_channels: int | None,
                 sample_rate: int, cmap: str = "jet", max_alpha: float = 0.6) -> None:
        even = (size[0] + size[0] % 2, size[1] + size[1] % 2)
        self.cmap, self.max_alpha = cmap, max_alpha
        self.writer = AVWriter(path, fps, even, audio_channels, sample_rate)

    def add(self, frames: np.ndarray, maps: np.ndarray) -> None:
        """Shape: ``frames (T, H, W, 3)`` uint8, ``maps (T, h, w)`` in ``[0, 1]``."""
        self.writer.write_frames(_even(blend(frames, maps, self.cmap, self.max_alpha)))

    def finish(self, audio: np.ndarray) -> None:
        """Mux ``audio`` (``(S,)`` or ``(C, S)``) after the last frame."""
        self.writer.write_audio(audio)

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> OverlayWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.writer.__exit__(kind, err, tb)


def write_strip_png(
    frames: np.ndarray,
    maps: np.ndarray,
    path: str | Path,
    n: int = 6,
    cmap: str = "jet",
    max_alpha: float = 0.6,
    gap: int = 2,
    max_height: int | None = 360,
) -> Path:
    """Save ``n`` evenly spaced key frames with their heatmaps side by side as one PNG.

    Frames taller than ``max_height`` are scaled down (aspect kept); ``None`` keeps their size.

    Shape: ``frames (T, H, W, 3)`` uint8, ``maps (T, h, w)`` in ``[0, 1]``. Returns the path.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if frames.ndim != 4 or maps.ndim != 3 or maps.shape[0] != frames.shape[0]:
        raise ValueError(f"need frames (T, H, W, 3) and maps (T, h, w), got {frames.shape} and {maps.shape}")
    t = frames.shape[0]
    picks = np.unique(np.round(np.linspace(0, t - 1, min(n, t))).astype(np.int64))
    blended = blend(frames[picks], maps[picks], cmap, max_alpha)
    height, width = blended.shape[1:3]
    if max_height is not None and height > max_height:
        width, height = max(1, round(width * max_height / height)), max_height
        small = [Image.fromarray(img).resize((width, height), Image.Resampling.BILINEAR) for img in blended]
        blended = np.stack([np.asarray(img) for img in small])
    strip = np.full((height, len(picks) * (width + gap) - gap, 3), 255, dtype=np.uint8)
    for k, img in enumerate(blended):
        strip[:, k * (width + gap) : k * (width + gap) + width] = img
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip).save(path)
    return path
