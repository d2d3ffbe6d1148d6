"""``avlearn finetune`` end to end on a tiny synthetic collection, resume, --init and label fractions."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from avlearn.config import ConfigError, load_config
from avlearn.data.splits import DatasetConfig, load_split, subsample_per_class
from avlearn.models.checkpoint import save_encoders
from avlearn.models.classifier import VideoClassifier
from avlearn.models.registry import ModelConfig, build_av_model, build_video_encoder
from avlearn.models.weights import Weights, WeightsError, load_encoder, load_weights
from avlearn.train.finetune import FinetuneConfig, FinetuneTask, main
from avlearn.train.finetune.evaluate import predict
from avlearn.train.finetune.probe_head import probe_head
from avlearn.train.finetune.task import param_groups
from avlearn.train.optim import OptimConfig, build_optimizer, build_scheduler
from tests.train.downstream_helpers import fast_overrides, one_video_layout, small_collection

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "avlearn" / "configs" / "finetune" / "synth_cpu.yaml")
# 16 px crops of 4 frames: colour and shape survive, and a run takes about a minute on 2 cores
QUIET = {"train.progress": False, "train.tensorboard": False, "data.batch_size": 8, "data.decode_size": 20,
         "data.video_aug.size": 16, "data.num_frames": 4, "data.fps": 8}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_collection(tmp_path_factory)


def _records(run_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow  # ~70 s of CPU time (744 clips decoded); minutes on a loaded 2-core machine
def test_finetune_beats_chance(root: Path, tmp_path: Path) -> None:
    # The object-class label (8 classes, told apart by colour and shape): the action (motion
    # pattern) is not learnt from 30 videos at this budget (see benchmarks/downstream_synth.py).
    # Deterministic (seeded data order, augmentation and init): 4 of the 12 test videos right.
    run = tmp_path / "ft"
    code = main(["--config", CONFIG, "--init", "scratch", *fast_overrides(
        root, run, **QUIET, **{"dataset.label": "object", "epochs": 12, "warmup_classifier_epochs": 1,
                               "data.clips_per_video": 2, "eval.num_clips": 2, "optim.lr": 3e-3,
                               "dropout": 0.2})])
    assert code == 0
    results = json.loads((run / "results.json").read_text())
    assert results["num_videos"] == 12 and results["num_clips"] == 24
    assert results["video_top1"] >= 2 * 0.125, results  # twice chance (1/8)
    assert (run / "results.md").read_text().startswith("# Fine-tuning")
    assert (run / "confusion.png").stat().st_size > 0
    frozen = [r["train/frozen"] for r in _records(run) if "train/frozen" in r]
    assert frozen[0] == 1.0 and frozen[-1] == 0.0  # classifier warm-up, then the whole network


def test_finetune_resume_continues_from_checkpoint(root: Path, tmp_path: Path) -> None:
    run = tmp_path / "ft"
    extra = {**QUIET, "epochs": 2, "warmup_classifier_epochs": 1, "eval.num_clips": 1,
             "train.ckpt_every_steps": 1, "train.log_every": 1}
    assert main(["--config", CONFIG, "--init", "scratch",
                 *fast_overrides(root, run, **extra, max_steps=2)]) == 0
    assert json.loads((run / "results.json").read_text())["steps"] == 2
    assert main(["--config", CONFIG, "--init", "scratch", "--resume",
                 *fast_overrides(root, run, **extra, max_steps=5)]) == 0
    resume = [r for r in _records(run) if r.get("event") == "resume"]
    assert len(resume) == 1 and resume[0]["step"] == 2
    steps = [r["step"] for r in _records(run) if "train/loss" in r]
    assert steps == [1, 2, 3, 4, 5]  # continued at step 3, no step repeated
    assert json.loads((run / "results.json").read_text())["steps"] == 5


def test_finetune_resume_says_another_init_is_not_used(root: Path, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    cfg = ModelConfig(video_arch="r2plus1d_tiny", audio_arch="avid_spec_cnn9_tiny", embed_dim=16,
                      proj_hidden=32)
    export = tmp_path / "pretrained" / "encoders.safetensors"
    save_encoders(build_av_model(cfg), export, cfg)
    run, extra = tmp_path / "ft", {**QUIET, "epochs": 2, "warmup_classifier_epochs": 1, "eval.num_clips": 1}
    code = main(["--config", CONFIG, "--init", "scratch", *fast_overrides(root, run, **extra, max_steps=1)])
    assert code == 0 and "is not used" not in caplog.text
    code = main(["--config", CONFIG, "--init", str(export), *fast_overrides(root, run, **extra, max_steps=2)])
    assert code == 0
    assert f"fine-tuned from --init scratch: --init {export} is not used" in caplog.text


def test_bad_init_path_is_named(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no_such_run"
    code = main(["--config", CONFIG, "--init", str(missing),
                 *fast_overrides(root, tmp_path / "ft", **QUIET)])
    assert code == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "scratch" in err
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(WeightsError, match="empty_run.*no encoders.safetensors"):
        load_weights(str(empty), ModelConfig())


def test_init_loads_pretrained_video_encoder(tmp_path: Path) -> None:
    cfg = ModelConfig(video_arch="r2plus1d_tiny", audio_arch="avid_spec_cnn9_tiny", embed_dim=16,
                      proj_hidden=32)
    model = build_av_model(cfg)
    run = tmp_path / "run"
    save_encoders(model, run / "encoders.safetensors", cfg)
    init = load_weights(str(run), ModelConfig())  # the stored architecture wins over the scratch one
    assert init.model == cfg
    encoder = load_encoder(init, "video")
    for key, value in model.video_encoder.state_dict().items():
        assert torch.equal(encoder.state_dict()[key], value), key


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5, 1.0])
def test_label_fraction_selects_per_class_counts(root: Path, fraction: float) -> None:
    full = load_split(DatasetConfig(root=str(root)), "train")
    split = load_split(DatasetConfig(root=str(root), label_fraction=fraction, fraction_seed=1), "train")
    want = {c: max(1, round(fraction * n)) for c, n in Counter(y for _, y in full.items).items()}
    assert Counter(y for _, y in split.items) == want
    assert set(split.items) <= set(full.items)
    smaller = subsample_per_class(full, fraction / 2, seed=1)  # nested for one seed
    assert set(smaller.items) <= set(split.items)


def test_label_fraction_is_validated() -> None:
    with pytest.raises(ValueError, match="label_fraction"):
        load_config(FinetuneConfig, CONFIG, ["dataset.label_fraction=0"])


@pytest.mark.parametrize("test_list", ["", "Bouncing/gone.mp4\n"])
def test_an_empty_or_missing_test_split_stops_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], test_list: str
) -> None:
    root = one_video_layout(tmp_path / "ds", test_list)
    run = tmp_path / "run"
    assert main(["--config", CONFIG, "--init", "scratch", *fast_overrides(root, run, **QUIET)]) == 2
    err = capsys.readouterr().err
    assert "dataset.test_split" in err and "synthetic test" in err and "Traceback" not in err
    assert not (run / "checkpoints").exists() and not (run / "metrics.jsonl").exists()


def test_test_evaluation_shows_progress(capsys: pytest.CaptureFixture[str]) -> None:
    encoder = load_encoder(Weights(None, ModelConfig(video_arch="r2plus1d_tiny"), "scratch"), "video")
    model = VideoClassifier(encoder, num_classes=3)
    batches = [{"video": torch.rand(2, 3, 4, 16, 16), "label": torch.tensor([0, 1]),
                "video_index": torch.tensor([2 * i, 2 * i + 1])} for i in range(3)]
    logits, labels, _ = predict(model, batches, torch.device("cpu"), progress=True)
    assert logits.shape == (6, 3) and labels.tolist() == [0, 1] * 3
    err = capsys.readouterr().err
    assert "evaluate test clips" in err and "3/3" in err


def test_encoder_lr_scale_slows_the_encoder_only() -> None:
    torch.manual_seed(0)
    model = VideoClassifier(build_video_encoder(ModelConfig(video_arch="r2plus1d_tiny")), 3)
    cfg = OptimConfig(name="sgd", lr=0.1, momentum=0.0, weight_decay=0.0, schedule="cosine")
    opt = build_optimizer(param_groups(model, cfg.lr, 0.25), cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch=4, total_steps=4)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    sched.step()
    for n, p in model.named_parameters():  # plain SGD on a unit gradient moves a weight by its lr
        want = 0.1 * (0.25 if n.startswith("encoder.") else 1.0)
        assert torch.allclose(before[n] - p.detach(), torch.full_like(p, want), atol=1e-6), n
    enc, head = (g["lr"] for g in opt.param_groups)
    assert 0 < enc < 0.025 and enc / head == pytest.approx(0.25)  # the schedule keeps the ratio
    with pytest.raises(ConfigError, match="encoder_lr_scale"):
        load_config(FinetuneConfig, CONFIG, ["encoder_lr_scale=0"])


def test_probe_head_starts_the_classifier_from_a_linear_probe() -> None:
    # three classes of clips told apart by brightness, with noise; the standardisation of the probe
    # is folded into the classifier, so the model itself (eval mode) must give the probe's answers
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(8)
    videos = [0.5 * int(k) + 0.3 * torch.randn(3, 4, 16, 16, generator=g) for k in labels]
    data = [{"video": v, "label": int(k)} for v, k in zip(videos, labels, strict=True)]
    torch.manual_seed(0)
    model = VideoClassifier(build_video_encoder(ModelConfig(video_arch="r2plus1d_tiny")), 3).eval()
    random_start = model.classifier.weight.detach().clone()
    fit = probe_head(model, data, batch_size=5)
    assert fit["probe_clips"] == 24
    with torch.no_grad():
        pred = model(torch.stack(videos)).argmax(1)
    assert (pred == labels).double().mean().item() == pytest.approx(fit["probe_train_top1"])
    assert fit["probe_train_top1"] > 0.9  # separable: a random classifier gets about a third
    assert not torch.allclose(model.classifier.weight, random_start)


@pytest.mark.parametrize("freeze_bn", [False, True])
def test_freeze_bn_keeps_the_pretrained_statistics(freeze_bn: bool) -> None:
    torch.manual_seed(0)
    model = VideoClassifier(build_video_encoder(ModelConfig(video_arch="r2plus1d_tiny")), 3).train()
    cfg = load_config(FinetuneConfig, CONFIG, [f"freeze_bn={str(freeze_bn).lower()}"])
    task = FinetuneTask(cfg, model, "scratch")
    norm = task.norms[0]
    before = norm.running_mean.clone()  # type: ignore[union-attr]
    batch = {"video": 3.0 + torch.randn(4, 3, 4, 16, 16), "label": torch.tensor([0, 1, 2, 0])}
    out = task.step(batch, torch.device("cpu"), epoch=cfg.warmup_classifier_epochs)  # encoder trains
    out.loss.backward()  # type: ignore[no-untyped-call]
    assert norm.weight.grad is not None  # the scale and shift still learn
    moved = not torch.equal(norm.running_mean, before)  # type: ignore[arg-type]
    assert moved != freeze_bn
