"""The synthetic collection's negatives protocol through ``avlearn evaluate localization``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avlearn.cli import main as avlearn_main
from avlearn.config import to_dict
from avlearn.models.checkpoint import save_encoders
from avlearn.models.registry import ModelConfig, build_av_model


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from data_prep.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("synth_neg")
    generate(SynthConfig(out=root, num_videos=18, seed=1, size=64, fps=16.0, duration=2.0, workers=1,
                         clips_per_group=1, max_distractors=1, negatives=True), progress=False)
    return root


def test_synth_negatives_and_silence_are_scored(collection: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(video_arch="r2plus1d_tiny", audio_arch="avid_spec_cnn9_tiny", embed_dim=16)
    data = {"num_frames": 4, "fps": 8.0, "audio_seconds": 1.0, "video_aug": {"size": 64}}
    ckpt = save_encoders(build_av_model(cfg), tmp_path / "m.safetensors",
                         {"model": to_dict(cfg), "data": data})
    out = tmp_path / "r.json"
    assert avlearn_main(["evaluate", "localization", "--checkpoint", str(ckpt), "--synth", str(collection),
                         "--negatives", "--silent", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = (collection / "splits" / "test_plus_silent.csv").read_text().splitlines()[1:]
    assert report["trials"]["non-sounding"] == len(rows) > 0
    assert report["trials"]["silent"] == report["trials"]["positive"] == report["model"]["n"]
    model = report["negatives"]["model"]
    assert set(model) >= {"ap_positives_only", "non-sounding", "silent", "confidence"}
    assert model["silent"]["n_negatives"] == report["model"]["n"]
    # without the option the report is the one of before: positives only
    assert avlearn_main(["evaluate", "localization", "--checkpoint", str(ckpt), "--synth", str(collection),
                         "--json", str(out)]) == 0
    plain = json.loads(out.read_text())
    assert "negatives" not in plain and plain["model"] == report["model"]


def test_negatives_need_the_collections_list(tmp_path: Path, collection: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(collection, copy)
    (copy / "splits" / "test_plus_silent.csv").unlink()
    torch.manual_seed(0)
    cfg = ModelConfig(video_arch="r2plus1d_tiny", audio_arch="avid_spec_cnn9_tiny", embed_dim=16)
    ckpt = save_encoders(build_av_model(cfg), tmp_path / "m.safetensors", cfg)
    assert avlearn_main(["evaluate", "localization", "--checkpoint", str(ckpt), "--synth", str(copy),
                         "--negatives"]) == 1
    assert "avlearn synth --negatives" in capsys.readouterr().err
