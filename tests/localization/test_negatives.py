"""AP and max-F1 with negatives, against a hand-written reference of SLAVC's definitions."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from avlearn.localization.negatives import (
    Scored,
    average_precision,
    detection_scores,
    map_confidence,
    max_f1,
    precision_recall,
)


def reference_counts(items: list[Scored], thr: float) -> tuple[float, float]:
    """SLAVC's rule, item by item: negatives only ever add false positives."""
    tp = sum(1 for it in items if it.positive and it.confidence >= thr and it.ciou >= 0.5)
    fp = sum(1 for it in items if it.confidence >= thr and (not it.positive or it.ciou < 0.5))
    fn = sum(1 for it in items if it.positive and it.confidence < thr)
    return (1.0 if tp + fp == 0 else tp / (tp + fp)), (1.0 if tp + fn == 0 else tp / (tp + fn))


def reference_ap(items: list[Scored]) -> float:
    confs = sorted(it.confidence for it in items)
    step = max(1, len(items) // 200)
    thresholds = list(reversed(confs[:-1]))[::step]
    pr = [reference_counts(items, t) for t in thresholds]
    total = 0.0
    for i in range(len(pr) - 1):
        best = max(p for p, _ in pr[i:])
        total += best * (pr[i + 1][1] - pr[i][1])
    return total


def reference_f1(items: list[Scored]) -> float:
    confs = sorted(it.confidence for it in items)
    f1s = []
    for t in confs[:: max(1, len(items) // 10)]:
        p, r = reference_counts(items, t)
        f1s.append(2 * p * r / (p + r) if p + r > 0 else 0.0)
    return max(f1s)


def test_a_four_item_example_worked_by_hand() -> None:
    items = [Scored(True, 0.8, 0.9), Scored(False, 0.0, 0.8), Scored(True, 0.3, 0.7), Scored(True, 0.6, 0.2)]
    # thresholds 0.8, 0.7, 0.2: (P, R) = (1/2, 1/3), (1/3, 1/2), (1/2, 1); monotone P = 1/2 throughout
    assert precision_recall(items, 0.7) == pytest.approx((1 / 3, 1 / 2))
    assert average_precision(items) == pytest.approx(0.5 * (1 / 2 - 1 / 3) + 0.5 * (1 - 1 / 2))
    # F1 at 0.2, 0.7, 0.8, 0.9: 2/3, 0.4, 0.4, 0.5
    assert max_f1(items) == pytest.approx(2 / 3)


@pytest.mark.parametrize("n", [3, 17, 250, 450])
def test_ap_and_max_f1_equal_the_reference_on_random_items(n: int) -> None:
    rng = random.Random(n)
    items = [Scored(rng.random() < 0.6, rng.random(), round(rng.random(), 2)) for _ in range(n)]
    assert average_precision(items) == pytest.approx(reference_ap(items), abs=1e-12)
    assert max_f1(items) == pytest.approx(reference_f1(items), abs=1e-12)


def test_confident_negatives_lower_ap_and_a_perfect_ranking_scores_one() -> None:
    positives = [Scored(True, 0.9, 0.5 + 0.01 * k) for k in range(20)]
    quiet = [Scored(False, 0.0, 0.1 + 0.01 * k) for k in range(20)]
    loud = [Scored(False, 0.0, 0.9 + 0.001 * k) for k in range(20)]
    good, bad = detection_scores(positives, quiet), detection_scores(positives, loud)
    assert good["max_f1"] == pytest.approx(1.0) and good["negatives_above_median_positive"] == 0.0
    assert bad["ap"] < good["ap"] and bad["max_f1"] < good["max_f1"]
    assert bad["negatives_above_median_positive"] == 1.0


def test_constant_confidence_gives_precision_of_everything() -> None:
    items = [Scored(True, 0.9, 1.0)] * 3 + [Scored(True, 0.1, 1.0)] + [Scored(False, 0.0, 1.0)] * 4
    # every item detected: P = 3/8, R = 1: F1 = 2 * 3/8 / (11/8)
    assert max_f1(items) == pytest.approx(6 / 11)
    assert average_precision(items) == 0.0  # one threshold: no recall step


def test_map_confidence_is_the_mean_of_the_top_quarter() -> None:
    heat = np.arange(16, dtype=np.float64).reshape(4, 4)
    assert map_confidence(heat, 4, 4) == pytest.approx(np.mean([12, 13, 14, 15]))
    assert math.isclose(map_confidence(np.full((2, 2), 0.3)), 0.3)
    with pytest.raises(ValueError, match="positive"):
        detection_scores([], [Scored(False, 0.0, 0.5)])
