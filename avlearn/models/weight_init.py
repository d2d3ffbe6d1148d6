"""Weight initialisation shared by the encoders and heads.

Kaiming-normal (fan-out, ReLU) for convolutions, weight 1 / bias 0 for batch norms, and
optionally zero for the last batch-norm gamma of every residual block, so that each block
starts as the identity (Goyal et al., 2017).
"""

from __future__ import annotations

from torch import nn

__all__ = ["init_weights", "zero_init_residual_bn"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)


def init_weights(module: nn.Module, zero_init_residual: bool = False) -> nn.Module:
    """Initialise every convolution and norm layer inside ``module`` in place; returns ``module``.

    Linear layers keep PyTorch's default initialisation.
    """
    for m in module.modules():
        if isinstance(m, _CONVS):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORMS) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        zero_init_residual_bn(module)
    return module


def zero_init_residual_bn(module: nn.Module) -> int:
    """Zero the last batch-norm gamma of each residual block; returns how many were zeroed.

    A residual block is recognised by a ``residual_bn`` property returning its final norm
    (our blocks) or by torchvision's video ``BasicBlock`` layout (``conv2 = Sequential(conv, bn)``).
    """
    from torchvision.models.video.resnet import BasicBlock

    count = 0
    for m in module.modules():
        bn: object = None
        if isinstance(m, BasicBlock):
            bn = m.conv2[1]
        elif hasattr(m, "residual_bn"):
            bn = m.residual_bn
        if isinstance(bn, _NORMS) and bn.weight is not None:
            nn.init.zeros_(bn.weight)
            count += 1
    return count
