"""A training run's data loader: this process's share of every epoch, in an order that depends only
on ``(seed, epoch)``, whatever the data's format.

:func:`build_loader` returns the ``DataLoader`` and its :class:`Batches` (the handle that selects
the epoch and the batches to skip on resume). A map-style dataset (files:
:class:`~avlearn.data.dataset.AVClipDataset`) is dealt out by a
:class:`~avlearn.data.sampler.ResumableBatchSampler` and collated with
:func:`~avlearn.data.dataset.av_collate`; a dataset that deals its own batches (a
:class:`StreamingSource`, e.g. :class:`~avlearn.data.shards.ShardDataset`) builds its loader
itself. Every batch carries the failures met while making it: count them with a
:class:`~avlearn.data.dataset.FailureTracker`.

Example::

    loader, batches = build_loader(dataset, batch_size=32, seed=0, num_workers=4)
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        batches.set_epoch(epoch, skip=0)        # skip=n resumes at batch n
        for batch in loader:                    # video (B, C, T, H, W), audio (B, S), ...
            tracker.update(batch)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from torch.utils.data import DataLoader, Dataset

from avlearn.data.dataset import av_collate
from avlearn.data.sampler import ResumableBatchSampler

__all__ = ["Batches", "StreamingSource", "build_loader"]


class Batches(Protocol):
    """The data order of a run: which epoch, which batches of it are left."""

    @property
    def batches_per_epoch(self) -> int: ...

    def set_epoch(self, epoch: int, skip: int = 0) -> None: ...

    def __len__(self) -> int: ...


@runtime_checkable
class StreamingSource(Protocol):
    """A dataset that deals its batches out itself (an ``IterableDataset`` of collated batches)."""

    def make_loader(self, batch_size: int, *, rank: int, world: int, num_workers: int,
                    worker_init_fn: Callable[[int], None] | None
                    ) -> tuple[DataLoader[dict[str, Any]], Batches]: ...


def build_loader(dataset: Dataset[Any], batch_size: int, *, seed: int, num_workers: int, rank: int = 0,
                 world: int = 1, worker_init_fn: Callable[[int], None] | None = None,
                 ) -> tuple[DataLoader[dict[str, Any]], Batches]:
    """This process's (``rank`` of ``world``) loader over ``dataset`` and its :class:`Batches`.

    Workers persist (they see ``set_epoch``); the loader has its own generator seeded by ``seed``:
    ``iter(loader)`` must not draw from the global RNG, whose state a checkpoint restores (exact resume).
    """
    if isinstance(dataset, StreamingSource):
        return dataset.make_loader(batch_size, rank=rank, world=world, num_workers=num_workers,
                                   worker_init_fn=worker_init_fn)
    sampler = ResumableBatchSampler(len(dataset), batch_size, seed=seed,  # type: ignore[arg-type]
                                    rank=rank, world_size=world)
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=av_collate,
        persistent_workers=num_workers > 0,
        worker_init_fn=worker_init_fn,
        generator=torch.Generator().manual_seed(seed),
    )
    return loader, sampler
