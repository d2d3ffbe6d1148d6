"""Decoding: both backends agree, audio and video line up, odd files fail with clear errors.

Every file is a tiny real H.264/AAC file written in a fixture; the real 720p clip is used
when available.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from avlearn.data.decode import (
    ClipSpec,
    DecodeError,
    decode_clip,
    get_decoder,
    probe_duration,
    read_audio,
    stage_times,
)
from avlearn.media import write_av
from tests.data_prep.odd_media import FLASH_TIME, write_odd_media, write_sync_clip

BACKENDS = ("pyav", "decord")
FPS = 25


def _texture(n: int, height: int = 64, width: int = 96) -> np.ndarray:
    """``(n, H, W, 3)`` uint8 smooth colour pattern moving fast (frames differ clearly)."""
    t = np.arange(n)[:, None, None]
    y = np.arange(height)[None, :, None]
    x = np.arange(width)[None, None, :]
    img = 127 + 100 * np.sin(2 * np.pi * (x / 24 + t / 5)) * np.cos(2 * np.pi * y / 32)
    rgb = np.stack([img, np.roll(img, 5, axis=2), 255 - img], axis=-1)
    return rgb.clip(0, 255).astype(np.uint8)


def _counter(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """``(n, H, W, 3)`` uint8 flat grey frames whose level ``16 + 4 i`` encodes the frame index i."""
    levels = 16 + 4 * np.arange(n)
    return np.broadcast_to(levels[:, None, None, None], (n, height, width, 3)).astype(np.uint8)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("decode")
    sr = 16000
    tone = (0.3 * np.sin(2 * np.pi * 330 * np.arange(2 * sr) / sr)).astype(np.float32)
    out = {
        "texture": write_av(root / "texture.mp4", _texture(2 * FPS), FPS, tone, sr),
        "counter": write_av(root / "counter.mp4", _counter(2 * FPS), FPS, tone, sr, crf=10),
        "sync_16k": write_sync_clip(root / "sync_16k.mp4", sample_rate=16000),
        "sync_44k": write_sync_clip(root / "sync_44k.mp4", sample_rate=44100),
    }
    return out


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_odd_media(tmp_path_factory.mktemp("odd"))


def _mean_abs_255(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().mean()) * 255


# ----------------------------------------------------------------------------- backends agree


@pytest.mark.parametrize("start", [0.0, 0.3, 1.37])
def test_backends_agree_at_file_size(media: dict[str, Path], start: float) -> None:
    spec = ClipSpec(num_frames=8, fps=FPS, size=None, audio_seconds=0.5, sample_rate=16000)
    a = decode_clip(media["texture"], start, spec, "pyav")
    b = decode_clip(media["texture"], start, spec, "decord")
    assert a.video.shape == b.video.shape == (3, 8, 64, 96)
    assert a.video.dtype == b.video.dtype == torch.float32
    assert float(a.video.min()) >= 0.0 and float(a.video.max()) <= 1.0
    np.testing.assert_allclose(a.frame_times, b.frame_times, atol=1e-4)
    assert _mean_abs_255(a.video, b.video) < 1.0  # same decoder and colour conversion: measured 0
    assert torch.equal(a.audio, b.audio)  # audio always comes from PyAV
    assert a.audio_start == b.audio_start == start
    # The frames really are the clip's frames: the next frame differs a lot in this texture.
    shifted = decode_clip(media["texture"], start + 1 / FPS, spec, "pyav")
    assert _mean_abs_255(a.video, shifted.video) > 20


@pytest.mark.parametrize("size", [112, (32, 48)])  # (32, 48) hits decord's broken resize sizes
def test_backends_agree_resized(media: dict[str, Path], size: int | tuple[int, int]) -> None:
    spec = ClipSpec(num_frames=6, fps=10, size=size, audio_seconds=0.25, sample_rate=16000)
    a = decode_clip(media["texture"], 0.5, spec, "pyav")
    b = decode_clip(media["texture"], 0.5, spec, "decord")
    expected_hw = (112, 168) if size == 112 else size
    assert a.video.shape[2:] == b.video.shape[2:] == expected_hw
    np.testing.assert_allclose(a.frame_times, b.frame_times, atol=1e-4)
    # Different scalers (one-step YUV->RGB resize vs decord's filter graph): measured 5-8 / 255
    # on this sharp texture; a wrong frame gives > 20 / 255.
    assert _mean_abs_255(a.video, b.video) < 12
    assert torch.equal(a.audio, b.audio)


# ----------------------------------------------------------------------------- frame choice


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("start", "fps"), [(0.2, 10.0), (0.0, 30.0), (0.51, 7.0), (1.5, 25.0)])
def test_nearest_frame_rule(media: dict[str, Path], backend: str, start: float, fps: float) -> None:
    spec = ClipSpec(num_frames=5, fps=fps, size=None, audio_seconds=0.0)
    clip = decode_clip(media["counter"], start, spec, backend)
    targets = start + np.arange(5) / fps
    file_times = np.arange(2 * FPS) / FPS
    # Nearest file frame, ties to the later one, the last frame repeating past the end.
    dist = np.abs(targets[:, None] - file_times[None, :])
    expected = np.array([np.flatnonzero(d <= d.min() + 1e-6).max() for d in dist])
    np.testing.assert_allclose(clip.frame_times, file_times[expected], atol=1e-4)
    # The pixels are those frames: the grey level encodes the index.
    levels = clip.video.mean(dim=(0, 2, 3)).numpy() * 255
    decoded_index = np.round((levels - 16) / 4).astype(int)
    np.testing.assert_array_equal(decoded_index, expected)


def test_tie_goes_to_later_frame(media: dict[str, Path]) -> None:
    # 0.3 s lies exactly between frames at 0.28 and 0.32.
    spec = ClipSpec(num_frames=1, fps=10, size=None, audio_seconds=0)
    clip = decode_clip(media["counter"], 0.3, spec, "pyav")
    np.testing.assert_allclose(clip.frame_times, [0.32], atol=1e-6)


# ----------------------------------------------------------------------------- AV alignment


def _flash_time(clip_video: torch.Tensor, frame_times: np.ndarray) -> float:
    brightness = clip_video.mean(dim=(0, 2, 3))
    assert float(brightness.max()) > 0.9, "no white frame in the clip"
    return float(frame_times[int(brightness.argmax())])


def _click_time(audio: torch.Tensor, audio_start: float, sample_rate: int) -> float:
    loud = np.flatnonzero(audio.abs().numpy() > 0.3)
    assert loud.size, "no click in the audio window"
    return audio_start + float(loud[0]) / sample_rate


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["sync_16k", "sync_44k"])
def test_flash_and_click_line_up(media: dict[str, Path], backend: str, name: str) -> None:
    sr = 16000
    spec = ClipSpec(num_frames=20, fps=FPS, size=None, audio_seconds=1.0, sample_rate=sr)
    clip = decode_clip(media[name], 0.6, spec, backend)
    assert clip.audio.shape == (sr,)
    t_flash = _flash_time(clip.video, clip.frame_times)
    t_click = _click_time(clip.audio, clip.audio_start, sr)
    assert abs(t_flash - FLASH_TIME) < 1e-3
    assert abs(t_click - FLASH_TIME) < 3e-3  # a few ms: AAC pre-echo, resampler ringing
    assert abs(t_flash - t_click) < 1 / FPS
    # Before the click the 44.1 kHz -> 16 kHz audio is silent (no resampler edge junk).
    before = clip.audio[: round((FLASH_TIME - 0.6 - 0.01) * sr)]
    assert float(before.abs().max()) < 0.05


@pytest.mark.parametrize("backend", BACKENDS)
def test_audio_offset_moves_click(media: dict[str, Path], backend: str) -> None:
    sr = 16000
    base = ClipSpec(num_frames=10, fps=FPS, size=None, audio_seconds=1.0, sample_rate=sr)
    start = 0.4
    sync = decode_clip(media["sync_44k"], start, base, backend)
    shifted = decode_clip(media["sync_44k"], start, dataclasses.replace(base, audio_offset=0.3), backend)
    assert shifted.audio_start == pytest.approx(start + 0.3)
    torch.testing.assert_close(sync.video, shifted.video)  # the video does not move
    rel_sync = _click_time(sync.audio, 0.0, sr)
    rel_shifted = _click_time(shifted.audio, 0.0, sr)
    assert rel_shifted - rel_sync == pytest.approx(-0.3, abs=2e-3)
    # In absolute time the click is still at FLASH_TIME.
    assert _click_time(shifted.audio, shifted.audio_start, sr) == pytest.approx(FLASH_TIME, abs=3e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_extra_audio_windows_come_from_the_same_file(media: dict[str, Path], backend: str) -> None:
    sr = 16000
    spec = ClipSpec(num_frames=10, fps=FPS, size=None, audio_seconds=0.5, sample_rate=sr)
    plain = decode_clip(media["sync_44k"], 0.1, spec, backend)
    clip = decode_clip(media["sync_44k"], 0.1, spec, backend, extra_audio=[FLASH_TIME - 0.2, 0.0])
    torch.testing.assert_close(clip.audio, plain.audio)  # the clip itself is unchanged
    assert plain.extra_audio == [] and len(clip.extra_audio) == 2
    late, early = clip.extra_audio
    assert late.shape == early.shape == (sr // 2,)
    # the click lies 0.2 s into the late window
    assert _click_time(late, FLASH_TIME - 0.2, sr) == pytest.approx(FLASH_TIME, abs=3e-3)
    torch.testing.assert_close(early, read_audio(media["sync_44k"], 0.0, 0.5, sr), atol=2e-4, rtol=0)


def test_center_alignment(media: dict[str, Path]) -> None:
    spec = ClipSpec(num_frames=10, fps=FPS, size=None, audio_seconds=1.0, sample_rate=16000,
                    audio_align="center")
    clip = decode_clip(media["sync_16k"], 0.8, spec, "pyav")
    assert clip.audio_start == pytest.approx(0.8 + 0.2 - 0.5)
    assert _click_time(clip.audio, clip.audio_start, 16000) == pytest.approx(FLASH_TIME, abs=3e-3)


def test_audio_outside_track_is_zero(media: dict[str, Path]) -> None:
    wav = read_audio(media["texture"], -0.5, 1.0, 16000)
    assert wav.shape == (16000,)
    assert float(wav[:7900].abs().max()) == 0.0
    assert float(wav[8200:].abs().max()) > 0.1
    tail = read_audio(media["texture"], 1.9, 0.5, 16000)
    assert float(tail[round(0.15 * 16000):].abs().max()) == 0.0


# ----------------------------------------------------------------------------- odd inputs


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("kind", "start", "reason"),
    [
        ("missing", 0.0, "file not found"),
        ("zero_bytes", 0.0, "empty"),
        ("not_video", 0.0, "not a readable media file"),
        ("truncated", 0.0, "not a readable media file"),
        ("no_audio", 0.0, "no audio track"),
        ("audio_only", 0.0, "no video track"),
        ("normal", 5.0, "past the end"),
        ("normal", float("nan"), "not a number"),
    ],
)
def test_odd_inputs_raise_clear_errors(odd: dict[str, Path], tmp_path: Path, backend: str, kind: str,
                                       start: float, reason: str) -> None:
    path = tmp_path / "missing.mp4" if kind == "missing" else odd[kind]
    spec = ClipSpec(num_frames=4, fps=10, size=32, audio_seconds=0.5)
    with pytest.raises(DecodeError, match=reason) as info:
        decode_clip(path, start, spec, backend)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    assert reason in info.value.reason


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "kind", ["vfr", "rotated", "audio_8k", "audio_51", "one_frame", "uhd_4k", "normal_mkv", "truncated_mkv"])
def test_odd_but_usable_files_decode(odd: dict[str, Path], backend: str, kind: str) -> None:
    spec = ClipSpec(num_frames=4, fps=10, size=32, audio_seconds=0.5, sample_rate=16000)
    clip = decode_clip(odd[kind], 0.0, spec, backend)
    assert clip.video.shape[:2] == (3, 4) and min(clip.video.shape[2:]) == 32
    assert clip.audio.shape == (8000,)
    assert torch.isfinite(clip.audio).all() and torch.isfinite(clip.video).all()
    if kind == "one_frame":
        torch.testing.assert_close(clip.video[:, 0], clip.video[:, -1])  # the only frame repeats
    if kind in ("audio_8k", "audio_51", "vfr", "rotated"):  # 0.1-amplitude 440 Hz tone
        rms = float(clip.audio[800:].pow(2).mean().sqrt())  # skip AAC priming at t=0
        # 5.1 is the mean of the five full-range channels: the LFE channel is left out, the level stays.
        expected = 0.1 / np.sqrt(2)
        assert rms == pytest.approx(expected, rel=0.1)
        spectrum = np.abs(np.fft.rfft(clip.audio.numpy()))
        assert np.argmax(spectrum) * 16000 / len(clip.audio) == pytest.approx(440, abs=4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_vfr_frames_are_the_real_timestamps(odd: dict[str, Path], backend: str) -> None:
    # write_vfr: frame intervals alternate 20 ms / 60 ms.
    pts = np.cumsum([0] + [20 if i % 2 == 0 else 60 for i in range(39)]) / 1000
    spec = ClipSpec(num_frames=10, fps=20, size=None, audio_seconds=0.0)
    clip = decode_clip(odd["vfr"], 0.1, spec, backend)
    targets = 0.1 + np.arange(10) / 20
    expected = pts[[np.flatnonzero(np.abs(pts - t) <= np.abs(pts - t).min() + 1e-6).max() for t in targets]]
    np.testing.assert_allclose(clip.frame_times, expected, atol=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("size", "hw"), [(None, (64, 48)), (24, (32, 24)), ((40, 30), (40, 30))])
def test_rotated_video_is_upright(odd: dict[str, Path], backend: str, size: int | tuple[int, int] | None,
                                  hw: tuple[int, int]) -> None:
    # 64x48 coded frames, display matrix: 90 degrees counter-clockwise. The bright 8x8 block in
    # the coded top-left corner is displayed in the bottom-left corner.
    spec = ClipSpec(num_frames=2, fps=10, size=size, audio_seconds=0.0)
    clip = decode_clip(odd["rotated"], 0.0, spec, backend)
    assert clip.video.shape[2:] == hw
    h, w = hw
    bh, bw = h * 6 // 64, w * 6 // 48  # inside the block after scaling
    assert float(clip.video[:, :, -bh:, :bw].mean()) > 0.9
    assert float(clip.video[:, :, :bh, :bw].mean()) < 0.5  # not in the top-left
    plain = decode_clip(odd["normal_mkv"], 0.0, spec, backend)  # same frames, no rotation
    assert float(plain.video[:, :, :2, :2].mean()) > 0.9


def test_unknown_backend_lists_valid() -> None:
    with pytest.raises(ValueError, match="decord, pyav"):
        get_decoder("opencv")


def test_decode_error_pickles() -> None:
    err = DecodeError("/data/a.mp4", "file is empty (0 bytes)")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, DecodeError)
    assert (back.path, back.reason, back.hint, str(back)) == (err.path, err.reason, err.hint, str(err))


def test_probe_duration(media: dict[str, Path], odd: dict[str, Path]) -> None:
    assert probe_duration(media["counter"]) == pytest.approx(2.0, abs=0.05)
    with pytest.raises(DecodeError, match="no video track"):
        probe_duration(odd["audio_only"])


# ------------------------------------------------------------------ fast paths equal the plain ones


def _plain_video(path: Path, start: float, spec: ClipSpec) -> tuple[torch.Tensor, np.ndarray]:
    """The clip's frames the plain way: decode every frame with PyAV's defaults and convert the
    chosen ones with ``to_ndarray`` (a fresh scaler each) at the decode size. ``(C, T, H, W)``."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    times = np.array([float(f.time) for f in frames])
    targets = start + np.arange(spec.num_frames) / spec.fps
    dist = np.abs(targets[:, None] - times[None, :])
    chosen = [int(np.flatnonzero(d <= d.min() + 1e-4).max()) for d in dist]  # nearest, ties later
    w0, h0 = frames[0].width, frames[0].height
    size = spec.size
    assert isinstance(size, int)
    width, height = (size, round(h0 * size / w0)) if w0 <= h0 else (round(w0 * size / h0), size)
    rgb = np.stack([frames[i].to_ndarray(width=width, height=height, format="rgb24", interpolation="BICUBIC")
                    for i in chosen])
    return torch.from_numpy(rgb).permute(3, 0, 1, 2).float() / 255, times[chosen]


def _plain_audio(path: Path, start: float, seconds: float) -> torch.Tensor:
    """The window at the track's own rate the plain way: every frame through ``to_ndarray``, placed
    by its exact (Fraction) timestamp, the mean of the channels other than LFE. Decoding starts
    0.1 s early, as in ``read_audio`` (AAC output depends on where decoding starts, by ~1e-6)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        sr = stream.codec_context.sample_rate
        a0, n = round(start * sr), round(seconds * sr)
        buf = np.zeros(n, np.float32)
        container.seek(int(max(start - 0.1, 0.0) / stream.time_base), stream=stream)
        for frame in container.decode(stream):
            arr = frame.to_ndarray()
            names = [ch.name for ch in frame.layout.channels]
            if not frame.format.is_planar:
                arr = arr.reshape(-1, len(names)).T
            if arr.dtype == np.int16:
                arr = arr.astype(np.float32) / 32768.0
            keep = [i for i, name in enumerate(names) if name != "LFE"]
            mono = arr.astype(np.float32)[keep].mean(axis=0)
            first = round(frame.pts * frame.time_base * sr)
            lo, hi = max(first, a0), min(first + frame.samples, a0 + n)
            if hi > lo:
                buf[lo - a0 : hi - a0] = mono[lo - first : hi - first]
    return torch.from_numpy(buf)


@pytest.mark.parametrize(("name", "start", "size"), [("texture", 0.0, 48), ("texture", 0.73, 40),
                                                     ("counter", 1.1, 32), ("sync_44k", 0.5, 24)])
def test_pyav_fast_path_equals_plain_decoding(media: dict[str, Path], name: str, start: float,
                                              size: int) -> None:
    """One reused single-threaded scaler, codec threads off, audio read from the planes with
    integer timestamps: the same pixels and samples as the plain PyAV calls."""
    path = media[name]
    with av.open(str(path)) as container:
        sr = container.streams.audio[0].codec_context.sample_rate
    spec = ClipSpec(num_frames=6, fps=12, size=size, audio_seconds=0.6, sample_rate=sr)
    clip = decode_clip(path, start, spec, "pyav")
    video, times = _plain_video(path, start, spec)
    np.testing.assert_allclose(clip.frame_times, times, atol=1e-6)
    assert torch.equal(clip.video, video)
    assert torch.equal(clip.audio, _plain_audio(path, start, 0.6))


def _write_pcm_clip(path: Path, layout: str, sample_format: str, sr: int = 16000) -> Path:
    """A short clip with uncompressed packed or planar audio (the int16 and packed sample paths)."""
    channels = len(av.AudioLayout(layout).channels)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        codec = "pcm_s16le" if sample_format.startswith("s16") else "pcm_f32le"
        aus = out.add_stream(codec, rate=sr, layout=layout)
        for i, img in enumerate(_texture(FPS, 32, 32)):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode())
        for k in range(sr // 1000):
            data = rng.uniform(-0.5, 0.5, (channels, 1000)).astype(np.float32)
            if sample_format.startswith("s16"):
                data = (data * 32767).astype(np.int16)
            if not sample_format.endswith("p"):
                data = data.T.reshape(1, -1)
            aframe = av.AudioFrame.from_ndarray(data, format=sample_format, layout=layout)
            aframe.sample_rate, aframe.pts = sr, k * 1000
            out.mux(aus.encode(aframe))
        out.mux(aus.encode())
    return path


@pytest.mark.parametrize(("layout", "sample_format"), [("stereo", "s16"), ("5.1", "flt"), ("stereo", "fltp")])
def test_audio_fast_path_equals_plain_for_pcm(tmp_path: Path, layout: str, sample_format: str) -> None:
    path = _write_pcm_clip(tmp_path / f"pcm_{layout}_{sample_format}.mkv", layout, sample_format)
    for start in (0.0, 0.1234, 0.4):
        fast = read_audio(path, start, 0.5, 16000)
        assert torch.equal(fast, _plain_audio(path, start, 0.5))
        assert float(fast.abs().max()) > 0.1


def test_audio_fast_path_equals_plain_for_51_aac(odd: dict[str, Path]) -> None:
    fast = read_audio(odd["audio_51"], 0.25, 0.5, 16000)
    assert torch.equal(fast, _plain_audio(odd["audio_51"], 0.25, 0.5))
    assert float(fast.abs().max()) > 0.01


def test_read_audio_twice_from_one_open_container(media: dict[str, Path]) -> None:
    """The codec can only be made single-threaded before it opens: a reused container still works."""
    with av.open(str(media["texture"])) as container:
        a = read_audio(container, 0.2, 0.5, 16000)
        b = read_audio(container, 0.2, 0.5, 16000)  # the AAC decoder's state carries over: ~1e-6
    assert torch.equal(a, read_audio(media["texture"], 0.2, 0.5, 16000))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- real clip


def test_real_clip_both_backends(real_clip: Path) -> None:
    spec = ClipSpec(num_frames=8, fps=8, size=112, audio_seconds=1.0, sample_rate=16000)
    clips = {b: decode_clip(real_clip, 1.0, spec, b) for b in BACKENDS}
    for clip in clips.values():
        assert clip.video.shape == (3, 8, 112, 199)  # 1280x720 short side -> 112
        assert clip.audio.shape == (16000,)
        assert torch.isfinite(clip.audio).all()
        assert float(clip.audio.pow(2).mean().sqrt()) > 1e-3  # 5.1 AAC downmixed, not silent
        assert float(clip.video.std()) > 0.05
    a, b = clips["pyav"], clips["decord"]
    np.testing.assert_allclose(a.frame_times, b.frame_times, atol=1e-4)
    assert _mean_abs_255(a.video, b.video) < 3  # measured 1.6 / 255 (different scalers)
    assert torch.equal(a.audio, b.audio)


def test_stage_times_profiles_the_pyav_decoder(media: dict[str, Path]) -> None:
    spec = ClipSpec(num_frames=4, fps=10, size=32, audio_seconds=0.5, sample_rate=16000)
    with stage_times() as times:
        decode_clip(media["texture"], 0.3, spec, "pyav")
        decode_clip(media["sync_44k"], 0.3, spec, "pyav")  # resampled
        with pytest.raises(RuntimeError, match="already active"), stage_times():
            pass
    assert {"open", "video seek", "video decode", "frame convert", "to tensor", "audio seek",
            "audio decode", "audio downmix", "resample", "close"} <= set(times)
    assert all(v >= 0 for v in times.values())
    before = dict(times)
    decode_clip(media["texture"], 0.3, spec, "pyav")  # outside the block: nothing is added
    assert times == before
