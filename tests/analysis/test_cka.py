"""CKA estimators: properties from Kornblith et al. (2019) and naive references on tiny matrices."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor

from avlearn.analysis.cka import (
    cka_matrix,
    gram_linear,
    hsic_unbiased,
    linear_cka,
    minibatch_cka,
    minibatch_cka_matrix,
    unbiased_cka,
)


def _features(n: int, d: int, seed: int) -> Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _orthogonal(d: int, seed: int) -> Tensor:
    q, _ = torch.linalg.qr(_features(d, d, seed))
    return q


def _related(n: int, mix: float, seed: int) -> tuple[Tensor, Tensor]:
    """Two representations of the same items sharing a nonlinear part; ``mix`` in [0, 1] of it."""
    x = _features(n, 24, seed)
    y = torch.tanh(x @ _features(24, 40, seed + 1) / 4) * mix + _features(n, 40, seed + 2) * (1 - mix)
    return x, y


def naive_linear_cka(x: Tensor, y: Tensor) -> float:
    """Kornblith et al. eq. for linear kernels in feature space: ||Y'X||^2 / (||X'X|| ||Y'Y||)."""
    x, y = x - x.mean(0), y - y.mean(0)
    return float(torch.linalg.norm(y.T @ x) ** 2 / (torch.linalg.norm(x.T @ x) * torch.linalg.norm(y.T @ y)))


def naive_hsic_unbiased(k: Tensor, l: Tensor) -> float:  # noqa: E741
    """Song et al. (2012) as a U-statistic over distinct index tuples (eq. 5 of their paper)."""
    n = k.shape[0]
    pairs = sum(k[i, j] * l[i, j] for i, j in itertools.permutations(range(n), 2)) / math.perm(n, 2)
    quads = sum(k[i, j] * l[q, r] for i, j, q, r in itertools.permutations(range(n), 4)) / math.perm(n, 4)
    triples = sum(k[i, j] * l[i, q] for i, j, q in itertools.permutations(range(n), 3)) / math.perm(n, 3)
    return float(pairs + quads - 2 * triples)


@pytest.mark.parametrize("estimator", [linear_cka, unbiased_cka, minibatch_cka])
def test_cka_of_a_representation_with_itself_is_one(estimator: object) -> None:
    x = _features(64, 10, 0)
    assert estimator(x, x) == pytest.approx(1.0, abs=1e-12)  # type: ignore[operator]


@pytest.mark.parametrize("estimator", [linear_cka, unbiased_cka, minibatch_cka])
def test_invariant_to_orthogonal_transforms_and_isotropic_scaling(estimator: object) -> None:
    x, y = _related(80, 0.6, 1)
    base = estimator(x, y)  # type: ignore[operator]
    assert 0.05 < base < 0.95
    moved = estimator(3.7 * x @ _orthogonal(24, 5), 0.01 * y @ _orthogonal(40, 6))  # type: ignore[operator]
    assert moved == pytest.approx(base, abs=1e-10)


def test_not_invariant_to_a_general_invertible_linear_map() -> None:
    x = _features(200, 8, 2)
    stretch = _orthogonal(8, 3) @ torch.diag(torch.logspace(0, 2, 8, dtype=torch.float64))
    assert torch.linalg.matrix_rank(stretch) == 8
    assert linear_cka(x, x @ stretch) < 0.9
    assert unbiased_cka(x, x @ stretch) < 0.9


@pytest.mark.parametrize("n", [5, 7])
def test_estimators_equal_naive_references_on_tiny_matrices(n: int) -> None:
    x, y = _features(n, 3, n), _features(n, 4, n + 10)
    assert linear_cka(x, y) == pytest.approx(naive_linear_cka(x, y), abs=1e-12)
    k, l = gram_linear(x), gram_linear(y)  # noqa: E741
    for a, b in ((k, l), (k, k), (l, l)):
        assert float(hsic_unbiased(a, b)) == pytest.approx(naive_hsic_unbiased(a, b), rel=1e-9, abs=1e-12)
    expected = naive_hsic_unbiased(k, l) / math.sqrt(naive_hsic_unbiased(k, k) * naive_hsic_unbiased(l, l))
    assert unbiased_cka(x, y) == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("mix", [0.2, 0.5, 0.8])
def test_minibatch_estimator_agrees_with_the_full_set_unbiased_one(mix: float) -> None:
    x, y = _related(600, mix, 7)
    full = unbiased_cka(x, y)
    for batch in (64, 150):
        assert abs(minibatch_cka(x, y, batch_size=batch, seed=3) - full) < 0.02, (mix, batch)
    assert minibatch_cka(x, y, batch_size=600) == pytest.approx(full, abs=1e-12)  # one batch: same


def test_matrices_hold_the_pairwise_values() -> None:
    a = {"s": _features(40, 6, 0), "t": _features(40, 3, 1)}
    b = {"u": _features(40, 5, 2), "v": a["s"] @ _orthogonal(6, 3), "w": _features(40, 2, 4)}
    lin, unb = cka_matrix(a, b), cka_matrix(a, b, unbiased=True)
    mb = minibatch_cka_matrix(a, b, batch_size=10, seed=1)
    assert lin.shape == unb.shape == mb.shape == (2, 3)
    for (i, x), (j, y) in itertools.product(enumerate(a.values()), enumerate(b.values())):
        assert float(lin[i, j]) == pytest.approx(linear_cka(x, y), abs=1e-12)
        assert float(unb[i, j]) == pytest.approx(unbiased_cka(x, y), abs=1e-12)
        assert float(mb[i, j]) == pytest.approx(minibatch_cka(x, y, batch_size=10, seed=1), abs=1e-12)
    assert float(lin[0, 1]) == pytest.approx(1.0)


def test_constant_features_give_nan_and_bad_inputs_raise() -> None:
    x = _features(20, 4, 0)
    assert math.isnan(linear_cka(x, torch.ones(20, 3)))
    with pytest.raises(ValueError, match="same items"):
        minibatch_cka_matrix({"a": x}, {"b": x[:10]})
    with pytest.raises(ValueError, match="at least 4"):
        unbiased_cka(x[:3], x[:3])
    with pytest.raises(ValueError, match="at least 4"):
        minibatch_cka(x, x, batch_size=2)
