"""``avlearn finetune`` trains from shards of the training split (``data.source=shards``) and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avlearn.config import ConfigError, load_config
from avlearn.data.manifest import write_manifest
from avlearn.data.splits import load_split, to_manifest_rows
from avlearn.train.finetune import FinetuneConfig, main
from avlearn.train.finetune.datasets import eval_dataset
from data_prep.shard import ShardOptions, write_shards
from tests.train.downstream_helpers import fast_overrides, small_collection
from tests.train.test_finetune import CONFIG, QUIET


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_collection(tmp_path_factory)


def test_finetune_from_shards_trains_and_resumes(root: Path, tmp_path: Path) -> None:
    cfg = load_config(FinetuneConfig, CONFIG, fast_overrides(root, tmp_path / "unused"))
    split = load_split(cfg.dataset, "train")
    write_manifest(to_manifest_rows(split), tmp_path / "train.csv")
    write_shards(tmp_path / "train.csv", tmp_path / "shards", ShardOptions(samples_per_shard=8),
                 progress=False)
    run = tmp_path / "ft"
    extra = {**QUIET, "epochs": 2, "warmup_classifier_epochs": 0, "eval.num_clips": 1, "train.log_every": 1,
             "data.source": "shards", "data.shards": str(tmp_path / "shards" / "index.json"),
             "data.num_workers": 2, "train.ckpt_every_steps": 1}
    assert main(["--config", CONFIG, "--init", "scratch",
                 *fast_overrides(root, run, **extra, max_steps=2)]) == 0
    assert main(["--config", CONFIG, "--init", "scratch", "--resume",
                 *fast_overrides(root, run, **extra, max_steps=5)]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train/loss" in r] == [1, 2, 3, 4, 5]
    ends = [r for r in records if r.get("event") == "epoch_end"]
    # 30 videos in batches of 8: 3 steps per epoch; the resumed process saw the epoch's last batch
    assert [e["step"] for e in ends] == [3] and "no decode failures in 8 clips" in ends[0]["data"]
    results = json.loads((run / "results.json").read_text())
    assert results["train_videos"] == len(split) == 30 and results["steps"] == 5


def _test_shards(root: Path, out: Path, label: str = "action") -> Path:
    """Shards (of 5) of the synthetic collection's test split, labelled by ``label``; the index."""
    overrides = fast_overrides(root, out / "unused", **{"dataset.label": label})
    cfg = load_config(FinetuneConfig, CONFIG, overrides)
    write_manifest(to_manifest_rows(load_split(cfg.dataset, "test")), out / "test.csv")
    write_shards(out / "test.csv", out / "test_shards", ShardOptions(samples_per_shard=5), progress=False)
    return out / "test_shards" / "index.json"


def test_finetune_evaluates_test_shards_as_files(root: Path, tmp_path: Path) -> None:
    index = _test_shards(root, tmp_path)
    extra = {**QUIET, "epochs": 2, "warmup_classifier_epochs": 0, "eval.num_clips": 2, "max_steps": 2}
    results = {}
    for name, more in (("files", {}), ("shards", {"eval.shards": str(index), "data.num_workers": 2})):
        run = tmp_path / name
        overrides = fast_overrides(root, run, **extra, **more)
        assert main(["--config", CONFIG, "--init", "scratch", *overrides]) == 0
        results[name] = json.loads((run / "results.json").read_text())
    timing = {"train_seconds", "eval_seconds", "config", "seconds"}
    files, shards = ({k: v for k, v in r.items() if k not in timing} for r in results.values())
    assert files["test_videos"] == 12 and files["num_clips"] == 24
    assert shards == files


def test_eval_shards_with_unknown_labels_are_refused(root: Path, tmp_path: Path) -> None:
    index = _test_shards(root, tmp_path, label="object")  # object names, not the action classes
    cfg = load_config(FinetuneConfig, CONFIG, fast_overrides(root, tmp_path, **{"eval.shards": str(index)}))
    classes = load_split(cfg.dataset, "test").class_to_idx
    with pytest.raises(ConfigError, match="eval.shards.*not among the classes"):
        eval_dataset(cfg, dict(classes))
    ok = load_config(FinetuneConfig, CONFIG,
                     fast_overrides(root, tmp_path, **{"eval.shards": str(index), "dataset.label": "object"}))
    assert eval_dataset(ok, dict(load_split(ok.dataset, "test").class_to_idx)).num_videos == 12
