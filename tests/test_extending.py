"""Every extension point takes a new entry as ``docs/extending.md`` says: the page's examples, written
into modules of their own, register themselves and are used through the library's own entry points,
with no edit to the library. Each test undoes its registrations (the ``plugin`` fixture)."""

from __future__ import annotations

import importlib
import json
import math
import re
import sys
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import benchmarks
from avlearn.analysis.blocks import encoder_blocks
from avlearn.config import ConfigError, InvalidValue, to_dict
from avlearn.data.config import DataConfig, build_train_dataset
from avlearn.data.dataset import FailureTracker
from avlearn.data.decode import ClipSpec
from avlearn.data.loader import build_loader
from avlearn.data.manifest import VideoInfo, write_manifest
from avlearn.data.sources import TRAIN_SOURCES
from avlearn.data.splits import SPLIT_FORMATS, DatasetConfig, SplitFormatError, load_split
from avlearn.data.transforms import VideoAugConfig
from avlearn.localization.benchmarks import BENCHMARK_FORMATS, benchmark_items
from avlearn.localization.evaluate import main as evaluate_localization
from avlearn.localization.export import localizer_path
from avlearn.localization.learned import LocalizerSpec, localization_maps, stage_channels
from avlearn.localization.objective import LocalizationConfig
from avlearn.media import write_av
from avlearn.models.checkpoint import save_encoders
from avlearn.models.contract import VideoEncoder
from avlearn.models.registry import (
    AUDIO_ENCODERS,
    HEADS,
    VIDEO_ENCODERS,
    ModelConfig,
    as_model_config,
    build_av_model,
)
from avlearn.models.weights import load_av_model
from avlearn.objectives import OBJECTIVES, ObjectiveContext
from avlearn.registry import Registry
from avlearn.train.config import ObjectiveSpec
from avlearn.train.linear_probe import main as linear_probe
from avlearn.train.pretrain import main as pretrain

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "extending.md"
EXAMPLE = re.compile(r"<!-- extending: (\w+) -->\n```python\n(.*?)\n```", re.S)
REGISTRIES: tuple[Registry[Any], ...] = (VIDEO_ENCODERS, AUDIO_ENCODERS, HEADS, SPLIT_FORMATS,
                                         BENCHMARK_FORMATS, OBJECTIVES, TRAIN_SOURCES)
MODEL: dict[str, Any] = {"video_arch": "conv_ln", "audio_arch": "avid_spec_cnn9_tiny", "embed_dim": 16,
                         "proj_hidden": 32}
COLOURS = {"red": ((200, 30, 30), 440.0), "blue": ((30, 30, 200), 880.0)}  # class: (RGB, tone in Hz)

Plugin = Callable[..., ModuleType]


def examples() -> dict[str, str]:
    """The page's examples by name (the ``<!-- extending: NAME -->`` above each code block)."""
    return dict(EXAMPLE.findall(PAGE.read_text()))


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Plugin]:
    """``plugin(name)``: the page's example ``name`` imported as a module of its own (``package``: inside
    that package, e.g. ``benchmarks``). Registrations and the modules are gone after the test."""
    for registry in REGISTRIES:  # a copy for the test; the original mapping comes back after it
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    loaded: list[str] = []

    def load(name: str, package: ModuleType | None = None) -> ModuleType:
        if package is None:
            module = f"ext_{name}"
        else:
            module = f"{package.__name__}.{_module_name(examples()[name])}"
            monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder)])
        (folder / f"{module.rsplit('.', 1)[-1]}.py").write_text(examples()[name])
        loaded.append(module)
        importlib.invalidate_caches()
        return importlib.import_module(module)

    yield load
    for module in loaded:
        sys.modules.pop(module, None)


def _module_name(code: str) -> str:
    """A benchmark example's ``NAME``."""
    found = re.search(r'^NAME = "(\w+)"$', code, re.M)
    assert found, "the benchmark example sets NAME"
    return found.group(1)


def test_the_page_has_every_example_and_the_fixture_undoes_registrations(plugin: Plugin) -> None:
    assert set(examples()) == {"backbone", "objective", "clip_source", "split_format", "benchmark_format",
                               "benchmark"}
    for name in ("conv_ln", "masked_nce", "csv", "boxes_csv"):  # no other test left one behind
        assert name not in VIDEO_ENCODERS and name not in OBJECTIVES
        assert name not in SPLIT_FORMATS and name not in BENCHMARK_FORMATS


# ------------------------------------------------------------------------------------- media


def _tone(freq: float, seconds: float, rate: int = 16000) -> np.ndarray:
    return (0.3 * np.sin(2 * math.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``clips/<class>/<k>.mp4``: 3 red clips with a 440 Hz tone, 3 blue ones at 880 Hz (2 s, 32 px,
    8 fps); ``manifest.csv`` lists them, ``train.csv`` / ``test.csv`` split them 2 + 1 per class."""
    root = tmp_path_factory.mktemp("extending")
    rows, train, test = ["path,duration,label"], list[str](), list[str]()
    for label, (rgb, freq) in COLOURS.items():
        for k in range(3):
            frames = np.zeros((16, 32, 32, 3), np.uint8)
            frames[:, 8 + 2 * k: 24, 8:24] = rgb
            rel = f"clips/{label}/{k}.mp4"
            write_av(root / rel, frames, 8, _tone(freq, 2.0), 16000)
            rows.append(f"{root / rel},2.0,{label}")
            (train if k < 2 else test).append(f"{rel},{label}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    (root / "train.csv").write_text("\n".join(train) + "\n")
    (root / "test.csv").write_text("\n".join(test) + "\n")
    return root


# ------------------------------------------------------------------------------------ a backbone


def test_a_backbone_is_one_file_and_every_stage_reader_uses_its_contract(plugin: Plugin) -> None:
    backbone = plugin("backbone")
    torch.manual_seed(0)
    model = build_av_model(MODEL)  # a config naming it, checked against the registry at load
    encoder = model.video_encoder
    assert isinstance(encoder, backbone.ConvLN) and isinstance(encoder, VideoEncoder)
    assert isinstance(encoder, nn.Module)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in encoder.modules())
    assert any(isinstance(m, nn.LayerNorm) for m in encoder.modules())

    out = model(torch.randn(2, 3, 4, 32, 32), torch.randn(2, 1, 64, 50), video_stages=True)
    assert out.video_emb.shape == (2, 16)
    for stage in encoder.stages:  # each stage's map has the width and grid the contract states
        assert out.video_stages[stage.name].shape == (2, stage.channels, *stage.grid_size(4, 32, 32))
    assert torch.equal(out.video_grid, out.video_stages["stage2"])

    # a localizer on its finer stage, or on both stages as a hypercolumn: widths from the contract
    assert stage_channels(model, "stage1") == 16 and stage_channels(model, "stage1+stage2") == 48
    with pytest.raises(ValueError, match="no stage 'layer3'; valid: stage1, stage2"):
        stage_channels(model, "layer3")
    for grid_stage in ("stage1", "stage1+stage2"):
        spec = LocalizerSpec.for_model(model, embed_dim=8, grid_stage=grid_stage)
        assert localization_maps(model.eval(), out, (spec.build(), spec)).shape == (2, 4, 8, 8)
    assert list(encoder_blocks(encoder)) == ["stage1", "stage2"]  # per-block analysis (CKA)


def test_an_unknown_backbone_is_refused_with_the_valid_names(plugin: Plugin) -> None:
    with pytest.raises(ConfigError, match="conv_ln"):
        ModelConfig(video_arch="conv_ln")
    plugin("backbone")
    assert ModelConfig(video_arch="conv_ln").video_arch == "conv_ln"
    with pytest.raises(ConfigError, match=r"Did you mean 'conv_ln'.*conv_ln, r2plus1d_18"):
        ModelConfig(video_arch="conv_l")
    with pytest.raises(ConfigError, match="zero_init_residual"):  # its builder does not take it
        ModelConfig(video_arch="conv_ln", zero_init_residual=True)


# ---------------------------------------------------------------------------------- an objective


def _batch(b: int = 4) -> dict[str, torch.Tensor]:
    return {"video": torch.rand(b, 3, 4, 32, 32) + 0.1, "audio": torch.randn(b, 1, 64, 50),
            "index": torch.arange(b)}


def test_an_objective_is_one_file_and_drives_the_forward(plugin: Plugin) -> None:
    plugin("backbone")
    objective_file = plugin("objective")
    spec = ObjectiveSpec.from_config({"name": "masked_nce", "mask_ratio": 0.5}, "objective")
    objective = spec.build(ObjectiveContext(num_items=8, embed_dim=16))
    assert isinstance(objective, objective_file.MaskedNCE) and objective.cfg.mask_ratio == 0.5
    with pytest.raises(ConfigError, match="num_negatives"):  # its section holds its own keys only
        ObjectiveSpec.from_config({"name": "masked_nce", "num_negatives": 8}, "objective")

    torch.manual_seed(0)
    model = build_av_model(MODEL)
    inputs: list[torch.Tensor] = []

    def net(video: torch.Tensor, audio: torch.Tensor, **options: Any) -> Any:
        inputs.append(video)
        return model(video, audio, **options)

    loss, logs, out = objective.forward_loss(net, _batch())
    assert len(inputs) == 1  # the network ran once, on the video the objective masked
    blank = (inputs[0] == 0).all(dim=1).flatten(2).all(dim=2)  # (B, T): frames blanked out
    assert blank.any() and not blank.all()
    assert torch.isfinite(loss) and torch.equal(logs["loss"], loss.detach())
    assert out.video_emb.shape == (4, 16)
    loss.backward()
    assert all(p.grad is not None for p in model.video_encoder.parameters())

    # a learned localizer wraps it, on the new backbone's finer stage, and the objective still drives
    wrapped = LocalizationConfig(weight=0.5, embed_dim=8, grid_stage="stage1").wrap(objective, model)
    total, logs, _ = wrapped.forward_loss(wrapped.network(model), _batch())
    assert "loc/loss" in logs and torch.isfinite(total) and not torch.equal(total, logs["objective_loss"])

    from benchmarks import downstream_synth, localization_synth  # they offer every registered objective

    for bench in (downstream_synth, localization_synth):
        assert bench.parser().parse_args(["--objective", "masked_nce"]).objective == "masked_nce"


def test_one_pretraining_step_with_the_new_objective_and_backbone(plugin: Plugin, videos: Path,
                                                                  tmp_path: Path) -> None:
    """``avlearn pretrain`` with ``objective.name=masked_nce`` and ``model.video_arch=conv_ln``, a
    localizer on ``stage1``: one step, the export loads back with the new encoder."""
    backbone = plugin("backbone")
    plugin("objective")
    run = tmp_path / "run"
    code = pretrain(["--config", "pretrain/synth_cpu.yaml", f"run_dir={run}",
                     f"data.manifest={videos}/manifest.csv", "model.video_arch=conv_ln", "model.embed_dim=16",
                     "model.proj_hidden=32",
                     "objective.name=masked_nce", "objective.mask_ratio=0.25", "epochs=1", "max_steps=1",
                     "data.num_frames=4", "data.fps=8", "data.decode_size=32", "data.video_aug.size=32",
                     "data.batch_size=4", "data.num_workers=0", "optim.warmup_epochs=0", "train.log_every=1",
                     "train.progress=false", "train.tensorboard=false", "localization.weight=0.1",
                     "localization.grid_stage=stage1", "localization.embed_dim=8"])
    assert code == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "train/loss" in r]
    assert losses and math.isfinite(losses[-1]["train/loss"]) and "train/loc/loss" in losses[-1]
    assert "mask_ratio: 0.25" in (run / "config.yaml").read_text()
    model = load_av_model(run)[0]
    assert isinstance(model.video_encoder, backbone.ConvLN)
    assert localizer_path(run / "encoders.safetensors").is_file()


# ------------------------------------------------------------------------------- a clip source


def test_a_clip_source_is_one_file_the_loader_deals_out(plugin: Plugin, tmp_path: Path) -> None:
    """Pre-decoded frames: samples as the file datasets', a bad file counted and replaced."""
    source_file = plugin("clip_source")
    rows = []
    for k, (rgb, freq) in enumerate(COLOURS.values()):
        frames = np.broadcast_to(np.array(rgb, np.uint8), (16, 24, 24, 3))
        np.savez(tmp_path / f"{k}.npz", frames=frames, audio=_tone(freq, 2.0))
        rows.append(VideoInfo(str(tmp_path / f"{k}.npz"), f"v{k}", duration=2.0, fps=8.0, has_video=True,
                              has_audio=True))
    (tmp_path / "bad.npz").write_bytes(b"not an array")
    rows.append(VideoInfo(str(tmp_path / "bad.npz"), "bad", duration=2.0, fps=8.0, has_video=True,
                          has_audio=True))
    spec = ClipSpec(num_frames=4, fps=8, size=None, audio_seconds=1.0, sample_rate=16000)
    source = source_file.FrameSource(rows, spec, seed=0, clips_per_video=2)
    assert len(source) == 6 and source.num_videos == 3
    assert torch.equal(source[1]["video"], source[1]["video"])  # sample i: the same every time

    loader, batches = build_loader(source, batch_size=2, seed=0, num_workers=0)
    tracker = FailureTracker()
    source.set_epoch(0)
    batches.set_epoch(0)
    seen = []
    for batch in loader:
        tracker.update(batch)
        assert batch["video"].shape == (2, 3, 4, 24, 24) and batch["audio"].shape == (2, 16000)
        seen += batch["index"].tolist()
    assert len(seen) == 6 and 2 not in seen  # the bad file (row 2) is replaced in both its samples
    assert tracker.replaced == 2 and tracker.failures >= 2
    assert tracker.bad_paths == [str(tmp_path / "bad.npz")]
    red = source[0]
    assert red["video"][0].mean() > 0.7 and red["video"][2].mean() < 0.2  # the red file's frames
    assert red["audio"].abs().max() > 0.2  # its tone


def test_a_registered_clip_source_is_a_config_choice(plugin: Plugin, tmp_path: Path) -> None:
    """``data.source: npz_frames`` builds the example's source from the config alone; a name that no
    source registered is refused at load, listing the registered ones."""
    plugin("clip_source")
    rows = []
    for k, (rgb, freq) in enumerate(COLOURS.values()):
        np.savez(tmp_path / f"{k}.npz", frames=np.broadcast_to(np.array(rgb, np.uint8), (16, 40, 40, 3)),
                 audio=_tone(freq, 2.0))
        rows.append(VideoInfo(str(tmp_path / f"{k}.npz"), f"v{k}", duration=2.0, fps=8.0, has_video=True,
                              has_audio=True))
    manifest = write_manifest(rows, tmp_path / "manifest.csv")
    cfg = DataConfig(source="npz_frames", manifest=str(manifest), num_frames=4, fps=8, decode_size=40,
                     clips_per_video=2, video_aug=VideoAugConfig(size=32))
    dataset = build_train_dataset(cfg)
    assert type(dataset).__name__ == "FrameSource" and len(dataset) == 4
    assert dataset[0]["video"].shape == (3, 4, 32, 32)
    with pytest.raises(InvalidValue, match="npz_frames"):
        DataConfig(source="npz_frame")


# ------------------------------------------------------------------------------- a split format


def test_a_split_format_is_one_function_the_dispatcher_and_the_probe_use(plugin: Plugin, videos: Path,
                                                                          tmp_path: Path) -> None:
    plugin("split_format")
    plugin("backbone")
    cfg = DatasetConfig(format="csv", root=str(videos))
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    assert train.classes == ["blue", "red"] and len(train) == 4 and len(test) == 2
    assert test.items == [("clips/red/2.mp4", 1), ("clips/blue/2.mp4", 0)]
    (tmp_path / "train.csv").write_text("clips/red/0.mp4\n")
    with pytest.raises(SplitFormatError, match=r"train.csv:1: got \['clips/red/0.mp4'\]; expected path,"):
        load_split(DatasetConfig(format="csv", root=str(tmp_path)), "train")
    with pytest.raises(ConfigError, match=r"Did you mean 'csv'"):
        DatasetConfig(format="cvs")

    # the linear probe over the new format and the new backbone: its default stage is the last stated
    run = tmp_path / "probe"
    assert linear_probe(["--config", "probe/synth_cpu.yaml", "--init", "scratch", f"run_dir={run}",
                         "dataset.format=csv", f"dataset.root={videos}", "model.video_arch=conv_ln",
                         "features.stages=[]", "features.train_clips=1", "features.test_clips=1",
                         "data.num_frames=4", "data.fps=8", "data.decode_size=32",
                         "data.video_aug.size=32"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["stages"] == ["stage2"] and results["feature_dim"] == 32
    assert results["train_videos"] == 4 and results["test_videos"] == 2


# --------------------------------------------------------------- a localization benchmark format


def _benchmark_layout(root: Path) -> tuple[Path, Path]:
    """``frames/<id>.jpg`` (a red square), ``audio/<id>.wav``, ``boxes.csv`` and ``test.csv`` of 2 ids."""
    (root / "frames").mkdir(parents=True)
    (root / "audio").mkdir()
    for name in ("a1", "b2"):
        image = np.full((64, 64, 3), 90, np.uint8)
        image[16:48, 8:40] = (220, 30, 30)
        Image.fromarray(image).save(root / "frames" / f"{name}.jpg")
        with wave.open(str(root / "audio" / f"{name}.wav"), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(16000)
            f.writeframes((_tone(440.0, 2.0) * 32767).astype("<i2").tobytes())
    (root / "boxes.csv").write_text("a1,0.125,0.25,0.625,0.75\nb2,0.125,0.25,0.625,0.75\nb2,0,0,0.1,0.1\n")
    (root / "test.csv").write_text("a1\nb2\n")
    return root / "boxes.csv", root / "test.csv"


def test_a_benchmark_format_is_one_function_the_command_offers(plugin: Plugin, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    plugin("benchmark_format")
    plugin("backbone")
    root = tmp_path / "bench"
    boxes, test_list = _benchmark_layout(root)
    items, counts = benchmark_items("boxes_csv", root, boxes, test_list)
    assert [it.name for it in items] == ["a1", "b2"] and counts == {"missing_files": 0}
    gt = items[1].gt
    assert gt is not None and gt.shape == (224, 224)
    assert gt[100, 50] == 1 and gt[10, 10] == 1 and gt[200, 200] == 0  # the union of b2's two boxes

    cfg = as_model_config(MODEL)
    data = {"num_frames": 4, "fps": 8.0, "audio_seconds": 1.0, "video_aug": {"size": 32}}
    checkpoint = save_encoders(build_av_model(cfg), tmp_path / "conv_ln.safetensors",
                               {"model": to_dict(cfg), "data": data})
    out = tmp_path / "report.json"
    assert evaluate_localization(["--format", "boxes_csv", "--checkpoint", str(checkpoint), "--root",
                                  str(root), "--annotations", str(boxes), "--test-list", str(test_list),
                                  "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["format"] == "boxes_csv" and report["trials"]["positive"] == 2
    assert 0.0 <= report["model"]["auc"] <= 1.0
    with pytest.raises(SystemExit):
        evaluate_localization(["--format", "boxes", "--checkpoint", str(checkpoint)])
    assert "'boxes_csv'" in capsys.readouterr().err  # the choices, from the registry


# ----------------------------------------------------------------------------------- a benchmark


def test_a_benchmark_is_one_file_the_table_reads(plugin: Plugin, tmp_path: Path) -> None:
    from benchmarks import readme_table

    bench = plugin("benchmark", package=benchmarks)
    assert bench.__name__ == "benchmarks.encoder_params"
    assert bench.main(["--out", str(tmp_path / "encoder_params")]) == 0
    record = json.loads((tmp_path / "encoder_params.json").read_text())
    assert record["benchmark"] == "encoder_params" and list(record["params"]) == list(VIDEO_ENCODERS)
    assert "python -m benchmarks.encoder_params --out" in record["command"]
    row = readme_table.rows_for(tmp_path / "encoder_params.json")[0]
    assert bench.headline(record) in row and "smallest: r2plus1d_tiny" in row
    assert (tmp_path / "encoder_params.md").read_text().startswith("# Video encoder parameters")
