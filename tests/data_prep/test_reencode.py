"""``prepare reencode``: size, fps, GOP, 16 kHz mono, upright, A/V sync kept, failures counted, resume."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from avlearn.data.decode import ClipSpec, decode_clip
from avlearn.data.manifest import read_manifest, write_manifest
from avlearn.data.probe import probe
from avlearn.media import write_av
from data_prep.index import index_collection
from data_prep.reencode import EncodeOptions, Result, main, output_size, reencode_collection, summarize
from tests.data_prep.odd_media import FLASH_TIME, frames, tone, write_sync_clip

OPTS = EncodeOptions(short_side=32, fps=16, gop=8, preset="ultrafast")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """UCF-style ``Class/v_x`` layout: sync clip (44.1 kHz stereo), rotated, odd size, no audio, corrupt."""
    root = tmp_path_factory.mktemp("src")
    write_sync_clip(root / "Drum" / "v_sync.mp4")  # 2 s, 25 fps, 64x48, flash + click at FLASH_TIME
    write_av(root / "Drum" / "v_rot.mov", frames(25), 25, tone(1.0, 16000), 16000, rotation=90)
    write_av(root / "Violin" / "v_wide.mkv", frames(30, 66, 38), 30, tone(1.0, 48000, 6), 48000,
             audio_layout="5.1")
    write_av(root / "Violin" / "v_silent.mp4", frames(20), 25, None)
    full = write_av(root / "full.mp4", frames(50), 25, tone(2.0, 16000), 16000)
    (root / "Violin" / "v_corrupt.mp4").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    return root


@pytest.fixture(scope="module")
def encoded(source: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Result]]:
    out = tmp_path_factory.mktemp("out")
    results, _ = reencode_collection(source, out, OPTS, workers=2, progress=False)
    return out, results


def _video_duration(path: Path) -> float:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.duration is not None and s.time_base is not None
        return float(s.duration * s.time_base)


def test_output_size() -> None:
    assert output_size(1920, 1080, 128) == (228, 128)
    assert output_size(1080, 1920, 128) == (128, 228)
    assert output_size(65, 39, None) == (64, 38)


def test_results_and_layout(encoded: tuple[Path, list[Result]]) -> None:
    out, results = encoded
    status = {Path(r.src).name: r.status for r in results}
    assert status == {"v_sync.mp4": "done", "v_rot.mov": "done", "v_wide.mkv": "done",
                      "v_silent.mp4": "done", "v_corrupt.mp4": "failed"}
    failed = next(r for r in results if r.status == "failed")
    assert "FFmpeg cannot open it" in failed.reason
    for rel in ("Drum/v_sync.mp4", "Drum/v_rot.mp4", "Violin/v_wide.mp4", "Violin/v_silent.mp4"):
        assert (out / rel).is_file()
    assert not (out / "Violin" / "v_corrupt.mp4").exists()
    assert not list(out.rglob(".*"))  # no temporary files left


def test_outputs_have_requested_format(source: Path, encoded: tuple[Path, list[Result]]) -> None:
    out, _ = encoded
    sizes = {"Drum/v_sync.mp4": (42, 32), "Drum/v_rot.mp4": (32, 42), "Violin/v_wide.mp4": (56, 32),
             "Violin/v_silent.mp4": (42, 32)}
    durations = {"Drum/v_sync.mp4": 2.0, "Drum/v_rot.mp4": 1.0, "Violin/v_wide.mp4": 1.0,
                 "Violin/v_silent.mp4": 0.8}
    for rel, (w, h) in sizes.items():
        info = probe(out / rel)
        assert (info.width, info.height, info.rotation) == (w, h, 0), rel
        assert info.fps == pytest.approx(16)
        assert _video_duration(out / rel) == pytest.approx(durations[rel], abs=1 / 16), rel
        if rel.endswith("silent.mp4"):
            assert not info.has_audio and info.status == "warn"
        else:
            assert (info.audio_sample_rate, info.audio_channels) == (16000, 1), rel
            assert info.status == "ok", info.reason


def test_keyframe_interval(encoded: tuple[Path, list[Result]]) -> None:
    out, _ = encoded
    with av.open(str(out / "Drum" / "v_sync.mp4")) as c:
        keys = [p.is_keyframe for p in c.demux(c.streams.video[0]) if p.size]
    assert len(keys) == 32
    assert [i for i, k in enumerate(keys) if k] == [0, 8, 16, 24]


def test_rotation_applied_upright(encoded: tuple[Path, list[Result]]) -> None:
    """The bright top-left block of the stored frame, turned 90 degrees CCW, lands bottom-left."""
    out, _ = encoded
    with av.open(str(out / "Drum" / "v_rot.mp4")) as c:
        img = next(c.decode(video=0)).to_ndarray(format="rgb24").mean(axis=2)
    assert img.shape == (42, 32)
    assert img[-4:, :4].mean() > 200 and img[:4, :4].mean() < 150 and img[-4:, -4:].mean() < 150


def _event_times(path: Path) -> tuple[float, float]:
    """(time of the brightest frame, onset of the click) decoded as training sees them."""
    spec = ClipSpec(num_frames=32, fps=16, size=None, audio_seconds=2.0, sample_rate=16000)
    clip = decode_clip(path, start=0.0, spec=spec)
    flash = float(clip.frame_times[int(clip.video.mean(dim=(0, 2, 3)).argmax())])
    click = int(np.argmax(np.abs(clip.audio.numpy()) > 0.3)) / 16000
    return flash, click


def test_audio_video_stay_aligned(source: Path, encoded: tuple[Path, list[Result]]) -> None:
    out, _ = encoded
    flash_src, click_src = _event_times(source / "Drum" / "v_sync.mp4")
    flash, click = _event_times(out / "Drum" / "v_sync.mp4")
    assert flash_src == pytest.approx(FLASH_TIME, abs=1e-3) and flash == pytest.approx(FLASH_TIME, abs=1e-3)
    assert click_src == pytest.approx(FLASH_TIME, abs=0.005)
    assert click == pytest.approx(click_src, abs=0.003)  # within 3 ms of the source's alignment


def test_second_run_resumes(source: Path, encoded: tuple[Path, list[Result]]) -> None:
    out, _ = encoded
    outputs = sorted(out.rglob("*.mp4"))
    mtimes = [p.stat().st_mtime_ns for p in outputs]
    results, rows = reencode_collection(source, out, OPTS, workers=2, progress=False)
    assert sorted(r.status for r in results) == ["failed"] + ["skipped"] * 4
    assert [p.stat().st_mtime_ns for p in outputs] == mtimes
    assert len(rows) == 4 and len(read_manifest(out / "manifest.csv")) == 4


def test_manifest_input_cli(source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """From an index manifest: bad rows are skipped and counted, ids and labels carry over."""
    manifest = source / "index.jsonl"
    rows = index_collection(source, manifest, workers=1, progress=False)
    for r in rows:
        r.label = r.path.split("/")[0]
    write_manifest(rows, manifest)
    out = tmp_path / "out"
    argv = [str(manifest), "--out", str(out), "--short-side", "24", "--gop", "4", "--workers", "2",
            "--preset", "ultrafast", "--manifest-out", str(tmp_path / "enc.jsonl")]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "5 files: 4 encoded, 0 already done, 1 failed" in text and "bad in manifest" in text
    enc = {Path(r.path).relative_to(out).as_posix(): r for r in read_manifest(tmp_path / "enc.jsonl")}
    assert set(enc) == {"Drum/v_sync.mp4", "Drum/v_rot.mp4", "Violin/v_wide.mp4", "Violin/v_silent.mp4"}
    assert enc["Violin/v_wide.mp4"].label == "Violin" and enc["Drum/v_rot.mp4"].video_id == "v_rot"
    assert enc["Drum/v_sync.mp4"].fps == pytest.approx(25)  # --fps not given: the source's rate
    assert min(enc["Drum/v_sync.mp4"].width, enc["Drum/v_sync.mp4"].height) == 24


def test_missing_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main([str(tmp_path), "--out", str(tmp_path / "o"), "--gop", "0", "--quiet"]) == 2
    assert "--gop" in capsys.readouterr().err


def test_a_truncated_output_is_encoded_again_and_named(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    reencode_collection(source, out, OPTS, workers=1, progress=False)
    damaged = out / "Drum" / "v_sync.mp4"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # a copy cut short
    assert probe(damaged).status == "bad"
    results, rows = reencode_collection(source, out, OPTS, workers=1, progress=False)
    by_name = {Path(r.src).name: r for r in results}
    assert by_name["v_sync.mp4"].status == "done" and "damaged" in by_name["v_sync.mp4"].reason
    assert by_name["v_rot.mov"].status == "skipped"
    assert probe(damaged).status == "ok" and all(r.status != "bad" for r in rows)
    assert f"{damaged}: the existing output was damaged (truncated" in summarize(results, rows)


def test_summary_names_bad_outputs() -> None:
    from avlearn.data.manifest import VideoInfo

    rows = [VideoInfo("out/a.mp4", status="ok"), VideoInfo("out/b.mp4", status="bad", reason="truncated: x")]
    text = summarize([Result("a.mp4", "out/a.mp4", "done"), Result("b.mp4", "out/b.mp4", "done")], rows)
    assert "outputs: 1 ok, 0 warn, 1 bad" in text and "  out/b.mp4: truncated: x" in text
