from __future__ import annotations

import dataclasses
import pickle

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from einops import rearrange

from avlearn.data.audio import SpecConfig
from avlearn.data.transforms import (
    KINETICS_MEAN,
    KINETICS_STD,
    AudioAugConfig,
    CenterCrop,
    ColorJitter,
    Compose,
    FrequencyMask,
    FusedColor,
    Normalize,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    TemporalJitter,
    TimeMask,
    Transform,
    VideoAugConfig,
    VolumeJitter,
    adjust_hue,
    build_audio_transform,
    build_video_transform,
    make_generator,
    rotate_hue,
    temporal_jitter_start,
)


def video(c: int = 3, t: int = 4, h: int = 32, w: int = 40, seed: int = 0) -> torch.Tensor:
    return torch.rand(c, t, h, w, generator=make_generator(seed))


def static_video(t: int = 4, h: int = 32, w: int = 40) -> torch.Tensor:
    """A clip whose frames are all the same image: per-clip transforms must keep them equal."""
    frame = torch.rand(3, 1, h, w, generator=make_generator(1))
    return frame.expand(3, t, h, w).clone()


def assert_frames_equal(x: torch.Tensor) -> None:
    for i in range(1, x.shape[1]):
        torch.testing.assert_close(x[:, i], x[:, 0])


VIDEO_TRANSFORMS: dict[str, Transform] = {
    "crop": RandomResizedCrop(16),
    "flip": RandomHorizontalFlip(0.5),
    "jitter": ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0),
    "gray": RandomGrayscale(0.5),
    "train": build_video_transform(VideoAugConfig(size=16), train=True),
}


@pytest.mark.parametrize("name", list(VIDEO_TRANSFORMS))
def test_video_same_seed_same_output_different_seed_different(name: str) -> None:
    t, x = VIDEO_TRANSFORMS[name], video()
    a = t(x, make_generator(3))
    torch.testing.assert_close(a, t(x, make_generator(3)), rtol=0, atol=0)
    outs = [t(x, make_generator(s)) for s in range(8)]
    assert any(o.shape != a.shape or not torch.equal(o, a) for o in outs)


@pytest.mark.parametrize("name", list(VIDEO_TRANSFORMS))
def test_video_per_clip_params_apply_to_every_frame(name: str) -> None:
    t = VIDEO_TRANSFORMS[name]
    for seed in range(6):
        assert_frames_equal(t(static_video(), make_generator(seed)))


@pytest.mark.parametrize("name", ["crop", "flip", "jitter", "gray"])
def test_video_stays_finite_and_in_range(name: str) -> None:
    for seed in range(6):
        out = VIDEO_TRANSFORMS[name](video(seed=seed), make_generator(seed))
        assert torch.isfinite(out).all()
        assert out.min() >= 0.0 and out.max() <= 1.0


def test_global_rng_is_untouched() -> None:
    torch.manual_seed(0)
    before = torch.get_rng_state()
    VIDEO_TRANSFORMS["train"](video(), make_generator(0))
    build_audio_transform(AudioAugConfig(time_masks=2, freq_masks=2), SpecConfig(), train=True)(
        torch.randn(16000, generator=make_generator(0)), make_generator(0)
    )
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize("size", [16, (12, 20)])
def test_random_resized_crop_size(size: int | tuple[int, int]) -> None:
    out = RandomResizedCrop(size)(video(t=3), make_generator(0))
    hw = (size, size) if isinstance(size, int) else size
    assert out.shape == (3, 3, *hw)


def test_random_resized_crop_box_respects_scale_and_ratio() -> None:
    crop = RandomResizedCrop(16, scale=(0.3, 0.6), ratio=(0.8, 1.25))
    g = make_generator(0)
    for _ in range(50):
        top, left, h, w = crop.params(100, 120, g)
        assert 0 <= top <= 100 - h and 0 <= left <= 120 - w
        assert 0.28 <= h * w / 12000 <= 0.62
        assert 0.75 <= w / h <= 1.33


def test_random_resized_crop_full_box_is_a_resize() -> None:
    x = video(h=16, w=16)
    out = RandomResizedCrop(16, scale=(1.0, 1.0), ratio=(1.0, 1.0))(x, make_generator(0))
    torch.testing.assert_close(out, x)


def test_flip_really_flips() -> None:
    x = video()
    flip = RandomHorizontalFlip(p=1.0)
    torch.testing.assert_close(flip(x, make_generator(0)), torch.flip(x, dims=(-1,)))
    torch.testing.assert_close(RandomHorizontalFlip(p=0.0)(x, make_generator(0)), x)


def test_flip_happens_about_half_the_time() -> None:
    x, flip, g = video(t=1, h=2, w=4), RandomHorizontalFlip(0.5), make_generator(0)
    flips = sum(not torch.equal(flip(x, g), x) for _ in range(400))
    assert 150 < flips < 250


def test_grayscale_makes_channels_equal() -> None:
    out = RandomGrayscale(p=1.0)(video(), make_generator(0))
    torch.testing.assert_close(out[1], out[0])
    torch.testing.assert_close(out[2], out[0])
    x = video()
    torch.testing.assert_close(RandomGrayscale(p=0.0)(x, make_generator(0)), x)


def test_color_jitter_changes_colours_but_p0_does_not() -> None:
    x = video()
    assert not torch.allclose(ColorJitter(p=1.0)(x, make_generator(0)), x)
    torch.testing.assert_close(ColorJitter(p=0.0)(x, make_generator(0)), x)


def test_center_crop() -> None:
    x = video(h=20, w=30)
    out = CenterCrop(16)(x)
    assert out.shape == (3, 4, 16, 16)
    torch.testing.assert_close(out, x[..., 2:18, 7:23])
    with pytest.raises(ValueError, match="larger than the frames"):
        CenterCrop(32)(x)


def test_normalize_uses_kinetics_statistics() -> None:
    x = video()
    out = Normalize()(x)
    for c in range(3):
        torch.testing.assert_close(out[c], (x[c] - KINETICS_MEAN[c]) / KINETICS_STD[c])
    with pytest.raises(ValueError, match="channels"):
        Normalize()(video(c=1))


def test_build_video_transform_train_and_eval_shapes() -> None:
    cfg = VideoAugConfig(size=16)
    x = video(h=24, w=30)
    assert build_video_transform(cfg, train=True)(x, make_generator(0)).shape == (3, 4, 16, 16)
    ev = build_video_transform(cfg, train=False)
    torch.testing.assert_close(ev(x, make_generator(0)), ev(x, make_generator(1)))  # deterministic
    assert ev(x, make_generator(0)).shape == (3, 4, 16, 16)
    raw = build_video_transform(VideoAugConfig(size=16, normalize=False), train=True)(x, make_generator(0))
    assert raw.min() >= 0 and raw.max() <= 1


def test_video_config_validates_and_accepts_lists() -> None:
    cfg = VideoAugConfig(crop_scale=[0.5, 1.0])  # type: ignore[arg-type]  # as YAML gives
    assert cfg.crop_scale == (0.5, 1.0)
    with pytest.raises(ValueError, match="flip_p"):
        VideoAugConfig(flip_p=1.5)
    with pytest.raises(ValueError, match="crop_scale"):
        VideoAugConfig(crop_scale=(0.9, 0.1))
    with pytest.raises(ValueError, match="hue"):
        VideoAugConfig(hue=0.7)
    with pytest.raises(ValueError, match="std"):
        VideoAugConfig(std=(0.2, 0.2, 0.0))


def test_transforms_pickle_for_dataloader_workers() -> None:
    x, wav = video(), torch.randn(16000, generator=make_generator(0))
    vt = build_video_transform(VideoAugConfig(size=16), train=True)
    at = build_audio_transform(AudioAugConfig(time_masks=1), SpecConfig(kind="logmel"), train=True)
    vt2, at2 = pickle.loads(pickle.dumps((vt, at)))
    torch.testing.assert_close(vt2(x, make_generator(4)), vt(x, make_generator(4)))
    torch.testing.assert_close(at2(wav, make_generator(4)), at(wav, make_generator(4)))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_transforms_run_on_gpu_tensors_like_on_cpu() -> None:
    x, wav = video(), torch.randn(16000, generator=make_generator(0))
    vt = build_video_transform(VideoAugConfig(size=16), train=True)
    at = build_audio_transform(AudioAugConfig(time_masks=1, freq_masks=1), SpecConfig(), train=True)
    at.transforms[1].module.cuda()  # type: ignore[attr-defined]
    torch.testing.assert_close(
        vt(x.cuda(), make_generator(4)).cpu(), vt(x, make_generator(4)), atol=1e-4, rtol=1e-4
    )
    gpu = at(wav.cuda(), make_generator(4)).cpu()
    at.transforms[1].module.cpu()  # type: ignore[attr-defined]
    torch.testing.assert_close(gpu, at(wav, make_generator(4)), atol=1e-3, rtol=1e-3)


def test_temporal_jitter_indices() -> None:
    tj = TemporalJitter(num_frames=4, strides=(1, 2))
    g = make_generator(0)
    seen = set()
    for _ in range(50):
        idx = tj.indices(10, g)
        steps = set(torch.diff(idx).tolist())
        assert len(idx) == 4 and idx.min() >= 0 and idx.max() <= 9 and len(steps) == 1
        seen.add((int(idx[0]), steps.pop()))
    assert {s for _, s in seen} == {1, 2} and len(seen) > 5
    # too short for any stride: stride 1 from 0, last frame repeats
    assert TemporalJitter(4, strides=(2,)).indices(3, g).tolist() == [0, 2, 2, 2]
    assert TemporalJitter(4).indices(2, g).tolist() == [0, 1, 1, 1]


def test_temporal_jitter_selects_frames() -> None:
    x = torch.arange(10.0).view(1, 10, 1, 1).expand(3, 10, 2, 2)
    out = TemporalJitter(num_frames=3, strides=(3,))(x, make_generator(0))
    assert out.shape == (3, 3, 2, 2)
    first = int(out[0, 0, 0, 0])
    assert out[0, :, 0, 0].tolist() == [first, first + 3, first + 6]


def test_temporal_jitter_start() -> None:
    g = make_generator(0)
    starts = [temporal_jitter_start(10.0, 2.0, g) for _ in range(100)]
    assert all(0.0 <= s <= 8.0 for s in starts) and max(starts) - min(starts) > 4
    assert temporal_jitter_start(1.0, 2.0, g) == 0.0
    assert temporal_jitter_start(10.0, 2.0, make_generator(5)) == temporal_jitter_start(
        10.0, 2.0, make_generator(5)
    )


def test_volume_jitter_scales_within_range() -> None:
    wav = torch.randn(1000, generator=make_generator(0))
    vj = VolumeJitter((0.5, 2.0))
    gains = []
    for seed in range(30):
        out = vj(wav, make_generator(seed))
        gain = float((out / wav).mean())
        torch.testing.assert_close(out, wav * gain)
        gains.append(gain)
    assert all(0.5 <= gain <= 2.0 for gain in gains) and max(gains) - min(gains) > 0.5
    torch.testing.assert_close(vj(wav, make_generator(7)), vj(wav, make_generator(7)))


def masked_runs(keep: torch.Tensor) -> list[tuple[int, int]]:
    """(start, width) of each run of False in a 1-D bool tensor."""
    runs, start = [], None
    for i, k in enumerate([*keep.tolist(), True]):
        if not k and start is None:
            start = i
        elif k and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


@pytest.mark.parametrize(("mask_cls", "dim"), [(TimeMask, -1), (FrequencyMask, -2)])
@pytest.mark.parametrize("fill", ["mean", "zero"])
def test_mask_fills_one_contiguous_run_of_exact_width(mask_cls: type[TimeMask], dim: int, fill: str) -> None:
    spec = torch.randn(1, 40, 50, generator=make_generator(0)) + 3.0
    value = spec.mean() if fill == "mean" else torch.tensor(0.0)
    for seed in range(10):
        out = mask_cls(max_width=7, n=1, min_width=7, fill=fill)(spec, make_generator(seed))  # type: ignore[arg-type]
        filled = (out == value).all(dim=(0, 1) if dim == -1 else (0, 2))  # per column / per row
        runs = masked_runs(~filled)
        assert len(runs) == 1 and runs[0][1] == 7
        unchanged = out == spec
        assert unchanged.sum() == spec.numel() - 7 * spec.shape[1 if dim == -1 else 2]


@pytest.mark.parametrize("mask_cls", [TimeMask, FrequencyMask])
def test_masks_respect_max_width_and_count(mask_cls: type[TimeMask]) -> None:
    spec = torch.randn(1, 64, 64, generator=make_generator(0))
    masked_total = []
    for seed in range(20):
        out = mask_cls(max_width=5, n=3, fill="zero")(spec, make_generator(seed))
        axis_sum = (out == 0).all(dim=1 if mask_cls is TimeMask else 2)[0]
        runs = masked_runs(~axis_sum)
        assert len(runs) <= 3 and sum(w for _, w in runs) <= 15
        masked_total.append(int(axis_sum.sum()))
        torch.testing.assert_close(out, mask_cls(5, 3, fill="zero")(spec, make_generator(seed)))
    assert max(masked_total) > 0


def test_masks_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="min_width"):
        TimeMask(max_width=3, min_width=5)
    with pytest.raises(ValueError, match="fill"):
        FrequencyMask(3, fill="nan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="time_masks"):
        AudioAugConfig(time_masks=-1)


def test_build_audio_transform() -> None:
    wav = torch.randn(32000, generator=make_generator(0)) * 0.1
    spec_cfg = SpecConfig(kind="avid_linear")
    cfg = AudioAugConfig(time_masks=2, time_mask_width=10, freq_masks=1, freq_mask_width=8)
    train = build_audio_transform(cfg, spec_cfg, train=True)
    assert isinstance(train, Compose) and len(train.transforms) == 4
    a = train(wav, make_generator(1))
    assert a.shape == (1, 257, 200) and torch.isfinite(a).all()
    torch.testing.assert_close(a, train(wav, make_generator(1)), rtol=0, atol=0)
    assert not torch.equal(a, train(wav, make_generator(2)))
    ev = build_audio_transform(cfg, spec_cfg, train=False)
    torch.testing.assert_close(ev(wav, make_generator(1)), ev(wav, make_generator(2)))
    assert ev(wav, make_generator(0)).shape == (1, 257, 200)


# ------------------------------------------------------------------ fast paths equal the plain ones


def _hue_test_frames() -> torch.Tensor:
    """``(T, 3, H, W)`` in [0, 1] with the HSV corner cases: grey, black, white, two channels tied
    for the maximum, 8-bit levels (as decoded video has)."""
    x = torch.rand(6, 3, 24, 20, generator=make_generator(3))
    x[0, :, :4, :4] = 0.5  # grey
    x[1, :, :4, :4] = 0.0
    x[2, :, :4, :4] = 1.0
    x[3, 0, :4, :4] = x[3, 1, :4, :4]  # red == green
    x[3, 1, 4:8, :4] = x[3, 2, 4:8, :4]  # green == blue
    x[3, 0, 8:12, :4] = x[3, 2, 8:12, :4]  # red == blue
    x[4] = (x[4] * 255).round() / 255
    return x


@pytest.mark.parametrize("factor", [-0.5, -0.1, -1 / 6, 0.0, 0.03, 1 / 3, 0.1, 0.5])
def test_adjust_hue_equals_torchvision(factor: float) -> None:
    x = _hue_test_frames()
    torch.testing.assert_close(adjust_hue(x, factor), TF.adjust_hue(x, factor), atol=2e-6, rtol=0)
    strided = rearrange(rearrange(x, "t c h w -> c t h w").contiguous(), "c t h w -> t c h w")
    torch.testing.assert_close(adjust_hue(strided, factor), TF.adjust_hue(x, factor), atol=2e-6, rtol=0)


def test_adjust_hue_outside_unit_range_and_odd_inputs_use_torchvision() -> None:
    x = _hue_test_frames() * 1.5 - 0.2  # torchvision clamps intermediates here: same result exactly
    assert torch.equal(adjust_hue(x, 0.2), TF.adjust_hue(x, 0.2))
    grey = torch.rand(2, 1, 8, 8)
    assert torch.equal(adjust_hue(grey, 0.2), grey)
    as_uint8 = (torch.rand(2, 3, 8, 8) * 255).to(torch.uint8)
    assert torch.equal(adjust_hue(as_uint8, 0.2), TF.adjust_hue(as_uint8, 0.2))
    with pytest.raises(ValueError, match="hue factor"):
        adjust_hue(x, 0.7)


def _plain_resized_crop(crop: RandomResizedCrop, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The plain way: draw the same box, resize frame by frame, always antialiased."""
    top, left, h, w = crop.params(x.shape[-2], x.shape[-1], g)
    frames = rearrange(x[..., top : top + h, left : left + w], "c t h w -> t c h w")
    out = F.interpolate(frames, size=crop.size, mode="bilinear", align_corners=False, antialias=True)
    return rearrange(out, "t c h w -> c t h w")


@pytest.mark.parametrize("scale", [(0.1, 0.3), (0.3, 0.7), (0.9, 1.0)])  # upscales, mixed, downscales
def test_random_resized_crop_equals_plain_resize(scale: tuple[float, float]) -> None:
    x = video(t=5, h=48, w=56, seed=4)
    crop = RandomResizedCrop(40, scale=scale)
    for seed in range(8):
        fast = crop(x, make_generator(seed))
        plain = _plain_resized_crop(crop, x, make_generator(seed))
        torch.testing.assert_close(fast, plain, atol=1e-5, rtol=0)


def test_train_transform_equals_plain_torchvision_chain() -> None:
    """The whole training chain against the same steps written with plain torchvision calls."""
    cfg = VideoAugConfig(size=32, color_jitter_p=1.0, grayscale_p=0.0)
    fast_chain = build_video_transform(cfg, train=True)
    x = rearrange(_hue_test_frames()[:, :, :, :20], "t c h w -> c t h w").contiguous()
    for seed in range(6):
        g = make_generator(seed)
        crop = _plain_resized_crop(RandomResizedCrop(32, cfg.crop_scale, cfg.crop_ratio), x, g)
        frames = rearrange(crop.flip(-1) if float(torch.rand((), generator=g)) < cfg.flip_p else crop,
                           "c t h w -> t c h w")
        torch.rand((), generator=g)  # ColorJitter's coin (p = 1)
        order = torch.randperm(4, generator=g).tolist()
        b, c, s = (1 - 0.4 + 0.8 * float(torch.rand((), generator=g)) for _ in range(3))
        h = -0.1 + 0.2 * float(torch.rand((), generator=g))
        ops = [(TF.adjust_brightness, b), (TF.adjust_contrast, c), (TF.adjust_saturation, s),
               (TF.adjust_hue, h)]
        for op in order:
            fn, factor = ops[op]
            frames = fn(frames, factor)
        mean = torch.tensor(cfg.mean).view(3, 1, 1, 1)
        std = torch.tensor(cfg.std).view(3, 1, 1, 1)
        plain = (rearrange(frames, "t c h w -> c t h w") - mean) / std
        torch.testing.assert_close(fast_chain(x, make_generator(seed)), plain, atol=2e-5, rtol=0)


def test_rotate_hue_keeps_grey_and_luma_and_turns_like_the_hsv_shift() -> None:
    x = _hue_test_frames()
    torch.testing.assert_close(rotate_hue(x, 0.0), x, atol=1e-6, rtol=0)
    grey = torch.full((2, 3, 4, 4), 0.4)
    torch.testing.assert_close(rotate_hue(grey, 0.3), grey, atol=1e-6, rtol=0)  # no chroma, nothing to turn
    # a full turn is the identity; half a turn twice too (away from the clamp)
    mid = 0.35 + 0.3 * x
    torch.testing.assert_close(rotate_hue(rotate_hue(mid, 0.25), -0.25), mid, atol=1e-5, rtol=0)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    torch.testing.assert_close((rotate_hue(mid, 0.1) * luma).sum(-3), (mid * luma).sum(-3), atol=1e-5, rtol=0)
    # pure red turned by +1/6 (HSV: yellow) gains green and loses red, as torchvision's shift does
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 0.8
    hsv, yiq = TF.adjust_hue(red, 1 / 12), rotate_hue(red, 1 / 12)
    assert yiq[:, 1].mean() > red[:, 1].mean() and hsv[:, 1].mean() > red[:, 1].mean()
    # closer to the HSV shift than the opposite turn is
    for f in (0.03, -0.08):
        near = (rotate_hue(x, f) - TF.adjust_hue(x, f)).abs().mean()
        far = (rotate_hue(x, -f) - TF.adjust_hue(x, f)).abs().mean()
        assert near < 0.6 * far
    with pytest.raises(ValueError, match="hue factor"):
        rotate_hue(x, 0.6)


def test_color_jitter_hue_mode() -> None:
    x = rearrange(_hue_test_frames(), "t c h w -> c t h w").contiguous()
    hsv = ColorJitter(0.0, 0.0, 0.0, 0.2, p=1.0)(x, make_generator(1))
    yiq = ColorJitter(0.0, 0.0, 0.0, 0.2, p=1.0, hue_mode="yiq")(x, make_generator(1))
    assert not torch.allclose(hsv, yiq) and yiq.min() >= 0 and yiq.max() <= 1
    g = make_generator(1)
    torch.rand((), generator=g)  # the coin
    torch.randperm(4, generator=g)
    for _ in range(3):
        torch.rand((), generator=g)
    h = -0.2 + 0.4 * float(torch.rand((), generator=g))
    expected = rearrange(rotate_hue(rearrange(x, "c t h w -> t c h w"), h), "t c h w -> c t h w")
    torch.testing.assert_close(yiq, expected)
    with pytest.raises(ValueError, match="hue_mode"):
        ColorJitter(hue_mode="lab")
    with pytest.raises(ValueError, match="hue_mode"):
        VideoAugConfig(hue_mode="lab")


def test_fused_color_is_the_separate_transforms_when_nothing_clamps() -> None:
    # mid-grey clips and mild factors keep every intermediate value inside [0, 1], where clamping once
    # at the end (FusedColor) and after every step (the separate transforms) must agree
    x = 0.4 + 0.2 * video(t=3, h=8, w=10)
    applied = 0
    for seed in range(60):
        jitter = ColorJitter(0.2, 0.2, 0.2, 0.05, p=0.7, hue_mode="yiq")
        for norm in (True, False):
            steps: list[Transform] = [jitter, RandomGrayscale(0.3)]
            steps += [Normalize()] if norm else []
            separate = Compose(steps)
            fused = FusedColor(jitter, 0.3, *((KINETICS_MEAN, KINETICS_STD) if norm else (None, None)))
            want = separate(x, make_generator(seed))
            got = fused(x, make_generator(seed))
            torch.testing.assert_close(got, want, atol=2e-5, rtol=0)
        applied += not torch.equal(want, x)
    assert applied > 30  # the draws did change most clips


def test_fused_color_clamps_once_and_keeps_frames_alike() -> None:
    jitter = ColorJitter(0.9, 0.9, 0.9, 0.3, p=1.0, hue_mode="yiq")
    out = FusedColor(jitter, 0.0, None, None)(video(), make_generator(0))
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert_frames_equal(FusedColor(jitter, 0.5)(static_video(), make_generator(1)))
    with pytest.raises(ValueError, match="yiq"):
        FusedColor(ColorJitter(hue=0.1, hue_mode="hsv"), 0.2)
    with pytest.raises(ValueError, match="hue_mode: yiq"):
        VideoAugConfig(fused=True)  # hsv hue by default
    VideoAugConfig(fused=True, hue=0.0)  # no hue: nothing non-linear


def test_uint8_crop_is_the_float_crop_within_a_level() -> None:
    frames = (video(t=4, h=48, w=64) * 255).round().to(torch.uint8)
    as_decoded = rearrange(rearrange(frames, "c t h w -> t h w c").contiguous(), "t h w c -> c t h w")
    crop = RandomResizedCrop(24, scale=(0.3, 1.0))
    for seed in range(5):
        got = crop(as_decoded, make_generator(seed))
        want = crop(frames.float() / 255, make_generator(seed))
        assert got.dtype == torch.float32 and got.shape == want.shape == (3, 4, 24, 24)
        assert float((got - want).abs().max()) <= 1.01 / 255


def test_fused_training_chain_takes_uint8_and_matches_the_float_chain() -> None:
    cfg = VideoAugConfig(size=16, hue_mode="yiq")
    fused = build_video_transform(dataclasses.replace(cfg, fused=True), train=True)
    plain = build_video_transform(cfg, train=True)
    assert fused.uint8_input and not plain.uint8_input
    assert not build_video_transform(dataclasses.replace(cfg, fused=True), train=False).uint8_input
    frames = (0.3 + 0.4 * video(t=4, h=32, w=40)).mul(255).round().to(torch.uint8)
    as_decoded = rearrange(rearrange(frames, "c t h w -> t h w c").contiguous(), "t h w c -> c t h w")
    for seed in range(10):
        got = fused(as_decoded, make_generator(seed))
        want = plain(frames.float() / 255, make_generator(seed))
        assert got.shape == want.shape == (3, 4, 16, 16)
        # one 8-bit level of the resize, scaled by the jitter (< 2) and the normalisation (1 / std < 5)
        assert float((got - want).abs().max()) < 10 / 255 + 1e-3
