"""Labelled clips for action recognition (fine-tuning and linear evaluation), video with optional audio.

``LabelledClipDataset`` is a file source of :class:`~avlearn.data.clips.LabelledClips` over labelled rows
(from :func:`avlearn.data.splits.to_manifest_rows`) with two sampling modes:

* ``train=True``: ``clips_per_video`` random clips of every video per epoch (sample ``i`` shows
  video ``i % num_videos``), randomness seeded by ``(seed, epoch, i)`` as in
  :class:`~avlearn.data.dataset.AVClipDataset`.
* ``train=False``: ``num_clips`` (AVID: 10) uniformly spaced clips of every video, sample ``i``
  is clip ``i % num_clips`` of video ``i // num_clips``; clip ``k`` starts at
  ``k * (duration - clip_len) / max(num_clips - 1, 1)`` (0 when the video is shorter than a
  clip). Aggregate the clip predictions with :func:`avlearn.eval.classification.video_level`.

Bad files are handled as in :class:`~avlearn.data.dataset.AVClipDataset`: a file that fails to
decode is logged once, counted in the sample's ``skipped`` / ``failures`` and replaced by a video
drawn from a generator seeded by ``(seed, epoch, i, attempt)``. The replacement keeps the *clip
index* (so an eval sample shows clip ``k`` of the replacement) and reports the *replacement's* ``video_index``
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

import logging
import os
from collections.abc import Sequence
from typing import Unpack

from avlearn.data.clips import LabelledClips, LabelledSettings
from avlearn.data.dataset import FileSource
from avlearn.data.decode import ClipSpec
from avlearn.data.manifest import VideoInfo

__all__ = ["LabelledClipDataset"]

logger = logging.getLogger(__name__)


class LabelledClipDataset(FileSource):
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

    clips: LabelledClips

    def __init__(self, manifest: str | os.PathLike[str] | Sequence[VideoInfo], spec: ClipSpec,
                 backend: str = "pyav", **settings: Unpack[LabelledSettings]) -> None:
        self.clips = LabelledClips(spec, backend, name="LabelledClipDataset", log=logger, **settings)
        self.read(manifest)
        unlabelled = [row.path for row in self.videos if not row.label]
        if unlabelled:
            raise ValueError(f"LabelledClipDataset: {len(unlabelled)} row(s) without a label, e.g. "
                             f"{unlabelled[:3]}; build the rows with avlearn.data.splits.to_manifest_rows")

    @property
    def class_to_idx(self) -> dict[str, int]:
        assert self.clips.class_to_idx is not None  # every row is labelled
        return self.clips.class_to_idx

    @property
    def labels(self) -> list[int]:
        """Label id of every video, indexed like :attr:`videos`."""
        return [self.class_to_idx[row.label] for row in self.videos]

    @property
    def num_clips(self) -> int:
        return self.clips.num_clips

    @property
    def clips_per_item(self) -> int:
        return self.clips.clips_per_video if self.clips.train else self.num_clips

    def locate(self, index: int) -> tuple[int, int]:
        """``(video_index, clip_index)`` of sample ``index`` (before any replacement)."""
        if self.clips.train:
            return super().locate(index)
        return index // self.num_clips, index % self.num_clips
