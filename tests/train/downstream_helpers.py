"""A small labelled synthetic collection shared by the downstream tests (made once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

_MADE: dict[str, Path] = {}


def small_collection(factory: pytest.TempPathFactory) -> Path:
    """48 videos (3 s, 64 px, no distractors), one clip per group: 30 train / 6 val / 12 test videos.

    Returns the collection folder (``splits/``, ``videos/``, ``annotations.json``).
    """
    return _collection(factory, "root", "downstream_synth", num_videos=48, seed=3, duration=3.0, size=64,
                       max_distractors=0, val_fraction=0.1, test_fraction=0.3)


def _collection(factory: pytest.TempPathFactory, key: str, folder: str, **settings: object) -> Path:
    """A synthetic collection of ``settings`` (one clip per group), made once per session under ``key``."""
    if key not in _MADE:
        from data_prep.synth import SynthConfig, generate

        root = factory.mktemp(folder)
        generate(SynthConfig(out=root, workers=2, object_scale=0.4, clips_per_group=1, **settings),  # type: ignore[arg-type]
                 progress=False)
        _MADE[key] = root
    return _MADE[key]


def fast_overrides(root: Path, run_dir: Path, **extra: object) -> list[str]:
    """Overrides for configs/{finetune,probe}/synth_cpu.yaml: 32 px crops, batch 8, no workers."""
    values: dict[str, object] = {
        "run_dir": str(run_dir), "dataset.root": str(root), "data.decode_size": 40,
        "data.video_aug.size": 32, "data.num_workers": 0,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def one_video_layout(root: Path, test_list: str = "") -> Path:
    """A synthetic-collection layout with one tiny training video and the given test list (default:
    empty), for the checks that must stop a run before its first step."""
    import numpy as np

    from avlearn.media import write_av

    write_av(root / "videos" / "Bouncing" / "a.mp4", np.full((8, 32, 32, 3), 90, np.uint8), 8,
             np.zeros(8000, np.float32), 8000)
    splits = root / "splits"
    splits.mkdir(parents=True, exist_ok=True)
    (splits / "classInd.txt").write_text("1 Bouncing\n")
    (splits / "trainlist01.txt").write_text("Bouncing/a.mp4 1\n")
    (splits / "testlist01.txt").write_text(test_list)
    return root


def av_collection(factory: pytest.TempPathFactory) -> Path:
    """72 videos (2 s, 48 px) with up to 2 silent distractors each, one clip per group: 42 train / 30 test
    videos, for the multi-label (visible and sounding objects) and audio-visual tests."""
    return _collection(factory, "av", "av_synth", num_videos=72, seed=5, duration=2.0, size=48,
                       max_distractors=2, val_fraction=0.0, test_fraction=0.4)
