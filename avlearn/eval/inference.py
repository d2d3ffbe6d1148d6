"""Run a model over a loader: the one inference loop of embedding, feature extraction and prediction."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

__all__ = ["run_inference"]

Batch = Mapping[str, Any]


def run_inference(
    model: nn.Module,
    batches: Iterable[Batch],
    step: Callable[[Batch], Mapping[str, Tensor]],
    progress: bool = False,
    desc: str = "inference",
) -> dict[str, Tensor]:
    """``step`` on every batch, in eval mode and without gradients; its named outputs concatenated.

    ``step`` runs ``model`` on a batch (moving inputs to its device) and returns named tensors
    whose first axis is the batch, e.g. ``{"video_emb": (B, D), "label": (B,)}``. Each output is
    detached and moved to the CPU batch by batch, so memory on the device does not grow. The
    model's train/eval mode is restored afterwards, also when ``step`` raises.

    Returns:
        ``{name: (N, ...)}`` over all ``N`` items of ``batches``.

    Raises:
        ValueError: ``batches`` is empty.
    """
    was_training = model.training
    model.eval()
    parts: dict[str, list[Tensor]] = {}
    try:
        with torch.no_grad():
            for batch in tqdm(batches, desc=desc, unit="batch", disable=not progress, dynamic_ncols=True):
                for name, value in step(batch).items():
                    parts.setdefault(name, []).append(value.detach().cpu())
    finally:
        model.train(was_training)
    if not parts:
        raise ValueError(f"{desc}: the loader gave no batches (is the split or manifest empty?)")
    return {name: torch.cat(values) for name, values in parts.items()}
