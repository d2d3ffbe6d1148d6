"""The run configs: pretraining (``avlearn/configs/pretrain/*.yaml``), the objective section, and
the ``train:`` section that pretraining and fine-tuning share.

Example (``pretrain/synth_cpu.yaml``, abridged)::

    run_dir: outputs/pretrain/synth_cpu
    epochs: 30
    model: {video_arch: r2plus1d_tiny, audio_arch: avid_spec_cnn9_tiny, embed_dim: 64}
    data: {manifest: outputs/demo/synth/manifest.csv, batch_size: 16}
    optim: {name: adam, lr: 1e-3, weight_decay: 1e-5}
    objective: {name: infonce, temperature: 0.07}        # each objective has its own keys
    train: {mixed_precision: "no", log_every: 10, ckpt_every_steps: 100}
    localization: {weight: 0.0, temperature: 0.03, embed_dim: 64}   # weight > 0: learn a localizer

Everything is validated once, at load; unknown keys name themselves and the valid ones.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Literal

from avlearn.config import ConfigError, from_dict, to_dict
from avlearn.data.config import DataConfig
from avlearn.localization.objective import LocalizationConfig  # the section lives with its objective wrapper
from avlearn.models.registry import ModelConfig
from avlearn.objectives import OBJECTIVES, Objective, ObjectiveContext, RunFacts
from avlearn.train.optim import OptimConfig

__all__ = [
    "EvalConfig",
    "LocalizationConfig",
    "ObjectiveSpec",
    "PretrainConfig",
    "TrainConfig",
]

logger = logging.getLogger(__name__)

# Keys of the flat objective layout (one section with every objective's keys) that run directories
# written before the per-objective sections hold in their config.yaml.
_FLAT_LAYOUT_KEYS = frozenset({
    "name", "num_negatives", "temperature", "momentum", "loss", "xmodal_weight", "within_weight",
    "bank_dtype", "positive_set_size", "num_positives", "mode", "cma_start_epoch", "cma_every_epochs",
    "init_from",
})


@dataclasses.dataclass(frozen=True)
class ObjectiveSpec:
    """The ``objective:`` section: which objective, where to start from, and its own keys.

    ``name`` picks an entry of :data:`avlearn.objectives.OBJECTIVES`; every other key (besides
    ``init_from``) belongs to that objective's config dataclass (e.g.
    :class:`~avlearn.objectives.AVIDConfig`), so a key another objective would use is refused
    with the valid ones::

        objective: {name: avid, num_negatives: 256, temperature: 0.07, loss: nce}
        objective: {name: infonce, temperature: 0.07}

    Attributes:
        name: a key of :data:`avlearn.objectives.OBJECTIVES` (``avid``, ``cma``, ``infonce``, ``vicreg``).
        init_from: a run checkpoint (``.pt``) or a run directory whose newest checkpoint gives the
            initial model weights and the objective's state (e.g. CMA on top of an AVID run).
        params: the objective's config section (an instance of its ``config_cls``).
    """

    name: str = "avid"
    init_from: str = ""
    params: Any = None

    def __post_init__(self) -> None:
        if self.name not in OBJECTIVES:
            hint = OBJECTIVES.choices(self.name)
            raise ConfigError(f"objective.name: unknown objective '{self.name}'.{hint}")
        if self.params is None:
            object.__setattr__(self, "params", OBJECTIVES[self.name].config_cls())

    @classmethod
    def from_config(cls, value: Any, where: str) -> ObjectiveSpec:
        """Build from a YAML mapping (the typed loader calls this for the ``objective`` key)."""
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping (name and the objective's keys), got {value!r}")
        data = dict(value)
        name = data.pop("name", cls.name)
        init_from = data.pop("init_from", "")
        if name not in OBJECTIVES:
            raise ConfigError(f"{where}.name: unknown objective {name!r}.{OBJECTIVES.choices(str(name))}")
        config_cls = OBJECTIVES[name].config_cls
        valid = {f.name for f in dataclasses.fields(config_cls)}
        extra = set(data) - valid
        if extra and set(value) == _FLAT_LAYOUT_KEYS:  # a config.yaml of a run made before the sections
            logger.warning(
                "%s is in the old flat layout (every objective's keys); read as objective %r without %s. "
                "To update the file keep only: %s", where, name, ", ".join(sorted(extra)),
                ", ".join(["name", "init_from", *sorted(valid & set(data))]))
            data = {k: v for k, v in data.items() if k in valid}
        params = from_dict(config_cls, data, prefix=f"{where}.", context=f"of objective '{name}'")
        return cls(name=str(name), init_from=str(init_from), params=params)

    def to_config_dict(self) -> dict[str, Any]:
        """The flat YAML form (``name``, ``init_from`` and the objective's keys)."""
        return {"name": self.name, "init_from": self.init_from, **to_dict(self.params)}

    def build(self, ctx: ObjectiveContext) -> Objective:
        """The objective module, on the CPU."""
        return OBJECTIVES[self.name].build(self.params, ctx)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How the engine runs pretraining and fine-tuning: precision, accumulation, logging, checkpoints.

    Attributes:
        mixed_precision: ``no``, ``bf16`` or ``fp16`` (Accelerate; fp16 adds a grad scaler).
        grad_accum: batches per optimiser step.
        log_every: optimiser steps between log records (metrics.jsonl, TensorBoard, progress bar).
        ckpt_every_steps: optimiser steps between checkpoints (0: only at the end).
        keep_checkpoints: newest checkpoints kept in ``run_dir/checkpoints``.
        export: file name of the final encoders under ``run_dir`` (``.safetensors`` or ``.pt``;
            pretraining only: fine-tuning writes ``results.*``).
        tensorboard: also write TensorBoard events to ``run_dir/tb``.
        progress: show a tqdm bar on the main process.
        sync_batchnorm: with several processes, BatchNorm statistics cover the global batch
            (:mod:`avlearn.models.sync_bn`, works on CPU/gloo too), so N processes compute what one
            process computes on the same global batch; ``false``: per-process statistics.
        channels_last: convolution weights and clips in the channels-last layouts
            (``channels_last_3d`` for 5-d, ``channels_last`` for 4-d); the same results, faster
            convolutions on GPUs (H200, AVID-CMA's model, bf16: +34 % clips/s eager,
            ``benchmarks/results/gpu_nvidia_h200.md``).
        compile: run the trained network through ``torch.compile`` (Accelerate's dynamo plugin)
            with ``compile_backend``; the first steps take tens of seconds to compile.
        compile_backend: ``inductor`` (what is measured), or ``eager`` / ``aot_eager`` to check tracing.
        cudnn_benchmark: let cuDNN time its algorithms for each new input shape
            (``torch.backends.cudnn.benchmark``); clip shapes are fixed in a run, so the timing is
            paid once. No effect on the CPU.
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
    channels_last: bool = False
    compile: bool = False
    compile_backend: str = "inductor"
    cudnn_benchmark: bool = True

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
    objective: ObjectiveSpec = dataclasses.field(default_factory=ObjectiveSpec)
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
        try:  # what the objective needs of the rest of the run, checked by the objective
            OBJECTIVES[self.objective.name].check_run(
                self.objective.params, RunFacts(epochs=self.epochs, shifted_audio=self.data.shifted_audio,
                                                model=self.model, localizer=self.localization.enabled))
        except ValueError as err:
            raise ConfigError(str(err)) from None
