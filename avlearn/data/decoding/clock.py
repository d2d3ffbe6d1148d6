"""The decoder's profiling clock: :func:`stage_times` sums the seconds each decoding stage takes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

__all__ = ["CLOCK", "stage_times"]


class _StageClock:
    """Adds the seconds since the previous lap to a stage's total, only while profiling is on."""

    def __init__(self) -> None:
        self.totals: dict[str, float] | None = None
        self.last = 0.0
        self.clock: Callable[[], float] = time.perf_counter

    def start(self) -> None:
        if self.totals is not None:
            self.last = self.clock()

    def lap(self, stage: str) -> None:
        if self.totals is not None:
            now = self.clock()
            self.totals[stage] = self.totals.get(stage, 0.0) + now - self.last
            self.last = now

CLOCK = _StageClock()


@contextlib.contextmanager
def stage_times(clock: Callable[[], float] = time.perf_counter) -> Iterator[dict[str, float]]:
    """Profile the PyAV decoder: seconds per stage, summed over the clips decoded in the block.

    Stages: ``open`` (open the file, read its header), ``video seek``, ``video decode``,
    ``frame convert`` (YUV -> RGB at the decode size, in FFmpeg), ``to tensor``, ``audio seek``,
    ``audio decode``, ``audio downmix`` (sample conversion and placement), ``resample``, ``close``.
    One thread at a time; off (a no-op per stage) outside the block. ``clock``: wall time by
    default; ``time.process_time`` counts CPU time instead (steadier on a shared machine).

    Example::

        with stage_times() as times:
            decode_clip(path, 1.0, spec)
        times  # {"open": 0.0009, "video seek": 0.0001, "video decode": 0.004, ...}
    """
    if CLOCK.totals is not None:
        raise RuntimeError("stage_times() is already active")
    totals: dict[str, float] = {}
    CLOCK.totals, CLOCK.clock = totals, clock
    try:
        yield totals
    finally:
        CLOCK.totals = None
