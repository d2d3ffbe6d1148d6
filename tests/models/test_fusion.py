"""CAV-MAE's shared blocks (:mod:`avlearn.models.fusion`): which norms each path uses, the model that
encodes through them, its export, the refusal of CNN encoders, and the 11-block ViTs they follow."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from avlearn.config import ConfigError
from avlearn.models import AUDIO_ENCODERS, VIDEO_ENCODERS, AVModel, SharedFusion, build_av_model
from avlearn.models.checkpoint import read_safetensors, save_encoders
from avlearn.models.fusion import SharedBlock
from avlearn.models.registry import ModelConfig
from avlearn.models.weights import load_av_model

CAV = {"video_arch": "vit_video_p8_tiny", "audio_arch": "vit_audio_tiny", "video_pool": "avg",
       "audio_pool": "avg", "head": "identity", "fusion_depth": 1}


def _inputs(b: int = 2) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, 3, 4, 32, 32, generator=g), torch.randn(b, 1, 32, 48, generator=g)


@pytest.fixture(scope="module")
def model() -> AVModel:
    torch.manual_seed(0)
    return build_av_model(CAV).eval()


def _perturbed(block: SharedBlock, name: str) -> SharedBlock:
    out = SharedBlock(32, 4)
    out.load_state_dict(block.state_dict())
    with torch.no_grad():
        out.get_submodule(name).weight.add_(0.5)
    return out


@pytest.mark.parametrize("name", ["norm1", "norm2", "norm1_a", "norm2_a", "norm1_v", "norm2_v"])
def test_each_path_reads_its_own_norms(name: str) -> None:
    torch.manual_seed(0)
    block, x = SharedBlock(32, 4).eval(), torch.randn(2, 5, 32)
    other = _perturbed(block, name).eval()
    for modality in (None, "a", "v"):
        uses = name[5:] == ("" if modality is None else f"_{modality}")
        changed = not torch.equal(block(x, modality), other(x, modality))
        assert changed == uses, (name, modality)


def test_a_block_is_pre_norm_attention_then_mlp() -> None:
    torch.manual_seed(0)
    block, x = SharedBlock(32, 4).eval(), torch.randn(2, 5, 32)
    attn: nn.Module = block.attn
    h = x + attn(block.norm1_a(x))
    torch.testing.assert_close(block(x, "a"), h + block.mlp(block.norm2_a(h)))


def test_the_paths_compose_as_the_reference(model: AVModel) -> None:
    """encode = mean of single(specific(x)) with the encoder's norm; joint = norm(blocks(cat(a, v)))."""
    fusion, video, audio = model.fusion, *_inputs()
    assert isinstance(fusion, SharedFusion)
    enc_a = model.audio_encoder
    with torch.no_grad():
        tokens, grid = fusion.specific(enc_a, audio, "a")
        embedded, _ = enc_a.embed(audio)
        direct = embedded + fusion.modality_a
        for block in enc_a.blocks:
            direct = block(direct)
        torch.testing.assert_close(tokens, direct)
        single = fusion.blocks[0](tokens, "a")
        torch.testing.assert_close(fusion.single(tokens, "a", enc_a.norm), enc_a.norm(single))
        out = model(video, audio)
        torch.testing.assert_close(out.audio_feat, enc_a.norm(single).mean(1))
        v_tokens, _ = fusion.specific(model.video_encoder, video, "v")
        joint = fusion.joint(tokens, v_tokens)
        expected = fusion.norm(fusion.blocks[0](torch.cat([tokens, v_tokens], 1)))
        torch.testing.assert_close(joint, expected)
    assert grid == (2, 3) and out.audio_grid.shape == (2, 128, 2, 3)
    assert out.video_grid.shape == (2, 128, 2, 4, 4)
    torch.testing.assert_close(out.video_emb, model.encode_video(video))
    torch.testing.assert_close(out.audio_emb, model.encode_audio(audio))


def test_a_keep_mask_drops_tokens_before_the_blocks(model: AVModel) -> None:
    fusion, video, _ = model.fusion, *_inputs()
    assert fusion is not None
    keep = torch.zeros(2, 32, dtype=torch.bool)
    keep[0, :8], keep[1, -8:] = True, True
    tokens, _ = fusion.specific(model.video_encoder, video, "v", keep)
    assert tokens.shape == (2, 8, 128)


def test_every_parameter_trains_in_the_three_paths(model: AVModel) -> None:
    """The joint pass, both single passes: every fusion and encoder weight gets a gradient (DDP
    without find_unused_parameters needs that)."""
    train = build_av_model(CAV)
    fusion, (video, audio) = train.fusion, _inputs()
    assert fusion is not None
    a, _ = fusion.specific(train.audio_encoder, audio, "a")
    v, _ = fusion.specific(train.video_encoder, video, "v")
    loss = (fusion.joint(a, v).sum() + fusion.single(a, "a", train.audio_encoder.norm).sum()
            + fusion.single(v, "v", train.video_encoder.norm).sum())
    loss.backward()
    missing = [n for n, p in train.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_no_fusion_no_keys_and_the_export_holds_it_once(model: AVModel, tmp_path: Path) -> None:
    plain = build_av_model({k: v for k, v in CAV.items() if k != "fusion_depth"})
    assert plain.fusion is None and not any(k.startswith("fusion") for k in plain.state_dict())
    path = save_encoders(model, tmp_path / "cav.safetensors", CAV)
    tensors, _ = read_safetensors(path)
    assert sum(k.startswith("fusion.blocks.0.attn.qkv.weight") for k in tensors) == 1
    loaded, cfg = load_av_model(path)
    assert cfg.fusion_depth == 1
    video, audio = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(video, audio).video_emb, model(video, audio).video_emb)


def test_cnn_encoders_are_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"model\.video_arch builds a R2Plus1D"):
        build_av_model({"fusion_depth": 1, "video_arch": "r2plus1d_tiny", "audio_arch": "vit_audio_tiny"})
    with pytest.raises(ConfigError, match="fusion_depth"):
        ModelConfig(fusion_depth=-1)


def test_video_stages_are_refused_with_a_fusion(model: AVModel) -> None:
    with pytest.raises(ValueError, match="no video stages"):
        model(*_inputs(), video_stages=True)


def test_base11_is_vit_b_s_first_eleven_blocks_in_four_stages() -> None:
    with torch.device("meta"):
        audio, video, full = AUDIO_ENCODERS["vit_audio_base11"](), VIDEO_ENCODERS["vit_frame_base11"](), \
            AUDIO_ENCODERS["vit_audio_base"]()
    assert len(audio.blocks) == len(video.blocks) == 11
    assert [len(s.blocks) for s in audio.stages] == [3, 3, 3, 2]
    assert audio.stages[-1].name == "grids.10"
    per_block = sum(p.numel() for p in full.blocks[0].parameters())
    count = sum(p.numel() for p in audio.parameters())
    assert count == sum(p.numel() for p in full.parameters()) - per_block
