"""Uploads are read first in a separate worker process, so a hostile file cannot take the server down.

:func:`avlearn.media.media_info` is the one reader of a file's streams: ``avlearn localize`` calls
it in its own process (through :func:`avlearn.localization.cli.file_rates`), ``avlearn serve``
in a worker (:class:`ProbeWorker`) for every upload. :mod:`avlearn.media` imports only PyAV and
NumPy, so the worker starts in well under a second. Errors carry only the reason; callers wrap
it in a :class:`~avlearn.data.decode.DecodeError` that names the file and the fix, so both
commands word them the same.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from concurrent.futures.process import BrokenProcessPool

from avlearn.media import MediaError, MediaInfo, media_info

__all__ = ["ProbeWorker"]


class ProbeWorker:
    """:func:`media_info` in a one-process pool (``forkserver``: a clean child, not a fork of the
    threaded server); a file that hangs or crashes the decoder becomes a :class:`MediaError`
    and the pool is replaced."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._pool: cf.ProcessPoolExecutor | None = None

    def _executor(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context("forkserver")
            self._pool = cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx)
        return self._pool

    def probe(self, path: str) -> MediaInfo:
        """The file's :class:`MediaInfo`, read in the worker; raises :class:`MediaError`."""
        future = self._executor().submit(media_info, path)
        try:
            return future.result(timeout=self.timeout)
        except cf.TimeoutError:
            self.close()
            raise MediaError(f"reading it took over {self.timeout:g} s") from None
        except BrokenProcessPool:
            self.close()
            raise MediaError("it crashed the decoder") from None

    def close(self) -> None:
        """Stop the worker (a new one starts on the next :meth:`probe`)."""
        if self._pool is not None:
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.kill()  # a hung decode does not end on shutdown
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
