"""Encoders, heads, the AV pair, the registries and checkpoints (tiny variants; one full forward)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import safetensors
import safetensors.torch
import torch
import torchvision
from torch import nn

from avlearn.config import ConfigError, from_dict
from avlearn.models import (
    AUDIO_ENCODERS,
    HEADS,
    VIDEO_ENCODERS,
    AVModel,
    CheckpointError,
    IdentityHead,
    LinearHead,
    MLPHead,
    ModelConfig,
    avid_spec_cnn9,
    avid_spec_cnn9_tiny,
    build_av_model,
    load_audio_encoder,
    load_av_model,
    load_checkpoint,
    load_video_encoder,
    r2plus1d_18,
    r2plus1d_tiny,
    read_safetensors,
    save_encoders,
    write_safetensors,
)
from avlearn.models.checkpoint import FORMAT

TINY = ModelConfig(video_arch="r2plus1d_tiny", audio_arch="avid_spec_cnn9_tiny", embed_dim=32, proj_hidden=64)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def tiny_model() -> AVModel:
    torch.manual_seed(0)
    return build_av_model(TINY).eval()


def batch(b: int = 2, t: int = 8, hw: int = 64, f: int = 64, frames: int = 100) -> tuple[torch.Tensor, ...]:
    return torch.randn(b, 3, t, hw, hw), torch.randn(b, 1, f, frames)


# --------------------------------------------------------------------------- video


@pytest.mark.parametrize(("t", "hw"), [(8, 112), (8, 64), (16, 64), (4, 40)])
def test_video_shapes_follow_documented_strides(t: int, hw: int) -> None:
    enc = r2plus1d_tiny().eval()
    with torch.no_grad():
        out = enc(torch.randn(2, 3, t, hw, hw), return_stages=True)
    grid = (-(-t // 8), -(-hw // 16), -(-hw // 16))
    assert enc.grid_size(t, hw, hw) == grid
    assert out.emb.shape == (2, enc.out_dim) == (2, 128)
    assert out.grid.shape == (2, enc.grid_dim, *grid)
    assert list(out.stages) == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert out.stages["layer4"] is out.grid
    assert out.stages["stem"].shape == (2, 16, t, -(-hw // 2), -(-hw // 2))
    # default pool is AVID's global max
    assert torch.allclose(out.emb, out.grid.amax(dim=(2, 3, 4)))


def test_avg_pool_option() -> None:
    enc = r2plus1d_tiny(pool="avg").eval()
    with torch.no_grad():
        out = enc(torch.randn(1, 3, 8, 32, 32))
    assert torch.allclose(out.emb, out.grid.mean(dim=(2, 3, 4)), atol=1e-6)


def test_full_r2plus1d_18_matches_torchvision_and_runs() -> None:
    enc = r2plus1d_18().eval()
    tv = torchvision.models.video.r2plus1d_18(weights=None)
    tv_state = {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    ours = enc.state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in tv_state.items()}
    assert n_params(enc) == n_params(tv) - n_params(tv.fc) == 31_300_125
    enc.load_state_dict(tv_state)  # torchvision weights load as-is
    with torch.no_grad():
        out = enc(torch.randn(1, 3, 8, 112, 112))
    assert out.emb.shape == (1, 512)
    assert out.grid.shape == (1, 512, 1, 7, 7)


def test_video_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        r2plus1d_tiny()(torch.randn(2, 8, 3, 32, 32))


# --------------------------------------------------------------------------- audio


@pytest.mark.parametrize(("f", "t"), [(257, 200), (64, 100), (128, 200), (80, 33)])
def test_audio_shapes(f: int, t: int) -> None:
    enc = avid_spec_cnn9_tiny().eval()
    with torch.no_grad():
        out = enc(torch.randn(2, 1, f, t), return_stages=True)
    assert enc.grid_size(f, t) == (-(-f // 16), -(-t // 16))
    assert out.emb.shape == (2, enc.out_dim) == (2, 128)
    assert out.grid.shape == (2, enc.grid_dim, *enc.grid_size(f, t))
    assert list(out.stages) == ["stem", "block1", "block2", "block3", "block4"]
    assert torch.allclose(out.emb, out.grid.amax(dim=(2, 3)))


def test_full_avid_audio_net() -> None:
    enc = avid_spec_cnn9().eval()

    def block(cin: int, cout: int) -> int:  # two 3x3 convs without bias + two BNs
        return 9 * cin * cout + 9 * cout * cout + 4 * cout

    expected = 49 * 64 + 2 * 64 + block(64, 64) + block(64, 128) + block(128, 256) + block(256, 512)
    assert n_params(enc) == expected == 4_725_696
    with torch.no_grad():
        out = enc(torch.randn(1, 1, 257, 200))
    assert out.emb.shape == (1, 512)
    assert out.grid.shape == (1, 512, 17, 13)


def test_audio_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(B, 1, F, T\)"):
        avid_spec_cnn9_tiny()(torch.randn(2, 64, 100))


# --------------------------------------------------------------------------- heads


@pytest.mark.parametrize("head_cls", [MLPHead, LinearHead, IdentityHead])
def test_heads_normalise(head_cls: type[nn.Module]) -> None:
    head = head_cls(48, 16, 32)
    x = torch.randn(5, 48) * 7
    z = head(x)
    assert z.shape == (5, head.out_dim)
    assert torch.allclose(z.norm(dim=1), torch.ones(5), atol=1e-5)
    raw = head(x, normalize=False)
    assert torch.allclose(torch.nn.functional.normalize(raw, dim=1), z, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        head(torch.randn(5, 48, 1))


def test_mlp_head_layout() -> None:
    head = MLPHead(512, 128, 512)
    kinds = [type(m) for m in head.net]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head(torch.randn(4, 512)).shape == (4, 128)


# --------------------------------------------------------------------------- AV pair


def test_av_forward_named_outputs(tiny_model: AVModel) -> None:
    video, audio = batch()
    with torch.no_grad():
        out = tiny_model(video, audio)
    assert out.video_emb.shape == out.audio_emb.shape == (2, 32)
    assert out.video_feat.shape == out.audio_feat.shape == (2, 128)
    assert out.video_grid.shape == (2, 128, 1, 4, 4)
    assert out.audio_grid.shape == (2, 128, 4, 7)
    for emb in (out.video_emb, out.audio_emb):
        assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    with torch.no_grad():
        raw = tiny_model(video, audio, normalize=False)
    assert not torch.allclose(raw.video_emb.norm(dim=1), torch.ones(2), atol=1e-3)


def test_encode_equals_forward(tiny_model: AVModel) -> None:
    video, audio = batch()
    with torch.no_grad():
        out = tiny_model(video, audio)
        assert torch.allclose(tiny_model.encode_video(video), out.video_emb, atol=1e-6)
        assert torch.allclose(tiny_model.encode_audio(audio), out.audio_emb, atol=1e-6)
        raw = tiny_model.encode_video(video, normalize=False)
        assert torch.allclose(torch.nn.functional.normalize(raw, dim=1), out.video_emb, atol=1e-6)


def test_gradients_reach_both_encoders() -> None:
    model = build_av_model(TINY).train()
    out = model(*batch(b=4, hw=32, f=32, frames=48))
    loss = -(out.video_emb * out.audio_emb).sum(dim=1).mean()
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
    assert model.video_encoder.stem[0].weight.grad.abs().sum() > 0
    assert model.audio_encoder.stem[0].weight.grad.abs().sum() > 0


def test_av_rejects_mismatched_batches(tiny_model: AVModel) -> None:
    with pytest.raises(ValueError, match="batch sizes differ"):
        tiny_model(torch.randn(2, 3, 8, 32, 32), torch.randn(3, 1, 32, 32))


def test_weight_init_and_zero_init_residual() -> None:
    plain = build_av_model(TINY)
    zero = build_av_model(ModelConfig(**{**TINY.__dict__, "zero_init_residual": True}))
    last_bns = [
        blk.conv2[1].weight
        for layer in ("layer1", "layer2", "layer3", "layer4")
        for blk in getattr(zero.video_encoder, layer)
    ]
    assert len(last_bns) == 4
    assert all(torch.all(w == 0) for w in last_bns)
    assert all(torch.all(blk.conv2[1].weight == 1) for blk in plain.video_encoder.layer1)
    conv = plain.audio_encoder.block4[0].weight  # kaiming normal, fan_out, relu
    std = (2.0 / (conv.shape[0] * 9)) ** 0.5
    assert conv.std().item() == pytest.approx(std, rel=0.1)


# --------------------------------------------------------------------------- registry / config


def test_registries_list_valid_names() -> None:
    vits = {f"vit_{kind}_{size}" for kind in ("video", "frame") for size in ("tiny", "small", "base")}
    assert set(VIDEO_ENCODERS) == {"r2plus1d_18", "r2plus1d_18_avid", "r2plus1d_small", "r2plus1d_tiny",
                                   "vit_video_p8_tiny", "vit_frame_base11", *vits}
    assert set(AUDIO_ENCODERS) == {"avid_spec_cnn9", "avid_spec_cnn9_small", "avid_spec_cnn9_tiny",
                                   "vit_audio_tiny", "vit_audio_small", "vit_audio_base", "vit_audio_base11"}
    assert set(HEADS) == {"mlp", "avid_mlp", "linear", "identity"}
    valid = r"unknown video encoder 'resnet50'.*r2plus1d_18, r2plus1d_18_avid, r2plus1d_small"
    with pytest.raises(ConfigError, match=valid):
        VIDEO_ENCODERS["resnet50"]
    with pytest.raises(ConfigError, match=r"avid_spec_cnn9, avid_spec_cnn9_small, avid_spec_cnn9_tiny"):
        build_av_model({"audio_arch": "vggish"})
    with pytest.raises(ConfigError, match=r"Did you mean 'mlp'.*identity, linear, mlp"):
        from_dict(ModelConfig, {"head": "mpl"})
    with pytest.raises(ConfigError, match="unknown config key 'embed'"):
        from_dict(ModelConfig, {"embed": 3})
    with pytest.raises(ValueError, match="already registered"):
        HEADS.register("mlp", MLPHead)


def test_config_is_frozen_and_builds_sizes() -> None:
    cfg = from_dict(
        ModelConfig,
        {
            "video_arch": "r2plus1d_tiny",
            "audio_arch": "avid_spec_cnn9_tiny",
            "head": "linear",
            "embed_dim": 24,
        },
    )
    with pytest.raises(AttributeError):
        cfg.embed_dim = 3  # type: ignore[misc]
    model = build_av_model(cfg)
    assert isinstance(model.video_head, LinearHead)
    assert model.embed_dim == 24


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_checkpoint_round_trip(tmp_path: Path, tiny_model: AVModel, suffix: str) -> None:
    path = save_encoders(tiny_model, tmp_path / f"enc{suffix}", TINY)
    video, audio = batch()
    loaded, _ = load_av_model(path)
    loaded = loaded.eval()
    with torch.no_grad():
        a, b = tiny_model(video, audio), loaded(video, audio)
    for name in ("video_emb", "audio_emb", "video_feat", "audio_grid", "video_grid"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k

    venc, cfg = load_video_encoder(path)
    assert cfg == TINY
    aenc, _ = load_audio_encoder(path)
    venc.eval()
    aenc.eval()
    with torch.no_grad():
        assert torch.equal(venc(video).grid, a.video_grid)
        assert torch.equal(aenc(audio).emb, a.audio_feat)


def test_checkpoint_accepts_run_config_with_model_section(tmp_path: Path, tiny_model: AVModel) -> None:
    run_cfg = {"model": TINY.__dict__, "optim": {"lr": 0.1}}
    path = save_encoders(tiny_model, tmp_path / "run.safetensors", run_cfg)
    _, stored = load_checkpoint(path)
    assert stored == run_cfg
    model, cfg = load_av_model(path)
    assert cfg == TINY and isinstance(model, AVModel)


def test_safetensors_format_round_trip(tmp_path: Path) -> None:
    shared = torch.randn(3, 4)
    tensors = {
        "f32": shared,
        "f32_tied": shared,  # safetensors refuses shared memory; the writer copies it
        "f32_row": shared[1],
        "bf16": torch.randn(5).to(torch.bfloat16),
        "f16": torch.randn(2, 2).half(),
        "i64_scalar": torch.tensor(7),
        "bool": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 3),
        "strided": torch.arange(12.0).reshape(3, 4).t(),
    }
    path = tmp_path / "t.safetensors"
    write_safetensors(tensors, path, {"note": "hi"})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0
    header = json.loads(raw[8 : 8 + n])
    assert header["__metadata__"] == {"note": "hi"}
    assert header["f32"] == {"dtype": "F32", "shape": [3, 4], "data_offsets": header["f32"]["data_offsets"]}
    assert header["bf16"]["dtype"] == "BF16"
    assert len(raw) == 8 + n + max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    back, meta = read_safetensors(path)
    assert meta == {"note": "hi"}
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k


def test_export_loads_with_the_safetensors_package(tmp_path: Path, tiny_model: AVModel) -> None:
    run_cfg = {"model": TINY.__dict__, "optim": {"lr": 0.1}}
    path = save_encoders(tiny_model, tmp_path / "enc.safetensors", run_cfg)
    state = safetensors.torch.load_file(path)
    assert set(state) == set(tiny_model.state_dict())
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(state[k], v), k
    with safetensors.safe_open(path, framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == FORMAT and json.loads(meta["avlearn_config"]) == run_cfg


def test_loads_files_written_by_the_safetensors_package(tmp_path: Path, tiny_model: AVModel) -> None:
    path = tmp_path / "theirs.safetensors"
    meta = {"format": FORMAT, "avlearn_config": json.dumps(TINY.__dict__)}
    safetensors.torch.save_file(dict(tiny_model.state_dict()), path, metadata=meta)
    model, cfg = load_av_model(path)
    assert cfg == TINY
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_read_tensors_do_not_follow_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    write_safetensors({"w": torch.ones(64)}, path)
    tensors, _ = read_safetensors(path)
    raw = bytearray(path.read_bytes())
    raw[-64 * 4 :] = bytes(64 * 4)  # the data section, zeroed in place
    with open(path, "r+b") as f:
        f.write(raw)
    assert torch.equal(tensors["w"], torch.ones(64))


def test_loads_files_written_by_the_v1_pure_python_writer() -> None:
    # written by the hand-made writer that avlearn used before the safetensors package (commit a0762ea)
    path = Path(__file__).parent / "fixtures" / "written_by_v1_writer.safetensors"
    tensors, meta = read_safetensors(path)
    assert meta["format"] == FORMAT
    expected = {
        "f32": torch.arange(6.0).reshape(2, 3) / 4,
        "bf16": torch.tensor([1.5, -2.0, 3.25]).to(torch.bfloat16),
        "f16": torch.tensor([[0.5, 1.0]]).half(),
        "i64": torch.tensor(7),
        "u8": torch.tensor([1, 2, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 3),
    }
    assert set(tensors) == set(expected)
    for k, v in expected.items():
        assert tensors[k].dtype == v.dtype and torch.equal(tensors[k], v), k
    assert set(safetensors.torch.load_file(path)) == set(expected)


def test_corrupted_checkpoints_raise_clear_errors(tmp_path: Path, tiny_model: AVModel) -> None:
    path = save_encoders(tiny_model, tmp_path / "m.safetensors", TINY)
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"trunc\.safetensors.*truncated or corrupt"):
        load_video_encoder(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(struct.pack("<Q", 10) + b"not json!!" + b"\0" * 8)
    with pytest.raises(CheckpointError, match="corrupt safetensors header"):
        load_checkpoint(garbage)
    bad_pt = tmp_path / "bad.pt"
    bad_pt.write_bytes(b"definitely not a torch file")
    with pytest.raises(CheckpointError, match=r"bad\.pt.*weights_only=True"):
        load_checkpoint(bad_pt)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="not an avlearn encoder checkpoint"):
        load_checkpoint(foreign)


def test_mismatched_checkpoint_names_keys(tmp_path: Path, tiny_model: AVModel) -> None:
    path = save_encoders(tiny_model, tmp_path / "m.pt", TINY)
    small = ModelConfig(**{**TINY.__dict__, "video_arch": "r2plus1d_small"})
    with pytest.raises(CheckpointError, match=r"shape mismatches: .*video_encoder\.layer1"):
        load_av_model(path, small)

    state = dict(tiny_model.state_dict())
    del state["video_encoder.layer4.0.conv2.1.weight"]
    state["video_encoder.extra.weight"] = torch.zeros(1)
    torch.save({"format": FORMAT, "config": TINY.__dict__, "state_dict": state}, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError) as err:
        load_video_encoder(tmp_path / "edited.pt")
    msg = str(err.value)
    assert "missing keys: layer4.0.conv2.1.weight" in msg
    assert "unexpected keys: extra.weight" in msg
    load_audio_encoder(tmp_path / "edited.pt")  # the audio half is intact


def _side_effect(path: str) -> dict[str, str]:
    Path(path).write_text("pickle code ran")
    return {}


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_side_effect, (str(self.marker),))


def test_loader_refuses_pickled_objects(tmp_path: Path, tiny_model: AVModel) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    state = dict(tiny_model.state_dict())
    torch.save({"format": FORMAT, "config": _Evil(marker), "state_dict": state}, path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_video_encoder(path)
    assert not marker.exists()
    # the payload is live: an unsafe load would have run it
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_shifted_audio_is_encoded_in_the_same_pass(tiny_model: AVModel) -> None:
    video, audio = batch(b=3)
    shifted = torch.randn_like(audio)
    with torch.no_grad():
        out = tiny_model(video, audio, audio_shifted=shifted)
        alone = tiny_model(video, audio)
    assert out.audio_shifted_emb is not None and alone.audio_shifted_emb is None
    # eval mode: BatchNorm uses running stats, so the joint pass equals separate encodings
    torch.testing.assert_close(out.audio_emb, alone.audio_emb, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.audio_shifted_emb, tiny_model.encode_audio(shifted), rtol=1e-4, atol=1e-5)
    assert out.audio_grid.shape[0] == 3 and out.audio_feat.shape[0] == 3
    with pytest.raises(ValueError, match="audio_shifted"):
        tiny_model(video, audio, audio_shifted=shifted[:2])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_full_model_under_bf16_autocast_on_the_gpu_matches_float32() -> None:
    """The paper-size encoders in bf16 on cuda: embeddings near float32's, finite gradients, and
    ``channels_last_3d`` giving what the contiguous layout gives."""
    torch.manual_seed(0)
    model = build_av_model(ModelConfig()).cuda().eval()  # eval: BatchNorm's running statistics
    gen = torch.Generator().manual_seed(0)
    video = torch.randn(4, 3, 8, 112, 112, generator=gen).cuda()
    audio = torch.randn(4, 1, 257, 200, generator=gen).cuda()
    with torch.no_grad():
        full = model(video, audio)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            half = model(video, audio)
            model.video_encoder.to(memory_format=torch.channels_last_3d)
            last = model(video.contiguous(memory_format=torch.channels_last_3d), audio)
    for name in ("video_emb", "audio_emb"):
        cos = torch.nn.functional.cosine_similarity(getattr(half, name).float(), getattr(full, name))
        assert cos.min() > 0.99, (name, cos)
    torch.testing.assert_close(last.video_emb.float(), half.video_emb.float(), atol=2e-2, rtol=2e-2)
    model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(video, audio)
    (out.video_emb.float() @ out.audio_emb.float().T).diag().sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(bool(g.isfinite().all()) for g in grads)
