"""``avlearn pretrain``: self-supervised audio-visual pretraining (AVID, AVID-CMA, InfoNCE).

Usage::

    avlearn pretrain --config configs/pretrain/synth_cpu.yaml [--resume | --fresh] [key=value ...]
    python -m avlearn pretrain --config ...
    torchrun --standalone --nproc_per_node 2 -m avlearn pretrain --config ...
    accelerate launch --multi_gpu --num_processes 8 -m avlearn pretrain --config ...

A run resumes automatically from the newest checkpoint in ``run_dir/checkpoints`` (``--resume``
says so explicitly and fails when there is none); ``--fresh`` ignores existing checkpoints.
Overrides are dotted keys of :class:`~avlearn.train.config.PretrainConfig`, e.g.
``optim.lr=3e-4 data.batch_size=32 max_steps=100``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from avlearn.config import ConfigError, load_config
from avlearn.train.checkpoint import CheckpointManager
from avlearn.train.config import PretrainConfig

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avlearn pretrain", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="a YAML file under configs/pretrain/")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from run_dir's newest checkpoint")
    group.add_argument("--fresh", action="store_true", help="ignore existing checkpoints in run_dir")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 done, 1 stopped on NaN/inf, 2 bad config)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(PretrainConfig, args.config, args.overrides)
    except ConfigError as err:
        print(f"avlearn pretrain: {err}", file=sys.stderr)
        return 2
    if args.resume and CheckpointManager(Path(cfg.run_dir) / "checkpoints").latest() is None:
        print(f"avlearn pretrain: --resume but no checkpoint in {cfg.run_dir}/checkpoints", file=sys.stderr)
        return 2
    from avlearn.train.loop import NonFiniteLossError, pretrain  # torch import only when running

    try:
        summary = pretrain(cfg, resume=not args.fresh)
    except NonFiniteLossError as err:
        print(f"avlearn pretrain: {err}", file=sys.stderr)
        return 1
    print(f"avlearn pretrain: step {summary['step']}, encoders in {summary['export']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
