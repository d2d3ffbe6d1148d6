"""``avlearn prepare shard``: records, the shard index, failures left out, resume, a changed manifest."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import av
import pytest

import data_prep.shard as shard_module
from avlearn.cli import main as cli_main
from avlearn.data.manifest import read_manifest
from data_prep.shard import ShardOptions, write_shards
from tests.data.shard_helpers import make_collection


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 clips; one deleted after indexing (the manifest still lists it as ok)."""
    path = make_collection(tmp_path_factory.mktemp("collection"), 7)
    rows = read_manifest(path)
    Path(rows[2].path).unlink()
    return path


def _members(tar: Path) -> dict[str, bytes]:
    with tarfile.open(tar) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers()}  # type: ignore[union-attr]


def test_records_index_and_failures(manifest: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    rows = read_manifest(manifest)
    boxes = {rows[0].video_id: [[0.1, 0.2, 0.5, 0.6]]}
    index = write_shards(manifest, tmp_path, ShardOptions(samples_per_shard=4), boxes=boxes)
    assert json.loads((tmp_path / "index.json").read_text()) == index
    assert index["manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    ranges = [(s["num_samples"], s["first_index"], s["end_index"]) for s in index["shards"]]
    assert ranges == [(4, 0, 4), (2, 4, 6)]
    assert [f["path"] for f in index["failures"]] == [rows[2].path]
    assert "OSError" in index["failures"][0]["reason"] or "FileNotFound" in index["failures"][0]["reason"]
    assert index["classes"] == ["c0", "c1", "c2"]
    assert "6 samples in 2 shard(s)" in capsys.readouterr().out
    kept = [r for i, r in enumerate(rows) if i != 2]
    members = {**_members(tmp_path / "shard-000000.tar"), **_members(tmp_path / "shard-000001.tar")}
    for g, row in enumerate(kept):
        record = json.loads(members[f"{g:09d}.json"])
        assert members[f"{g:09d}.mp4"] == Path(row.path).read_bytes()
        assert (record["video_id"], record["index"], record["label"]) == (row.video_id, g, row.label)
        assert record["duration"] == pytest.approx(row.duration) and record["fps"] == pytest.approx(row.fps)
        assert ("boxes" in record) == (g == 0)
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_resume_after_interruption_gives_the_same_shards(manifest: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    opts = ShardOptions(samples_per_shard=2)
    whole = tmp_path / "whole"
    write_shards(manifest, whole, opts, progress=False)
    cut = tmp_path / "cut"
    original = shard_module._ShardCutter.close
    calls = []

    def close_twice_then_die(self: shard_module._ShardCutter, next_row: int) -> None:
        calls.append(next_row)
        if len(calls) == 3:
            raise KeyboardInterrupt
        original(self, next_row)

    monkeypatch.setattr(shard_module._ShardCutter, "close", close_twice_then_die)
    with pytest.raises(KeyboardInterrupt):
        write_shards(manifest, cut, opts, progress=False)
    monkeypatch.undo()
    partial = json.loads((cut / "index.partial.json").read_text())
    assert len(partial["shards"]) == 2 and not (cut / "index.json").exists()
    done = write_shards(manifest, cut, opts, progress=False)
    assert done == json.loads((whole / "index.json").read_text()) | {"manifest": done["manifest"]}
    for shard in done["shards"]:
        assert (cut / shard["name"]).read_bytes() == (whole / shard["name"]).read_bytes()
    assert sorted(p.name for p in cut.iterdir()) == sorted(p.name for p in whole.iterdir())


def test_changed_manifest_is_refused(manifest: Path, tmp_path: Path) -> None:
    write_shards(manifest, tmp_path / "out", ShardOptions(samples_per_shard=3), progress=False)
    other = tmp_path / "other.csv"
    other.write_text(manifest.read_text().replace("c0", "cX"))
    (tmp_path / "out" / "index.json").rename(tmp_path / "out" / "index.partial.json")
    with pytest.raises(ValueError, match="--overwrite"):
        write_shards(other, tmp_path / "out", ShardOptions(samples_per_shard=3), progress=False)
    index = write_shards(other, tmp_path / "out", ShardOptions(samples_per_shard=3), overwrite=True,
                         progress=False)
    assert index["classes"] == ["c1", "c2", "cX"]


def test_cli(manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["prepare", "shard", str(manifest), "--out", str(tmp_path), "--samples-per-shard", "5",
                     "--quiet"])
    assert code == 0
    index = json.loads((tmp_path / "index.json").read_text())
    assert [s["num_samples"] for s in index["shards"]] == [5, 1]
    assert cli_main(["prepare", "shard", str(manifest), "--out", str(tmp_path)]) == 2  # other options
    assert "--overwrite" in capsys.readouterr().err


def test_reencode_option(manifest: Path, tmp_path: Path) -> None:
    opts = ShardOptions(samples_per_shard=10, short_side=16)
    index = write_shards(manifest, tmp_path, opts, progress=False)
    members = _members(tmp_path / "shard-000000.tar")

    with av.open(io.BytesIO(members["000000000.mp4"])) as container:
        stream = container.streams.video[0]
        assert min(stream.codec_context.width, stream.codec_context.height) == 16
    assert index["num_samples"] == 6
