"""Which convolutions of a video encoder are memory-bound: each timed alone, forward and backward.

Every convolution's input shape is recorded in one forward pass of the encoder; each distinct
(convolution, input shape) is then run alone in bf16 (forward and both backward products) and
timed. Its arithmetic intensity is the forward's FLOP over the bytes it must move at least (input,
output and weight, 2 bytes each); below the device's ridge point (peak FLOP/s over peak bytes/s,
:mod:`benchmarks.gpu.peaks`) no kernel can be compute-bound, so it is marked memory-bound.
R(2+1)D's 3x1x1 temporal convolutions read and write a whole map for 3 x C_in multiply-adds per
output: at 64-128 channels that is below an H100's or H200's ridge.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ConvCall", "capture_convs", "layer_table"]


@dataclass
class ConvCall:
    """A convolution of the model and the input shape it saw ``(B, C, *S)``; ``names``: every layer
    with this convolution and input shape."""

    names: list[str]
    conv: nn.Conv2d | nn.Conv3d
    shape: tuple[int, ...]
    input_grad: bool = True

    def output_numel(self) -> int:
        """Elements of the output ``(B, C_out, *S')``."""
        c = self.conv
        sizes = [(s + 2 * p - d * (k - 1) - 1) // st + 1  # type: ignore[operator]
                 for s, p, d, k, st in zip(self.shape[2:], c.padding, c.dilation, c.kernel_size, c.stride,
                                           strict=True)]
        return self.shape[0] * c.out_channels * math.prod(sizes)

    def forward_flops(self) -> float:
        """2 x multiply-adds of the forward pass."""
        per_output = self.conv.weight[0].numel()  # C_in / groups * prod(kernel)
        return 2.0 * self.output_numel() * per_output

    def min_bytes(self) -> float:
        """Input, output and weight once each, in bf16."""
        return 2.0 * (math.prod(self.shape) + self.output_numel() + self.conv.weight.numel())


def capture_convs(encoder: nn.Module, video: Tensor) -> list[ConvCall]:
    """Distinct (convolution, input shape) pairs of one forward pass of ``encoder`` on ``video``."""
    calls: dict[tuple[Any, ...], ConvCall] = {}
    hooks = []
    for name, module in encoder.named_modules():
        if not isinstance(module, nn.Conv2d | nn.Conv3d):
            continue

        def hook(mod: nn.Module, args: tuple[Tensor, ...], name: str = name) -> None:
            conv = mod
            assert isinstance(conv, nn.Conv2d | nn.Conv3d)
            key = (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                   conv.groups, tuple(args[0].shape))
            if key in calls:
                calls[key].names.append(name)
            else:
                calls[key] = ConvCall([name], conv, tuple(args[0].shape))

        hooks.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            encoder(video)
    finally:
        for h in hooks:
            h.remove()
    for call in calls.values():  # a convolution of the clip itself: training computes no input gradient
        call.input_grad = call.shape != tuple(video.shape)
    return list(calls.values())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pad_input_channels(conv: nn.Conv3d, channels: int) -> nn.Conv3d:
    """``conv`` taking ``channels`` input channels, the added ones with zero weights: the same output
    for an input padded with anything (zeros) to ``channels``; cuDNN's tensor-core kernels for
    channels-last bf16 want a multiple of 8 input channels, which an RGB stem (3) is not."""
    if conv.groups != 1 or channels < conv.in_channels:
        raise ValueError(f"cannot pad {conv} to {channels} input channels")
    twin = nn.Conv3d(channels, conv.out_channels, conv.kernel_size, conv.stride,  # type: ignore[arg-type]
                     conv.padding, conv.dilation, bias=conv.bias is not None,  # type: ignore[arg-type]
                     device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        twin.weight.zero_()
        twin.weight[:, :conv.in_channels].copy_(conv.weight)
        if conv.bias is not None:
            assert twin.bias is not None
            twin.bias.copy_(conv.bias)
    return twin


def time_call(call: ConvCall, device: torch.device, channels_last: bool, reps: int, warmup: int = 2,
              pad_channels: int | None = None) -> float:
    """Seconds of one bf16 forward + backward of ``call`` alone: the weight gradient always, the
    input gradient unless ``call.input_grad`` is False (the first convolution reads the clip, which
    needs none). ``pad_channels``: input channels padded to this (:func:`pad_input_channels`)."""
    conv = call.conv
    shape = call.shape
    if pad_channels is not None:
        assert isinstance(conv, nn.Conv3d)
        conv, shape = pad_input_channels(conv, pad_channels), (shape[0], pad_channels, *shape[2:])
    twin = copy.deepcopy(conv).to(device, torch.bfloat16)
    x = torch.randn(shape, device=device, dtype=torch.bfloat16)
    if channels_last:
        fmt = torch.channels_last_3d if x.dim() == 5 else torch.channels_last
        twin, x = twin.to(memory_format=fmt), x.contiguous(memory_format=fmt)
    x.requires_grad_(call.input_grad)
    dy = torch.randn_like(twin(x))

    def once() -> None:
        twin(x).backward(dy)  # type: ignore[no-untyped-call]

    for _ in range(warmup):
        once()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        once()
    _sync(device)
    return (time.perf_counter() - t0) / reps


def layer_table(encoder: nn.Module, video: Tensor, device: torch.device, *, channels_last: bool,
                peak_flops: float, peak_bytes_per_s: float | None, reps: int = 10,
                warmup: int = 2) -> list[dict[str, Any]]:
    """One row per distinct convolution, slowest first: names, shapes, milliseconds (forward and
    backward), achieved TFLOP/s, share of all convolutions' time, intensity and whether it is
    memory-bound (None when the device's bandwidth is unknown).

    Shape: ``video (B, C, T, H, W)`` (on any device: only its shape matters to the timing).
    """
    ridge = peak_flops / peak_bytes_per_s if peak_bytes_per_s else None
    rows: list[dict[str, Any]] = []
    for call in capture_convs(encoder, video):
        seconds = time_call(call, device, channels_last, reps, warmup)
        fwd = call.forward_flops()
        intensity = fwd / call.min_bytes()
        rows.append({
            "layers": call.names,
            "kernel": list(call.conv.kernel_size),
            "stride": list(call.conv.stride),
            "channels": [call.conv.in_channels, call.conv.out_channels],
            "input": list(call.shape),
            "ms": round(seconds * 1e3 * len(call.names), 3),
            # forward + weight gradient (+ input gradient): 3 or 2 forward's FLOP
            "tflops": round((3 if call.input_grad else 2) * fwd / seconds / 1e12, 2),
            "intensity": round(intensity, 1),
            "memory_bound": None if ridge is None else intensity < ridge,
            "input_grad": call.input_grad,
        })
        if isinstance(call.conv, nn.Conv3d) and call.conv.in_channels % 8 and call.conv.groups == 1:
            padded = time_call(call, device, channels_last, reps, warmup,
                               pad_channels=-(-call.conv.in_channels // 8) * 8)
            rows[-1]["ms_input_channels_padded_to_8"] = round(padded * 1e3 * len(call.names), 3)
    total = sum(r["ms"] for r in rows) or 1.0
    for r in rows:
        r["time_share"] = round(r["ms"] / total, 4)
    return sorted(rows, key=lambda r: -r["ms"])
