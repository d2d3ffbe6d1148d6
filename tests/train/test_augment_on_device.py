"""Pretraining with data.augment_on=device follows the worker path's run: same batches, same losses."""

from __future__ import annotations

from pathlib import Path

import pytest

from avlearn.train.pretrain import main
from tests.train.pretrain_helpers import SYNTH_CPU, fast_overrides, read_metrics


def test_augment_on_device_trains_as_the_worker_path(synth_train: Path, tmp_path: Path) -> None:
    losses = {}
    for where in ("worker", "device"):
        run = tmp_path / where
        extra = {"objective.name": "infonce", "data.shifted_audio": 0.5, "data.augment_on": where}
        assert main(["--config", str(SYNTH_CPU), *fast_overrides(synth_train, run, epochs=1, max_steps=3,
                                                                 **extra)]) == 0
        losses[where] = [r["train/loss"] for r in read_metrics(run) if "train/loss" in r]
    assert len(losses["worker"]) == 3
    assert losses["device"] == pytest.approx(losses["worker"], rel=1e-5, abs=1e-6)
