"""Frame shards against the file path: same clips, frames within the JPEG loss, audio within int16 PCM;
through the loader's sampler and DataLoader workers; bad records replaced and counted; clear errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from avlearn.config import ConfigError
from avlearn.data.config import DataConfig, build_train_dataset
from avlearn.data.dataset import AVClipDataset, FailureTracker
from avlearn.data.decode import ClipSpec
from avlearn.data.frame_shards import FrameShardDataset, decode_jpegs
from avlearn.data.loader import build_loader
from avlearn.data.transforms import KINETICS_STD, VideoAugConfig
from tests.data.frame_helpers import SIZE, make_collection, write_frames

SPEC = ClipSpec(num_frames=4, fps=8, size=SIZE, audio_seconds=0.5, sample_rate=16000)
JPEG_MEAN_BOUND = 0.02  # mean |frames - file frames| in [0, 1] at quality 90 (measured 0.009-0.013)
PCM_BOUND = 1 / 32768 + 1e-5  # int16 rounding (1/65536) plus the AAC decoder's state across a seek (~1e-6)
SETTINGS: dict[str, Any] = {"seed": 3, "max_av_offset": 0.2, "shifted_audio": 0.3, "fps_choices": [4.0, 8.0]}


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Manifest of 3 clips with 16 kHz audio and their frame shards (2 shards)."""
    root = tmp_path_factory.mktemp("frames")
    manifest = make_collection(root / "clips")
    write_frames(manifest, root / "frames")
    return manifest, root / "frames" / "index.json"


def _pair(collection: tuple[Path, Path], **settings: Any) -> tuple[AVClipDataset, FrameShardDataset]:
    manifest, index = collection
    return (AVClipDataset(manifest, SPEC, **settings),
            FrameShardDataset(index, SPEC, **settings))


def test_samples_equal_the_file_path_within_jpeg_and_pcm(collection: tuple[Path, Path]) -> None:
    files, frames = _pair(collection, clips_per_video=2, **SETTINGS)
    assert len(frames) == len(files) == 6
    frames.set_epoch(1)
    files.set_epoch(1)
    for i in range(len(files)):
        a, b = files[i], frames[i]
        for key in ("index", "video_id", "start", "av_offset", "shift", "audio_padded", "label"):
            assert a[key] == b[key], key
        assert a["video"].shape == b["video"].shape == (3, 4, SIZE, 64)
        assert (a["video"] - b["video"]).abs().mean() < JPEG_MEAN_BOUND
        assert (a["audio"] - b["audio"]).abs().max() <= PCM_BOUND
        assert (a["audio_shifted"] - b["audio_shifted"]).abs().max() <= PCM_BOUND


def test_training_batches_through_workers_match_the_file_path(collection: tuple[Path, Path]) -> None:
    manifest, index = collection
    base = DataConfig(manifest=str(manifest), shards=str(index), num_frames=4, fps=8, decode_size=SIZE,
                      audio_seconds=0.5, video_aug=VideoAugConfig(size=32), max_av_offset=0.2, seed=5)
    batches = []
    for cfg in (base, dataclasses.replace(base, source="frames")):
        dataset = build_train_dataset(cfg)
        loader, order = build_loader(dataset, batch_size=3, seed=cfg.seed, num_workers=2)
        dataset.set_epoch(2)
        order.set_epoch(2)
        batches.append(next(iter(loader)))
    a, b = batches
    assert a["index"].tolist() == b["index"].tolist() and a["start"].tolist() == b["start"].tolist()
    assert a["video"].shape == b["video"].shape == (3, 3, 4, 32, 32)
    std = torch.tensor(KINETICS_STD)[:, None, None, None]  # back to [0, 1] units: same crops, flips, jitter
    assert ((a["video"] - b["video"]) * std).abs().mean() < JPEG_MEAN_BOUND
    assert (a["audio"] - b["audio"]).abs().mean() < 1e-2  # log spectrograms: PCM rounding in quiet bins


def test_a_corrupt_record_is_replaced_named_and_counted(collection: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    _, index = collection
    for path in index.parent.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    entry = json.loads((tmp_path / "index.json").read_text())["shards"][0]
    offset, size = entry["samples"][1]["jpgs"]
    with open(tmp_path / entry["name"], "r+b") as fh:  # sample 1's JPEGs become zeros
        fh.seek(offset)
        fh.write(bytes(size))
    ds = FrameShardDataset(tmp_path / "index.json", SPEC, seed=0)
    sample = ds[1]
    assert sample["skipped"] == 1 and sample["index"] != 1
    (path, reason), = sample["failures"]
    assert path.endswith(f"{entry['name']}:000000001") and "frames unreadable" in reason
    tracker = FailureTracker()
    tracker.update({"skipped": torch.tensor([sample["skipped"]]), "failures": sample["failures"]})
    assert tracker.bad_paths == [path]


def test_decode_jpegs_takes_a_batch(collection: tuple[Path, Path]) -> None:
    ds = FrameShardDataset(collection[1], SPEC)
    name = ds.videos[0].path
    rec = ds.reader.record(name)
    frames = decode_jpegs(ds.reader.jpegs(name, rec, torch.arange(3).numpy()))
    assert frames.shape == (3, SIZE, 64, 3) and frames.dtype == torch.uint8
    assert rec.times.tolist()[:3] == pytest.approx([0.0, 0.04, 0.08])


def test_mismatched_settings_and_layouts_are_refused(collection: tuple[Path, Path], tmp_path: Path) -> None:
    index = collection[1]
    with pytest.raises(ValueError, match="decode size 48.*--decode-size 64"):
        FrameShardDataset(index, dataclasses.replace(SPEC, size=64))
    with pytest.raises(ValueError, match="16000 Hz.*data.sample_rate=16000"):
        FrameShardDataset(index, dataclasses.replace(SPEC, sample_rate=8000))
    other = tmp_path / "index.json"
    other.write_text(json.dumps({"format": "avlearn-shards/1", "complete": True}))
    with pytest.raises(ValueError, match="not a complete frame shard index"):
        FrameShardDataset(other, SPEC)
    cfg = DataConfig(source="frames", decode_size=SIZE, video_aug=VideoAugConfig(size=32))
    with pytest.raises(ConfigError, match="--format frames"):
        build_train_dataset(cfg)
