"""Block features read with hooks, and ``avlearn analyze cka`` end to end on a tiny collection."""

from __future__ import annotations

import json
from pathlib import Path

import einops
import pytest
import torch

from avlearn.analysis.blocks import block_features, encoder_blocks, model_blocks
from avlearn.cli import main as cli_main
from avlearn.config import to_dict
from avlearn.models.checkpoint import save_encoders
from avlearn.models.registry import ModelConfig, build_av_model
from avlearn.models.video import r2plus1d_18
from tests.train.downstream_helpers import small_collection

TINY = ModelConfig(video_arch="r2plus1d_tiny", audio_arch="avid_spec_cnn9_tiny", embed_dim=16, proj_hidden=32)


def test_blocks_are_the_stem_and_every_residual_block() -> None:
    assert list(encoder_blocks(r2plus1d_18())) == [
        "stem", *[f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]]
    names = list(model_blocks(build_av_model(TINY)))
    assert names == ["video.stem", *[f"video.layer{s}.0" for s in range(1, 5)], "audio.stem",
                     *[f"audio.block{s}" for s in range(1, 5)]]


def test_block_features_are_the_blocks_outputs_pooled() -> None:
    torch.manual_seed(0)
    model = build_av_model(TINY).train()
    batch = {"video": torch.randn(3, 3, 4, 32, 32), "audio": torch.randn(3, 1, 40, 32)}
    feats = block_features({"m": model}, [batch, batch], pool="mean")["m"]
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        grid = model.video_encoder(batch["video"]).grid
        spec_grid = model.audio_encoder(batch["audio"]).grid
    pooled = einops.reduce(grid, "b c t h w -> b c", "mean")
    torch.testing.assert_close(feats["video.layer4.0"], torch.cat([pooled, pooled]))
    pooled = einops.reduce(spec_grid, "b c f t -> b c", "mean")
    torch.testing.assert_close(feats["audio.block4"], torch.cat([pooled, pooled]))
    flat = block_features({"m": model}, [batch], pool="flatten")["m"]
    assert flat["video.layer4.0"].shape == (3, grid[0].numel())
    assert not model.training  # a model read in eval mode stays in eval mode


def test_block_features_restore_each_models_own_mode() -> None:
    torch.manual_seed(0)
    trained, frozen = build_av_model(TINY).train(), build_av_model(TINY).eval()
    batch = {"video": torch.randn(2, 3, 4, 32, 32), "audio": torch.randn(2, 1, 40, 32)}
    block_features({"a": trained, "b": frozen}, [batch])
    assert trained.training and not frozen.training
    assert not any(m.training for m in frozen.modules())


def _export(tmp_path: Path) -> Path:
    """A tiny random model saved with a run config whose data section decodes 16 px, 4-frame clips."""
    torch.manual_seed(1)
    data = {"num_frames": 4, "decode_size": 20, "audio_seconds": 1.0, "num_workers": 0,
            "video_aug": {"size": 16}}
    config = {"seed": 5, "model": to_dict(TINY), "data": data}
    return save_encoders(build_av_model(TINY), tmp_path / "run" / "encoders.safetensors", config)


def test_analyze_cka_end_to_end(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from avlearn.data.manifest import write_manifest
    from avlearn.data.splits import synthetic_split, to_manifest_rows

    root = small_collection(tmp_path_factory)
    manifest = write_manifest(to_manifest_rows(synthetic_split(root, "test"), probe=True), tmp_path / "t.csv")
    export = _export(tmp_path)

    assert cli_main(["analyze", "cka", str(export), "scratch", "--manifest", str(manifest),
                     "--out", str(tmp_path / "vs_random"), "--cka-batch", "6"]) == 0
    result = json.loads((tmp_path / "vs_random" / "cka.json").read_text())
    blocks = list(model_blocks(build_av_model(TINY)))
    assert result["blocks_a"] == result["blocks_b"] == blocks
    assert result["clips"] == 12 and result["cka_batch"] == 6 and result["b"] == "scratch"
    for name in ("linear", "unbiased", "minibatch"):
        assert len(result[name]) == len(blocks) and all(len(row) == len(blocks) for row in result[name])
    assert all(0.0 <= v <= 1.0 + 1e-9 for row in result["linear"] for v in row if v is not None)
    assert (tmp_path / "vs_random" / "cka.png").read_bytes()[:4] == b"\x89PNG"
    assert "video.layer4.0" in capsys.readouterr().out

    # a model against itself: every block matches itself exactly; scratch from the stored seed
    assert cli_main(["analyze", "cka", str(export), str(export), "--manifest", str(manifest),
                     "--out", str(tmp_path / "self")]) == 0
    same = json.loads((tmp_path / "self" / "cka.json").read_text())
    for i in range(len(blocks)):
        assert same["linear"][i][i] == pytest.approx(1.0) and same["minibatch"][i][i] == pytest.approx(1.0)
    assert result["linear"] != same["linear"]


def test_analyze_cka_names_a_bad_model_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("path\n")
    assert cli_main(["analyze", "cka", str(tmp_path / "missing_run"), "scratch", "--manifest", str(manifest),
                     "--out", str(tmp_path / "o")]) == 2
    assert "missing_run" in capsys.readouterr().err


def _finetuned(root: Path, export: Path, run: Path, frozen: bool) -> Path:
    """Two steps of ``avlearn finetune`` from ``export``; ``frozen``: the classifier warm-up spans
    the run, so the encoder stays the pretrained one."""
    from avlearn.train.finetune import main as finetune_main
    from tests.train.downstream_helpers import fast_overrides

    # 30 training videos in batches of 4: the 2 steps stay in the first epoch (the warm-up one)
    extra = {"train.progress": False, "train.tensorboard": False, "data.batch_size": 4,
             "data.decode_size": 20, "data.video_aug.size": 16, "data.num_frames": 4, "data.fps": 8,
             "epochs": 2, "max_steps": 2, "eval.num_clips": 1, "warmup_classifier_epochs": 1 if frozen else 0,
             "optim.lr": 0.05}
    config = Path(__file__).resolve().parents[2] / "avlearn" / "configs" / "finetune" / "synth_cpu.yaml"
    argv = ["--config", str(config), "--init", str(export), *fast_overrides(root, run, **extra)]
    assert finetune_main(argv) == 0
    return run


def test_analyze_cka_of_a_finetuned_model_compares_its_video_blocks(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """Pretrained vs fine-tuned: the fine-tuned side has video blocks only, built in the architecture
    it was fine-tuned from (not the fine-tuning config's default model); an encoder left frozen
    matches the pretrained one exactly, a trained one does not."""
    from avlearn.analysis.cka_cli import analyze
    from avlearn.data.manifest import write_manifest
    from avlearn.data.splits import synthetic_split, to_manifest_rows

    root = small_collection(tmp_path_factory)
    manifest = write_manifest(to_manifest_rows(synthetic_split(root, "test"), probe=True), tmp_path / "t.csv")
    export = _export(tmp_path)
    video = [b for b in model_blocks(build_av_model(TINY)) if b.startswith("video.")]
    diagonals = {}
    for frozen in (True, False):
        run = _finetuned(root, export, tmp_path / f"ft_{frozen}", frozen)
        result = analyze(str(export), str(run), str(manifest), tmp_path / f"cka_{frozen}", cka_batch=6)
        assert result["blocks_b"] == video and result["blocks_a"] == list(model_blocks(build_av_model(TINY)))
        diagonals[frozen] = [result["linear"][i][i] for i in range(len(video))]
    assert diagonals[True] == pytest.approx([1.0] * len(video), abs=1e-6)
    assert min(diagonals[False]) < 1 - 1e-4, diagonals
