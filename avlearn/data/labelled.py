"""Labelled clips for action recognition (fine-tuning and linear evaluation), video with optional audio.

``LabelledClipDataset`` is an :class:`~avlearn.data.dataset.AVClipDataset` over labelled rows
(from :func:`avlearn.data.splits.to_manifest_rows`) with two sampling modes:

* ``train=True``: ``clips_per_video`` random clips of every video per epoch (sample ``i`` shows
  video ``i % num_videos``), randomness seeded by ``(seed, epoch, i)`` as in the parent.
* ``train=False``: ``num_clips`` (AVID: 10) uniformly spaced clips of every video, sample ``i``
  is clip ``i % num_clips`` of video ``i // num_clips``; clip ``k`` starts at
  ``k * (duration - clip_len) / max(num_clips - 1, 1)`` (0 when the video is shorter than a
  clip). Aggregate the clip predictions with :func:`avlearn.eval.classification.video_level`.

Bad files are handled as in the parent: a file that fails to decode is logged once, counted
in the sample's ``skipped`` / ``failures`` and replaced by a video drawn from a generator
seeded by ``(seed, epoch, i, attempt)``. The replacement keeps the *clip index* (so an eval
sample shows clip ``k`` of the replacement) and reports the *replacement's* ``video_index``
and ``label``, so the failed video simply has fewer (or no) clips in video-level metrics.
Collate with :func:`~avlearn.data.dataset.av_collate`, count with
:class:`~avlearn.data.dataset.FailureTracker`.

Example::

    split = ucf101_split("ucfTrainTestlist", fold=1, split="test", video_root="UCF-101")
    ds = LabelledClipDataset(to_manifest_rows(split, probe=True), ClipSpec(num_frames=16, fps=16),
                             class_to_idx=split.class_to_idx, train=False, num_clips=10,
                             video_transform=build_video_transform(VideoAugConfig(), train=False))
    loader = DataLoader(ds, batch_size=40, num_workers=8, collate_fn=av_collate)
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from avlearn.data.dataset import AVClipDataset, Transform, sample_generator
from avlearn.data.decode import Clip, ClipSpec, DecodeError, MediaSource, decode_clip
from avlearn.data.manifest import VideoInfo

__all__ = ["LabelledClipDataset"]

logger = logging.getLogger(__name__)


class LabelledClipDataset(AVClipDataset):
    """Labelled clips of a manifest: random ones for training, uniformly spaced ones for evaluation.

    Args:
        manifest: labelled rows (``VideoInfo.label`` = class name) or a manifest path.
        spec: what to decode; with ``with_audio=False`` its audio window is ignored (no audio decoded).
        backend: ``"pyav"`` or ``"decord"``.
        class_to_idx: class name -> label id (use ``LabelledSplit.class_to_idx`` so train and test
            agree); default: sorted label names of the kept rows.
        train: random clips (``clips_per_video`` per video and epoch) or ``num_clips`` uniform clips.
        clips_per_video: training clips per video and epoch.
        num_clips: evaluation clips per video.
        video_transform: ``(video (C, T, H, W), generator) -> tensor``.
        audio_transform: ``(waveform (S,), generator) -> tensor``, e.g. a spectrogram ``(1, F, T)``.
        with_audio: decode audio too (rows without an audio track are then dropped).
        seed: base seed of all sampling randomness.
        max_retries: replacements tried for one sample before giving up with an error.

    Sample (a dict):
        ``video``: ``(C, T, H, W)`` (or the transform's output); ``label``: int;
        ``video_index``: int in ``0 .. num_videos - 1`` (position in :attr:`videos`);
        ``clip_index``: int (eval: ``0 .. num_clips - 1``; train: ``0 .. clips_per_video - 1``);
        ``video_id``: str; ``start``: clip start (s); ``skipped``: int; ``failures``: list of
        ``(path, reason)``; with ``with_audio``: ``audio`` ``(S,)`` or the audio transform's output.
    """

    def __init__(
        self,
        manifest: str | os.PathLike[str] | Sequence[VideoInfo],
        spec: ClipSpec,
        backend: str = "pyav",
        *,
        class_to_idx: Mapping[str, int] | None = None,
        train: bool = True,
        clips_per_video: int = 1,
        num_clips: int = 10,
        video_transform: Transform | None = None,
        audio_transform: Transform | None = None,
        with_audio: bool = False,
        seed: int = 0,
        max_retries: int = 10,
    ) -> None:
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        if not with_audio:
            spec = dataclasses.replace(spec, audio_seconds=0.0)
        super().__init__(manifest, spec, backend, clips_per_video=clips_per_video, max_av_offset=0.0,
                         video_transform=video_transform, audio_transform=audio_transform, seed=seed,
                         require_audio=with_audio, max_retries=max_retries, class_to_idx=class_to_idx)
        unlabelled = [row.path for row in self.videos if not row.label]
        if unlabelled:
            raise ValueError(f"LabelledClipDataset: {len(unlabelled)} row(s) without a label, e.g. "
                             f"{unlabelled[:3]}; build the rows with avlearn.data.splits.to_manifest_rows")
        assert self.class_to_idx is not None  # every row is labelled
        self.train = train
        self.num_clips = num_clips
        self.with_audio = with_audio

    @property
    def class_names(self) -> list[str]:
        """Class names ordered by label id."""
        assert self.class_to_idx is not None
        return sorted(self.class_to_idx, key=self.class_to_idx.__getitem__)

    @property
    def labels(self) -> list[int]:
        """Label id of every video, indexed like :attr:`videos`."""
        assert self.class_to_idx is not None
        return [self.class_to_idx[row.label] for row in self.videos]

    @property
    def clips_per_item(self) -> int:
        return self.clips_per_video if self.train else self.num_clips

    def __len__(self) -> int:
        return self.clips_per_item * len(self.videos)

    def locate(self, index: int) -> tuple[int, int]:
        """``(video_index, clip_index)`` of sample ``index`` (before any replacement)."""
        if self.train:
            return index % len(self.videos), index // len(self.videos)
        return index // self.num_clips, index % self.num_clips

    def clip_start(self, duration: float, clip_index: int, generator: torch.Generator) -> float:
        """Train: a random start (:meth:`sample_start`); eval: the ``clip_index``-th of ``num_clips``
        uniformly spaced starts over the starts whose clip fits in ``duration``."""
        if self.train:
            return self.sample_start(duration, generator)
        before, after = self._span()
        high = duration - after
        if high <= before:
            return 0.0
        return before + clip_index * (high - before) / max(self.num_clips - 1, 1)

    def decode_clip_of(self, row: VideoInfo, clip_index: int, generator: torch.Generator,
                       source: MediaSource | None = None) -> Clip:
        """Clip ``clip_index`` of ``row`` (:meth:`clip_start`), decoded from ``source`` (default
        ``row.path``; :class:`~avlearn.data.decode.MediaBytes` for a shard's member)."""
        media = row.path if source is None else source
        start = self.clip_start(self._duration(row, source), clip_index, generator)
        return decode_clip(media, start, self.spec, self.backend)

    def labelled_sample(self, row: VideoInfo, video_index: int, clip_index: int, clip: Clip,
                        generator: torch.Generator, failures: list[tuple[str, str]]) -> dict[str, Any]:
        """The sample dict of a decoded clip (transforms outside the failure handling: a transform bug
        is an error, not a bad file). ``row.label`` must be one of :attr:`class_to_idx`."""
        video = clip.video
        if self.video_transform is not None:
            video = self.video_transform(video, generator)
        assert self.class_to_idx is not None
        sample: dict[str, Any] = {
            "video": video, "label": self.class_to_idx[row.label], "video_index": video_index,
            "clip_index": clip_index, "video_id": row.video_id, "start": float(clip.start),
            "skipped": len(failures), "failures": failures,
        }
        if self.with_audio:
            audio = clip.audio
            if self.audio_transform is not None:
                audio = self.audio_transform(audio, generator)
            sample["audio"] = audio
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"LabelledClipDataset index {index} out of range [0, {len(self)})")
        epoch = self.epoch
        video_index, clip_index = self.locate(index)
        failures: list[tuple[str, str]] = []
        for attempt in range(self.max_retries + 1):
            generator = sample_generator(self.seed, epoch, index, attempt)
            if attempt > 0:  # a replacement video, deterministic given (seed, epoch, index, attempt)
                video_index = int(torch.randint(len(self.videos), (), generator=generator))
            row = self.videos[video_index]
            try:
                clip = self.decode_clip_of(row, clip_index, generator)
            except Exception as err:  # decode failures of any kind; counted and logged, never silent
                reason = err.reason if isinstance(err, DecodeError) else f"{type(err).__name__}: {err}"
                failures.append((row.path, reason))
                if row.path not in self._warned:
                    self._warned.add(row.path)
                    logger.warning("LabelledClipDataset: skipping %s: %s", row.path, reason)
                continue
            return self.labelled_sample(row, video_index, clip_index, clip, generator, failures)
        listed = "; ".join(f"{p} ({r})" for p, r in failures)
        raise RuntimeError(
            f"LabelledClipDataset: sample {index} (epoch {epoch}) failed {len(failures)} times in a row, "
            f"the manifest has too many unreadable videos: {listed}. Re-run `avlearn prepare index` "
            f"and drop the rows it marks 'bad', or raise max_retries.")
