"""The clip maker: every dataset returns exactly the samples it returned before the maker (recorded in
``clip_records.json``), and the source contract's retry loop counts, names and logs failures."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from avlearn.data.clips import AVClips, ClipItem
from avlearn.data.manifest import VideoInfo
from tests.data.clip_records import SPEC, make_media, records

RECORDED = Path(__file__).with_name("clip_records.json")


def _same(new: Any, old: Any, where: str) -> None:
    """Equal records; tensor means to 1e-3 (another FFmpeg may encode the test videos a little
    differently), failure reasons up to FFmpeg's own wording in parentheses."""
    if isinstance(old, dict) and set(old) == {"shape", "mean"}:
        assert new["shape"] == old["shape"], where
        assert math.isclose(new["mean"], old["mean"], abs_tol=1e-3), where
    elif isinstance(old, dict):
        assert sorted(new) == sorted(old), where
        for key in old:
            _same(new[key], old[key], f"{where}.{key}")
    elif isinstance(old, list):
        assert len(new) == len(old), where
        for i, (a, b) in enumerate(zip(new, old, strict=True)):
            _same(a, b, f"{where}[{i}]")
    elif isinstance(old, str):
        assert new.split(" (")[0] == old.split(" (")[0], where
    else:
        assert new == old, where


def test_datasets_return_the_samples_recorded_before_the_clip_maker(tmp_path: Path) -> None:
    make_media(tmp_path)
    old = json.loads(RECORDED.read_text())
    new = records(tmp_path)
    assert sorted(new) == sorted(old)
    _same(new, old, "records")
    replaced = [s for s in new["labelled_eval"] if s["failures"]]
    assert replaced and all(s["failures"][0][0] == "videos/c0_v03.mp4" for s in replaced)


def _maker(max_retries: int = 3) -> AVClips:
    return AVClips(SPEC, "pyav", video_transform=None, audio_transform=None, seed=0, max_retries=max_retries,
                   require_audio=True, class_to_idx=None, name="TestSource", log=logging.getLogger("test"))


def test_make_tries_what_the_source_picks_and_names_every_failure(caplog: pytest.LogCaptureFixture) -> None:
    rows = [VideoInfo(path=f"v{i}.mp4", has_video=True, has_audio=i != 2) for i in range(3)]
    items = [ClipItem(rows[0], 0, "v0.mp4", error="record unreadable"), ClipItem(rows[1], 1, "v1.mp4"),
             ClipItem(rows[2], 2, "v2.mp4")]
    seen: list[tuple[int, int]] = []

    def pick(attempt: int, generator: torch.Generator) -> ClipItem | None:
        seen.append((attempt, int(torch.randint(1000, (), generator=generator))))
        return items[attempt] if attempt < 3 else None

    maker = _maker()
    with caplog.at_level(logging.WARNING, logger="test"):
        sample, failures = maker.make(7, 0, pick)
        maker.make(7, 0, pick)
    assert sample is None
    assert [p for p, _ in failures] == ["v0.mp4", "v1.mp4", "v2.mp4"]
    assert failures[0][1] == "record unreadable" and failures[2][1] == "has no audio track"
    assert "file not found" in failures[1][1]
    assert seen[:4] == seen[4:] and len({d for _, d in seen[:4]}) > 1  # (seed, epoch, i, attempt) draws
    assert sum("TestSource: skipping" in m for m in caplog.messages) == 3  # once per file and process
    assert len(_maker(max_retries=0).make(7, 0, pick)[1]) == 1
    assert len(maker.make(7, 0, pick, attempts=2)[1]) == 2
    with pytest.raises(RuntimeError, match=r"TestSource: sample 7 \(epoch 0\) failed 3 times in a row: v0"):
        raise maker.give_up(7, 0, failures, ": {listed}")


def test_maker_checks_its_settings() -> None:
    with pytest.raises(ValueError, match="unknown decode backend 'opencv'; valid: decord, pyav"):
        AVClips(SPEC, "opencv", video_transform=None, audio_transform=None, seed=0, max_retries=1,
                require_audio=True, class_to_idx=None, name="x", log=logging.getLogger("x"))
    with pytest.raises(ValueError, match="clips_per_video must be >= 1"):
        AVClips(SPEC, "pyav", video_transform=None, audio_transform=None, seed=0, max_retries=1,
                clips_per_video=0, require_audio=True, class_to_idx=None, name="x", log=logging.getLogger())
