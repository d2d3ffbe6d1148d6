"""What ``avlearn pretrain`` and ``avlearn finetune`` share: arguments, config loading, exit codes.

Exit codes: 0 done, 1 stopped on a non-finite loss, 2 bad config, arguments or ``--resume``
without a checkpoint. Errors are printed as ``PROG: message`` on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from avlearn.config import ConfigError, load_config

__all__ = ["add_run_arguments", "run_command"]

class _RunConfig(Protocol):
    @property
    def run_dir(self) -> str: ...


C = TypeVar("C", bound=_RunConfig)


def add_run_arguments(p: argparse.ArgumentParser, configs: str) -> None:
    """``--config`` (a YAML under ``configs``), ``--resume`` / ``--fresh`` and ``key=value`` overrides."""
    p.add_argument("--config", required=True,
                   help=f"a YAML file, or a shipped config by name (e.g. {configs}synth_cpu.yaml)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from run_dir's newest checkpoint")
    group.add_argument("--fresh", action="store_true", help="ignore existing checkpoints in run_dir")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")


def run_command(prog: str, config_cls: type[C], args: argparse.Namespace, run: Callable[[C, bool], str],
                usage_errors: tuple[type[Exception], ...] = ()) -> int:
    """Load ``args.config`` with ``args.overrides`` into ``config_cls``, check ``--resume``, call
    ``run(cfg, resume)`` and print its one-line summary; returns the exit code.

    ``usage_errors``: exceptions of ``run`` that mean bad input (exit 2) rather than a bug.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(config_cls, args.config, args.overrides)
    except ConfigError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    from avlearn.train.checkpoint import CheckpointManager  # torch imports only when running
    from avlearn.train.engine import NonFiniteLossError

    run_dir = Path(cfg.run_dir)
    if args.resume and CheckpointManager(run_dir / "checkpoints").latest() is None:
        print(f"{prog}: --resume but no checkpoint in {run_dir}/checkpoints", file=sys.stderr)
        return 2
    bad_input: tuple[type[Exception], ...] = (ConfigError, *usage_errors)
    try:
        summary = run(cfg, not args.fresh)
    except bad_input as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 1
    if summary:
        print(f"{prog}: {summary}")
    return 0
