"""Multi-label classification metrics: average precision per class and their mean (mAP).

AudioSet results (AST, CAV-MAE: ``src/utilities/stats.py``) score every class with scikit-learn's
``average_precision_score`` on the evaluation clips and report the mean over classes. That AP is
the step-wise area under the precision-recall curve, without interpolation::

    AP = sum_n (R_n - R_{n-1}) P_n

over the distinct score thresholds in decreasing order (tied scores form one threshold), with
``P_n`` and ``R_n`` the precision and recall of the items scoring at least threshold ``n``.
:func:`average_precision` computes exactly that in torch (scikit-learn is not a dependency).

A class without a positive in the evaluation set has no recall: its AP is ``NaN`` here and
:func:`mean_average_precision` averages over the classes with at least one positive. The reference
averages over all classes, where scikit-learn gives such a class 0 (recent versions, with a
warning) or ``NaN`` (older ones, which makes the mean ``NaN``); on AudioSet's evaluation set every
class has positives, so the two agree there. Chance level (:func:`chance_map`): the expected AP of
a random ranking, computed from each class's count of positives; about its prevalence on large sets,
well above it on small ones.

Video-level scores average the clips' sigmoid probabilities per video (:func:`video_scores`), as
the single-label report averages softmax probabilities.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["MultiLabelReport", "average_precision", "chance_map", "mean_average_precision", "video_scores"]


def _check(scores: Tensor, targets: Tensor) -> None:
    if scores.shape != targets.shape or scores.dim() != 2:
        raise ValueError(f"scores and targets must both be (N, C), got {tuple(scores.shape)} and "
                         f"{tuple(targets.shape)}")
    if scores.shape[0] == 0:
        raise ValueError("no rows to score")
    if bool(((targets != 0) & (targets != 1)).any()):
        raise ValueError("targets must be 0 or 1 (multi-hot)")


def average_precision(scores: Tensor, targets: Tensor) -> Tensor:
    """Average precision of every class (column); ``NaN`` for a class without a positive.

    Shape: ``scores (N, C)`` (logits or probabilities: only their order counts), ``targets (N, C)``
    multi-hot -> ``(C,)`` float64.
    """
    _check(scores, targets)
    s, t = scores.detach().double().cpu(), targets.detach().double().cpu()
    order = torch.argsort(s, dim=0, descending=True, stable=True)
    s, t = s.gather(0, order), t.gather(0, order)
    tp, fp = t.cumsum(0), (1 - t).cumsum(0)
    # the last row of each run of tied scores closes a threshold; rows inside a run count at its end
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]
    positives = tp[-1]
    precision = tp / (tp + fp)
    recall = tp / positives.clamp(min=1)
    prev = torch.zeros_like(recall)
    out = torch.empty(s.shape[1], dtype=torch.float64)
    for c in range(s.shape[1]):  # per class: its thresholds are where its own sorted scores change
        keep = last[:, c]
        r, p = recall[keep, c], precision[keep, c]
        prev_c = torch.cat([prev[:1, c], r[:-1]])
        out[c] = ((r - prev_c) * p).sum() if positives[c] > 0 else math.nan
    return out


def mean_average_precision(scores: Tensor, targets: Tensor) -> float:
    """Mean of :func:`average_precision` over the classes with at least one positive (``NaN`` if none).

    Shape: ``scores (N, C)``, ``targets (N, C)`` multi-hot.
    """
    ap = average_precision(scores, targets)
    present = ap[~ap.isnan()]
    return float(present.mean()) if present.numel() else math.nan


def chance_map(targets: Tensor) -> float:
    """The expected mAP of a random ranking, from the label counts alone (classes with a positive).

    A class with ``P`` positives among ``N`` items: its ``k``-th positive lands at a uniform rank
    ``r``, where the precision is ``(1 + (P - 1)(r - 1) / (N - 1)) / r`` in expectation, so
    ``E[AP] = H_N / N + (P - 1)(N - H_N) / (N (N - 1))`` (``H_N`` the harmonic number). It tends to
    the prevalence ``P / N`` for large ``N``; with few items it is well above it (29 items, 7
    positive: 0.32, not 0.24), which is why the prevalence alone is no chance level for small sets.

    Shape: ``targets (N, C)`` multi-hot.
    """
    n = targets.shape[0]
    positives = targets.double().sum(0)
    positives = positives[positives > 0]
    if not positives.numel():
        return math.nan
    harmonic = sum(1 / r for r in range(1, n + 1))
    spread = (positives - 1) * (n - harmonic) / (n * (n - 1)) if n > 1 else torch.zeros_like(positives)
    return float((harmonic / n + spread).mean())


def video_scores(logits: Tensor, targets: Tensor, video_index: Tensor) -> tuple[Tensor, Tensor]:
    """Average the clips' sigmoid probabilities over each video.

    Shape: ``logits (N, C)``, ``targets (N, C)`` multi-hot, ``video_index (N,)`` -> ``probs (V, C)``,
    ``targets (V, C)``, one row per distinct ``video_index`` in increasing order. The clips of a video
    must share its targets (else ``ValueError``).
    """
    _check(logits, targets)
    if video_index.shape != logits.shape[:1]:
        raise ValueError(f"video_index must be (N,), got {tuple(video_index.shape)}")
    videos, inverse = torch.unique(video_index.long().cpu(), return_inverse=True)
    sums = torch.zeros(videos.numel(), logits.shape[1], dtype=torch.float64)
    sums.index_add_(0, inverse, logits.detach().double().cpu().sigmoid())
    counts = torch.bincount(inverse, minlength=videos.numel()).double()
    video_targets = torch.zeros_like(sums)
    video_targets[inverse] = targets.detach().double().cpu()
    if bool((video_targets[inverse] != targets.detach().double().cpu()).any()):
        raise ValueError("video_scores: the clips of a video have different targets")
    return sums / counts.unsqueeze(1), video_targets


@dataclasses.dataclass
class MultiLabelReport:
    """Mean average precision of a multi-label classifier on an evaluation set (values in ``[0, 1]``).

    ``per_class`` (video level; ``NaN`` for a class without a positive video) and ``chance`` (the
    video-level mAP random scores reach in expectation, :func:`chance_map`) come with the clip- and
    video-level mAP.
    """

    class_names: list[str]
    num_clips: int
    num_videos: int
    clip_map: float
    video_map: float
    chance: float
    per_class: list[float]  # indexed like class_names, as is positives
    positives: list[int]

    @classmethod
    def from_outputs(cls, logits: Tensor, targets: Tensor, video_index: Tensor,
                     class_names: Sequence[str]) -> MultiLabelReport:
        """Report from clip logits ``(N, C)``, clip targets ``(N, C)`` and clip video indices ``(N,)``."""
        if logits.shape[1] != len(class_names):
            raise ValueError(f"logits have {logits.shape[1]} classes but {len(class_names)} class names")
        vprobs, vtargets = video_scores(logits, targets, video_index)
        return cls(clip_map=mean_average_precision(logits, targets),
                   video_map=mean_average_precision(vprobs, vtargets), chance=chance_map(vtargets),
                   per_class=average_precision(vprobs, vtargets).tolist(),
                   positives=[int(n) for n in vtargets.sum(0).tolist()], class_names=list(class_names),
                   num_clips=int(logits.shape[0]), num_videos=int(vtargets.shape[0]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: floats, ``per_class_ap`` as ``{name: AP or None}``."""
        return {
            "clip_map": self.clip_map, "video_map": self.video_map, "chance_map": self.chance,
            "num_clips": self.num_clips, "num_videos": self.num_videos,
            "per_class_ap": {n: None if math.isnan(a) else a
                             for n, a in zip(self.class_names, self.per_class, strict=True)},
            "positives": dict(zip(self.class_names, self.positives, strict=True)),
            "class_names": list(self.class_names),
        }

    def markdown(self) -> str:
        """A summary table, then per-class video AP (percent)."""
        lines = ["| level | mAP | count |", "|---|---:|---:|",
                 f"| clip | {_pct(self.clip_map)} | {self.num_clips} |",
                 f"| video | {_pct(self.video_map)} | {self.num_videos} |", "",
                 f"Chance (random ranking, expected): {_pct(self.chance)}", "",
                 "| class | video AP | positive videos |", "|---|---:|---:|"]
        lines += [f"| {name} | {_pct(ap)} | {n} |"
                  for name, ap, n in zip(self.class_names, self.per_class, self.positives, strict=True)]
        return "\n".join(lines) + "\n"


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.2f}"
