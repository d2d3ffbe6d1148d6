"""Streaming clips from WebDataset shards written by ``avlearn prepare shard``, local or remote.

:class:`ShardDataset` reads the shard index (``index.json``: shards, their sample counts and
global index ranges) from a path or an ``fsspec`` URL (``s3://``, ``gs://``, ``https://``, ...;
``http(s)://`` falls back to ``urllib`` when ``aiohttp``, which fsspec's HTTP needs, is not
installed), streams the tar shards with ``webdataset``'s tar reader, and decodes each member's
bytes in memory with the decoders, transforms and sample dict of
:class:`~avlearn.data.dataset.AVClipDataset`: sample ``i = clip * N + g`` of global index ``g``
draws its randomness from ``(seed, epoch, i)``, so it is bit-identical to the file dataset's sample
``i`` over the same manifest.

How an epoch is dealt out (all of it a function of ``(seed, epoch)`` and the layout
``world x streams x batch_size``):

1. The shard order is a permutation drawn from ``(seed, epoch)``. Concatenated in that order, the
   shards give the epoch's *stream* of ``T = N * clips_per_video`` positions (each video's clips
   are consecutive).
2. Each rank yields ``J = T // (batch_size * world)`` batches per epoch from ``S = streams``
   readers: reader ``s`` makes batches ``j = s, s + S, s + 2S, ...``, so reader ``(rank, s)``
   needs ``len(range(s, J, S)) * batch_size`` positions. Readers take consecutive, disjoint
   ranges of the stream in ``(rank, s)`` order; a range may start inside a shard (the members
   before it are read and dropped, never decoded) and span shard boundaries. The rank's ``W``
   DataLoader workers (``W`` divides ``S``) share the readers: worker ``w`` makes the batches
   ``j = n + w, n + w + W, ...`` (``n``: the batches skipped on resume), which is the order in
   which the DataLoader asks its workers, so batches come out as ``n, n+1, ...``.
3. **Remainder**: the last ``T - J * batch_size * world`` positions of the epoch's stream are
   dropped, as :class:`~avlearn.data.sampler.ResumableBatchSampler` drops its remainder (every
   rank needs equal batches for the memory-bank gathers). Which samples fall there changes with
   the epoch's shard order. Every other sample comes exactly once per epoch.
4. Each reader shuffles its range through a bounded in-memory buffer of ``shuffle_buffer`` raw
   samples (bytes, not decoded clips) with a generator seeded by ``(seed, epoch, rank, s)``
   (memory: ``streams * shuffle_buffer`` media files per process).
5. Resume at batch ``n`` of an epoch (:meth:`ShardBatches.set_epoch`): each reader replays its
   range and shuffle on raw bytes and skips its batches before ``n`` without decoding them. The
   rest of the epoch equals the uninterrupted run's, whatever the number of workers (a resume may
   change ``data.num_workers``, as with files).

A member whose bytes cannot be decoded is a decode failure as for a file: logged once, named
``<shard>:<key>.<suffix>`` in the sample's ``failures``, counted by
:class:`~avlearn.data.dataset.FailureTracker`, and replaced by another raw sample drawn (from
``(seed, epoch, i, attempt)``) from the reader's shuffle buffer or the sample just before it; the
replacement's ``index`` is its own global index. A shard that cannot be opened or read as a tar,
or whose members do not match the index, is an error naming the shard (re-run
``avlearn prepare shard``).

Example::

    ds = ShardDataset("shards/index.json", ClipSpec(num_frames=8, fps=16), shuffle_buffer=64)
    loader, batches = shard_loader(ds, batch_size=32, rank=0, world=1, num_workers=4)
    for epoch in range(epochs):
        batches.set_epoch(epoch)              # or set_epoch(epoch, skip=n) to resume at batch n
        for batch in loader:                  # batches already collated (av_collate)
            ...
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import tarfile
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar, Unpack

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from avlearn.data.clips import AVClips, AVSettings, ClipItem, ClipSource, sample_generator
from avlearn.data.dataset import av_collate
from avlearn.data.decode import ClipSpec, MediaBytes
from avlearn.data.manifest import VideoInfo

__all__ = ["EpochLayout", "ShardBatches", "ShardDataset", "ShardError", "ShardIndex", "ShardInfo",
           "ShardReader", "ShardSource", "buffered_shuffle", "open_stream", "shard_loader", "shard_order"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
INDEX_FORMAT = "avlearn-shards/1"
_HINT = "re-run `avlearn prepare shard` for this collection (or restore the shard's file)"


class ShardError(RuntimeError):
    """A shard (or shard index) that cannot be used as a whole; the message names it and the fix."""


# ------------------------------------------------------------------------------------ the index


@dataclasses.dataclass(frozen=True)
class ShardInfo:
    """One shard: where it is, how many samples, the global index of its first sample."""

    url: str
    num_samples: int
    first_index: int


@dataclasses.dataclass(frozen=True)
class ShardIndex:
    """The shard index ``index.json`` of ``avlearn prepare shard``; shard names resolve next to it."""

    location: str
    shards: tuple[ShardInfo, ...]
    num_samples: int
    manifest_sha256: str
    classes: tuple[str, ...]

    @classmethod
    def load(cls, location: str | os.PathLike[str]) -> ShardIndex:
        location = str(location)
        try:
            with open_stream(location) as fh:
                data = json.loads(fh.read())
        except (OSError, ValueError) as err:
            raise ShardError(f"cannot read the shard index {location} ({err}); write it with "
                             "`avlearn prepare shard MANIFEST --out DIR` and give DIR/index.json") from None
        if data.get("format") != INDEX_FORMAT or not data.get("complete"):
            raise ShardError(f"{location} is not a complete shard index of format {INDEX_FORMAT} "
                             f"(format={data.get('format')!r}, complete={data.get('complete')}); {_HINT}")
        shards, expected = [], 0
        for entry in data["shards"]:
            if int(entry["first_index"]) != expected:
                raise ShardError(f"{location}: shard {entry['name']} starts at global index "
                                 f"{entry['first_index']}, expected {expected}; {_HINT}")
            shards.append(ShardInfo(_beside(location, entry["name"]), int(entry["num_samples"]), expected))
            expected += int(entry["num_samples"])
        if expected != int(data["num_samples"]) or expected == 0:
            raise ShardError(f"{location}: the shards hold {expected} samples, the index says "
                             f"{data['num_samples']}; {_HINT}")
        return cls(location, tuple(shards), expected, str(data.get("manifest_sha256", "")),
                   tuple(data.get("classes", [])))


def _beside(location: str, name: str) -> str:
    """``name`` in the folder of ``location`` (a path or a URL)."""
    if "://" in location:
        return location.rsplit("/", 1)[0] + "/" + name
    return str(Path(location).parent / name)


def open_stream(url: str) -> IO[bytes]:
    """A readable binary stream of a local path or an fsspec URL (``urllib`` for http(s) without aiohttp)."""
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    if scheme in ("http", "https") and importlib.util.find_spec("aiohttp") is None:
        return urllib.request.urlopen(url, timeout=60)  # type: ignore[no-any-return]
    import fsspec  # here: training from memory (benchmarks/gpu) needs neither fsspec nor webdataset

    return fsspec.open(url, "rb").open()  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------ the epoch's order


def shard_order(num_shards: int, seed: int, epoch: int) -> list[int]:
    """The epoch's shard order: a permutation drawn from ``(seed, epoch)``."""
    return torch.randperm(num_shards, generator=sample_generator(seed, epoch, 0x5A4D)).tolist()


@dataclasses.dataclass(frozen=True)
class EpochLayout:
    """How the epoch's stream of ``total`` positions is dealt to ``world x streams`` readers.

    Attributes:
        batches: batches per rank per epoch, ``total // (batch_size * world)``.
        ranges: ``(start, length)`` in stream positions of reader ``rank * streams + s``.
    """

    batches: int
    ranges: tuple[tuple[int, int], ...]

    @classmethod
    def make(cls, total: int, batch_size: int, world: int, streams: int) -> EpochLayout:
        batches = total // (batch_size * world)
        ranges, start = [], 0
        for _rank in range(world):
            for s in range(streams):
                length = len(range(s, batches, streams)) * batch_size
                ranges.append((start, length))
                start += length
        return cls(batches, tuple(ranges))


def buffered_shuffle(items: Iterable[T], size: int, rng: np.random.Generator) -> Iterator[tuple[T, list[T]]]:
    """Shuffle through a buffer of at most ``size`` items; yields ``(item, buffer)`` where ``buffer``
    holds the items still waiting (a view: read it before the next item is drawn). ``size <= 1``
    keeps the order."""
    buffer: list[T] = []
    for item in items:
        if len(buffer) < max(size, 1):
            buffer.append(item)
            continue
        j = int(rng.integers(len(buffer)))
        out, buffer[j] = buffer[j], item
        yield out, buffer
    while buffer:
        j = int(rng.integers(len(buffer)))
        out = buffer[j]
        buffer[j] = buffer[-1]
        buffer.pop()
        yield out, buffer


# ---------------------------------------------------------------------------------- the dataset


def _raw(sample: Mapping[str, Any], url: str, expected: int) -> ClipItem:
    """One member as read from a shard, not decoded: an unreadable record carries its ``error``."""
    key = str(sample["__key__"])
    try:
        meta = json.loads(sample["json"])
        suffix = str(meta["media"])
        data, error = sample[suffix], ""
    except (KeyError, ValueError, TypeError) as err:
        meta, suffix, error = {}, "bin", f"record unreadable ({type(err).__name__}: {err})"
        data = next((v for k, v in sample.items() if not k.startswith("__") and k != "json"), b"")
    index = int(meta.get("index", key if key.isdigit() else -1))
    if index != expected:
        raise ShardError(f"{url}: member {key} holds global index {index}, the index expects {expected}; "
                         f"{_HINT}")
    name = f"{url}:{key}.{suffix}"
    row = VideoInfo(path=name, video_id=str(meta.get("video_id", key)),
                    duration=float(meta.get("duration", 0)), fps=float(meta.get("fps", 0)), has_video=True,
                    has_audio=bool(meta.get("has_audio", True)), label=str(meta.get("label", "")))
    return ClipItem(row, index, MediaBytes(name, bytes(data)), 0, error)


class ShardReader:
    """A shard index, its classes, and its members' bytes (what both shard datasets read).

    Args:
        index: ``index.json`` of ``avlearn prepare shard``: a path or an fsspec URL.
        class_to_idx: label name -> id; default: the index's classes in order (``None`` without labels).
    """

    def __init__(self, index: str | os.PathLike[str], class_to_idx: Mapping[str, int] | None = None) -> None:
        self.index = ShardIndex.load(index)
        classes = class_to_idx
        if classes is None and self.index.classes:
            classes = {name: i for i, name in enumerate(self.index.classes)}
        unknown = sorted(set(self.index.classes) - set(classes or {}))
        if class_to_idx is not None and not self.index.classes:
            raise ValueError(f"{self.index.location}: the shards carry no labels; shard a manifest whose "
                             "label column names each video's class")
        if classes is not None and unknown:
            raise ValueError(f"{self.index.location}: label(s) {unknown[:5]} are not among the classes "
                             f"{sorted(classes)[:20]}; shard a manifest of this split's videos")
        self.class_to_idx = None if classes is None else dict(classes)

    def read_shard(self, shard: ShardInfo, skip: int) -> Iterator[ClipItem]:
        """The members of ``shard`` from its ``skip``-th on (those before are read, not decoded)."""
        from webdataset.tariterators import group_by_keys, tar_file_iterator

        count = 0
        try:
            with open_stream(shard.url) as fh:
                files = ({**f, "__url__": shard.url} for f in tar_file_iterator(fh))  # type: ignore[arg-type]
                for sample in group_by_keys(files):
                    if count >= skip:
                        yield _raw(sample, shard.url, shard.first_index + count)
                    count += 1
        except (OSError, EOFError, ValueError, tarfile.TarError) as err:
            if isinstance(err, ShardError):
                raise
            raise ShardError(f"cannot read shard {shard.url} after {count} samples "
                             f"({type(err).__name__}: {err}); {_HINT}") from None
        if count != shard.num_samples:
            raise ShardError(f"shard {shard.url} holds {count} samples, the index says {shard.num_samples}; "
                             f"{_HINT}")

    def members(self, lo: int, hi: int) -> Iterator[ClipItem]:
        """Members with global indices ``[lo, hi)``, in order."""
        for shard in self.index.shards:
            end = shard.first_index + shard.num_samples
            if end <= lo or shard.first_index >= hi:
                continue
            for raw in self.read_shard(shard, max(0, lo - shard.first_index)):
                if raw.index >= hi:
                    break
                yield raw

    def in_order(self, order: list[int], first: int) -> Iterator[ClipItem]:
        """Members of the shards in ``order`` concatenated, from stream slot ``first`` on."""
        start = 0
        for k in order:
            shard = self.index.shards[k]
            if start + shard.num_samples > first:
                yield from self.read_shard(shard, max(0, first - start))
            start += shard.num_samples


class ShardSource(ClipSource):
    """What both shard datasets share: the shards' reader (``self.reader``) and its numbers."""

    reader: ShardReader

    @property
    def num_videos(self) -> int:
        """Samples (videos) in the shards: global indices (what a memory bank indexes) run over
        ``0 .. num_videos - 1``."""
        return self.reader.index.num_samples

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Label name -> id (empty without labels)."""
        return dict(self.clips.class_to_idx or {})


class ShardDataset(ShardSource, IterableDataset[dict[str, Any]]):
    """Batches of clips streamed from shards (see the module doc for the order and its guarantees).

    Args:
        index: ``index.json`` of ``avlearn prepare shard``: a path or an fsspec URL.
        spec, backend, clips_per_video, max_av_offset, video_transform, audio_transform, seed,
            require_audio, max_retries, class_to_idx, shifted_audio, fps_choices: as for
            :class:`~avlearn.data.dataset.AVClipDataset`.
        shuffle_buffer: raw samples each reader holds in memory to shuffle (0 or 1: stream order).
        streams: readers per process; the DataLoader's workers share them, so their number must
            divide it (and may change on resume: the order does not depend on it).

    Yields (per DataLoader worker, once :func:`shard_loader` or :meth:`distribute` set the layout)
    batches collated with :func:`~avlearn.data.dataset.av_collate`: ``video (B, C, T, H, W)``,
    ``audio (B, S)`` or ``(B, 1, F, T)``, ``index (B,)`` (global indices, what a memory bank
    indexes), ``video_id``, ``skipped``, ``failures``, ... as the file dataset's samples.
    """

    clips: AVClips

    def __init__(self, index: str | os.PathLike[str], spec: ClipSpec, backend: str = "pyav", *,
                 shuffle_buffer: int = 64, streams: int = 4, **settings: Unpack[AVSettings]) -> None:
        if shuffle_buffer < 0 or streams < 1:
            raise ValueError(f"need shuffle_buffer >= 0 and streams >= 1, got {shuffle_buffer}, {streams}")
        self.reader = ShardReader(index, settings.get("class_to_idx"))
        self.index = self.reader.index
        settings["class_to_idx"] = self.reader.class_to_idx
        self.clips = AVClips(spec, backend, name="ShardDataset", log=logger, **settings)
        self.shuffle_buffer = shuffle_buffer
        self.streams = streams
        self.rank, self.world, self.batch_size = 0, 1, 1
        self._skip = torch.zeros((), dtype=torch.int64)
        self._skip.share_memory_()  # type: ignore[no-untyped-call]

    # -------------------------------------------------------------------- layout and epoch
    def __len__(self) -> int:
        """Clips per epoch before the remainder is dropped (as :class:`AVClipDataset`'s length)."""
        return self.total

    @property
    def total(self) -> int:
        """Positions of an epoch's stream: ``num_videos * clips_per_video``."""
        return self.num_videos * self.clips.clips_per_video

    @property
    def batches_per_epoch(self) -> int:
        return self.total // (self.batch_size * self.world)

    def distribute(self, rank: int, world: int, batch_size: int) -> None:
        """This process's place (call before the DataLoader starts its workers)."""
        if batch_size < 1 or world < 1 or not 0 <= rank < world:
            raise ValueError(f"bad layout: batch_size={batch_size}, rank={rank}/{world}")
        if self.total < batch_size * world:
            raise ValueError(f"{self.total} clips in {self.index.location} cannot fill one batch of "
                             f"{batch_size} x {world} processes; lower data.batch_size")
        self.rank, self.world, self.batch_size = rank, world, batch_size

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch and skip its first ``skip`` batches (call before ``iter(loader)``)."""
        if not 0 <= skip <= self.batches_per_epoch:
            raise ValueError(f"skip must be in [0, {self.batches_per_epoch}], got {skip}")
        self.clips.set_epoch(epoch)
        self._skip.fill_(int(skip))

    def make_loader(self, batch_size: int, *, rank: int, world: int, num_workers: int,
                    worker_init_fn: Callable[[int], None] | None
                    ) -> tuple[DataLoader[dict[str, Any]], ShardBatches]:
        """:func:`shard_loader` (what :func:`avlearn.data.loader.build_loader` calls)."""
        return shard_loader(self, batch_size, rank=rank, world=world, num_workers=num_workers,
                            worker_init_fn=worker_init_fn)

    # -------------------------------------------------------------------------- reading
    def _positions(self, order: list[int], start: int, length: int) -> Iterator[ClipItem]:
        """Stream positions ``[start, start + length)``: each video's clips in turn."""
        cpv = self.clips.clips_per_video
        if length <= 0:
            return
        pos = start - start % cpv
        for raw in self.reader.in_order(order, start // cpv):
            for c in range(cpv):
                if start <= pos < start + length:
                    yield dataclasses.replace(raw, clip=c)
                pos += 1
            if pos >= start + length:
                return

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        _check_streams(self.streams, workers)
        epoch, skip = self.epoch, int(self._skip.item())
        layout = EpochLayout.make(self.total, self.batch_size, self.world, self.streams)
        order = shard_order(len(self.index.shards), self.seed, epoch)
        readers: dict[int, Iterator[dict[str, Any]]] = {}
        for j in range(skip + worker, layout.batches, workers):  # the DataLoader asks workers in turn
            s = j % self.streams
            if s not in readers:
                start, length = layout.ranges[self.rank * self.streams + s]
                readers[s] = self._stream(order, s, start, length, len(range(s, skip, self.streams)), epoch)
            yield next(readers[s])

    def _stream(self, order: list[int], s: int, start: int, length: int, skip: int,
                epoch: int) -> Iterator[dict[str, Any]]:
        """Batches of stream ``s`` (positions ``[start, start + length)`` through the shuffle buffer),
        the first ``skip`` of them read and shuffled but not decoded."""
        rng = np.random.default_rng([self.seed, epoch, self.rank, s, 0xB0F])
        drop = skip * self.batch_size
        batch: list[dict[str, Any]] = []
        previous: list[ClipItem] = []
        shuffled = buffered_shuffle(self._positions(order, start, length), self.shuffle_buffer, rng)
        for q, (raw, waiting) in enumerate(shuffled):
            if q >= drop:
                batch.append(self._sample(raw, [*waiting, *previous], epoch))
                if len(batch) == self.batch_size:
                    yield av_collate(batch)
                    batch = []
            previous = [raw]

    # -------------------------------------------------------------------------- decoding
    def _sample(self, raw: ClipItem, candidates: list[ClipItem], epoch: int) -> dict[str, Any]:
        """Decode ``raw`` (sample ``i = clip * N + index``) as the file dataset decodes sample ``i``;
        a failure is recorded and a candidate decoded instead."""
        i = raw.clip * self.num_videos + raw.index

        def pick(attempt: int, generator: torch.Generator) -> ClipItem | None:
            if attempt == 0:
                return raw
            if not candidates:
                return None
            return candidates[int(torch.randint(len(candidates), (), generator=generator))]

        sample, failures = self.clips.make(i, epoch, pick)
        if sample is None:
            raise self.clips.give_up(i, epoch, failures, ": {listed}. Re-run `avlearn prepare index` and "
                                     "`avlearn prepare shard`, or raise max_retries.")
        return sample


# ---------------------------------------------------------------------------------- the loader


class ShardBatches:
    """The engine's handle on a :class:`ShardDataset`'s epochs (what
    :class:`~avlearn.data.sampler.ResumableBatchSampler` is for files)."""

    def __init__(self, dataset: ShardDataset) -> None:
        self.dataset = dataset

    @property
    def batches_per_epoch(self) -> int:
        return self.dataset.batches_per_epoch

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.dataset.set_epoch(epoch, skip)

    def __len__(self) -> int:
        return self.batches_per_epoch - int(self.dataset._skip.item())


def _check_streams(streams: int, workers: int) -> None:
    if streams % max(workers, 1):
        raise ValueError(f"{streams} shard streams per process cannot be shared by {workers} DataLoader "
                         "workers: make data.shard_streams a multiple of data.num_workers")


def _as_is(batch: dict[str, Any]) -> dict[str, Any]:
    """The DataLoader's collate: batches come collated from the workers."""
    return batch


def shard_loader(
    dataset: ShardDataset, batch_size: int, *, rank: int = 0, world: int = 1, num_workers: int = 0,
    worker_init_fn: Callable[[int], None] | None = None,
) -> tuple[DataLoader[dict[str, Any]], ShardBatches]:
    """DataLoader over ``dataset`` for this process; workers persist (they see ``set_epoch``).

    The loader has its own generator: ``iter(loader)`` must not draw from the global RNG, whose
    state a checkpoint restores (exact resume).
    """
    dataset.distribute(rank, world, batch_size)
    _check_streams(dataset.streams, num_workers)
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers, collate_fn=_as_is,  # type: ignore[arg-type]
                        persistent_workers=num_workers > 0, worker_init_fn=worker_init_fn,
                        generator=torch.Generator().manual_seed(dataset.seed))
    return loader, ShardBatches(dataset)
