"""BatchAugment on the CPU and on a GPU against the worker chain, on synthetic clips (no media packages:
benchmarks/gpu collects this file on machines without PyAV)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from avlearn.data.audio import SpecConfig
from avlearn.data.device_aug import BatchAugment, DeferredAudio, DeferredVideo
from avlearn.data.transforms import (
    AudioAugConfig,
    VideoAugConfig,
    build_audio_transform,
    build_video_transform,
    make_generator,
)

VIDEO = VideoAugConfig(size=24, hue_mode="yiq", fused=True, color_jitter_p=0.7, grayscale_p=0.4)
AUDIO = AudioAugConfig(volume=(0.5, 1.5), time_masks=2, time_mask_width=10, freq_masks=1)
SPEC = SpecConfig()


def _batch(n: int = 8) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Raw clips with the draws of generators 0..n-1, and what the worker chain makes of them."""
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (n, 4, 40, 56, 3), dtype=torch.uint8)  # decoder layout (T, H, W, C)
    videos = frames.permute(0, 4, 1, 2, 3)  # (B, 3, T, H, W) views, as decode_clip's uint8 frames
    wavs = torch.randn(n, 8000) * 0.1
    video_tf = build_video_transform(VIDEO, train=True)
    audio_tf = build_audio_transform(AUDIO, SPEC, train=True)
    deferred_v, deferred_a = DeferredVideo(VIDEO), DeferredAudio(AUDIO, SPEC)
    want_v, want_a, params, audio_params = [], [], [], []
    for i in range(n):
        g = make_generator(i)
        want_v.append(video_tf(videos[i], g))
        want_a.append(audio_tf(wavs[i], g))
        g = make_generator(i)
        params.append(deferred_v.draw_params(videos[i], g))
        audio_params.append(deferred_a.draw_params(wavs[i], g))
    collated = {k: torch.stack([p[k] for p in audio_params]) for k in audio_params[0]}
    raw = {"video": videos, "video_aug": torch.stack(params), "audio": wavs, "audio_aug": collated}
    return raw, torch.stack(want_v), torch.stack(want_a)


def test_batch_augment_on_cpu_equals_the_worker_chain() -> None:
    raw, want_v, want_a = _batch()
    got = BatchAugment(VIDEO, AUDIO, SPEC)(raw, torch.device("cpu"))
    torch.testing.assert_close(got["video"], want_v, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(got["audio"], want_a, atol=2e-4, rtol=1e-5)


@pytest.mark.gpu
def test_batch_augment_on_cuda_is_close_to_the_worker_chain() -> None:
    """On a GPU the 8-bit resize runs in float: within ~1/255 before normalisation (std ~0.22)."""
    if not torch.cuda.is_available():
        pytest.skip("needs cuda")
    raw, want_v, want_a = _batch()
    got = BatchAugment(VIDEO, AUDIO, SPEC).to("cuda")(raw, torch.device("cuda"))
    assert got["video"].is_cuda and got["audio"].is_cuda
    diff = (got["video"].cpu() - want_v).abs()
    assert float(diff.max()) < 2.5 / 255 / 0.216989, float(diff.max())
    assert float(diff.mean()) < 0.5 / 255 / 0.216989, float(diff.mean())
    torch.testing.assert_close(got["audio"].cpu(), want_a, atol=2e-3, rtol=1e-4)
