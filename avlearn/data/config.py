"""The ``data:`` section of a run config and the builders that turn it into a dataset and loader.

Example (``avlearn/configs/data/synth.yaml``)::

    manifest: outputs/demo/synth/manifest.csv
    backend: pyav
    num_frames: 8
    fps: 16
    decode_size: 128
    video_aug: {size: 112}
    spec: {kind: avid_linear}
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from torch.utils.data import DataLoader, Dataset

import avlearn.data.frame_shards  # noqa: F401  (registers data.source 'frames')
from avlearn.config import ConfigError, InvalidValue
from avlearn.data.audio import SpecConfig
from avlearn.data.dataset import AVClipDataset, NoUsableVideoError, Transform, av_collate
from avlearn.data.decode import DECODERS
from avlearn.data.device_aug import AUGMENT_ON, BatchAugment
from avlearn.data.manifest import ManifestError, VideoInfo
from avlearn.data.shards import ShardDataset, ShardError
from avlearn.data.sources import TRAIN_SOURCES, clip_spec, device_transforms
from avlearn.data.transforms import (
    AudioAugConfig,
    VideoAugConfig,
    build_audio_transform,
    build_video_transform,
)

__all__ = ["DataConfig", "batch_augment", "build_dataset", "build_loader",
           "build_shard_dataset", "build_train_dataset", "clip_spec", "device_transforms"]


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where clips come from and how they are decoded, augmented and batched.

    Attributes:
        source: where training clips come from: ``files`` (the ``manifest``'s files, random access),
            ``shards`` (streamed from the WebDataset shards of ``avlearn prepare shard``, see
            :mod:`avlearn.data.shards`; same decoders, transforms and samples) or ``frames``
            (pretraining: JPEG frames and PCM audio of ``avlearn prepare shard --format frames``,
            random access, see :mod:`avlearn.data.frame_shards`; ``decode_size`` and ``sample_rate``
            must be the shards').
        manifest: manifest written by ``avlearn prepare index`` (.csv or .jsonl).
        shards: with ``source: shards``: the shard index ``index.json``, a path or an fsspec URL
            (``s3://``, ``gs://``, ``https://``, ...); with ``source: frames``: its local ``index.json``.
        shuffle_buffer: with ``source: shards``: raw samples each reader holds to shuffle its range.
        shard_streams: with ``source: shards``: readers per process, each over its own range of the
            epoch; a multiple of ``num_workers`` (the workers share them). The order depends on it,
            not on ``num_workers``.
        backend: video decoder, ``pyav`` or ``decord`` (audio always comes through PyAV).
        num_frames, fps: frames per clip and their sampling rate (AVID: 8 frames at 16 fps).
        fps_choices: pretraining only: each training clip's frame rate is drawn uniformly from these
            (a temporal-scale augmentation: the same ``num_frames`` span several durations, e.g.
            ``[4, 16]``: 1 s or 0.25 s); empty: always ``fps``. Evaluation clips keep ``fps``.
        decode_size: short side frames are resized to when decoded; crops of
            ``video_aug.size`` are taken from it.
        audio_seconds, sample_rate: audio window per clip (AVID: 2 s).
        audio_align: ``center``: the audio window is centred on the video clip; ``start``: it
            starts with it.
        max_av_offset: random audio-visual shift in seconds, ``U(-x, x)`` per sample (AVID <= 0.5).
        clips_per_video: clips drawn from every video per epoch.
        shifted_audio: training only: when > 0, every clip also brings an audio window of the same
            video at least this many seconds from its own (``audio_shifted``), which the ``infonce``
            objective adds to the negatives of the video (AVTS-style hard negatives: only features that
            follow the motion in time can reject it). 0: off.
        batch_size: per process.
        num_workers: DataLoader worker processes per training process.
        seed: base seed of clip sampling and augmentation.
        video_aug, audio_aug, spec: augmentation and spectrogram settings.
        augment_on: where training clips are augmented: ``worker`` (DataLoader workers do it all)
            or ``device`` (workers decode to uint8 and draw the random parameters; the training
            process applies them to the batch on the accelerator, same draws: see
            :mod:`avlearn.data.device_aug`). Pretraining only: evaluation clips, fine-tuning and
            probes are always prepared in the workers.
    """

    source: str = "files"
    manifest: str = ""
    shards: str = ""
    shuffle_buffer: int = 64
    shard_streams: int = 4
    backend: str = "pyav"
    num_frames: int = 8
    fps: float = 16.0
    fps_choices: list[float] = dataclasses.field(default_factory=list)
    decode_size: int = 128
    audio_seconds: float = 2.0
    sample_rate: int = 16000
    audio_align: Literal["start", "center"] = "center"
    max_av_offset: float = 0.0
    clips_per_video: int = 1
    shifted_audio: float = 0.0
    batch_size: int = 16
    num_workers: int = 2
    seed: int = 0
    video_aug: VideoAugConfig = dataclasses.field(default_factory=VideoAugConfig)
    audio_aug: AudioAugConfig = dataclasses.field(default_factory=AudioAugConfig)
    spec: SpecConfig = dataclasses.field(default_factory=SpecConfig)
    augment_on: Literal["worker", "device"] = "worker"

    def __post_init__(self) -> None:
        def bad(field: str, value: object, allowed: str) -> InvalidValue:
            return InvalidValue(field, value, allowed, "data")

        if self.source not in TRAIN_SOURCES:
            raise bad("source", self.source, f"must be one of {sorted(TRAIN_SOURCES)} (registered sources: "
                      "'files' reads data.manifest, the shard kinds data.shards)")
        if self.augment_on not in AUGMENT_ON:
            raise bad("augment_on", self.augment_on, f"must be one of {list(AUGMENT_ON)}")
        if self.backend not in DECODERS:
            raise bad("backend", self.backend, f"must be one of {sorted(DECODERS)}")
        for name in ("batch_size", "clips_per_video", "num_frames", "shard_streams"):
            if getattr(self, name) < 1:
                raise bad(name, getattr(self, name), "must be >= 1")
        if self.fps <= 0:
            raise bad("fps", self.fps, "must be > 0 (frames per second)")
        if any(f <= 0 for f in self.fps_choices):
            raise bad("fps_choices", self.fps_choices, "must all be > 0 (frames per second)")
        for name in ("audio_seconds", "num_workers", "max_av_offset", "shifted_audio", "shuffle_buffer"):
            if getattr(self, name) < 0:
                raise bad(name, getattr(self, name), "must be >= 0")
        if self.decode_size < self.video_aug.size:
            raise bad("decode_size", self.decode_size, f"must be >= video_aug.size ({self.video_aug.size}): "
                      "crops are taken from the decoded frames")
        if self.spec.sample_rate != self.sample_rate:
            rule = f"must equal sample_rate ({self.sample_rate})"
            raise bad("spec.sample_rate", self.spec.sample_rate, rule)


def batch_augment(cfg: DataConfig) -> BatchAugment | None:
    """The training process's half of ``augment_on: device`` (None with ``worker``)."""
    return BatchAugment(cfg.video_aug, cfg.audio_aug, cfg.spec) if cfg.augment_on == "device" else None


def build_dataset(
    cfg: DataConfig,
    train: bool,
    manifest: str | Path | list[VideoInfo] | None = None,
    require_audio: bool = True,
    key: str = "",
) -> AVClipDataset:
    """Dataset of augmented (``train``) or centre-cropped clips.

    Sample: ``video`` ``(C, T, size, size)``, ``audio`` ``(1, F, T_a)`` spectrogram, plus the
    keys of :class:`~avlearn.data.dataset.AVClipDataset`.

    A missing or unreadable manifest, or one without a usable video, is a :class:`ConfigError`
    naming ``key`` (default ``data.manifest``, or ``manifest`` when ``manifest`` is given).
    """
    source = manifest if manifest is not None else cfg.manifest
    key = key or ("data.manifest" if manifest is None else "manifest")
    if not source:
        raise ConfigError(
            f"{key} is empty: index the collection with `avlearn prepare index DIR "
            f"--out manifest.csv` and set {key}=manifest.csv", key=key
        )
    if isinstance(source, str | Path) and not Path(source).is_file():
        raise ConfigError(f"{key}={source}: no such file; index the collection with `avlearn prepare "
                          f"index DIR --out {source}` or correct the path", key=key)
    try:
        return _dataset(cfg, train, source, require_audio)
    except (ManifestError, NoUsableVideoError) as err:
        named = "" if isinstance(source, list) else f"={source}"
        raise ConfigError(f"{key}{named}: {err}", key=key) from None


def _dataset(cfg: DataConfig, train: bool, source: str | Path | list[VideoInfo],
             require_audio: bool) -> AVClipDataset:
    video_transform: Transform = build_video_transform(cfg.video_aug, train)
    audio_transform: Transform = build_audio_transform(cfg.audio_aug, cfg.spec, train)
    if train and cfg.augment_on == "device":  # draws in the workers, pixels on the accelerator
        video_transform, audio_transform = device_transforms(cfg)
    return AVClipDataset(
        source,
        clip_spec(cfg),
        cfg.backend,
        clips_per_video=cfg.clips_per_video,
        max_av_offset=cfg.max_av_offset if train else 0.0,
        shifted_audio=cfg.shifted_audio if train else 0.0,
        fps_choices=cfg.fps_choices if train else (),
        video_transform=video_transform,
        audio_transform=audio_transform,
        seed=cfg.seed,
        require_audio=require_audio,
    )


def build_train_dataset(cfg: DataConfig, require_audio: bool = True) -> Dataset[Any]:
    """The training clips of ``cfg.source``, built by its entry in
    :data:`~avlearn.data.sources.TRAIN_SOURCES`: ``files`` is :func:`build_dataset` over
    ``data.manifest``'s files, ``shards`` a :class:`~avlearn.data.shards.ShardDataset` and ``frames`` a
    :class:`~avlearn.data.frame_shards.FrameShardDataset` over ``data.shards``."""
    return TRAIN_SOURCES[cfg.source](cfg, require_audio)


@TRAIN_SOURCES.add("files")
def _files(cfg: DataConfig, require_audio: bool = True) -> AVClipDataset:
    return build_dataset(cfg, train=True, require_audio=require_audio)


@TRAIN_SOURCES.add("shards")
def _shards(cfg: DataConfig, require_audio: bool = True) -> ShardDataset:
    return build_shard_dataset(cfg, train=True, require_audio=require_audio)


def build_shard_dataset(cfg: DataConfig, train: bool, require_audio: bool = True, *,
                        class_to_idx: dict[str, int] | None = None, with_audio: bool = True) -> ShardDataset:
    """A :class:`~avlearn.data.shards.ShardDataset` over ``cfg.shards``, augmented when ``train``.

    ``with_audio=False``: video-only clips (fine-tuning): no audio is decoded, rows without audio stay.
    ``class_to_idx``: label ids (e.g. a split's); default: the shard index's sorted class names.
    """
    if not cfg.shards:
        raise ConfigError("data.source=shards but data.shards is empty: write shards with `avlearn prepare "
                          "shard MANIFEST --out DIR` and set data.shards=DIR/index.json", key="data.shards")
    spec = clip_spec(cfg) if with_audio else dataclasses.replace(clip_spec(cfg), audio_seconds=0.0)
    video_transform: Transform = build_video_transform(cfg.video_aug, train)
    audio_transform: Transform | None = (build_audio_transform(cfg.audio_aug, cfg.spec, train)
                                         if with_audio else None)
    if train and with_audio and cfg.augment_on == "device":  # as for files: the workers only draw
        video_transform, audio_transform = device_transforms(cfg)
    try:
        return ShardDataset(
            cfg.shards,
            spec,
            cfg.backend,
            clips_per_video=cfg.clips_per_video,
            max_av_offset=cfg.max_av_offset if train and with_audio else 0.0,
            shifted_audio=cfg.shifted_audio if train and with_audio else 0.0,
            fps_choices=cfg.fps_choices if train and with_audio else (),
            video_transform=video_transform,
            audio_transform=audio_transform,
            seed=cfg.seed,
            require_audio=require_audio and with_audio,
            class_to_idx=class_to_idx,
            shuffle_buffer=cfg.shuffle_buffer,
            streams=cfg.shard_streams,
        )
    except (ShardError, ValueError) as err:
        raise ConfigError(f"data.shards={cfg.shards}: {err}", key="data.shards") from None


def build_loader(
    cfg: DataConfig, dataset: AVClipDataset, shuffle: bool, drop_last: bool = False
) -> DataLoader[dict[str, object]]:
    """DataLoader with :func:`av_collate`; workers persist across epochs (they see ``set_epoch``)."""
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=cfg.num_workers,
        collate_fn=av_collate,
        persistent_workers=cfg.num_workers > 0,
        pin_memory=False,
    )
