"""The fine-tuning run's config (``configs/finetune/*.yaml``), validated once at load."""

from __future__ import annotations

import dataclasses
from typing import Literal

from avlearn.config import ConfigError
from avlearn.data.config import DataConfig
from avlearn.data.splits import DatasetConfig
from avlearn.models.registry import ModelConfig
from avlearn.train.config import TrainConfig
from avlearn.train.optim import OptimConfig

__all__ = ["FinetuneConfig", "FinetuneEvalConfig"]


@dataclasses.dataclass(frozen=True)
class FinetuneEvalConfig:
    """Final evaluation: ``num_clips`` uniformly spaced clips per test video (AVID: 10).

    ``shards``: the test split's shard index (``avlearn prepare shard`` of the test split's manifest;
    a path or an fsspec URL); empty: the split's files. Labels must be among the training classes.
    """

    num_clips: int = 10
    batch_size: int = 32
    shards: str = ""

    def __post_init__(self) -> None:
        if self.num_clips < 1 or self.batch_size < 1:
            raise ConfigError("eval.num_clips and eval.batch_size must be >= 1")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """A fine-tuning run.

    Attributes:
        run_dir: checkpoints, ``metrics.jsonl``, ``config.yaml``, ``results.*``.
        seed: classifier initialisation and dropout.
        modality: ``video`` (the video encoder, :class:`~avlearn.models.classifier.VideoClassifier`) or
            ``audio_visual`` (both encoders, their embeddings concatenated before the classifier:
            :class:`~avlearn.models.classifier.AVClassifier`; clips decode their sound too, the
            ``data.audio_seconds`` window of each clip with ``data.audio_aug`` in training).
        epochs: passes over the (subsampled) training videos; the schedule spans them.
        max_steps: stop after this many optimiser steps (0: no limit; the schedule is unchanged).
        warmup_classifier_epochs: first epochs train the classifier only (encoder frozen).
        dropout: before the linear classifier (AVID: 0.5).
        head_init: the classifier's start: ``random`` (AVID), or ``probe``: a linear probe (L2-regularised
            logistic regression, :func:`~avlearn.eval.linear_classifier.fit_linear`) of the frozen
            encoder's embeddings of the training videos' ``eval.num_clips`` centre-cropped clips (the
            augmented training clips when they come from shards), so fine-tuning starts from the probe's
            solution (in the manner of LP-FT, Kumar et al. ICLR 2022; README says what differs) instead
            of moving the encoder to fit a random head.
        freeze_bn: the encoder's batch-norm layers keep their pretrained running statistics (eval
            mode) while the encoder trains; with few labels the statistics of a few videos' augmented
            clips would otherwise replace them (their scale and shift still train).
        encoder_lr_scale: the encoder's learning rate as a fraction of ``optim.lr`` (the classifier
            keeps ``optim.lr``); below 1 a pretrained encoder moves less when few labels would pull
            it towards the training clips (1: AVID's single rate).
        model: architecture for ``--init scratch`` (a pretrained init brings its own).
        dataset: labelled splits (:class:`~avlearn.data.splits.DatasetConfig`).
        data: decoding, augmentation and batching (audio fields unused).
    """

    run_dir: str = "outputs/finetune/run"
    seed: int = 0
    modality: Literal["video", "audio_visual"] = "video"
    epochs: int = 10
    max_steps: int = 0
    warmup_classifier_epochs: int = 2
    dropout: float = 0.5
    head_init: Literal["random", "probe"] = "random"
    freeze_bn: bool = False
    encoder_lr_scale: float = 1.0
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    dataset: DatasetConfig = dataclasses.field(default_factory=DatasetConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: FinetuneEvalConfig = dataclasses.field(default_factory=FinetuneEvalConfig)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.max_steps < 0:
            raise ConfigError(f"epochs must be >= 1 and max_steps >= 0, got {self.epochs}, {self.max_steps}")
        if not 0 <= self.warmup_classifier_epochs < self.epochs:
            raise ConfigError(f"warmup_classifier_epochs ({self.warmup_classifier_epochs}) must be in "
                              f"[0, epochs={self.epochs})")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.head_init not in ("random", "probe"):
            raise ConfigError(f"head_init must be 'random' or 'probe', got {self.head_init!r}")
        if not 0 < self.encoder_lr_scale <= 1:
            raise ConfigError(f"encoder_lr_scale must be in (0, 1], got {self.encoder_lr_scale}: the "
                              "encoder's learning rate as a fraction of optim.lr (freeze it with "
                              "warmup_classifier_epochs instead of 0)")
        if self.modality == "audio_visual" and (self.data.source == "shards" or self.eval.shards):
            raise ConfigError("modality=audio_visual fine-tunes on the split's files: remove "
                              "data.source=shards and eval.shards", key="modality")
        if self.data.fps_choices:
            raise ConfigError(f"data.fps_choices={self.data.fps_choices} is for pretraining; fine-tuning "
                              "clips are taken at data.fps: remove the key", key="data.fps_choices")
