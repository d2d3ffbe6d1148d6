"""The pretraining run config (``configs/pretrain/*.yaml``) and the objective factory.

Example (``configs/pretrain/synth_cpu.yaml``, abridged)::

    run_dir: outputs/pretrain/synth_cpu
    epochs: 30
    model: {video_arch: r2plus1d_tiny, audio_arch: avid_spec_cnn9_tiny, embed_dim: 64}
    data: {manifest: outputs/demo/synth/manifest.csv, batch_size: 16}
    optim: {name: adam, lr: 1e-3, weight_decay: 1e-5}
    objective: {name: avid, num_negatives: 256, temperature: 0.07, momentum: 0.5}
    train: {mixed_precision: "no", log_every: 10, ckpt_every_steps: 100}
    localization: {weight: 0.0, temperature: 0.03, embed_dim: 64}   # weight > 0: learn a localizer

Everything is validated once, at load; unknown keys name themselves and the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from torch import nn

from avlearn.config import ConfigError
from avlearn.data.config import DataConfig
from avlearn.models.registry import ModelConfig
from avlearn.objectives import OBJECTIVES, AVIDLoss, CMALoss, InfoNCELoss
from avlearn.train.optim import OptimConfig

__all__ = [
    "EvalConfig",
    "LocalizationConfig",
    "ObjectiveConfig",
    "PretrainConfig",
    "TrainConfig",
    "build_objective",
]

_BANK_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    """Which objective, its parameters and (CMA) the positive-set schedule.

    Attributes:
        name: a key of :data:`avlearn.objectives.OBJECTIVES`: ``avid``, ``cma`` or ``infonce``.
        num_negatives, temperature, momentum, loss, xmodal_weight, within_weight, bank_dtype:
            memory-bank objectives (``avid``, ``cma``); ``infonce`` uses ``temperature`` only.
        positive_set_size, num_positives, mode: CMA's k, P and agreement (see :class:`CMALoss`).
        cma_start_epoch: ``cma`` only: epochs trained with plain AVID (same banks) before the
            CMA positive sets are first computed; 0 when starting from an AVID run
            (``init_from``), as in the paper.
        cma_every_epochs: recompute the positive sets every this many epochs.
        init_from: a run checkpoint (``.pt``) or a run directory whose newest checkpoint gives the
            initial model weights and memory banks (e.g. CMA on top of an AVID run).
    """

    name: str = "avid"
    num_negatives: int = 1024
    temperature: float = 0.07
    momentum: float = 0.5
    loss: Literal["nce", "softmax"] = "nce"
    xmodal_weight: float = 1.0
    within_weight: float = 0.0
    bank_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    positive_set_size: int = 32
    num_positives: int = 8
    mode: Literal["consensus", "union", "video", "audio"] = "consensus"
    cma_start_epoch: int = 0
    cma_every_epochs: int = 5
    init_from: str = ""

    def __post_init__(self) -> None:
        if self.name not in OBJECTIVES:
            raise ConfigError(
                f"objective.name: unknown objective '{self.name}'. Valid: {', '.join(sorted(OBJECTIVES))}"
            )
        if self.temperature <= 0:
            raise ConfigError(f"objective.temperature must be > 0, got {self.temperature}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"objective.momentum must be in [0, 1), got {self.momentum}")
        for key in ("num_negatives", "positive_set_size", "num_positives", "cma_every_epochs"):
            if getattr(self, key) < 1:
                raise ConfigError(f"objective.{key} must be >= 1, got {getattr(self, key)}")
        if self.cma_start_epoch < 0:
            raise ConfigError(f"objective.cma_start_epoch must be >= 0, got {self.cma_start_epoch}")
        if self.xmodal_weight < 0 or self.within_weight < 0 or self.xmodal_weight + self.within_weight == 0:
            raise ConfigError("objective.xmodal_weight and within_weight must be >= 0 and not both 0")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How the loop runs: precision, accumulation, logging and checkpoint cadence.

    Attributes:
        mixed_precision: ``no``, ``bf16`` or ``fp16`` (Accelerate; fp16 adds a grad scaler).
        grad_accum: batches per optimiser step.
        log_every: optimiser steps between log records (metrics.jsonl, TensorBoard, progress bar).
        ckpt_every_steps: optimiser steps between checkpoints (0: only at the end).
        keep_checkpoints: newest checkpoints kept in ``run_dir/checkpoints``.
        export: file name of the final encoders under ``run_dir`` (``.safetensors`` or ``.pt``).
        tensorboard: also write TensorBoard events to ``run_dir/tb``.
        progress: show a tqdm bar on the main process.
        sync_batchnorm: with several processes, BatchNorm statistics cover the global batch
            (:mod:`avlearn.models.sync_bn`, works on CPU/gloo too), so N processes compute what one
            process computes on the same global batch; ``false``: per-process statistics.
    """

    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    grad_accum: int = 1
    log_every: int = 10
    ckpt_every_steps: int = 500
    keep_checkpoints: int = 2
    export: str = "encoders.safetensors"
    tensorboard: bool = True
    progress: bool = True
    sync_batchnorm: bool = True

    def __post_init__(self) -> None:
        if self.grad_accum < 1 or self.log_every < 1 or self.keep_checkpoints < 1:
            raise ConfigError("train.grad_accum, train.log_every and train.keep_checkpoints must be >= 1")
        if self.ckpt_every_steps < 0:
            raise ConfigError(f"train.ckpt_every_steps must be >= 0, got {self.ckpt_every_steps}")
        if not self.export.endswith((".safetensors", ".pt")):
            raise ConfigError(f"train.export must end with .safetensors or .pt, got {self.export!r}")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Held-out cross-modal retrieval during pretraining (skipped when ``manifest`` is empty).

    Attributes:
        manifest: clips to embed (centre crop, no augmentation).
        every_epochs: evaluate after every this many epochs (0: only before and after training).
        batch_size: evaluation batch size per process.
    """

    manifest: str = ""
    every_epochs: int = 0
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.every_epochs < 0 or self.batch_size < 1:
            raise ConfigError("eval.every_epochs must be >= 0 and eval.batch_size >= 1")


@dataclasses.dataclass(frozen=True)
class LocalizationConfig:
    """A sound localizer trained with the encoders (off while ``weight`` is 0).

    When on, the loop adds ``weight *`` :func:`avlearn.localization.objective.localization_loss`
    (EZ-VSL's max-over-locations contrast) of an :meth:`AVLocalizer.learned
    <avlearn.localization.module.AVLocalizer.learned>` localizer to the objective's loss; the
    localizer is checkpointed with the model and exported next to the encoders (see
    :func:`avlearn.localization.export.localizer_path`).

    Attributes:
        weight: factor on the localization loss (0: no localizer, the run is unchanged).
        temperature: softmax temperature of the localization loss (EZ-VSL: 0.03).
        embed_dim: size of the localizer's joint space.
        audio_input: what the localizer's audio projection reads: ``feat`` (the audio encoder's
            pooled feature ``AVOutput.audio_feat``) or ``emb`` (the projected ``audio_emb``).
    """

    weight: float = 0.0
    temperature: float = 0.03
    embed_dim: int = 64
    audio_input: Literal["feat", "emb"] = "feat"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ConfigError(f"localization.weight must be >= 0 (0 = off), got {self.weight}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"localization.temperature must be > 0, got {self.temperature}")
        if self.embed_dim < 1:
            raise ConfigError(f"localization.embed_dim must be >= 1, got {self.embed_dim}")
        if self.audio_input not in ("feat", "emb"):
            raise ConfigError(f"localization.audio_input must be 'feat' or 'emb', got {self.audio_input!r}")

    @property
    def enabled(self) -> bool:
        return self.weight > 0


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """A whole pretraining run.

    Attributes:
        run_dir: checkpoints, logs (``metrics.jsonl``, ``tb/``), the resolved config and the export.
        seed: seeds model initialisation (the same on every process) and the loop's RNG
            (``seed + rank``); the data's own seed is ``data.seed``.
        epochs: passes over the training clips; the learning-rate schedule spans them.
        max_steps: stop after this many optimiser steps (0: no limit); the schedule is unchanged,
            so a run stopped early and resumed matches an uninterrupted one.
    """

    run_dir: str = "outputs/pretrain/run"
    seed: int = 0
    epochs: int = 1
    max_steps: int = 0
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    objective: ObjectiveConfig = dataclasses.field(default_factory=ObjectiveConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    localization: LocalizationConfig = dataclasses.field(default_factory=LocalizationConfig)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.max_steps < 0:
            raise ConfigError(f"max_steps must be >= 0 (0 = no limit), got {self.max_steps}")
        if not self.run_dir:
            raise ConfigError("run_dir must be set")
        if self.objective.name == "cma" and self.objective.cma_start_epoch >= self.epochs:
            raise ConfigError(
                f"objective.cma_start_epoch ({self.objective.cma_start_epoch}) must be < epochs "
                f"({self.epochs}), or CMA never starts"
            )
        if self.data.shifted_audio > 0 and self.objective.name != "infonce":
            raise ConfigError(
                f"data.shifted_audio={self.data.shifted_audio} (shifted same-video audio as negatives) "
                f"is used by objective.name=infonce only, not {self.objective.name!r}; set "
                "data.shifted_audio=0 or objective.name=infonce"
            )


def build_objective(cfg: ObjectiveConfig, name: str, num_items: int, dim: int, seed: int) -> nn.Module:
    """The objective module ``name`` (``cfg.name``, or ``avid`` for CMA's warm-up epochs).

    ``num_items``: memory-bank rows (training videos); ``dim``: embedding size.
    """
    dtype = _BANK_DTYPES[cfg.bank_dtype]
    if name == "infonce":
        return InfoNCELoss(cfg.temperature)
    common = {
        "num_negatives": cfg.num_negatives,
        "temperature": cfg.temperature,
        "momentum": cfg.momentum,
        "loss": cfg.loss,
        "xmodal_weight": cfg.xmodal_weight,
        "within_weight": cfg.within_weight,
        "bank_dtype": dtype,
        "seed": seed,
    }
    if name == "avid":
        return AVIDLoss(num_items, dim, **common)  # type: ignore[arg-type]
    if name == "cma":
        return CMALoss(
            num_items,
            dim,
            positive_set_size=cfg.positive_set_size,
            num_positives=cfg.num_positives,
            mode=cfg.mode,
            **common,  # type: ignore[arg-type]
        )
    raise ConfigError(f"unknown objective '{name}'. Valid: {', '.join(sorted(OBJECTIVES))}")
