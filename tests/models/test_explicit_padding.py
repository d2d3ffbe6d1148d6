"""Explicitly padded convolutions: correct bf16 weight gradients on CPU, plain convs otherwise.

The bf16 tests fail without the explicit padding on CPUs whose oneDNN picks the
``jit_bf16:avx512_core_bf16`` backward-weights kernel (AVX512-BF16: the weight gradient then
holds NaN or ~1e37 garbage that changes between calls); elsewhere they pass either way.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avlearn.models.explicit_padding import (
    ExplicitPadConv2d,
    ExplicitPadConv3d,
    needs_explicit_padding,
    use_explicit_padding,
)
from avlearn.models.video import r2plus1d_tiny

# (conv class, input shape, kernel, stride, padding): an axis shorter than its kernel, zero-padded
Conv = nn.Conv2d | nn.Conv3d
SHORT_AXIS: dict[str, tuple[type[Conv], tuple[int, ...], Any, Any, Any]] = {
    # R(2+1)D's temporal conv on the 2-frame maps of layer3 (8-frame clips): the flaky bf16 run
    "temporal_3x1x1_on_2_frames": (ExplicitPadConv3d, (8, 16, 2, 4, 4), (3, 1, 1), 1, (1, 0, 0)),
    "spatial_1x3x3_stride2_on_1x1": (ExplicitPadConv3d, (2, 16, 3, 1, 1), (1, 3, 3), (1, 2, 2), (0, 1, 1)),
    "conv2d_3x3_stride2_on_width_1": (ExplicitPadConv2d, (2, 16, 4, 1), 3, 2, 1),
}


def _conv(cls: type[Conv], in_ch: int, kernel: Any, stride: Any, padding: Any) -> Conv:
    torch.manual_seed(0)
    return cls(in_ch, 16, kernel, stride=stride, padding=padding, bias=False)


def _weight_grad(conv: Conv, x: Tensor, dy: Tensor) -> Tensor:
    conv.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    y.backward(dy.to(y.dtype))
    grad = conv.weight.grad
    assert grad is not None
    return grad


@pytest.mark.parametrize("case", list(SHORT_AXIS), ids=list(SHORT_AXIS))
def test_bf16_weight_gradient_matches_float64_reference(case: str) -> None:
    cls, shape, kernel, stride, padding = SHORT_AXIS[case]
    conv = _conv(cls, shape[1], kernel, stride, padding)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=gen).bfloat16().float()  # bf16 values: autocast's rounding is exact
    conv.weight.data = conv.weight.data.bfloat16().float()
    with torch.no_grad():
        dy = torch.randn(conv(x).shape, generator=gen).bfloat16()
    x64, w64 = x.double(), conv.weight.detach().double().requires_grad_(True)
    conv_fn = F.conv3d if x.dim() == 5 else F.conv2d
    ref_out: Tensor = conv_fn(x64, w64, None, conv.stride, conv.padding)  # type: ignore[operator]
    ref_out.backward(dy.double())
    assert w64.grad is not None
    scale = w64.grad.abs().max()
    for _ in range(5):  # the broken kernel's garbage differs from call to call
        grad = _weight_grad(conv, x, dy)
        assert torch.isfinite(grad).all()
        assert ((grad.double() - w64.grad).abs().max() / scale) < 2e-2


def test_float32_runs_the_plain_convolution_bit_for_bit() -> None:
    cls, shape, kernel, stride, padding = SHORT_AXIS["temporal_3x1x1_on_2_frames"]
    plain = _conv(nn.Conv3d, shape[1], kernel, stride, padding)
    explicit = _conv(cls, shape[1], kernel, stride, padding)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    assert not needs_explicit_padding(explicit, x)
    results = []
    for conv in (plain, explicit):
        xi = x.clone().requires_grad_(True)
        y = conv(xi)
        y.square().sum().backward()
        results.append((y, xi.grad, conv.weight.grad))
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_needs_explicit_padding_only_for_cpu_bf16_with_a_short_padded_axis() -> None:
    conv = nn.Conv3d(4, 4, (3, 1, 1), padding=(1, 0, 0))
    short, long = torch.zeros(1, 4, 2, 4, 4), torch.zeros(1, 4, 3, 4, 4)
    assert needs_explicit_padding(conv, short.bfloat16())
    assert not needs_explicit_padding(conv, short)
    assert not needs_explicit_padding(conv, long.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert needs_explicit_padding(conv, short)
    unpadded = nn.Conv3d(4, 4, (3, 1, 1))
    assert not needs_explicit_padding(unpadded, torch.zeros(1, 4, 3, 4, 4).bfloat16())


def test_use_explicit_padding_keeps_parameters_and_state_dict() -> None:
    conv3d, conv2d = nn.Conv3d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
    model = nn.Sequential(conv3d, nn.Sequential(conv2d))
    params = list(model.parameters())
    keys = list(model.state_dict())
    assert use_explicit_padding(model) is model
    assert isinstance(conv3d, ExplicitPadConv3d) and isinstance(conv2d, ExplicitPadConv2d)
    assert list(model.parameters()) == params and list(model.state_dict()) == keys


def test_video_encoder_bf16_gradients_are_finite_and_repeatable() -> None:
    """An 8-frame clip: layer3's temporal convs see 2 frames, the shape of the flaky bf16 test."""
    torch.manual_seed(0)
    enc = r2plus1d_tiny()
    video = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))
    grads = []
    for _ in range(3):
        enc.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            emb = enc(video).emb
        emb.float().square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None})
    for name, grad in grads[0].items():
        assert torch.isfinite(grad).all(), name
        assert all(torch.equal(grad, other[name]) for other in grads[1:]), name
