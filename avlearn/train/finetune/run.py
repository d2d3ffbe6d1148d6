"""A fine-tuning run on the engine: weights, data, classifier, optimiser, training, test evaluation."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from torch import Tensor

from avlearn.config import ConfigError
from avlearn.data.splits import label_matrix, load_split
from avlearn.eval.classification import ClassificationReport
from avlearn.eval.multilabel import MultiLabelReport
from avlearn.eval.results import write_report
from avlearn.models.classifier import AVClassifier, VideoClassifier
from avlearn.models.sync_bn import convert_global_batchnorm
from avlearn.models.weights import Weights, load_encoder, load_weights
from avlearn.train.engine import Engine, Position
from avlearn.train.finetune.config import FinetuneConfig
from avlearn.train.finetune.datasets import eval_dataset, train_dataset
from avlearn.train.finetune.evaluate import evaluate
from avlearn.train.finetune.probe_head import probe_head
from avlearn.train.finetune.task import FinetuneTask, param_groups
from avlearn.train.logger import MetricsLogger
from avlearn.train.optim import build_optimizer, build_scheduler

__all__ = ["finetune"]

logger = logging.getLogger(__name__)


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
    # an empty or missing test split stops here, not after training
    shards = cfg.data.source == "shards" or bool(cfg.eval.shards)
    if datasets is None and load_split(cfg.dataset, "test").multi_label and shards:
        raise ConfigError(f"dataset.format={cfg.dataset.format} is multi-label, shards carry one label per "
                          "video: fine-tune on the split's files (remove data.source=shards, eval.shards)",
                          key="data.source")
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
    run_dir = Path(cfg.run_dir)
    source = load_weights(init, cfg.model, what="--init")
    dataset = train_dataset(cfg) if datasets is None else datasets[0]
    batch_size = _batch_size(len(dataset), cfg.data.batch_size, engine.world)
    loader, sampler = engine.loader(dataset, batch_size, cfg.data.seed, cfg.data.num_workers)
    plan = engine.plan(sampler, cfg.epochs, cfg.max_steps)
    model = _classifier(cfg, source, len(dataset.class_names), engine)
    targets = _targets(cfg, "train", dataset) if datasets is None else None
    task = FinetuneTask(cfg, model, source.source, targets)
    start_fields: dict[str, Any] = {"init": source.source, "train_videos": dataset.num_videos}
    if cfg.head_init == "probe":  # a resumed run loads its checkpoint's classifier over this one
        start_fields.update(_probe_start(cfg, model, dataset, engine, files=datasets is None))
    optimizer = build_optimizer(param_groups(model, cfg.optim.lr, cfg.encoder_lr_scale), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, plan.steps_per_epoch, plan.total_steps)
    logger.info("fine-tuning %s from %s: %d training videos, %d classes", run_dir, source.source,
                dataset.num_videos, len(dataset.class_names))
    pos, log = engine.fit(task, optimizer, scheduler, (dataset, loader, sampler), plan, config=cfg,
                          seed=cfg.seed, resume=resume, start_fields=start_fields)
    train_seconds = time.perf_counter() - t_start

    results: dict[str, Any] = {}
    if engine.is_main:  # the main process evaluates the whole test split (no collectives)
        test = eval_dataset(cfg, dict(dataset.class_to_idx)) if datasets is None else datasets[1]
        test_targets = _targets(cfg, "test", test) if targets is not None else None
        report = evaluate(cfg, model, test, engine.device, test_targets)
        extra = {"init": source.source, "label_fraction": cfg.dataset.label_fraction,
                 "train_videos": dataset.num_videos, "test_videos": test.num_videos, "steps": pos.step,
                 "finished": pos.step >= plan.last_step, "train_seconds": round(train_seconds, 1),
                 "eval_seconds": round(time.perf_counter() - t_start - train_seconds, 1)}
        results = write_report(run_dir, report, cfg, extra, f"Fine-tuning {run_dir.name}")
        _log_report(log, pos, report, run_dir)
    log.close()
    engine.accelerator.wait_for_everyone()
    return results


def _batch_size(clips: int, batch_size: int, world: int) -> int:
    """``batch_size``, lowered when the training clips fill no batch on each of ``world`` processes."""
    if clips < batch_size * world:  # e.g. 1 % of the labels: one smaller batch per epoch
        batch_size = max(1, clips // world)
        logger.warning("only %d training clips: batch size lowered to %d", clips, batch_size)
    return batch_size


def _targets(cfg: FinetuneConfig, which: str, dataset: Any) -> Tensor | None:
    """Multi-hot targets ``(V, C)`` of ``dataset``'s videos when the split is multi-label, else ``None``."""
    split = load_split(cfg.dataset, which)  # type: ignore[arg-type]
    if not split.multi_label:
        return None
    return torch.from_numpy(label_matrix(split, [row.path for row in dataset.videos]))


def _classifier(cfg: FinetuneConfig, source: Weights, num_classes: int,
                engine: Engine) -> VideoClassifier | AVClassifier:
    """The ``init`` encoder(s) and a new classifier, drawn after seeding with ``cfg.seed``."""
    set_seed(cfg.seed)
    model: VideoClassifier | AVClassifier = (
        AVClassifier(load_encoder(source, "video"), load_encoder(source, "audio"), num_classes, cfg.dropout)
        if cfg.modality == "audio_visual" else VideoClassifier(load_encoder(source, "video"), num_classes,
                                                               cfg.dropout))
    if cfg.train.sync_batchnorm and engine.world > 1:
        convert_global_batchnorm(model)
    return model


def _probe_start(cfg: FinetuneConfig, model: VideoClassifier | AVClassifier, dataset: Any, engine: Engine,
                 files: bool) -> dict[str, Any]:
    """Start the classifier from a linear probe of the training clips (``files``: ``dataset`` was built
    from ``cfg``); returns the probe's fields for the run's start record."""
    model.to(engine.device)
    # the training videos' clips as the test clips are taken (uniform, centre crop): fitted on the
    # augmented training clips, the start scored 27.1 % instead of 37.5 % on the test videos (a
    # scratch run: synthetic seed 0, 10 % of the labels)
    clean = files and cfg.data.source != "shards"
    clips = eval_dataset(cfg, dict(dataset.class_to_idx), "train") if clean else dataset
    targets = _targets(cfg, "train", clips) if files else None
    fields = probe_head(model, clips, cfg.eval.batch_size, cfg.data.num_workers, cfg.train.progress, targets)
    logger.info("classifier started from a linear probe: %.1f %% of %d training clips right",
                100 * fields["probe_train_top1"], fields["probe_clips"])
    return fields


def _log_report(log: MetricsLogger, pos: Position, report: ClassificationReport | MultiLabelReport,
                run_dir: Path) -> None:
    """The test accuracies (or mAP) into ``metrics.jsonl`` (and TensorBoard) and the log."""
    if isinstance(report, MultiLabelReport):
        log.scalars(pos.step, {"test/clip_map": report.clip_map, "test/video_map": report.video_map},
                    epoch=pos.epoch)
        logger.info("fine-tuned %s: clip mAP %.2f %%, video mAP %.2f %% (chance %.2f %%)", run_dir,
                    100 * report.clip_map, 100 * report.video_map, 100 * report.chance)
        return
    log.scalars(pos.step, {"test/clip_top1": report.clip_top1, "test/video_top1": report.video_top1,
                           "test/video_top5": report.video_top5}, epoch=pos.epoch)
    logger.info("fine-tuned %s: clip top-1 %.2f %%, video top-1 %.2f %%", run_dir,
                100 * report.clip_top1, 100 * report.video_top1)
    if math.isnan(report.video_top1):
        logger.warning("no test video was evaluated")
