"""What ``avlearn pretrain`` and ``avlearn finetune`` share: arguments, config loading, exit codes.

Exit codes (:data:`EXIT_CODES`): 0 done, 1 stopped on a non-finite loss, 2 bad config, arguments,
``--resume`` without a checkpoint, a config change resuming cannot honour, or a ``run_dir`` that
another run holds; 75 stopped by SIGINT / SIGTERM after writing a checkpoint (rerun the same
command to resume: a job script can requeue on 75); 130 / 143 a second signal (SIGINT / SIGTERM)
ended it at once. Errors are printed as ``PROG: message`` on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from avlearn.config import ConfigError, load_config

__all__ = ["EXIT_CODES", "add_run_arguments", "run_command"]

EXIT_CODES = """exit codes:
  0    done
  1    stopped on a non-finite loss
  2    bad config or arguments, --resume without a checkpoint, a config change that resuming
       cannot honour (listed; --fresh starts over), or run_dir in use by another run
  75   stopped by SIGINT/SIGTERM after finishing the step and writing a checkpoint:
       run the same command again to resume (a job script can requeue on 75)
  130  a second signal, SIGINT (143: SIGTERM), ended the run at once; earlier checkpoints are kept"""

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
    group.add_argument("--fresh", action="store_true",
                       help="start from scratch; an earlier run's files in run_dir move to run_dir/previous/")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EXIT_CODES
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
    from avlearn.train.engine import NonFiniteLossError, RunDirBusyError, RunInterrupted
    from avlearn.train.interrupt import EXIT_INTERRUPTED

    run_dir = Path(cfg.run_dir)
    if args.resume and CheckpointManager(run_dir / "checkpoints").latest() is None:
        print(f"{prog}: --resume but no checkpoint in {run_dir}/checkpoints", file=sys.stderr)
        return 2
    bad_input: tuple[type[Exception], ...] = (ConfigError, RunDirBusyError, *usage_errors)
    try:
        summary = run(cfg, not args.fresh)
    except bad_input as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 1
    except RunInterrupted as err:
        print(f"{prog}: {err} (exit code {EXIT_INTERRUPTED})", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:  # Ctrl-C outside the training steps (set-up, evaluation, export)
        print(f"{prog}: interrupted (SIGINT) outside the training steps; the checkpoints in "
              f"{run_dir}/checkpoints are kept (exit code 130)", file=sys.stderr)
        return 130
    if summary:
        print(f"{prog}: {summary}")
    return 0
