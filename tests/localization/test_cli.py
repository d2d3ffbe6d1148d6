"""``avlearn localize`` and ``avlearn evaluate localization`` end to end on tiny generated media."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from avlearn.cli import main as avlearn_main
from avlearn.localization.cli import main
from avlearn.localization.evaluate import main as evaluate_main
from avlearn.media import write_av
from avlearn.models.checkpoint import save_encoders
from avlearn.models.registry import ModelConfig, build_av_model

FPS, SECONDS, SR = 10.0, 1.2, 16000
H, W = 46, 66  # not multiples of the model's strides


def _video(path: Path, freq: float, box_x: int) -> Path:
    t = int(FPS * SECONDS)
    frames = np.full((t, H, W, 3), 90, dtype=np.uint8)
    frames[:, 10:26, box_x : box_x + 16] = (230, 40, 40)
    n = int(SR * SECONDS)
    audio = 0.3 * np.sin(2 * np.pi * freq * np.arange(n) / SR).astype(np.float32)
    return write_av(path, frames, FPS, audio, SR)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(video_arch="r2plus1d_tiny", audio_arch="avid_spec_cnn9_tiny", embed_dim=16)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    return save_encoders(build_av_model(cfg), path, cfg)


def test_localize_writes_video_with_sound_and_strip(tmp_path: Path, checkpoint: Path) -> None:
    video = _video(tmp_path / "in.mp4", 440.0, 8)
    out = tmp_path / "out" / "heat.mp4"
    rc = main([str(video), "--checkpoint", str(checkpoint), "--out", str(out), "--size", "32",
               "--audio-seconds", "1.0", "--strip-frames", "4"])
    assert rc == 0
    with av.open(str(out)) as c:
        assert c.streams.audio
        frames = list(c.decode(video=0))
    assert len(frames) == int(FPS * SECONDS)
    assert (frames[0].width, frames[0].height) == (W, H)
    assert out.with_suffix(".png").is_file()


def test_localize_another_sound_via_the_command(tmp_path: Path, checkpoint: Path) -> None:
    video = _video(tmp_path / "in.mp4", 440.0, 8)
    other = _video(tmp_path / "other.mp4", 880.0, 40)
    out = tmp_path / "strip.png"
    rc = avlearn_main(["localize", str(video), "--audio", str(other), "--checkpoint", str(checkpoint),
                       "--out", str(out), "--size", "32", "--fps", "8", "--seconds", "0.6"])
    assert rc == 0 and out.is_file()


def test_localize_errors_are_messages(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "missing.mp4"), "--checkpoint", str(checkpoint), "--out",
                 str(tmp_path / "o.mp4")]) == 1
    assert "missing.mp4" in capsys.readouterr().err
    bad_out = str(tmp_path / "o.gif")
    assert main([str(tmp_path / "x.mp4"), "--checkpoint", str(checkpoint), "--out", bad_out]) == 2


def test_evaluate_localization_on_a_tiny_collection(tmp_path: Path, checkpoint: Path) -> None:
    root = tmp_path / "synth"
    videos = []
    for i, x in enumerate((8, 40)):
        rel = f"videos/v{i}.mp4"
        _video(root / rel, 440.0 * (i + 1), x)
        n = int(FPS * SECONDS)
        videos.append({"file": rel, "split": "test", "fps": FPS, "num_frames": n, "width": W, "height": H,
                       "bbox": [[x, 10, x + 16, 26]] * n})
    videos.append({**videos[0], "split": "train"})
    (root / "annotations.json").write_text(json.dumps({"format_version": 1, "videos": videos}))
    out = tmp_path / "loc.json"
    rc = avlearn_main(["evaluate", "localization", "--checkpoint", str(checkpoint), "--synth", str(root),
                       "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["model"]["n"] == 2 and 0 <= report["model"]["auc"] <= 1
    assert report["center_box_baseline"]["n"] == 2
    assert evaluate_main(["--checkpoint", str(checkpoint), "--synth", str(tmp_path / "none")]) == 1


def test_model_input_comes_from_a_stored_run_config() -> None:
    import dataclasses

    from avlearn.data.config import DataConfig
    from avlearn.localization.inputs import ModelInput, model_input_from_checkpoint

    stored = json.loads(json.dumps({"data": dataclasses.asdict(DataConfig(fps=8.0, num_frames=4))}))
    inp = model_input_from_checkpoint(stored)
    assert (inp.fps, inp.num_frames, inp.size) == (8.0, 4, 112)
    assert model_input_from_checkpoint({"video_arch": "r2plus1d_tiny"}) == ModelInput()


def test_localize_takes_a_run_dir_as_the_readme_says(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "encoders.safetensors").write_bytes(checkpoint.read_bytes())
    video = _video(tmp_path / "my_video.mp4", 440.0, 8)
    out = tmp_path / "overlay.mp4"
    assert avlearn_main(["localize", str(video), "--checkpoint", str(run), "--out", str(out), "--size", "32",
                         "--audio-seconds", "1.0"]) == 0
    assert out.is_file() and out.with_suffix(".png").is_file()
    err = capsys.readouterr().err  # progress bars of both passes
    assert "localize: windows" in err and "localize: overlay" in err and "12/12" in err


def test_truncated_localizer_or_checkpoint_is_a_usage_error_naming_the_file(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = _video(tmp_path / "in.mp4", 440.0, 8)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(checkpoint.read_bytes()[:300])
    for flags in (["--checkpoint", str(checkpoint), "--localizer", str(cut)], ["--checkpoint", str(cut)]):
        assert main([str(video), *flags, "--out", str(tmp_path / "o.mp4"), "--size", "32"]) == 2
        err = capsys.readouterr().err
        assert str(cut) in err and "truncated or corrupt" in err and "Traceback" not in err


def _long_video(path: Path, seconds: float) -> Path:
    """160x120 at 25 fps, a red box sweeping left and right, a 440 Hz tone."""
    n = int(25 * seconds)
    frames = np.full((n, 120, 160, 3), 60, dtype=np.uint8)
    for i in range(n):
        x = int(120 * (0.5 + 0.5 * np.sin(i / 10)))
        frames[i, 40:80, x : x + 40] = (230, 40, 40)
    audio = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(SR * seconds)) / SR).astype(np.float32)
    return write_av(path, frames, 25, audio, SR)


def test_localize_memory_does_not_grow_with_the_video(tmp_path: Path, checkpoint: Path) -> None:
    """The frames (numpy) alive at once: a 4x longer video must not hold more of them. Before
    streaming, the traced peak was 5.5 MB for 1.5 s and 10.7 MB for 6 s (every frame decoded,
    then blended at once); with it, it does not grow."""
    import tracemalloc

    peaks = []
    for seconds in (1.5, 6.0):
        video = _long_video(tmp_path / f"v{seconds}.mp4", seconds)
        tracemalloc.start()
        rc = main([str(video), "--checkpoint", str(checkpoint), "--out", str(tmp_path / f"o{seconds}.mp4"),
                   "--size", "32", "--audio-seconds", "1.0", "--quiet"])
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert rc == 0
    one_frame = 120 * 160 * 3
    assert peaks[1] - peaks[0] < 10 * one_frame, [p / 1e6 for p in peaks]
    with av.open(str(tmp_path / "o6.0.mp4")) as c:
        assert c.streams.video[0].frames == 150 and c.streams.audio
