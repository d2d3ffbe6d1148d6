"""Scalar logging of a run: ``run_dir/metrics.jsonl`` always, TensorBoard when available.

Only the main process writes; other processes get a logger whose methods do nothing.
Each JSONL record is one line ``{"step": int, "epoch": int, "time": float, ...scalars}``;
records with ``"event"`` mark run start / resume / end.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["MetricsLogger"]

logger = logging.getLogger(__name__)


class MetricsLogger:
    """Appends scalars to ``metrics.jsonl`` and (``tensorboard=True``) to ``run_dir/tb``.

    ``purge_step``: a resumed run's first step; TensorBoard hides the interrupted run's events
    from there on (``metrics.jsonl`` is trimmed by :func:`~avlearn.train.rundir.trim_metrics`).
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True,
                 purge_step: int | None = None) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self._tb: Any = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the tensorboard package is missing: JSONL only, said once
                logger.warning("tensorboard is not installed; logging to %s only", self.path)
            else:
                self._tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=purge_step)

    def event(self, name: str, **fields: Any) -> None:
        """A non-scalar record, e.g. ``event("start", step=0, world_size=2)``."""
        self._write({"event": name, "time": time.time(), **fields})

    def scalars(self, step: int, values: dict[str, float], **fields: Any) -> None:
        """Scalars at optimiser step ``step`` (``prefix/name`` keys become TensorBoard tags)."""
        self._write({"step": step, "time": time.time(), **fields, **values})
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(key, value, step)

    def _write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
