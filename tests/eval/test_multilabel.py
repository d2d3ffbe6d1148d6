"""Average precision and mAP as the AudioSet literature computes them, against a naive reference and
hand-computed cases (scikit-learn is not installed here)."""

from __future__ import annotations

import math

import pytest
import torch

from avlearn.eval.linear_classifier import ClassifierConfig, fit_linear
from avlearn.eval.multilabel import (
    MultiLabelReport,
    average_precision,
    chance_map,
    mean_average_precision,
    video_scores,
)


def naive_ap(scores: list[float], targets: list[int]) -> float:
    """sum over the distinct thresholds, high to low, of (recall gain) x precision, each counted directly."""
    positives = sum(targets)
    prev_recall, total = 0.0, 0.0
    for threshold in sorted(set(scores), reverse=True):
        chosen = [t for s, t in zip(scores, targets, strict=True) if s >= threshold]
        recall = sum(chosen) / positives
        total += (recall - prev_recall) * sum(chosen) / len(chosen)
        prev_recall = recall
    return total


def test_hand_computed_cases() -> None:
    # ranks 1 and 3 positive: AP = 1/2 * 1 + 1/2 * 2/3
    scores = torch.tensor([[0.9], [0.8], [0.7], [0.6]])
    assert average_precision(scores, torch.tensor([[1], [0], [1], [0]])).item() == pytest.approx(5 / 6)
    # a tie between a positive and a negative is one threshold: precision 1/3 at recall 1/2, then 1/2 at 1
    tied = torch.tensor([[0.9], [0.5], [0.5], [0.1]])
    assert average_precision(tied, torch.tensor([[0], [1], [0], [1]])).item() == pytest.approx(0.5 / 3 + 0.25)
    # a perfect ranking scores 1; the reversed one 1/2 * 1/3 + 1/2 * 2/4 (precision at recall 1/2, 1)
    assert average_precision(scores, torch.tensor([[1], [1], [0], [0]])).item() == pytest.approx(1.0)
    reversed_ap = average_precision(scores, torch.tensor([[0], [0], [1], [1]])).item()
    assert reversed_ap == pytest.approx(1 / 6 + 1 / 4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_the_naive_reference_with_ties(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 6, (40, 5), generator=g).float()  # many ties
    targets = (torch.rand(40, 5, generator=g) < 0.3).long()
    targets[0] = 1  # every class has a positive
    got = average_precision(scores, targets)
    want = [naive_ap(scores[:, c].tolist(), targets[:, c].tolist()) for c in range(5)]
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))
    assert mean_average_precision(scores, targets) == pytest.approx(sum(want) / 5)


def test_classes_without_positives_are_left_out_of_the_mean() -> None:
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.4]])
    targets = torch.tensor([[1, 0], [0, 0], [1, 0]])
    ap = average_precision(scores, targets)
    assert ap[0].item() == pytest.approx(1.0) and math.isnan(ap[1].item())
    assert mean_average_precision(scores, targets) == pytest.approx(1.0)
    assert chance_map(targets) == pytest.approx((1 + 1 / 2 + 1 / 3) / 3 + (3 - 11 / 6) / 6)  # P=2, N=3
    with pytest.raises(ValueError, match="multi-hot"):
        average_precision(scores, targets * 2)
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        average_precision(scores, targets[:, :1])


def test_video_scores_and_report() -> None:
    logits = torch.tensor([[2.0, -2.0], [0.0, 0.0], [-2.0, 2.0]])
    targets = torch.tensor([[1, 0], [1, 0], [0, 1]])
    probs, vt = video_scores(logits, targets, torch.tensor([0, 0, 1]))
    torch.testing.assert_close(probs[0], (logits[:2].sigmoid().mean(0)).double())
    assert vt.tolist() == [[1, 0], [0, 1]]
    with pytest.raises(ValueError, match="different targets"):
        video_scores(logits, torch.tensor([[1, 0], [0, 1], [0, 1]]), torch.tensor([0, 0, 1]))
    report = MultiLabelReport.from_outputs(logits, targets, torch.tensor([0, 0, 1]), ["a", "b"])
    assert report.video_map == pytest.approx(1.0) and report.chance == pytest.approx(0.75)  # N=2, P=1
    assert report.to_dict()["positives"] == {"a": 1, "b": 1} and "| video | 100.00 | 2 |" in report.markdown()


def test_fit_linear_with_multi_hot_targets_learns_each_class() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g)
    y = torch.stack([x[:, 0] > 0, x[:, 1] > 0.5, x[:, 0] + x[:, 2] > 0], 1).float()  # independent labels
    clf = fit_linear(x, y, 3, ClassifierConfig(steps=100))
    with torch.no_grad():
        assert mean_average_precision(clf(x), y) > 0.97
    assert ((clf(x) > 0).float() == y).float().mean() > 0.95


def test_chance_is_the_mean_ap_of_random_rankings() -> None:
    g = torch.Generator().manual_seed(0)
    targets = torch.zeros(29, 3)
    targets[:7, 0], targets[:2, 1], targets[:20, 2] = 1, 1, 1
    draws = torch.stack([average_precision(torch.rand(29, 3, generator=g), targets) for _ in range(4000)])
    torch.testing.assert_close(draws.mean().item(), chance_map(targets), atol=0.005, rtol=0)
    assert chance_map(targets) > float(targets.mean(0).mean()) + 0.05  # well above the prevalence here
