"""Per-sample augmentations for contrastive audio-visual learning, reproducible under a seed.

Every transform is a callable ``t(x, generator) -> x`` that draws all of its randomness from the
``torch.Generator`` it is given (never from the global RNG), so the same generator state gives
the same output in any process. Deterministic transforms accept and ignore the generator.
They work on single samples, as DataLoader workers produce them:

* video ``(C, T, H, W)`` float in ``[0, 1]`` (``C = 3``, RGB). A random transform draws its
  parameters once per clip and applies them to every frame.
* waveform ``(S,)`` float.
* spectrogram ``(1, F, T)`` (any ``(..., F, T)`` works).

Temporal jitter is a sampling decision, not a pixel operation: :func:`temporal_jitter_start`
picks a clip start time before decoding, and :class:`TemporalJitter` picks frame indices from
an over-decoded clip (random stride and offset).

Example::

    g = make_generator(seed=0)
    video_t = build_video_transform(VideoAugConfig(size=112), train=True)
    audio_t = build_audio_transform(AudioAugConfig(), SpecConfig(), train=True)
    video = video_t(clip.video, g)  # (3, T, 112, 112), normalised
    spec = audio_t(clip.audio, g)   # (1, 257, 200) for 2 s at 16 kHz
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from einops import rearrange, repeat
from torch import Tensor, nn

from avlearn.config import InvalidValue
from avlearn.data.audio import SpecConfig, build_spectrogram

__all__ = [
    "KINETICS_MEAN",
    "KINETICS_STD",
    "AudioAugConfig",
    "CenterCrop",
    "ColorJitter",
    "Compose",
    "FrequencyMask",
    "Normalize",
    "RandomGrayscale",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "SpectrogramTransform",
    "TemporalJitter",
    "TimeMask",
    "Transform",
    "VideoAugConfig",
    "VolumeJitter",
    "adjust_hue",
    "build_audio_transform",
    "build_video_transform",
    "make_generator",
    "rotate_hue",
    "temporal_jitter_start",
]

KINETICS_MEAN: tuple[float, float, float] = (0.43216, 0.394666, 0.37645)
KINETICS_STD: tuple[float, float, float] = (0.22803, 0.22145, 0.216989)

MaskFill = Literal["mean", "zero"]


class Transform(Protocol):
    """A per-sample transform: ``(x, generator) -> x``, all randomness from ``generator``."""

    def __call__(self, x: Tensor, generator: torch.Generator, /) -> Tensor: ...


def make_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``, for the transforms in this module."""
    g = torch.Generator()
    g.manual_seed(seed)
    return g


# ---------------------------------------------------------------------------------------------
# random draws (all from an explicit generator)


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _randint(g: torch.Generator, low: int, high: int) -> int:
    """Uniform integer in ``[low, high]`` (inclusive)."""
    return int(torch.randint(low, high + 1, (), generator=g))


def _coin(g: torch.Generator, p: float) -> bool:
    return float(torch.rand((), generator=g)) < p


def _check_prob(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")


def _check_range(name: str, r: tuple[float, float], low: float = -math.inf) -> None:
    if len(r) != 2 or not low <= r[0] <= r[1]:
        raise ValueError(f"{name} must be (min, max) with {low} <= min <= max, got {r}")


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size}")
    return int(h), int(w)


def _check_video(name: str, video: Tensor) -> None:
    if video.ndim != 4:
        raise ValueError(f"{name} expects a video (C, T, H, W), got shape {tuple(video.shape)}")


class Compose:
    """Apply transforms in order, passing the same generator to each.

    Shape:
        whatever the chain maps: e.g. video ``(C, T, H, W) -> (C, T, h, w)``.
    """

    def __init__(self, transforms: Sequence[Transform], uint8_input: bool = False) -> None:
        self.transforms = list(transforms)
        # True: the chain takes the decoder's 8-bit frames (ClipSpec.uint8_frames), see VideoAugConfig.fused
        self.uint8_input = uint8_input

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        for t in self.transforms:
            x = t(x, generator)
        return x

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


# ---------------------------------------------------------------------------------------------
# video (C, T, H, W)


class RandomResizedCrop:
    """Crop a random area and aspect ratio, then resize to ``size``; one crop for the whole clip.

    The crop covers ``scale`` of the frame area with aspect ratio (w/h) log-uniform in ``ratio``
    (10 tries, then a centre crop with the ratio clamped, as in torchvision). Resizing is
    bilinear, antialiased when it shrinks the crop, so values stay in the input's range.

    8-bit input (the decoder's frames with ``ClipSpec.uint8_frames``) is resized by PyTorch's
    fixed-point uint8 kernel on channels-last frames, 4-7x faster than in float and within about
    1/255 of it, and comes out as float in ``[0, 1]``.

    Shape:
        ``(C, T, H, W) -> (C, T, size_h, size_w)``.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        scale: tuple[float, float] = (0.2, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        _check_range("RandomResizedCrop scale", scale, low=0.0)
        _check_range("RandomResizedCrop ratio", ratio, low=0.0)
        if scale[1] <= 0 or ratio[0] <= 0:
            raise ValueError(f"RandomResizedCrop needs scale max > 0 and ratio min > 0, got {scale}, {ratio}")
        self.size = _pair(size)
        self.scale = scale
        self.ratio = ratio

    def params(self, height: int, width: int, generator: torch.Generator) -> tuple[int, int, int, int]:
        """Crop box ``(top, left, h, w)`` inside a ``height x width`` frame."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * _uniform(generator, *self.scale)
            aspect = math.exp(_uniform(generator, *log_ratio))
            w = round(math.sqrt(target_area * aspect))
            h = round(math.sqrt(target_area / aspect))
            if 0 < w <= width and 0 < h <= height:
                return _randint(generator, 0, height - h), _randint(generator, 0, width - w), h, w
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            h, w = height, round(height * self.ratio[1])
        else:
            h, w = height, width
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, video: Tensor, generator: torch.Generator) -> Tensor:
        _check_video("RandomResizedCrop", video)
        box = self.params(video.shape[-2], video.shape[-1], generator)
        return resized_crop(video, box, self.size)

    def __repr__(self) -> str:
        return f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio})"


def resized_crop(video: Tensor, box: tuple[int, int, int, int], size: tuple[int, int]) -> Tensor:
    """Crop ``box = (top, left, h, w)`` of every frame and resize it (bilinear) to ``size``.

    Antialiased when it shrinks. 8-bit input is resized by PyTorch's fixed-point uint8 kernel
    on channels-last frames (CPU) and comes out as float in ``[0, 1]``; 8-bit input on another
    device (whose kernels take float only) is converted to float first, within about 1/255 of
    the 8-bit kernel.

    Shape:
        ``(C, T, H, W) -> (C, T, size_h, size_w)`` float.
    """
    top, left, h, w = box
    channels, frames = video.shape[:2]
    antialias = h > size[0] or w > size[1]
    if video.dtype == torch.uint8 and video.device.type != "cpu":
        video = video[..., top : top + h, left : left + w].float().div_(255.0)
        top, left = 0, 0
    if video.dtype == torch.uint8:
        # (T, C, h, w) over the decoder's (T, H, W, C) memory is channels-last, the uint8 kernel's
        # layout; the float result is made planar per frame, the layout FusedColor multiplies fastest
        crop = rearrange(video[..., top : top + h, left : left + w], "c t h w -> t c h w")
        small = F.interpolate(crop, size=size, mode="bilinear", align_corners=False, antialias=antialias)
        planar = small.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
        return rearrange(planar, "t c h w -> c t h w")
    # Every (channel, frame) plane is resized alike: resizing them as the channels of one
    # contiguous image is 2-3x faster than as a (T, C, h, w) batch of strided frames.
    planes = rearrange(video[..., top : top + h, left : left + w], "c t h w -> 1 (c t) h w")
    # Antialiasing only changes a downscale; an upscale is the same bilinear interpolation
    # (equal to ~1e-6) on a faster kernel.
    resized = F.interpolate(planes, size=size, mode="bilinear", align_corners=False, antialias=antialias)
    return rearrange(resized, "1 (c t) h w -> c t h w", c=channels, t=frames)


class CenterCrop:
    """Crop the centre ``size`` of every frame (evaluation); the clip must be at least that big.

    Shape:
        ``(C, T, H, W) -> (C, T, size_h, size_w)``.
    """

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _pair(size)

    def __call__(self, video: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_video("CenterCrop", video)
        height, width = video.shape[-2:]
        h, w = self.size
        if h > height or w > width:
            raise ValueError(
                f"CenterCrop{self.size} is larger than the frames ({height}, {width}); "
                "decode with a short side of at least the crop size"
            )
        top, left = (height - h) // 2, (width - w) // 2
        return video[..., top : top + h, left : left + w]

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size})"


class RandomHorizontalFlip:
    """Mirror every frame left-right with probability ``p`` (one decision per clip).

    Shape:
        ``(C, T, H, W) -> (C, T, H, W)``.
    """

    def __init__(self, p: float = 0.5) -> None:
        _check_prob("RandomHorizontalFlip p", p)
        self.p = p

    def __call__(self, video: Tensor, generator: torch.Generator) -> Tensor:
        _check_video("RandomHorizontalFlip", video)
        return torch.flip(video, dims=(-1,)) if _coin(generator, self.p) else video

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class ColorJitter:
    """With probability ``p``, jitter brightness, contrast, saturation and hue in random order.

    Factors are drawn once per clip: brightness, contrast and saturation uniformly in
    ``[max(0, 1 - v), 1 + v]``, the hue shift uniformly in ``[-hue, hue]`` (``hue <= 0.5``), and
    applied to every frame with :mod:`torchvision.transforms.v2.functional` (contrast blends each
    frame with its own mean grey; hue uses :func:`adjust_hue`, the same HSV shift, faster; or, with
    ``hue_mode="yiq"``, :func:`rotate_hue`, a linear rotation of the chroma plane, ~10x cheaper
    again). Output stays in ``[0, 1]``.

    Shape:
        ``(C, T, H, W) -> (C, T, H, W)`` with ``C = 3``.
    """

    def __init__(
        self,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        p: float = 0.8,
        hue_mode: str = "hsv",
    ) -> None:
        if hue_mode not in HUE_MODES:
            raise ValueError(f"ColorJitter hue_mode must be one of {HUE_MODES}, got {hue_mode!r}")
        self.hue_mode = hue_mode
        for name, v in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if v < 0:
                raise ValueError(f"ColorJitter {name} must be >= 0, got {v}")
        if not 0 <= hue <= 0.5:
            raise ValueError(f"ColorJitter hue must be in [0, 0.5], got {hue}")
        _check_prob("ColorJitter p", p)
        self.brightness, self.contrast, self.saturation, self.hue, self.p = (
            brightness,
            contrast,
            saturation,
            hue,
            p,
        )

    def draw(self, generator: torch.Generator) -> JitterDraw | None:
        """This clip's draws: None (not applied, probability ``1 - p``) or ``(order, b, c, s, h)``:
        the order of the four operations and the brightness, contrast, saturation and hue factors."""
        if not _coin(generator, self.p):
            return None
        order = torch.randperm(4, generator=generator).tolist()
        b = _uniform(generator, max(0.0, 1 - self.brightness), 1 + self.brightness)
        c = _uniform(generator, max(0.0, 1 - self.contrast), 1 + self.contrast)
        s = _uniform(generator, max(0.0, 1 - self.saturation), 1 + self.saturation)
        h = _uniform(generator, -self.hue, self.hue)
        return order, b, c, s, h

    def __call__(self, video: Tensor, generator: torch.Generator) -> Tensor:
        _check_video("ColorJitter", video)
        drawn = self.draw(generator)
        return video if drawn is None else self.apply(video, drawn)

    def apply(self, video: Tensor, drawn: JitterDraw) -> Tensor:
        """Apply the draws of :meth:`draw` to a clip ``(C, T, H, W) -> (C, T, H, W)``."""
        order, b, c, s, h = drawn
        frames = rearrange(video, "c t h w -> t c h w")
        for op in order:
            if op == 0 and self.brightness > 0:
                frames = TF.adjust_brightness(frames, b)
            elif op == 1 and self.contrast > 0:
                frames = TF.adjust_contrast(frames, c)
            elif op == 2 and self.saturation > 0:
                frames = TF.adjust_saturation(frames, s)
            elif op == 3 and self.hue > 0:
                frames = adjust_hue(frames, h) if self.hue_mode == "hsv" else rotate_hue(frames, h)
        return rearrange(frames, "t c h w -> c t h w")

    def __repr__(self) -> str:
        return (
            f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation}, hue={self.hue}, p={self.p}, hue_mode={self.hue_mode!r})"
        )


HUE_MODES = ("hsv", "yiq")
JitterDraw = tuple[list[int], float, float, float, float]
"""One clip's colour jitter draws: operation order, brightness, contrast, saturation, hue."""
# RGB -> YIQ (NTSC); hue is the angle in the (I, Q) chroma plane
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                    dtype=torch.float64)
_YIQ_INV: Tensor = torch.linalg.inv(_YIQ)


def hue_rotation_matrix(factor: float) -> Tensor:
    """``(3, 3)`` RGB matrix that turns the chroma of a pixel by ``factor`` turns in YIQ space
    (luma kept); the sign follows :func:`adjust_hue` (positive: red towards yellow)."""
    angle = -2 * math.pi * factor
    cos, sin = math.cos(angle), math.sin(angle)
    rot = torch.tensor([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]], dtype=torch.float64)
    matrix: Tensor = _YIQ_INV @ rot @ _YIQ
    return matrix.float()


def rotate_hue(frames: Tensor, factor: float) -> Tensor:
    """Shift the hue of RGB frames by ``factor`` turns with one 3x3 colour matrix (YIQ rotation).

    A linear stand-in for the HSV shift of :func:`adjust_hue` (close for small shifts, not
    equal: saturation and value are not kept exactly); one matrix product instead of an HSV
    round trip. Output clamped to ``[0, 1]``.

    Shape:
        ``(..., 3, H, W) -> (..., 3, H, W)``.
    """
    if not -0.5 <= factor <= 0.5:
        raise ValueError(f"hue factor must be in [-0.5, 0.5], got {factor}")
    if frames.ndim < 3 or frames.shape[-3] != 3 or not frames.is_floating_point():
        raise ValueError(f"rotate_hue needs float RGB frames (..., 3, H, W), got {tuple(frames.shape)} "
                         f"{frames.dtype}")
    matrix = hue_rotation_matrix(factor).to(frames.dtype)
    out: Tensor = torch.einsum("ij,...jhw->...ihw", matrix, frames)
    return out.clamp_(0.0, 1.0)


def adjust_hue(frames: Tensor, factor: float) -> Tensor:
    """Shift the hue of RGB frames by ``factor`` turns, as ``torchvision``'s ``adjust_hue`` does.

    The same HSV round trip (equal to ~1e-6), written with elementwise ops only: torchvision's
    version reduces over the channel axis and gathers from a table, 3-4x slower on clips. Inputs
    outside ``[0, 1]`` (where torchvision clamps some intermediate values) and non-float or
    non-RGB inputs go through torchvision itself.

    Shape:
        ``(..., 3, H, W) -> (..., 3, H, W)``.
    """
    if not -0.5 <= factor <= 0.5:
        raise ValueError(f"hue factor must be in [-0.5, 0.5], got {factor}")
    low, high = torch.aminmax(frames) if frames.is_floating_point() and frames.numel() else (-1.0, -1.0)
    if frames.ndim < 3 or frames.shape[-3] != 3 or float(low) < 0.0 or float(high) > 1.0:
        shifted: Tensor = TF.adjust_hue(frames, factor)
        return shifted
    r, g, b = frames.unbind(dim=-3)
    maxc = torch.maximum(torch.maximum(r, g), b)
    span = maxc - torch.minimum(torch.minimum(r, g), b)
    div = span + (span == 0)  # grey pixels: any hue (span 0 cancels it below)
    rc, gc, bc = (maxc - r).div_(div), (maxc - g).div_(div), (maxc - b).div_(div)
    max_is_r, max_is_g = maxc == r, maxc == g
    hue = (bc - gc).mul_(max_is_r)
    hue += (rc + 2.0).sub_(bc).mul_(max_is_g & ~max_is_r)
    hue += (gc + 4.0).sub_(rc).mul_(~max_is_g & ~max_is_r)
    hue6 = hue.mul_(1.0 / 6.0).add_(1.0).fmod_(1.0).add_(factor).remainder_(1.0).mul_(6.0)
    out = torch.empty_like(frames)
    for channel, shift in enumerate((5.0, 3.0, 1.0)):  # HSV -> RGB: c = v - v s clamp(min(k, 4 - k), 0, 1)
        k = hue6 + shift
        k -= 6.0 * (k >= 6.0)
        weight = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
        torch.sub(maxc, span * weight, out=out.select(-3, channel))
    return out


class RandomGrayscale:
    """With probability ``p``, replace RGB by its luma in all three channels (whole clip).

    Shape:
        ``(C, T, H, W) -> (C, T, H, W)`` with ``C = 3``.
    """

    def __init__(self, p: float = 0.2) -> None:
        _check_prob("RandomGrayscale p", p)
        self.p = p

    def __call__(self, video: Tensor, generator: torch.Generator) -> Tensor:
        _check_video("RandomGrayscale", video)
        return self.apply(video) if _coin(generator, self.p) else video

    @staticmethod
    def apply(video: Tensor) -> Tensor:
        """The clip's luma in all three channels: ``(3, T, H, W) -> (3, T, H, W)``."""
        frames = rearrange(video, "c t h w -> t c h w")
        grey: Tensor = TF.rgb_to_grayscale(frames, num_output_channels=3)
        return rearrange(grey, "t c h w -> c t h w")

    def __repr__(self) -> str:
        return f"RandomGrayscale(p={self.p})"


# luma weights of torchvision's rgb_to_grayscale (ITU-R 601-2), which ColorJitter's contrast and
# saturation and RandomGrayscale use
_LUMA = (0.2989, 0.587, 0.114)


class FusedColor:
    """ColorJitter (``hue_mode="yiq"``) + RandomGrayscale + Normalize as one per-frame affine colour map.

    Brightness, contrast, saturation, the YIQ hue rotation and greyscale are all affine in RGB
    (contrast adds each frame's mean grey), so their composition, in the same random order with
    the same random draws from ``generator`` as :class:`ColorJitter` then :class:`RandomGrayscale`,
    is one ``3 x 3`` matrix plus an offset per frame: one pass over the pixels instead of one per
    operation. The difference from the separate transforms: the result is clamped to ``[0, 1]``
    once, after the whole map, not after every operation (equal where nothing leaves the range).

    Shape:
        ``(C, T, H, W) -> (C, T, H, W)`` with ``C = 3``, float; normalised if ``mean``/``std`` given.
    """

    def __init__(self, jitter: ColorJitter, grayscale_p: float, mean: Sequence[float] | None = KINETICS_MEAN,
                 std: Sequence[float] | None = KINETICS_STD) -> None:
        if jitter.hue > 0 and jitter.hue_mode != "yiq":
            raise ValueError("FusedColor needs hue_mode='yiq' (or hue 0): the HSV hue shift is not a "
                             "colour matrix")
        _check_prob("FusedColor grayscale_p", grayscale_p)
        self.jitter, self.grayscale_p = jitter, grayscale_p
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(v) for v in std)

    def matrix(self, video: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, bool]:
        """Draw this clip's jitter; returns ``A: (3, 3)``, ``offset: (T, 3)`` (``y = A x + offset_t``
        per pixel) and whether anything was applied. Float64."""
        drawn = self.jitter.draw(generator)  # the draws of ColorJitter, then RandomGrayscale's
        grey = _coin(generator, self.grayscale_p)
        return self.compose(drawn, grey, lambda: video.mean(dim=(2, 3)).T.double())

    def compose(self, drawn: JitterDraw | None, greyscale: bool,
                pixel_mean: Callable[[], Tensor]) -> tuple[Tensor, Tensor, bool]:
        """The colour map of one clip's draws (:meth:`ColorJitter.draw`, greyscale or not);
        ``pixel_mean()`` gives the clip's mean RGB per frame ``(T, 3)`` float64 (asked only for
        contrast). Returns ``A: (3, 3)``, ``offset: (T, 3)``, applied. Float64."""
        j = self.jitter
        eye = torch.eye(3, dtype=torch.float64)
        luma = torch.tensor(_LUMA, dtype=torch.float64)
        grey_of = torch.outer(torch.ones(3, dtype=torch.float64), luma)  # every channel <- luma
        a, offset = eye.clone(), None
        applied = False
        if drawn is not None:
            means = pixel_mean()
            offset = torch.zeros(means.shape[0], 3, dtype=torch.float64)
            order, b, c, sat, h = drawn
            for op in order:
                if op == 0 and j.brightness > 0:
                    a, offset = b * a, b * offset
                elif op == 1 and j.contrast > 0:
                    # blend with the frame's mean grey: mean over pixels of luma . (A x + offset_t)
                    grey = (means @ a.T + offset) @ luma  # (T,)
                    a, offset = c * a, c * offset + (1 - c) * grey[:, None]
                elif op == 2 and j.saturation > 0:
                    m = sat * eye + (1 - sat) * grey_of
                    a, offset = m @ a, offset @ m.T
                elif op == 3 and j.hue > 0:
                    m = hue_rotation_matrix(h).double()
                    a, offset = m @ a, offset @ m.T
            applied = True
        if offset is None:
            offset = torch.zeros(1, 3, dtype=torch.float64)  # broadcast over the frames
        if greyscale:
            a, offset = grey_of @ a, offset @ grey_of.T
            applied = True
        return a, offset, applied

    def __call__(self, video: Tensor, generator: torch.Generator) -> Tensor:
        _check_video("FusedColor", video)
        if video.shape[0] != 3 or not video.is_floating_point():
            raise ValueError(f"FusedColor needs float RGB clips (3, T, H, W), got {tuple(video.shape)} "
                             f"{video.dtype}")
        a, offset, applied = self.matrix(video, generator)
        out = self.apply(rearrange(video, "c t h w -> 1 c t h w"), a[None], offset[None],
                         torch.tensor([applied]))
        return rearrange(out, "1 c t h w -> c t h w")

    def apply(self, video: Tensor, a: Tensor, offset: Tensor, applied: Tensor) -> Tensor:
        """Apply colour maps of :meth:`compose` (normalisation folded in) to a batch of clips.

        Shape:
            ``video (B, 3, T, H, W)``, ``a (B, 3, 3)``, ``offset (B, T, 3)`` or ``(B, 1, 3)``,
            ``applied (B,)`` bool ``-> (B, 3, T, H, W)``.
        """
        batch, _, frames, height, _ = video.shape
        # (B T, 3, HW): a view of RandomResizedCrop's 8-bit path output; (3 x 3) @ (3 x HW) per frame is
        # ~20x faster than (HW x 3) @ (3 x 3) on pixel rows
        planes = rearrange(video, "b c t h w -> (b t) c (h w)")
        dtype, device = video.dtype, video.device
        mean = torch.tensor(self.mean or (0.0, 0.0, 0.0), dtype=torch.float64)
        std = torch.tensor(self.std or (1.0, 1.0, 1.0), dtype=torch.float64)
        # normalisation folded into the map: clamp(y, 0, 1) normalised is the normalised y clamped to
        # each channel's normalised [0, 1] (scalar bounds per channel: a tensor-bound clamp is 10x slower)
        a, offset = a / std[:, None], (offset.expand(batch, frames, 3) - mean) / std
        maps = repeat(a.to(dtype), "b i j -> (b t) i j", t=frames).to(device)
        shift = rearrange(offset.to(dtype), "b t c -> (b t) c 1").to(device)
        out = torch.baddbmm(shift, maps, planes)
        low = [float(-mean[c] / std[c]) for c in range(3)]
        high = [float((1 - mean[c]) / std[c]) for c in range(3)]
        if batch == 1 and bool(applied[0]):
            for c in range(3):
                out[:, c].clamp_(low[c], high[c])
        elif batch > 1 and bool(applied.any()):
            bounds = torch.tensor([low, high], dtype=dtype, device=device)[:, None, :, None]
            clamped = torch.clamp(out, bounds[0], bounds[1])
            keep = repeat(applied.to(device), "b -> (b t) 1 1", t=frames)
            out = torch.where(keep, clamped, out)
        return rearrange(out, "(b t) c (h w) -> b c t h w", b=batch, h=height)

    def __repr__(self) -> str:
        return (f"FusedColor({self.jitter!r}, grayscale_p={self.grayscale_p}, mean={self.mean}, "
                f"std={self.std})")


class Normalize:
    """Per-channel ``(x - mean) / std`` (Kinetics statistics by default).

    Shape:
        ``(C, T, H, W) -> (C, T, H, W)``; ``len(mean) == len(std) == C``.
    """

    def __init__(self, mean: Sequence[float] = KINETICS_MEAN, std: Sequence[float] = KINETICS_STD) -> None:
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"Normalize needs one mean and one positive std per channel, got {mean}, {std}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __call__(self, video: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_video("Normalize", video)
        if video.shape[0] != len(self.mean):
            raise ValueError(f"Normalize has {len(self.mean)} channels, video has shape {tuple(video.shape)}")
        mean = torch.tensor(self.mean, dtype=video.dtype, device=video.device)
        std = torch.tensor(self.std, dtype=video.dtype, device=video.device)
        return (video - rearrange(mean, "c -> c 1 1 1")).div_(rearrange(std, "c -> c 1 1 1"))

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class TemporalJitter:
    """Pick ``num_frames`` frames from a longer clip with a random stride and a random offset.

    The stride is drawn uniformly from those in ``strides`` whose span
    ``(num_frames - 1) * stride + 1`` fits in the available frames (the smallest one if none
    fits); the offset is uniform over the positions where that span fits. Indices past the end
    repeat the last frame (as :func:`avlearn.data.decode.decode_clip` does).

    Shape:
        ``indices``: ``num_available -> (num_frames,)`` long;
        ``__call__``: ``(C, T_in, H, W) -> (C, num_frames, H, W)``.
    """

    def __init__(self, num_frames: int, strides: Sequence[int] = (1,)) -> None:
        if num_frames < 1:
            raise ValueError(f"TemporalJitter num_frames must be >= 1, got {num_frames}")
        if not strides or any(s < 1 for s in strides):
            raise ValueError(f"TemporalJitter strides must be positive integers, got {strides}")
        self.num_frames = num_frames
        self.strides = tuple(sorted(set(int(s) for s in strides)))

    def indices(self, num_available: int, generator: torch.Generator) -> Tensor:
        """Frame indices ``(num_frames,)`` into a clip of ``num_available`` frames."""
        if num_available < 1:
            raise ValueError(f"TemporalJitter needs at least one frame, got {num_available}")
        fitting = [s for s in self.strides if (self.num_frames - 1) * s + 1 <= num_available]
        stride = fitting[_randint(generator, 0, len(fitting) - 1)] if fitting else self.strides[0]
        span = (self.num_frames - 1) * stride + 1
        offset = _randint(generator, 0, num_available - span) if span <= num_available else 0
        idx = offset + stride * torch.arange(self.num_frames)
        return idx.clamp(max=num_available - 1)

    def __call__(self, video: Tensor, generator: torch.Generator) -> Tensor:
        _check_video("TemporalJitter", video)
        idx = self.indices(video.shape[1], generator).to(video.device)
        return video.index_select(1, idx)

    def __repr__(self) -> str:
        return f"TemporalJitter(num_frames={self.num_frames}, strides={self.strides})"


def temporal_jitter_start(
    duration: float, clip_seconds: float, generator: torch.Generator, low: float = 0.0
) -> float:
    """A clip start time uniform in ``[low, duration - clip_seconds]`` (``low`` if the clip won't fit).

    Use it before decoding, e.g. ``decode_clip(path, start=temporal_jitter_start(d, 1.0, g), ...)``.
    """
    high = duration - clip_seconds
    return low if high <= low else _uniform(generator, low, high)


# ---------------------------------------------------------------------------------------------
# audio: waveform (S,) and spectrogram (1, F, T)


class VolumeJitter:
    """Multiply the waveform by a gain drawn uniformly from ``factor`` (AVID-CMA: ``(0.9, 1.1)``).

    No clipping: the result may leave ``[-1, 1]``, which the log spectrogram does not mind.

    Shape:
        ``(S,) -> (S,)`` (any shape works: one gain for the whole tensor).
    """

    def __init__(self, factor: tuple[float, float] = (0.9, 1.1)) -> None:
        _check_range("VolumeJitter factor", factor, low=0.0)
        self.factor = factor

    def __call__(self, wav: Tensor, generator: torch.Generator) -> Tensor:
        return wav * self.gain(generator)

    def gain(self, generator: torch.Generator) -> float:
        """Draw this clip's gain."""
        return _uniform(generator, *self.factor)

    def __repr__(self) -> str:
        return f"VolumeJitter(factor={self.factor})"


class _AxisMask:
    """SpecAugment-style masks along one axis of a spectrogram ``(..., F, T)``."""

    dim: int
    axis_name: str

    def __init__(self, max_width: int, n: int = 1, min_width: int = 0, fill: MaskFill = "mean") -> None:
        name = type(self).__name__
        if not 0 <= min_width <= max_width:
            raise ValueError(f"{name} needs 0 <= min_width <= max_width, got {min_width}, {max_width}")
        if n < 0:
            raise ValueError(f"{name} n (number of masks) must be >= 0, got {n}")
        if fill not in ("mean", "zero"):
            raise ValueError(f"{name} fill must be 'mean' or 'zero', got {fill!r}")
        self.max_width, self.n, self.min_width, self.fill = max_width, n, min_width, fill

    def __call__(self, spec: Tensor, generator: torch.Generator) -> Tensor:
        if spec.ndim < 2:
            raise ValueError(
                f"{type(self).__name__} expects a spectrogram (..., F, T), got {tuple(spec.shape)}"
            )
        return self.apply(spec, self.keep(spec.shape[self.dim], generator))

    def keep(self, size: int, generator: torch.Generator) -> Tensor:
        """Draw the masks over an axis of ``size``: ``(size,)`` bool, False where masked."""
        keep = torch.ones(size, dtype=torch.bool)
        for _ in range(self.n):
            width = min(_randint(generator, self.min_width, self.max_width), size)
            start = _randint(generator, 0, size - width)
            keep[start : start + width] = False
        return keep

    def apply(self, spec: Tensor, keep: Tensor) -> Tensor:
        """Fill where ``keep`` is False with the fill value; a batch gets one fill per item.

        Shape:
            ``spec (1, F, T)`` with ``keep (size,)``, or ``spec (B, 1, F, T)`` with ``keep (B, size)``.
        """
        batched = keep.ndim == 2
        if bool(keep.all()):
            return spec
        if self.fill == "mean":
            value = spec.mean(dim=(-3, -2, -1), keepdim=True) if batched else spec.mean()
        else:
            value = spec.new_zeros(())
        shape = [1] * spec.ndim
        shape[self.dim] = spec.shape[self.dim]
        if batched:
            shape[0] = keep.shape[0]
        return torch.where(keep.to(spec.device).view(shape), spec, value)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(max_width={self.max_width}, n={self.n}, "
            f"min_width={self.min_width}, fill={self.fill!r})"
        )


class TimeMask(_AxisMask):
    """Fill ``n`` random runs of time frames (each ``min_width..max_width`` wide) with a constant.

    ``fill="mean"`` uses the spectrogram's mean (the natural blank for a log spectrogram),
    ``"zero"`` uses 0. Masks may overlap.

    Shape:
        ``(1, F, T) -> (1, F, T)`` (any ``(..., F, T)``).
    """

    dim = -1


class FrequencyMask(_AxisMask):
    """Fill ``n`` random runs of frequency bins (each ``min_width..max_width`` wide) with a constant.

    ``fill="mean"`` uses the spectrogram's mean, ``"zero"`` uses 0. Masks may overlap.

    Shape:
        ``(1, F, T) -> (1, F, T)`` (any ``(..., F, T)``).
    """

    dim = -2


class SpectrogramTransform:
    """Adapter making a (deterministic) spectrogram module a :class:`Transform`.

    Shape:
        ``(S,) -> (1, F, T)``.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self, wav: Tensor, generator: torch.Generator | None = None) -> Tensor:
        out: Tensor = self.module(wav)
        return out

    def __repr__(self) -> str:
        return f"SpectrogramTransform({self.module!r})"


# ---------------------------------------------------------------------------------------------
# configs and builders


def _is_range(r: tuple[float, ...], low: float) -> bool:
    return len(r) == 2 and low <= r[0] <= r[1]


def _refusal(cfg: object, section: str) -> Callable[[str, str], InvalidValue]:
    """``bad(field, allowed)``: the error that ``cfg.field`` is outside ``allowed``."""
    return lambda field, allowed: InvalidValue(field, getattr(cfg, field), allowed, section)


def _as_tuple(obj: object, name: str) -> None:
    """Coerce a list (as YAML gives) to a tuple on a frozen dataclass, once, at construction."""
    value = getattr(obj, name)
    if isinstance(value, list):
        object.__setattr__(obj, name, tuple(value))


@dataclasses.dataclass(frozen=True)
class VideoAugConfig:
    """Video augmentation settings (training: crop, flip, colour; evaluation: centre crop).

    Attributes:
        size: output crop side (``H = W = size``).
        crop_scale: area fraction range of :class:`RandomResizedCrop`.
        crop_ratio: aspect-ratio range of :class:`RandomResizedCrop`.
        flip_p: horizontal flip probability.
        brightness, contrast, saturation, hue: :class:`ColorJitter` strengths.
        hue_mode: ``hsv`` (torchvision's HSV shift, exact) or ``yiq`` (a chroma rotation, much
            cheaper; see :func:`rotate_hue`).
        fused: the fast training path: the decoder hands over 8-bit frames, the crop is resized
            in uint8, and colour jitter, greyscale and normalisation run as one colour map
            (:class:`FusedColor`: clamped once instead of after every step). Needs ``hue_mode:
            yiq`` (or ``hue: 0``). Evaluation transforms are unchanged.
        color_jitter_p: probability of applying colour jitter.
        grayscale_p: probability of greyscale.
        normalize: apply :class:`Normalize` with ``mean`` / ``std`` last.
        mean, std: per-channel statistics (Kinetics by default).
    """

    size: int = 112
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    hue_mode: str = "hsv"
    fused: bool = False
    color_jitter_p: float = 0.8
    grayscale_p: float = 0.2
    normalize: bool = True
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD

    def __post_init__(self) -> None:
        for name in ("crop_scale", "crop_ratio", "mean", "std"):
            _as_tuple(self, name)
        bad = _refusal(self, "VideoAugConfig")
        if self.size < 1:
            raise bad("size", "must be >= 1 (pixels)")
        for name in ("flip_p", "color_jitter_p", "grayscale_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise bad(name, "must be a probability in [0, 1]")
        if not _is_range(self.crop_scale, low=0.0) or self.crop_scale[1] <= 0:
            raise bad("crop_scale", "must be [min, max] with 0 <= min <= max and max > 0 (area fractions)")
        if not _is_range(self.crop_ratio, low=0.0) or self.crop_ratio[0] <= 0:
            raise bad("crop_ratio", "must be [min, max] with 0 < min <= max (width / height)")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise bad(name, "must be >= 0 (0 = off)")
        if not 0 <= self.hue <= 0.5:
            raise bad("hue", "must be in [0, 0.5] (0 = off)")
        if self.hue_mode not in HUE_MODES:
            raise bad("hue_mode", f"must be one of {list(HUE_MODES)}")
        if self.fused and self.hue > 0 and self.hue_mode != "yiq":
            raise bad("fused", "the fused path applies the colour jitter as one colour matrix, which the "
                               "HSV hue shift is not: set hue_mode: yiq (or hue: 0) here, or fused: false")
        if len(self.mean) != len(self.std):
            raise bad("std", f"must have one value per channel, as mean {self.mean} has")
        if any(v <= 0 for v in self.std):
            raise bad("std", "every value must be > 0 (it divides)")


@dataclasses.dataclass(frozen=True)
class AudioAugConfig:
    """Audio augmentation settings: waveform gain, then SpecAugment-style masks (training only).

    Attributes:
        volume: gain range of :class:`VolumeJitter`; ``(1.0, 1.0)`` disables it.
        time_masks: number of :class:`TimeMask` runs (0 disables; AVID-CMA used none).
        time_mask_width: widest time mask in frames.
        freq_masks: number of :class:`FrequencyMask` runs (0 disables).
        freq_mask_width: widest frequency mask in bins.
        mask_fill: ``"mean"`` or ``"zero"``.
    """

    volume: tuple[float, float] = (0.9, 1.1)
    time_masks: int = 0
    time_mask_width: int = 20
    freq_masks: int = 0
    freq_mask_width: int = 24
    mask_fill: MaskFill = "mean"

    def __post_init__(self) -> None:
        _as_tuple(self, "volume")
        bad = _refusal(self, "AudioAugConfig")
        if not _is_range(self.volume, low=0.0):
            raise bad("volume", "must be [min, max] gains with 0 <= min <= max ([1, 1] = off)")
        for name in ("time_masks", "time_mask_width", "freq_masks", "freq_mask_width"):
            if getattr(self, name) < 0:
                raise bad(name, "must be >= 0")
        if self.mask_fill not in ("mean", "zero"):
            raise bad("mask_fill", "must be 'mean' or 'zero'")


def build_video_transform(cfg: VideoAugConfig, train: bool) -> Compose:
    """Training: crop, flip, colour jitter, greyscale, normalise; evaluation: centre crop, normalise.

    Shape:
        ``(3, T, H, W)`` in ``[0, 1]`` ``-> (3, T, size, size)`` (normalised if ``cfg.normalize``).
    """
    steps: list[Transform]
    if train and cfg.fused:
        jitter = ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, p=cfg.color_jitter_p,
                             hue_mode=cfg.hue_mode)
        norm = (cfg.mean, cfg.std) if cfg.normalize else (None, None)
        steps = [RandomResizedCrop(cfg.size, scale=cfg.crop_scale, ratio=cfg.crop_ratio),
                 RandomHorizontalFlip(cfg.flip_p), FusedColor(jitter, cfg.grayscale_p, *norm)]
        return Compose(steps, uint8_input=True)
    if train:
        steps = [
            RandomResizedCrop(cfg.size, scale=cfg.crop_scale, ratio=cfg.crop_ratio),
            RandomHorizontalFlip(cfg.flip_p),
            ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, p=cfg.color_jitter_p,
                        hue_mode=cfg.hue_mode),
            RandomGrayscale(cfg.grayscale_p),
        ]
    else:
        steps = [CenterCrop(cfg.size)]
    if cfg.normalize:
        steps.append(Normalize(cfg.mean, cfg.std))
    return Compose(steps)


def build_audio_transform(cfg: AudioAugConfig, spec_cfg: SpecConfig, train: bool) -> Compose:
    """Training: volume jitter -> spectrogram -> time / frequency masks; evaluation: spectrogram.

    Shape:
        waveform ``(S,) -> (1, F, T)`` with ``F = spec_cfg.num_bins``, ``T = spec_cfg.num_frames(S)``.
    """
    spectrogram = SpectrogramTransform(build_spectrogram(spec_cfg))
    if not train:
        return Compose([spectrogram])
    steps: list[Transform] = []
    if cfg.volume != (1.0, 1.0):
        steps.append(VolumeJitter(cfg.volume))
    steps.append(spectrogram)
    if cfg.time_masks > 0:
        steps.append(TimeMask(cfg.time_mask_width, cfg.time_masks, fill=cfg.mask_fill))
    if cfg.freq_masks > 0:
        steps.append(FrequencyMask(cfg.freq_mask_width, cfg.freq_masks, fill=cfg.mask_fill))
    return Compose(steps)
