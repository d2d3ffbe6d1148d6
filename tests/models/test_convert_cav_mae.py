"""``avlearn convert cav-mae``: the authors' CAVMAE / CAVMAEFT checkpoints onto our ViTs and shared block.

Nothing is downloaded: checkpoints are written here with the reference's key names and shapes, by the
ports of its pretraining model (``tests/objectives/_cav_mae_reference.py``) and of its fine-tuning
model (``tests/models/_cav_mae_ft_reference.py``), at tiny sizes (128 wide, 4 + 1 blocks, 16 px
patches) for the forward checks, and at the released base shapes (never run) for the key map.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import Tensor

from avlearn.cli import main as cli_main
from avlearn.config import ConfigError
from avlearn.models import convert_cav_mae
from avlearn.models.checkpoint import CheckpointError
from avlearn.models.convert_cav_mae import (
    CAV_MAE_MODEL,
    Converted,
    convert_state_dict,
    paper_data,
    read_reference_checkpoint,
)
from avlearn.models.joint_classifier import JointClassifier, load_joint_classifier
from avlearn.models.registry import ModelConfig, build_av_model
from avlearn.models.vit import sincos_2d
from avlearn.models.weights import load_av_model, load_encoder, load_weights
from tests.models._cav_mae_ft_reference import RefCAVMAEFT
from tests.objectives._cav_mae_reference import RefCAVMAE, sincos_table

TINY = ModelConfig(video_arch="vit_frame_tiny", audio_arch="vit_audio_tiny", head="identity",
                   video_pool="avg", audio_pool="avg", fusion_depth=1)
# 32 bins x 128 frames: a 2 x 8 audio grid (not square: a swapped layout shows); 48 px: 3 x 3 patches
BINS, FRAMES, IMG = 32, 128, 48
AUDIO, VIDEO = (32, 128), (1, 48, 48)
TOL = 1e-4


def pretrained(seed: int = 0) -> RefCAVMAE:
    torch.manual_seed(seed)
    ref = RefCAVMAE(bins=BINS, frames=FRAMES, img=IMG, p=16, dim=128, specific=4, shared=1, heads=4,
                    dec_dim=64, dec_depth=2)
    ref.init_weights()
    return ref.eval()


def fine_tuned(seed: int = 1, classes: int = 7) -> RefCAVMAEFT:
    return RefCAVMAEFT(classes, bins=BINS, frames=FRAMES, img=IMG).randomise(seed).eval()


def inputs(seed: int = 2) -> tuple[Tensor, Tensor]:
    """The reference's audio ``(B, frames, bins)`` and image ``(B, 3, H, W)``."""
    gen = torch.Generator().manual_seed(seed)
    audio = torch.randn(3, FRAMES, BINS, generator=gen)
    return audio, torch.randn(3, 3, 48, 48, generator=gen)


def ours(audio: Tensor, image: Tensor) -> tuple[Tensor, Tensor]:
    """Our layout of the same inputs: ``(B, 3, 1, H, W)`` and ``(B, 1, F, T)``."""
    return image[:, :, None], audio.transpose(1, 2)[:, None]


def classifier(converted: Converted) -> JointClassifier:
    model = build_av_model(converted.model)
    model.load_state_dict(converted.state, strict=True)
    joint = JointClassifier(model, int(converted.num_classes or 0))
    assert converted.head is not None
    joint.head.load_state_dict(converted.head, strict=True)
    return joint.eval()


# --------------------------------------------------------------------------- (a) embeddings


@pytest.mark.parametrize("positions", ["sincos", "learned"])
def test_embeddings_equal_the_reference_forward_feat(positions: str) -> None:
    ref = pretrained()
    if positions == "learned":  # a tr_pos=True pretraining: tables away from sin-cos are kept as they are
        with torch.no_grad():
            ref.pos_embed_a.add_(0.05 * torch.randn_like(ref.pos_embed_a))
            ref.pos_embed_v.add_(0.05 * torch.randn_like(ref.pos_embed_v))
    converted = convert_state_dict(ref.state_dict(), TINY, AUDIO, VIDEO)
    assert converted.model.pos_embed == positions
    assert converted.head is None and "decoder_embed.weight" in converted.dropped
    model = build_av_model(converted.model).eval()
    model.load_state_dict(converted.state, strict=True)
    audio, image = inputs()
    with torch.no_grad():
        feat_a, feat_v = ref.forward_feat(audio, image)
        out = model(*ours(audio, image))
    diff = max((out.audio_feat - feat_a.mean(1)).abs().max().item(),
               (out.video_feat - feat_v.mean(1)).abs().max().item())
    assert diff <= TOL, diff
    assert out.audio_feat.abs().max() > 0.1  # not two zeros


def test_the_released_tables_are_our_fixed_sincos_so_nothing_is_stored() -> None:
    """pos_embed.py's reshape keeps the flat order: the 8 x 64 table is ours; a transposed one is not."""
    ref = pretrained()
    state = ref.state_dict()
    assert convert_state_dict(state, TINY, AUDIO, VIDEO).model.pos_embed == "sincos"
    rows, cols = AUDIO[0] // 16, AUDIO[1] // 16
    scrambled = torch.from_numpy(sincos_table(128, cols, rows)).float()[None]  # the (T', F') table
    learned = convert_state_dict({**state, "pos_embed_a": scrambled}, TINY, AUDIO, VIDEO)
    assert learned.model.pos_embed == "learned" and learned.model.audio_input_size == AUDIO
    assert torch.equal(learned.state["audio_encoder.pos_embed"], scrambled)  # copied, not reordered


def test_learned_positions_are_a_model_setting() -> None:
    cfg = dataclasses.replace(TINY, pos_embed="learned", video_input_size=VIDEO, audio_input_size=AUDIO)
    model = build_av_model(cfg)
    table = model.audio_encoder.get_parameter("pos_embed")
    assert table.requires_grad and torch.equal(table[0], sincos_2d(128, 2, 8).float())  # starts at sin-cos
    assert model.video_encoder.get_parameter("pos_embed").shape == (1, 9, 128)
    with pytest.raises(ValueError, match="learned position embeddings are for 16 tokens"):
        model(torch.randn(1, 3, *VIDEO), torch.randn(1, 1, 32, 64))
    with pytest.raises(ConfigError, match=r"audio_input_size=None is invalid: pos_embed: learned needs"):
        dataclasses.replace(cfg, audio_input_size=None)
    with pytest.raises(ConfigError, match=r"model.video_input_size=\[1, 48, 48\] is invalid: is only for"):
        dataclasses.replace(TINY, video_input_size=VIDEO)
    with pytest.raises(ValueError, match="learned needs ViT encoders; model.video_arch builds a R2Plus1D"):
        build_av_model(dataclasses.replace(cfg, video_arch="r2plus1d_tiny", fusion_depth=0))


# --------------------------------------------------------------------------- (b) logits


@pytest.mark.parametrize(("mode", "reference_mode"),
                         [("audio_visual", "multimodal"), ("audio", "audioonly"), ("video", "videoonly")])
def test_fine_tuned_logits_equal_the_reference(mode: str, reference_mode: str) -> None:
    ref = fine_tuned()
    state = {f"module.{k}": v for k, v in ref.state_dict().items()}
    converted = convert_state_dict(state, TINY, AUDIO, VIDEO)
    assert converted.model.pos_embed == "learned" and converted.num_classes == 7
    assert converted.model.video_input_size == VIDEO and converted.model.audio_input_size == AUDIO
    audio, image = inputs()
    with torch.no_grad():
        expected = ref(audio, image, reference_mode)
        logits = classifier(converted)(*ours(audio, image), mode=mode)  # type: ignore[arg-type]
    assert logits.shape == (3, 7)
    assert (logits - expected).abs().max().item() <= TOL
    assert expected.std() > 0.1


def test_a_single_modality_mode_needs_only_its_input() -> None:
    joint = classifier(convert_state_dict(fine_tuned().state_dict(), TINY, AUDIO, VIDEO))
    audio, image = inputs()
    video, spec = ours(audio, image)
    with torch.no_grad():
        assert joint(None, spec, "audio").shape == (3, 7)
        assert joint(video, None, "video").shape == (3, 7)
    with pytest.raises(ValueError, match="reads the audio"):
        joint(video, None)
    with pytest.raises(ValueError, match="mode must be one of"):
        joint(video, spec, "multimodal")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- (c) file layouts


@pytest.mark.parametrize("layout", ["module", "model", "state_dict", "raw"])
def test_wrapped_and_prefixed_checkpoints_convert_alike(layout: str, tmp_path: Path) -> None:
    state = fine_tuned().state_dict()
    payload: dict[str, object] = {
        "module": {f"module.{k}": v for k, v in state.items()},
        "model": {"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3},
        "state_dict": {"state_dict": state},
        "raw": state,
    }[layout]
    path = tmp_path / "as-20k-42.0.pth"
    torch.save(payload, path)
    converted = convert_state_dict(read_reference_checkpoint(path), TINY, AUDIO, VIDEO)
    plain = convert_state_dict(state, TINY, AUDIO, VIDEO)
    assert converted.state.keys() == plain.state.keys()
    assert all(torch.equal(converted.state[k], plain.state[k]) for k in plain.state)


def test_a_file_without_a_state_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "optim.pth"
    torch.save({"epoch": 3, "optimizer": {"lr": 1.0}}, path)
    with pytest.raises(CheckpointError, match=r"optim.pth: expected a state dict.*\['epoch', 'optimizer'\]"):
        read_reference_checkpoint(path)
    (tmp_path / "cut.pth").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="cut.pth: cannot be read"):
        read_reference_checkpoint(tmp_path / "cut.pth")


# --------------------------------------------------------------------------- (d) other layouts


def test_a_missing_key_is_named() -> None:
    state = {f"module.{k}": v for k, v in fine_tuned().state_dict().items()}
    del state["module.blocks_v.1.attn.qkv.weight"], state["module.mlp_head.0.bias"]
    with pytest.raises(CheckpointError, match=r"ckpt: not a CAV-MAE checkpoint.*missing keys: "
                                              r"module.blocks_v.1.attn.qkv.weight, module.mlp_head.0.bias$"):
        convert_state_dict(state, TINY, AUDIO, VIDEO, source="ckpt")


def test_an_unexpected_key_is_named() -> None:
    state = {**pretrained().state_dict(), "blocks_u.0.ls1.gamma": torch.ones(128)}
    with pytest.raises(CheckpointError, match=r"unexpected keys: blocks_u.0.ls1.gamma$"):
        convert_state_dict(state, TINY, AUDIO, VIDEO)
    # a fine-tuned model has no decoder: its keys are unexpected there
    tuned = {**fine_tuned().state_dict(), "decoder_embed.weight": torch.zeros(64, 128)}
    with pytest.raises(CheckpointError, match=r"unexpected keys: decoder_embed.weight$"):
        convert_state_dict(tuned, TINY, AUDIO, VIDEO)


def test_a_misshapen_key_is_named() -> None:
    state = {**pretrained().state_dict(), "norm.weight": torch.ones(96)}
    with pytest.raises(CheckpointError, match=r"wrong shapes: norm.weight \(96,\)$"):
        convert_state_dict(state, TINY, AUDIO, VIDEO)
    with pytest.raises(CheckpointError, match=r"missing keys: blocks_u.1.attn.proj.bias, .*\(14 more\)$"):
        convert_state_dict(pretrained().state_dict(), dataclasses.replace(TINY, fusion_depth=2), AUDIO, VIDEO)


# --------------------------------------------------------------------------- (e) the command


def test_the_command_writes_what_load_av_model_and_init_read(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # the command converts onto CAV_MAE_MODEL (ViT-B); here its tiny twin, at the reference's 128 bins
    monkeypatch.setattr(convert_cav_mae, "CAV_MAE_MODEL", TINY)
    ref = RefCAVMAEFT(5, bins=128, frames=64, img=32).randomise(3).eval()
    ckpt = tmp_path / "vgg_65.5.pth"
    torch.save({f"module.{k}": v for k, v in ref.state_dict().items()}, ckpt)
    out = tmp_path / "converted"
    assert cli_main(["convert", "cav-mae", str(ckpt), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["classifier.safetensors", "encoders.safetensors"]

    model, cfg = load_av_model(out)  # --checkpoint
    assert cfg.pos_embed == "learned"
    assert cfg.audio_input_size == (128, 64) and cfg.video_input_size == (1, 32, 32)
    weights = load_weights(out, what="--init")  # --init (fine-tuning, probes)
    assert weights.config["data"] == paper_data(64)
    video_encoder = load_encoder(weights, "video")
    assert torch.equal(video_encoder.state_dict()["pos_embed"], model.video_encoder.state_dict()["pos_embed"])

    joint, config = load_joint_classifier(out)
    assert config["num_classes"] == 5 and config["mode"] == "audio_visual"
    gen = torch.Generator().manual_seed(5)
    audio, image = torch.randn(2, 64, 128, generator=gen), torch.randn(2, 3, 32, 32, generator=gen)
    with torch.no_grad():
        diff = (joint(*ours(audio, image)) - ref(audio, image, "multimodal")).abs().max().item()
    assert diff <= TOL


def test_the_command_converts_a_pretrained_model_and_refuses_a_foreign_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(convert_cav_mae, "CAV_MAE_MODEL", TINY)
    torch.manual_seed(0)
    ref = RefCAVMAE(bins=128, frames=64, img=32, p=16, dim=128, specific=4, shared=1, heads=4,
                    dec_dim=64, dec_depth=2)
    ref.init_weights()
    ckpt = tmp_path / "audio_model.21.pth"
    torch.save({f"module.{k}": v for k, v in ref.state_dict().items()}, ckpt)
    assert cli_main(["convert", "cav-mae", str(ckpt), "--out", str(tmp_path / "pre")]) == 0
    assert "decoder is not converted" in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "pre").iterdir()] == ["encoders.safetensors"]
    _, cfg = load_av_model(tmp_path / "pre")
    assert cfg.pos_embed == "sincos" and cfg.fusion_depth == 1
    bad = tmp_path / "bad.pth"
    torch.save({"module.patch_embed_a.proj.weight": torch.zeros(128, 1, 16, 16)}, bad)
    with pytest.raises(SystemExit) as stop:
        cli_main(["convert", "cav-mae", str(bad), "--out", str(tmp_path / "bad")])
    assert stop.value.code == 2
    assert "bad.pth: not a CAV-MAE checkpoint" in capsys.readouterr().err


# --------------------------------------------------------------------------- the released shapes


def _released(fine_tuned_classes: int | None) -> dict[str, Tensor]:
    """A state dict with the keys and shapes of the released base checkpoints, ``module.``-prefixed;
    the weights are zero-size-in-memory views (never run), the position tables real sin-cos."""
    with torch.device("meta"):
        ref = (RefCAVMAEFT(fine_tuned_classes, bins=128, frames=1024, img=224, p=16, dim=768, specific=11,
                           heads=12) if fine_tuned_classes else
               RefCAVMAE(bins=128, frames=1024, img=224, p=16, dim=768, specific=11, shared=1, heads=12,
                         dec_dim=512, dec_depth=8, dec_heads=16))
    state = {k: torch.zeros(()).expand(v.shape) for k, v in ref.state_dict().items()}
    tables = {"pos_embed_a": (8, 64, 768), "pos_embed_v": (14, 14, 768), "decoder_pos_embed_a": (8, 64, 512),
              "decoder_pos_embed_v": (14, 14, 512)}
    for key, (rows, cols, dim) in tables.items():
        if key in state:
            state[key] = torch.from_numpy(sincos_table(dim, rows, cols)).float()[None]
    if fine_tuned_classes:  # fine-tuning trained the tables
        state["pos_embed_a"] = state["pos_embed_a"] + 0.01
    return {f"module.{k}": v for k, v in state.items()}


def _count(state: dict[str, Tensor]) -> int:
    return sum(t.numel() for t in state.values())


def test_the_released_base_shapes_map_onto_vit_base11_and_the_shared_block() -> None:
    pre = _released(None)
    converted = convert_state_dict(pre)
    assert converted.model == CAV_MAE_MODEL  # fixed sin-cos positions: the released tables are ours
    with torch.device("meta"):
        expected = build_av_model(CAV_MAE_MODEL).state_dict()
    assert {k: v.shape for k, v in converted.state.items()} == {k: v.shape for k, v in expected.items()}
    assert converted.state["video_encoder.patch_embed.weight"].shape == (768, 3, 1, 16, 16)
    unused_norm_keys = 22 * 4 * 2  # norm{1,2}_{a,v}.{weight,bias} of the 22 modality-specific blocks
    decoder = [k for k in converted.dropped if k.startswith(("decoder_", "mask_token"))]
    assert len(converted.dropped) == unused_norm_keys + len(decoder) + 2  # + the two sin-cos tables
    # parameters: ours 163,821,312; the reference's encoder part the same plus its two fixed tables and
    # the unused norms; its decoder (26,140,672 + its two fixed tables + its blocks' unused norms) is dropped
    assert _count(converted.state) == 163_821_312
    encoder_part = {k: v for k, v in pre.items() if not k.removeprefix("module.").startswith(
        ("decoder_", "mask_token"))}
    assert _count(encoder_part) == 163_821_312 + (512 + 196) * 768 + unused_norm_keys * 768
    assert _count(pre) == 191_036_160

    tuned = _released(527)
    converted = convert_state_dict(tuned)
    assert converted.model == dataclasses.replace(
        CAV_MAE_MODEL, pos_embed="learned", video_input_size=(1, 224, 224), audio_input_size=(128, 1024))
    assert converted.num_classes == 527 and converted.head is not None
    assert len(converted.dropped) == unused_norm_keys
    ours_total = _count(converted.state) + _count(converted.head)
    assert ours_total == 163_821_312 + (512 + 196) * 768 + 2 * 768 + 768 * 527 + 527
    assert _count(tuned) == ours_total + unused_norm_keys * 768
