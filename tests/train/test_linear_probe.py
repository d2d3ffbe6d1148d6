"""``avlearn linear-probe``: feature cache reuse, pooling shapes, the audio encoder on ESC-50-style data."""

from __future__ import annotations

import json
import math
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from avlearn.train.linear_probe import main, pool_stages
from tests.train.downstream_helpers import fast_overrides, small_collection

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "avlearn" / "configs" / "probe" / "synth_cpu.yaml")
FAST = {"data.decode_size": 20, "data.video_aug.size": 16, "data.num_frames": 4, "data.fps": 8,
        "features.train_clips": 1, "features.test_clips": 2}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_collection(tmp_path_factory)


def test_feature_cache_is_reused_with_the_same_result(root: Path, tmp_path: Path) -> None:
    run = tmp_path / "probe"
    args = ["--config", CONFIG, "--init", "scratch", *fast_overrides(root, run, **FAST)]
    assert main(args) == 0
    first = json.loads((run / "results.json").read_text())
    assert first["cache_reused"] == {"train": False, "test": False}
    stamps = {p.name: p.stat().st_mtime_ns for p in run.glob("features_*.pt")}
    assert sorted(stamps) == ["features_test.pt", "features_train.pt"]
    assert main(args) == 0
    second = json.loads((run / "results.json").read_text())
    assert second["cache_reused"] == {"train": True, "test": True}
    assert {p.name: p.stat().st_mtime_ns for p in run.glob("features_*.pt")} == stamps
    for key in ("clip_top1", "video_top1", "per_class", "confusion", "train_clip_top1"):
        assert second[key] == first[key], key
    # the object labels of the same clips share the cache (features do not depend on labels) ...
    obj = [*args, "dataset.label=object", f"run_dir={tmp_path / 'obj'}", f"features.cache_dir={run}"]
    assert main(obj) == 0
    assert json.loads((tmp_path / "obj" / "results.json").read_text())["cache_reused"]["train"]
    # ... while other features are recomputed
    assert main([*args, "features.pool=max"]) == 0
    assert json.loads((run / "results.json").read_text())["cache_reused"] == {"train": False, "test": False}


def test_pool_stages_shapes() -> None:
    stages = {"layer3": torch.randn(2, 8, 4, 3, 3), "layer4": torch.randn(2, 16, 2, 2, 2)}
    assert pool_stages(stages, ["layer4"], "max").shape == (2, 16)
    assert pool_stages(stages, ["layer3", "layer4"], "avg").shape == (2, 24)
    assert pool_stages(stages, ["layer3", "layer4"], "avg_space").shape == (2, 8 * 4 + 16 * 2)
    audio = {"block4": torch.randn(2, 16, 5, 7)}
    assert pool_stages(audio, ["block4"], "avg_space").shape == (2, 16 * 7)
    with pytest.raises(ValueError, match="layer9.*valid"):
        pool_stages(stages, ["layer9"], "avg")


def _write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> None:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


@pytest.fixture()
def esc50(tmp_path: Path) -> Path:
    """An ESC-50-shaped folder: 2 classes (a tone, noise) x 5 folds x 2 clips of 1.5 s."""
    root = tmp_path / "ESC-50"
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(24000) / 16000
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for fold in range(1, 6):
        for take in "AB":
            for target, category in enumerate(("tone", "noise")):
                name = f"{fold}-{target}{take}-{category}.wav"
                sound = 0.5 * np.sin(2 * math.pi * rng.uniform(400, 500) * t) if target == 0 \
                    else 0.3 * rng.standard_normal(t.size)
                _write_wav(root / "audio" / name, sound)
                rows.append(f"{name},{fold},{target},{category},True,{target}{take},{take}")
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    return root


def _probe_esc50(esc50: Path, run: Path, *overrides: str) -> dict[str, Any]:
    """Results of an audio probe of a scratch tiny encoder on the ESC-50-shaped folder."""
    code = main(["--config", str(ROOT / "avlearn/configs/probe/esc50_audio.yaml"), "--init", "scratch",
                 "--modality", "audio", f"run_dir={run}", f"dataset.root={esc50}", "data.audio_seconds=1.0",
                 "data.num_workers=0", "model.audio_arch=avid_spec_cnn9_tiny", *overrides])
    assert code == 0
    results: dict[str, Any] = json.loads((run / "results.json").read_text())
    return results


def test_audio_probe_on_esc50(esc50: Path, tmp_path: Path) -> None:
    results = _probe_esc50(esc50, tmp_path / "esc", "dataset.fold=2", "features.test_clips=2",
                           "model.video_arch=r2plus1d_tiny")
    assert results["modality"] == "audio" and results["test_videos"] == 4 and results["num_clips"] == 8
    assert results["train_videos"] == 16
    assert results["video_top1"] == 1.0  # a tone and noise are apart even in random features


def test_the_default_stage_is_the_encoders_last(esc50: Path, tmp_path: Path) -> None:
    """No ``features.stages``: the last stage the encoder states (audio: ``block4``, not ``layer4``)."""
    results = _probe_esc50(esc50, tmp_path / "esc", "features.stages=[]", "features.test_clips=1",
                           "features.train_clips=1")
    assert results["stages"] == ["block4"] and results["feature_dim"] == 128


def test_bad_init_path_is_named(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing" / "encoders.safetensors"
    assert main(["--config", CONFIG, "--init", str(missing), *fast_overrides(root, tmp_path / "p")]) == 2
    assert str(missing) in capsys.readouterr().err


def test_an_empty_test_split_stops_before_feature_extraction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.train.downstream_helpers import one_video_layout

    root = one_video_layout(tmp_path / "ds")
    run = tmp_path / "probe"
    assert main(["--config", CONFIG, "--init", "scratch", *fast_overrides(root, run, **FAST)]) == 2
    err = capsys.readouterr().err
    assert "dataset.test_split=test" in err and "lists no file" in err
    assert not list(run.glob("features_*.pt"))


def test_a_truncated_feature_cache_is_recomputed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from avlearn.train.linear_probe import cached_features

    cache = tmp_path / "features_train.pt"
    feats = {"features": torch.arange(6.0).reshape(3, 2)}
    cached_features(cache, "k", lambda: feats)
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])  # a run killed while writing
    with caplog.at_level("WARNING"):
        again, reused = cached_features(cache, "k", lambda: feats)
    assert not reused and torch.equal(again["features"], feats["features"])
    assert str(cache) in caplog.text and "truncated or corrupt" in caplog.text
    assert cached_features(cache, "k", lambda: {})[1]  # rewritten whole: reused next time


def test_feature_extraction_shows_progress(capsys: pytest.CaptureFixture[str]) -> None:
    from avlearn.models.registry import ModelConfig
    from avlearn.models.weights import Weights, load_encoder
    from avlearn.train.linear_probe import extract_features

    encoder = load_encoder(Weights(None, ModelConfig(video_arch="r2plus1d_tiny"), "scratch"), "video")
    clips = [{"video": torch.rand(3, 4, 16, 16), "label": 0, "video_index": i, "clip_index": 0}
             for i in range(6)]
    feats = extract_features(encoder, clips, "video", ["layer4"], "max", batch_size=2,  # type: ignore[arg-type]
                             progress=True)
    assert feats["features"].shape[0] == 6
    err = capsys.readouterr().err
    assert "video features" in err and "3/3" in err


def test_probe_over_shards_equals_the_probe_over_files(root: Path, tmp_path: Path) -> None:
    from avlearn.config import load_config
    from avlearn.data.manifest import write_manifest
    from avlearn.data.splits import load_split, to_manifest_rows
    from avlearn.train.linear_probe import ProbeConfig
    from data_prep.shard import ShardOptions, write_shards

    cfg = load_config(ProbeConfig, CONFIG, fast_overrides(root, tmp_path / "unused"))
    index = {}
    for which in ("train", "test"):
        write_manifest(to_manifest_rows(load_split(cfg.dataset, which)), tmp_path / f"{which}.csv")
        write_shards(tmp_path / f"{which}.csv", tmp_path / which, ShardOptions(samples_per_shard=7),
                     progress=False)
        index[which] = str(tmp_path / which / "index.json")
    shards = {"data.source": "shards", "data.shards": index["train"], "features.test_shards": index["test"],
              "data.num_workers": 2}
    for name, more in (("files", {}), ("shards", shards)):
        assert main(["--config", CONFIG, "--init", "scratch",
                     *fast_overrides(root, tmp_path / name, **FAST, **more)]) == 0
    files, from_shards = (json.loads((tmp_path / n / "results.json").read_text())
                          for n in ("files", "shards"))
    timing = {"seconds", "feature_seconds", "config"}
    assert {k: v for k, v in from_shards.items() if k not in timing} == \
           {k: v for k, v in files.items() if k not in timing}
    assert files["train_videos"] == 30 and files["test_videos"] == 12
    for which in ("train", "test"):
        a, b = (torch.load(tmp_path / n / f"features_{which}.pt", weights_only=True)
                for n in ("files", "shards"))
        order_a, order_b = (torch.argsort(f["video_index"] * 100 + f["clip_index"]) for f in (a, b))
        # the clips are bit-identical (tests/data/test_shard_eval.py); with 2 workers the batches are
        # composed differently, which moves the encoder's float sums by rounding only
        torch.testing.assert_close(a["features"][order_a], b["features"][order_b], rtol=1e-5, atol=1e-6)
        assert torch.equal(a["video_index"][order_a], b["video_index"][order_b]), which
    # shards hold videos: the audio probe refuses them, naming the key
    assert main(["--config", CONFIG, "--init", "scratch", "--modality", "audio",
                 *fast_overrides(root, tmp_path / "audio", **FAST, **shards)]) == 2
