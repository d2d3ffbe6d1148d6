"""What every clip dataset yields on a tiny collection with a corrupt video, as plain JSON.

``tests/data/clip_records.json`` holds these records as the datasets made them before the clip maker
(``avlearn/data/clips.py``) replaced their four copies of the sampling and retry code; the test
compares today's datasets against them. Rewrite it only for a deliberate change of the samples:
``python -m tests.data.clip_records OUT.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from avlearn.data.audio import SpecConfig
from avlearn.data.config import DataConfig
from avlearn.data.dataset import AVClipDataset
from avlearn.data.decode import ClipSpec
from avlearn.data.labelled import LabelledClipDataset
from avlearn.data.manifest import read_manifest
from avlearn.data.shard_eval import ShardEvalDataset
from avlearn.data.shards import ShardDataset, shard_loader
from avlearn.data.splits import LabelledSplit
from avlearn.data.transforms import (
    AudioAugConfig,
    VideoAugConfig,
    build_audio_transform,
    build_video_transform,
)
from avlearn.train.linear_probe import AudioClipDataset
from data_prep.shard import ShardOptions, write_shards
from tests.data.shard_helpers import make_collection

SPEC = ClipSpec(num_frames=4, fps=8, size=32, audio_seconds=0.5, sample_rate=16000)


def _plain(x: Any) -> Any:
    """Numbers and strings as they are (floats to 1e-9), tensors as their shape and mean."""
    if isinstance(x, torch.Tensor):
        return {"shape": list(x.shape), "mean": round(float(x.double().mean()), 4)}
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in sorted(x.items())}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, float):
        return round(x, 9)
    return x


def _names(x: Any, root: Path) -> Any:
    """Paths relative to the collection's folder (the records must not depend on where it is)."""
    return json.loads(json.dumps(x).replace(str(root) + "/", ""))


def make_media(root: Path) -> None:
    """7 videos of 3 classes, their shards, and the same shards after video 3 was cut short."""
    manifest = make_collection(root / "videos", 7)
    write_shards(manifest, root / "shards", ShardOptions(samples_per_shard=3), progress=False)
    video = next((root / "videos").glob("*v03.mp4"))
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 3])  # corrupt after indexing: the manifest says ok
    write_shards(manifest, root / "bad_shards", ShardOptions(samples_per_shard=3), progress=False)


def records(root: Path) -> dict[str, list[Any]]:
    """Every sample (or batch) of each dataset kind over the media of :func:`make_media`."""
    rows = read_manifest(root / "videos" / "manifest.csv")
    vt = build_video_transform(VideoAugConfig(size=24), True)
    at = build_audio_transform(AudioAugConfig(), SpecConfig(), True)
    out: dict[str, list[Any]] = {}
    full = AVClipDataset(rows, SPEC, clips_per_video=2, max_av_offset=0.3, shifted_audio=0.2,
                         fps_choices=(4.0, 8.0), video_transform=vt, audio_transform=at, seed=3)
    for epoch in (0, 1):
        full.set_epoch(epoch)
        out[f"files_epoch{epoch}"] = [_plain(full[i]) for i in range(len(full))]
    for name, train in (("labelled_train", True), ("labelled_eval", False)):
        labelled = LabelledClipDataset(rows, SPEC, train=train, clips_per_video=2, num_clips=3,
                                       with_audio=not train, video_transform=vt, audio_transform=at, seed=1)
        out[name] = [_plain(labelled[i]) for i in range(len(labelled))]
    for which in ("shards", "bad_shards"):
        index = root / which / "index.json"
        ds = ShardDataset(index, SPEC, clips_per_video=2, max_av_offset=0.2, shuffle_buffer=3, streams=2,
                          video_transform=vt, seed=5)
        loader, batches = shard_loader(ds, 2, num_workers=0)
        batches.set_epoch(1)
        out[which] = [_plain(b) for b in loader]
        evaluated = ShardEvalDataset(index, SPEC, num_clips=2, with_audio=True, audio_transform=at)
        out[f"{which}_eval"] = [_plain(s) for s in evaluated]
    good = [(r.path, int(Path(r.path).name[1])) for r in rows if "v03" not in r.path]
    audio = AudioClipDataset(LabelledSplit(classes=["c0", "c1", "c2"], items=good), DataConfig(), 2)
    out["audio_probe"] = [_plain(audio[i]) for i in range(len(audio))]
    return _names(out, root)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    with tempfile.TemporaryDirectory() as tmp:
        make_media(Path(tmp))
        Path(args[0]).write_text(json.dumps(records(Path(tmp)), sort_keys=True, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
