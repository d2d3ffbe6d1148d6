"""Tiny real media files, one per kind of problem a scraped video collection contains.

``write_odd_media(root)`` writes them all (about 1 s on one core) and returns ``{kind: path}``;
``write_sound_oddities(root)`` the files whose sound is wrong while their status used to be ``ok``
(:data:`SOUND_KINDS`).
Each odd file has exactly one oddity so a test can map kind -> expected status/reason; the
rest is "normal": 64x48 H.264 at 25 fps with 16 kHz mono AAC. Reusable by decoding tests.

``normal`` doubles as the A/V sync probe: frame 25 (t = 1.0 s) is white and there is a click
at t = 1.0 s in 44.1 kHz stereo audio, so re-encoders and decoders can check alignment.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avlearn.media import write_av

__all__ = ["FLASH_TIME", "KINDS", "SOUND_KINDS", "frames", "tone", "write_odd_media", "write_sound_oddities",
           "write_sync_clip", "write_vfr"]

FLASH_TIME = 1.0  # seconds: the white frame and the click in ``normal``

KINDS = (
    "normal", "normal_mkv", "zero_bytes", "truncated", "truncated_mkv", "not_video", "no_audio",
    "audio_only", "one_frame", "vfr", "audio_8k", "audio_51", "rotated", "uhd_4k",
)


SOUND_KINDS = ("audio_shorter", "silent_audio")


def frames(n: int, width: int = 64, height: int = 48, seed: int = 0) -> np.ndarray:
    """``(n, H, W, 3)`` uint8: a dim gradient with a bright 8x8 block in the top-left corner.

    The block makes orientation checkable (where it lands after rotation); the gradient keeps
    x264 output tiny.
    """
    rng = np.random.default_rng(seed)
    base = np.linspace(20, 80, width, dtype=np.float32)[None, :, None] * np.ones((height, 1, 3), np.float32)
    out = np.repeat(base[None], n, axis=0)
    out += rng.uniform(0, 4, size=(n, 1, 1, 1)).astype(np.float32)  # so frames are not identical
    out[:, :8, :8] = 250
    return out.astype(np.uint8)


def tone(seconds: float, sample_rate: int, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    """``(C, S)`` quiet sine, the same in every channel."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    wav = (0.1 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(wav[None], channels, axis=0)


def write_sync_clip(path: Path, seconds: float = 2.0, fps: float = 25, sample_rate: int = 44100) -> Path:
    """Dark video with one white frame at FLASH_TIME, silent stereo audio with a click at FLASH_TIME."""
    n = round(seconds * fps)
    video = frames(n)
    video[round(FLASH_TIME * fps)] = 255
    audio = np.zeros((2, round(seconds * sample_rate)), np.float32)
    click = round(FLASH_TIME * sample_rate)
    audio[:, click : click + sample_rate // 100] = 0.9  # 10 ms burst
    return write_av(path, video, fps, audio, sample_rate)


def write_vfr(path: Path, n: int = 40) -> Path:
    """Video whose frame intervals alternate 20 ms / 60 ms (phone-style variable frame rate)."""
    tb = Fraction(1, 1000)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = tb
        stream.codec_context.time_base = tb
        stream.options = {"preset": "ultrafast"}
        astream = container.add_stream("aac", rate=16000, layout="mono")
        pts = 0
        for i, img in enumerate(frames(n)):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = pts, tb
            pts += 20 if i % 2 == 0 else 60
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        wav = tone(pts / 1000, 16000)
        aframe = av.AudioFrame.from_ndarray(wav, format="fltp", layout="mono")
        aframe.sample_rate, aframe.pts, aframe.time_base = 16000, 0, Fraction(1, 16000)
        container.mux(astream.encode(aframe))
        container.mux(astream.encode())
    return path


def _cut_in_half(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    src.unlink()
    return dst


def write_odd_media(root: str | Path) -> dict[str, Path]:
    """Write one file of every kind in :data:`KINDS` under ``root``; returns ``{kind: path}``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sr = 16000
    out: dict[str, Path] = {}
    out["normal"] = write_sync_clip(root / "normal.mp4")
    # Same stem as ``normal`` in a subfolder: video ids must be disambiguated.
    out["normal_mkv"] = write_av(root / "sub" / "normal.mkv", frames(25, seed=1), 25, tone(1.0, sr), sr)
    out["zero_bytes"] = root / "zero_bytes.mp4"
    out["zero_bytes"].write_bytes(b"")
    # MP4 from write_av keeps its index (moov) at the end: a half file cannot be opened at all.
    tmp = write_av(root / "full_trunc.mp4", frames(50), 25, tone(2.0, sr), sr)
    out["truncated"] = _cut_in_half(tmp, root / "truncated.mp4")
    # MKV cut in half opens fine; only the packets ending early give it away.
    tmp = write_av(root / "full_trunc.mkv", frames(50), 25, tone(2.0, sr), sr)
    out["truncated_mkv"] = _cut_in_half(tmp, root / "truncated_mkv.mkv")
    out["not_video"] = root / "not_video.mp4"
    out["not_video"].write_text("this is a text file renamed to .mp4\n" * 20)
    out["no_audio"] = write_av(root / "no_audio.mp4", frames(25), 25, None)
    out["audio_only"] = write_av(root / "audio_only.mp4", None, 25, tone(1.0, sr), sr)
    out["one_frame"] = write_av(root / "one_frame.mp4", frames(1), 25, tone(1.0, sr), sr)
    out["vfr"] = write_vfr(root / "vfr.mp4")
    out["audio_8k"] = write_av(root / "audio_8k.mp4", frames(25), 25, tone(1.0, 8000), 8000)
    out["audio_51"] = write_av(root / "audio_51.mp4", frames(25), 25, tone(1.0, sr, channels=6), sr,
                               audio_layout="5.1")
    out["rotated"] = write_av(root / "rotated.mov", frames(25), 25, tone(1.0, sr), sr, rotation=90)
    # Flat 4K frames, 2 of them, ultrafast: ~0.2 s (the gradient of ``frames`` would cost 0.6 s more).
    uhd = np.full((2, 2160, 3840, 3), 40, np.uint8)
    uhd[1] += 4
    uhd[:, :8, :8] = 250
    out["uhd_4k"] = write_av(root / "uhd_4k.mp4", uhd, 25, tone(0.08, sr), sr, preset="ultrafast", crf=40)
    assert set(out) == set(KINDS)
    return out


def write_sound_oddities(root: str | Path) -> dict[str, Path]:
    """``audio_shorter``: 10 s of pictures with 3 s of sound (clips after 3 s would get padded
    silence); ``silent_audio``: a track of digital silence. About 0.2 s; returns ``{kind: path}``."""
    root = Path(root)
    sr = 16000
    flat = np.repeat(frames(1, 32, 32), 250, axis=0)  # flat frames keep 250 of them cheap to encode
    silence = np.zeros((1, sr), np.float32)
    return {
        "audio_shorter": write_av(root / "audio_shorter.mp4", flat, 25, tone(3.0, sr), sr),
        "silent_audio": write_av(root / "silent_audio.mp4", frames(25), 25, silence, sr),
    }
