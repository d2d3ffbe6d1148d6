"""The encoder contract: every registered encoder states its stages truly; the users read the contract.

A fake encoder made of LayerNorm and linear layers only (a ViT's ingredients) keeps the contract
and works wherever stage widths are needed: nothing reads a BatchNorm to learn a width.
"""

from __future__ import annotations

import hashlib

import einops
import pytest
import torch
from torch import Tensor, nn

from avlearn.analysis.blocks import encoder_blocks
from avlearn.config import ConfigError, from_dict
from avlearn.localization.learned import LocalizerSpec, stage_channels
from avlearn.models import (
    AUDIO_ENCODERS,
    VIDEO_ENCODERS,
    AudioEncoder,
    AVModel,
    LinearHead,
    ModelConfig,
    Stage,
    VideoEncoder,
    VideoOutput,
    build_av_model,
    encoder_stages,
    registry,
)
from avlearn.registry import Registry

TINY = {"video_arch": "r2plus1d_tiny", "audio_arch": "avid_spec_cnn9_tiny"}


# --------------------------------------------------------------------------- every registered encoder


@pytest.mark.parametrize("name", sorted(VIDEO_ENCODERS))
def test_video_stages_are_the_feature_maps(name: str) -> None:
    encoder = VIDEO_ENCODERS[name]().eval()
    assert isinstance(encoder, VideoEncoder)
    t, h, w = 4, 40, 36  # not multiples of the strides: the grids round up
    with torch.no_grad():
        out = encoder(torch.randn(1, 3, t, h, w), return_stages=True)
    assert list(out.stages) == [stage.name for stage in encoder.stages]
    for stage in encoder.stages:
        assert out.stages[stage.name].shape == (1, stage.channels, *stage.grid_size(t, h, w)), stage
        assert all(encoder.get_submodule(block) is not None for block in stage.blocks)
    assert encoder.grid_dim == encoder.stages[-1].channels == out.grid.shape[1]
    assert out.emb.shape == (1, encoder.out_dim)
    assert encoder.grid_size(t, h, w) == encoder.stages[-1].grid_size(t, h, w)


@pytest.mark.parametrize("name", sorted(AUDIO_ENCODERS))
def test_audio_stages_are_the_feature_maps(name: str) -> None:
    encoder = AUDIO_ENCODERS[name]().eval()
    assert isinstance(encoder, AudioEncoder)
    f, t = 65, 37
    with torch.no_grad():
        out = encoder(torch.randn(1, 1, f, t), return_stages=True)
    assert list(out.stages) == [stage.name for stage in encoder.stages]
    for stage in encoder.stages:
        assert out.stages[stage.name].shape == (1, stage.channels, *stage.grid_size(f, t)), stage
    assert encoder.grid_dim == encoder.stages[-1].channels == out.grid.shape[1]
    assert out.emb.shape == (1, encoder.out_dim)


def _fingerprint(module: nn.Module) -> tuple[str, str]:
    """Short sha256 of the state dict's ``key:shape`` lines, and of its values' bytes."""
    state = module.state_dict()
    keys = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in state.items()).encode()
    data = b"".join(v.detach().contiguous().numpy().tobytes() for v in state.values())
    return hashlib.sha256(keys).hexdigest()[:16], hashlib.sha256(data).hexdigest()[:16]


# Recorded before the encoders registered themselves (main at a57826c), seed 0: the same keys and
# the same initial values. A torch release that changes its random init changes them all at once.
BEFORE = {
    "video r2plus1d_18": ("347f89d1fa921873", "e649d3ba43d0921b"),
    "video r2plus1d_18_avid": ("7177ff951f86da64", "86272ba1d3f1fba0"),
    "video r2plus1d_small": ("240e1b0ade03f21e", "c07a47a172d3852c"),
    "video r2plus1d_tiny": ("6cd36bd52e67fbaf", "06bad378a5b4f048"),
    "audio avid_spec_cnn9": ("003cdfd66fd6db29", "a8323421da6d4d9a"),
    "audio avid_spec_cnn9_small": ("5e35bd15d4cb1ec9", "7ba20271a2d14a4a"),
    "audio avid_spec_cnn9_tiny": ("e4cafa42a2f42ff3", "280bd005d996ea21"),
    "model tiny": ("def99c131c33051f", "4c2d914b91899420"),
    "model tiny zero_init_residual": ("def99c131c33051f", "a73de5573f065944"),
    "model r2plus1d_18_avid avid_mlp": ("a4efe183d5b34dd9", "e1cf69e7ca4707f8"),
}


def test_parameters_for_a_seed_are_those_before_the_contract() -> None:
    builds = {
        # the CNNs (the ViTs came after the contract: tests/models/test_vit.py)
        **{f"video {n}": VIDEO_ENCODERS[n] for n in VIDEO_ENCODERS if not n.startswith("vit_")},
        **{f"audio {n}": AUDIO_ENCODERS[n] for n in AUDIO_ENCODERS if not n.startswith("vit_")},
        "model tiny": lambda: build_av_model(TINY),
        "model tiny zero_init_residual": lambda: build_av_model({**TINY, "zero_init_residual": True}),
        "model r2plus1d_18_avid avid_mlp": lambda: build_av_model(
            {"video_arch": "r2plus1d_18_avid", "head": "avid_mlp"}),
    }
    assert set(builds) == set(BEFORE)
    for what, build in builds.items():
        torch.manual_seed(0)
        assert _fingerprint(build()) == BEFORE[what], what


# --------------------------------------------------------------------------- registration


def test_zero_init_residual_goes_only_to_encoders_that_take_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"zero_init_residual=True.*r2plus1d_18_avid.*take it: "
                                          r"r2plus1d_18, r2plus1d_small, r2plus1d_tiny"):
        from_dict(ModelConfig, {"video_arch": "r2plus1d_18_avid", "zero_init_residual": True})
    seen: list[dict[str, object]] = []

    def plain(in_channels: int = 3, pool: str = "max") -> nn.Module:  # takes no zero_init_residual
        seen.append({"in_channels": in_channels, "pool": pool})
        return VIDEO_ENCODERS["r2plus1d_tiny"](in_channels, pool)  # type: ignore[no-any-return]

    videos = Registry("video encoder", {**VIDEO_ENCODERS, "plain": plain})
    monkeypatch.setattr(registry, "VIDEO_ENCODERS", videos)
    build_av_model({**TINY, "video_arch": "plain", "video_pool": "avg"})
    assert seen == [{"in_channels": 3, "pool": "avg"}]


def test_a_builder_that_breaks_the_contract_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    videos = Registry("video encoder", {**VIDEO_ENCODERS, "bare": lambda **_: nn.Linear(2, 2)})
    monkeypatch.setattr(registry, "VIDEO_ENCODERS", videos)
    with pytest.raises(TypeError, match=r"encoder 'bare' \(Linear\) does not keep the VideoEncoder contract"):
        build_av_model({**TINY, "video_arch": "bare"})


def test_the_decorator_registers_and_refuses_a_taken_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "VIDEO_ENCODERS", Registry("video encoder", dict(VIDEO_ENCODERS)))

    @registry.register_video_encoder("tiny_again")
    def tiny_again(in_channels: int = 3, pool: str = "max") -> nn.Module:
        return VIDEO_ENCODERS["r2plus1d_tiny"](in_channels, pool)  # type: ignore[no-any-return]

    assert registry.VIDEO_ENCODERS["tiny_again"] is tiny_again
    assert build_av_model({**TINY, "video_arch": "tiny_again"}).video_encoder.grid_dim == 128
    with pytest.raises(ValueError, match="video encoder 'tiny_again' is already registered"):
        registry.register_video_encoder("tiny_again")(tiny_again)


# --------------------------------------------------------------------------- a LayerNorm-only encoder


class TokenBlock(nn.Module):
    """Pre-norm MLP over tokens: ``(B, N, D) -> (B, N, D)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = x + self.mlp(self.norm(x))
        return out


class FakeViT(nn.Module):
    """Patches of 2x8x8, two token blocks of width 12 then one of width 20; no BatchNorm anywhere.

    Shape: ``(B, 3, T, H, W)`` (multiples of the patch) ``-> emb (B, 20), grid (B, 20, T/2, H/8, W/8)``.
    """

    patch = (2, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3 * 2 * 8 * 8, 12)
        self.blocks = nn.ModuleList([TokenBlock(12), TokenBlock(12), nn.Sequential(nn.Linear(12, 20),
                                                                                  nn.LayerNorm(20))])
        self.in_channels, self.out_dim, self.grid_dim = 3, 20, 20
        self.stages = tuple(Stage(f"blocks.{i}", width, self.patch) for i, width in enumerate((12, 12, 20)))

    def forward(self, video: Tensor, return_stages: bool = False) -> VideoOutput:
        pt, ph, pw = self.patch
        t, h, w = video.shape[2] // pt, video.shape[3] // ph, video.shape[4] // pw
        x = self.embed(einops.rearrange(video, "b c (t i) (h j) (w k) -> b (t h w) (c i j k)",
                                        i=pt, j=ph, k=pw))
        stages = {}
        for stage, block in zip(self.stages, self.blocks, strict=True):
            x = block(x)
            stages[stage.name] = einops.rearrange(x, "b (t h w) d -> b d t h w", t=t, h=h, w=w)
        grid = stages[self.stages[-1].name]
        return VideoOutput(emb=einops.reduce(grid, "b d t h w -> b d", "mean"), grid=grid,
                           stages=stages if return_stages else {})


def _fake_model() -> AVModel:
    audio = AUDIO_ENCODERS["avid_spec_cnn9_tiny"]()
    return AVModel(FakeViT(), audio, LinearHead(20, 16, 0), LinearHead(128, 16, 0))


def test_a_layernorm_encoder_keeps_the_contract() -> None:
    vit = FakeViT()
    assert isinstance(vit, VideoEncoder)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in vit.modules())
    out = vit(torch.randn(2, 3, 4, 16, 24), return_stages=True)
    for stage in vit.stages:
        assert out.stages[stage.name].shape == (2, stage.channels, *stage.grid_size(4, 16, 24))
    assert list(encoder_stages(vit)) == ["blocks.0", "blocks.1", "blocks.2"]


def test_stage_widths_of_a_layernorm_encoder() -> None:
    model = _fake_model()
    assert stage_channels(model, "blocks.1") == 12
    assert stage_channels(model, "blocks.0+blocks.2") == 32
    spec = LocalizerSpec.for_model(model, embed_dim=8, grid_stage="blocks.1")
    assert (spec.grid_dim, spec.audio_dim) == (12, 128)
    with pytest.raises(ValueError, match=r"no stage 'layer4'; valid: blocks.0, blocks.1, blocks.2"):
        stage_channels(model, "layer4")


def test_blocks_of_a_layernorm_encoder_are_its_stages() -> None:
    vit = FakeViT()
    assert list(encoder_blocks(vit)) == ["blocks.0", "blocks.1", "blocks.2"]
    assert encoder_blocks(vit)["blocks.2"] is vit.blocks[2]


def test_an_encoder_without_stages_is_named() -> None:
    with pytest.raises(TypeError, match="Linear states no stages"):
        encoder_stages(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="cannot name the blocks of Linear"):
        encoder_blocks(nn.Linear(2, 2))
