"""A tiny collection of uneven clips for the shard tests, and what one epoch of a loader yields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from avlearn.data.decode import ClipSpec
from avlearn.data.shards import ShardDataset, shard_loader
from avlearn.media import write_av
from data_prep.index import index_collection

SR = 16000
SPEC = ClipSpec(num_frames=4, fps=8, size=32, audio_seconds=0.5, sample_rate=SR)


def make_collection(root: Path, num_videos: int) -> Path:
    """``num_videos`` 48x32 clips of 1-2 s, each with its own grey level and tone, 3 labels; the manifest."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(num_videos):
        n = 25 + 5 * (i % 6)
        video = np.full((n, 32, 48, 3), 10 + 17 * i, np.uint8)
        video[:, :, :4] = (np.arange(n) * 7 % 255)[:, None, None, None]  # frames differ
        t = np.arange(round(n / 25 * SR)) / SR
        audio = (0.2 * np.sin(2 * np.pi * (200 + 40 * i) * t)).astype(np.float32)
        write_av(root / f"c{i % 3}_v{i:02d}.mp4", video, 25, audio, SR)
    manifest = root / "manifest.csv"
    index_collection(root, manifest, workers=1, progress=False)
    text = manifest.read_text().splitlines()  # labels from the names: c0, c1, c2
    header = text[0].split(",")
    col, path_col = header.index("label"), header.index("path")
    rows = [line.split(",") for line in text[1:]]
    for row in rows:
        row[col] = Path(row[path_col]).name[:2]
    manifest.write_text("\n".join([text[0], *(",".join(r) for r in rows)]) + "\n")
    return manifest


def epoch_batches(index: str | Path, *, epoch: int, skip: int = 0, batch_size: int = 2, rank: int = 0,
                  world: int = 1, num_workers: int = 2, **kwargs: Any) -> list[dict[str, Any]]:
    """The batches of one epoch (from batch ``skip`` on) of a fresh loader."""
    ds = ShardDataset(index, SPEC, **kwargs)
    loader, batches = shard_loader(ds, batch_size, rank=rank, world=world, num_workers=num_workers)
    batches.set_epoch(epoch, skip)
    return list(loader)
