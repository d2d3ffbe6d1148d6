"""``avlearn finetune --init`` takes the export that ``avlearn convert avid-cma`` writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avlearn.cli import main as cli_main
from avlearn.models.weights import load_video_encoder
from avlearn.train.finetune import main
from tests.models._avid_reference import ReferenceAVWrapper, randomise
from tests.train.downstream_helpers import fast_overrides, small_collection

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "avlearn" / "configs" / "finetune" / "synth_cpu.yaml")


def test_finetune_starts_from_a_converted_release(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    root = small_collection(tmp_path_factory)
    ref = randomise(ReferenceAVWrapper(), seed=4)
    ckpt = tmp_path / "AVID-CMA_Kinetics_InstX-N1024-PosW-N64-Top32_checkpoint.pth.tar"
    torch.save({"epoch": 20, "model": {f"module.{k}": v for k, v in ref.state_dict().items()},
                "optimizer": {}, "train_criterion": {}}, ckpt, _use_new_zipfile_serialization=False)
    converted = tmp_path / "converted"
    assert cli_main(["convert", "avid-cma", str(ckpt), "--out", str(converted)]) == 0
    _, cfg = load_video_encoder(converted)
    assert cfg.video_arch == "r2plus1d_18_avid"
    run = tmp_path / "ft"
    overrides = {"train.progress": False, "train.tensorboard": False, "data.batch_size": 4,
                 "data.num_frames": 4, "data.fps": 8, "epochs": 1, "max_steps": 1, "eval.num_clips": 1,
                 "warmup_classifier_epochs": 0}
    assert main(["--config", CONFIG, "--init", str(converted), *fast_overrides(root, run, **overrides)]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["init"] == str(converted / "encoders.safetensors")
    assert results["steps"] == 1
