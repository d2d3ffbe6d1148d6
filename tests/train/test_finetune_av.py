"""Audio-visual fine-tuning (the fusion head over both encoders) and multi-label training (BCE, mAP)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from avlearn.config import ConfigError, load_config
from avlearn.models.classifier import AVClassifier, VideoClassifier
from avlearn.models.registry import ModelConfig, build_audio_encoder, build_video_encoder
from avlearn.train.finetune import FinetuneConfig, FinetuneTask, main
from avlearn.train.finetune.task import param_groups
from tests.train.downstream_helpers import av_collection, fast_overrides

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "avlearn" / "configs" / "finetune" / "synth_cpu.yaml")
TINY = ModelConfig(video_arch="r2plus1d_tiny", audio_arch="avid_spec_cnn9_tiny")


def _av_model(num_classes: int = 4) -> AVClassifier:
    torch.manual_seed(0)
    return AVClassifier(build_video_encoder(TINY), build_audio_encoder(TINY), num_classes, dropout=0.0)


def _batch() -> dict[str, torch.Tensor]:
    return {"video": torch.rand(2, 3, 4, 16, 16), "audio": torch.randn(2, 1, 40, 50),
            "label": torch.tensor([0, 2]), "video_index": torch.tensor([1, 0])}


def test_av_classifier_reads_both_embeddings() -> None:
    model = _av_model().eval()
    b = _batch()
    emb = model.embed(b["video"], b["audio"])
    v, a = model.video_encoder(b["video"]).emb, model.audio_encoder(b["audio"]).emb
    torch.testing.assert_close(emb, torch.cat([v, a], 1))
    torch.testing.assert_close(model(b["video"], b["audio"]), model.classifier(emb))
    # the audio half of the classifier matters: other sound, other logits
    assert not torch.allclose(model(b["video"], b["audio"]), model(b["video"], torch.zeros_like(b["audio"])))
    model.train()
    model(b["video"], b["audio"], freeze_encoder=True).sum().backward()  # type: ignore[no-untyped-call]
    assert all(p.grad is None for p in model.video_encoder.parameters())
    assert all(p.grad is None for p in model.audio_encoder.parameters())
    assert model.classifier.weight.grad is not None and model.video_encoder.training


def test_multi_label_task_is_binary_cross_entropy_of_each_videos_targets() -> None:
    model = _av_model()
    cfg = load_config(FinetuneConfig, CONFIG, ["modality=audio_visual", "warmup_classifier_epochs=0"])
    targets = torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0]])  # (V, C): video 0, video 1
    task = FinetuneTask(cfg, model, "scratch", targets)
    b = _batch()
    torch.manual_seed(1)
    out = task.step(b, torch.device("cpu"), epoch=0)
    model.train()  # batch statistics as in the step; dropout 0: the same logits
    want = F.binary_cross_entropy_with_logits(model(b["video"], b["audio"]), targets[[1, 0]])
    torch.testing.assert_close(out.loss, want, rtol=1e-4, atol=1e-5)
    assert "top1" not in out.logs


def test_param_groups_of_the_fusion_head() -> None:
    model = _av_model()
    enc, head = param_groups(model, 0.1, 0.5)
    assert {id(p) for p in head["params"]} == {id(p) for p in model.classifier.parameters()}
    assert len(enc["params"]) == len(list(model.video_encoder.parameters())) + len(
        list(model.audio_encoder.parameters()))
    video = VideoClassifier(build_video_encoder(TINY), 3)  # the video path's groups are unchanged
    enc, head = param_groups(video, 0.1, 0.5)
    assert [id(p) for p in enc["params"]] == [id(p) for p in video.encoder.parameters()]


def test_audio_visual_refuses_shards() -> None:
    with pytest.raises(ConfigError, match="modality=audio_visual fine-tunes on the split's files"):
        load_config(FinetuneConfig, CONFIG, ["modality=audio_visual", "eval.shards=x/index.json"])


def test_audio_visual_multi_label_finetune_beats_chance(tmp_path_factory: pytest.TempPathFactory,
                                                        tmp_path: Path) -> None:
    # LP-FT on the 16 visible/sounding labels: the probe start of the scratch encoders already ranks far
    # above chance (the linear probe test: 0.72), and a few fine-tuning steps at a low rate keep it there
    root = av_collection(tmp_path_factory)
    run = tmp_path / "ft"
    extra = {"train.progress": False, "train.tensorboard": False, "data.batch_size": 8,
             "data.decode_size": 20, "data.video_aug.size": 16, "data.num_frames": 4, "data.fps": 8,
             "data.audio_seconds": 1.0, "modality": "audio_visual", "dataset.label": "visible_and_sounding",
             "epochs": 2, "warmup_classifier_epochs": 1, "max_steps": 4,
             "eval.num_clips": 2, "head_init": "probe", "optim.lr": 1e-4}
    assert main(["--config", CONFIG, "--init", "scratch", *fast_overrides(root, run, **extra)]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["num_videos"] == 30 and len(results["class_names"]) == 16
    assert results["video_map"] > results["chance_map"] + 0.2, results
    assert results["clip_map"] != results["video_map"]  # 2 clips a video, at other times
    assert (run / "results.md").read_text().startswith("# Fine-tuning")
    assert not (run / "confusion.png").exists()
    state = torch.load(sorted((run / "checkpoints").glob("*.pt"))[-1], weights_only=False)["model"]
    assert {k.split(".")[0] for k in state} == {"video_encoder", "audio_encoder", "classifier"}


@pytest.mark.parametrize(("name", "fmt", "multi"), [("finetune/vggsound_av.yaml", "vggsound", False),
                                                    ("finetune/audioset_av.yaml", "audioset", True),
                                                    ("probe/audioset_av.yaml", "audioset", True)])
def test_example_configs_load_and_read_their_formats(name: str, fmt: str, multi: bool,
                                                     tmp_path: Path) -> None:
    from avlearn.data.splits import load_split
    from avlearn.train.linear_probe import ProbeConfig
    from tests.data.test_splits_av import _audioset, _vggsound

    cls: type[Any] = ProbeConfig if name.startswith("probe") else FinetuneConfig
    cfg = load_config(cls, name)
    assert cfg.modality == "audio_visual" and cfg.dataset.format == fmt
    assert cfg.dataset.root == f"data/{fmt}"  # a placeholder the user sets
    root = (_audioset if fmt == "audioset" else _vggsound)(tmp_path / fmt)  # the released layout
    cfg = load_config(cls, name, [f"dataset.root={root}"])
    train, test = load_split(cfg.dataset, "train"), load_split(cfg.dataset, "test")
    assert train.multi_label == test.multi_label == multi and train.classes == test.classes
