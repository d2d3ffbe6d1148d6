"""Localization with negatives: a confidence per map, AP and max-F1 as in SLAVC's extended protocol.

Mo & Morgado (NeurIPS 2022, "A Closer Look at Weakly-Supervised Audio-Visual Source
Localization", stoneMo/SLAVC) add to the positives of VGG-SS and Flickr-SoundNet test items
whose sound is not visible in the frame (a frame with another clip's sound: a non-sounding
scene, an off-screen source). Every map then comes with a confidence that the sound is visible,
and an item counts, at a confidence threshold ``t``:

* positive (has boxes), confidence ``>= t``: a true positive when its cIoU ``>= 0.5``, else a
  false positive (found, in the wrong place);
* positive, confidence ``< t``: a false negative;
* negative, confidence ``>= t``: a false positive; below ``t`` it counts nowhere.

Precision is 1 without detections and recall 1 without positives. **AP** (:func:`average_precision`):
thresholds are the sorted confidences but the largest, from high to low, every
``max(1, N // 200)``-th; precision is made monotone (the maximum at that threshold or any lower
one) and summed over the recall steps, ``sum_i pmax_i (r_{i+1} - r_i)`` (no point at recall 0).
**max-F1** (:func:`max_f1`): the largest F1 over the thresholds ``sorted(confidences)[::max(1, N // 10)]``.
Both as SLAVC's evaluation code computes them. The **confidence** (:func:`map_confidence`) is theirs
too: the mean of the highest quarter of the map's values at the ground-truth resolution (SLAVC
first maps scores linearly to a fixed range, which changes no ranking). It needs maps on an
absolute scale (cosine similarities, as :func:`~avlearn.localization.learned.localization_maps`
gives), not maps normalised per item. The cIoU of a positive is the one of
:mod:`avlearn.localization.metrics` (LVS's upper-median threshold).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from avlearn.localization.metrics import resize_heatmap

__all__ = ["Scored", "average_precision", "detection_scores", "map_confidence", "max_f1",
           "precision_recall"]


@dataclasses.dataclass(frozen=True)
class Scored:
    """One test item: whether its sound is visible (has boxes), its cIoU, its map's confidence.

    ``ciou`` is ignored for negatives (``positive=False``).
    """

    positive: bool
    ciou: float
    confidence: float


def map_confidence(heatmap: Any, height: int = 224, width: int = 224) -> float:
    """SLAVC's confidence: mean of the top quarter of the map resized to ``(height, width)``.

    Shape: ``heatmap (h, w)`` (resized bilinearly, as the metrics resize maps).
    """
    values = np.sort(resize_heatmap(heatmap, height, width).ravel())
    return float(values[-(values.size // 4):].mean()) if values.size >= 4 else float(values.mean())


def precision_recall(items: Sequence[Scored], threshold: float, ciou_thr: float = 0.5) -> tuple[float, float]:
    """``(precision, recall)`` of detections with confidence ``>= threshold`` (see the module doc)."""
    tp = fp = fn = 0
    for it in items:
        detected = it.confidence >= threshold
        if not it.positive:
            fp += detected
        elif detected:
            tp, fp = (tp + 1, fp) if it.ciou >= ciou_thr else (tp, fp + 1)
        else:
            fn += 1
    precision = 1.0 if tp + fp == 0 else tp / (tp + fp)
    recall = 1.0 if tp + fn == 0 else tp / (tp + fn)
    return precision, recall


def average_precision(items: Sequence[Scored], ciou_thr: float = 0.5) -> float:
    """SLAVC's AP over positives and negatives (see the module doc); 0 for fewer than two items."""
    conf = np.sort(np.array([it.confidence for it in items], dtype=np.float64))
    thresholds = conf[:-1][::-1][:: max(1, len(items) // 200)]
    curve = [precision_recall(items, float(t), ciou_thr) for t in thresholds]
    precision = np.array([p for p, _ in curve])
    recall = np.array([r for _, r in curve])
    monotone = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at this or any lower threshold
    return float(np.sum(monotone[:-1] * np.diff(recall))) if len(curve) > 1 else 0.0


def max_f1(items: Sequence[Scored], ciou_thr: float = 0.5) -> float:
    """SLAVC's max-F1: the best F1 over every ``max(1, N // 10)``-th sorted confidence as threshold."""
    if not items:
        raise ValueError("max-F1 of no items")
    conf = sorted(it.confidence for it in items)
    best = 0.0
    for t in conf[:: max(1, len(conf) // 10)]:
        p, r = precision_recall(items, t, ciou_thr)
        best = max(best, 2 * p * r / (p + r) if p + r > 0 else 0.0)
    return best


def detection_scores(positives: Sequence[Scored], negatives: Sequence[Scored]) -> dict[str, float | int]:
    """AP and max-F1 over ``positives`` and ``negatives`` together, and the share of negatives
    whose confidence reaches the median confidence of the positives."""
    if not positives:
        raise ValueError("AP and max-F1 need at least one positive item")
    items = [*positives, *negatives]
    median = float(np.median([p.confidence for p in positives]))
    above = float(np.mean([n.confidence >= median for n in negatives])) if negatives else float("nan")
    return {"ap": average_precision(items), "max_f1": max_f1(items), "n_negatives": len(negatives),
            "negatives_above_median_positive": above}
