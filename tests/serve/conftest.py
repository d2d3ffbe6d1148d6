"""A model built by hand whose map is known, and small videos for it.

The "colour-hearing" model: every grid location's feature is ``(R - G, B - G, 0.05)`` (mean over
an 8x8 patch), the audio embedding ``(low - high, high - low, 0)`` where ``low`` / ``high`` are
the loudest spectrogram bin below / above the middle frequency bin. A low tone therefore points
at red, a high tone at blue, and the post hoc cosine map peaks on the red box for the low tone
and on the blue box for the high one: the page's peak can be checked against a known place.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avlearn.localization.inputs import ModelInput
from avlearn.media import write_av
from avlearn.models.audio import AudioOutput
from avlearn.models.av import AVModel
from avlearn.models.checkpoint import save_encoders
from avlearn.models.registry import ModelConfig, build_av_model
from avlearn.models.video import VideoOutput
from avlearn.serve.session import Explorer

FPS, SECONDS, SR = 10.0, 2.0, 16000
H, W = 96, 128
RED = (slice(24, 56), slice(8, 40))  # rows, columns of the red box
BLUE = (slice(24, 56), slice(88, 120))
LOW_HZ, HIGH_HZ = 300.0, 6000.0
INPUT = ModelInput(num_frames=4, fps=8.0, size=96, audio_seconds=0.5, mean=None, std=None)


class ColourVideo(nn.Module):
    """``(B, 3, T, H, W)`` in [0, 1] -> grid ``(B, 3, T, H/8, W/8)`` of ``(R - G, B - G, 0.05)``."""

    grid_dim = out_dim = 3

    def forward(self, video: Tensor, return_stages: bool = False) -> VideoOutput:
        pooled = F.avg_pool3d(video, (1, 8, 8))
        r, g, b = pooled.unbind(1)
        grid = torch.stack([r - g, b - g, torch.full_like(r, 0.05)], dim=1)
        return VideoOutput(emb=grid.mean(dim=(2, 3, 4)), grid=grid)


class PitchAudio(nn.Module):
    """``(B, 1, F, T)`` -> ``(low - high, high - low, 0)`` of the loudest bin in each half."""

    out_dim = 3

    def forward(self, spec: Tensor, return_stages: bool = False) -> AudioOutput:
        bins = spec.amax(dim=3)[:, 0]  # (B, F)
        half = bins.shape[1] // 2
        low, high = bins[:, :half].amax(1), bins[:, half:].amax(1)
        emb = torch.stack([low - high, high - low, torch.zeros_like(low)], dim=1)
        return AudioOutput(emb=emb, grid=spec)


class Identity(nn.Module):
    out_dim = 3

    def forward(self, x: Tensor, normalize: bool = True) -> Tensor:
        return F.normalize(x, dim=-1) if normalize else x


def colour_model() -> AVModel:
    return AVModel(ColourVideo(), PitchAudio(), Identity(), Identity()).eval()


def write_video(path: Path, tone_hz: float | None) -> Path:
    """A red box left, a blue box right on grey; a tone of ``tone_hz`` (``None``: no audio track)."""
    frames = np.full((int(FPS * SECONDS), H, W, 3), 128, dtype=np.uint8)
    frames[:, RED[0], RED[1]] = (220, 30, 30)
    frames[:, BLUE[0], BLUE[1]] = (30, 30, 220)
    if tone_hz is None:
        return write_av(path, frames, FPS)
    n = int(SR * SECONDS)
    audio = 0.3 * np.sin(2 * np.pi * tone_hz * np.arange(n) / SR).astype(np.float32)
    return write_av(path, frames, FPS, audio, SR)


def inside(box: tuple[slice, slice], xy: tuple[int, int]) -> bool:
    rows, cols = box
    return rows.start <= xy[1] < rows.stop and cols.start <= xy[0] < cols.stop


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``low.mp4`` (300 Hz), ``high.mp4`` (6 kHz), ``mute.mp4`` (no audio), ``notes/readme.txt``."""
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "low.mp4", LOW_HZ)
    write_video(root / "high.mp4", HIGH_HZ)
    write_video(root / "mute.mp4", None)
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a video")
    return root


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real (random) model saved as ``avlearn localize`` and ``avlearn serve`` read it."""
    torch.manual_seed(0)
    cfg = ModelConfig(video_arch="r2plus1d_tiny", audio_arch="avid_spec_cnn9_tiny", embed_dim=16)
    return save_encoders(build_av_model(cfg), tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", cfg)


@pytest.fixture
def explorer(videos: Path, tmp_path: Path) -> Iterator[Explorer]:
    temp = tmp_path / "server-temp"
    temp.mkdir()
    ex = Explorer((colour_model(), INPUT, None), videos, temp)
    yield ex
    ex.close()
