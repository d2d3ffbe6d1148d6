"""What an encoder promises: the written contract of a video or audio backbone.

Every registered encoder states its **stages** (:class:`Stage`): the feature maps a caller may
read, in order from input to output, each with its name, its width (channels) and its stride
relative to the input, from which its grid shape follows. Code that needs a stage's width or grid
(a localizer on a finer grid, a linear probe's default stage, per-block analysis) reads the
contract, never the layers: a width is never guessed from a normalisation layer.

An encoder satisfies :class:`VideoEncoder` (``(B, C, T, H, W)`` clips) or :class:`AudioEncoder`
(``(B, 1, F, T)`` spectrograms):

* ``stages``: a tuple of :class:`Stage`, input to output; ``forward(x, return_stages=True)``
  returns every one of them in ``output.stages`` under its name, each a channels-first grid
  ``(B, stage.channels, *stage.grid_size(*input size))``; the last stage's map is ``output.grid``.
* ``grid_dim``: channels of ``output.grid`` (``stages[-1].channels``).
* ``out_dim``: width ``D`` of the pooled embedding ``output.emb (B, D)``.
* ``in_channels``: channels of the input (3 for RGB, 1 for a mono spectrogram).

A new backbone is one file: the module (an ``nn.Module`` with the attributes above) and its
builders, each registered there with :func:`~avlearn.models.registry.register_video_encoder` or
:func:`~avlearn.models.registry.register_audio_encoder` (timm's ``@register_model`` habit). A
builder takes ``in_channels`` and ``pool`` (``"max"`` / ``"avg"``) and may take options of its
own: ``zero_init_residual`` is passed only to builders whose signature names it (a config that
sets it for another encoder is refused at load). Add one import line for the file to
``avlearn/models/__init__.py``: importing the package is what runs the registrations.

A vision transformer (LayerNorm, tokens) states its stages the same way
(:mod:`avlearn.models.vit`): its blocks form four stages of ``depth / 4`` blocks (stage ``k`` ends
at block ``ceil((k + 1) depth / 4) - 1``: 11 blocks give 3, 3, 3, 2), each read
through a parameter-free module (``grids.3``, ``grids.7``, ...) that lays that block's tokens out as
a channels-first grid, ``rearrange(x, "b (t h w) d -> b d t h w")``, of width the token dimension
``D`` and of stride the tubelet / patch size (``(2, 16, 16)`` for a 2x16x16 patch embedding).
Inputs the patch does not divide are zero-padded up to it, so :meth:`Stage.grid_size`'s
``ceil(size / stride)`` holds for transformers too, and tools that hook a stage's module
(:mod:`avlearn.analysis.blocks`) see grids, never tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from torch import Tensor

__all__ = [
    "AudioEncoder",
    "AudioOutput",
    "Stage",
    "VideoEncoder",
    "VideoOutput",
    "encoder_stages",
]


@dataclass(frozen=True)
class Stage:
    """One feature map an encoder exposes.

    Attributes:
        name: its key in ``output.stages``, and the path of the module that computes it
            (``encoder.get_submodule(name)``).
        channels: its width ``C``.
        stride: input positions per grid cell along each axis: ``(t, h, w)`` for video,
            ``(f, t)`` for audio.
        blocks: module paths of the blocks inside the stage that per-block analysis reads one by
            one (``layer1.0``, ``layer1.1``); empty: the stage is one block.
    """

    name: str
    channels: int
    stride: tuple[int, ...]
    blocks: tuple[str, ...] = ()

    def grid_size(self, *size: int) -> tuple[int, ...]:
        """Grid shape for an input of ``size`` (``t, h, w`` or ``f, t``): ``ceil(size / stride)``."""
        return tuple(math.ceil(n / s) for n, s in zip(size, self.stride, strict=True))


@dataclass
class VideoOutput:
    """What a video encoder returns.

    Attributes:
        emb: pooled embedding, shape ``(B, D)`` with ``D = encoder.out_dim``.
        grid: last feature map before pooling, shape ``(B, C, T', H', W')`` with ``C = encoder.grid_dim``.
        stages: only with ``return_stages=True``: every stage's output by name (R(2+1)D: ``"stem"``,
            ``"layer1"`` ... ``"layer4"``), each ``(B, C_i, T_i, H_i, W_i)``.
    """

    emb: Tensor
    grid: Tensor
    stages: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class AudioOutput:
    """What an audio encoder returns.

    Attributes:
        emb: pooled embedding, shape ``(B, D)`` with ``D = encoder.out_dim``.
        grid: last feature map before pooling, shape ``(B, C, F', T')`` with ``C = encoder.grid_dim``.
        stages: only with ``return_stages=True``: every stage's output by name (the spectrogram
            CNN: ``"stem"``, ``"block1"`` ... ``"block4"``), each ``(B, C_i, F_i, T_i)``.
    """

    emb: Tensor
    grid: Tensor
    stages: dict[str, Tensor] = field(default_factory=dict)


class _Stated(Protocol):
    """What both encoders state (module doc)."""

    in_channels: int
    out_dim: int
    grid_dim: int
    stages: tuple[Stage, ...]


@runtime_checkable
class VideoEncoder(_Stated, Protocol):
    """Maps ``(B, C, T, H, W)`` clips to a :class:`VideoOutput` and states its stages (module doc)."""

    def __call__(self, video: Tensor, return_stages: bool = False) -> VideoOutput: ...


@runtime_checkable
class AudioEncoder(_Stated, Protocol):
    """Maps ``(B, 1, F, T)`` spectrograms to an :class:`AudioOutput` and states its stages (module doc)."""

    def __call__(self, spec: Tensor, return_stages: bool = False) -> AudioOutput: ...


def encoder_stages(encoder: object) -> dict[str, Stage]:
    """``{name: Stage}`` of an encoder, input to output; an encoder without ``stages`` is an error."""
    stages: tuple[Stage, ...] | None = getattr(encoder, "stages", None)
    if not stages:
        raise TypeError(f"{type(encoder).__name__} states no stages: an encoder lists its Stage()s in "
                        "`stages` (the contract in avlearn.models.contract)")
    return {stage.name: stage for stage in stages}
