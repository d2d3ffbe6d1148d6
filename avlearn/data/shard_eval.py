"""Evaluation clips streamed from shards: what :class:`~avlearn.data.labelled.LabelledClipDataset`
(``train=False``) gives over files, read from the WebDataset shards of ``avlearn prepare shard``.

:class:`ShardEvalDataset` reads the shards in order (no shuffle) and yields, for every sample
(video) with global index ``g``, ``num_clips`` uniformly spaced clips (clip ``k`` starts at
``k * (duration - clip_len) / max(num_clips - 1, 1)``), decoded from the member's bytes in memory
and transformed (unaugmented: centre crop) by the clip maker of :class:`LabelledClipDataset`
(:class:`~avlearn.data.clips.LabelledClips`), with the
randomness of its sample ``i = g * num_clips + k``: the clips equal the file dataset's over the
manifest the shards were written from, bit for bit, with the same sample dict (``video``,
``label``, ``video_index = g``, ``clip_index``, ``video_id``, ``start``, ``skipped``, ``failures``,
``audio`` with ``with_audio``). Aggregate clip predictions by ``video_index`` with
:func:`avlearn.eval.classification.video_level`.

DataLoader workers split the global indices into consecutive ranges (worker ``w`` of ``W``:
``[w * N // W, (w + 1) * N // W)``; a range may start inside a shard, the members before it are
read and dropped, never decoded), so every clip comes exactly once whatever the number of workers;
only the order of the batches depends on it.

A member that cannot be decoded is a decode failure as in :class:`~avlearn.data.shards.ShardDataset`:
logged once, named ``<shard>:<key>.<suffix>`` in the sample's ``failures`` and counted in
``skipped``. As over files the clip is replaced, keeping its clip index, by the same clip of another
video (here the last video of the worker's range that decoded) and reports that video's
``video_index`` and ``label``, so the bad video has no clips in video-level metrics; when no
video decoded yet, the failure is reported with the next sample instead. Labels outside
``class_to_idx`` are an error at construction, naming the shard index.

Example::

    split = load_split(cfg.dataset, "test")
    ds = ShardEvalDataset("test_shards/index.json", ClipSpec(num_frames=8, fps=16),
                          class_to_idx=split.class_to_idx, num_clips=10,
                          video_transform=build_video_transform(VideoAugConfig(), train=False))
    loader = DataLoader(ds, batch_size=40, num_workers=4, collate_fn=av_collate)
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Unpack

import torch
from torch.utils.data import IterableDataset, get_worker_info

from avlearn.config import ConfigError
from avlearn.data.clips import ClipItem, EvalSettings, LabelledClips
from avlearn.data.decode import ClipSpec
from avlearn.data.shards import ShardError, ShardReader, ShardSource

if TYPE_CHECKING:
    from avlearn.data.config import DataConfig

__all__ = ["ShardEvalDataset", "build_shard_eval_dataset", "worker_range"]

logger = logging.getLogger(__name__)


def worker_range(num_samples: int, worker: int, workers: int) -> tuple[int, int]:
    """Global indices ``[lo, hi)`` of DataLoader worker ``worker`` of ``workers``."""
    return num_samples * worker // workers, num_samples * (worker + 1) // workers


class ShardEvalDataset(ShardSource, IterableDataset[dict[str, Any]]):
    """``num_clips`` uniformly spaced clips of every sample of a shard index (see the module doc).

    Args:
        index: ``index.json`` of ``avlearn prepare shard``: a path or an fsspec URL.
        spec, backend, class_to_idx, num_clips, video_transform, audio_transform, with_audio, seed,
            max_retries: as for :class:`~avlearn.data.labelled.LabelledClipDataset` (``train=False``);
            ``class_to_idx`` defaults to the shard index's sorted class names.

    Yields single samples (batch them with ``DataLoader(..., collate_fn=av_collate)``):
    ``video (C, T, H, W)``, ``label``, ``video_index``, ``clip_index``, ... as the file dataset.
    """

    clips: LabelledClips

    def __init__(self, index: str | os.PathLike[str], spec: ClipSpec, backend: str = "pyav",
                 **settings: Unpack[EvalSettings]) -> None:
        # the reader: the index, its label check and the members' bytes (it decodes nothing here)
        self.reader = ShardReader(index, settings.get("class_to_idx"))
        classes = self.reader.class_to_idx
        if not classes:
            raise ValueError(f"{self.reader.index.location}: the shards carry no labels; shard a manifest "
                             "whose label column names each video's class")
        settings["class_to_idx"] = classes
        self.clips = LabelledClips(spec, backend, train=False, name="ShardEvalDataset", log=logger,
                                   **settings)

    @property
    def num_clips(self) -> int:
        return self.clips.num_clips

    def __len__(self) -> int:
        return self.num_videos * self.num_clips

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        good: ClipItem | None = None  # the last video of this range that decoded: the replacement
        carried: list[tuple[str, str]] = []  # failures with no replacement yet: reported with the next
        for raw in self.reader.members(*worker_range(self.num_videos, worker, workers)):
            decoded = False
            for k in range(self.num_clips):
                sample, failures = self._sample(raw, k, good)
                if sample is None:
                    carried += failures
                    continue
                decoded = decoded or not sample["failures"]
                if carried:
                    sample["failures"] = carried + sample["failures"]
                    sample["skipped"] = len(sample["failures"])
                    carried = []
                yield sample
            if decoded:
                good = raw
        if carried:
            logger.warning("ShardEvalDataset: %d clip(s) of the last videos could not be decoded: %s",
                           len(carried), carried[:3])

    def _sample(self, raw: ClipItem, k: int,
                good: ClipItem | None) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
        """Clip ``k`` of ``raw`` as the file dataset's sample ``raw.index * num_clips + k``; on a decode
        failure the same clip of ``good`` (``None`` without one or when it fails too); and the failures."""
        tries = [raw] if good is None else [raw, good]

        def pick(attempt: int, generator: torch.Generator) -> ClipItem | None:
            return dataclasses.replace(tries[attempt], clip=k) if attempt < len(tries) else None

        return self.clips.make(raw.index * self.num_clips + k, self.clips.epoch, pick, attempts=len(tries))


def build_shard_eval_dataset(cfg: DataConfig, index: str, key: str, class_to_idx: Mapping[str, int],
                             num_clips: int, expected_videos: int | None = None) -> ShardEvalDataset:
    """Unaugmented video clips (no audio) of the shard index ``index`` (the config key ``key``, which
    errors name), as ``LabelledClipDataset(train=False)`` over ``cfg``'s decoding settings;
    a different number of videos than the split's ``expected_videos`` is logged."""
    from avlearn.data.config import clip_spec
    from avlearn.data.transforms import build_video_transform

    try:
        dataset = ShardEvalDataset(index, clip_spec(cfg), cfg.backend, class_to_idx=class_to_idx,
                                   num_clips=num_clips, seed=cfg.seed,
                                   video_transform=build_video_transform(cfg.video_aug, False))
    except (ShardError, ValueError) as err:
        raise ConfigError(f"{key}={index}: {err}", key=key) from None
    if expected_videos is not None and dataset.num_videos != expected_videos:
        logger.warning("%s=%s holds %d videos, the split %d: the shards are evaluated as they are; shard a "
                       "manifest of this split's videos", key, index, dataset.num_videos, expected_videos)
    return dataset
