"""A resumable, distributed batch sampler: the epoch's order depends only on ``(seed, epoch)``.

Every process draws the same permutation of the dataset from ``(seed, epoch)``, keeps the
first ``num_batches * batch_size * world_size`` entries (the remainder is dropped, so every
rank sees equal batches, which memory-bank gathers require) and takes rank ``r``'s share of
each global batch. ``set_epoch(epoch, skip=n)`` skips the first ``n`` batches, so a resumed
run continues mid-epoch at exactly the batch where the interrupted one stopped.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from avlearn.config import ConfigError
from avlearn.data.clips import sample_generator

__all__ = ["ResumableBatchSampler"]


class ResumableBatchSampler(Sampler[list[int]]):
    """Yields lists of ``batch_size`` dataset indices for this rank.

    Global batch ``j`` of an epoch is ``perm[j*B*W : (j+1)*B*W]``; rank ``r`` takes its
    ``r``-th slice of ``B``. Shuffle off: ``perm = arange``.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        drop_last: bool = True,
    ) -> None:
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler arguments: batch_size={batch_size}, rank={rank}/{world_size}")
        global_batch = batch_size * world_size
        if drop_last and num_samples < global_batch:
            raise ConfigError(  # a ValueError: the data is too small for the batch a config asks
                f"{num_samples} clips cannot fill one batch of {batch_size} x {world_size} processes; "
                "lower data.batch_size or raise data.clips_per_video", key="data.batch_size"
            )
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.epoch = 0
        self.skip = 0

    @property
    def batches_per_epoch(self) -> int:
        global_batch = self.batch_size * self.world_size
        if self.drop_last:
            return self.num_samples // global_batch
        return -(-self.num_samples // global_batch)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch's permutation and skip its first ``skip`` batches."""
        if not 0 <= skip <= self.batches_per_epoch:
            raise ValueError(f"skip must be in [0, {self.batches_per_epoch}], got {skip}")
        self.epoch, self.skip = int(epoch), int(skip)

    def permutation(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_samples)
        return torch.randperm(self.num_samples, generator=sample_generator(self.seed, self.epoch, 0x5A3))

    def __iter__(self) -> Iterator[list[int]]:
        perm = self.permutation().tolist()
        global_batch = self.batch_size * self.world_size
        for j in range(self.skip, self.batches_per_epoch):
            chunk = perm[j * global_batch : (j + 1) * global_batch]
            mine = chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
            if mine:
                yield mine

    def __len__(self) -> int:
        return self.batches_per_epoch - self.skip
