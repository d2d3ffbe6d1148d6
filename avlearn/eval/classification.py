"""Classification metrics for action recognition: clip- and video-level top-k, per class, confusion.

All functions are pure functions of tensors. Evaluation follows AVID-CMA: a video's prediction
is the average over its clips (``num_clips`` uniformly spaced, see
:class:`~avlearn.data.labelled.LabelledClipDataset`) of the clips' softmax probabilities
(:func:`video_level`). :class:`ClassificationReport` gathers clip and video accuracy, the
per-class accuracy and the confusion matrix (both at the video level), prints as Markdown and
saves as JSON; :func:`save_confusion_png` draws the confusion matrix.

Ties: a clip's rank of its true class counts the classes scoring strictly higher plus the
tied ones with a lower index, so top-1 agrees with ``argmax`` (which takes the first maximum).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ClassificationReport", "confusion_matrix", "per_class_accuracy", "save_confusion_png", "topk_accuracy",
    "true_class_rank", "video_level",
]


def _check_logits(logits: Tensor, labels: Tensor, name: str = "logits") -> None:
    if logits.dim() != 2:
        raise ValueError(f"{name} must be (N, C), got shape {tuple(logits.shape)}")
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"labels must be (N,) with N = {logits.shape[0]} ({name}' rows), "
                         f"got shape {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise ValueError(f"labels must be class ids in [0, {logits.shape[1]}), got "
                         f"[{int(labels.min())}, {int(labels.max())}]")


def _preds(preds_or_logits: Tensor) -> Tensor:
    return preds_or_logits.argmax(dim=1) if preds_or_logits.dim() == 2 else preds_or_logits


def true_class_rank(logits: Tensor, labels: Tensor) -> Tensor:
    """0-based rank of each row's true class (0: predicted first). Shape: ``(N, C), (N,) -> (N,)``."""
    _check_logits(logits, labels)
    scores = logits.detach()
    true = scores.gather(1, labels.long().unsqueeze(1))  # (N, 1)
    idx = torch.arange(scores.shape[1], device=scores.device).unsqueeze(0)  # (1, C)
    ahead = (scores > true) | ((scores == true) & (idx < labels.long().unsqueeze(1)))
    return ahead.sum(dim=1)


def topk_accuracy(logits: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Fraction of rows whose true class is among the ``k`` highest scores, for every ``k``.

    Shape: ``logits (N, C)`` (logits or probabilities), ``labels (N,)`` class ids.
    Returns ``{"top1": ..., "top5": ...}`` in ``[0, 1]``; ``k >= C`` gives 1.0.
    """
    if any(k < 1 for k in ks):
        raise ValueError(f"topk_accuracy: every k must be >= 1, got {list(ks)}")
    if logits.shape[0] == 0:
        raise ValueError("topk_accuracy: no rows to score")
    rank = true_class_rank(logits, labels)
    return {f"top{k}": float((rank < k).double().mean()) for k in ks}


def confusion_matrix(preds: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Counts of (true class, predicted class) pairs; ``preds`` may be ids ``(N,)`` or scores ``(N, C)``.

    Shape: ``-> (C, C)`` int64; row = true class, column = predicted class.
    """
    preds = _preds(preds).long()
    labels = labels.long()
    if preds.shape != labels.shape or preds.dim() != 1:
        raise ValueError(f"preds {tuple(preds.shape)} and labels {tuple(labels.shape)} must both be (N,)")
    for name, t in (("preds", preds), ("labels", labels)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
            raise ValueError(f"{name} must be class ids in [0, {num_classes}), "
                             f"got [{int(t.min())}, {int(t.max())}]")
    flat = torch.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).cpu()


def per_class_accuracy(preds: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Accuracy of every class (recall of its rows); ``NaN`` for a class without rows.

    Shape: ``preds (N,)`` ids or ``(N, C)`` scores, ``labels (N,)`` -> ``(C,)`` float64.
    """
    conf = confusion_matrix(preds, labels, num_classes).double()
    totals = conf.sum(dim=1)
    return torch.where(totals > 0, conf.diagonal() / totals.clamp(min=1), torch.full_like(totals, math.nan))


def video_level(logits: Tensor, video_index: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Average the clips' softmax probabilities over each video (AVID-CMA's video-level prediction).

    Shape: ``logits (N, C)`` clip logits, ``video_index (N,)``, ``labels (N,)`` ->
    ``video_probs (V, C)`` (rows sum to 1; rank them like logits), ``video_labels (V,)``,
    one row per distinct ``video_index`` in increasing order. All clips of a video must share
    its label (else ``ValueError``).
    """
    _check_logits(logits, labels)
    if video_index.shape != labels.shape:
        raise ValueError(f"video_index must be (N,) like labels, got {tuple(video_index.shape)}")
    videos, inverse = torch.unique(video_index.long(), return_inverse=True)
    num_videos = videos.numel()
    probs = logits.detach().double().softmax(dim=1)
    sums = torch.zeros(num_videos, logits.shape[1], dtype=torch.float64, device=logits.device)
    sums.index_add_(0, inverse, probs)
    counts = torch.bincount(inverse, minlength=num_videos).double()
    video_labels = torch.full((num_videos,), -1, dtype=torch.long, device=labels.device)
    video_labels.scatter_(0, inverse, labels.long())
    clash = video_labels[inverse] != labels.long()
    if bool(clash.any()):
        bad = int(video_index[clash.nonzero()[0, 0]])
        raise ValueError(f"video_level: the clips of video {bad} have different labels "
                         f"{sorted(set(labels[video_index == bad].tolist()))}")
    return (sums / counts.unsqueeze(1)).float(), video_labels


@dataclasses.dataclass
class ClassificationReport:
    """Accuracy of a classifier on a labelled evaluation set (accuracies in ``[0, 1]``).

    ``per_class`` (NaN for classes absent from the set) and ``confusion`` (row = true class,
    column = predicted) are computed on the video-level predictions.
    """

    clip_top1: float
    clip_top5: float
    video_top1: float
    video_top5: float
    per_class: list[float]
    confusion: Tensor
    class_names: list[str]
    num_clips: int = 0
    num_videos: int = 0

    @classmethod
    def from_outputs(cls, logits: Tensor, labels: Tensor, video_index: Tensor,
                     class_names: Sequence[str]) -> ClassificationReport:
        """Report from clip logits ``(N, C)``, clip labels ``(N,)`` and clip video indices ``(N,)``."""
        _check_logits(logits, labels)
        if logits.shape[1] != len(class_names):
            raise ValueError(f"logits have {logits.shape[1]} classes but {len(class_names)} class names")
        clip = topk_accuracy(logits, labels, (1, 5))
        vprobs, vlabels = video_level(logits, video_index, labels)
        video = topk_accuracy(vprobs, vlabels, (1, 5))
        num_classes = len(class_names)
        return cls(
            clip_top1=clip["top1"], clip_top5=clip["top5"],
            video_top1=video["top1"], video_top5=video["top5"],
            per_class=per_class_accuracy(vprobs, vlabels, num_classes).tolist(),
            confusion=confusion_matrix(vprobs, vlabels, num_classes),
            class_names=list(class_names), num_clips=int(logits.shape[0]), num_videos=int(vlabels.numel()),
        )

    @property
    def mean_class_accuracy(self) -> float:
        """Mean of the per-class accuracies over classes present in the set."""
        present = [a for a in self.per_class if not math.isnan(a)]
        return sum(present) / len(present) if present else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: floats, ``per_class`` as ``{name: acc or None}``, ``confusion`` as nested lists."""
        return {
            "clip_top1": self.clip_top1, "clip_top5": self.clip_top5,
            "video_top1": self.video_top1, "video_top5": self.video_top5,
            "mean_class_accuracy": None if math.isnan(self.mean_class_accuracy) else self.mean_class_accuracy,
            "num_clips": self.num_clips, "num_videos": self.num_videos,
            "per_class": {n: None if math.isnan(a) else a for n, a in zip(self.class_names, self.per_class,
                                                                          strict=True)},
            "confusion": self.confusion.tolist(),
            "class_names": list(self.class_names),
        }

    def markdown(self) -> str:
        """A summary table, then per-class video accuracy (percent)."""
        lines = [
            "| level | top-1 | top-5 | count |", "|---|---:|---:|---:|",
            f"| clip | {100 * self.clip_top1:.2f} | {100 * self.clip_top5:.2f} | {self.num_clips} |",
            f"| video | {100 * self.video_top1:.2f} | {100 * self.video_top5:.2f} | {self.num_videos} |",
            "", f"Mean per-class video accuracy: {_pct(self.mean_class_accuracy)}", "",
            "| class | video accuracy | videos |", "|---|---:|---:|",
        ]
        totals = self.confusion.sum(dim=1).tolist()
        lines += [f"| {name} | {_pct(acc)} | {n} |"
                  for name, acc, n in zip(self.class_names, self.per_class, totals, strict=True)]
        return "\n".join(lines) + "\n"


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.2f}"


# ------------------------------------------------------------------------------------- PNG


def save_confusion_png(confusion: Tensor, class_names: Sequence[str], path: str | Path,
                       max_size: int = 1600) -> Path:
    """Draw a confusion matrix (row = true class, column = predicted) as a PNG with matplotlib.

    Cell colour is the row-normalised fraction (colour bar from 0 to 1), so rare classes read as
    clearly as common ones; each cell shows its count when the cells are large enough; class
    names label the rows and columns, every n-th one when there are too many to fit. The matrix
    takes at most about ``max_size`` pixels a side. Returns the path written.
    """
    from avlearn.report import new_figure, save_figure

    conf = confusion.detach().cpu().long()
    c = conf.shape[0]
    if conf.shape != (c, c) or c == 0:
        raise ValueError(f"confusion must be a non-empty (C, C) matrix, got {tuple(conf.shape)}")
    if len(class_names) != c:
        raise ValueError(f"{len(class_names)} class names for a {c}x{c} confusion matrix")
    frac = (conf.double() / conf.sum(dim=1, keepdim=True).clamp(min=1)).numpy()
    cell = max(2, min(40, (max_size - 300) // c))  # pixels; the margins hold names, title, colour bar
    fig = new_figure((c * cell + 330, c * cell + 230))
    ax = fig.add_subplot()
    image = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class")
    ticks = list(range(0, c, math.ceil(12 / cell)))  # a label needs ~12 px at 8 pt
    names = [str(class_names[k])[:24] for k in ticks]
    ax.set_xticks(ticks, names, rotation=90, fontsize=8)
    ax.set_yticks(ticks, names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("confusion matrix (colour: fraction of each true class)", fontsize="medium")
    if cell >= 16 and 6 * len(str(int(conf.max()))) <= cell - 2:
        for (i, j), n in np.ndenumerate(conf.numpy()):
            if n:
                ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                        color="white" if frac[i, j] > 0.5 else "black")
    return save_figure(fig, path)
