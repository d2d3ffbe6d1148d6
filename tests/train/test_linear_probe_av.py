"""The audio-visual linear probe (both encoders, features concatenated) and multi-label probing (mAP) on
the synthetic collection, against its chance level and a shuffled-label control."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from avlearn.train.linear_probe import main
from tests.train.downstream_helpers import av_collection

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "avlearn" / "configs" / "probe" / "synth_cpu.yaml")


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return av_collection(tmp_path_factory)


def _probe(root: Path, run: Path, *overrides: str) -> dict[str, Any]:
    args = ["--config", CONFIG, "--init", "scratch", f"run_dir={run}", f"dataset.root={root}",
            "data.decode_size=40", "data.video_aug.size=32", "data.num_workers=0", "data.num_frames=4",
            "data.fps=8", "features.train_clips=1", "features.test_clips=2", "modality=audio_visual",
            "features.stages=[]", f"features.cache_dir={run.parent / 'cache'}", *overrides]
    assert main(args) == 0
    return json.loads((run / "results.json").read_text())  # type: ignore[no-any-return]


def test_visible_and_sounding_map_beats_chance_and_shuffled_labels_do_not(collection: Path,
                                                                          tmp_path: Path) -> None:
    real = _probe(collection, tmp_path / "real", "dataset.label=visible_and_sounding")
    assert real["stages"] == ["video.layer4", "audio.block4"] and real["test_videos"] == 30
    assert len(real["class_names"]) == 16 and "confusion" not in real
    assert not (tmp_path / "real" / "confusion.png").exists()
    chance = real["chance_map"]
    assert 0.2 < chance < 0.35  # the expected mAP of a random ranking of 30 videos (prevalence: 0.19)
    assert real["video_map"] > chance + 0.25 and real["clip_map"] > chance + 0.2
    # the same features with the training labels permuted among the videos: only chance is left
    control = _probe(collection, tmp_path / "shuffled", "dataset.label=visible_and_sounding",
                     "dataset.shuffle_train_labels=true")
    assert control["cache_reused"] == {"train": True, "test": True} and control["chance_map"] == chance
    assert control["video_map"] < chance + 0.1
    assert real["video_map"] > control["video_map"] + 0.25


def test_audio_visual_single_label_probe_concatenates_both_encoders(collection: Path, tmp_path: Path) -> None:
    both = _probe(collection, tmp_path / "av", "dataset.label=object")
    video = _probe(collection, tmp_path / "v", "dataset.label=object", "modality=video")
    audio = _probe(collection, tmp_path / "a", "dataset.label=object", "modality=audio")
    assert both["feature_dim"] == video["feature_dim"] + audio["feature_dim"]
    assert not video["cache_reused"]["train"] and not audio["cache_reused"]["train"]  # keyed by modality
    assert 0 <= both["video_top1"] <= 1 and "video_map" not in both
    assert (tmp_path / "av" / "confusion.png").is_file()
