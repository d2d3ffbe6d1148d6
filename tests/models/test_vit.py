"""The ViT encoders: shapes and stages, the keep-mask, sin-cos positions against MAE's formula, ViT-B's
parameter count, and the tools that read the encoder contract (localizer, probe, retrieval, CKA)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import einops
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from avlearn.analysis.blocks import block_features, encoder_blocks
from avlearn.analysis.cka import cka_matrix
from avlearn.eval.retrieval import evaluate_retrieval
from avlearn.localization.learned import LocalizerSpec, localization_maps
from avlearn.models import (
    AUDIO_ENCODERS,
    VIDEO_ENCODERS,
    AudioEncoder,
    AudioViT,
    AVModel,
    VideoEncoder,
    VideoViT,
    build_av_model,
    encoder_stages,
)
from avlearn.models.checkpoint import save_encoders
from avlearn.models.vit import keep_tokens, sincos_1d, sincos_2d, sincos_3d
from avlearn.models.weights import load_av_model
from avlearn.train.linear_probe import extract_features

VITS = {"video_arch": "vit_video_tiny", "audio_arch": "vit_audio_tiny", "video_pool": "avg",
        "audio_pool": "avg", "embed_dim": 16, "proj_hidden": 32}
VIT_B16 = 86_567_656  # timm's vit_base_patch16_224: 197 learned positions, class token, 1000-way head


def _clips(b: int = 2, t: int = 4, size: int = 32) -> Tensor:
    return torch.randn(b, 3, t, size, size, generator=torch.Generator().manual_seed(1))


def _specs(b: int = 2, f: int = 32, t: int = 64) -> Tensor:
    return torch.randn(b, 1, f, t, generator=torch.Generator().manual_seed(2))


# --------------------------------------------------------------------------- shapes and stages


@pytest.mark.parametrize(("name", "t", "size", "grid"), [
    ("vit_video_tiny", 4, 32, (2, 2, 2)), ("vit_video_tiny", 8, 64, (4, 4, 4)),
    ("vit_video_p8_tiny", 8, 32, (4, 4, 4)), ("vit_frame_tiny", 1, 48, (1, 3, 3)),
    ("vit_video_tiny", 3, 40, (2, 3, 3)),  # sizes the tubelet does not divide: padded, rounded up
])
def test_video_grid_and_stages(name: str, t: int, size: int, grid: tuple[int, ...]) -> None:
    encoder = VIDEO_ENCODERS[name]().eval()
    assert isinstance(encoder, VideoEncoder)
    with torch.no_grad():
        out = encoder(_clips(2, t, size), return_stages=True)
    assert out.emb.shape == (2, encoder.out_dim) and out.grid.shape == (2, encoder.grid_dim, *grid)
    assert list(out.stages) == [stage.name for stage in encoder.stages] == ["grids.0", "grids.1", "grids.2",
                                                                            "grids.3"]
    for stage in encoder.stages:  # the stated widths and strides are the real maps'
        assert out.stages[stage.name].shape == (2, stage.channels, *stage.grid_size(t, size, size))
    assert torch.equal(out.stages["grids.3"], out.grid)
    torch.testing.assert_close(out.emb, out.grid.mean(dim=(2, 3, 4)))  # mean over tokens, no class token


def test_audio_grid_and_stages() -> None:
    encoder = AUDIO_ENCODERS["vit_audio_tiny"]().eval()
    assert isinstance(encoder, AudioEncoder)
    with torch.no_grad():
        out = encoder(_specs(2, 32, 64), return_stages=True)
    assert out.emb.shape == (2, 128) and out.grid.shape == (2, 128, 2, 4)  # (B, C, F', T') as the CNNs
    for stage in encoder.stages:
        assert stage.stride == (16, 16)
        assert out.stages[stage.name].shape == (2, stage.channels, *stage.grid_size(32, 64))
    torch.testing.assert_close(out.emb, out.grid.mean(dim=(2, 3)))


def test_base_stages_group_twelve_blocks_in_four() -> None:
    with torch.device("meta"):
        stages = encoder_stages(VIDEO_ENCODERS["vit_video_base"]()).values()
    assert [s.name for s in stages] == ["grids.2", "grids.5", "grids.8", "grids.11"]
    assert list(stages)[1].blocks == ("grids.3", "grids.4", "grids.5")
    assert {s.channels for s in stages} == {768} and {s.stride for s in stages} == {(2, 16, 16)}


def test_stage_grids_are_the_block_outputs() -> None:
    """An intermediate grid is its block's tokens (residual stream); the last is after the final norm."""
    encoder = VideoViT("tiny", (2, 16, 16)).eval()
    seen: list[Tensor] = []
    encoder.blocks[1].register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        out = encoder(_clips(), return_stages=True)
        last = encoder.tokens(_clips())
    torch.testing.assert_close(out.stages["grids.1"], einops.rearrange(seen[0], "b (t h w) d -> b d t h w",
                                                                         t=2, h=2, w=2))
    torch.testing.assert_close(out.grid, einops.rearrange(last, "b (t h w) d -> b d t h w", t=2, h=2, w=2))


def test_blocks_are_cav_mae_s() -> None:
    """qkv bias, torch's LayerNorm eps (1e-5, not timm's 1e-6), fused attention, MLP ratio 4."""
    encoder = AudioViT("tiny")
    norms = [m for m in encoder.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 * 4 + 1 and {m.eps for m in norms} == {1e-5}
    block: Any = encoder.blocks[0]
    assert block.attn.fused_attn and block.attn.qkv.bias is not None
    assert block.mlp.fc1.out_features == 4 * 128 and block.attn.num_heads == 4
    assert not any("cls" in name for name, _ in encoder.named_parameters())


def test_bad_inputs_and_settings_are_named() -> None:
    with pytest.raises(ValueError, match=r"VideoViT takes \(B, 3, T, H, W\)"):
        VideoViT("tiny")(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="at least 4"):
        VideoViT("tiny").__class__.__mro__[1]((16, 16), 1, 64, 3, 4)
    with pytest.raises(ValueError, match="needs input_size"):
        AudioViT("tiny", pos_embed="learned")


# --------------------------------------------------------------------------- parameter counts


def test_base_has_vit_b16_s_parameters() -> None:
    """ViT-B/16 (86,567,656) less its head (768 x 1000 + 1000), class token (768) and learned table of
    197 x 768 positions (ours are fixed): 85,646,592 for one frame; a 2-frame tubelet doubles the patch
    projection's weights; audio has one input channel."""
    with torch.device("meta"):
        counts = {name: sum(p.numel() for p in build().parameters())
                  for name, build in (("frame", VIDEO_ENCODERS["vit_frame_base"]),
                                      ("video", VIDEO_ENCODERS["vit_video_base"]),
                                      ("audio", AUDIO_ENCODERS["vit_audio_base"]))}
    assert counts["frame"] == VIT_B16 - (768 * 1000 + 1000) - 768 - 197 * 768 == 85_646_592
    assert counts["video"] == counts["frame"] + 3 * 16 * 16 * 768 == 86_236_416
    assert counts["audio"] == counts["frame"] - 2 * 16 * 16 * 768 == 85_253_376


# --------------------------------------------------------------------------- keep-mask


def _keep(b: int, n: int, kept: int, seed: int = 0) -> Tensor:
    """A random mask keeping ``kept`` of ``n`` tokens in every row."""
    g = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(n, generator=g) for _ in range(b)])
    return torch.zeros(b, n, dtype=torch.bool).scatter(1, order[:, :kept], True)


@pytest.mark.parametrize("modality", ["video", "audio"])
def test_a_masked_forward_is_a_forward_on_the_kept_tokens(modality: str) -> None:
    video = modality == "video"
    encoder: VideoViT | AudioViT = (VideoViT("tiny", (2, 8, 8)) if video else AudioViT("tiny")).eval()
    x = _clips(2, 4, 32) if modality == "video" else _specs(2, 32, 64)
    n = 2 * 4 * 4 if modality == "video" else 2 * 4
    keep = _keep(2, n, n // 4)
    with torch.no_grad():
        out = encoder(x, keep=keep)
        # by hand: patch tokens + positions, the kept ones of each row, the blocks, the final norm
        tokens = einops.rearrange(encoder.patch_embed(x), "b d ... -> b (...) d")
        grid = tuple(encoder.patch_embed(x).shape[2:])
        table = sincos_3d(128, *grid) if modality == "video" else sincos_2d(128, *grid)
        tokens = tokens + table.float()
        kept = torch.stack([tokens[i, keep[i]] for i in range(2)])
        for block in encoder.blocks:
            kept = block(kept)
        kept = encoder.norm(kept)
        full = encoder(x, return_stages=False)
    torch.testing.assert_close(encoder.tokens(x, keep), kept)
    torch.testing.assert_close(out.emb, kept.mean(dim=1))
    cells = einops.rearrange(out.grid, "b d ... -> b (...) d")
    torch.testing.assert_close(cells[keep], kept.flatten(0, 1))
    assert not cells[~keep].any()  # dropped cells are zeros
    assert not torch.allclose(out.emb, full.emb, atol=1e-3)  # the dropped tokens mattered


def test_a_keep_mask_is_checked() -> None:
    tokens = torch.randn(2, 8, 4)
    with pytest.raises(ValueError, match=r"same count of tokens per sample, got \[2, 3\]"):
        keep_tokens(tokens, torch.arange(8).expand(2, 8) < torch.tensor([[2], [3]]))
    with pytest.raises(ValueError, match=r"bool mask of shape \(2, 8\)"):
        keep_tokens(tokens, torch.ones(2, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="return_stages needs every token"):
        AudioViT("tiny")(_specs(2, 32, 64), return_stages=True, keep=_keep(2, 8, 2))


# --------------------------------------------------------------------------- position embeddings


def _mae_2d(dim: int, grid_h: int, grid_w: int) -> np.ndarray:
    """MAE's / CAV-MAE's ``get_2d_sincos_pos_embed`` written out in numpy, loops where it can."""
    def one_d(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.array([[p * w for w in omega] for p in pos.reshape(-1)])
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.stack(np.meshgrid(np.arange(grid_w, dtype=np.float32), np.arange(grid_h, dtype=np.float32)))
    return np.concatenate([one_d(dim // 2, grid[0]), one_d(dim // 2, grid[1])], axis=1)


@pytest.mark.parametrize(("dim", "h", "w"), [(768, 14, 14), (768, 8, 64), (16, 3, 5)])
def test_sincos_2d_is_mae_s(dim: int, h: int, w: int) -> None:
    np.testing.assert_allclose(sincos_2d(dim, h, w).numpy(), _mae_2d(dim, h, w), atol=1e-12)


def test_sincos_3d_is_2d_at_the_first_step_and_distinct_after() -> None:
    table = einops.rearrange(sincos_3d(32, 3, 2, 4), "(t n) d -> t n d", t=3)
    torch.testing.assert_close(table[0], sincos_2d(32, 2, 4))
    step = sincos_1d(32, torch.tensor([2])) - sincos_1d(32, torch.tensor([1]))  # the same at every cell
    torch.testing.assert_close(table[2] - table[1], step.expand(8, 32))
    assert len({tuple(row.tolist()) for row in table.flatten(0, 1)}) == 3 * 2 * 4


def test_one_frame_gets_cav_mae_s_2d_positions() -> None:
    encoder = VideoViT("tiny", (1, 16, 16))  # vit_frame_tiny
    frame = _clips(1, 1, 64)
    with torch.no_grad():
        tokens, grid = encoder.embed(frame)
        patches = einops.rearrange(encoder.patch_embed(frame), "b d t h w -> b (t h w) d")
    assert grid == (1, 4, 4)
    np.testing.assert_allclose((tokens - patches)[0].numpy(), _mae_2d(128, 4, 4), atol=1e-6)


def test_learned_positions_start_at_sincos_and_fit_one_size() -> None:
    encoder = AudioViT("tiny", pos_embed="learned", input_size=(32, 64))
    assert encoder.pos_embed is not None and encoder.pos_embed.requires_grad
    torch.testing.assert_close(encoder.pos_embed[0], sincos_2d(128, 2, 4).float())
    encoder(_specs(2, 32, 64)).emb.sum().backward()
    assert encoder.pos_embed.grad is not None
    with pytest.raises(ValueError, match="are for 8 tokens; this input gives a 2 x 5 grid"):
        encoder(_specs(1, 32, 80))


# --------------------------------------------------------------------------- the tools of the contract


@pytest.fixture(scope="module")
def model() -> AVModel:
    torch.manual_seed(0)
    return build_av_model(VITS).eval()


def _batches(n: int = 2) -> list[dict[str, Any]]:
    return [{"video": _clips(3, 4, 32) + i, "audio": _specs(3, 32, 64) - i} for i in range(n)]


def test_an_av_model_from_a_config_naming_the_vits(model: AVModel) -> None:
    assert isinstance(model.video_encoder, VideoViT) and isinstance(model.audio_encoder, AudioViT)
    with torch.no_grad():
        out = model(_clips(3, 4, 32), _specs(3, 32, 64), video_stages=True)
    assert out.video_emb.shape == out.audio_emb.shape == (3, 16)
    assert out.video_grid.shape == (3, 128, 2, 2, 2) and out.audio_grid.shape == (3, 128, 2, 4)
    assert list(out.video_stages) == ["grids.0", "grids.1", "grids.2", "grids.3"]


@pytest.mark.parametrize("grid_stage", ["", "grids.1", "grids.0+grids.3"])
def test_the_learned_localizer_reads_a_vit_stage(model: AVModel, grid_stage: str) -> None:
    spec = LocalizerSpec.for_model(model, 8, grid_stage=grid_stage)
    assert spec.grid_dim == (256 if "+" in grid_stage else 128)
    localizer = spec.build().eval()
    with torch.no_grad():
        out = model(_clips(3, 4, 32), _specs(3, 32, 64), video_stages=bool(grid_stage))
        maps = localization_maps(model, out, (localizer, spec))
    assert maps.shape == (3, 2, 2, 2) and torch.isfinite(maps).all()


def test_the_probe_s_default_stage_is_the_pooled_embedding(model: AVModel) -> None:
    last = list(encoder_stages(model.video_encoder))[-1]
    assert last == "grids.3"
    items = [{"video": v, "label": i % 2, "video_index": i, "clip_index": 0}
             for i, v in enumerate(_clips(4, 4, 32))]
    feats = extract_features(model.video_encoder, items, "video", [last], "avg", batch_size=2)  # type: ignore[arg-type]
    with torch.no_grad():
        emb = model.video_encoder(torch.stack([item["video"] for item in items])).emb
    torch.testing.assert_close(feats["features"], emb)


def test_retrieval_on_vits(model: AVModel) -> None:
    metrics = evaluate_retrieval(model, _batches())
    assert metrics["n"] == 6 and 0.0 <= metrics["v2a_r1"] <= 1.0 and metrics["chance_r1"] == 1 / 6


def test_block_analysis_and_cka_read_the_stage_grids(model: AVModel) -> None:
    assert list(encoder_blocks(model.audio_encoder)) == ["grids.0", "grids.1", "grids.2", "grids.3"]
    feats = block_features({"vit": model}, _batches())["vit"]
    assert list(feats) == [f"{m}.grids.{i}" for m in ("video", "audio") for i in range(4)]
    assert {tuple(x.shape) for x in feats.values()} == {(6, 128)}  # pooled over positions: (N, D)
    with torch.no_grad():
        emb = torch.cat([model.video_encoder(b["video"]).emb for b in _batches()])
    torch.testing.assert_close(feats["video.grids.3"], emb)  # the last block's grid is the output
    cka = cka_matrix(feats, feats)
    torch.testing.assert_close(cka.diagonal(), torch.ones(8, dtype=torch.float64))


def test_an_export_loads_back(model: AVModel, tmp_path: Path) -> None:
    path = save_encoders(model, tmp_path / "vit.safetensors", VITS)
    loaded, cfg = load_av_model(path)
    assert cfg.video_arch == "vit_video_tiny" and cfg.audio_pool == "avg"
    model.eval()
    with torch.no_grad():
        a, b = model(_clips(2, 4, 32), _specs(2, 32, 64)), loaded.eval()(_clips(2, 4, 32), _specs(2, 32, 64))
    assert torch.equal(a.video_emb, b.video_emb) and torch.equal(a.audio_emb, b.audio_emb)
