"""Smoke runs of pretraining and fine-tuning on the device, from clips held in memory.

The GPU machine has no PyAV or decord, so nothing can be decoded there: these runs train on random
clips of the decoded shapes (:class:`MemoryClips`) through the real entry points
(:func:`avlearn.train.loop.pretrain`, :func:`avlearn.train.finetune.finetune`) and so through the
engine: accelerator placement, mixed precision, the objectives' memory banks on the device,
checkpoints, export, resume-free fine-tuning from the pretraining run and its evaluation.

Each registered objective pretrains in bf16; on cuda AVID also pretrains in fp16 (a GradScaler);
AVID's bf16 run then resumes from its last checkpoint (its banks saved from the device) for one more epoch.
A run passes when it finishes its steps with finite losses and writes its export or results.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from avlearn.config import load_config
from avlearn.objectives import OBJECTIVES

__all__ = ["MemoryClips", "finetune_run", "pretrain_run"]


class MemoryClips(Dataset[dict[str, Any]]):
    """``num_videos`` fixed random clips with the samples of the training datasets.

    Samples carry :class:`~avlearn.data.dataset.AVClipDataset`'s ``video``, ``audio``, ``index`` and
    :class:`~avlearn.data.labelled.LabelledClipDataset`'s ``label``, ``video_index``, ``clip_index``.

    Shape: ``video (3, T, S, S)``, ``audio (1, F, T_a)`` (a spectrogram), the rest ints.
    """

    def __init__(self, num_videos: int, frames: int, size: int, spec: tuple[int, int],
                 num_classes: int = 4, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.video = torch.randn(num_videos, 3, frames, size, size, generator=gen)
        self.audio = torch.randn(num_videos, 1, *spec, generator=gen)
        self.labels = torch.arange(num_videos) % num_classes
        self.class_names = [f"class{i}" for i in range(num_classes)]
        self.class_to_idx = {name: i for i, name in enumerate(self.class_names)}

    @property
    def num_videos(self) -> int:
        return len(self.video)

    def __len__(self) -> int:
        return len(self.video)

    def set_epoch(self, epoch: int) -> None:
        """The clips do not change between epochs."""

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"video": self.video[i], "audio": self.audio[i], "index": i, "label": int(self.labels[i]),
                "video_index": i, "clip_index": 0}


def _objective_overrides(name: str) -> list[str]:
    """Small banks and positive sets for the few clips of a smoke run (only keys the objective has)."""
    fields = set(OBJECTIVES[name].config_cls.__dataclass_fields__)
    small = {"num_negatives": 16, "positive_set_size": 4, "num_positives": 2, "cma_every_epochs": 1,
             "decoder_width": 64, "decoder_depth": 1, "decoder_heads": 4}
    return [f"objective.{k}={v}" for k, v in small.items() if k in fields]


# Objectives that need another model than the run's: CAV-MAE masks ViT tokens and runs shared blocks
# (tiny ViTs: the smoke run checks the objective's arithmetic and precision, not a model size)
OBJECTIVE_MODELS: dict[str, dict[str, str]] = {
    "cav_mae": {"video_arch": "vit_video_tiny", "audio_arch": "vit_audio_tiny", "head": "identity",
                "video_pool": "avg", "audio_pool": "avg", "fusion_depth": "1"},
}
# ... and its spectrogram shape (F, T): it reconstructs whole 16 x 16 patches
OBJECTIVE_SPECS: dict[str, tuple[int, int]] = {"cav_mae": (128, 96)}


def _records(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _losses(run_dir: Path) -> list[float]:
    return [r["train/loss"] for r in _records(run_dir) if "train/loss" in r]


def _events(run_dir: Path) -> list[str]:
    return [r["event"] for r in _records(run_dir) if "event" in r]


def pretrain_run(run_dir: Path, data: MemoryClips, *, objective: str, precision: str, model: dict[str, str],
                 batch: int, epochs: int = 2, resume: bool = False) -> dict[str, Any]:
    """Pretrain on ``data`` with ``objective`` in ``precision`` (``bf16``, ``fp16`` or ``no``); with
    ``resume``, continue ``run_dir``'s run from its last checkpoint (``resumed``: it did)."""
    from avlearn.train.config import PretrainConfig
    from avlearn.train.loop import pretrain

    overrides = [f"run_dir={run_dir}", f"epochs={epochs}", "data.num_workers=0", f"data.batch_size={batch}",
                 f"objective.name={objective}", *_objective_overrides(objective),
                 f"train.mixed_precision={precision}", "train.progress=false", "train.tensorboard=false",
                 "train.log_every=1", "optim.warmup_epochs=0",
                 *[f"model.{k}={v}" for k, v in {**model, **OBJECTIVE_MODELS.get(objective, {})}.items()]]
    cfg = load_config(PretrainConfig, "pretrain/synth_cpu.yaml", overrides)
    summary = pretrain(cfg, resume=resume, dataset=data)
    losses = _losses(run_dir)
    ok = bool(summary["finished"]) and bool(losses) and all(math.isfinite(x) for x in losses)
    ok = ok and Path(summary["export"]).is_file()
    out = {"objective": objective, "precision": precision, "steps": summary["step"], "ok": ok,
           "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None}
    if resume:
        out["resumed"] = "resume" in _events(run_dir)
        out["ok"] = ok and out["resumed"]
    return out


def finetune_run(run_dir: Path, init: Path, train: MemoryClips, test: MemoryClips, *, precision: str,
                 batch: int, epochs: int = 2) -> dict[str, Any]:
    """Fine-tune the video encoder of the pretraining run ``init`` (one frozen warm-up epoch)."""
    from avlearn.train.finetune import FinetuneConfig, finetune

    overrides = [f"run_dir={run_dir}", f"epochs={epochs}", "warmup_classifier_epochs=1",
                 "data.num_workers=0", f"data.batch_size={batch}", f"train.mixed_precision={precision}",
                 "train.progress=false", "train.tensorboard=false", "train.log_every=1",
                 "eval.num_clips=1", f"eval.batch_size={batch}"]
    cfg = load_config(FinetuneConfig, "finetune/synth_cpu.yaml", overrides)
    results = finetune(cfg, str(init), resume=False, datasets=(train, test))
    losses = _losses(run_dir)
    ok = bool(results.get("finished")) and bool(losses) and all(math.isfinite(x) for x in losses)
    return {"precision": precision, "steps": results.get("steps"), "ok": ok,
            "video_top1": results.get("video_top1"), "last_loss": losses[-1] if losses else None}
