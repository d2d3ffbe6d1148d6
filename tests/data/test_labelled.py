"""LabelledClipDataset over tiny real videos: uniform eval clips, seeded train clips, bad files, audio."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from avlearn.data.dataset import FailureTracker, av_collate
from avlearn.data.decode import ClipSpec
from avlearn.data.labelled import LabelledClipDataset
from avlearn.data.manifest import VideoInfo
from avlearn.data.splits import LabelledSplit, synthetic_split, to_manifest_rows
from avlearn.eval.classification import ClassificationReport
from avlearn.media import write_av
from data_prep.synth import SynthConfig, generate

SR = 16000
SPEC = ClipSpec(num_frames=4, fps=8, size=32, audio_seconds=0.5, sample_rate=SR)  # clips of 0.5 s
LEVELS = {"walk/a.mp4": 60, "jump/b.mp4": 140, "jump/c.mp4": 220}


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> LabelledSplit:
    """walk/a (2 s), jump/b (1.5 s), jump/c (0.5 s: exactly one clip), and a corrupt jump/bad.mp4."""
    root = tmp_path_factory.mktemp("labelled")
    for (rel, level), seconds in zip(LEVELS.items(), (2.0, 1.5, 0.5), strict=True):
        n = round(seconds * 20)
        frames = np.full((n, 32, 32, 3), level, np.uint8)
        t = np.arange(round(seconds * SR)) / SR
        write_av(root / rel, frames, 20, (0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), SR)
    (root / "jump" / "bad.mp4").write_text("not a video\n" * 20)
    items = [("walk/a.mp4", 1), ("jump/b.mp4", 0), ("jump/c.mp4", 0), ("jump/bad.mp4", 0)]
    return LabelledSplit(["jump", "walk"], items, str(root), "toy")


@pytest.fixture(scope="module")
def rows(split: LabelledSplit) -> list[VideoInfo]:
    good = to_manifest_rows(split.with_items(split.items[:3]), probe=True)
    assert all(r.status != "bad" for r in good)
    return good


def test_eval_mode_uniform_clips(rows: list[VideoInfo], split: LabelledSplit) -> None:
    ds = LabelledClipDataset(rows, SPEC, class_to_idx=split.class_to_idx, train=False, num_clips=3)
    assert len(ds) == 9 and ds.class_names == ["jump", "walk"] and ds.labels == [1, 0, 0]
    for i in range(len(ds)):
        s = ds[i]
        v, k = divmod(i, 3)
        assert (s["video_index"], s["clip_index"]) == (v, k)
        row = ds.videos[v]
        expected = k * max(row.duration - SPEC.video_seconds, 0.0) / 2  # k * (duration - clip) / (n - 1)
        assert s["start"] == pytest.approx(expected, abs=1e-6)
        assert s["label"] == split.class_to_idx[row.label] and s["video_id"] == row.video_id
        assert s["video"].shape == (3, 4, 32, 32) and "audio" not in s
        level = LEVELS[row.video_id + ".mp4"] / 255
        assert float(s["video"].mean()) == pytest.approx(level, abs=0.03)  # the right video's frames
        assert s["skipped"] == 0 and s["failures"] == []
    assert ds[8]["start"] == 0.0  # the 0.5 s video has a single possible start
    one = LabelledClipDataset(rows, SPEC, train=False, num_clips=1)
    assert [one[i]["start"] for i in range(3)] == [0.0, 0.0, 0.0]


def test_train_mode_seeded_by_seed_epoch_index(rows: list[VideoInfo]) -> None:
    ds = LabelledClipDataset(rows, SPEC, train=True, clips_per_video=2, seed=5)
    assert len(ds) == 6
    assert [(ds.locate(i)) for i in range(6)] == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
    first = [ds[i]["start"] for i in range(6)]
    assert first == [ds[i]["start"] for i in range(6)]  # deterministic
    assert all(0 <= s <= ds.videos[i % 3].duration - SPEC.video_seconds + 1e-6 for i, s in enumerate(first))
    ds.set_epoch(1)
    second = [ds[i]["start"] for i in range(6)]
    assert second != first
    again = LabelledClipDataset(rows, SPEC, train=True, clips_per_video=2, seed=5)
    again.set_epoch(1)
    assert [again[i]["start"] for i in range(6)] == second
    assert torch.equal(again[0]["video"], ds[0]["video"])


def test_bad_file_replaced_and_reported(split: LabelledSplit) -> None:
    unprobed = to_manifest_rows(split)  # the corrupt file is not caught without probing
    assert len(unprobed) == 4
    ds = LabelledClipDataset(unprobed, SPEC, class_to_idx=split.class_to_idx, train=False, num_clips=2,
                             with_audio=False)
    bad_index = next(i for i, r in enumerate(ds.videos) if r.path.endswith("bad.mp4"))
    loader = DataLoader(ds, batch_size=4, collate_fn=av_collate)
    tracker = FailureTracker()
    video_index = []
    for batch in loader:
        tracker.update(batch)
        assert batch["video"].shape[1:] == (3, 4, 32, 32) and batch["label"].dtype == torch.long
        video_index += batch["video_index"].tolist()
    assert tracker.clips == 8 and tracker.replaced == 2
    assert tracker.bad_paths == [ds.videos[bad_index].path]
    assert bad_index not in video_index  # its clips now show (and are labelled as) the replacement
    s = ds[2 * bad_index]
    assert s["skipped"] >= 1 and s["failures"][0][0].endswith("bad.mp4")
    assert s["label"] == ds.labels[s["video_index"]]


def test_with_audio_and_transforms(rows: list[VideoInfo]) -> None:
    def video_tf(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return x[:, :, :16, :16] + torch.rand((), generator=g)

    def audio_tf(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return x.reshape(1, 1, -1)

    ds = LabelledClipDataset(rows, SPEC, train=True, with_audio=True, video_transform=video_tf,
                             audio_transform=audio_tf)
    s = ds[0]
    assert s["video"].shape == (3, 4, 16, 16) and s["audio"].shape == (1, 1, SPEC.num_samples)
    assert float(s["audio"].abs().max()) > 0.05
    plain = LabelledClipDataset(rows, SPEC, train=True, with_audio=True)
    assert plain[0]["audio"].shape == (SPEC.num_samples,)


def test_bad_arguments(rows: list[VideoInfo]) -> None:
    with pytest.raises(ValueError, match="num_clips must be >= 1"):
        LabelledClipDataset(rows, SPEC, num_clips=0)
    with pytest.raises(ValueError, match="without a label"):
        LabelledClipDataset([dataclasses.replace(rows[0], label=""), *rows[1:]], SPEC)
    with pytest.raises(ValueError, match="not in class_to_idx"):
        LabelledClipDataset(rows, SPEC, class_to_idx={"walk": 0})
    with pytest.raises(IndexError):
        LabelledClipDataset(rows, SPEC, train=False, num_clips=2)[6]


def test_synthetic_collection_end_to_end(tmp_path: Path) -> None:
    """synth -> split file -> probed rows -> eval clips -> report (perfect logits give 100 %)."""
    cfg = SynthConfig(out=tmp_path / "synth", num_videos=18, size=32, fps=8, duration=1.0, workers=1,
                      clips_per_group=1)
    generate(cfg, progress=False)
    train, test = synthetic_split(cfg.out, "train"), synthetic_split(cfg.out, "test")
    assert len(train) == len(test) == 6 and train.classes == test.classes
    ds = LabelledClipDataset(to_manifest_rows(test, probe=True), SPEC, class_to_idx=test.class_to_idx,
                             train=False, num_clips=2)
    batch = next(iter(DataLoader(ds, batch_size=len(ds), collate_fn=av_collate)))
    assert batch["video"].shape == (12, 3, 4, 32, 32) and batch["skipped"].sum() == 0
    for vid, label in zip(batch["video_id"], batch["label"].tolist(), strict=True):
        assert vid.split("/")[0] == test.classes[label]  # label from the action folder
    logits = torch.nn.functional.one_hot(batch["label"], len(test.classes)).float()
    report = ClassificationReport.from_outputs(logits, batch["label"], batch["video_index"], test.classes)
    assert report.video_top1 == 1.0 and report.num_videos == 6 and report.num_clips == 12
