from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from avlearn.localization.overlay import (
    COLORMAPS,
    apply_colormap,
    blend,
    normalize_maps,
    write_overlay_video,
    write_strip_png,
)


def _frames(t: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


def test_colormaps_and_blend() -> None:
    for table in COLORMAPS.values():
        assert table.shape == (256, 3) and table.dtype == np.uint8
    assert tuple(apply_colormap(np.array([1.0]), "jet")[0]) == (128, 0, 0)
    frames = _frames(2, 5, 7)
    zero = blend(frames, np.zeros((2, 2, 3)))
    np.testing.assert_array_equal(zero, frames)  # transparent where the map is 0
    full = blend(frames, np.ones((2, 5, 7)), max_alpha=1.0)
    np.testing.assert_array_equal(full, np.broadcast_to(COLORMAPS["jet"][255], full.shape))
    with pytest.raises(ValueError, match="colour map"):
        apply_colormap(np.zeros(3), "viridis")
    with pytest.raises(ValueError, match="maps"):
        blend(frames, np.zeros((3, 2, 2)))


def test_normalize_maps() -> None:
    maps = np.stack([np.full((2, 2), 1.0), np.array([[1.0, 3.0], [2.0, 5.0]])])
    out = normalize_maps(maps)
    assert out.min() == 0.0 and out.max() == 1.0 and out[0].max() == 0.0
    per = normalize_maps(maps, per_frame=True)
    assert per[0].max() == 0.0 and per[1].max() == 1.0


def test_overlay_video_odd_size_keeps_duration_and_audio(tmp_path: Path) -> None:
    t, h, w, fps, sr = 10, 61, 97, 10.0, 16000
    audio = 0.3 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr).astype(np.float32)
    maps = np.random.default_rng(1).random((t, 4, 6))
    out = write_overlay_video(_frames(t, h, w), maps, fps, audio, sr, tmp_path / "o.mp4")
    with av.open(str(out)) as c:
        assert c.streams.audio, "no audio track"
        vs = c.streams.video[0]
        frames = list(c.decode(video=0))
        assert len(frames) == t
        assert (frames[0].width, frames[0].height) == (w + 1, h + 1)
        last = float(frames[-1].time)
        assert abs(last + 1 / fps - t / fps) < 1 / fps
        assert vs.average_rate is not None and float(vs.average_rate) == pytest.approx(fps)
    strip = write_strip_png(_frames(t, h, w), maps, tmp_path / "s.png", n=3, gap=2)
    assert Image.open(strip).size == (3 * w + 2 * 2, h)
