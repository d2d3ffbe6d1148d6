"""AVClipDataset over a tiny indexed collection: filtering, samples, determinism, bad files, workers."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from avlearn.data.clips import ClipItem
from avlearn.data.dataset import AVClipDataset, FailureTracker, av_collate, sample_generator
from avlearn.data.decode import ClipSpec, decode_clip, read_audio
from avlearn.data.manifest import VideoInfo, read_manifest
from avlearn.media import write_av
from data_prep.index import index_collection

SR = 16000
SPEC = ClipSpec(num_frames=4, fps=8, size=32, audio_seconds=0.5, sample_rate=SR)  # 0.5 s of video and audio


def _clip(seconds: float, level: int, fps: int = 25) -> tuple[np.ndarray, np.ndarray]:
    n = round(seconds * fps)
    video = np.full((n, 48, 64, 3), level, np.uint8)
    video[:, :, :8] = (np.arange(n) * 5 % 255)[:, None, None, None]  # frames differ
    t = np.arange(round(seconds * SR)) / SR
    audio = (0.2 * np.sin(2 * np.pi * (200 + level) * t)).astype(np.float32)
    return video, audio


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """4 good clips (one only 0.5 s long), a corrupt file, a clip without audio, and one that is
    good when indexed and corrupted afterwards."""
    root = tmp_path_factory.mktemp("collection")
    for i, seconds in enumerate([2.0, 1.5, 3.0, 0.5]):
        video, audio = _clip(seconds, 40 + 40 * i)
        write_av(root / f"good{i}.mp4", video, 25, audio, SR)
    (root / "corrupt.mp4").write_text("not a video\n" * 50)
    write_av(root / "noaudio.mp4", _clip(1.0, 200)[0], 25, None)
    video, audio = _clip(2.0, 220)
    late = write_av(root / "late_bad.mp4", video, 25, audio, SR)
    index_collection(root, root / "manifest.csv", workers=1, progress=False)
    rows = read_manifest(root / "manifest.csv")  # absolute paths (the index writes relative ones)
    data = late.read_bytes()
    late.write_bytes(data[: len(data) // 2])  # corrupt after indexing: the manifest says ok
    by_name = {Path(r.path).name: r for r in rows}
    assert by_name["corrupt.mp4"].status == "bad"
    assert not by_name["noaudio.mp4"].has_audio
    assert by_name["late_bad.mp4"].usable_av
    return {"root": root, "manifest": root / "manifest.csv", "rows": rows, "late": str(late.resolve())}


def _rows(collection: dict[str, object], with_late_bad: bool = False) -> list[VideoInfo]:
    rows = collection["rows"]
    assert isinstance(rows, list)
    return [dataclasses.replace(r) for r in rows if with_late_bad or not r.path.endswith("late_bad.mp4")]


def test_filters_rows_and_logs_why(collection: dict[str, object], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="avlearn.data.dataset"):
        ds = AVClipDataset(collection["manifest"], SPEC, clips_per_video=3)  # type: ignore[arg-type]
    assert ds.num_videos == 5  # 4 good + late_bad (still ok in the manifest)
    assert len(ds) == 15
    assert {Path(v.path).name for v in ds.videos} == {"good0.mp4", "good1.mp4", "good2.mp4", "good3.mp4",
                                                      "late_bad.mp4"}
    text = caplog.text
    assert "kept 5 of 7" in text and "1 marked 'bad'" in text and "1 without an audio track" in text

    video_only = AVClipDataset(_rows(collection), SPEC, require_audio=False)
    assert video_only.num_videos == 5
    i = next(i for i, v in enumerate(video_only.videos) if not v.has_audio)
    sample = video_only[i]
    assert sample["audio"].shape == (SPEC.num_samples,) and float(sample["audio"].abs().max()) == 0.0


def test_no_usable_video_is_an_error(collection: dict[str, object]) -> None:
    bad = [r for r in _rows(collection) if not r.usable_av]
    with pytest.raises(ValueError, match="no usable video"):
        AVClipDataset(bad, SPEC)
    with pytest.raises(ValueError, match="valid: decord, pyav"):
        AVClipDataset(_rows(collection), SPEC, backend="opencv")


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_sample_keys_shapes_and_content(collection: dict[str, object], backend: str) -> None:
    ds = AVClipDataset(_rows(collection), SPEC, backend, clips_per_video=2, seed=3)
    assert len(ds) == 2 * 4
    for i in range(len(ds)):
        s = ds[i]
        assert set(s) == {"video", "audio", "index", "video_id", "start", "av_offset", "skipped", "failures",
                          "audio_padded"}
        assert s["video"].shape == (3, 4, 32, 43) and s["video"].dtype == torch.float32
        assert s["audio"].shape == (SR // 2,)
        assert s["index"] == i % 4 and s["video_id"] == ds.videos[s["index"]].video_id
        assert (s["skipped"], s["failures"], s["av_offset"]) == (0, [], 0.0)
        row = ds.videos[s["index"]]
        assert 0.0 <= s["start"] <= max(0.0, row.duration - 0.5) + 1e-9
        # The sample is the clip at its start: same pixels and audio as decoding it directly.
        clip = decode_clip(row.path, s["start"], SPEC, backend)
        torch.testing.assert_close(s["video"], clip.video)
        torch.testing.assert_close(s["audio"], clip.audio)
    short = next(i for i, v in enumerate(ds.videos) if v.duration < 0.6)
    assert ds[short]["start"] == 0.0  # a video no longer than the clip starts at 0


def test_deterministic_per_seed_and_epoch(collection: dict[str, object]) -> None:
    def starts(ds: AVClipDataset) -> list[float]:
        return [ds[i]["start"] for i in range(len(ds))]

    a = AVClipDataset(_rows(collection), SPEC, clips_per_video=3, seed=0, max_av_offset=0.2)
    b = AVClipDataset(_rows(collection), SPEC, clips_per_video=3, seed=0, max_av_offset=0.2)
    first = starts(a)
    assert first == starts(b)
    torch.testing.assert_close(a[5]["audio"], b[5]["audio"])
    assert len({round(x, 6) for x in first if x > 0}) > 4  # random starts, not a fixed grid
    a.set_epoch(1)
    assert a.epoch == 1
    second = starts(a)
    assert second != first
    assert [a[i]["av_offset"] for i in range(3)] != [b[i]["av_offset"] for i in range(3)]
    a.set_epoch(0)
    assert starts(a) == first
    other_seed = AVClipDataset(_rows(collection), SPEC, clips_per_video=3, seed=1)
    assert starts(other_seed) != first
    # The generator stream depends on every key.
    draws = {float(torch.rand((), generator=sample_generator(*k))) for k in [(0, 0, 0), (0, 0, 1), (0, 1, 0),
                                                                              (1, 0, 0)]}
    assert len(draws) == 4


def test_av_offset_within_bounds_and_applied(collection: dict[str, object]) -> None:
    ds = AVClipDataset(_rows(collection), SPEC, clips_per_video=10, max_av_offset=0.5, seed=7)
    offsets = np.array([ds[i]["av_offset"] for i in range(len(ds))])
    assert np.all(np.abs(offsets) <= 0.5)
    assert offsets.min() < -0.2 and offsets.max() > 0.2  # spread over the range
    s = ds[1]
    row = ds.videos[s["index"]]
    clip = decode_clip(row.path, s["start"], dataclasses.replace(SPEC, audio_offset=s["av_offset"]))
    torch.testing.assert_close(s["audio"], clip.audio)
    synced = decode_clip(row.path, s["start"], SPEC)
    torch.testing.assert_close(s["video"], synced.video)  # only the audio moves


def test_transforms_get_the_sample_generator(collection: dict[str, object]) -> None:
    def flip(video: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return video.flip(-1) if float(torch.rand((), generator=g)) < 0.5 else video

    def spectrogram(wav: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        gain = 0.5 + float(torch.rand((), generator=g))
        spec = torch.stft(wav * gain, n_fft=256, hop_length=128, window=torch.hann_window(256),
                          return_complex=True).abs()
        return spec[None]  # (1, F, T)

    def make() -> AVClipDataset:
        return AVClipDataset(_rows(collection), SPEC, clips_per_video=2, seed=1,
                             video_transform=flip, audio_transform=spectrogram)

    a, b = make(), make()
    for i in range(len(a)):
        torch.testing.assert_close(a[i]["video"], b[i]["video"])
        torch.testing.assert_close(a[i]["audio"], b[i]["audio"])
    batch = av_collate([a[i] for i in range(4)])
    assert batch["audio"].shape == (4, 1, 129, 63)
    assert batch["video"].shape == (4, 3, 4, 32, 43)


def test_labels(collection: dict[str, object]) -> None:
    rows = _rows(collection)
    for r in rows:
        r.label = "loud" if "good2" in r.path else "quiet"
    ds = AVClipDataset(rows, SPEC)
    assert ds.class_to_idx == {"loud": 0, "quiet": 1}
    labels = {Path(ds.videos[i].path).name: ds[i]["label"] for i in range(len(ds))}
    assert labels["good2.mp4"] == 0 and labels["good0.mp4"] == 1
    with pytest.raises(ValueError, match="not in class_to_idx"):
        AVClipDataset(rows, SPEC, class_to_idx={"loud": 0})


def test_bad_file_is_replaced_logged_and_reported(collection: dict[str, object],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    late = str(collection["late"])
    ds = AVClipDataset(_rows(collection, with_late_bad=True), SPEC, clips_per_video=2, seed=0)
    bad = next(i for i, v in enumerate(ds.videos) if v.path == late)
    with caplog.at_level(logging.WARNING, logger="avlearn.data.dataset"):
        s = ds[bad]
        again = ds[bad + ds.num_videos]  # the same bad video, second clip
    assert s["skipped"] >= 1 and s["failures"][0][0] == late
    assert s["index"] != bad and ds.videos[s["index"]].path != late
    assert s["video"].shape == (3, 4, 32, 43)
    assert again["skipped"] >= 1
    warnings = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(warnings) == 1 and late in warnings[0]  # logged once per file, naming it and why
    assert "not a readable media file" in warnings[0]
    # The replacement is deterministic.
    s2 = AVClipDataset(_rows(collection, with_late_bad=True), SPEC, clips_per_video=2, seed=0)[bad]
    assert (s2["index"], s2["start"]) == (s["index"], s["start"])

    tracker = FailureTracker()
    tracker.update(av_collate([ds[i] for i in range(len(ds))]))
    assert tracker.clips == len(ds) and tracker.replaced == 2
    assert tracker.bad_paths == [late]
    report = tracker.report(epoch=3)
    assert report.startswith("epoch 3: 2 of 10 clips replaced") and late in report
    tracker.reset()
    assert tracker.report() == "no decode failures in 0 clips"


def test_too_many_failures_raise(collection: dict[str, object]) -> None:
    rows = [r for r in _rows(collection, with_late_bad=True) if r.path == collection["late"]]
    ds = AVClipDataset(rows, SPEC, max_retries=2)
    with pytest.raises(RuntimeError, match="failed 3 times in a row.*late_bad.mp4"):
        ds[0]


def _epoch_batches(loader: DataLoader[dict[str, object]], tracker: FailureTracker) -> list[dict[str, object]]:
    batches = list(loader)
    for batch in batches:
        tracker.update(batch)
    return batches


def test_dataloader_workers_aggregate_failures(collection: dict[str, object]) -> None:
    late = str(collection["late"])
    ds = AVClipDataset(_rows(collection, with_late_bad=True), SPEC, clips_per_video=2, seed=5)
    serial = FailureTracker()
    reference = _epoch_batches(DataLoader(ds, batch_size=3, collate_fn=av_collate), serial)
    tracker = FailureTracker()
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=av_collate)
    batches = _epoch_batches(loader, tracker)
    assert [b["video_id"] for b in batches] == [b["video_id"] for b in reference]
    for got, ref in zip(batches, reference, strict=True):
        torch.testing.assert_close(got["video"], ref["video"])
        torch.testing.assert_close(got["start"], ref["start"])
    assert tracker.clips == len(ds) == 10
    assert tracker.replaced == 2 and tracker.bad_paths == [late]  # both clips of late_bad, from either worker
    assert "2 of 10 clips replaced" in tracker.report(0)


@pytest.mark.parametrize("context", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])
def test_persistent_workers_follow_set_epoch(collection: dict[str, object], context: str) -> None:
    ds = AVClipDataset(_rows(collection), SPEC, clips_per_video=1, seed=2, max_av_offset=0.3)
    expected = {}
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        expected[epoch] = [ds[i]["start"] for i in range(len(ds))]
    assert expected[0] != expected[1]
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=av_collate, persistent_workers=True,
                        multiprocessing_context=context)
    for epoch in (0, 1, 0):
        ds.set_epoch(epoch)
        starts = torch.cat([b["start"] for b in loader]).tolist()
        assert starts == pytest.approx(expected[epoch])


def test_transform_errors_are_not_bad_files(collection: dict[str, object]) -> None:
    def broken(video: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        raise TypeError("bug in a transform")

    ds = AVClipDataset(_rows(collection), SPEC, video_transform=broken)
    with pytest.raises(TypeError, match="bug in a transform"):
        ds[0]


def test_shifted_start_keeps_the_gap_or_takes_the_farthest_window(collection: dict[str, object]) -> None:
    ds = AVClipDataset(_rows(collection), SPEC, shifted_audio=1.0)  # windows of 0.5 s
    gen = torch.Generator().manual_seed(0)
    # 2 s video: starts in [0, 1.5]; 1 s away from 0.2 leaves only [1.2, 1.5]
    starts = [ds.clips.shifted_start(0.2, 2.0, gen) for _ in range(200)]
    assert min(starts) >= 1.2 and max(starts) <= 1.5 and max(starts) - min(starts) > 0.2
    # both sides allowed, drawn in proportion to their lengths ([0, 0.5] and [2.5, 3.5])
    both = np.array([ds.clips.shifted_start(1.5, 4.0, gen) for _ in range(400)])
    assert np.all((both <= 0.5) | (both >= 2.5)) and np.all((both >= 0) & (both <= 3.5))
    assert 0.2 < np.mean(both <= 0.5) < 0.5
    # too short for the gap: the farthest window (end or start)
    assert ds.clips.shifted_start(0.7, 2.0, gen) == 1.5
    assert ds.clips.shifted_start(0.9, 2.0, gen) == 0.0


def test_shifted_audio_is_the_same_video_elsewhere(tmp_path: Path) -> None:
    # a rising tone: every window of the file sounds different
    seconds, fps = 3.0, 25
    video = np.full((round(seconds * fps), 32, 32, 3), 90, np.uint8)
    t = np.arange(round(seconds * SR)) / SR
    audio = (0.5 * (t / seconds) * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    write_av(tmp_path / "ramp.mp4", video, fps, audio, SR)
    index_collection(tmp_path, tmp_path / "m.csv", workers=1, progress=False)
    ds = AVClipDataset(tmp_path / "m.csv", SPEC, clips_per_video=6, shifted_audio=0.8, seed=1)
    shifts = []
    for i in range(len(ds)):
        s = ds[i]
        assert s["audio_shifted"].shape == s["audio"].shape
        own = s["start"] + SPEC.video_seconds / 2 - SPEC.audio_seconds / 2  # centred window
        path = ds.videos[s["index"]].path
        # read from the file the clip was decoded from, still open: after a seek, an AAC decoder that
        # already decoded the clip's own window gives samples within ~1e-4 of a fresh open's
        torch.testing.assert_close(s["audio_shifted"], read_audio(path, own + s["shift"], 0.5, SR),
                                   atol=2e-4, rtol=0)
        assert abs(s["shift"]) >= 0.8 - 1e-9
        # louder later: the level follows the shift
        ratio = float(s["audio_shifted"].pow(2).mean() / s["audio"].pow(2).mean())
        assert (ratio > 1) == (s["shift"] > 0)
        shifts.append(s["shift"])
    assert min(shifts) < 0 < max(shifts)  # both directions
    again = AVClipDataset(tmp_path / "m.csv", SPEC, clips_per_video=6, shifted_audio=0.8, seed=1)
    torch.testing.assert_close(again[3]["audio_shifted"], ds[3]["audio_shifted"])  # deterministic
    plain = AVClipDataset(tmp_path / "m.csv", SPEC, clips_per_video=6, seed=1)
    assert "audio_shifted" not in plain[0]
    with pytest.raises(ValueError, match="shifted_audio"):
        AVClipDataset(tmp_path / "m.csv", SPEC, shifted_audio=-1.0)


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_fused_transform_gets_the_decoders_uint8_frames(collection: dict[str, object], backend: str) -> None:
    from avlearn.data.transforms import VideoAugConfig, build_video_transform

    if backend == "decord":
        pytest.importorskip("decord")
    fused = build_video_transform(VideoAugConfig(size=24, hue_mode="yiq", fused=True), train=True)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    class Recorder:  # the fused chain, keeping what it was given
        uint8_input = fused.uint8_input

        def __call__(self, video: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            seen.append((video, g.get_state()))
            return fused(video, g)

    ds = AVClipDataset(_rows(collection), SPEC, backend, seed=3, video_transform=Recorder())
    assert ds.spec.uint8_frames and not SPEC.uint8_frames
    s = ds[0]
    assert s["video"].shape == (3, 4, 24, 24) and s["video"].dtype == torch.float32
    raw, state = seen[0]
    assert raw.dtype == torch.uint8  # the exact 8-bit frames of the float decode
    row = ds.videos[s["index"]]
    torch.testing.assert_close(raw.float() / 255, decode_clip(row.path, s["start"], SPEC, backend).video)
    torch.testing.assert_close(s["video"], fused(raw, torch.Generator().set_state(state)))


def test_clips_with_padded_silence_are_counted_and_named(tmp_path: Path) -> None:
    from avlearn.data.probe import probe
    from tests.data_prep.odd_media import write_sound_oddities

    row = probe(write_sound_oddities(tmp_path)["audio_shorter"])  # 10 s of video, 3 s of audio
    spec = ClipSpec(num_frames=4, fps=4, size=32, audio_seconds=1.0, sample_rate=SR)
    ds = AVClipDataset([row], spec, clips_per_video=12, seed=0)
    tracker = FailureTracker()
    batch = av_collate([ds[i] for i in range(len(ds))])
    tracker.update(batch)
    # the audio window is [start, start + 1 s): it runs past the 3 s track when start > 2 s
    expected = sum(1 for s in batch["start"].tolist() if s + 1.0 - 3.0 > 0.1)
    assert 0 < expected < len(ds)
    assert tracker.padded == expected
    padded = batch["audio_padded"]
    want = (batch["start"].double() - 2.0).clamp(0.0, 1.0)  # seconds of the 1 s window past 3 s
    assert torch.allclose(padded.double(), want, atol=0.07), (padded, want)  # AAC frame slack
    report = tracker.report(0)
    assert f"{expected} of 12 clips had silence padded into their audio" in report
    assert f"{row.video_id} x{expected}" in report


def test_fps_choices_draw_each_clips_rate_and_keep_it_in_the_video(collection: dict[str, object]) -> None:
    """4 frames at 2 fps (2 s) or 8 fps (0.5 s) from a 3 s file: both rates occur, every clip fits."""
    row = next(r for r in _rows(collection) if r.path.endswith("good2.mp4"))
    spec = dataclasses.replace(SPEC, audio_seconds=0.0)
    mixed = AVClipDataset([row], spec, "pyav", fps_choices=(2, 8))
    plain = AVClipDataset([row], spec, "pyav")
    steps: dict[str, set[float]] = {"mixed": set(), "plain": set()}
    for i in range(24):
        for name, ds in (("mixed", mixed), ("plain", plain)):
            clip, _, _ = ds.clips.decode(ClipItem(row, 0, row.path), torch.Generator().manual_seed(i))
            assert clip.video.shape[1] == 4 and clip.frame_times[-1] <= 3.0
            step = float(np.diff(clip.frame_times).mean())  # the file's 25 fps frames nearest each time
            steps[name].add(min((0.5, 0.125), key=lambda s: abs(s - step)))
            assert min(abs(step - 0.5), abs(step - 0.125)) < 0.02
    assert steps == {"mixed": {0.5, 0.125}, "plain": {0.125}}
    with pytest.raises(ValueError, match="fps_choices"):
        AVClipDataset([row], spec, "pyav", fps_choices=(0, 8))
