"""``avlearn finetune``: full fine-tuning of a (pretrained) video encoder + a new linear classifier.

``modality=audio_visual`` fine-tunes both encoders under one classifier of their concatenated embeddings
(:class:`~avlearn.models.classifier.AVClassifier`); a multi-label split (AudioSet) trains with binary
cross-entropy and is scored by mAP.

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

from avlearn.eval.results import headline
from avlearn.models.checkpoint import CheckpointError
from avlearn.train.command import add_run_arguments, run_command
from avlearn.train.finetune.config import FinetuneConfig
from avlearn.train.finetune.run import finetune

__all__ = ["main"]


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
        return f"{headline(results)}; results in {cfg.run_dir}/results.md"

    # CheckpointError: WeightsError and weight mismatches are bad input
    return run_command("avlearn finetune", FinetuneConfig, args, run, (CheckpointError, FileNotFoundError))

