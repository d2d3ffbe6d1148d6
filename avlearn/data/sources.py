"""Training clip sources by ``data.source`` name: the registry a new source adds itself to.

A source is a dataset of training clips (``video (C, T, H, W)``, ``audio (1, F, T)``, ``index``)
that the loader can sample (see :mod:`avlearn.data.clips` for the clip maker it calls and
:mod:`avlearn.data.loader` for what the loader asks of it). Its file defines the dataset and one
builder, registered by name::

    @TRAIN_SOURCES.add("frames")
    def build(cfg: DataConfig, require_audio: bool = True) -> FrameShardDataset: ...

and :mod:`avlearn.data.config` imports the file once, so that ``data.source: frames`` selects it
(an unknown name is an error listing the registered ones). The helpers here give every source the
same decoder request and the same transforms for a config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch.utils.data import Dataset

from avlearn.data.clips import Transform
from avlearn.data.decode import ClipSpec
from avlearn.data.device_aug import DeferredAudio, DeferredVideo
from avlearn.data.transforms import build_audio_transform, build_video_transform
from avlearn.registry import Registry

if TYPE_CHECKING:
    from avlearn.data.config import DataConfig

__all__ = ["TRAIN_SOURCES", "TrainSource", "clip_spec", "device_transforms", "train_transforms"]

#: ``(cfg, require_audio) -> dataset`` of a source's training clips.
TrainSource = Callable[["DataConfig", bool], Dataset[Any]]

#: Training clip sources by ``data.source`` name.
TRAIN_SOURCES: Registry[TrainSource] = Registry("data source")


def clip_spec(cfg: DataConfig) -> ClipSpec:
    """The decoder request of a config."""
    return ClipSpec(
        num_frames=cfg.num_frames,
        fps=cfg.fps,
        size=cfg.decode_size,
        audio_seconds=cfg.audio_seconds,
        sample_rate=cfg.sample_rate,
        audio_align=cfg.audio_align,
    )


def device_transforms(cfg: DataConfig) -> tuple[Transform, Transform]:
    """The workers' half of ``augment_on: device``: transforms that only draw (see
    :func:`avlearn.data.config.batch_augment`)."""
    return DeferredVideo(cfg.video_aug), DeferredAudio(cfg.audio_aug, cfg.spec)  # type: ignore[return-value]


def train_transforms(cfg: DataConfig) -> tuple[Transform, Transform]:
    """``(video, audio)`` transforms of training clips: the augmentations, or with
    ``augment_on: device`` only their draws (the pixels are augmented on the device)."""
    if cfg.augment_on == "device":
        return device_transforms(cfg)
    return build_video_transform(cfg.video_aug, True), build_audio_transform(cfg.audio_aug, cfg.spec, True)
