"""Pretraining: the encoders trained with an objective, on the engine.

``pretrain(cfg)`` builds the parts from a :class:`PretrainConfig` and hands them to the
:class:`~avlearn.train.engine.Engine`, which resumes from the newest checkpoint in
``run_dir/checkpoints`` (when ``resume``), trains, checkpoints every ``train.ckpt_every_steps``
optimiser steps and at the end; then the encoders are exported. The objective
(:class:`~avlearn.objectives.Objective`, whichever ``objective.name`` picks, wrapped by
``localization.weight > 0`` in :class:`~avlearn.localization.objective.WithLocalizer`) gives the
network that trains, the loss of a batch, its checkpoint entries and its exported files: the task
never asks which objective it holds.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather_object, set_seed
from torch import Tensor, nn
from torch.utils.data import DataLoader

from avlearn.config import to_dict
from avlearn.data.config import batch_augment, build_dataset, build_train_dataset
from avlearn.data.dataset import av_collate
from avlearn.eval.retrieval import evaluate_retrieval
from avlearn.localization.export import localizer_path
from avlearn.models.av import AVModel, AVOutput
from avlearn.models.checkpoint import save_encoders
from avlearn.models.registry import build_av_model
from avlearn.models.sync_bn import convert_global_batchnorm
from avlearn.models.weights import weights_file
from avlearn.objectives import Objective, ObjectiveContext
from avlearn.train.checkpoint import CheckpointManager
from avlearn.train.config import PretrainConfig
from avlearn.train.engine import Engine, NonFiniteLossError, StepOutput, Task
from avlearn.train.optim import build_optimizer, build_scheduler

__all__ = ["NonFiniteLossError", "PretrainTask", "pretrain", "state_digest"]

logger = logging.getLogger(__name__)


def state_digest(state: nn.Module | Mapping[str, Tensor]) -> str:
    """SHA-256 of a module's state (e.g. memory banks) or of a state dict, to compare processes or runs."""
    h = hashlib.sha256()
    for key, value in sorted((state.state_dict() if isinstance(state, nn.Module) else state).items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _init_from(path: str, model: AVModel, objective: Objective) -> None:
    """Model weights and the objective's entries (what the checkpoint holds of them, e.g. banks and
    a localizer) from a run checkpoint or run dir."""
    src = weights_file(path, "objective.init_from", export=False)  # a run checkpoint: it has the banks
    state = CheckpointManager.load(src)
    model.load_state_dict(state["model"])
    objective.load_checkpoint_state(state, str(src), partial=True)
    logger.info("initialised model and objective state from %s", src)


def centre_crop_loader(cfg: PretrainConfig) -> DataLoader[dict[str, Any]]:
    """One centre-cropped clip per video of ``data.manifest`` (what the localizer floor is measured on)."""
    ds = build_dataset(dataclasses.replace(cfg.data, clips_per_video=1), train=False)
    return DataLoader(ds, batch_size=32, shuffle=False, num_workers=0, collate_fn=av_collate)


def _floor_clips(cfg: PretrainConfig) -> DataLoader[dict[str, Any]] | None:
    """What ``localization.floor=wrong_sound`` is measured on: :func:`centre_crop_loader`, or ``None``
    (no floor) when the clips are not files."""
    if cfg.data.source != "files":
        logger.warning("localization.floor=wrong_sound is measured on data.manifest's files; with "
                       "data.source=%s the localizer is exported without a floor", cfg.data.source)
        return None
    return centre_crop_loader(cfg)


def _eval_loader(cfg: PretrainConfig) -> DataLoader[dict[str, Any]] | None:
    if not cfg.eval.manifest:
        return None
    # one centre-cropped clip per video: several clips of one video would be near-duplicates
    data = dataclasses.replace(cfg.data, clips_per_video=1)
    ds = build_dataset(data, train=False, manifest=cfg.eval.manifest, key="eval.manifest")
    return DataLoader(ds, batch_size=cfg.eval.batch_size, shuffle=False, num_workers=0, collate_fn=av_collate)


class PretrainTask(Task):
    """The model and the objective: the network that trains, the loss of a batch, their state.

    Shape of a batch (on the device): ``video (B, C, T, H, W)``, ``audio (B, 1, F, T)``,
    ``index (B,)``, optionally ``audio_shifted (B, 1, F, T)``.
    """

    def __init__(self, cfg: PretrainConfig, model: AVModel, objective: Objective) -> None:
        self.cfg, self.model, self.objective = cfg, model, objective
        self.net = objective.network(model)
        in_net = {id(p) for p in self.net.parameters()}
        self._own = [p for p in objective.parameters() if id(p) not in in_net]
        self._last: tuple[AVOutput, Tensor] | None = None
        self.eval_loader = _eval_loader(cfg)
        self.device = torch.device("cpu")
        self.augment = batch_augment(cfg.data)  # data.augment_on: device: the batch's pixels are ours

    def own_parameters(self) -> list[nn.Parameter]:
        return list(self._own)

    def to_device(self, device: torch.device) -> None:
        self.device = device
        self.objective.to(device)
        if self.augment is not None:
            self.augment.to(device)

    def step(self, batch: dict[str, Any], device: torch.device, epoch: int) -> StepOutput:
        if self.augment is not None and "video_aug" in batch:
            batch = self.augment(batch, device)
        loss, logs, out = self.objective.forward_loss(self.net, batch)
        self._last = (out, batch["index"])
        finite = out.video_emb.isfinite().all() & out.audio_emb.isfinite().all()
        return StepOutput(loss, logs, finite, batch["video"].shape[0])

    def after_finite(self) -> None:
        assert self._last is not None
        self.objective.after_finite_step(*self._last)
        self._last = None

    def on_epoch_start(self, epoch: int, first_batch: bool) -> list[str]:
        event = self.objective.on_epoch_start(epoch, first_batch)
        return [event] if event else []

    def checkpoint_state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), **self.objective.checkpoint_state(),
                "objective_name": self.cfg.objective.name}

    def load_checkpoint(self, state: dict[str, Any], path: Path) -> None:
        self.model.load_state_dict(state["model"])
        self.objective.load_checkpoint_state(state, str(path))

    def evaluate(self, tag: str, epoch: int) -> dict[str, float]:
        if self.eval_loader is None:
            return {}
        metrics = evaluate_retrieval(self.model, self.eval_loader, self.device)
        return {f"retrieval/{k}": v for k, v in metrics.items()}

    def evaluate_after_epoch(self, epoch: int) -> bool:
        every = self.cfg.eval.every_epochs
        return bool(every) and epoch % every == 0

    def outputs(self) -> list[str]:
        export = self.cfg.train.export  # a localizer file of an earlier run is set aside too
        return [export, str(localizer_path(export))]

    def export(self, path: Path) -> None:
        save_encoders(self.model, path, to_dict(self.cfg))
        self.objective.export(self.model, path)


def _build_task(cfg: PretrainConfig, num_items: int, world: int) -> PretrainTask:
    """Model, objective and its wrapper's localizer, in this order from ``cfg.seed`` (identical on
    every process)."""
    set_seed(cfg.seed)
    model = build_av_model(cfg.model)
    if cfg.train.sync_batchnorm and world > 1:
        convert_global_batchnorm(model)
    dim = model.embed_dim or cfg.model.embed_dim
    ctx = ObjectiveContext(num_items=num_items, embed_dim=dim, seed=cfg.seed)
    objective = cfg.objective.build(ctx)
    if cfg.train.sync_batchnorm and world > 1:
        convert_global_batchnorm(objective)
    objective = cfg.localization.wrap(objective, model, functools.partial(_floor_clips, cfg))
    return PretrainTask(cfg, model, objective)


def pretrain(cfg: PretrainConfig, resume: bool = True, dataset: Any = None) -> dict[str, Any]:
    """Run (or continue) the pretraining described by ``cfg``; returns a summary dict.

    ``resume``: continue from the newest checkpoint in ``run_dir/checkpoints`` when one exists
    (otherwise start from scratch, moving an earlier run's files to ``run_dir/previous/``).
    ``dataset``: the training clips, by default built from ``cfg.data``; another must give
    :class:`~avlearn.data.dataset.AVClipDataset`'s samples and have its ``num_videos`` and
    ``set_epoch`` (``benchmarks/gpu`` trains on clips held in memory). Raises
    :class:`NonFiniteLossError` on NaN/inf, :class:`~avlearn.train.engine.RunDirBusyError` when
    another process runs in ``run_dir`` and :class:`~avlearn.train.engine.RunInterrupted` after the
    checkpoint written on SIGINT / SIGTERM.
    """
    engine = Engine(cfg.train, cfg.run_dir, clip_grad_norm=cfg.optim.clip_grad_norm)
    try:
        return _pretrain(cfg, engine, resume, dataset)
    finally:
        engine.close()


def _pretrain(cfg: PretrainConfig, engine: Engine, resume: bool, dataset: Any) -> dict[str, Any]:
    if dataset is None:
        dataset = build_train_dataset(cfg.data)
    loader, sampler = engine.loader(dataset, cfg.data.batch_size, cfg.data.seed, cfg.data.num_workers)
    plan = engine.plan(sampler, cfg.epochs, cfg.max_steps)
    task = _build_task(cfg, dataset.num_videos, engine.world)
    optimizer = build_optimizer([*task.net.parameters(), *task.own_parameters()], cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, plan.steps_per_epoch, plan.total_steps)
    if not (resume and engine.ckpts.latest() is not None) and cfg.objective.init_from:
        _init_from(cfg.objective.init_from, task.model, task.objective)
    if engine.is_main:
        logger.info("pretraining %s: %d videos, objective %s", cfg.run_dir, dataset.num_videos,
                    cfg.objective.name)
    pos, log = engine.fit(task, optimizer, scheduler, (dataset, loader, sampler), plan, config=cfg,
                          seed=cfg.seed, resume=resume)

    # --- end: export, final evaluation, per-process digest
    finished = pos.epoch >= cfg.epochs or pos.step >= plan.total_steps
    export = Path(cfg.run_dir) / cfg.train.export
    if engine.is_main:
        task.export(export)
    engine.evaluate_final(task, log, pos)
    digest = state_digest(task.objective.checkpoint_state()["objective"])
    summaries = gather_object([{"rank": engine.rank, "world_size": engine.world, "step": pos.step,
                                "objective_digest": digest}])
    log.event("end", step=pos.step, epoch=pos.epoch, finished=finished, export=str(export),
              processes=summaries)
    log.close()
    engine.accelerator.wait_for_everyone()
    return {"step": pos.step, "epoch": pos.epoch, "finished": finished, "export": str(export),
            "processes": summaries}
