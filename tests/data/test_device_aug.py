"""data.augment_on: device gives the batches of the worker path (same seed, same draws): decoded media on CPU.

The same on a GPU, without media files: tests/data/test_device_aug_cuda.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from avlearn.config import InvalidValue
from avlearn.data.audio import SpecConfig
from avlearn.data.config import DataConfig, batch_augment, build_dataset
from avlearn.data.dataset import AVClipDataset, av_collate
from avlearn.data.decode import ClipSpec
from avlearn.data.device_aug import BatchAugment, DeferredAudio, DeferredVideo
from avlearn.data.manifest import VideoInfo, read_manifest
from avlearn.data.transforms import (
    AudioAugConfig,
    VideoAugConfig,
    build_audio_transform,
    build_video_transform,
)
from avlearn.media import write_av
from data_prep.index import index_collection

SR = 16000
SPEC = ClipSpec(num_frames=4, fps=8, size=32, audio_seconds=0.5, sample_rate=SR)
AUDIO = AudioAugConfig(volume=(0.5, 1.5), time_masks=2, time_mask_width=10, freq_masks=1, freq_mask_width=30)
SPEC_CFG = SpecConfig(sample_rate=SR)
VIDEO_CFGS = {
    "fused": VideoAugConfig(size=24, hue_mode="yiq", fused=True, color_jitter_p=0.7, grayscale_p=0.4),
    "hsv": VideoAugConfig(size=24, color_jitter_p=0.7, grayscale_p=0.4),
}


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> list[VideoInfo]:
    """Three 2 s clips, landscape and portrait (so the undecoded frames of a batch differ in size)."""
    root = tmp_path_factory.mktemp("devaug")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(48, 64), (64, 48), (48, 64)]):
        video = rng.integers(0, 256, (50, h, w, 3), dtype=np.uint8)
        t = np.arange(2 * SR) / SR
        audio = (0.3 * np.sin(2 * np.pi * (300 + 100 * i) * t) * np.linspace(0.2, 1, t.size))
        audio = audio.astype(np.float32)
        write_av(root / f"v{i}.mp4", video, 25, audio, SR)
    index_collection(root, root / "manifest.csv", workers=1, progress=False)
    return read_manifest(root / "manifest.csv")


def _batches(rows: list[VideoInfo], video_cfg: VideoAugConfig, n: int = 12,
             seed: int = 7) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same samples (same seed) through the worker chain, and drawn-only for the device."""
    common: dict[str, Any] = {"clips_per_video": 4, "seed": seed, "shifted_audio": 0.4}
    worker = AVClipDataset(rows, SPEC, video_transform=build_video_transform(video_cfg, train=True),
                           audio_transform=build_audio_transform(AUDIO, SPEC_CFG, train=True), **common)
    device = AVClipDataset(rows, SPEC, video_transform=DeferredVideo(video_cfg),  # type: ignore[arg-type]
                           audio_transform=DeferredAudio(AUDIO, SPEC_CFG), **common)  # type: ignore[arg-type]
    return av_collate([worker[i] for i in range(n)]), av_collate([device[i] for i in range(n)])


@pytest.mark.parametrize("name", sorted(VIDEO_CFGS))
def test_device_batch_equals_the_worker_batch(rows: list[VideoInfo], name: str) -> None:
    want, raw = _batches(rows, VIDEO_CFGS[name])
    height, width = raw["video"].shape[-2:]  # padded to the larger of 32 x 43 and 43 x 32
    assert raw["video"].dtype == torch.uint8 and height == width > 32
    assert raw["video_aug"].shape == (12, 15)
    got = BatchAugment(VIDEO_CFGS[name], AUDIO, SPEC_CFG)(raw, torch.device("cpu"))
    assert got["video"].shape == want["video"].shape == (12, 3, 4, 24, 24)
    torch.testing.assert_close(got["video"], want["video"], atol=2e-5, rtol=1e-5)
    for key in ("audio", "audio_shifted"):
        assert got[key].shape == want[key].shape == (12, 1, 257, 50)
        torch.testing.assert_close(got[key], want[key], atol=2e-4, rtol=1e-5)
    torch.testing.assert_close(got["start"], want["start"])
    # the draws vary: some clips are flipped, jittered, greyed, masked, and some are not
    flags = raw["video_aug"][:, [4, 5, 14]]
    assert (flags.sum(0) > 0).all() and (flags.sum(0) < 12).all()
    assert not raw["audio_aug"]["time_keep"].all()


def test_batch_augment_keeps_each_clips_draws(rows: list[VideoInfo]) -> None:
    """Clips swapped in the batch come out swapped: the draws travel with their clip."""
    _, raw = _batches(rows, VIDEO_CFGS["fused"], n=4)
    augment = BatchAugment(VIDEO_CFGS["fused"], AUDIO, SPEC_CFG)
    order = torch.tensor([2, 0, 3, 1])
    swapped = {**raw, "video": raw["video"][order], "video_aug": raw["video_aug"][order],
               "audio": raw["audio"][order], "audio_aug": {k: v[order] for k, v in raw["audio_aug"].items()}}
    swapped.pop("audio_shifted")
    a, b = augment(raw, torch.device("cpu")), augment(swapped, torch.device("cpu"))
    torch.testing.assert_close(b["video"], a["video"][order], atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(b["audio"], a["audio"][order], atol=2e-4, rtol=1e-5)


def test_data_config_builds_the_device_path(rows: list[VideoInfo], tmp_path: Path) -> None:
    cfg = DataConfig(num_frames=4, fps=8, decode_size=32, audio_seconds=0.5, sample_rate=SR,
                     video_aug=VIDEO_CFGS["fused"], spec=SPEC_CFG, augment_on="device")
    train = build_dataset(cfg, train=True, manifest=rows)
    assert train.spec.uint8_frames and "video_aug" in train[0]
    assert "video_aug" not in build_dataset(cfg, train=False, manifest=rows)[0]  # evaluation: in the worker
    assert isinstance(batch_augment(cfg), BatchAugment)
    assert batch_augment(DataConfig()) is None
    with pytest.raises(InvalidValue, match="augment_on"):
        DataConfig(augment_on="gpu")  # type: ignore[arg-type]


def test_several_clips_from_one_open_equal_one_open_each(rows: list[VideoInfo]) -> None:
    from avlearn.data.decode import decode_clip, decode_clips

    path, starts = rows[0].path, [1.2, 0.1, 0.7]
    spec = ClipSpec(num_frames=4, fps=8, size=32, audio_seconds=0.5, sample_rate=SR, uint8_frames=True)
    for clip, start in zip(decode_clips(path, starts, spec), starts, strict=True):
        alone = decode_clip(path, start, spec)
        assert clip.start == start
        assert torch.equal(clip.video, alone.video)
        # the AAC decoder keeps some overlap state across a seek: equal to ~1e-6, not bit for bit
        torch.testing.assert_close(clip.audio, alone.audio, atol=1e-4, rtol=0)
        np.testing.assert_array_equal(clip.frame_times, alone.frame_times)
