"""``avlearn localize`` streams a video: one pass per frame rate, bounded chunks, the same output as
decoding the whole video at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from avlearn.data.decode import read_audio
from avlearn.localization import video as V
from avlearn.localization.inputs import ModelInput, normalize_video
from avlearn.localization.overlay import OverlayWriter, normalize_maps, write_overlay_video
from avlearn.media import write_av
from avlearn.models.registry import ModelConfig, build_av_model

FPS, SECONDS, SR = 10.0, 2.0, 16000
H, W = 46, 66
INP = ModelInput(num_frames=4, fps=8.0, size=32, audio_seconds=1.0, sample_rate=SR)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s at 10 fps (keyframe every 7 frames: windows fall between keyframes), a moving box, a tone."""
    n = int(FPS * SECONDS)
    rng = np.random.default_rng(0)
    frames = rng.integers(60, 120, size=(n, H, W, 3), dtype=np.uint8)
    for i in range(n):
        frames[i, 10:26, 2 * i : 2 * i + 16] = (230, 40, 40)
    audio = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(SR * SECONDS)) / SR).astype(np.float32)
    return write_av(tmp_path_factory.mktemp("video") / "clip.mp4", frames, FPS, audio, SR, gop=7)


@pytest.mark.parametrize(("start", "fps", "size"), [(0.0, 10.0, None), (0.35, 8.0, 32), (0.0, 25.0, 20),
                                                     (1.2, 16.0, None)])
def test_streamed_frames_are_the_decoders(clip: Path, start: float, fps: float, size: int | None) -> None:
    """Same frames (nearest, ties, past the end) and pixels as a clip decoded at once."""
    n = int((SECONDS - start) * fps) + 3  # 3 past the end: the last frame repeats
    expected = V.uint8_frames(str(clip), start, fps, size, 0, n).numpy()
    streamed = np.stack(list(V.stream_frames(str(clip), start + np.arange(n) / fps, size)))
    np.testing.assert_array_equal(streamed, expected)


def test_frames_come_in_chunks_of_bounded_size() -> None:
    frames = [np.full((4, 5, 3), i, dtype=np.uint8) for i in range(10)]
    chunks = list(V.chunk_frames(iter(frames), max_bytes=3 * frames[0].nbytes))
    assert [len(c) for c in chunks] == [3, 3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(chunks), np.stack(frames))
    assert [len(c) for c in V.chunk_frames(iter(frames), max_bytes=1)] == [1] * 10  # at least a frame
    assert [len(c) for c in V.chunk_frames(iter(frames), max_frames=4)] == [4, 4, 2]


def test_windows_hold_one_window_and_read_the_stream_lazily() -> None:
    pulled: list[int] = []

    def frames() -> Iterator[np.ndarray]:
        for i in range(10):
            pulled.append(i)
            yield np.full((2, 2, 3), i, dtype=np.uint8)

    windows = V.FrameWindows(frames(), ModelInput(mean=None, std=None))
    for first in V.window_starts(10, 4):  # 0, 4, 6: the last one overlaps
        got = windows(first, 4)
        assert got.shape == (3, 4, 2, 2)
        assert torch.equal(got[0, :, 0, 0] * 255, torch.arange(first, first + 4).float())
        assert len(windows.buffer) == 4 and len(pulled) == first + 4  # nothing read ahead
    with pytest.raises(ValueError, match="in order"):
        windows(2, 4)


@pytest.fixture(scope="module")
def model() -> V.Loaded:
    torch.manual_seed(0)
    cfg = ModelConfig(video_arch="r2plus1d_tiny", audio_arch="avid_spec_cnn9_tiny", embed_dim=16)
    return build_av_model(cfg).eval(), INP, None


def _whole_video_maps(clip: Path, loaded: V.Loaded, total: int) -> torch.Tensor:
    """The maps as before streaming: every model frame decoded in one clip, windows sliced from it."""
    model, inp, learned = loaded
    frames = V.uint8_frames(str(clip), 0.0, inp.fps, inp.size, 0, total)
    video = normalize_video(frames.permute(3, 0, 1, 2).float() / 255, inp)

    def audio_at(t: float) -> torch.Tensor:
        return read_audio(str(clip), inp.audio_start(t), inp.audio_seconds, inp.sample_rate)

    return V.localize_frames(model, video, audio_at, inp, batch_size=2, learned=learned)


def test_localize_streams_in_chunks_and_writes_what_the_whole_video_gives(
    clip: Path, model: V.Loaded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overlay frames reach the writer at most 3 at a time, and the MP4 is byte for byte the one
    written from the whole decoded video and the maps of the whole decoded video."""
    sizes: list[int] = []
    add = OverlayWriter.add

    def counted(self: OverlayWriter, frames: np.ndarray, maps: np.ndarray) -> None:
        sizes.append(len(frames))
        add(self, frames, maps)

    monkeypatch.setattr(V, "_CHUNK_BYTES", 3 * H * W * 3)
    monkeypatch.setattr(OverlayWriter, "add", counted)
    out = tmp_path / "streamed.mp4"
    V.localize_video(str(clip), out, model, opts=V.OverlayOptions(batch_size=2, progress=False))
    total = int(FPS * SECONDS)
    assert sum(sizes) == total and max(sizes) == 3

    maps = _whole_video_maps(clip, model, int(INP.fps * SECONDS))
    idx = np.clip(np.round(np.arange(total) / FPS * INP.fps).astype(np.int64), 0, len(maps) - 1)
    frames = V.uint8_frames(str(clip), 0.0, FPS, None, 0, total).numpy()
    audio = read_audio(str(clip), 0.0, SECONDS, SR).numpy()
    heat = normalize_maps(maps.numpy()[idx])
    whole = write_overlay_video(frames, heat, FPS, audio, SR, tmp_path / "whole.mp4")
    assert out.read_bytes() == whole.read_bytes()
