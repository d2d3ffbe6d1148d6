"""What a run directory holds between runs, and how a new run treats it.

* :class:`RunDirLock`: one run per directory. A POSIX record lock (``fcntl.lockf``) on
  ``run_dir/run.lock``, which also names the holder (pid, host, start time, command). Chosen
  over ``flock`` and over pid files because the kernel drops it when its process dies, even by
  ``kill -9`` (never stale on a local disk); forked children (DataLoader workers) do not inherit
  it, so they cannot keep it after their parent is killed; and on NFS it is the lock the server
  itself arbitrates (NLM / NFSv4 byte-range locks; ``flock`` is emulated with these there), so two
  hosts see each other's lock. A crashed host's lock lasts until the server lets it go (NFSv4:
  its lease, ~90 s; NFSv3: until that host restarts). Where the filesystem refuses locks (Lustre
  without ``-o flock``, some FUSE mounts) the pid and host written in the file are checked
  instead, which catches a live run on this host only; the warning says so. A POSIX lock is
  dropped when its process closes *any* descriptor of the file, so nothing else opens it.
* :func:`set_aside`: a run that starts from scratch moves what an earlier run left (checkpoints,
  ``metrics.jsonl``, ``tb/``, ``config.yaml``, the task's outputs such as exports) to
  ``run_dir/previous/<UTC time>/``, so nothing of it can be resumed or mixed into the new run's
  logs; other files in ``run_dir`` stay where they are.
* :func:`trim_metrics`: a resumed run drops the records that the interrupted run wrote after its
  checkpoint (that work is redone), and a line cut short by a kill.
* :func:`config_changes` / :func:`check_resumable`: a resumed run refuses a config that differs
  from its checkpoint's, unless resuming honours the change (:data:`RESUMABLE_KEYS`).
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from avlearn.config import ConfigError

__all__ = [
    "LOCK_NAME",
    "PREVIOUS_DIR",
    "RESUMABLE_KEYS",
    "RUN_FILES",
    "RunDirBusyError",
    "RunDirLock",
    "check_resumable",
    "config_changes",
    "set_aside",
    "trim_metrics",
]

logger = logging.getLogger(__name__)

LOCK_NAME = "run.lock"
PREVIOUS_DIR = "previous"
RUN_FILES = ("checkpoints", "metrics.jsonl", "metrics.jsonl.tmp", "tb", "config.yaml")  # the engine's
# Keys whose change a resumed run honours: its length, logging, checkpoint cadence, evaluation,
# where the export goes, loader processes (a clip does not depend on which worker decodes it), and
# how the same computation is run (memory layout, compilation, cuDNN's algorithm search), and the
# localizer's map floor (measured after training, at export).
RESUMABLE_KEYS = (
    "epochs", "max_steps", "run_dir", "train.log_every", "train.progress", "train.tensorboard",
    "train.ckpt_every_steps", "train.keep_checkpoints", "train.export", "data.num_workers", "eval.",
    "train.channels_last", "train.compile", "train.compile_backend", "train.cudnn_benchmark",
    "localization.floor",
)  # fmt: skip
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class RunDirBusyError(RuntimeError):
    """Another process holds the run directory's lock; the message names the directory and it."""


class RunDirLock:
    """The lock of one run directory, held from :meth:`acquire` to :meth:`release` (or death)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fh: Any = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunDirBusyError` naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        try:
            fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EAGAIN):
                fh.close()
                raise RunDirBusyError(self._busy_message()) from None
            if err.errno not in _NO_LOCKS:
                fh.close()
                raise
            self._check_holder_without_locks(fh)
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(_holder()) + "\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        """Unlock (the file stays: removing it would race with a process that just opened it)."""
        if self._fh is not None:
            self._fh.close()  # closing drops the lock
            self._fh = None

    def _busy_message(self) -> str:
        holder = _read_holder(self.path)
        who = (f"process {holder.get('pid', '?')} on host {holder.get('host', '?')} "
               f"(started {holder.get('started', '?')}: {holder.get('command', '?')})")
        return (f"run_dir {self.path.parent} is in use by {who}. Wait for that run to end, stop it, "
                "or give this run another run_dir")

    def _check_holder_without_locks(self, fh: Any) -> None:
        """No lock support: refuse only for a live process recorded on this host."""
        logger.warning("%s: the filesystem does not support locks; only a run on this host (%s) "
                       "can be detected", self.path, socket.gethostname())
        holder = _read_holder(self.path)
        pid, host = holder.get("pid"), holder.get("host")
        if host == socket.gethostname() and isinstance(pid, int) and pid != os.getpid() and _alive(pid):
            fh.close()
            raise RunDirBusyError(self._busy_message())


def _holder() -> dict[str, Any]:
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": started,
            "command": " ".join(sys.argv)[:300]}


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def set_aside(run_dir: str | Path, names: Iterable[str] = ()) -> Path | None:
    """Move an earlier run's files to ``run_dir/previous/<UTC time>/``; returns where (None: nothing).

    What moves: :data:`RUN_FILES` and ``names`` (a task's own outputs, e.g. its export); anything
    else in ``run_dir`` is not a run's and stays (``run_dir=.`` must not move a project).
    """
    run_dir = Path(run_dir)
    wanted = {*RUN_FILES, *names}
    entries = [run_dir / n for n in sorted(wanted) if (run_dir / n).exists() or (run_dir / n).is_symlink()]
    if not entries:
        return None
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    dest = run_dir / PREVIOUS_DIR / stamp
    n = 1
    while dest.exists():
        n += 1
        dest = run_dir / PREVIOUS_DIR / f"{stamp}-{n}"
    dest.mkdir(parents=True)
    for entry in entries:
        target = dest / entry.relative_to(run_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        entry.rename(target)
    return dest


def trim_metrics(path: str | Path, step: int) -> int:
    """Keep the records of ``path`` up to optimiser step ``step``; returns how many were dropped.

    A resumed run redoes the steps after its checkpoint, so records with a larger ``step`` (and a
    last line cut short by a kill) would otherwise appear twice or break the file.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            dropped += 1
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] > step:
            dropped += 1
            continue
        kept.append(line)
    if dropped:
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, path)
    return dropped


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def config_changes(stored: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted key, stored value, new value)`` for every key that differs (absent: ``None``)."""
    a = _flatten(json.loads(json.dumps(stored)))
    b = _flatten(json.loads(json.dumps(new)))
    return [(k, a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def _shown(value: Any) -> str:
    return "(absent)" if value is None else repr(value)


def _honoured(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_KEYS)


def check_resumable(stored: dict[str, Any] | None, new: dict[str, Any], checkpoint: str | Path) -> None:
    """Raise :class:`~avlearn.config.ConfigError` listing the changes that resuming cannot honour.

    ``stored``: the config saved in ``checkpoint`` (None: an old checkpoint without one, unchecked).
    """
    if stored is None:
        return
    changes = config_changes(stored, new)
    refused = [c for c in changes if not _honoured(c[0])]
    if not refused:
        return
    lines = "\n".join(f"  {k}: {_shown(old)} -> {_shown(value)}" for k, old, value in refused)
    raise ConfigError(
        f"the config differs from the one {checkpoint} was trained with:\n{lines}\n"
        "Resuming cannot honour these changes (it can: "
        f"{', '.join(k.rstrip('.') + ('.*' if k.endswith('.') else '') for k in RESUMABLE_KEYS)}). "
        "Keep the run's settings, give this run another run_dir, or pass --fresh to start over "
        "(the current run is moved to run_dir/previous/)"
    )
