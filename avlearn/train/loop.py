"""The pretraining loop: Accelerate owns placement, precision, DDP and gradient accumulation.

``pretrain(cfg)`` builds everything from a :class:`PretrainConfig`, resumes from the newest
checkpoint in ``run_dir/checkpoints`` (when ``resume``), trains, checkpoints every
``train.ckpt_every_steps`` optimiser steps and at the end, and exports the encoders.

Exact resume: the clip order of an epoch depends only on ``(data.seed, epoch)``
(:class:`ResumableBatchSampler`), each clip's augmentation only on ``(data.seed, epoch,
index)``, and a checkpoint holds model, optimiser, scheduler, scaler, objective (memory
banks, NCE partition, CMA positive sets), epoch, batches consumed and every process's RNG.

Localization (``localization.weight > 0``): the model and a learned localizer train as one module
(:class:`~avlearn.localization.export.AVModelWithLocalizer`); the loss is the objective's plus
``weight *`` :func:`~avlearn.localization.objective.localization_loss` (logged as ``loc/*``), the
checkpoint holds the localizer under ``"localizer"`` (the ``"model"`` entry keeps
:class:`AVModel`'s keys), and the localizer is exported next to the encoders
(:func:`~avlearn.localization.export.localizer_path`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from avlearn.config import to_dict
from avlearn.data.config import build_dataset
from avlearn.data.dataset import FailureTracker, av_collate
from avlearn.distributed import fresh_accelerator_state
from avlearn.eval.retrieval import evaluate_retrieval
from avlearn.localization.export import (
    AVModelWithLocalizer,
    LocalizedOutput,
    LocalizerSpec,
    localizer_path,
    save_localizer,
)
from avlearn.localization.module import AVLocalizer
from avlearn.localization.objective import localization_loss
from avlearn.models.av import AVModel, AVOutput
from avlearn.models.checkpoint import save_encoders
from avlearn.models.registry import build_av_model
from avlearn.models.sync_bn import convert_global_batchnorm
from avlearn.objectives import CMALoss, InfoNCELoss
from avlearn.train.checkpoint import CheckpointManager, get_rng_state, set_rng_state
from avlearn.train.config import PretrainConfig, build_objective
from avlearn.train.logger import MetricsLogger
from avlearn.train.optim import build_optimizer, build_scheduler
from avlearn.train.sampler import ResumableBatchSampler

__all__ = ["NonFiniteLossError", "pretrain", "state_digest"]

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss or the embeddings became NaN/inf; the message names the step."""


def state_digest(module: nn.Module) -> str:
    """SHA-256 of a module's state (e.g. memory banks), to compare processes or runs."""
    h = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _objective_name(cfg: PretrainConfig, epoch: int) -> str:
    """CMA trains with plain AVID (on the same banks) until ``cma_start_epoch``."""
    o = cfg.objective
    return "avid" if o.name == "cma" and epoch < o.cma_start_epoch else o.name


def _objective_step(
    objective: nn.Module, out: AVOutput, index: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss and logs of a batch; memory banks are updated later, once the loss is known finite."""
    video_emb, audio_emb = out.video_emb, out.audio_emb
    if isinstance(objective, InfoNCELoss):
        return objective(video_emb, audio_emb, out.audio_shifted_emb)  # type: ignore[no-any-return]
    return objective(video_emb, audio_emb, index, update_memory=False)  # type: ignore[no-any-return]


def _init_from(path: str, model: AVModel, objective: nn.Module, localizer: AVLocalizer | None = None) -> None:
    """Model weights, objective state (banks; strict=False) and a localizer, when both have one,
    from a run checkpoint or run dir."""
    src = Path(path)
    if src.is_dir():
        found = CheckpointManager(src / "checkpoints").latest()
        if found is None:
            raise FileNotFoundError(f"objective.init_from: no checkpoint under {src}/checkpoints")
        src = found
    state = CheckpointManager.load(src)
    model.load_state_dict(state["model"])
    if localizer is not None and "localizer" in state:
        localizer.load_state_dict(state["localizer"])
    if not isinstance(objective, InfoNCELoss) and "objective" in state:
        objective.load_state_dict(state["objective"], strict=False)
    logger.info("initialised model and memory banks from %s", src)


def _write_config(cfg: PretrainConfig, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(json.loads(json.dumps(to_dict(cfg))), sort_keys=False)
    (run_dir / "config.yaml").write_text(text)


def _eval_loader(cfg: PretrainConfig) -> DataLoader[dict[str, Any]] | None:
    if not cfg.eval.manifest:
        return None
    # one centre-cropped clip per video: several clips of one video would be near-duplicates
    data = dataclasses.replace(cfg.data, clips_per_video=1)
    ds = build_dataset(data, train=False, manifest=cfg.eval.manifest)
    return DataLoader(ds, batch_size=cfg.eval.batch_size, shuffle=False, num_workers=0, collate_fn=av_collate)


def pretrain(cfg: PretrainConfig, resume: bool = True) -> dict[str, Any]:
    """Run (or continue) the pretraining described by ``cfg``; returns a summary dict.

    ``resume``: continue from the newest checkpoint in ``run_dir/checkpoints`` when one exists
    (otherwise start fresh and overwrite). Raises :class:`NonFiniteLossError` on NaN/inf.
    """
    fresh_accelerator_state()
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=cfg.train.mixed_precision,
        gradient_accumulation_steps=cfg.train.grad_accum,
    )
    run_dir = Path(cfg.run_dir)
    ckpts = CheckpointManager(run_dir / "checkpoints", keep=cfg.train.keep_checkpoints)
    main = accelerator.is_main_process
    world, rank = accelerator.num_processes, accelerator.process_index

    # --- data
    dataset = build_dataset(cfg.data, train=True)
    sampler = ResumableBatchSampler(
        len(dataset), cfg.data.batch_size, seed=cfg.data.seed, rank=rank, world_size=world
    )
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=cfg.data.num_workers,
        collate_fn=av_collate,
        persistent_workers=cfg.data.num_workers > 0,
        # its own generator: iter(loader) must not draw from the global RNG (exact resume)
        generator=torch.Generator().manual_seed(cfg.data.seed),
    )
    steps_per_epoch = sampler.batches_per_epoch // cfg.train.grad_accum
    if steps_per_epoch < 1:
        raise ValueError(
            f"an epoch has {sampler.batches_per_epoch} batches, fewer than train.grad_accum="
            f"{cfg.train.grad_accum}; lower data.batch_size or grad_accum"
        )
    batches_used = steps_per_epoch * cfg.train.grad_accum  # a trailing partial accumulation is dropped
    total_steps = cfg.epochs * steps_per_epoch  # the schedule's length; max_steps only stops early
    last_step = min(total_steps, cfg.max_steps) if cfg.max_steps else total_steps

    # --- model, objective, optimiser (identical init on every process)
    set_seed(cfg.seed)
    model = build_av_model(cfg.model)
    if cfg.train.sync_batchnorm and world > 1:
        convert_global_batchnorm(model)
    dim = model.embed_dim or cfg.model.embed_dim

    def make_objective(name: str) -> nn.Module:
        return build_objective(cfg.objective, name, dataset.num_videos, dim, seed=cfg.seed)

    objective_name = _objective_name(cfg, 0)
    objective = make_objective(objective_name)
    loc = cfg.localization
    localizer: AVLocalizer | None = None
    net: nn.Module = model
    if loc.enabled:  # the localizer trains with the model, as one module (DDP, clipping, optimiser)
        loc_spec = LocalizerSpec.for_model(model, loc.embed_dim, loc.audio_input)
        localizer = loc_spec.build()
        net = AVModelWithLocalizer(model, localizer, loc.audio_input)
    optimizer = build_optimizer(net.parameters(), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, steps_per_epoch, total_steps)

    # --- resume or initialise
    step, epoch, batch_in_epoch = 0, 0, 0
    latest = ckpts.latest() if resume else None
    if latest is not None:
        state = ckpts.load(latest)
        model.load_state_dict(state["model"])
        if (localizer is not None) != ("localizer" in state):
            raise ValueError(
                f"{latest} was saved {'with' if 'localizer' in state else 'without'} a localizer but "
                f"localization.weight={loc.weight}; keep the run's setting, start a new run_dir, or pass "
                "--fresh with objective.init_from to start from its weights"
            )
        if localizer is not None:
            localizer.load_state_dict(state["localizer"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        objective_name = state["objective_name"]
        objective = make_objective(objective_name)
        objective.load_state_dict(state["objective"])
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        if batch_in_epoch >= batches_used:
            epoch, batch_in_epoch = epoch + 1, 0
    elif cfg.objective.init_from:
        _init_from(cfg.objective.init_from, model, objective, localizer)
    objective.to(accelerator.device)
    net, optimizer = accelerator.prepare(net, optimizer)
    if latest is not None:
        if accelerator.scaler is not None and state.get("scaler") is not None:
            accelerator.scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        if len(rng) == world:
            set_rng_state(rng[rank])
        else:
            logger.warning("checkpoint has RNG states of %d processes, run has %d: reseeding",
                           len(rng), world)
            set_seed(cfg.seed + rank + 1000 * step)
    else:
        set_seed(cfg.seed + rank)  # per-process stream for negative / positive sampling
    unwrapped_net = accelerator.unwrap_model(net)
    unwrapped: AVModel = unwrapped_net.model if localizer is not None else unwrapped_net

    log = MetricsLogger(run_dir, enabled=main, tensorboard=cfg.train.tensorboard)
    if main:
        _write_config(cfg, run_dir)
    log.event(
        "resume" if latest is not None else "start",
        step=step,
        epoch=epoch,
        batch_in_epoch=batch_in_epoch,
        world_size=world,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        checkpoint=str(latest) if latest else None,
    )
    if main:
        logger.info(
            "pretraining %s: %d videos, %d steps/epoch x %d epochs, %d process(es), %s",
            run_dir, dataset.num_videos, steps_per_epoch, cfg.epochs, world,
            f"resuming at step {step}" if latest else "from scratch",
        )

    def save_checkpoint() -> None:
        rngs = gather_object([get_rng_state()])  # every process's RNG, in rank order
        if main:
            extra = {"localizer": unwrapped_net.localizer.state_dict()} if localizer is not None else {}
            ckpts.save(
                {
                    **extra,
                    "model": unwrapped.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
                    "objective": objective.state_dict(),
                    "objective_name": objective_name,
                    "step": step,
                    "epoch": epoch,
                    "batch_in_epoch": batch_in_epoch,
                    "rng": rngs,
                    "config": to_dict(cfg),
                },
                step,
            )
        accelerator.wait_for_everyone()

    eval_loader = _eval_loader(cfg)

    def run_eval(tag: str) -> None:
        if eval_loader is None:
            return
        metrics = evaluate_retrieval(unwrapped, eval_loader, accelerator.device)
        log.scalars(step, {f"retrieval/{k}": v for k, v in metrics.items()}, epoch=epoch, tag=tag)
        if main:
            logger.info("retrieval (%s, step %d): %s", tag, step, metrics)

    if step == 0:
        run_eval("init")

    bar = tqdm(total=last_step, initial=step, disable=not (main and cfg.train.progress), unit="step",
               dynamic_ncols=True)
    tracker = FailureTracker()
    window: dict[str, float] = {"clips": 0, "wait": 0.0, "t0": time.perf_counter()}
    logs_acc: dict[str, list[Tensor]] = {}
    net.train()
    while epoch < cfg.epochs and step < last_step:
        # --- epoch start: data order, CMA stage and positive sets
        dataset.set_epoch(epoch)
        sampler.set_epoch(epoch, skip=batch_in_epoch)
        if batch_in_epoch == 0 and cfg.objective.name == "cma":
            want = _objective_name(cfg, epoch)
            if want != objective_name:  # AVID warm-up over: CMA on the same banks and partition
                avid_state = objective.state_dict()
                objective = make_objective(want).to(accelerator.device)
                objective.load_state_dict(avid_state, strict=False)
                objective_name = want
            if isinstance(objective, CMALoss) and (
                (epoch - cfg.objective.cma_start_epoch) % cfg.objective.cma_every_epochs == 0
                or not objective.has_positive_sets
            ):
                objective.update_positive_sets()
                log.event("positive_sets", step=step, epoch=epoch)
        t_wait = time.perf_counter()
        for batch in loader:
            window["wait"] += time.perf_counter() - t_wait
            if batch_in_epoch >= batches_used:
                break
            tracker.update(batch)
            video = batch["video"].to(accelerator.device, non_blocking=True)
            audio = batch["audio"].to(accelerator.device, non_blocking=True)
            index = batch["index"].to(accelerator.device)
            shifted = batch.get("audio_shifted")
            if shifted is not None:
                shifted = shifted.to(accelerator.device, non_blocking=True)

            # --- the step
            with accelerator.accumulate(net):
                out = net(video, audio, audio_shifted=shifted)
                loc_out = out if isinstance(out, LocalizedOutput) else None
                if loc_out is not None:
                    out = loc_out.av
                loss, logs = _objective_step(objective, out, index)
                if loc_out is not None:
                    loc_loss, loc_logs = localization_loss(
                        loc_out.grid_emb, loc_out.audio_emb, loc.temperature
                    )
                    logs = {**logs, "objective_loss": logs["loss"],
                            **{f"loc/{k}": v for k, v in loc_logs.items()}}
                    loss = loss + loc.weight * loc_loss
                    logs["loss"] = loss.detach()
                emb_ok = out.video_emb.isfinite().all() & out.audio_emb.isfinite().all()
                finite = torch.isfinite(loss) & emb_ok
                if accelerator.reduce((~finite).float().reshape(1), "sum").item() > 0:
                    raise NonFiniteLossError(
                        f"non-finite loss or embeddings at step {step} (epoch {epoch}, batch "
                        f"{batch_in_epoch}; loss={loss.item():.4g}); stopping. Lower optim.lr, enable "
                        "optim.clip_grad_norm or use train.mixed_precision=no; the last checkpoint "
                        f"is {ckpts.latest()}"
                    )
                if not isinstance(objective, InfoNCELoss):
                    objective.update_memory(out.video_emb, out.audio_emb, index)  # type: ignore[operator]
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.optim.clip_grad_norm > 0:
                    accelerator.clip_grad_norm_(net.parameters(), cfg.optim.clip_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            batch_in_epoch += 1
            window["clips"] += video.shape[0] * world
            for key, value in logs.items():
                logs_acc.setdefault(key, []).append(value.detach().float())
            if accelerator.sync_gradients:
                scheduler.step()
                step += 1
                bar.update(1)
                if step % cfg.train.log_every == 0 or step == last_step:
                    _log_window(log, accelerator, step, epoch, logs_acc, window, scheduler, bar)
                if cfg.train.ckpt_every_steps and step % cfg.train.ckpt_every_steps == 0:
                    save_checkpoint()
                if step >= last_step:
                    break
            t_wait = time.perf_counter()
        if batch_in_epoch >= batches_used:
            if main:
                logger.info(tracker.report(epoch))
            log.event("epoch_end", step=step, epoch=epoch, data=tracker.report(epoch),
                      failures=tracker.failures)
            tracker.reset()
            epoch, batch_in_epoch = epoch + 1, 0
            if cfg.eval.every_epochs and epoch % cfg.eval.every_epochs == 0 and epoch < cfg.epochs:
                run_eval(f"epoch {epoch}")
    bar.close()

    # --- end: checkpoint, export, final evaluation, per-process digest
    if ckpts.latest() is None or ckpts.list()[-1][0] != step:
        save_checkpoint()
    finished = epoch >= cfg.epochs or step >= total_steps
    export = run_dir / cfg.train.export
    if main:
        save_encoders(unwrapped, export, to_dict(cfg))
        if localizer is not None:
            save_localizer(unwrapped_net.localizer, loc_spec, localizer_path(export))
    run_eval("final")
    digest = state_digest(objective)
    summaries = gather_object([{"rank": rank, "world_size": world, "step": step, "objective_digest": digest}])
    log.event("end", step=step, epoch=epoch, finished=finished, export=str(export), processes=summaries)
    log.close()
    accelerator.wait_for_everyone()
    return {"step": step, "epoch": epoch, "finished": finished, "export": str(export), "processes": summaries}


def _log_window(
    log: MetricsLogger,
    accelerator: Accelerator,
    step: int,
    epoch: int,
    logs_acc: dict[str, list[Tensor]],
    window: dict[str, float],
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    bar: tqdm[Any],
) -> None:
    """Average the window's objective logs over steps and processes, add lr, clips/s, data wait."""
    keys = sorted(logs_acc)
    values = torch.stack([torch.stack(logs_acc[k]).mean() for k in keys]) if keys else torch.zeros(0)
    values = accelerator.reduce(values.to(accelerator.device), "mean").cpu().tolist() if keys else []
    seconds = max(time.perf_counter() - window["t0"], 1e-9)
    scalars = {f"train/{k}": float(v) for k, v in zip(keys, values, strict=True)}
    scalars["train/lr"] = float(scheduler.get_last_lr()[0])
    scalars["perf/clips_per_s"] = window["clips"] / seconds
    scalars["perf/data_wait_fraction"] = window["wait"] / seconds
    log.scalars(step, scalars, epoch=epoch)
    loss = scalars.get("train/loss", math.nan)
    bar.set_postfix(loss=f"{loss:.4f}", clips_s=f"{scalars['perf/clips_per_s']:.1f}",
                    wait=f"{scalars['perf/data_wait_fraction']:.0%}")
    logs_acc.clear()
    window.update(clips=0, wait=0.0, t0=time.perf_counter())

