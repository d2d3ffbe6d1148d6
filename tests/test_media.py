"""Writing media: the same inputs must give the same bytes (a resumed collection relies on it)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from avlearn.media import write_av


def test_same_frames_and_audio_give_the_same_bytes(tmp_path: Path) -> None:
    # 56 px with an audio track is where x264's assembly made differing files most often
    # (16 % of 200 encodes); 40 encodes would all agree by chance less than 1 time in 1000.
    rng = np.random.default_rng(0)
    frames = np.zeros((25, 56, 56, 3), np.uint8)
    for t in range(len(frames)):  # a moving square over a noisy background, like the generator's
        frames[t] = rng.integers(0, 40, (56, 56, 3), dtype=np.uint8)
        frames[t, 10 + t : 26 + t, 20:36] = (220, 60, 30)
    audio = 0.3 * np.sin(np.linspace(0, 2000, 16000, dtype=np.float32))
    digests = {
        hashlib.sha256(write_av(tmp_path / f"{k}.mp4", frames, 25, audio, 16000).read_bytes()).hexdigest()
        for k in range(40)
    }
    assert len(digests) == 1


def test_writer_in_chunks_gives_the_bytes_of_write_av(tmp_path: Path) -> None:
    from avlearn.media import AVWriter

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(30, 32, 48, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal((2, 16000))).astype(np.float32)
    whole = write_av(tmp_path / "whole.mp4", frames, 25, audio, 16000)
    with AVWriter(tmp_path / "chunks.mp4", 25, (32, 48), 2, 16000) as writer:
        for first in range(0, 30, 7):
            writer.write_frames(frames[first : first + 7])
        writer.write_audio(audio)
    assert (tmp_path / "chunks.mp4").read_bytes() == whole.read_bytes()
