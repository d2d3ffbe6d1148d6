"""Audio-visual clip dataset over a manifest, deterministic and robust to bad files.

``AVClipDataset`` yields ``clips_per_video`` random clips of every usable video per epoch.
Sample ``i`` shows video ``i % num_videos``; all of its randomness (start time, AV offset,
transforms) comes from a ``torch.Generator`` seeded by ``(seed, epoch, i)``, so a sample is
the same whichever DataLoader worker produces it, and workers need no ``worker_init_fn``.
The epoch lives in a shared-memory tensor, so ``set_epoch`` reaches persistent workers too
(call it before ``iter(loader)``, as with ``DistributedSampler``).

A video that fails to decode is logged (once per file and process) and replaced by a video
drawn from a generator seeded by ``(seed, epoch, i, attempt)``, up to ``max_retries`` times.
Each sample carries the failures met while producing it (``"skipped"``, ``"failures"``), so
the training loop sees every failure whichever worker met it: collate with :func:`av_collate`
and feed the batches to a :class:`FailureTracker`.

Example::

    ds = AVClipDataset("manifest.csv", ClipSpec(num_frames=8, fps=16), backend="pyav",
                       clips_per_video=2, max_av_offset=0.5, seed=0)
    loader = DataLoader(ds, batch_size=32, shuffle=True, num_workers=8, collate_fn=av_collate,
                        persistent_workers=True)
    tracker = FailureTracker()
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        for batch in loader:
            tracker.update(batch)  # batch["video"]: (B, C, T, H, W), batch["audio"]: (B, S)
            ...
        print(tracker.report(epoch))  # "epoch 3: 2 of 5000 clips replaced; bad files: ..."
        tracker.reset()
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Unpack

import torch
from torch.utils.data import Dataset, default_collate

from avlearn.data.clips import AVClips, AVSettings, ClipItem, ClipSource, Transform, sample_generator
from avlearn.data.decode import ClipSpec
from avlearn.data.device_aug import pad_frames
from avlearn.data.manifest import VideoInfo, read_manifest

__all__ = [
    "AVClipDataset",
    "FailureTracker",
    "FileSource",
    "NoUsableVideoError",
    "Transform",
    "av_collate",
    "classes_of",
    "read_usable",
    "sample_generator",
]

logger = logging.getLogger(__name__)

_LIST_KEYS = ("video_id", "failures")  # collated as lists (strings; per-sample lists concatenated)
PAD_TOLERANCE_S = 0.1
"""Silence padded into a clip's audio window beyond this (s) is counted (AAC frames end up to 64 ms
off the video's end at 16 kHz; more means the audio track is really shorter)."""


class NoUsableVideoError(ValueError):
    """A manifest (or split) in which no row can feed the dataset; the message says what was dropped."""


class FileSource(ClipSource, Dataset[dict[str, Any]]):
    """A clip source over the rows of a manifest (:attr:`videos`): sample ``index`` is clip
    ``locate(index)[1]`` of video ``locate(index)[0]``, replaced on a decode failure by a video drawn
    from ``(seed, epoch, index, attempt)`` (keeping the clip index). Subclasses set ``clips`` and
    ``videos``."""

    videos: list[VideoInfo]

    def read(self, manifest: str | os.PathLike[str] | Sequence[VideoInfo]) -> None:
        """Keep the usable rows of ``manifest`` (:func:`read_usable`) and check the maker's classes
        against their labels (default: their sorted label names)."""
        self.videos = read_usable(manifest, self.clips.require_audio)
        self.clips.class_to_idx = classes_of(self.videos, self.clips.class_to_idx)

    @property
    def num_videos(self) -> int:
        return len(self.videos)

    @property
    def clips_per_item(self) -> int:
        """Samples per video and epoch."""
        return self.clips.clips_per_video

    def __len__(self) -> int:
        return self.clips_per_item * len(self.videos)

    def locate(self, index: int) -> tuple[int, int]:
        """``(video_index, clip_index)`` of sample ``index`` (before any replacement)."""
        return index % len(self.videos), index // len(self.videos)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"{self.clips.name} index {index} out of range [0, {len(self)})")
        epoch = self.epoch
        video_index, clip_index = self.locate(index)

        def pick(attempt: int, generator: torch.Generator) -> ClipItem:
            i = video_index
            if attempt > 0:  # a replacement video, deterministic given (seed, epoch, index, attempt)
                i = int(torch.randint(len(self.videos), (), generator=generator))
            return ClipItem(self.videos[i], i, self.videos[i].path, clip_index)

        sample, failures = self.clips.make(index, epoch, pick)
        if sample is None:
            raise self.clips.give_up(index, epoch, failures, _TOO_MANY)

        return sample


_TOO_MANY = (", the manifest has too many unreadable videos: {listed}. Re-run `avlearn prepare index` and "
             "drop the rows it marks 'bad', or raise max_retries.")


class AVClipDataset(FileSource):
    """Random synchronised (or AV-offset) clips from the usable videos of a manifest.

    Args:
        manifest: rows from :func:`~avlearn.data.manifest.read_manifest`, or a manifest path.
        spec: what to decode (frames, fps, size, audio window); its ``audio_offset`` is a fixed
            shift added to the random one.
        backend: video decoder, ``"pyav"`` or ``"decord"`` (see :mod:`avlearn.data.decode`).
        clips_per_video: clips drawn from every video per epoch; ``len = clips_per_video * num_videos``.
        max_av_offset: each sample's audio window is shifted by ``U(-x, x)`` seconds (0: synchronised).
        video_transform: ``(video (C, T, H, W), generator) -> tensor``.
        audio_transform: ``(waveform (S,), generator) -> tensor`` (may return a spectrogram ``(1, F, T)``).
        seed: base seed of all sampling randomness.
        require_audio: drop rows without an audio track (audio-visual training); when False they
            yield silent audio.
        max_retries: replacements tried for one sample before giving up with an error.
        shifted_audio: when > 0, each sample also carries ``audio_shifted``: an audio window of the
            *same* video starting at least this many seconds away from the clip's own window
            (uniform over the allowed starts; the farthest window when the video is too short). A
            hard negative in the style of AVTS: only features that follow the motion in time can
            tell it from the true audio, whereas other clips' audio differs in content.
        class_to_idx: label name -> class index; default: sorted label names of the kept rows.
        fps_choices: when given, each clip's frame rate is drawn uniformly from these instead of
            ``spec.fps`` (temporal-scale augmentation; the clip keeps ``spec.num_frames`` frames and
            its start is drawn so that the clip at the drawn rate fits the video).

    Sample (a dict):
        ``video``: ``(C, T, H, W)`` float32 (or the video transform's output);
        ``audio``: ``(S,)`` float32 waveform (or the audio transform's output, e.g. ``(1, F, T)``);
        ``index``: int, position of the video in :attr:`videos` (``0 .. num_videos - 1``, what a
        memory bank indexes; the replacement's index when the sample was replaced);
        ``video_id``: str; ``start``: clip start (s); ``av_offset``: total audio shift (s, signed:
        positive means the audio window starts later than the video);
        ``label``: int class index (-1 when the row has none), only when the manifest has labels;
        ``audio_shifted``: like ``audio``, only with ``shifted_audio > 0``; ``shift``: its start
        minus the own window's start (s);
        ``skipped``: int, bad videos replaced while producing this sample;
        ``failures``: ``list[tuple[path, reason]]`` of those replacements;
        ``audio_padded``: seconds of the audio window outside the file's audio track, filled with
        silence (a track shorter than the video; 0 for rows without audio, which are silent by
        request); :class:`FailureTracker` counts the clips where it exceeds ``PAD_TOLERANCE_S``;
        ``video_aug`` / ``audio_aug`` / ``audio_shifted_aug``: a deferred transform's draws, only
        with ``data.augment_on: device`` (see :mod:`avlearn.data.device_aug`).
    """

    clips: AVClips

    def __init__(self, manifest: str | os.PathLike[str] | Sequence[VideoInfo], spec: ClipSpec,
                 backend: str = "pyav", **settings: Unpack[AVSettings]) -> None:
        self.clips = AVClips(spec, backend, name="AVClipDataset", log=logger, **settings)
        self.read(manifest)

    @property
    def class_to_idx(self) -> dict[str, int] | None:
        return self.clips.class_to_idx

    @property
    def clips_per_video(self) -> int:
        return self.clips.clips_per_video


def read_usable(manifest: str | os.PathLike[str] | Sequence[VideoInfo],
                require_audio: bool) -> list[VideoInfo]:
    """The rows of ``manifest`` that can feed a dataset; what was dropped is logged (none: an error)."""
    source = "manifest"
    if isinstance(manifest, (str, os.PathLike)):
        source = str(manifest)
        rows = read_manifest(Path(manifest))
    else:
        rows = list(manifest)
    videos, dropped = _filter(rows, require_audio)
    if dropped:
        why = ", ".join(f"{n} {reason}" for reason, n in dropped.most_common())
        logger.warning("AVClipDataset: kept %d of %d videos from %s; dropped %s",
                       len(videos), len(rows), source, why)
    if not videos:
        raise NoUsableVideoError(f"no usable video in {source} ({len(rows)} rows"
                                 + (f"; dropped {why})" if dropped else ")")
                                 + "; check the manifest with `avlearn prepare index`")
    return videos


def _filter(rows: Sequence[VideoInfo], require_audio: bool) -> tuple[list[VideoInfo], Counter[str]]:
    kept: list[VideoInfo] = []
    dropped: Counter[str] = Counter()
    for row in rows:
        if row.status == "bad":
            dropped["marked 'bad' by the indexer"] += 1
        elif not row.has_video:
            dropped["without a video track"] += 1
        elif require_audio and not row.has_audio:
            dropped["without an audio track"] += 1
        else:
            kept.append(row)
    return kept, dropped


def classes_of(videos: Sequence[VideoInfo], class_to_idx: Mapping[str, int] | None) -> dict[str, int] | None:
    """``class_to_idx`` checked against the rows' labels; default: their sorted label names (or ``None``)."""
    labels = {row.label for row in videos if row.label}
    if class_to_idx is None:
        return {name: i for i, name in enumerate(sorted(labels))} if labels else None
    unknown = sorted(labels - set(class_to_idx))
    if unknown:
        raise ValueError(f"AVClipDataset: label(s) {unknown[:5]} not in class_to_idx; "
                         f"valid: {sorted(class_to_idx)[:20]}")
    return dict(class_to_idx)


def av_collate(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate samples of :class:`AVClipDataset` (use as the DataLoader's ``collate_fn``).

    Tensors and numbers go through ``default_collate`` (``video`` -> ``(B, C, T, H, W)``,
    ``audio`` -> ``(B, S)`` or ``(B, 1, F, T)``, ``index`` -> ``(B,)``; uint8 frames of samples with
    ``video_aug`` are zero-padded to the batch's largest frame size); ``video_id`` becomes a
    list of B strings; ``failures`` the concatenation of the samples' lists.
    """
    if not batch:
        raise ValueError("av_collate: empty batch")
    plain = [{k: v for k, v in s.items() if k not in _LIST_KEYS} for s in batch]
    if "video_aug" in batch[0]:  # undecoded sizes (augment_on: device) may differ between videos
        for s, video in zip(plain, pad_frames([s["video"] for s in plain]), strict=True):
            s["video"] = video
    out: dict[str, Any] = default_collate(plain)
    if "video_id" in batch[0]:
        out["video_id"] = [s["video_id"] for s in batch]
    if "failures" in batch[0]:
        out["failures"] = [tuple(f) for s in batch for f in s["failures"]]
    return out


class FailureTracker:
    """Counts decode failures across batches (hence across DataLoader workers) for an epoch report."""

    def __init__(self) -> None:
        self.clips = 0
        self.replaced = 0  # clips that needed at least one replacement
        self.failures = 0  # decode failures (a clip may need several replacements)
        self.files: Counter[tuple[str, str]] = Counter()
        self.padded = 0  # clips whose audio window ran past the audio track (silence padded in)
        self.padded_videos: Counter[str] = Counter()

    def reset(self) -> None:
        self.clips = self.replaced = self.failures = self.padded = 0
        self.files.clear()
        self.padded_videos.clear()

    def update(self, batch: Mapping[str, Any]) -> None:
        """Add one collated batch (from :func:`av_collate`)."""
        skipped = batch.get("skipped")
        if skipped is not None:
            counts = torch.as_tensor(skipped)
            self.clips += int(counts.numel())
            self.replaced += int((counts > 0).sum())
            self.failures += int(counts.sum())
        for path, reason in batch.get("failures", []):
            self.files[(str(path), str(reason))] += 1
        padded = batch.get("audio_padded")
        if padded is not None:
            over = (torch.as_tensor(padded) > PAD_TOLERANCE_S).tolist()
            self.padded += sum(over)
            ids = batch.get("video_id") or [""] * len(over)
            self.padded_videos.update(str(v) for v, o in zip(ids, over, strict=True) if o)

    @property
    def bad_paths(self) -> list[str]:
        return sorted({path for path, _ in self.files})

    def report(self, epoch: int | None = None) -> str:
        """One line, e.g. ``"epoch 3: 2 of 400 clips replaced; bad files: a.mp4 (file is empty) x2"``."""
        head = f"epoch {epoch}: " if epoch is not None else ""
        if not self.failures:
            text = f"{head}no decode failures in {self.clips} clips"
        else:
            files = "; ".join(f"{path} ({reason})" + (f" x{n}" if n > 1 else "")
                              for (path, reason), n in self.files.most_common())
            text = (f"{head}{self.replaced} of {self.clips} clips replaced after {self.failures} decode "
                    f"failure(s); bad files: {files}")
        return text + self._padding_report()

    def _padding_report(self, limit: int = 10) -> str:
        if not self.padded:
            return ""
        videos = ", ".join(v + (f" x{n}" if n > 1 else "") for v, n in self.padded_videos.most_common(limit))
        more = len(self.padded_videos) - limit
        return (f"; {self.padded} of {self.clips} clips had silence padded into their audio (audio track "
                f"shorter than the video; `avlearn prepare index` warns of these files): {videos}"
                + (f" and {more} more" if more > 0 else ""))
