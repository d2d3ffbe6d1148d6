"""The fine-tuning run's labelled clips: augmented training clips, and uniformly spaced evaluation clips."""

from __future__ import annotations

import logging
from typing import Any, Literal

from avlearn.data.config import build_shard_dataset, clip_spec
from avlearn.data.labelled import LabelledClipDataset
from avlearn.data.shard_eval import build_shard_eval_dataset
from avlearn.data.splits import load_split, to_manifest_rows
from avlearn.data.transforms import build_audio_transform, build_video_transform
from avlearn.train.finetune.config import FinetuneConfig

__all__ = ["eval_dataset", "train_dataset"]

logger = logging.getLogger(__name__)


def train_dataset(cfg: FinetuneConfig) -> Any:
    """The training split's augmented clips (``data.clips_per_video`` per video), from its files or,
    with ``data.source=shards``, from ``data.shards`` (trained on as they are)."""
    split = load_split(cfg.dataset, "train")
    if cfg.data.source == "shards":  # shards of the training split's videos (`avlearn prepare shard`)
        dataset = build_shard_dataset(cfg.data, train=True, class_to_idx=split.class_to_idx, with_audio=False)
        if dataset.num_videos != len(split):
            logger.warning("data.shards=%s holds %d videos, the %s split (label_fraction=%s) %d: the shards "
                           "are trained on as they are; shard a manifest of this split's videos",
                           cfg.data.shards, dataset.num_videos, split.name, cfg.dataset.label_fraction,
                           len(split))
        return dataset
    return LabelledClipDataset(
        to_manifest_rows(split), clip_spec(cfg.data), cfg.data.backend, class_to_idx=split.class_to_idx,
        train=True, clips_per_video=cfg.data.clips_per_video,
        video_transform=build_video_transform(cfg.data.video_aug, True), seed=cfg.data.seed,
        **_sound(cfg, train=True))


def _sound(cfg: FinetuneConfig | Any, train: bool) -> dict[str, Any]:
    """The settings that decode each clip's sound too (``modality=audio_visual``), else none."""
    if getattr(cfg, "modality", "video") != "audio_visual":
        return {}
    return {"with_audio": True,
            "audio_transform": build_audio_transform(cfg.data.audio_aug, cfg.data.spec, train)}


def eval_dataset(cfg: FinetuneConfig | Any, class_to_idx: dict[str, int],
                 which: Literal["train", "test"] = "test") -> Any:
    """The split's clips (the test split by default): ``eval.num_clips`` uniformly spaced, centre-cropped
    clips per video, from the split's files or, for the test split with ``eval.shards``, its shards."""
    split = load_split(cfg.dataset, which)
    if which == "test" and cfg.eval.shards:  # shards of the test split's videos
        return build_shard_eval_dataset(cfg.data, cfg.eval.shards, "eval.shards", class_to_idx,
                                        cfg.eval.num_clips, expected_videos=len(split))
    return LabelledClipDataset(
        to_manifest_rows(split), clip_spec(cfg.data), cfg.data.backend, class_to_idx=class_to_idx,
        train=False, num_clips=cfg.eval.num_clips,
        video_transform=build_video_transform(cfg.data.video_aug, False), seed=cfg.data.seed,
        **_sound(cfg, train=False))
