"""Per-block features of the two encoders of audio-visual models, read with forward hooks.

:func:`encoder_blocks` names the blocks of an encoder from its contract (:mod:`avlearn.models.contract`:
each stage, or the blocks a stage lists); :func:`block_features` runs models over
clips through the one inference loop (:func:`~avlearn.eval.inference.run_inference`) and returns
every block's output per clip, pooled over positions or flattened.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import einops
import torch
from torch import Tensor, nn

from avlearn.eval.inference import run_inference
from avlearn.models.av import AVModel
from avlearn.models.contract import encoder_stages

__all__ = ["Pool", "block_features", "encoder_blocks", "model_blocks"]

Pool = Literal["mean", "flatten"]


def encoder_blocks(encoder: nn.Module) -> dict[str, nn.Module]:
    """``{name: module}`` of an encoder's blocks, input to output.

    The encoder states its stages (:class:`~avlearn.models.contract.Stage`;
    :class:`~avlearn.models.video.R2Plus1D`: ``stem, layer1..4``, :class:`~avlearn.models.audio.SpecCNN`:
    ``stem, block1..4``). A stage that lists blocks gives each of them (``layer1.0``, ``layer1.1``,
    ...); any other stage is one block. Names are module paths inside the encoder.
    """
    try:
        stages = encoder_stages(encoder).values()
    except TypeError as err:
        raise ValueError(f"cannot name the blocks of {type(encoder).__name__}: {err}") from None
    names = [name for stage in stages for name in (stage.blocks or (stage.name,))]
    return {name: encoder.get_submodule(name) for name in names}


def model_blocks(model: AVModel) -> dict[str, nn.Module]:
    """Blocks of both encoders: ``video.<block>`` then ``audio.<block>`` (:func:`encoder_blocks`)."""
    return {f"{modality}.{name}": block
            for modality, encoder in (("video", model.video_encoder), ("audio", model.audio_encoder))
            for name, block in encoder_blocks(encoder).items()}


def _pooled(output: Tensor, pool: Pool) -> Tensor:
    """``(B, C, *positions) -> (B, C)`` (mean over positions) or ``(B, C * prod(positions))``."""
    if pool == "mean":
        return einops.reduce(output.float(), "b c ... -> b c", "mean")
    return einops.rearrange(output.float(), "b ... -> b (...)").clone()  # later in-place ops


@contextmanager
def _recording(blocks: Mapping[str, nn.Module], pool: Pool) -> Iterator[dict[str, Tensor]]:
    """Hooks that store each block's pooled output of the latest forward in the yielded dict."""
    store: dict[str, Tensor] = {}

    def hook(name: str) -> Any:
        def record(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
            store[name] = _pooled(output, pool)
        return record

    handles = [block.register_forward_hook(hook(name)) for name, block in blocks.items()]
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


def block_features(
    models: Mapping[str, AVModel],
    batches: Iterable[Mapping[str, Any]],
    device: torch.device | str = "cpu",
    pool: Pool = "mean",
    progress: bool = False,
) -> dict[str, dict[str, Tensor]]:
    """Features of every block of every model on the same clips.

    ``batches``: dicts with ``video (B, C, T, H, W)`` and ``audio (B, 1, F, T)`` (as the model
    was trained on). Each model runs its two encoders on each batch, in eval mode and without
    gradients. ``pool="mean"`` averages a block's output over its positions (time, space or
    frequency), ``"flatten"`` keeps them (large: the stem of R(2+1)D-18 at 112 px is 1.6 M values
    per clip).

    Returns ``{model name: {block name: (N, D_block)}}`` float32 on the CPU, blocks named as by
    :func:`model_blocks`.
    """
    if pool not in ("mean", "flatten"):
        raise ValueError(f"pool must be 'mean' or 'flatten', got {pool!r}")
    blocks = {name: model_blocks(model) for name, model in models.items()}

    def step(batch: Mapping[str, Any]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        video, audio = batch["video"].to(device), batch["audio"].to(device)
        for name, model in models.items():
            with _recording(blocks[name], pool) as store:
                model.video_encoder(video)
                model.audio_encoder(audio)
            out.update({f"{name}/{block}": value for block, value in store.items()})
        return out

    modes = {name: model.training for name, model in models.items()}
    holder = nn.ModuleDict(dict(models))  # eval mode for all models while reading
    flat = run_inference(holder, batches, step, progress, desc="block features")
    for name, model in models.items():  # the holder restores its own (train) mode: each model's instead
        model.train(modes[name])
    return {name: {block: flat[f"{name}/{block}"] for block in blocks[name]} for name in models}
