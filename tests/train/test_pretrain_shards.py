"""Pretraining reads shards as it reads files (``data.source=shards``): it trains, the memory bank is
indexed by the global index, and a run resumed mid-epoch matches the uninterrupted one exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avlearn.train.checkpoint import CheckpointManager
from avlearn.train.pretrain import main
from data_prep.shard import ShardOptions, write_shards
from tests.train.pretrain_helpers import SYNTH_CPU, fast_overrides, read_metrics


@pytest.fixture(scope="module")
def synth_shards(synth_train: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 36 training videos in shards of 10, 10, 10 and 6."""
    out = tmp_path_factory.mktemp("synth_shards")
    write_shards(synth_train, out, ShardOptions(samples_per_shard=10), progress=False)
    return out / "index.json"


def _run(manifest: Path, shards: Path, run_dir: Path, *args: str, **extra: object) -> int:
    extra = {"data.source": "shards", "data.shards": str(shards), "data.num_workers": 2,
             "data.shuffle_buffer": 6, **extra}
    return main(["--config", str(SYNTH_CPU), *args, *fast_overrides(manifest, run_dir, **extra)])


def test_resume_from_shards_matches_uninterrupted(synth_train: Path, synth_shards: Path,
                                                  tmp_path: Path) -> None:
    k = 3  # 36 clips / batch 8 = 4 steps per epoch (4 clips dropped): resume mid-epoch 0, end in epoch 1
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = {"epochs": 3, "train.ckpt_every_steps": 100}
    assert _run(synth_train, synth_shards, straight, max_steps=2 * k, **common) == 0
    assert _run(synth_train, synth_shards, split, max_steps=k, **common) == 0
    assert _run(synth_train, synth_shards, split, "--resume", max_steps=2 * k, **common) == 0

    resumed = [r for r in read_metrics(split) if r.get("event") == "resume"]
    assert len(resumed) == 1 and resumed[0]["step"] == k and resumed[0]["batch_in_epoch"] == k
    ends = [r for r in read_metrics(straight) if r.get("event") == "epoch_end"]
    assert ends and "no decode failures in 32 clips" in ends[0]["data"]
    a = CheckpointManager.load(CheckpointManager(straight / "checkpoints").latest())  # type: ignore[arg-type]
    b = CheckpointManager.load(CheckpointManager(split / "checkpoints").latest())  # type: ignore[arg-type]
    assert a["step"] == b["step"] == 2 * k
    for part in ("model", "objective"):
        for key in a[part]:
            torch.testing.assert_close(a[part][key], b[part][key], rtol=1e-5, atol=1e-6, msg=f"{part}.{key}")
    loss_a = [r["train/loss"] for r in read_metrics(straight) if "train/loss" in r]
    loss_b = [r["train/loss"] for r in read_metrics(split) if "train/loss" in r]
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
