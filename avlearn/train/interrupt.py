"""Stopping a run on SIGINT / SIGTERM without losing work (preemption, ``scancel``, Ctrl-C).

The first signal asks the engine to stop after the current optimiser step: it writes a
checkpoint and raises :class:`RunInterrupted`, which the commands turn into exit code
:data:`EXIT_INTERRUPTED` (75, ``EX_TEMPFAIL``: rerun the same command to resume; a job script can
requeue on it). A second signal exits at once with ``128 + signal`` (130 for SIGINT, 143 for
SIGTERM), leaving the checkpoints already written. With several processes the engine adds each
process's flag to the all-reduce it already does every step (the non-finite check), so every
process stops after the same step whichever of them got the signal.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

__all__ = ["EXIT_INTERRUPTED", "RunInterrupted", "StopSignals", "ignore_stop_signals"]

logger = logging.getLogger(__name__)

EXIT_INTERRUPTED = 75
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(RuntimeError):
    """The run stopped on a signal after writing a checkpoint; the message says where and how to go on."""


class StopSignals:
    """While installed, SIGINT / SIGTERM set :attr:`signum` (the first) or exit the process (the second)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "a signal"

    def install(self) -> None:
        """Catch the signals (only possible in the main thread; elsewhere they keep their handlers)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in _SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            sys.stderr.write(f"{name} after {self.name}: exiting at once (exit code {128 + signum}); "
                             "the checkpoints written so far are kept\n")
            sys.stderr.flush()
            os._exit(128 + signum)
        self.signum = signum
        logger.warning("%s: stopping after this step with a checkpoint (send it again to exit at once)", name)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers leave SIGINT / SIGTERM to the training process.

    A job's SIGTERM reaches every process of the job; a worker it killed would make the training
    process fail mid-step instead of finishing it. Workers still end when their parent does.
    """
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
