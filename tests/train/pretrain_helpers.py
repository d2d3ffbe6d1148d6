"""Shared pieces of the pretraining tests: a tiny synthetic collection and a fast config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SYNTH_CPU = ROOT / "avlearn" / "configs" / "pretrain" / "synth_cpu.yaml"


def make_collection(out: Path, num_videos: int, seed: int) -> Path:
    """Generate and index a synthetic collection of 3 s, 64 px videos; returns its manifest.

    No silent distractors and larger objects: at 32 px crops a tiny encoder needs hundreds of
    steps to tell the moving (sounding) object from distractors, so these collections isolate
    the audio-visual correspondence that the retrieval test measures.
    """
    from data_prep.index import index_collection
    from data_prep.synth import SynthConfig, generate

    generate(SynthConfig(out=out, num_videos=num_videos, seed=seed, duration=3.0, size=64, workers=2,
                         max_distractors=0, object_scale=0.4),
             progress=False)
    manifest = out / "manifest.csv"
    index_collection([out / "videos"], manifest, workers=2, progress=False)
    return manifest


def fast_overrides(manifest: Path, run_dir: Path, **extra: Any) -> list[str]:
    """Overrides of synth_cpu.yaml for tests: 32 px crops, 1 s audio, batch 8, no workers."""
    values: dict[str, Any] = {
        "run_dir": str(run_dir),
        "data.manifest": str(manifest),
        "data.decode_size": 40,
        "data.video_aug.size": 32,
        "data.audio_seconds": 1.0,
        "data.batch_size": 8,
        "data.num_workers": 0,
        "model.embed_dim": 32,
        "model.proj_hidden": 64,
        "objective.name": "avid",  # memory banks: what resume and multi-process tests must cover
        "objective.num_negatives": 64,
        "train.progress": False,
        "train.tensorboard": False,
        "train.log_every": 1,
        "optim.warmup_epochs": 0,
    }
    values.update(extra)
    if values["objective.name"] in ("infonce", "vicreg"):  # in-batch: no bank, no num_negatives key
        del values["objective.num_negatives"]
    return [f"{k}={v}" for k, v in values.items()]


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
