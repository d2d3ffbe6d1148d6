"""Run checkpoints: written atomically, the last few kept, the newest found for resume.

A run checkpoint holds everything needed to continue exactly (model, optimiser, scheduler,
scaler, objective state such as memory banks and CMA positive sets, epoch/step, RNG states).
It is a plain dict of tensors and numbers saved with ``torch.save`` and read back with
``weights_only=True``, so loading never executes pickled code.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import torch

from avlearn.models.weights import run_checkpoints

__all__ = ["CheckpointManager", "get_rng_state", "set_rng_state"]


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
        torch.save(state, tmp)
        os.replace(tmp, path)  # atomic: a crash mid-write never leaves a half checkpoint as "latest"
        for _, old in self.list()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    @staticmethod
    def load(path: str | Path) -> dict[str, Any]:
        try:
            state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # corrupt file, wrong format: say which file and what to do
            raise RuntimeError(
                f"cannot read checkpoint {path}: {err}. Delete it to resume from the previous one."
            ) from err
        return state
