"""``avlearn prepare shard --format frames``: members and offsets as documented, bad files left out with
the reason, ``--frame-rate``, resume after an interruption."""

from __future__ import annotations

import dataclasses
import itertools
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from avlearn.cli import main as cli_main
from avlearn.data.decoding.frames import nearest
from avlearn.data.frame_shards import PCM_SCALE, decode_jpegs
from avlearn.data.manifest import read_manifest
from data_prep.frame_shard import describe
from data_prep.shard import ShardOptions, write_shards
from tests.data.frame_helpers import frames_packing, make_collection, write_frames


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 clips (the last with 44.1 kHz audio); the third overwritten with garbage after indexing."""
    path = make_collection(tmp_path_factory.mktemp("clips"), rates=(16000, 16000, 16000, 44100))
    Path(read_manifest(path)[2].path).write_bytes(b"not a video at all" * 10)
    return path


def _members(tar: Path) -> dict[str, tuple[int, bytes]]:
    with tarfile.open(tar) as tf:
        return {m.name: (m.offset_data, tf.extractfile(m).read())  # type: ignore[union-attr]
                for m in tf.getmembers()}


def test_cli_writes_the_documented_layout(manifest: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["prepare", "shard", str(manifest), "--out", str(tmp_path), "--format", "frames",
            "--decode-size", "32", "--samples-per-shard", "2", "--workers", "1"]
    assert cli_main(argv) == 0
    index = json.loads((tmp_path / "index.json").read_text())
    rows = read_manifest(manifest)
    assert index["format"] == "avlearn-frames/1" and index["num_samples"] == 3
    assert index["frames"] == {"decode_size": 32, "frame_rate": 0.0, "quality": 90, "sample_rate": 16000}
    (failure,) = index["failures"]
    assert failure["path"] == rows[2].path and failure["reason"].startswith("cannot decode: ")
    assert "1 file(s) left out" in capsys.readouterr().out
    kept = [rows[0], rows[1], rows[3]]
    for shard in index["shards"]:
        members = _members(tmp_path / shard["name"])
        for k, entry in enumerate(shard["samples"]):
            g = shard["first_index"] + k
            key = f"{g:09d}"
            names = sorted(m for m in members if m.startswith(key))
            assert names == [f"{key}.{suffix}" for suffix in ("jpgs", "json", "pcm")]
            for suffix in ("json", "jpgs", "pcm"):  # the index's offsets point at the members' data
                offset, data = members[f"{key}.{suffix}"]
                assert entry[suffix] == [offset, len(data)]
            record = json.loads(members[f"{key}.json"][1])
            assert (record["index"], record["video_id"]) == (g, kept[g].video_id)
            starts = np.cumsum([0, *record["frame_bytes"]])
            jpgs = torch.frombuffer(bytearray(members[f"{key}.jpgs"][1]), dtype=torch.uint8)
            frames = decode_jpegs([jpgs[a:b] for a, b in itertools.pairwise(starts)])
            every = 40 + 5 * int(Path(kept[g].path).stem[-2:])  # the clip's frames: all of them stored
            assert frames.shape == (len(record["frame_times"]), 32, 43, 3) == (every, 32, 43, 3)
            pcm = np.frombuffer(members[f"{key}.pcm"][1], dtype="<i2")
            seconds = record["video_duration"]
            assert len(pcm) == record["audio_samples"] == pytest.approx(seconds * 16000, abs=400)
            assert 0.1 < np.abs(pcm / PCM_SCALE).max() < 0.5  # the tone and noise, int16 of [-1, 1)
    assert cli_main(argv) == 0 and "up to date" in capsys.readouterr().out
    assert cli_main([*argv, "--short-side", "16", "--overwrite"]) == 2
    assert "--decode-size" in capsys.readouterr().err


def test_frame_rate_keeps_the_frames_nearest_to_its_grid(manifest: Path, tmp_path: Path) -> None:
    index = write_frames(manifest, tmp_path, samples_per_shard=5, frame_rate=10.0)
    first = index["shards"][0]["samples"][0]
    with open(tmp_path / "shard-000000.tar", "rb") as fh:
        fh.seek(first["json"][0])
        record = json.loads(fh.read(first["json"][1]))
    # 40 frames at 25 fps (0 .. 1.56 s, the video lasts 1.6 s): the clip decoder's rule picks, for each
    # k / 10 s up to 1.6 s, the nearest frame (0.1 s: 0.08 and 0.12 tie, the later one wins)
    times = np.arange(40) / 25
    expected = np.unique(times[nearest(times, np.arange(17) / 10)])
    assert record["frame_times"] == pytest.approx(expected.tolist())
    assert record["frame_times"][:3] == pytest.approx([0.0, 0.12, 0.2])


def test_resume_after_interruption_gives_the_same_shards(manifest: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    whole = write_frames(manifest, tmp_path / "whole", samples_per_shard=1)
    packing, described = frames_packing(), []

    def third_shard_interrupts(tar: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
        described.append(tar)  # Ctrl-C while the third shard closes
        if len(described) == 3:
            raise KeyboardInterrupt
        return describe(tar, records)

    with pytest.raises(KeyboardInterrupt):
        write_shards(manifest, tmp_path / "cut", ShardOptions(samples_per_shard=1), progress=False,
                     packing=dataclasses.replace(packing, describe=third_shard_interrupts))
    assert len(json.loads((tmp_path / "cut" / "index.partial.json").read_text())["shards"]) == 2
    done = write_frames(manifest, tmp_path / "cut", samples_per_shard=1)
    assert done == whole | {"manifest": done["manifest"]}
    for shard in done["shards"]:
        name = shard["name"]
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
