"""``avlearn finetune``: full fine-tuning of a (pretrained) video encoder + a new linear classifier.

Usage::

    avlearn finetune --config configs/finetune/ucf101_avid.yaml --init outputs/pretrain/run [key=value ...]
    avlearn finetune --config configs/finetune/synth_cpu.yaml --init scratch dataset.label_fraction=0.1
    accelerate launch --multi_gpu --num_processes 8 -m avlearn finetune --config ... --init ...

``--init`` is a pretraining run dir (its ``encoders.safetensors``, else its newest checkpoint), an
encoder export / run checkpoint file, or ``scratch`` (random weights of the config's ``model``).
AVID-CMA's recipe is the default: 8 frames, dropout 0.5 before the classifier, the first
``warmup_classifier_epochs`` train the classifier alone (encoder frozen, in eval mode), Adam,
step or cosine schedule. A run resumes from ``run_dir/checkpoints`` like ``avlearn pretrain``.
At the end the test split (its files, or its shards with ``eval.shards``) is evaluated with
``eval.num_clips`` uniformly spaced clips per video
(clip- and video-level top-1/top-5, per class) into ``run_dir/results.{json,md}`` and
``run_dir/confusion.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avlearn.config import ConfigError
from avlearn.data.config import DataConfig
from avlearn.data.splits import DatasetConfig
from avlearn.models.registry import ModelConfig
from avlearn.train.command import add_run_arguments, run_command
from avlearn.train.config import TrainConfig
from avlearn.train.engine import StepOutput, Task
from avlearn.train.optim import OptimConfig

if TYPE_CHECKING:
    from avlearn.train.engine import Engine

__all__ = ["FinetuneConfig", "FinetuneTask", "VideoClassifier", "finetune", "main"]

logger = logging.getLogger(__name__)


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
        if self.data.fps_choices:
            raise ConfigError(f"data.fps_choices={self.data.fps_choices} is for pretraining; fine-tuning "
                              "clips are taken at data.fps: remove the key", key="data.fps_choices")


class VideoClassifier(nn.Module):
    """A video encoder, dropout and a linear classifier on its pooled embedding.

    Shape:
        ``video (B, C, T, H, W) -> logits (B, num_classes)``
    """

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        out_dim: int = encoder.out_dim  # type: ignore[assignment]
        self.classifier = nn.Linear(out_dim, num_classes)

    def forward(self, video: Tensor, freeze_encoder: bool = False) -> Tensor:
        """Logits; with ``freeze_encoder`` the encoder runs without gradient and in eval mode."""
        if freeze_encoder:
            was_training = self.encoder.training
            self.encoder.eval()
            with torch.no_grad():
                emb = self.encoder(video).emb
            self.encoder.train(was_training)
        else:
            emb = self.encoder(video).emb
        logits: Tensor = self.classifier(self.dropout(emb))
        return logits


def predict(model: nn.Module, loader: Any, device: torch.device,
            progress: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Clip logits ``(N, C)``, labels ``(N,)`` and video indices ``(N,)`` of every batch of ``loader``."""
    from avlearn.eval.inference import run_inference

    out = run_inference(model, loader, lambda b: {"logits": model(b["video"].to(device)).float(),
                                                  "label": b["label"], "video": b["video_index"]},
                        progress, desc="evaluate test clips")
    return out["logits"], out["label"], out["video"]


def _train_dataset(cfg: FinetuneConfig) -> Any:
    from avlearn.data.config import clip_spec
    from avlearn.data.labelled import LabelledClipDataset
    from avlearn.data.splits import load_split, to_manifest_rows
    from avlearn.data.transforms import build_video_transform

    split = load_split(cfg.dataset, "train")
    if cfg.data.source == "shards":  # shards of the training split's videos (`avlearn prepare shard`)
        from avlearn.data.config import build_shard_dataset

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
        video_transform=build_video_transform(cfg.data.video_aug, True), seed=cfg.data.seed)


def eval_dataset(cfg: FinetuneConfig | Any, class_to_idx: dict[str, int],
                 which: Literal["train", "test"] = "test") -> Any:
    """The split's clips (the test split by default): ``eval.num_clips`` uniformly spaced, centre-cropped
    clips per video, from the split's files or, for the test split with ``eval.shards``, its shards."""
    from avlearn.data.config import clip_spec
    from avlearn.data.labelled import LabelledClipDataset
    from avlearn.data.splits import load_split, to_manifest_rows
    from avlearn.data.transforms import build_video_transform

    split = load_split(cfg.dataset, which)
    if which == "test" and cfg.eval.shards:  # shards of the test split's videos
        from avlearn.data.shard_eval import build_shard_eval_dataset

        return build_shard_eval_dataset(cfg.data, cfg.eval.shards, "eval.shards", class_to_idx,
                                        cfg.eval.num_clips, expected_videos=len(split))
    return LabelledClipDataset(
        to_manifest_rows(split), clip_spec(cfg.data), cfg.data.backend, class_to_idx=class_to_idx,
        train=False, num_clips=cfg.eval.num_clips,
        video_transform=build_video_transform(cfg.data.video_aug, False), seed=cfg.data.seed)


class FinetuneTask(Task):
    """Cross-entropy of a :class:`VideoClassifier` on labelled clips; the encoder frozen (eval mode)
    during the first ``warmup_classifier_epochs``.

    Shape of a batch: ``video (B, C, T, H, W)``, ``label (B,)``.
    """

    def __init__(self, cfg: FinetuneConfig, model: VideoClassifier, init: str) -> None:
        self.cfg, self.model, self.init, self.net = cfg, model, init, model
        self.norms = [m for m in model.encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def step(self, batch: dict[str, Any], device: torch.device, epoch: int) -> StepOutput:
        video = batch["video"].to(device, non_blocking=True)
        label = batch["label"].to(device)
        frozen = epoch < self.cfg.warmup_classifier_epochs
        if self.cfg.freeze_bn:  # every step: the engine may switch the whole net back to train mode
            for norm in self.norms:
                norm.eval()
        logits = self.net(video, freeze_encoder=frozen)
        loss = F.cross_entropy(logits.float(), label)
        logs = {"loss": loss.detach(), "top1": (logits.detach().argmax(1) == label).float().mean(),
                "frozen": torch.tensor(float(frozen), device=device)}
        return StepOutput(loss, logs, torch.ones((), dtype=torch.bool, device=device), len(label))

    def checkpoint_state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "init": self.init}

    def outputs(self) -> list[str]:
        return ["results.json", "results.md", "confusion.png"]

    def load_checkpoint(self, state: dict[str, Any], path: Path) -> None:
        old = str(state.get("init", self.init))
        if not _same_init(old, self.init):  # a warning: a run dir's newest checkpoint moves on
            logger.warning("resuming %s, fine-tuned from --init %s: --init %s is not used (pass --fresh "
                           "to start over from it)", path, old, self.init)
        self.model.load_state_dict(state["model"])


def probe_head(model: VideoClassifier, dataset: Any, batch_size: int, num_workers: int = 0,
               progress: bool = False) -> dict[str, float]:
    """Set ``model.classifier`` to a linear probe of the frozen encoder's embeddings of ``dataset``.

    The probe is fitted on standardised embeddings (``emb (N, D)``) and the standardisation folded
    into the classifier (``W / std``, ``b - (W / std) mean``), so the model needs no extra layer.
    Returns the probe's training accuracy and clip count.
    """
    from torch.utils.data import DataLoader

    from avlearn.data.dataset import av_collate
    from avlearn.eval.inference import run_inference
    from avlearn.eval.linear_classifier import ClassifierConfig, fit_linear

    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=av_collate)

    def embed(b: Mapping[str, Any]) -> dict[str, Tensor]:
        return {"emb": model.encoder(b["video"].to(device)).emb.float(), "label": b["label"]}

    out = run_inference(model.encoder, loader, embed, progress, desc="probe the classifier's start")
    x, y = out["emb"].cpu().double(), out["label"].long()
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp(min=1e-6)
    fit = fit_linear(((x - mean) / std).float(), y, model.classifier.out_features, ClassifierConfig())
    weight = fit.weight.detach().double() / std
    bias = fit.bias.detach().double() - weight @ mean
    accuracy = float(((x @ weight.T + bias).argmax(1) == y).double().mean())
    with torch.no_grad():
        model.classifier.weight.copy_(weight)
        model.classifier.bias.copy_(bias)
    return {"probe_train_top1": accuracy, "probe_clips": len(y)}


def param_groups(model: VideoClassifier, lr: float, encoder_lr_scale: float) -> list[dict[str, Any]]:
    """The optimiser's groups: the encoder at ``lr * encoder_lr_scale``, the classifier at ``lr`` (one
    group at scale 1, so that runs made before the option train as they did)."""
    if encoder_lr_scale == 1:
        return [{"params": list(model.parameters()), "lr": lr}]
    head = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    return [{"params": list(model.encoder.parameters()), "lr": lr * encoder_lr_scale},
            {"params": head, "lr": lr}]


def _same_init(a: str, b: str) -> bool:
    """Whether two ``--init`` sources name the same file (``scratch`` only equals itself)."""
    if "scratch" in (a, b):
        return a == b
    return Path(a).resolve() == Path(b).resolve()


def finetune(cfg: FinetuneConfig, init: str, resume: bool = True,
             datasets: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """Run (or continue) the fine-tuning of ``cfg`` from ``init``; returns ``results.json``'s content.

    ``datasets``: the ``(train, test)`` clips, by default built from ``cfg.dataset`` and ``cfg.data``;
    others must give :class:`~avlearn.data.labelled.LabelledClipDataset`'s samples and attributes
    (``benchmarks/gpu`` fine-tunes on clips held in memory).
    Raises :class:`~avlearn.models.weights.WeightsError` for an unusable ``init``,
    :class:`~avlearn.train.engine.NonFiniteLossError` on NaN/inf, and (like ``pretrain``)
    :class:`~avlearn.train.engine.RunDirBusyError` and :class:`~avlearn.train.engine.RunInterrupted`.
    """
    from avlearn.data.splits import load_split
    from avlearn.train.engine import Engine

    if datasets is None:
        load_split(cfg.dataset, "test")  # an empty or missing test split stops here, not after training
    t_start = time.perf_counter()
    # the frozen warm-up leaves the encoder without gradients, which DDP must be told
    engine = Engine(cfg.train, cfg.run_dir, clip_grad_norm=cfg.optim.clip_grad_norm,
                    find_unused_parameters=cfg.warmup_classifier_epochs > 0)
    try:
        return _finetune(cfg, init, resume, engine, t_start, datasets)
    finally:
        engine.close()


def _finetune(cfg: FinetuneConfig, init: str, resume: bool, engine: Engine, t_start: float,
              datasets: tuple[Any, Any] | None) -> dict[str, Any]:
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader

    from avlearn.data.dataset import av_collate
    from avlearn.eval.classification import ClassificationReport
    from avlearn.eval.results import write_report
    from avlearn.models.weights import load_encoder, load_weights
    from avlearn.train.optim import build_optimizer, build_scheduler

    run_dir = Path(cfg.run_dir)
    source = load_weights(init, cfg.model, what="--init")

    dataset = _train_dataset(cfg) if datasets is None else datasets[0]
    batch_size = cfg.data.batch_size
    if len(dataset) < batch_size * engine.world:  # e.g. 1 % of the labels: one smaller batch per epoch
        batch_size = max(1, len(dataset) // engine.world)
        logger.warning("only %d training clips: batch size lowered to %d", len(dataset), batch_size)
    loader, sampler = engine.loader(dataset, batch_size, cfg.data.seed, cfg.data.num_workers)
    plan = engine.plan(sampler, cfg.epochs, cfg.max_steps)

    set_seed(cfg.seed)
    model = VideoClassifier(load_encoder(source, "video"), len(dataset.class_names), cfg.dropout)
    if cfg.train.sync_batchnorm and engine.world > 1:
        from avlearn.models.sync_bn import convert_global_batchnorm

        convert_global_batchnorm(model)
    task = FinetuneTask(cfg, model, source.source)
    start_fields: dict[str, Any] = {"init": source.source, "train_videos": dataset.num_videos}
    if cfg.head_init == "probe":  # a resumed run loads its checkpoint's classifier over this one
        model.to(engine.device)
        # the training videos' clips as the test clips are taken (uniform, centre crop): fitted on the
        # augmented training clips, the start scored 27.1 % instead of 37.5 % on the test videos (a
        # scratch run: synthetic seed 0, 10 % of the labels)
        clean = datasets is None and cfg.data.source != "shards"
        clips = eval_dataset(cfg, dict(dataset.class_to_idx), "train") if clean else dataset
        start_fields.update(probe_head(model, clips, cfg.eval.batch_size, cfg.data.num_workers,
                                       cfg.train.progress))
        logger.info("classifier started from a linear probe: %.1f %% of %d training clips right",
                    100 * start_fields["probe_train_top1"], start_fields["probe_clips"])
    optimizer = build_optimizer(param_groups(model, cfg.optim.lr, cfg.encoder_lr_scale), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, plan.steps_per_epoch, plan.total_steps)
    logger.info("fine-tuning %s from %s: %d training videos, %d classes", run_dir, source.source,
                dataset.num_videos, len(dataset.class_names))
    pos, log = engine.fit(task, optimizer, scheduler, (dataset, loader, sampler), plan, config=cfg,
                          seed=cfg.seed, resume=resume,
                          start_fields=start_fields)
    train_seconds = time.perf_counter() - t_start

    results: dict[str, Any] = {}
    if engine.is_main:  # the main process evaluates the whole test split (no collectives)
        test = eval_dataset(cfg, dict(dataset.class_to_idx)) if datasets is None else datasets[1]
        test_loader = DataLoader(test, batch_size=cfg.eval.batch_size, shuffle=False,
                                 num_workers=cfg.data.num_workers, collate_fn=av_collate)
        logits, labels, videos = predict(model, test_loader, engine.device, cfg.train.progress)
        report = ClassificationReport.from_outputs(logits, labels, videos, test.class_names)
        extra = {"init": source.source, "label_fraction": cfg.dataset.label_fraction,
                 "train_videos": dataset.num_videos, "test_videos": test.num_videos, "steps": pos.step,
                 "finished": pos.step >= plan.last_step, "train_seconds": round(train_seconds, 1),
                 "eval_seconds": round(time.perf_counter() - t_start - train_seconds, 1)}
        results = write_report(run_dir, report, cfg, extra, f"Fine-tuning {run_dir.name}")
        log.scalars(pos.step, {"test/clip_top1": report.clip_top1, "test/video_top1": report.video_top1,
                               "test/video_top5": report.video_top5}, epoch=pos.epoch)
        logger.info("fine-tuned %s: clip top-1 %.2f %%, video top-1 %.2f %%", run_dir,
                    100 * report.clip_top1, 100 * report.video_top1)
        if math.isnan(report.video_top1):
            logger.warning("no test video was evaluated")
    log.close()
    engine.accelerator.wait_for_everyone()
    return results


# ------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avlearn finetune", description=__doc__.split("\n\n")[0])
    p.add_argument("--init", required=True,
                   help="pretraining run dir, encoders export, checkpoints/step_N.pt, or 'scratch'")
    add_run_arguments(p, "finetune/")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 done, 1 stopped on NaN/inf, 2 bad config or --init,
    75 stopped by a signal after a checkpoint; see :data:`~avlearn.train.command.EXIT_CODES`)."""
    args = _parser().parse_args(argv)

    def run(cfg: FinetuneConfig, resume: bool) -> str:
        results = finetune(cfg, args.init, resume=resume)
        if not results:
            return ""
        return (f"video top-1 {100 * results['video_top1']:.2f} %, clip top-1 "
                f"{100 * results['clip_top1']:.2f} %; results in {cfg.run_dir}/results.md")

    from avlearn.models.checkpoint import CheckpointError  # WeightsError and weight mismatches

    return run_command("avlearn finetune", FinetuneConfig, args, run, (CheckpointError, FileNotFoundError))


if __name__ == "__main__":
    sys.exit(main())
