"""Run checkpoints: written atomically, the last few kept, the newest found for resume.

A run checkpoint holds everything needed to continue exactly (model, optimiser, scheduler,
scaler, objective state such as memory banks and CMA positive sets, epoch/step, RNG states).
It is a plain dict of tensors and numbers saved with ``torch.save`` and read back with
``weights_only=True``, so loading never executes pickled code. A checkpoint is written to a temp
file, synced to disk, renamed into place and the folder synced, so a crash or power cut leaves
either the old set or the new one; a checkpoint that cannot be read (cut short by a full disk or
a copy) is set aside as ``step_N.pt.corrupt`` and the previous one resumed
(:meth:`CheckpointManager.load_newest`).
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import torch

from avlearn.models.weights import run_checkpoints

__all__ = ["CheckpointManager", "CheckpointReadError", "get_rng_state", "set_rng_state"]

logger = logging.getLogger(__name__)


class CheckpointReadError(RuntimeError):
    """A checkpoint file that cannot be read (truncated, not a checkpoint); the message names it."""


def get_rng_state() -> dict[str, Any]:
    """Python and torch RNG states, as tensors/lists so that weights-only loading accepts them."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointManager:
    """Saves ``step_<N>.pt`` files under ``directory`` and keeps the newest ``keep``."""

    def __init__(self, directory: str | Path, keep: int = 2) -> None:
        self.directory = Path(directory)
        self.keep = keep

    def list(self) -> list[tuple[int, Path]]:
        return run_checkpoints(self.directory)

    def latest(self) -> Path | None:
        found = self.list()
        return found[-1][1] if found else None

    def save(self, state: dict[str, Any], step: int) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"step_{step:08d}.pt"
        tmp = path.with_suffix(".pt.tmp")
        with tmp.open("wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)  # atomic: a crash mid-write never leaves a half checkpoint as "latest"
        _fsync_dir(self.directory)  # ... and the rename itself survives a crash
        for _, old in self.list()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def load_newest(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint that can be read, and its state (None: there is none).

        An unreadable one is renamed ``step_N.pt.corrupt`` (kept to inspect, out of the way of
        resume and rotation) with a warning naming it, and the next older one is tried.
        """
        for _, path in reversed(self.list()):
            try:
                return path, self.load(path)
            except CheckpointReadError as err:
                bad = path.with_name(path.name + ".corrupt")
                path.replace(bad)
                logger.warning("%s; renamed to %s, trying the previous checkpoint", err, bad.name)
        return None

    @staticmethod
    def load(path: str | Path) -> dict[str, Any]:
        try:
            state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # corrupt file, wrong format: say which file and what to do
            raise CheckpointReadError(
                f"cannot read checkpoint {path}: {err}. Delete it to resume from the previous one."
            ) from err
        return state


def _fsync_dir(directory: Path) -> None:
    """Sync a folder's entries (a rename in it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder
        pass
    finally:
        os.close(fd)
