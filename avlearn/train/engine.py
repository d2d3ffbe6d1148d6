"""The training engine: everything a training run needs except what it computes.

Pretraining (:mod:`avlearn.train.loop`) and fine-tuning (:mod:`avlearn.train.finetune`) are
:class:`Task` s: they build their parts and say what the loss of a batch is; the :class:`Engine`
owns the rest, once: the accelerator (placement, precision, DDP, gradient accumulation), the
resumable data order, resume from the newest checkpoint, checkpoint rotation, every process's
RNG state, the non-finite guard, the progress bar, TensorBoard and ``metrics.jsonl``, the
resolved ``config.yaml`` and the decode-failure report.

Run safety: one run per ``run_dir`` (:class:`~avlearn.train.rundir.RunDirLock`, taken when the
engine is made; :meth:`Engine.close` releases it); a run that starts from scratch moves an earlier
run's files to ``run_dir/previous/`` and a resumed one trims the records written after its
checkpoint (:mod:`avlearn.train.rundir`); resume takes the newest checkpoint that can be read and
refuses a config change it cannot honour; SIGINT / SIGTERM stop the run after the current step
with a checkpoint (:mod:`avlearn.train.interrupt`).

Data: the engine knows no data format; :func:`~avlearn.data.loader.build_loader` deals every epoch
out (files or shards) and each batch is moved to the device once, before :meth:`Task.step`.

Exact resume: the clip order of an epoch depends only on ``(data.seed, epoch)``
(:mod:`avlearn.data.loader`), each clip's augmentation only on
``(data.seed, epoch, index)``, and a checkpoint holds the task's state (model, objective, ...),
optimiser, scheduler, scaler, epoch, batches consumed and every process's RNG.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import broadcast_object_list, gather_object, set_seed
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from avlearn.config import ConfigError, from_dict, to_dict
from avlearn.data.dataset import FailureTracker
from avlearn.data.loader import Batches, build_loader
from avlearn.distributed import fresh_accelerator_state
from avlearn.train.checkpoint import CheckpointManager, get_rng_state, set_rng_state
from avlearn.train.config import TrainConfig
from avlearn.train.interrupt import RunInterrupted, StopSignals, ignore_stop_signals
from avlearn.train.logger import MetricsLogger
from avlearn.train.optim import fuse_on_cuda
from avlearn.train.rundir import RunDirBusyError, RunDirLock, check_resumable, set_aside, trim_metrics

__all__ = ["Engine", "NonFiniteLossError", "Plan", "Position", "RunDirBusyError", "RunInterrupted",
           "StepOutput", "Task", "to_channels_last", "to_device", "write_config"]

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss (or what the task checks with it) became NaN/inf; the message names the step."""


@dataclasses.dataclass
class Position:
    """Where a run stands: optimiser steps done, the epoch, batches of it consumed."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


@dataclasses.dataclass(frozen=True)
class Plan:
    """The run's length, fixed by the data and the config.

    Attributes:
        steps_per_epoch: optimiser steps per epoch.
        batches_used: batches of an epoch that are trained on (a trailing partial accumulation is dropped).
        total_steps: the schedule's length (``epochs * steps_per_epoch``).
        last_step: where this run stops (``max_steps`` may stop it early; the schedule is unchanged).
        epochs: passes over the data.
    """

    steps_per_epoch: int
    batches_used: int
    total_steps: int
    last_step: int
    epochs: int


@dataclasses.dataclass
class StepOutput:
    """What a task's :meth:`Task.step` returns for one (micro-)batch.

    Attributes:
        loss: the scalar to back-propagate.
        logs: scalars to average over the logging window (``train/<key>``).
        finite: a boolean scalar, false when anything besides the loss is non-finite (embeddings).
        clips: clips in the batch on this process.
    """

    loss: Tensor
    logs: dict[str, Tensor]
    finite: Tensor
    clips: int


class Task:
    """A training job on the engine: its parts, its loss, its state. Hooks default to nothing.

    ``net`` is what DDP wraps and the optimiser trains; :meth:`own_parameters` are further trained
    parameters kept out of DDP (an objective's expander), whose gradients the engine averages.
    """

    net: nn.Module

    def own_parameters(self) -> list[nn.Parameter]:
        return []

    def to_device(self, device: torch.device) -> None:
        """Move what is not in ``net`` (objective state) to the device."""

    def wrapped(self, net: nn.Module) -> None:
        """Receives the accelerator-wrapped ``net`` (DDP) to run forward passes through."""
        self.net = net

    def step(self, batch: dict[str, Any], device: torch.device, epoch: int) -> StepOutput:
        raise NotImplementedError

    def after_finite(self) -> None:
        """State updates of the last :meth:`step`, once every process's loss is known finite."""

    def on_epoch_start(self, epoch: int, first_batch: bool) -> list[str]:
        """Per-epoch work; returns names of events to log."""
        return []

    def checkpoint_state(self) -> dict[str, Any]:
        """The task's entries of a run checkpoint (model weights, objective state, ...)."""
        return {}

    def load_checkpoint(self, state: dict[str, Any], path: Path) -> None:
        """Restore :meth:`checkpoint_state` from the checkpoint at ``path``."""

    def evaluate(self, tag: str, epoch: int) -> dict[str, float]:
        """Metrics to log at the start (``init``), after some epochs and at the end (``final``)."""
        return {}

    def evaluate_after_epoch(self, epoch: int) -> bool:
        """Whether :meth:`evaluate` runs once ``epoch`` epochs are done (not after the last)."""
        return False

    def outputs(self) -> list[str]:
        """Names of the files the task writes in ``run_dir`` (set aside with the run's own)."""
        return []


def write_config(cfg: Any, run_dir: Path) -> None:
    """The resolved config as ``run_dir/config.yaml`` (what ``evaluate`` and ``localize`` read back)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(json.loads(json.dumps(to_dict(cfg))), sort_keys=False)
    (run_dir / "config.yaml").write_text(text)


class Engine:
    """Accelerator, data order, checkpoints, logging and the loop of one run (see the module doc).

    Making one locks ``run_dir`` (:class:`RunDirBusyError` when another process holds it); call
    :meth:`close` when the run is over (``try``/``finally``).

    Args:
        train: the ``train:`` section (precision, accumulation, logging, checkpoints).
        run_dir: where checkpoints, ``metrics.jsonl``, ``tb/`` and ``config.yaml`` go.
        clip_grad_norm: clip the global gradient norm to this (0: off).
        find_unused_parameters: tell DDP that some parameters may get no gradient (a frozen part).
    """

    def __init__(self, train: TrainConfig, run_dir: str | Path, *, clip_grad_norm: float = 0.0,
                 find_unused_parameters: bool = False) -> None:
        fresh_accelerator_state()
        ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
        unused = [ddp] if find_unused_parameters else []
        self.accelerator = Accelerator(
            cpu=not torch.cuda.is_available(),
            mixed_precision=train.mixed_precision,
            gradient_accumulation_steps=train.grad_accum,
            kwargs_handlers=unused,
            dynamo_backend=train.compile_backend if train.compile else "no",
        )
        torch.backends.cudnn.benchmark = train.cudnn_benchmark
        self.train = train
        self.clip_grad_norm = clip_grad_norm
        self.run_dir = Path(run_dir)
        self.ckpts = CheckpointManager(self.run_dir / "checkpoints", keep=train.keep_checkpoints)
        self.world, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        self.is_main = self.accelerator.is_main_process
        self.device = self.accelerator.device
        self.lock = RunDirLock(self.run_dir)
        self.stop = StopSignals()
        self._stop_agreed = False
        self._take_lock()

    def _take_lock(self) -> None:
        """The main process locks ``run_dir``; every process raises if it could not."""
        error = ""
        if self.is_main:
            try:
                self.lock.acquire()
            except RunDirBusyError as err:
                error = str(err)
            except OSError as err:  # e.g. no permission: the run could not write there either
                error = f"cannot lock run_dir {self.run_dir} ({err}); give a run_dir you can write to"
        if self.world > 1:
            error = broadcast_object_list([error])[0]
        if error:
            raise RunDirBusyError(error)

    def close(self) -> None:
        """Release ``run_dir`` (and the signal handlers, if a run was cut short)."""
        self.stop.restore()
        self.lock.release()

    # ------------------------------------------------------------------ set-up
    def loader(
        self, dataset: Dataset[Any], batch_size: int, seed: int, num_workers: int
    ) -> tuple[DataLoader[dict[str, Any]], Batches]:
        """This process's share of every epoch, in an order that depends only on ``(seed, epoch)``
        (:func:`~avlearn.data.loader.build_loader`)."""
        # ignore_stop_signals: a job's SIGTERM must not kill the workers mid-step
        return build_loader(dataset, batch_size, seed=seed, num_workers=num_workers, rank=self.rank,
                            world=self.world, worker_init_fn=ignore_stop_signals)

    def plan(self, sampler: Batches, epochs: int, max_steps: int) -> Plan:
        """Steps per epoch (batches / ``grad_accum``), the schedule's length and where to stop."""
        steps_per_epoch = sampler.batches_per_epoch // self.train.grad_accum
        if steps_per_epoch < 1:
            raise ValueError(
                f"an epoch has {sampler.batches_per_epoch} batches, fewer than train.grad_accum="
                f"{self.train.grad_accum}; lower data.batch_size or train.grad_accum"
            )
        total = epochs * steps_per_epoch
        return Plan(steps_per_epoch, steps_per_epoch * self.train.grad_accum, total,
                    min(total, max_steps) if max_steps else total, epochs)

    # ------------------------------------------------------------------ the run
    def fit(
        self,
        task: Task,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        data: tuple[Any, DataLoader[dict[str, Any]], Batches],
        plan: Plan,
        *,
        config: Any,
        seed: int,
        resume: bool,
        start_fields: dict[str, Any] | None = None,
    ) -> tuple[Position, MetricsLogger]:
        """Resume or start, train to ``plan.last_step``, checkpoint at the end.

        ``data``: (dataset with ``set_epoch``, its loader, its sampler). Returns the final position
        and the open logger (the caller logs its final records and closes it). Raises
        :class:`NonFiniteLossError` on NaN/inf, :class:`~avlearn.config.ConfigError` when the config
        differs from the checkpoint's in a way resuming cannot honour, and :class:`RunInterrupted`
        after the checkpoint written on SIGINT / SIGTERM.
        """
        acc = self.accelerator
        pos = Position()
        latest, state = self._resume_point(resume)
        if latest is not None:
            check_resumable(_normalised(config, state.get("config")), to_dict(config), latest)
            task.load_checkpoint(state, latest)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            pos = Position(state["step"], state["epoch"], state["batch_in_epoch"])
            if pos.batch_in_epoch >= plan.batches_used:
                pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0
        task.to_device(self.device)
        if self.train.channels_last:
            to_channels_last(task.net)
        fuse_on_cuda(optimizer)  # parameters (and a loaded state) are on their device now
        net, optimizer = acc.prepare(task.net, optimizer)
        task.wrapped(net)
        if latest is not None:
            if acc.scaler is not None and state.get("scaler") is not None:
                acc.scaler.load_state_dict(state["scaler"])
            warn_if_threads_differ(state, latest)
            if len(state["rng"]) == self.world:
                set_rng_state(state["rng"][self.rank])
            else:
                logger.warning("checkpoint has RNG states of %d processes, run has %d: reseeding",
                               len(state["rng"]), self.world)
                set_seed(seed + self.rank + 1000 * pos.step)
        else:
            set_seed(seed + self.rank)  # per-process stream (negative sampling, dropout)

        log = self._open_log(config, plan, pos, latest, start_fields or {}, task.outputs())
        self.stop.install()
        try:
            if pos.step == 0:
                self._evaluate(task, log, pos, "init")
            self._loop(task, net, optimizer, scheduler, data, plan, pos, log, config)
            if self.ckpts.latest() is None or self.ckpts.list()[-1][0] != pos.step:
                self.save(task, optimizer, scheduler, pos, config)
            if self._stop_agreed:
                self._interrupted(log, pos)
        finally:
            self.stop.restore()
        return pos, log

    def _open_log(self, config: Any, plan: Plan, pos: Position, latest: Path | None,
                  start_fields: dict[str, Any], outputs: list[str]) -> MetricsLogger:
        """Prepare ``run_dir`` (set aside / trim), write ``config.yaml``, log the start or resume."""
        self._prepare_run_dir(latest, pos, outputs)
        log = MetricsLogger(self.run_dir, enabled=self.is_main, tensorboard=self.train.tensorboard,
                            purge_step=pos.step + 1 if latest is not None else None)
        if self.is_main:
            write_config(config, self.run_dir)
        log.event("resume" if latest is not None else "start", step=pos.step, epoch=pos.epoch,
                  batch_in_epoch=pos.batch_in_epoch, world_size=self.world,
                  steps_per_epoch=plan.steps_per_epoch, total_steps=plan.total_steps,
                  checkpoint=str(latest) if latest else None, **start_fields)
        if self.is_main:
            logger.info("%s: %d steps/epoch x %d epochs, %d process(es), %s", self.run_dir,
                        plan.steps_per_epoch, plan.epochs, self.world,
                        f"resuming at step {pos.step}" if latest else "from the start")
        return log

    def _resume_point(self, resume: bool) -> tuple[Path | None, dict[str, Any]]:
        """The newest readable checkpoint and its state: the main process picks it, all load it."""
        path, state = "", {}
        if resume and self.is_main:
            found = self.ckpts.load_newest()
            if found is not None:
                path, state = str(found[0]), found[1]
        if self.world > 1:
            path = broadcast_object_list([path])[0]
            if path and not self.is_main:
                state = self.ckpts.load(path)
        return (Path(path) if path else None), state

    def _prepare_run_dir(self, latest: Path | None, pos: Position, outputs: list[str]) -> None:
        """From scratch: set an earlier run's files aside; resumed: drop records after ``pos.step``."""
        if self.is_main:
            if latest is None:
                moved = set_aside(self.run_dir, outputs)
                if moved is not None:
                    logger.warning("%s: starting from scratch; the earlier run's files were moved to %s",
                                   self.run_dir, moved)
            else:
                dropped = trim_metrics(self.run_dir / "metrics.jsonl", pos.step)
                if dropped:
                    logger.info("%s/metrics.jsonl: dropped %d record(s) written after step %d (redone now)",
                                self.run_dir, dropped, pos.step)
        self.accelerator.wait_for_everyone()

    def _interrupted(self, log: MetricsLogger, pos: Position) -> None:
        """Log the stop and raise :class:`RunInterrupted` (the checkpoint at ``pos`` is written)."""
        latest = self.ckpts.latest()
        cause = self.stop.name if self.stop.signum is not None else "a signal to another process"
        log.event("interrupted", step=pos.step, epoch=pos.epoch, signal=cause, checkpoint=str(latest))
        log.close()
        raise RunInterrupted(
            f"stopped by {cause} at step {pos.step} (epoch {pos.epoch}); checkpoint {latest}. "
            "Run the same command again to resume"
        )

    def _loop(
        self,
        task: Task,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        data: tuple[Any, DataLoader[dict[str, Any]], Batches],
        plan: Plan,
        pos: Position,
        log: MetricsLogger,
        config: Any,
    ) -> None:
        dataset, loader, sampler = data
        bar = tqdm(total=plan.last_step, initial=pos.step, unit="step", dynamic_ncols=True,
                   disable=not (self.is_main and self.train.progress))
        tracker, window = FailureTracker(), _Window()
        net.train()
        while pos.epoch < plan.epochs and pos.step < plan.last_step:
            dataset.set_epoch(pos.epoch)
            sampler.set_epoch(pos.epoch, skip=pos.batch_in_epoch)
            for event in task.on_epoch_start(pos.epoch, first_batch=pos.batch_in_epoch == 0):
                log.event(event, step=pos.step, epoch=pos.epoch)
            for batch in window.timed(loader):
                if pos.batch_in_epoch >= plan.batches_used:
                    break
                tracker.update(batch)
                out = self._train_step(task, net, optimizer, batch, pos)
                pos.batch_in_epoch += 1
                window.add(out, self.world)
                if self.accelerator.sync_gradients:
                    scheduler.step()
                    pos.step += 1
                    bar.update(1)
                    if pos.step % self.train.log_every == 0 or pos.step == plan.last_step:
                        self._log_window(log, pos, window, scheduler, bar)
                    if self.train.ckpt_every_steps and pos.step % self.train.ckpt_every_steps == 0:
                        self.save(task, optimizer, scheduler, pos, config)
                    if pos.step >= plan.last_step or self._stop_agreed:
                        break
            if self._stop_agreed:  # the epoch's end (and evaluation) comes after the resume
                break
            if pos.batch_in_epoch >= plan.batches_used:
                self._end_epoch(task, log, tracker, pos, plan)
        bar.close()

    def _train_step(self, task: Task, net: nn.Module, optimizer: torch.optim.Optimizer,
                    batch: dict[str, Any], pos: Position) -> StepOutput:
        acc = self.accelerator
        # the one move to the device (tasks never move tensors); clips in the weights' layout
        batch = to_device(batch, self.device, self.train.channels_last)
        with acc.accumulate(net):
            out = task.step(batch, self.device, pos.epoch)
            finite = torch.isfinite(out.loss) & out.finite
            # One all-reduce of one number, as before stops were agreed (2 elements measured ~0.15 ms
            # slower per step on gloo): each process adds 1 if non-finite, world + 1 if asked to stop.
            flag = (~finite).float().reshape(1)
            if self.stop.signum is not None:
                flag = flag + (self.world + 1)
            total = int(acc.reduce(flag, "sum").item())
            self._stop_agreed = total > self.world
            if total % (self.world + 1) > 0:
                raise NonFiniteLossError(
                    f"non-finite loss or embeddings at step {pos.step} (epoch {pos.epoch}, batch "
                    f"{pos.batch_in_epoch}; loss={out.loss.item():.4g}); stopping. Lower optim.lr, enable "
                    "optim.clip_grad_norm or use train.mixed_precision=no; the last checkpoint is "
                    f"{self.ckpts.latest()}"
                )
            task.after_finite()
            acc.backward(out.loss)
            if acc.sync_gradients:
                own = task.own_parameters()
                if self.world > 1:  # parameters outside DDP: average their gradients as DDP does
                    for p in own:
                        if p.grad is not None:
                            p.grad = acc.reduce(p.grad, "mean")
                if self.clip_grad_norm > 0:
                    acc.clip_grad_norm_([*net.parameters(), *own], self.clip_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return out

    def _end_epoch(self, task: Task, log: MetricsLogger, tracker: FailureTracker, pos: Position,
                   plan: Plan) -> None:
        if self.is_main:
            logger.info(tracker.report(pos.epoch))
        log.event("epoch_end", step=pos.step, epoch=pos.epoch, data=tracker.report(pos.epoch),
                  failures=tracker.failures)
        tracker.reset()
        pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0
        if pos.epoch < plan.epochs and task.evaluate_after_epoch(pos.epoch):
            self._evaluate(task, log, pos, f"epoch {pos.epoch}")

    def _evaluate(self, task: Task, log: MetricsLogger, pos: Position, tag: str) -> None:
        metrics = task.evaluate(tag, pos.epoch)
        if metrics:
            log.scalars(pos.step, metrics, epoch=pos.epoch, tag=tag)
            if self.is_main:
                logger.info("evaluation (%s, step %d): %s", tag, pos.step, metrics)

    def evaluate_final(self, task: Task, log: MetricsLogger, pos: Position) -> None:
        """The task's evaluation tagged ``final``."""
        self._evaluate(task, log, pos, "final")

    def save(self, task: Task, optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.LRScheduler, pos: Position, config: Any) -> None:
        """A run checkpoint at ``pos`` (every process's RNG gathered; the main process writes)."""
        rngs = gather_object([get_rng_state()])  # in rank order
        if self.is_main:
            scaler = self.accelerator.scaler
            self.ckpts.save({
                **task.checkpoint_state(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "step": pos.step,
                "epoch": pos.epoch,
                "batch_in_epoch": pos.batch_in_epoch,
                "rng": rngs,
                "torch_threads": torch.get_num_threads(),  # exact resume holds at this count only
                "config": to_dict(config),
            }, pos.step)
        self.accelerator.wait_for_everyone()

    def _log_window(self, log: MetricsLogger, pos: Position, window: _Window,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, bar: tqdm[Any]) -> None:
        """The window's logs averaged over batches and processes, with lr, clips/s and data wait."""
        keys = sorted(window.logs)
        values: list[float] = []
        if keys:
            # a task may log a CPU scalar beside its device ones: one device before stacking
            stacked = torch.stack([torch.stack(window.logs[k]).mean().to(self.device) for k in keys])
            values = self.accelerator.reduce(stacked, "mean").cpu().tolist()
        seconds = max(time.perf_counter() - window.t0, 1e-9)
        scalars = {f"train/{k}": float(v) for k, v in zip(keys, values, strict=True)}
        scalars["train/lr"] = float(scheduler.get_last_lr()[0])
        scalars["perf/clips_per_s"] = window.clips / seconds
        scalars["perf/data_wait_fraction"] = window.wait / seconds
        log.scalars(pos.step, scalars, epoch=pos.epoch)
        loss = scalars.get("train/loss", math.nan)
        bar.set_postfix(loss=f"{loss:.4f}", clips_s=f"{scalars['perf/clips_per_s']:.1f}",
                        wait=f"{scalars['perf/data_wait_fraction']:.0%}")
        window.reset()


def warn_if_threads_differ(state: dict[str, Any], path: Path) -> bool:
    """Warn when a run resumes from ``path`` at another torch thread count than it was saved at:
    CPU kernels split their sums by thread, so the continuation is not bit-identical to an
    uninterrupted run (checkpoints without the count, written before it was recorded, pass)."""
    saved, now = state.get("torch_threads"), torch.get_num_threads()
    if saved is None or saved == now:
        return False
    logger.warning("%s was saved with %d torch threads, this process has %d: the run continues, but not "
                   "bit-identically to an uninterrupted one (set OMP_NUM_THREADS=%d to match)",
                   path, saved, now, saved)
    return True


def _channels_last_format(dim: int) -> torch.memory_format | None:
    return {5: torch.channels_last_3d, 4: torch.channels_last}.get(dim)


def to_channels_last(module: nn.Module) -> nn.Module:
    """``module``'s 5-d parameters and buffers in ``channels_last_3d``, 4-d ones in ``channels_last``
    (in place; the parameters stay the same objects, so an optimiser built on them keeps them).

    ``Module.to(memory_format=...)`` takes one format for 4-d and 5-d tensors alike and so fails
    on a model with both (a video and an audio encoder)."""
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            fmt = _channels_last_format(tensor.dim())
            if fmt is not None:
                tensor.data = tensor.data.contiguous(memory_format=fmt)
    return module


def to_device(batch: Mapping[str, Any], device: torch.device, channels_last: bool = False) -> dict[str, Any]:
    """``batch`` with every tensor (also in nested dicts, e.g. ``audio_aug``) on ``device``, copied
    non-blocking; with ``channels_last`` floating ``video (B, C, T, H, W)`` / ``audio (B, 1, F, T)``
    in the channels-last layout of their rank. Other values (ids, failure lists) as they are."""
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, Mapping):
            value = to_device(value, device, channels_last)
        elif isinstance(value, Tensor):
            value = value.to(device, non_blocking=True)
            fmt = _channels_last_format(value.dim()) if channels_last and value.is_floating_point() else None
            if fmt is not None:
                value = value.contiguous(memory_format=fmt)
        out[key] = value
    return out


def _normalised(config: Any, stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """A checkpoint's stored config read back through the config class (older layouts, new defaults)."""
    if stored is None:
        return None
    try:
        return to_dict(from_dict(type(config), stored))
    except (ConfigError, TypeError):
        return stored


class _Window:
    """Logs, clips and data-wait time since the last log record."""

    def __init__(self) -> None:
        self.logs: dict[str, list[Tensor]] = {}
        self.reset()

    def reset(self) -> None:
        self.logs.clear()
        self.clips, self.wait, self.t0 = 0, 0.0, time.perf_counter()

    def add(self, out: StepOutput, world: int) -> None:
        self.clips += out.clips * world
        for key, value in out.logs.items():
            self.logs.setdefault(key, []).append(value.detach().float())

    def timed(self, loader: DataLoader[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Iterate ``loader``, adding the time spent waiting for each batch to ``wait``."""
        t = time.perf_counter()
        for batch in loader:
            self.wait += time.perf_counter() - t
            yield batch
            t = time.perf_counter()
