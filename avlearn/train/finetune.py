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
At the end the test split is evaluated with ``eval.num_clips`` uniformly spaced clips per video
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
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avlearn.config import ConfigError
from avlearn.data.config import DataConfig
from avlearn.models.registry import ModelConfig
from avlearn.train.command import add_run_arguments, run_command
from avlearn.train.downstream import DatasetConfig, InitError
from avlearn.train.optim import OptimConfig

__all__ = ["FinetuneConfig", "VideoClassifier", "finetune", "main"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FinetuneTrainConfig:
    """How the loop runs (see :class:`avlearn.train.config.TrainConfig` for the same fields)."""

    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    log_every: int = 10
    ckpt_every_steps: int = 500
    keep_checkpoints: int = 2
    tensorboard: bool = True
    progress: bool = True
    sync_batchnorm: bool = True

    def __post_init__(self) -> None:
        if self.log_every < 1 or self.keep_checkpoints < 1 or self.ckpt_every_steps < 0:
            raise ConfigError("train.log_every and train.keep_checkpoints must be >= 1, "
                              "train.ckpt_every_steps >= 0")


@dataclasses.dataclass(frozen=True)
class FinetuneEvalConfig:
    """Final evaluation: ``num_clips`` uniformly spaced clips per test video (AVID: 10)."""

    num_clips: int = 10
    batch_size: int = 32

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
        model: architecture for ``--init scratch`` (a pretrained init brings its own).
        dataset: labelled splits (:class:`~avlearn.train.downstream.DatasetConfig`).
        data: decoding, augmentation and batching (audio fields unused).
    """

    run_dir: str = "outputs/finetune/run"
    seed: int = 0
    epochs: int = 10
    max_steps: int = 0
    warmup_classifier_epochs: int = 2
    dropout: float = 0.5
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    dataset: DatasetConfig = dataclasses.field(default_factory=DatasetConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: FinetuneTrainConfig = dataclasses.field(default_factory=FinetuneTrainConfig)
    eval: FinetuneEvalConfig = dataclasses.field(default_factory=FinetuneEvalConfig)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.max_steps < 0:
            raise ConfigError(f"epochs must be >= 1 and max_steps >= 0, got {self.epochs}, {self.max_steps}")
        if not 0 <= self.warmup_classifier_epochs < self.epochs:
            raise ConfigError(f"warmup_classifier_epochs ({self.warmup_classifier_epochs}) must be in "
                              f"[0, epochs={self.epochs})")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")


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


@torch.no_grad()
def predict(model: nn.Module, loader: Any, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Clip logits ``(N, C)``, labels ``(N,)`` and video indices ``(N,)`` of every batch of ``loader``."""
    was_training = model.training
    model.eval()
    logits, labels, videos = [], [], []
    try:
        for batch in loader:
            logits.append(model(batch["video"].to(device)).float().cpu())
            labels.append(batch["label"].cpu())
            videos.append(batch["video_index"].cpu())
    finally:
        model.train(was_training)
    return torch.cat(logits), torch.cat(labels), torch.cat(videos)


def _train_dataset(cfg: FinetuneConfig) -> Any:
    from avlearn.data.config import clip_spec
    from avlearn.data.labelled import LabelledClipDataset
    from avlearn.data.splits import to_manifest_rows
    from avlearn.data.transforms import build_video_transform
    from avlearn.train.downstream import load_split

    split = load_split(cfg.dataset, "train")
    return LabelledClipDataset(
        to_manifest_rows(split), clip_spec(cfg.data), cfg.data.backend, class_to_idx=split.class_to_idx,
        train=True, clips_per_video=cfg.data.clips_per_video,
        video_transform=build_video_transform(cfg.data.video_aug, True), seed=cfg.data.seed)


def eval_dataset(cfg: FinetuneConfig | Any, class_to_idx: dict[str, int]) -> Any:
    """The test split's clips: ``eval.num_clips`` uniformly spaced, centre-cropped clips per video."""
    from avlearn.data.config import clip_spec
    from avlearn.data.labelled import LabelledClipDataset
    from avlearn.data.splits import to_manifest_rows
    from avlearn.data.transforms import build_video_transform
    from avlearn.train.downstream import load_split

    split = load_split(cfg.dataset, "test")
    return LabelledClipDataset(
        to_manifest_rows(split), clip_spec(cfg.data), cfg.data.backend, class_to_idx=class_to_idx,
        train=False, num_clips=cfg.eval.num_clips,
        video_transform=build_video_transform(cfg.data.video_aug, False), seed=cfg.data.seed)


def finetune(cfg: FinetuneConfig, init: str, resume: bool = True) -> dict[str, Any]:
    """Run (or continue) the fine-tuning of ``cfg`` from ``init``; returns ``results.json``'s content.

    Raises :class:`~avlearn.train.downstream.InitError` for an unusable ``init`` and
    :class:`~avlearn.train.loop.NonFiniteLossError` on NaN/inf.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import gather_object, set_seed
    from torch.utils.data import DataLoader

    from avlearn.config import to_dict
    from avlearn.data.dataset import FailureTracker, av_collate
    from avlearn.distributed import fresh_accelerator_state
    from avlearn.eval.classification import ClassificationReport
    from avlearn.train.checkpoint import CheckpointManager, get_rng_state, set_rng_state
    from avlearn.train.downstream import load_encoder, resolve_init, write_report
    from avlearn.train.logger import MetricsLogger
    from avlearn.train.loop import NonFiniteLossError
    from avlearn.train.optim import build_optimizer, build_scheduler
    from avlearn.train.sampler import ResumableBatchSampler

    t_start = time.perf_counter()
    fresh_accelerator_state()
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(), mixed_precision=cfg.train.mixed_precision,
        # the frozen warm-up leaves the encoder without gradients, which DDP must be told
        kwargs_handlers=[DistributedDataParallelKwargs(
            find_unused_parameters=cfg.warmup_classifier_epochs > 0)])
    run_dir = Path(cfg.run_dir)
    ckpts = CheckpointManager(run_dir / "checkpoints", keep=cfg.train.keep_checkpoints)
    main_proc, world, rank = accelerator.is_main_process, accelerator.num_processes, accelerator.process_index
    source = resolve_init(init, cfg.model)

    dataset = _train_dataset(cfg)
    batch_size = cfg.data.batch_size
    if len(dataset) < batch_size * world:  # e.g. 1 % of the labels: one smaller batch per epoch
        batch_size = max(1, len(dataset) // world)
        logger.warning("only %d training clips: batch size lowered to %d", len(dataset), batch_size)
    sampler = ResumableBatchSampler(len(dataset), batch_size, seed=cfg.data.seed, rank=rank, world_size=world)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.data.num_workers,
                        collate_fn=av_collate, persistent_workers=cfg.data.num_workers > 0,
                        generator=torch.Generator().manual_seed(cfg.data.seed))
    steps_per_epoch = sampler.batches_per_epoch
    total_steps = cfg.epochs * steps_per_epoch
    last_step = min(total_steps, cfg.max_steps) if cfg.max_steps else total_steps

    set_seed(cfg.seed)
    model = VideoClassifier(load_encoder(source, "video"), len(dataset.class_names), cfg.dropout)
    if cfg.train.sync_batchnorm and world > 1:
        from avlearn.models.sync_bn import convert_global_batchnorm

        convert_global_batchnorm(model)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, steps_per_epoch, total_steps)

    step, epoch, batch_in_epoch = 0, 0, 0
    latest = ckpts.latest() if resume else None
    state: dict[str, Any] = {}
    if latest is not None:
        state = ckpts.load(latest)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        if batch_in_epoch >= steps_per_epoch:
            epoch, batch_in_epoch = epoch + 1, 0
    model, optimizer = accelerator.prepare(model, optimizer)
    if latest is not None:
        if accelerator.scaler is not None and state.get("scaler") is not None:
            accelerator.scaler.load_state_dict(state["scaler"])
        rngs = state["rng"]
        if len(rngs) == world:
            set_rng_state(rngs[rank])
        else:
            set_seed(cfg.seed + rank + 1000 * step)
    else:
        set_seed(cfg.seed + rank)
    unwrapped: VideoClassifier = accelerator.unwrap_model(model)

    log = MetricsLogger(run_dir, enabled=main_proc, tensorboard=cfg.train.tensorboard)
    if main_proc:
        import yaml

        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    log.event("resume" if latest else "start", step=step, epoch=epoch, init=source.source,
              train_videos=dataset.num_videos, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    logger.info("fine-tuning %s from %s: %d training videos, %d classes, %d steps/epoch x %d epochs%s",
                run_dir, source.source, dataset.num_videos, len(dataset.class_names), steps_per_epoch,
                cfg.epochs, f", resuming at step {step}" if latest else "")

    def save_checkpoint() -> None:
        rngs = gather_object([get_rng_state()])
        if main_proc:
            ckpts.save({"model": unwrapped.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
                        "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "rng": rngs,
                        "config": to_dict(cfg), "init": source.source}, step)
        accelerator.wait_for_everyone()

    tracker = FailureTracker()
    window: dict[str, float] = {"loss": 0.0, "correct": 0.0, "n": 0.0}
    model.train()
    while epoch < cfg.epochs and step < last_step:
        dataset.set_epoch(epoch)
        sampler.set_epoch(epoch, skip=batch_in_epoch)
        frozen = epoch < cfg.warmup_classifier_epochs
        for batch in loader:
            tracker.update(batch)
            video = batch["video"].to(accelerator.device, non_blocking=True)
            label = batch["label"].to(accelerator.device)
            logits = model(video, freeze_encoder=frozen)
            loss = F.cross_entropy(logits.float(), label)
            if accelerator.reduce((~torch.isfinite(loss)).float().reshape(1), "sum").item() > 0:
                raise NonFiniteLossError(
                    f"non-finite loss at step {step} (epoch {epoch}); lower optim.lr or use "
                    f"train.mixed_precision=no; the last checkpoint is {ckpts.latest()}")
            accelerator.backward(loss)
            if cfg.optim.clip_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step, batch_in_epoch = step + 1, batch_in_epoch + 1
            window["loss"] += float(loss.detach()) * len(label)
            window["correct"] += float((logits.argmax(1) == label).sum())
            window["n"] += len(label)
            if step % cfg.train.log_every == 0 or step == last_step:
                n = max(window["n"], 1.0)
                log.scalars(step, {"train/loss": window["loss"] / n, "train/top1": window["correct"] / n,
                                   "train/lr": float(scheduler.get_last_lr()[0]),
                                   "train/frozen": float(frozen)},
                            epoch=epoch)
                window = {"loss": 0.0, "correct": 0.0, "n": 0.0}
            if cfg.train.ckpt_every_steps and step % cfg.train.ckpt_every_steps == 0:
                save_checkpoint()
            if step >= last_step:
                break
        if batch_in_epoch >= steps_per_epoch:
            log.event("epoch_end", step=step, epoch=epoch, data=tracker.report(epoch))
            tracker.reset()
            epoch, batch_in_epoch = epoch + 1, 0
    if ckpts.latest() is None or ckpts.list()[-1][0] != step:
        save_checkpoint()
    train_seconds = time.perf_counter() - t_start

    results: dict[str, Any] = {}
    if main_proc:  # the main process evaluates the whole test split (no collectives)
        test = eval_dataset(cfg, dict(dataset.class_to_idx))
        test_loader = DataLoader(test, batch_size=cfg.eval.batch_size, shuffle=False,
                                 num_workers=cfg.data.num_workers, collate_fn=av_collate)
        logits, labels, videos = predict(unwrapped, test_loader, accelerator.device)
        report = ClassificationReport.from_outputs(logits, labels, videos, test.class_names)
        extra = {"init": source.source, "label_fraction": cfg.dataset.label_fraction,
                 "train_videos": dataset.num_videos, "test_videos": test.num_videos, "steps": step,
                 "finished": step >= last_step, "train_seconds": round(train_seconds, 1),
                 "eval_seconds": round(time.perf_counter() - t_start - train_seconds, 1)}
        results = write_report(run_dir, report, cfg, extra, f"Fine-tuning {run_dir.name}")
        log.scalars(step, {"test/clip_top1": report.clip_top1, "test/video_top1": report.video_top1,
                           "test/video_top5": report.video_top5}, epoch=epoch)
        logger.info("fine-tuned %s: clip top-1 %.2f %%, video top-1 %.2f %%", run_dir,
                    100 * report.clip_top1, 100 * report.video_top1)
        if math.isnan(report.video_top1):
            logger.warning("no test video was evaluated")
    log.close()
    accelerator.wait_for_everyone()
    return results


# ------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avlearn finetune", description=__doc__.split("\n\n")[0])
    p.add_argument("--init", required=True,
                   help="pretraining run dir, encoders export, checkpoints/step_N.pt, or 'scratch'")
    add_run_arguments(p, "configs/finetune/")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 done, 1 stopped on NaN/inf, 2 bad config or --init)."""
    args = _parser().parse_args(argv)

    def run(cfg: FinetuneConfig, resume: bool) -> str:
        results = finetune(cfg, args.init, resume=resume)
        if not results:
            return ""
        return (f"video top-1 {100 * results['video_top1']:.2f} %, clip top-1 "
                f"{100 * results['clip_top1']:.2f} %; results in {cfg.run_dir}/results.md")

    return run_command("avlearn finetune", FinetuneConfig, args, run, (InitError, FileNotFoundError))


if __name__ == "__main__":
    sys.exit(main())
