"""Run by tests/data/test_shards_distributed.py under torchrun: one rank's batches of ShardDataset
(2 DataLoader workers) for two epochs and a resume in the middle of the second."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch.distributed as dist

from tests.data.shard_helpers import epoch_batches
from tests.torchrun import worker_main

SETTINGS: dict[str, Any] = {"batch_size": 2, "num_workers": 2, "clips_per_video": 2, "shuffle_buffer": 3,
                            "max_av_offset": 0.2}
RESUME_AT = 3


def _summary(batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"index": b["index"].tolist(), "video_id": b["video_id"], "video_sum": b["video"].sum().item(),
             "audio_sum": b["audio"].sum().item()} for b in batches]


def run() -> dict[str, Any]:
    rank, world = dist.get_rank(), dist.get_world_size()
    index = Path(sys.argv[1]) / "shards" / "index.json"
    layout = {"rank": rank, "world": world, **SETTINGS}
    epochs = {e: _summary(epoch_batches(index, epoch=e, **layout)) for e in (0, 1)}
    resumed = _summary(epoch_batches(index, epoch=1, skip=RESUME_AT, **layout))
    return {"rank": rank, "epochs": epochs, "resumed": resumed}


if __name__ == "__main__":
    worker_main(run)
