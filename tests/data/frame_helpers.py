"""A tiny collection of textured clips (JPEG has something to lose) and its frame shards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from avlearn.media import write_av
from data_prep.frame_shard import FRAMES_FORMAT, FrameOptions, describe, head, load_frames
from data_prep.index import index_collection
from data_prep.shard import Packing, ShardOptions, write_shards

SIZE = 48  # the clips' short side: the frames are stored at it (no scaling)


def textured_clip(i: int, n: int) -> np.ndarray:
    """``(n, 48, 64, 3)`` uint8 gradients that move and differ per clip."""
    y, x = np.mgrid[0:SIZE, 0:64]
    frames = [np.stack([(x * 4 + t * 3 + 40 * i) % 256, (y * 5 + t * 2) % 256,
                        ((x + y) * 2 + t * 5) % 256], -1)
              for t in range(n)]
    return np.stack(frames).astype(np.uint8)


def make_collection(root: Path, rates: tuple[int, ...] = (16000, 16000, 16000)) -> Path:
    """One 1.6-2 s 25 fps clip per audio sample rate in ``rates`` (a tone and noise); the manifest."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, sr in enumerate(rates):
        n = 40 + 5 * i
        t = np.arange(round(n / 25 * sr)) / sr
        audio = 0.2 * np.sin(2 * np.pi * (300 + 50 * i) * t) + 0.05 * rng.standard_normal(t.size)
        write_av(root / f"c{i % 2}_v{i:02d}.mp4", textured_clip(i, n), 25, audio.astype(np.float32), sr)
    manifest = root / "manifest.csv"
    index_collection(root, manifest, workers=1, progress=False)
    lines = manifest.read_text().splitlines()  # labels from the names: c0, c1
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:]]
    for row in rows:
        row[header.index("label")] = Path(row[header.index("path")]).name[:2]
    manifest.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")
    return manifest


def frames_packing(**options: Any) -> Packing:
    opts = FrameOptions(**{"decode_size": SIZE, **options})
    return Packing(FRAMES_FORMAT, load_frames, opts, head(opts), describe)


def write_frames(manifest: Path, out: Path, samples_per_shard: int = 2, **options: Any) -> dict[str, Any]:
    return write_shards(manifest, out, ShardOptions(samples_per_shard=samples_per_shard), progress=False,
                        packing=frames_packing(**options))
