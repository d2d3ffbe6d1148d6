"""LP-FT's start (``head_init: probe``): the classifier set to a linear probe of the frozen encoder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from avlearn.data.dataset import av_collate
from avlearn.eval.inference import run_inference
from avlearn.eval.linear_classifier import ClassifierConfig, fit_linear
from avlearn.models.classifier import AVClassifier, VideoClassifier

__all__ = ["probe_head"]


def probe_head(model: VideoClassifier | AVClassifier, dataset: Any, batch_size: int, num_workers: int = 0,
               progress: bool = False, targets: Tensor | None = None) -> dict[str, float]:
    """Set ``model.classifier`` to a linear probe of the frozen encoders' embeddings of ``dataset``.

    The probe is fitted on standardised embeddings (``emb (N, D)``) and the standardisation folded
    into the classifier (``W / std``, ``b - (W / std) mean``), so the model needs no extra layer.
    ``targets``: multi-hot ``(V, C)`` of the dataset's videos (a probe per class), else the labels.
    Returns the probe's training accuracy (multi-label: of every clip's every class) and clip count.
    """
    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=av_collate)

    def embed(b: Mapping[str, Any]) -> dict[str, Tensor]:  # outside the engine: moves its batches
        emb = model.embed(*(b[k].to(device) for k in model.inputs)).float()  # type: ignore[operator]
        return {"emb": emb, "label": targets[b["video_index"]] if targets is not None else b["label"]}

    out = run_inference(model, loader, embed, progress, desc="probe the classifier's start")
    x, y = out["emb"].cpu().double(), out["label"]
    y = y.float() if targets is not None else y.long()
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp(min=1e-6)
    fit = fit_linear(((x - mean) / std).float(), y, model.classifier.out_features, ClassifierConfig())
    weight = fit.weight.detach().double() / std
    bias = fit.bias.detach().double() - weight @ mean
    logits = x @ weight.T + bias
    right = (logits > 0).double() == y if targets is not None else logits.argmax(1) == y
    accuracy = float(right.double().mean())
    with torch.no_grad():
        model.classifier.weight.copy_(weight)
        model.classifier.bias.copy_(bias)
    return {"probe_train_top1": accuracy, "probe_clips": len(y)}
