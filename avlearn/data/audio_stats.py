"""Per-frequency spectrogram statistics over a collection, for ``spec.normalize: frequency``.

AVID-CMA normalises each frequency bin of its dB spectrogram with a mean and std measured over
its training audio (``(x - mean_f) / (std_f + 1e-5)``). :func:`compute_audio_stats` measures them
for any :class:`~avlearn.data.audio.SpecConfig` over the usable rows of a manifest: from each
file ``clips_per_video`` windows of ``seconds``, evenly spaced over its duration, each turned
into the un-normalised spectrogram; every frame counts once. Sums are kept in float64 per file
and merged, so the result does not depend on the order or the number of worker processes.
:func:`write_audio_stats` stores ``mean``, ``std``, ``count`` and the front end (``spec``, JSON)
in a ``.npz`` file that :func:`~avlearn.data.audio.load_spec_stats` reads.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from avlearn.data.audio import SpecConfig, Spectrogram
from avlearn.data.decode import read_audio
from avlearn.data.executor import parallel_map
from avlearn.data.manifest import VideoInfo

__all__ = ["SpecSums", "compute_audio_stats", "file_sums", "write_audio_stats"]


@dataclasses.dataclass
class SpecSums:
    """Frame count and per-bin sums ``(F,)`` of values and squares (float64), or a failure."""

    count: int
    total: np.ndarray
    total_sq: np.ndarray
    error: str = ""

    def __add__(self, other: SpecSums) -> SpecSums:
        return SpecSums(self.count + other.count, self.total + other.total, self.total_sq + other.total_sq)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-bin mean and (unbiased) std, float32."""
        if self.count < 2:
            raise ValueError("fewer than 2 spectrogram frames: no statistics")
        mean = self.total / self.count
        var = np.maximum(self.total_sq - self.count * mean**2, 0.0) / (self.count - 1)
        return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def _empty(bins: int, error: str = "") -> SpecSums:
    return SpecSums(0, np.zeros(bins), np.zeros(bins), error)


def _window_starts(duration: float, seconds: float, clips: int) -> list[float]:
    last = max(0.0, duration - seconds)
    return [last * (i + 0.5) / clips for i in range(clips)] if clips > 1 else [last / 2]


def file_sums(row: VideoInfo, cfg: SpecConfig, seconds: float, clips: int) -> SpecSums:
    """Sums over ``clips`` evenly spaced ``seconds`` windows of one file's audio.

    Shape: each window gives a ``(F, T)`` spectrogram; the sums are over its ``T`` frames.
    """
    spec = Spectrogram(dataclasses.replace(cfg, normalize="none", stats=None))
    out = _empty(cfg.num_bins)
    for start in _window_starts(row.duration, seconds, clips):
        wav = read_audio(row.path, start, seconds, cfg.sample_rate)
        frames = spec(wav)[0].double().numpy()  # (F, T)
        out = out + SpecSums(frames.shape[1], frames.sum(axis=1), (frames**2).sum(axis=1))
    return out


def compute_audio_stats(
    rows: Sequence[VideoInfo],
    cfg: SpecConfig,
    seconds: float = 2.0,
    clips_per_video: int = 1,
    workers: int = 1,
    progress: bool = True,
) -> tuple[SpecSums, list[tuple[str, str]]]:
    """Statistics of ``cfg``'s spectrogram over the rows with audio; returns ``(sums, failures)``.

    A file that cannot be decoded is listed in ``failures`` as ``(path, message)`` and skipped.
    """
    usable = [r for r in rows if r.status != "bad" and r.has_audio]
    fn = partial(file_sums, cfg=cfg, seconds=seconds, clips=clips_per_video)
    results = parallel_map(fn, usable, workers, lambda row, msg: _empty(cfg.num_bins, msg), progress,
                           desc="audio-stats")
    total = _empty(cfg.num_bins)
    failures = []
    for row, res in zip(usable, results, strict=True):
        if res.error:
            failures.append((row.path, res.error))
        else:
            total = total + res
    return total, failures


def write_audio_stats(path: str | Path, sums: SpecSums, cfg: SpecConfig, files: int) -> Path:
    """Write ``mean``, ``std``, ``count``, ``files`` and ``spec`` to the ``.npz`` file ``path``."""
    mean, std = sums.mean_std()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    spec = json.dumps(cfg.stats_fields())
    np.savez(tmp, mean=mean, std=std, count=np.int64(sums.count), files=np.int64(files), spec=np.array(spec))
    tmp.replace(path)
    return path

