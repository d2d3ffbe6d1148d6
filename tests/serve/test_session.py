"""What the page computes, without the page: maps, sounds, files it may read, the MP4."""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from avlearn.data.decode import DecodeError, read_audio
from avlearn.localization.cli import main as localize_main
from avlearn.localization.inputs import normalize_video
from avlearn.localization.video import localize_frames, uint8_frames
from avlearn.serve.session import Explorer, Sound
from tests.serve.conftest import BLUE, FPS, INPUT, RED, SECONDS, inside


@pytest.mark.parametrize(("sound", "box"), [(Sound("own"), RED), (Sound("video", "high.mp4"), BLUE)])
def test_peak_is_where_the_known_map_puts_it(explorer: Explorer, sound: Sound,
                                             box: tuple[slice, slice]) -> None:
    view = explorer.frame("low.mp4", 0.9, sound)
    assert view.peak is not None and inside(box, view.peak)
    assert view.image.shape == (96, 128, 3)
    assert 0 < view.confidence <= 1


def test_silence_gives_a_flat_map_without_peak(explorer: Explorer) -> None:
    view = explorer.frame("low.mp4", 0.3, Sound("silence"))
    assert view.peak is None and float(np.ptp(view.heatmap)) == 0.0


@pytest.mark.parametrize("t", [0.0, 0.55, 1.25, SECONDS - 0.01])
def test_frame_map_is_the_one_localize_computes_for_that_frame(explorer: Explorer, t: float) -> None:
    """The page's map of a frame equals ``localize``'s windows over the whole video (last window too)."""
    video = explorer.resolve("low.mp4")
    total = math.floor(SECONDS * INPUT.fps + 1e-6)
    frames = uint8_frames(str(video), 0.0, INPUT.fps, INPUT.size, 0, total)
    clip = normalize_video(frames.permute(3, 0, 1, 2).float() / 255, INPUT)
    other = explorer.resolve("high.mp4")
    def audio_at(s: float) -> torch.Tensor:
        return read_audio(other, INPUT.audio_start(s), INPUT.audio_seconds, INPUT.sample_rate)

    maps = localize_frames(explorer.model, clip, audio_at, INPUT)
    view = explorer.frame("low.mp4", t, Sound("video", "high.mp4"))
    i = min(round(math.floor(t * FPS + 1e-6) / FPS * INPUT.fps), total - 1)
    torch.testing.assert_close(torch.from_numpy(view.heatmap), maps[i])


@pytest.mark.parametrize("name", ["../low.mp4", "/etc/passwd", "notes/readme.txt", "missing.mp4", ""])
def test_nothing_outside_the_folder_and_temp_is_readable(explorer: Explorer, videos: Path, name: str) -> None:
    outside = videos.parent / "outside.mp4"
    outside.write_bytes((videos / "low.mp4").read_bytes())
    for bad in (name, str(outside), str(videos / "notes" / "readme.txt")):
        with pytest.raises(PermissionError, match="not a video of the served folder"):
            explorer.resolve(bad)
    assert explorer.video_names() == ["high.mp4", "low.mp4", "mute.mp4"]


def _cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert localize_main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("avlearn localize: cannot decode ")
    return err.removeprefix("avlearn localize: ").strip()


def test_errors_are_worded_as_the_clis(
    explorer: Explorer, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A silent video's own sound and an upload that is not media: the CLI's message, the page's hint."""
    mute = str(explorer.resolve("mute.mp4"))
    cli = _cli_error([mute, "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o.mp4")], capsys)
    with pytest.raises(DecodeError) as page:
        explorer.frame("mute.mp4", 0.2, Sound("own"))
    assert cli == f"cannot decode {mute}: has no audio track; pass --audio with a file that has sound"
    assert str(page.value) == f"cannot decode {mute}: has no audio track; choose another sound"

    junk = explorer.temp / "upload" / "song.mp3"
    junk.parent.mkdir()
    junk.write_bytes(b"this is not an mp3" * 100)
    cli = _cli_error([str(junk), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o.mp4")], capsys)
    with pytest.raises(DecodeError) as page:
        explorer.check_upload(str(junk), need_video=False)
    prefix = f"cannot decode {junk}: not a readable media file ("
    assert cli.startswith(prefix) and str(page.value).startswith(prefix)


def test_an_upload_that_is_not_media_is_refused_in_the_worker(explorer: Explorer) -> None:
    junk = explorer.temp / "upload" / "song.mp3"
    junk.parent.mkdir()
    junk.write_bytes(b"this is not an mp3" * 100)
    with pytest.raises(DecodeError, match=r"song\.mp3: not a readable media file"):
        explorer.check_upload(str(junk), need_video=False)
    tone = _wav(junk)
    with pytest.raises(DecodeError, match="has no video track"):
        explorer.check_upload(str(tone), need_video=True)
    assert explorer.check_upload(str(tone), need_video=False) == tone.resolve()
    wav = explorer.temp / "upload" / "mute.mp4"
    wav.write_bytes((explorer.resolve("mute.mp4")).read_bytes())
    with pytest.raises(DecodeError, match="has no audio track"):
        explorer.check_upload(str(wav), need_video=False)
    assert explorer.check_upload(str(wav), need_video=True) == wav.resolve()


def _wav(near: Path) -> Path:
    """A one-second 300 Hz WAV (audio only) next to ``near``."""
    import wave

    path = near.with_name("tone.wav")
    samples = (0.3 * 32767 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(samples.tobytes())
    return path


def test_an_uploaded_sound_is_localized(explorer: Explorer) -> None:
    up = explorer.temp / "upload" / "high.mp4"
    up.parent.mkdir()
    up.write_bytes(explorer.resolve("high.mp4").read_bytes())
    sound = Sound("upload", str(explorer.check_upload(str(up), need_video=False)))
    view = explorer.frame("low.mp4", 0.5, sound)
    assert view.peak is not None and inside(BLUE, view.peak)


@pytest.mark.parametrize("sound", [Sound("video", "high.mp4"), Sound("silence")], ids=["other", "silence"])
def test_render_writes_the_overlay_with_the_sound(explorer: Explorer, sound: Sound) -> None:
    out = explorer.render("low.mp4", sound)
    assert out.is_relative_to(explorer.temp) and out.suffix == ".mp4"
    with av.open(str(out)) as c:
        assert c.streams.audio and c.streams.audio[0].codec_context.sample_rate == INPUT.sample_rate
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == int(FPS * SECONDS)
    # the MP4's frame at 0.5 s is the page's picture of that frame (up to the ring and the codec)
    page = explorer.frame("low.mp4", 0.5, sound).image.astype(float)
    other = explorer.frame("low.mp4", 0.5, Sound("own")).image.astype(float)
    same, differs = np.abs(frames[5] - page).mean(), np.abs(frames[5] - other).mean()
    assert same < 8 and same < differs / 2, (same, differs)
