"""Convolutions that zero-pad explicitly where oneDNN's CPU bf16 weight gradient is wrong.

On CPUs with AVX512-BF16 (seen on an AMD EPYC Zen 4), PyTorch 2.14.1 computes a bf16
convolution's weight gradient with oneDNN 3.12's ``jit_bf16:avx512_core_bf16`` backward-weights
kernel. When an input extent is smaller than the kernel along a zero-padded axis -- R(2+1)D's
3x1x1 temporal convs on the 2-frame maps of ``layer3`` of an 8-frame clip, a 3x3 stride-2 conv on
a 1-wide map -- that kernel returns a weight gradient with garbage entries (NaN, or finite values
near 1e37) that change from call to call on the same inputs, and some such shapes abort the
process with heap corruption: it reads and writes outside its buffers. Under
``train.mixed_precision=bf16`` one such gradient turns every weight into NaN at the next optimiser
step (the clipped global norm is NaN). The same convolution on an input padded beforehand
(padding 0) takes a correct kernel. In the shapes checked, forward passes, input gradients and
float32 / float16 weight gradients are correct.

:class:`ExplicitPadConv2d` / :class:`ExplicitPadConv3d` pad with ``F.pad`` first (as
``nn.Conv3d`` itself does for ``padding_mode != "zeros"``) exactly when the bug can strike: on
CPU, in bf16 (a bf16 input or CPU autocast to bf16), with a padded axis shorter than the kernel.
Otherwise they run ``nn.Conv2d`` / ``nn.Conv3d``'s own code, so float32 results are bit-identical.
:func:`use_explicit_padding` switches a model's convolutions in place; the encoders call it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ExplicitPadConv2d", "ExplicitPadConv3d", "needs_explicit_padding", "use_explicit_padding"]


def _bf16_on_cpu(x: Tensor) -> bool:
    if x.device.type != "cpu":
        return False
    if x.dtype == torch.bfloat16:
        return True
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def needs_explicit_padding(conv: nn.Conv2d | nn.Conv3d, x: Tensor) -> bool:
    """Whether ``conv`` on ``x`` would hit the oneDNN bf16 weight-gradient bug (see the module doc).

    True on CPU in bf16 when some zero-padded axis of ``x`` is shorter than the (dilated) kernel.

    Shape: ``x (B, C, *S)`` or ``(C, *S)`` with ``len(S)`` the conv's dimensions.
    """
    if conv.padding_mode != "zeros" or not _bf16_on_cpu(x):
        return False
    pads = conv._reversed_padding_repeated_twice  # (left, right) per axis, last axis first
    sizes = x.shape[-len(conv.kernel_size):]
    for axis, (size, k, d) in enumerate(zip(sizes, conv.kernel_size, conv.dilation, strict=True)):
        left, right = pads[2 * (len(sizes) - 1 - axis) : 2 * (len(sizes) - axis)]
        if (left or right) and size < d * (k - 1) + 1:
            return True
    return False


class ExplicitPadConv2d(nn.Conv2d):
    """``nn.Conv2d`` that zero-pads with ``F.pad`` when :func:`needs_explicit_padding` says so.

    Shape: as ``nn.Conv2d``, ``(B, C_in, H, W) -> (B, C_out, H', W')``.
    """

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if not needs_explicit_padding(self, input):
            out: Tensor = super()._conv_forward(input, weight, bias)
            return out
        padded = F.pad(input, self._reversed_padding_repeated_twice)
        return F.conv2d(padded, weight, bias, self.stride, 0, self.dilation, self.groups)


class ExplicitPadConv3d(nn.Conv3d):
    """``nn.Conv3d`` that zero-pads with ``F.pad`` when :func:`needs_explicit_padding` says so.

    Shape: as ``nn.Conv3d``, ``(B, C_in, T, H, W) -> (B, C_out, T', H', W')``.
    """

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if not needs_explicit_padding(self, input):
            out: Tensor = super()._conv_forward(input, weight, bias)
            return out
        padded = F.pad(input, self._reversed_padding_repeated_twice)
        return F.conv3d(padded, weight, bias, self.stride, 0, self.dilation, self.groups)


_TWINS: dict[type[nn.Module], type[nn.Module]] = {nn.Conv2d: ExplicitPadConv2d, nn.Conv3d: ExplicitPadConv3d}


def use_explicit_padding(module: nn.Module) -> nn.Module:
    """Make every plain ``nn.Conv2d`` / ``nn.Conv3d`` in ``module`` its explicit-padding twin, in place.

    The modules keep their identity, parameters, buffers and state-dict keys: only their class
    changes (a subclass that overrides ``_conv_forward``, as ``torch.nn.utils.parametrize`` does).
    Returns ``module``.
    """
    for sub in module.modules():
        twin = _TWINS.get(type(sub))
        if twin is not None:
            sub.__class__ = twin
    return module
