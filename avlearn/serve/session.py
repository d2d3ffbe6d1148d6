"""What the page computes, without the page: a frame's heatmap for a chosen sound, and the overlay MP4.

:class:`Explorer` holds one loaded model and the two places it may read from: the folder of
videos given to ``avlearn serve`` and the server's own temporary folder (uploads and rendered
files). A frame's map is computed by the code ``avlearn localize`` runs
(:func:`~avlearn.localization.video.stream_maps` over the same fixed windows, so the page shows
for a frame exactly the map of that frame in the MP4), and the MP4 is rendered by
:func:`~avlearn.localization.video.localize_video`. Errors are the CLI's
:class:`~avlearn.data.decode.DecodeError` messages.
"""

from __future__ import annotations

import dataclasses
import math
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from avlearn.data.decode import DecodeError, probe_duration, read_audio
from avlearn.localization.inputs import normalize_video
from avlearn.localization.metrics import resize_heatmap
from avlearn.localization.negatives import map_confidence
from avlearn.localization.overlay import blend, normalize_maps
from avlearn.localization.video import (
    Loaded,
    OverlayOptions,
    file_rates,
    localize_video,
    sound_rate,
    stream_maps,
    uint8_frames,
    window_starts,
)
from avlearn.media import MediaError
from avlearn.serve.probe import ProbeWorker

__all__ = ["VIDEO_SUFFIXES", "Explorer", "FrameView", "Sound"]

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v")
SoundKind = Literal["own", "video", "silence", "upload"]
_PAGE_HINT = "choose another sound"
_UPLOAD_HINT = "upload a video (MP4, MKV, MOV, WebM) or a sound (WAV, MP3)"


@dataclasses.dataclass(frozen=True)
class Sound:
    """The sound to localize: the video's ``own``, another ``video``'s of the folder (``name``),
    ``silence``, or an ``upload``ed file (``path`` in the server's temporary folder)."""

    kind: SoundKind
    name: str = ""


@dataclasses.dataclass(frozen=True)
class FrameView:
    """One frame with its map.

    Attributes:
        image: ``(H, W, 3)`` uint8: the frame, the map over it (normalised per frame, as
            ``localize --per-frame``) and a ring on the peak.
        heatmap: ``(H', W')`` cosine map at grid resolution (absolute scale).
        peak: ``(x, y)`` pixel of the map's maximum at the frame's size (the pointing game's peak);
            ``None`` for a flat map (no peak: e.g. silence under a post hoc map).
        confidence: SLAVC's confidence that the sound is visible (:func:`map_confidence`).
        time, window: the frame's time (s) and the model window ``(start, end)`` (s) it came from.
    """

    image: np.ndarray
    heatmap: np.ndarray
    peak: tuple[int, int] | None
    confidence: float
    time: float
    window: tuple[float, float]


class Explorer:
    """A loaded model and the files the page may read.

    Args:
        loaded: :func:`~avlearn.localization.inputs.load_for_localization`'s result.
        videos: the folder of videos to offer, or ``None``.
        temp: the server's own temporary folder (uploads, silent tracks, rendered MP4s).
        max_seconds: the longest stretch an MP4 covers (from the start of the video).
    """

    def __init__(self, loaded: Loaded, videos: Path | None, temp: Path, max_seconds: float = 60.0) -> None:
        self.model, self.inp, self.learned = loaded
        self.videos = videos.resolve() if videos is not None else None
        self.temp = temp.resolve()
        self.max_seconds = max_seconds
        self.probe = ProbeWorker()
        self._names = self._scan()

    # ------------------------------------------------------------------------------- files
    def video_names(self) -> list[str]:
        """Videos of the folder (listed when the server started), relative paths, sorted."""
        return list(self._names)

    def _scan(self) -> list[str]:
        if self.videos is None:
            return []
        return sorted(str(p.relative_to(self.videos)) for p in self.videos.rglob("*")
                      if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())

    def resolve(self, name: str) -> Path:
        """A video of the folder by its listed name, or a file in the temporary folder by path;
        anything else raises :class:`PermissionError` (nothing else is readable through the page)."""
        if self.videos is not None and name in self._names:
            return self.videos / name
        path = Path(name).resolve()
        if path.is_file() and path.is_relative_to(self.temp):
            return path
        raise PermissionError(f"{name} is not a video of the served folder or an upload")

    def check_upload(self, path: str, need_video: bool) -> Path:
        """An uploaded file, read first in the worker process: :class:`DecodeError` when it is not
        media (or, with ``need_video``, has no video track)."""
        resolved = self.resolve(path)
        try:
            info = self.probe.probe(str(resolved))
        except MediaError as err:
            raise DecodeError(resolved, str(err), hint=_UPLOAD_HINT) from None
        if need_video and not info.has_video:
            raise DecodeError(resolved, "has no video track", hint="upload a video file")
        if not need_video and info.sample_rate is None:
            raise DecodeError(resolved, "has no audio track", hint="upload a WAV or MP3 file with sound")
        return resolved

    def duration(self, video: Path) -> float:
        """Length (s) of a video's picture track."""
        return probe_duration(video)

    def sound_path(self, video: Path, sound: Sound) -> Path | None:
        """The file whose audio is localized (``None``: silence); :class:`DecodeError` when it has
        no sound."""
        if sound.kind == "silence":
            return None
        path = video if sound.kind == "own" else self.resolve(sound.name)
        sound_rate(str(path), hint=_PAGE_HINT)
        return path

    # ---------------------------------------------------------------------------- one frame
    def _audio_at(self, sound: Path | None) -> Callable[[float], Tensor]:
        inp = self.inp
        if sound is None:
            samples = round(inp.audio_seconds * inp.sample_rate)
            return lambda t: torch.zeros(samples)
        return lambda t: read_audio(sound, inp.audio_start(t), inp.audio_seconds, inp.sample_rate)

    def frame(self, video_name: str, t: float, sound: Sound) -> FrameView:
        """The map of the frame at ``t`` seconds, from the window ``avlearn localize`` would give it."""
        video = self.resolve(video_name)
        sound_file = self.sound_path(video, sound)
        inp, duration = self.inp, self.duration(video)
        vrate, _ = file_rates(str(video))
        j = min(max(math.floor(t * vrate + 1e-6), 0), max(math.floor(duration * vrate + 1e-6) - 1, 0))
        total = max(1, math.floor(duration * inp.fps + 1e-6))
        i = min(round(j / vrate * inp.fps), total - 1)  # the model frame the CLI draws on frame j
        first = max(s for s in window_starts(total, inp.num_frames) if s <= i)
        n = min(inp.num_frames, total - first)
        maps = stream_maps(self.model, lambda s, k: self._model_frames(video, first + s, k),
                           self._audio_at(sound_file), inp, n, first / inp.fps, learned=self.learned)
        heat = maps[i - first].numpy()
        picture = uint8_frames(str(video), 0.0, vrate, None, j, 1)[0].numpy()
        return _view(picture, heat, j / vrate, (first / inp.fps, (first + n) / inp.fps))

    def _model_frames(self, video: Path, first: int, n: int) -> Tensor:
        frames = uint8_frames(str(video), 0.0, self.inp.fps, self.inp.size, first, n)
        return normalize_video(frames.permute(3, 0, 1, 2).float() / 255, self.inp)

    # ------------------------------------------------------------------------------ the MP4
    def render(self, video_name: str, sound: Sound) -> Path:
        """The overlay MP4 with the sound (at most ``max_seconds``), by ``avlearn localize``'s code."""
        video = self.resolve(video_name)
        sound_file = self.sound_path(video, sound)
        seconds = min(self.duration(video), self.max_seconds)
        if sound_file is None:
            sound_file = self._silence(seconds)
        heard = Path(sound.name).stem if sound.kind in ("video", "upload") else sound.kind
        out = self.temp / "render" / f"{Path(video_name).stem}-with-{heard}.mp4"
        out.parent.mkdir(parents=True, exist_ok=True)
        opts = OverlayOptions(per_frame=True, strip_frames=1, progress=False)  # per frame, as the page shows
        loaded = (self.model, self.inp, self.learned)
        localize_video(str(video), out, loaded, str(sound_file), 0.0, seconds, opts)
        return out

    def _silence(self, seconds: float) -> Path:
        """A silent mono WAV of ``seconds`` (``localize --audio`` takes a file)."""
        path = self.temp / "render" / f"silence-{seconds:.3f}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(self.inp.sample_rate)
            w.writeframes(bytes(2 * math.ceil(seconds * self.inp.sample_rate)))
        return path

    def close(self) -> None:
        self.probe.close()


def _view(picture: np.ndarray, heat: np.ndarray, t: float, window: tuple[float, float]) -> FrameView:
    """The frame with its map drawn over it and the peak ringed.

    Shape: ``picture (H, W, 3)`` uint8, ``heat (H', W')``.
    """
    image = Image.fromarray(blend(picture[None], normalize_maps(heat[None], per_frame=True))[0])
    peak = None if heat.max() == heat.min() else _peak(heat, *picture.shape[:2])
    if peak is not None:
        x, y = peak
        r = max(4, min(picture.shape[:2]) // 12)
        draw = ImageDraw.Draw(image)
        draw.ellipse((x - r, y - r, x + r, y + r), outline=(0, 0, 0), width=max(3, r // 3))
        draw.ellipse((x - r, y - r, x + r, y + r), outline=(255, 255, 255), width=max(1, r // 6))
    return FrameView(np.asarray(image), heat, peak, map_confidence(heat), t, window)


def _peak(heat: np.ndarray, height: int, width: int) -> tuple[int, int]:
    """``(x, y)`` of the maximum of ``heat (H', W')`` resized to the frame, as the pointing game takes it."""
    full = resize_heatmap(heat, height, width)
    y, x = np.unravel_index(int(np.argmax(full)), full.shape)
    return int(x), int(y)
