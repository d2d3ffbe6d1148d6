"""Naive references (explicit Python loops over floats) for the objectives' tests."""

from __future__ import annotations

import math

from torch import Tensor


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def discrimination(
    anchors: list[list[float]],
    positives: list[list[list[float]]],
    negatives: list[list[list[float]]],
    temperature: float,
    loss: str,
    num_items: int,
    partition: float | None,
) -> tuple[float, float]:
    """Mean loss over anchors and the partition used (NCE) for one direction."""
    pos = [[dot(a, p) / temperature for p in ps] for a, ps in zip(anchors, positives, strict=True)]
    neg = [[dot(a, n) / temperature for n in ns] for a, ns in zip(anchors, negatives, strict=True)]
    k = len(neg[0])
    if partition is None:
        exps = [math.exp(s) for row in neg for s in row]
        partition = num_items * sum(exps) / len(exps)
    total = 0.0
    for prow, nrow in zip(pos, neg, strict=True):
        if loss == "nce":
            noise = k * partition / num_items
            term = -sum(math.log(math.exp(p) / (math.exp(p) + noise)) for p in prow) / len(prow)
            term -= sum(math.log(noise / (math.exp(n) + noise)) for n in nrow)
        else:
            neg_sum = sum(math.exp(n) for n in nrow)
            term = -sum(math.log(math.exp(p) / (math.exp(p) + neg_sum)) for p in prow) / len(prow)
        total += term
    return total / len(pos), partition


def rows(t: Tensor) -> list[list[float]]:
    return [[float(x) for x in row] for row in t]


def infonce(video: Tensor, audio: Tensor, temperature: float) -> float:
    v, a = rows(video), rows(audio)
    n = len(v)
    total = 0.0
    for anchors, others in ((v, a), (a, v)):
        for i in range(n):
            logits = [dot(anchors[i], others[j]) / temperature for j in range(n)]
            total += -logits[i] + math.log(sum(math.exp(x) for x in logits))
    return total / (2 * n)


def positive_sets(video: Tensor, audio: Tensor, k: int, mode: str) -> list[set[int]]:
    v, a = rows(video), rows(audio)
    n = len(v)
    out = []
    for i in range(n):
        scores = []
        for j in range(n):
            if j == i:
                continue
            sv, sa = dot(v[i], v[j]), dot(a[i], a[j])
            s = {"consensus": min(sv, sa), "union": max(sv, sa), "video": sv, "audio": sa}[mode]
            scores.append((s, j))
        scores.sort(reverse=True)
        out.append({j for _, j in scores[:k]})
    return out
