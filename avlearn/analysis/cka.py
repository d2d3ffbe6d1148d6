"""Centered kernel alignment (CKA) with a linear kernel, full-set and minibatch estimators.

Three estimators of the similarity of two representations of the same ``N`` items:

* :func:`linear_cka`: Kornblith et al. (ICML 2019), the biased HSIC of the centred Gram
  matrices ``tr(K H L H) / (N - 1)^2`` normalised; 1 for identical representations, invariant to
  orthogonal transforms and isotropic scaling of either one, not to general invertible maps.
  Its bias grows with the feature dimension relative to ``N``.
* :func:`unbiased_cka`: the same ratio of the unbiased HSIC estimator of Song et al. (2012),
  :func:`hsic_unbiased`.
* :func:`minibatch_cka`: Nguyen, Raghu & Kornblith (ICLR 2021): the unbiased HSIC averaged over
  minibatches, ``mean_i HSIC_1(K_i, L_i) / sqrt(mean_i HSIC_1(K_i, K_i) mean_i HSIC_1(L_i, L_i))``;
  it needs only ``batch x batch`` Gram matrices and agrees with :func:`unbiased_cka` for large sets.

The ``*_matrix`` functions give every block of one model against every block of another, with
each block's Gram matrices computed once. Everything is computed in float64. An undefined
value (a block whose features do not vary over the items) is ``nan``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

__all__ = [
    "cka_matrix",
    "gram_linear",
    "hsic_biased",
    "hsic_unbiased",
    "linear_cka",
    "minibatch_cka",
    "minibatch_cka_matrix",
    "unbiased_cka",
]

Features = Mapping[str, Tensor]  # block name -> (N, D_block)


def gram_linear(x: Tensor) -> Tensor:
    """Linear-kernel Gram matrix ``x x^T`` in float64.

    Shape: ``x (N, D) -> (N, N)``.
    """
    if x.dim() != 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(x.shape)}")
    x = x.detach().double()
    return x @ x.T


def _center(K: Tensor) -> Tensor:
    """``H K H`` with ``H = I - 11^T / N``: rows and columns of the Gram matrix to mean zero."""
    K = K - K.mean(dim=0, keepdim=True)
    return K - K.mean(dim=1, keepdim=True)


def hsic_biased(K: Tensor, L: Tensor) -> Tensor:
    """Biased HSIC ``tr(K H L H) / (N - 1)^2`` of two ``(N, N)`` Gram matrices (a 0-d tensor)."""
    n = _check_grams(K, L, 2)
    return (_center(K) * L).sum() / (n - 1) ** 2


def hsic_unbiased(K: Tensor, L: Tensor) -> Tensor:
    """Unbiased HSIC of Song et al. (2012), as used by Nguyen et al. (2021), of ``(N, N)`` Grams.

    With ``K~``, ``L~`` the Gram matrices with zero diagonals:
    ``[tr(K~ L~) + 1'K~1 1'L~1 / ((N-1)(N-2)) - 2/(N-2) 1'K~L~1] / (N (N-3))``. Needs ``N >= 4``.
    """
    n = _check_grams(K, L, 4)
    K = K - torch.diag_embed(K.diagonal())
    L = L - torch.diag_embed(L.diagonal())
    trace = (K * L).sum()  # tr(K~ L~) for symmetric matrices
    sums = K.sum() * L.sum() / ((n - 1) * (n - 2))
    cross = 2.0 / (n - 2) * (K.sum(dim=0) @ L.sum(dim=1))
    return (trace + sums - cross) / (n * (n - 3))


def _check_grams(K: Tensor, L: Tensor, at_least: int) -> int:
    if K.dim() != 2 or K.shape[0] != K.shape[1] or K.shape != L.shape:
        raise ValueError(f"Gram matrices must both be (N, N), got {tuple(K.shape)} and {tuple(L.shape)}")
    if K.shape[0] < at_least:
        raise ValueError(f"this estimator needs at least {at_least} items, got {K.shape[0]}")
    return int(K.shape[0])


def _ratio(kl: Tensor | float, kk: Tensor | float, ll: Tensor | float) -> float:
    """``kl / sqrt(kk ll)``, or ``nan`` when a self-similarity is not positive."""
    kk, ll = float(kk), float(ll)
    if not (kk > 0 and ll > 0):
        return math.nan
    return float(kl) / math.sqrt(kk * ll)


def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear CKA of Kornblith et al. (2019) between two representations of the same items.

    Shape: ``x (N, D1)``, ``y (N, D2)``; row ``i`` of each is item ``i``.
    """
    K, L = gram_linear(x), gram_linear(y)
    return _ratio(hsic_biased(K, L), hsic_biased(K, K), hsic_biased(L, L))


def unbiased_cka(x: Tensor, y: Tensor) -> float:
    """CKA from the unbiased HSIC estimator over the whole set. Shape: ``x (N, D1)``, ``y (N, D2)``."""
    K, L = gram_linear(x), gram_linear(y)
    return _ratio(hsic_unbiased(K, L), hsic_unbiased(K, K), hsic_unbiased(L, L))


def _chunks(n: int, batch_size: int, seed: int) -> list[Tensor]:
    """Item indices, shuffled with ``seed``, in ``ceil(n / batch_size)`` near-equal minibatches."""
    if batch_size < 4:
        raise ValueError(f"the minibatch estimator needs batches of at least 4 items, got {batch_size}")
    if n < 4:
        raise ValueError(f"the minibatch estimator needs at least 4 items, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return list(torch.tensor_split(order, max(1, n // batch_size)))


def minibatch_cka(x: Tensor, y: Tensor, batch_size: int = 256, seed: int = 0) -> float:
    """Minibatch CKA of Nguyen et al. (2021) over one shuffled pass (see the module doc).

    The items are shuffled with ``seed`` and split into ``floor(N / batch_size)`` near-equal
    minibatches (each at least ``batch_size`` items). Shape: ``x (N, D1)``, ``y (N, D2)``.
    """
    return float(minibatch_cka_matrix({"x": x}, {"y": y}, batch_size, seed)[0, 0])


def cka_matrix(a: Features, b: Features, unbiased: bool = False) -> Tensor:
    """Full-set CKA of every block of ``a`` (rows) against every block of ``b`` (columns).

    ``a``, ``b``: block name -> features ``(N, D_block)`` of the same ``N`` items.
    ``unbiased=False``: :func:`linear_cka`; ``True``: :func:`unbiased_cka`.
    Returns ``(len(a), len(b))`` float64; memory: one ``(N, N)`` float64 Gram matrix per block.
    """
    hsic = hsic_unbiased if unbiased else hsic_biased
    grams_a = [gram_linear(x) for x in a.values()]
    grams_b = [gram_linear(y) for y in b.values()]
    self_a = [hsic(K, K) for K in grams_a]
    self_b = [hsic(L, L) for L in grams_b]
    out = torch.empty(len(grams_a), len(grams_b), dtype=torch.float64)
    for i, K in enumerate(grams_a):
        for j, L in enumerate(grams_b):
            out[i, j] = _ratio(hsic(K, L), self_a[i], self_b[j])
    return out


def minibatch_cka_matrix(a: Features, b: Features, batch_size: int = 256, seed: int = 0) -> Tensor:
    """Minibatch CKA (Nguyen et al. 2021) of every block of ``a`` against every block of ``b``.

    One shuffled pass over the items (see :func:`minibatch_cka`); each minibatch's Gram matrices
    are computed once per block. Returns ``(len(a), len(b))`` float64.
    """
    n = _same_items(a, b)
    cross = torch.zeros(len(a), len(b), dtype=torch.float64)
    self_a = torch.zeros(len(a), dtype=torch.float64)
    self_b = torch.zeros(len(b), dtype=torch.float64)
    for idx in _chunks(n, batch_size, seed):
        grams_a = [gram_linear(x[idx]) for x in a.values()]
        grams_b = [gram_linear(y[idx]) for y in b.values()]
        self_a += torch.stack([hsic_unbiased(K, K) for K in grams_a])
        self_b += torch.stack([hsic_unbiased(L, L) for L in grams_b])
        for i, K in enumerate(grams_a):
            for j, L in enumerate(grams_b):
                cross[i, j] += hsic_unbiased(K, L)
    out = torch.empty_like(cross)
    for i in range(len(a)):
        for j in range(len(b)):
            out[i, j] = _ratio(cross[i, j], self_a[i], self_b[j])
    return out


def _same_items(a: Features, b: Features) -> int:
    sizes = {name: int(x.shape[0]) for name, x in [*a.items(), *b.items()]}
    if not sizes or len(set(sizes.values())) != 1:
        raise ValueError(f"every block needs features of the same items; items per block: {sizes}")
    return next(iter(sizes.values()))
