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
    """Draw a confusion matrix (row = true class, column = predicted) as a PNG.

    Cell colour is the row-normalised fraction (white 0 -> dark blue 1), so rare classes read
    as clearly as common ones; each cell shows its count when the cells are large enough; class
    names label the rows (left) and columns (top, vertical), every n-th one when there are too
    many to fit. Returns the path written.
    """
    from PIL import Image, ImageDraw, ImageFont

    conf = confusion.detach().cpu().long()
    c = conf.shape[0]
    if conf.shape != (c, c) or c == 0:
        raise ValueError(f"confusion must be a non-empty (C, C) matrix, got {tuple(conf.shape)}")
    if len(class_names) != c:
        raise ValueError(f"{len(class_names)} class names for a {c}x{c} confusion matrix")
    cell = max(2, min(40, (max_size - 200) // c))
    font_size = max(8, min(14, cell - 4))
    font = ImageFont.load_default(font_size)
    label_every = max(1, math.ceil((font_size + 2) / cell))
    names = [str(n)[:24] for n in class_names]
    label_w = max(int(font.getlength(n)) for n in names) + 8
    title_h = font_size + 10
    left, top = label_w, title_h + label_w
    title = "rows: true class, columns: predicted (colour: row-normalised)"
    width = max(left + c * cell + 4, int(font.getlength(title)) + 8)
    height = top + c * cell + 4
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((4, 4), title, fill="black", font=font)

    rows = conf.double()
    frac = rows / rows.sum(dim=1, keepdim=True).clamp(min=1)
    show_counts = cell >= font_size + 4 and font.getlength(str(int(conf.max()))) <= cell - 4
    for i in range(c):
        for j in range(c):
            f = float(frac[i, j])
            colour = (round(255 - 247 * f), round(255 - 207 * f), round(255 - 148 * f))  # -> (8, 48, 107)
            x0, y0 = left + j * cell, top + i * cell
            draw.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), fill=colour,
                           outline=(220, 220, 220) if cell >= 6 else None)
            n = int(conf[i, j])
            if show_counts and n:
                text = str(n)
                tw = font.getlength(text)
                draw.text((x0 + (cell - tw) / 2, y0 + (cell - font_size) / 2 - 1), text, font=font,
                          fill="white" if f > 0.5 else "black")
    for k, name in enumerate(names):
        if k % label_every:
            continue
        y = top + k * cell + (cell - font_size) / 2 - 1
        draw.text((left - 4 - font.getlength(name), y), name, fill="black", font=font)
        # column label: text drawn horizontally on a strip, then rotated to read bottom-up
        strip = Image.new("RGB", (label_w, font_size + 4), "white")
        ImageDraw.Draw(strip).text((label_w - 4 - font.getlength(name), 0), name, fill="black", font=font)
        rotated = strip.rotate(90, expand=True)
        img.paste(rotated, (left + k * cell + (cell - rotated.width) // 2, title_h))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path
