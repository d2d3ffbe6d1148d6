"""Memory bank of L2-normalised per-instance embeddings (Wu et al. 2018; AVID, Morgado et al. 2021).

One row per dataset instance. Rows start as random unit vectors and are updated with a
momentum average of the instance's latest embedding, renormalised:
``m_i <- normalize(momentum * m_i + (1 - momentum) * e_i)``. Updates gather ``(index, emb)``
from all processes (no-grad gather), so the bank is identical on every rank provided it
started identical -- which the seeded initialisation guarantees without communication.

Memory: ``dim * element_size`` bytes per entry (128-d: 512 B in float32, 256 B in
float16/bfloat16; 1.8M AudioSet clips -> 922 MB / 461 MB per bank). Nothing ``(N, N)`` or
``(B, N)`` is ever allocated; negatives are index-sampled ``(B, k)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avlearn.distributed import broadcast_, gather_no_grad

from ._checks import check_index, require

__all__ = ["MemoryBank", "sample_excluding"]

_STORAGE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def sample_excluding(
    num_items: int,
    exclude: Tensor,
    k: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Uniform samples (with replacement) from ``[0, num_items)`` minus a per-row excluded set.

    ``k`` may exceed the number of eligible entries (sampling is with replacement, so tiny
    datasets work with the default ``K = 1024``).

    Shape: ``exclude (B, m)`` distinct indices per row -> ``(B, k)`` long, on ``exclude``'s device.
    Draws ``r`` uniformly in ``[0, num_items - m)`` and maps it to the ``r``-th non-excluded
    index: ``r + #{j : e_(j) - j <= r}`` with ``e_(j)`` the sorted excluded indices.
    """
    if exclude.dim() != 2:
        raise ValueError(f"exclude must be (B, m), got shape {tuple(exclude.shape)}")
    batch, m = exclude.shape
    eligible = num_items - m
    if k < 1:
        raise ValueError(f"number of negatives k must be >= 1, got {k}")
    if eligible < 1:
        raise ValueError(
            f"no eligible entries: all {num_items} entries are excluded ({m} per row); "
            "use a larger bank or a smaller positive set"
        )
    excl = exclude.long().sort(dim=1).values
    if m > 1:
        distinct = "excluded indices must be distinct within each row (anchor inside its positive set?)"
        require(~(excl[:, 1:] == excl[:, :-1]).any(), distinct, lambda: ValueError(distinct))
    gen_device = generator.device if generator is not None else exclude.device
    r = torch.randint(0, eligible, (batch, k), generator=generator, device=gen_device).to(exclude.device)
    ref = (excl - torch.arange(m, device=excl.device)).contiguous()
    return r + torch.searchsorted(ref, r, right=True)


class MemoryBank(nn.Module):
    """``num_items`` L2-normalised ``dim``-d entries kept in a registered buffer ``weight``.

    Args:
        num_items: N, number of dataset instances (>= 2).
        dim: D, embedding size.
        momentum: weight of the old entry in an update, in ``[0, 1)``.
        dtype: storage dtype (float32, or float16/bfloat16 to halve memory); reads return float32.
        seed: initialisation seed; equal seeds give identical banks on every rank.

    Shapes: ``weight (N, D)``; ``lookup(index (...)) -> (..., D)`` float32.
    """

    weight: Tensor

    def __init__(
        self,
        num_items: int,
        dim: int,
        momentum: float = 0.5,
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if num_items < 2:
            raise ValueError(f"num_items must be >= 2, got {num_items}")
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if dtype not in _STORAGE_DTYPES:
            raise ValueError(f"dtype must be one of {_STORAGE_DTYPES}, got {dtype}")
        self.num_items = num_items
        self.dim = dim
        self.momentum = momentum
        generator = torch.Generator().manual_seed(seed)
        weight = torch.empty(num_items, dim, dtype=dtype)
        chunk = 1 << 16  # initialise in chunks: no float32 copy of a half-precision bank
        for start in range(0, num_items, chunk):
            rows = torch.randn(min(chunk, num_items - start), dim, generator=generator)
            weight[start : start + rows.shape[0]] = F.normalize(rows, dim=1).to(dtype)
        self.register_buffer("weight", weight)

    @property
    def bytes_per_entry(self) -> float:
        """Bytes of storage per entry, measured from the buffer's storage."""
        return self.weight.untyped_storage().nbytes() / self.num_items

    def lookup(self, index: Tensor) -> Tensor:
        """Entries at ``index``: ``(...)`` long -> ``(..., D)`` float32, no gradient."""
        return self.weight.detach()[index].float()

    def sample_negatives(
        self,
        index: Tensor,
        k: int,
        generator: torch.Generator | None = None,
        exclude: Tensor | None = None,
    ) -> Tensor:
        """``k`` uniform negative indices per anchor, never the anchor itself (nor ``exclude``).

        Shape: ``index (B,)``, ``exclude (B, m)`` -> ``(B, k)`` long. Sampling is with
        replacement, as in AVID / Wu et al.
        """
        if index.dim() != 1:
            raise ValueError(f"index must be (B,), got shape {tuple(index.shape)}")
        check_index(index, index.shape[0], self.num_items)
        excl = index.long().unsqueeze(1)
        if exclude is not None:
            excl = torch.cat([excl, exclude.long()], dim=1)
        return sample_excluding(self.num_items, excl, k, generator)

    def all_except(self, index: Tensor) -> Tensor:
        """All ``N - 1`` other indices per anchor (full-softmax option; small banks only).

        Shape: ``index (B,)`` -> ``(B, N - 1)`` long.
        """
        check_index(index, index.shape[0] if index.dim() == 1 else -1, self.num_items)
        others = torch.arange(self.num_items - 1, device=index.device).expand(index.shape[0], -1)
        return others + (others >= index.long().unsqueeze(1)).long()

    @torch.no_grad()
    def update(self, index: Tensor, emb: Tensor) -> None:
        """Momentum update with ``(index, emb)`` gathered from all processes.

        Shape: ``index (B,)``, ``emb (B, D)``. Within one (gathered) batch an index should
        appear once; with duplicates, which write wins is unspecified.
        """
        if emb.dim() != 2 or emb.shape[1] != self.dim:
            raise ValueError(f"emb must be (B, {self.dim}), got shape {tuple(emb.shape)}")
        check_index(index, emb.shape[0], self.num_items)
        compute = torch.promote_types(self.weight.dtype, torch.float32)
        all_index = gather_no_grad(index.long().to(self.weight.device))
        all_emb = gather_no_grad(emb.to(self.weight.device, compute))
        old = self.weight[all_index].to(compute)
        new = F.normalize(self.momentum * old + (1.0 - self.momentum) * all_emb, dim=1)
        self.weight.index_copy_(0, all_index, new.to(self.weight.dtype))

    @torch.no_grad()
    def sync_(self) -> None:
        """Overwrite every rank's bank with rank 0's (no-op at world size 1)."""
        broadcast_(self.weight, src=0)

    def extra_repr(self) -> str:
        return (
            f"num_items={self.num_items}, dim={self.dim}, momentum={self.momentum}, "
            f"dtype={self.weight.dtype}, bytes_per_entry={self.bytes_per_entry:g}"
        )
