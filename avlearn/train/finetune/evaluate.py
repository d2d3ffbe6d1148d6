"""The fine-tuned classifier on the test clips: clip logits, then clip- and video-level accuracy (or mAP)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from avlearn.data.dataset import av_collate
from avlearn.eval.classification import ClassificationReport
from avlearn.eval.inference import run_inference
from avlearn.eval.multilabel import MultiLabelReport
from avlearn.train.finetune.config import FinetuneConfig

__all__ = ["evaluate", "predict"]


def predict(model: nn.Module, loader: Any, device: torch.device,
            progress: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Clip logits ``(N, C)``, labels ``(N,)`` and video indices ``(N,)`` of every batch of ``loader``
    (outside the engine: the batches are moved to ``device`` here)."""
    inputs = getattr(model, "inputs", ("video",))  # the batch entries the classifier reads
    out = run_inference(model, loader,
                        lambda b: {"logits": model(*(b[k].to(device) for k in inputs)).float(),
                                   "label": b["label"], "video": b["video_index"]},
                        progress, desc="evaluate test clips")
    return out["logits"], out["label"], out["video"]


def evaluate(cfg: FinetuneConfig, model: nn.Module, test: Any, device: torch.device,
             targets: Tensor | None = None) -> ClassificationReport | MultiLabelReport:
    """The report of ``model`` on ``test``'s clips, in batches of ``eval.batch_size``: top-1/top-5 per
    clip and per video, per class; with ``targets`` (multi-hot ``(V, C)`` of ``test``'s videos) mAP."""
    loader = DataLoader(test, batch_size=cfg.eval.batch_size, shuffle=False,
                        num_workers=cfg.data.num_workers, collate_fn=av_collate)
    logits, labels, videos = predict(model, loader, device, cfg.train.progress)
    if targets is not None:
        return MultiLabelReport.from_outputs(logits, targets[videos], videos, test.class_names)
    return ClassificationReport.from_outputs(logits, labels, videos, test.class_names)
