"""``prepare index``: every odd file gets the right status and reason, metadata is exact, never fatal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from avlearn.data import probe as probe_module
from avlearn.data.executor import parallel_map
from avlearn.data.manifest import VideoInfo, read_manifest
from avlearn.data.pool import CRASH_MESSAGE
from avlearn.data.probe import failed_row, probe
from avlearn.media import write_av
from data_prep.index import index_collection, main, summarize
from tests.data_prep.odd_media import frames, tone, write_odd_media, write_sound_oddities

# kind -> (status, reason categories). Each odd file has exactly one oddity.
EXPECTED: dict[str, tuple[str, set[str]]] = {
    "normal": ("ok", set()),
    "normal_mkv": ("ok", set()),
    "good_30fps": ("ok", set()),
    "zero_bytes": ("bad", {"empty file"}),
    "truncated": ("bad", {"truncated or corrupt"}),
    "truncated_mkv": ("bad", {"truncated"}),
    "not_video": ("bad", {"not a media file"}),
    "audio_only": ("bad", {"no video track"}),
    "one_frame": ("bad", {"single video frame"}),
    "no_audio": ("warn", {"no audio track"}),
    "vfr": ("warn", {"variable frame rate"}),
    "audio_8k": ("warn", {"low audio sample rate"}),
    "audio_51": ("warn", {"multichannel audio"}),
    "rotated": ("warn", {"rotated"}),
    "uhd_4k": ("warn", {"large frames"}),
}


def _categories(row: VideoInfo) -> set[str]:
    return {part.split(":", 1)[0] for part in row.reason.split("; ") if part}


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("collection")
    files = write_odd_media(root)
    files["good_30fps"] = write_av(root / "good" / "good_30fps.mp4", frames(45, 96, 64), 30,
                                   tone(1.5, 48000, channels=2), 48000)
    return files


@pytest.fixture(scope="module")
def indexed(collection: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, VideoInfo]:
    out = tmp_path_factory.mktemp("manifest") / "manifest.csv"
    root = collection["normal"].parent
    rows = index_collection(root, out, workers=2, progress=False)
    by_path = {Path(r.path): r for r in rows}  # absolute: the manifest is outside the collection
    assert len(rows) == len(EXPECTED)
    return {kind: by_path[collection[kind].resolve()] for kind in EXPECTED}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_status_and_reason_per_kind(indexed: dict[str, VideoInfo], kind: str) -> None:
    row = indexed[kind]
    status, categories = EXPECTED[kind]
    assert (row.status, _categories(row)) == (status, categories), row.reason


def test_metadata_matches_what_was_written(indexed: dict[str, VideoInfo]) -> None:
    normal = indexed["normal"]  # 2 s, 25 fps, 64x48, 44.1 kHz stereo
    assert normal.num_frames == 50 and normal.fps == pytest.approx(25)
    assert normal.duration == pytest.approx(2.0, abs=0.05)
    assert (normal.width, normal.height, normal.rotation) == (64, 48, 0)
    assert (normal.has_video, normal.has_audio) == (True, True)
    assert (normal.audio_sample_rate, normal.audio_channels) == (44100, 2)
    assert (normal.video_codec, normal.audio_codec) == ("h264", "aac")
    good = indexed["good_30fps"]
    assert (good.num_frames, good.width, good.height) == (45, 96, 64)
    assert good.fps == pytest.approx(30) and good.duration == pytest.approx(1.5, abs=0.05)
    assert (good.audio_sample_rate, good.audio_channels) == (48000, 2)
    assert (indexed["audio_8k"].audio_sample_rate, indexed["audio_51"].audio_channels) == (8000, 6)
    assert indexed["rotated"].rotation == 90
    uhd = indexed["uhd_4k"]
    assert (uhd.width, uhd.height, uhd.num_frames) == (3840, 2160, 2)
    assert indexed["no_audio"].has_audio is False and indexed["no_audio"].audio_sample_rate == 0
    assert indexed["audio_only"].has_video is False and indexed["one_frame"].num_frames == 1
    assert indexed["vfr"].num_frames == 40
    # usable_av: decodable video with audio
    assert indexed["normal"].usable_av and not indexed["no_audio"].usable_av
    assert not indexed["truncated_mkv"].usable_av


def test_video_ids_unique_for_clashing_stems(indexed: dict[str, VideoInfo]) -> None:
    assert indexed["normal"].video_id == "normal"
    assert indexed["normal_mkv"].video_id == "sub/normal"
    ids = [r.video_id for r in indexed.values()]
    assert len(ids) == len(set(ids))


def test_summary_counts(indexed: dict[str, VideoInfo]) -> None:
    text = summarize(list(indexed.values()))
    assert text.splitlines()[0] == f"{len(EXPECTED)} files: 3 ok, 6 warn, 6 bad"
    assert "     2  truncated" not in text  # "truncated" and "truncated or corrupt" are separate
    for category in ("empty file", "variable frame rate", "large frames", "no video track"):
        assert f"  {category}" in text
    assert "bad files (6):" in text


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_manifest_round_trip(collection: dict[str, Path], tmp_path: Path, suffix: str) -> None:
    paths = [collection[k] for k in ("normal", "rotated", "zero_bytes")]
    out = tmp_path / f"m{suffix}"
    rows = index_collection(paths, out, workers=1, progress=False)
    back = read_manifest(out)
    assert len(back) == 3
    for a, b in zip(rows, back, strict=True):
        assert Path(b.path) == Path(a.path).resolve()  # absolute: the files are outside tmp_path
        b.path = a.path
        assert a == b


def test_paths_relative_to_manifest_folder(collection: dict[str, Path]) -> None:
    root = collection["normal"].parent
    out = root / "relative.jsonl"
    try:
        rows = index_collection([collection["normal_mkv"]], out, workers=1, progress=False)
        assert rows[0].path == "sub/normal.mkv"  # the collection can move with its manifest
        assert Path(read_manifest(out)[0].path) == collection["normal_mkv"].resolve()
    finally:
        out.unlink(missing_ok=True)


def test_list_file_input(collection: dict[str, Path], tmp_path: Path) -> None:
    listing = tmp_path / "videos.txt"
    rel = os.path.relpath(collection["vfr"], tmp_path)
    listing.write_text(f"# comment\n{collection['normal']}\n\n{rel}\n{tmp_path / 'gone.mp4'}\n")
    rows = index_collection(listing, tmp_path / "m.csv", workers=2, progress=False)
    assert [r.status for r in rows] == ["ok", "warn", "bad"]
    assert rows[2].reason.startswith("missing: ")  # a missing entry of a list is a bad row, not an error


def test_cli_prints_counts(
    collection: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.csv"
    args = [str(collection["normal"]), str(collection["one_frame"]), "--out", str(out), "--workers", "2"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "2 files: 1 ok, 0 warn, 1 bad" in text and "single video frame" in text
    assert len(read_manifest(out)) == 2


def test_missing_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no_such_folder"
    assert main([str(missing), "--out", str(tmp_path / "m.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "input not found" in err and str(missing) in err
    assert not (tmp_path / "m.csv").exists()
    assert main([str(tmp_path), "--out", str(tmp_path / "m.txt"), "--quiet"]) == 2
    assert ".csv or .jsonl" in capsys.readouterr().err


def _explode(path: Path) -> VideoInfo:
    raise RuntimeError(f"unexpected failure on {path.name}")


def test_unexpected_exception_becomes_bad_row(
    collection: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(probe_module, "_probe", _explode)
    row = probe(collection["normal"])
    assert row.status == "bad" and row.reason.startswith("probe failed: RuntimeError: unexpected failure")


def _probe_or_die(path: Path) -> VideoInfo:
    """Kills its worker process for files named boom*: what an FFmpeg segfault does."""
    if path.name.startswith("boom"):
        os._exit(3)
    return probe(path)


def test_worker_crash_does_not_kill_the_run(collection: dict[str, Path], tmp_path: Path) -> None:
    boom = tmp_path / "boom.mp4"
    boom.write_bytes(b"x")
    good = [collection[k] for k in ("normal", "normal_mkv", "no_audio", "vfr", "rotated")]
    paths = [*good[:2], boom, *good[2:]]
    rows = parallel_map(_probe_or_die, paths, 2, failed_row, progress=False)
    assert [Path(r.path) for r in rows] == paths
    assert rows[2].status == "bad" and CRASH_MESSAGE in rows[2].reason
    assert [r.status for r in rows[:2] + rows[3:]] == ["ok", "ok", "warn", "warn", "warn"]


def test_empty_folder_is_an_error_not_an_empty_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    out = tmp_path / "m.csv"
    assert main([str(folder), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"no video file found in {folder}" in err and "no manifest written" in err
    assert not out.exists()  # so a later `pretrain data.manifest=m.csv` says "no such file", not 0 rows


def test_skipped_files_are_listed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "mixed"
    write_av(folder / "song.m4a", None, 25, tone(0.5, 16000), 16000)
    (folder / "notes.txt").write_text("not media\n")
    write_av(folder / "clip.mp4", frames(10), 25, tone(0.4, 16000), 16000)
    with caplog.at_level("WARNING", logger="data_prep.index"):
        rows = index_collection(folder, tmp_path / "m.csv", workers=1, progress=False)
    assert len(rows) == 1
    text = caplog.text
    assert "skipped 2 file(s)" in text and "1 .m4a" in text and "--extensions" in text
    assert str(folder / "song.m4a") in text and str(folder / "notes.txt") in text



@pytest.fixture(scope="module")
def sound_oddities(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_sound_oddities(tmp_path_factory.mktemp("sound"))


def test_duration_mismatch_is_a_warning_naming_both_durations(
    sound_oddities: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sound_oddities["audio_shorter"]
    assert main([str(path), "--out", str(tmp_path / "m.csv"), "--workers", "1"]) == 0
    (row,) = read_manifest(tmp_path / "m.csv")
    assert row.status == "warn" and _categories(row) == {"audio/video duration mismatch"}
    assert "audio 3.00 s" in row.reason and "video 10.00 s" in row.reason
    assert "clips past 3.00 s get padded silence" in row.reason
    assert row.has_audio  # still usable: the dataset counts the clips that get padded silence
    assert f"{path}: audio/video duration mismatch" in capsys.readouterr().out  # named in the summary


def test_silent_track_is_flagged_unless_the_check_is_off(
    sound_oddities: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "m.csv"
    args = [str(sound_oddities["silent_audio"]), "--out", str(out), "--workers", "1", "--quiet"]
    assert main(args) == 0
    (row,) = read_manifest(tmp_path / "m.csv")
    assert row.status == "warn" and _categories(row) == {"silent audio"} and "-inf dBFS" in row.reason
    assert main([*args, "--no-silence-check"]) == 0
    assert read_manifest(tmp_path / "m.csv")[0].status == "ok"
