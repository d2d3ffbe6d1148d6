"""``avlearn pretrain``: self-supervised audio-visual pretraining (AVID, AVID-CMA, InfoNCE).

Usage::

    avlearn pretrain --config configs/pretrain/synth_cpu.yaml [--resume | --fresh] [key=value ...]
    python -m avlearn pretrain --config ...
    torchrun --standalone --nproc_per_node 2 -m avlearn pretrain --config ...
    accelerate launch --multi_gpu --num_processes 8 -m avlearn pretrain --config ...

A run resumes automatically from the newest checkpoint in ``run_dir/checkpoints`` (``--resume``
says so explicitly and fails when there is none) and refuses a changed config it cannot honour;
``--fresh`` starts over, moving the earlier run to ``run_dir/previous/``. SIGINT / SIGTERM stop
the run after the current step with a checkpoint (exit code 75: rerun to resume).
Overrides are dotted keys of :class:`~avlearn.train.config.PretrainConfig`, e.g.
``optim.lr=3e-4 data.batch_size=32 max_steps=100``.
"""

from __future__ import annotations

import argparse
import sys

from avlearn.train.command import add_run_arguments, run_command
from avlearn.train.config import PretrainConfig

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avlearn pretrain", description=__doc__.split("\n\n")[0])
    add_run_arguments(p, "pretrain/")
    return p


def _run(cfg: PretrainConfig, resume: bool) -> str:
    from avlearn.train.loop import pretrain  # torch import only when running

    summary = pretrain(cfg, resume=resume)
    return f"step {summary['step']}, encoders in {summary['export']}"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 done, 1 stopped on NaN/inf, 2 bad config or busy run_dir,
    75 stopped by a signal after a checkpoint; see :data:`~avlearn.train.command.EXIT_CODES`)."""
    return run_command("avlearn pretrain", PretrainConfig, _parser().parse_args(argv), _run)


if __name__ == "__main__":
    sys.exit(main())
