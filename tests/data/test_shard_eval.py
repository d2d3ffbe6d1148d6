"""``ShardEvalDataset`` gives the evaluation clips of ``LabelledClipDataset(train=False)`` over the same
videos: bit-identical tensors, labels, starts and video-level predictions, with 0 or 2 workers; each
clip once; a corrupt member is counted and named; labels outside the classes are refused."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

from avlearn.data.dataset import av_collate
from avlearn.data.labelled import LabelledClipDataset
from avlearn.data.shard_eval import ShardEvalDataset, worker_range
from avlearn.eval.classification import video_level
from data_prep.shard import ShardOptions, write_shards
from tests.data.shard_helpers import SPEC, make_collection

N, K = 7, 3  # shards of 3, 3, 1 videos; 3 clips per video
CLASSES = {"c0": 0, "c1": 1, "c2": 2}


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shard_eval")
    manifest = make_collection(root / "videos", N)
    write_shards(manifest, root / "clean", ShardOptions(samples_per_shard=3), progress=False)
    rows = list(csv.DictReader(manifest.open()))
    video = Path(rows[3]["path"])
    video = video if video.is_absolute() else root / "videos" / video
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 3])  # member 3 cut short (the indexer saw the intact file)
    write_shards(manifest, root / "corrupt", ShardOptions(samples_per_shard=3), progress=False)
    video.write_bytes(data)
    return {"manifest": manifest, "clean": root / "clean" / "index.json",
            "corrupt": root / "corrupt" / "index.json"}


def _samples(dataset: Any, workers: int) -> dict[tuple[int, int], dict[str, Any]]:
    """Every sample, keyed by ``(video_index, clip_index)`` (the order depends on the workers)."""
    loader = DataLoader(dataset, batch_size=2, num_workers=workers, collate_fn=av_collate)
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for batch in loader:
        for j in range(len(batch["label"])):
            key = (int(batch["video_index"][j]), int(batch["clip_index"][j]))
            assert key not in out, f"{key} came twice"
            out[key] = {"video": batch["video"][j], "label": int(batch["label"][j]),
                        "start": float(batch["start"][j]), "video_id": batch["video_id"][j],
                        "skipped": int(batch["skipped"][j])}
    return out


def test_worker_ranges_cover_every_index_once() -> None:
    for n, workers in ((7, 2), (7, 3), (2, 4), (10, 1)):
        covered = [i for w in range(workers) for i in range(*worker_range(n, w, workers))]
        assert covered == list(range(n))


@pytest.mark.parametrize("workers", [0, 2])
def test_equals_labelled_clips_over_files(shards: dict[str, Path], workers: int) -> None:
    files = LabelledClipDataset(shards["manifest"], SPEC, class_to_idx=CLASSES, train=False, num_clips=K)
    from_shards = ShardEvalDataset(shards["clean"], SPEC, class_to_idx=CLASSES, num_clips=K)
    assert len(from_shards) == len(files) == N * K and from_shards.class_names == files.class_names
    a, b = _samples(files, 0), _samples(from_shards, workers)
    assert sorted(a) == sorted(b) == [(v, k) for v in range(N) for k in range(K)]
    for key, want in a.items():
        got = b[key]
        assert torch.equal(got["video"], want["video"]), key
        assert (got["label"], got["start"], got["video_id"], got["skipped"]) == \
               (want["label"], want["start"], want["video_id"], 0), key
    assert len({a[(3, k)]["start"] for k in range(K)}) == K  # the clips are spread over the video
    # video-level predictions from any per-clip score agree
    order = sorted(a)
    logits = torch.stack([torch.stack([a[key]["video"].float().mean(), a[key]["video"].float().std(),
                                       torch.tensor(float(key[1]))]) for key in order])
    shard_logits = torch.stack([torch.stack([b[key]["video"].float().mean(), b[key]["video"].float().std(),
                                             torch.tensor(float(key[1]))]) for key in order])
    videos = torch.tensor([v for v, _ in order])
    labels = torch.tensor([a[key]["label"] for key in order])
    probs, video_labels = video_level(logits, videos, labels)
    shard_probs, shard_labels = video_level(shard_logits, videos,
                                            torch.tensor([b[key]["label"] for key in order]))
    assert torch.equal(probs.argmax(1), shard_probs.argmax(1)) and torch.equal(video_labels, shard_labels)


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_member_is_counted_and_replaced(shards: dict[str, Path], workers: int) -> None:
    loader = DataLoader(ShardEvalDataset(shards["corrupt"], SPEC, class_to_idx=CLASSES, num_clips=K),
                        batch_size=4, num_workers=workers, collate_fn=av_collate)
    batches = list(loader)
    rows = [(int(b["video_index"][j]), int(b["clip_index"][j]), int(b["skipped"][j]))
            for b in batches for j in range(len(b["label"]))]
    assert not any(v == 3 for v, *_ in rows)  # the corrupt video has no clips
    failures = [f for b in batches for f in b["failures"]]  # av_collate concatenates them
    assert len(failures) == K and {path.rsplit(":", 1)[1] for path, _ in failures} == {"000000003.mp4"}
    assert ".tar:" in failures[0][0]
    counted = sorted((v, k) for v, k, skipped in rows if skipped)
    if workers == 0:  # its clips are the same clips of the video before it
        assert len(rows) == N * K and counted == [(2, k) for k in range(K)]
    else:  # worker 1's range starts at video 3: no video before it, the failures come with video 4
        assert len(rows) == (N - 1) * K and counted == [(4, 0)]
        assert [skipped for v, k, skipped in rows if (v, k) == (4, 0)] == [K]


def test_labels_outside_the_classes_are_refused(shards: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="not among the classes"):
        ShardEvalDataset(shards["clean"], SPEC, class_to_idx={"c0": 0, "c1": 1}, num_clips=K)
