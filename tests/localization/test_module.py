from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avlearn.localization.module import AVLocalizer, PerLocation, similarity_map, upsample_map
from avlearn.models.registry import ModelConfig, build_av_model


@pytest.mark.parametrize(("t", "h", "w"), [(1, 7, 7), (2, 4, 4), (1, 2, 3)])
def test_learned_localizer_shapes_and_range(t: int, h: int, w: int) -> None:
    torch.manual_seed(0)
    loc = AVLocalizer.learned(grid_dim=6, audio_dim=5, embed_dim=4)
    maps = loc(torch.randn(3, 6, t, h, w), torch.randn(3, 5))
    assert maps.shape == (3, t, h, w)
    assert maps.abs().max() <= 1 + 1e-6
    up = upsample_map(maps, (8, 112, 96))
    assert up.shape == (3, 8, 112, 96)
    assert AVLocalizer.upsample(maps, (20, 30)).shape == (3, t, 20, 30)
    # bilinear interpolation stays inside the grid's range
    assert up.max() <= maps.max() + 1e-6 and up.min() >= maps.min() - 1e-6


@pytest.mark.parametrize(("t", "h", "w"), [(1, 7, 7), (2, 4, 4), (1, 2, 3)])
def test_location_equal_to_the_audio_gets_the_max(t: int, h: int, w: int) -> None:
    gen = torch.Generator().manual_seed(1)
    grid = torch.randn(2, 8, t, h, w, generator=gen)
    audio = torch.randn(2, 8, generator=gen)
    spot = (t - 1, h // 2, w - 1)
    grid[0, :, spot[0], spot[1], spot[2]] = 3 * audio[0]  # same direction, other norm
    maps = AVLocalizer(nn.Identity(), nn.Identity())(grid, audio)
    assert torch.argmax(maps[0]).item() == (spot[0] * h + spot[1]) * w + spot[2]
    assert maps[0].max().item() == pytest.approx(1.0, abs=1e-5)


def test_another_clips_sound_and_broadcast() -> None:
    gen = torch.Generator().manual_seed(2)
    grid = F.normalize(torch.randn(3, 4, 1, 2, 2, generator=gen), dim=1)
    other = F.normalize(torch.randn(1, 4, generator=gen), dim=1)
    maps = similarity_map(grid, other)
    assert maps.shape == (3, 1, 2, 2)
    torch.testing.assert_close(maps[1], torch.einsum("dthw,d->thw", grid[1], other[0]))
    with pytest.raises(ValueError, match="rows"):
        similarity_map(grid, torch.randn(2, 4))
    with pytest.raises(ValueError, match="audio_emb"):
        similarity_map(grid, torch.randn(3, 5))


def test_upsample_in_time() -> None:
    maps = torch.tensor([0.0, 4.0]).view(1, 2, 1, 1)
    lin = upsample_map(maps, (4, 1, 1))[0, :, 0, 0]
    torch.testing.assert_close(lin, torch.tensor([0.0, 1.0, 3.0, 4.0]))
    near = upsample_map(maps, (4, 1, 1), temporal="nearest")[0, :, 0, 0]
    torch.testing.assert_close(near, torch.tensor([0.0, 0.0, 4.0, 4.0]))
    single = upsample_map(torch.rand(2, 1, 3, 3), (8, 6, 6))
    assert torch.equal(single[:, 0], single[:, 7])
    with pytest.raises(ValueError):
        upsample_map(torch.rand(2, 3, 3), (4, 4))
    with pytest.raises(ValueError):
        upsample_map(torch.rand(1, 1, 3, 3), (0, 4))


def test_posthoc_applies_the_video_head_at_every_location() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(video_arch="r2plus1d_tiny", audio_arch="avid_spec_cnn9_tiny", embed_dim=16)
    model = build_av_model(cfg).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 8, 32, 48), torch.randn(2, 1, 64, 48))
        loc = AVLocalizer.posthoc(model)
        maps = loc(out.video_grid, out.audio_emb)
        t, h, w = out.video_grid.shape[-3:]
        assert maps.shape == (2, t, h, w)
        feat = out.video_grid[1, :, 0, h - 1, 0][None]
        expected = (model.video_head(feat) * out.audio_emb[1]).sum()
        torch.testing.assert_close(maps[1, 0, h - 1, 0], expected, rtol=1e-4, atol=1e-5)
        grid_emb = PerLocation(model.video_head)(out.video_grid)
        assert grid_emb.shape == (2, 16, t, h, w)
    model_params = {id(p) for p in model.parameters()}
    assert all(id(p) in model_params for p in loc.parameters())  # shared, no new weights


def test_bad_inputs_raise() -> None:
    loc = AVLocalizer.learned(4, 4, 4)
    with pytest.raises(ValueError, match="grid"):
        loc(torch.randn(2, 4, 3, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="audio"):
        loc(torch.randn(2, 4, 1, 3, 3), torch.randn(2, 4, 1))
    with pytest.raises(ValueError):
        AVLocalizer.learned(0, 4, 4)


def test_hypercolumn_grid_puts_each_coarse_stage_on_the_finest_grid() -> None:
    from avlearn.localization.learned import localizer_grid
    from avlearn.models.av import AVOutput

    fine = torch.randn(2, 3, 2, 8, 8)
    # a coarse stage that varies along the width only: its hypercolumn channels must vary the same
    # way on the fine grid, keep their order left to right and stay within the coarse values
    ramp = torch.arange(4.0).view(1, 1, 1, 1, 4).expand(2, 5, 1, 4, 4).contiguous()
    zero = torch.zeros(2, 1, 2, 2)
    out = AVOutput(zero[:, 0, :1, 0], zero[:, 0, :1, 0], zero[:, 0, :1, 0], zero[:, 0, :1, 0],
                   fine, zero, video_stages={"layer2": fine, "layer3": ramp})
    grid = localizer_grid(out, "layer2+layer3")
    assert grid.shape == (2, 8, 2, 8, 8)
    torch.testing.assert_close(grid[:, :3], fine)
    coarse = grid[:, 3:]
    assert torch.equal(coarse, coarse[:, :1, :1, :1, :].expand_as(coarse))  # same along C, T, H
    row = coarse[0, 0, 0, 0]
    assert bool((row[1:] >= row[:-1]).all()) and row[0] == 0 and row[-1] == 3
    torch.testing.assert_close(row[::2] + row[1::2], 2 * torch.arange(4.0), atol=0.5, rtol=0)
    assert localizer_grid(out, "layer3") is ramp
    with pytest.raises(ValueError, match="'layer4'.*video_stages=True"):
        localizer_grid(out, "layer2+layer4")
