"""ShardDataset in 2 processes x 2 DataLoader workers over shards of 5, 5 and 3 samples: every sample
once per epoch (the stated remainder dropped), the global index as the memory-bank index, an
epoch-seeded order and an exact mid-epoch resume."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from avlearn.data.manifest import read_manifest
from avlearn.data.shards import shard_order
from data_prep.shard import ShardOptions, write_shards
from tests.data._shards_worker import RESUME_AT, SETTINGS
from tests.data.shard_helpers import make_collection
from tests.torchrun import REPO, run_ranks

N = 13


@pytest.mark.slow
def test_two_processes_two_workers(tmp_path: Path) -> None:
    manifest = make_collection(tmp_path / "videos", N)
    write_shards(manifest, tmp_path / "shards", ShardOptions(samples_per_shard=5), progress=False)
    ranks = run_ranks(REPO / "tests" / "data" / "_shards_worker.py", tmp_path)
    ids = [r.video_id for r in read_manifest(manifest)]  # global index g holds manifest row g
    batch, world, cpv = SETTINGS["batch_size"], 2, SETTINGS["clips_per_video"]
    per_rank = N * cpv // (batch * world)  # 26 clips -> 6 batches per rank, 24 clips, 2 dropped
    orders = []
    for epoch in (0, 1):
        counts: collections.Counter[int] = collections.Counter()
        for result in ranks:
            batches = result["epochs"][epoch]
            assert len(batches) == per_rank and all(len(b["index"]) == batch for b in batches)
            for b in batches:
                counts.update(b["index"])
                assert b["video_id"] == [ids[g] for g in b["index"]]  # the memory-bank index is g
        shard_stream = [g for k in shard_order(3, 0, epoch) for g in range(5 * k, min(5 * k + 5, N))]
        # each video's 2 clips are consecutive in the stream: the 2 dropped positions are its last video
        assert counts == {g: cpv for g in shard_stream[:-1]}, (epoch, counts, shard_stream)
        orders.append([b["index"] for r in ranks for b in r["epochs"][epoch]])
    assert orders[0] != orders[1]
    for result in ranks:
        assert result["resumed"] == result["epochs"][1][RESUME_AT:]
