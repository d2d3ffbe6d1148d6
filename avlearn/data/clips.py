"""The clip maker: sampling a window, decoding it, the transform chain, retries and failure counting.

Every dataset of avlearn is a *clip source*: it knows where its videos are (a manifest's files,
a shard's members) and which video and clip sample ``i`` shows; a :class:`ClipMaker` turns that
into a sample, the same way for every source. All of a sample's randomness comes from a
``torch.Generator`` seeded by ``(seed, epoch, i, attempt)`` (:func:`sample_generator`), so a
sample is the same whichever process or DataLoader worker makes it, and whichever source holds
the bytes: a shard's sample ``i`` equals the file dataset's sample ``i`` bit for bit.

Three makers share the retry loop:

* :class:`AVClips` (pretraining): a random start (and clip rate, with ``fps_choices``), a random
  AV offset, optionally a shifted audio window of the same video; samples carry ``video``,
  ``audio``, ``index``, ``av_offset``, ``audio_padded``, ... (see
  :class:`~avlearn.data.dataset.AVClipDataset`).
* :class:`LabelledClips` (fine-tuning, linear evaluation): a random start (``train``) or clip
  ``k`` of ``num_clips`` uniformly spaced ones; samples carry ``video``, ``label``,
  ``video_index``, ``clip_index``, ... (see :class:`~avlearn.data.labelled.LabelledClipDataset`).
* :class:`AudioClips` (the linear probe's audio modality): uniformly spaced audio windows.

**The clip-source contract** (what a new source, e.g. pre-decoded frames in shards, implements;
it is one file):

1. Build one maker (``AVClips``, ``LabelledClips`` or ``AudioClips``; a new kind of media subclasses
   :class:`ClipMaker` and implements :meth:`ClipMaker.decode` and :meth:`ClipMaker.sample`).
   A source whose bytes are not a media file (pre-decoded frames, :mod:`avlearn.data.frame_shards`)
   overrides :meth:`ClipMaker.read_clip` of the maker: the draws stay the maker's.
2. For sample ``i`` of epoch ``e``, call ``maker.make(i, e, pick)``, where
   ``pick(attempt, generator) -> ClipItem | None`` names what to decode: attempt 0 the sample's
   own video, later attempts a replacement (drawn from ``generator``, which is seeded by
   ``(seed, e, i, attempt)``), ``None`` when there is none. A :class:`ClipItem` is the video's
   row (:class:`~avlearn.data.manifest.VideoInfo`), the index the sample reports, the media
   (a path or :class:`~avlearn.data.decode.MediaBytes`), the clip index, and an ``error`` for a
   record that could not be read (a decode failure when its turn comes).
3. ``make`` returns ``(sample, failures)``: the sample is ``None`` when every attempt failed;
   the source raises (a training dataset) or reports the failures with a later sample (a stream).
4. Subclass :class:`ClipSource` (``spec``, ``seed``, ``epoch``, ``set_epoch``, ``class_names``), or
   :class:`~avlearn.data.dataset.FileSource` for rows of a manifest (it does steps 2-3). Collate
   with :func:`~avlearn.data.dataset.av_collate` and count with
   :class:`~avlearn.data.dataset.FailureTracker`. A source that deals its own batches (shards)
   implements :class:`~avlearn.data.loader.StreamingSource`.

A video that fails to decode is logged once per file and process, recorded in the sample's
``failures`` (``(path, reason)``) and ``skipped``, and replaced; transforms run outside the failure
handling (a transform bug is an error, not a bad file).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict

import numpy as np
import torch

from avlearn.data.decode import (
    Clip,
    ClipSpec,
    DecodeError,
    MediaSource,
    audio_window_start,
    decode_clip,
    get_decoder,
    probe_audio_duration,
    probe_duration,
    read_audio,
)
from avlearn.data.manifest import VideoInfo

__all__ = ["AVClips", "AVSettings", "AudioClips", "ClipItem", "ClipMaker", "ClipSettings", "ClipSource",
           "EvalSettings", "LabelledClips", "LabelledSettings", "Picker", "Transform", "sample_generator"]

_logger = logging.getLogger(__name__)

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
"""A random transform: ``(tensor, generator) -> tensor``; all its randomness must come from the generator."""

Failures = list[tuple[str, str]]


class ClipSettings(TypedDict, total=False):
    """What every clip dataset takes besides where its videos are (see :class:`ClipMaker`); a source
    takes ``**settings: Unpack[...]`` of these and hands them to its maker."""

    video_transform: Transform | None
    audio_transform: Transform | None
    seed: int
    max_retries: int
    class_to_idx: Mapping[str, int] | None


class AVSettings(ClipSettings, total=False):
    """Settings of a pretraining (:class:`AVClips`) source."""

    clips_per_video: int
    max_av_offset: float
    require_audio: bool
    shifted_audio: float
    fps_choices: Sequence[float]


class EvalSettings(ClipSettings, total=False):
    """Settings of a source of uniformly spaced labelled clips (:class:`LabelledClips`, ``train=False``)."""

    num_clips: int
    with_audio: bool


class LabelledSettings(EvalSettings, total=False):
    """Settings of a labelled (:class:`LabelledClips`) source."""

    train: bool
    clips_per_video: int


_HINT = "re-run `avlearn prepare index` (and `avlearn prepare shard` for shards)"


def sample_generator(*keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from integer ``keys`` (e.g. seed, epoch, index, attempt).

    Nearby keys give independent streams (the keys go through NumPy's ``SeedSequence`` hash).
    """
    entropy = [int(k) & 0xFFFF_FFFF_FFFF_FFFF for k in keys]
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    u = float(torch.rand((), generator=generator, dtype=torch.float64))
    return low + (high - low) * u


@dataclasses.dataclass(frozen=True)
class ClipItem:
    """What a source hands the maker for one attempt.

    Attributes:
        row: the video's manifest row (duration, tracks, label).
        index: what the sample reports as the video's index (a memory bank's slot).
        media: where the bytes are: a path or :class:`~avlearn.data.decode.MediaBytes`.
        clip: the clip index (which of ``num_clips`` uniform clips; kept by replacements).
        error: why the record could not be read ("" when it could): a decode failure.
    """

    row: VideoInfo
    index: int
    media: MediaSource
    clip: int = 0
    error: str = ""


Picker = Callable[[int, torch.Generator], ClipItem | None]
"""``(attempt, generator) -> item`` to decode at that attempt, ``None`` when there is no more."""


class ClipMaker:
    """Sampling, decoding, transforms and retries of one source (see the module doc).

    Args:
        spec: what to decode (frames, fps, size, audio window); ``uint8_frames`` is set from the video
            transform (a chain that crops in 8 bits takes the decoder's uint8 frames).
        backend: video decoder, ``"pyav"`` or ``"decord"`` (unknown: an error listing the valid ones).
        video_transform: ``(video (C, T, H, W), generator) -> tensor``.
        audio_transform: ``(waveform (S,), generator) -> tensor`` (e.g. a spectrogram ``(1, F, T)``).
        seed: base seed of all sampling randomness.
        max_retries: replacements tried for one sample.
        clips_per_video: (random) clips of every video per epoch; the sources number samples by it.
        require_audio: an item without an audio track is a decode failure.
        class_to_idx: label name -> class index, or ``None`` (no labels).
        name: the source's name in log messages; ``log``: the logger they go to.
    """

    def __init__(self, spec: ClipSpec, backend: str = "pyav", *, video_transform: Transform | None = None,
                 audio_transform: Transform | None = None, seed: int = 0, max_retries: int = 10,
                 clips_per_video: int = 1, require_audio: bool = True,
                 class_to_idx: Mapping[str, int] | None = None, name: str = "clips",
                 log: logging.Logger = _logger) -> None:
        if clips_per_video < 1:
            raise ValueError(f"clips_per_video must be >= 1, got {clips_per_video}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        get_decoder(backend)  # unknown backend -> error listing the valid ones, now rather than in a worker
        uint8 = bool(getattr(video_transform, "uint8_input", False))
        self.spec = dataclasses.replace(spec, uint8_frames=uint8)
        self.backend = backend
        self.video_transform = video_transform
        self.audio_transform = audio_transform
        self.seed = int(seed)
        self.max_retries = max_retries
        self.clips_per_video = clips_per_video
        self.require_audio = require_audio
        self.class_to_idx = None if class_to_idx is None else dict(class_to_idx)
        self.name, self.log = name, log
        # Shared memory: set_epoch in the main process is seen by (persistent) DataLoader workers.
        self._epoch = torch.zeros((), dtype=torch.int64)
        self._epoch.share_memory_()  # type: ignore[no-untyped-call]
        self._warned: set[str] = set()  # files already logged by this process
        self._durations: dict[str, float] = {}  # probed when the row has no duration

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose randomness the next samples use (call before ``iter(loader)``)."""
        self._epoch.fill_(int(epoch))

    # ------------------------------------------------------------------------- the retry loop
    def make(self, i: int, epoch: int, pick: Picker,
             attempts: int | None = None) -> tuple[dict[str, Any] | None, Failures]:
        """Sample ``i`` of ``epoch``: up to ``attempts`` (default ``max_retries + 1``) items from
        ``pick``; returns ``(sample or None, the failures met)``."""
        failures: Failures = []
        for attempt in range(self.max_retries + 1 if attempts is None else attempts):
            generator = sample_generator(self.seed, epoch, i, attempt)
            item = pick(attempt, generator)
            if item is None:
                break
            try:
                decoded = self._checked_decode(item, generator)
            except Exception as err:  # decode failures of any kind (PyAV, decord, OS); counted, never silent
                self._failed(item, err, failures)
                continue
            return self.sample(item, decoded, generator, failures), failures
        return None, failures

    def _checked_decode(self, item: ClipItem, generator: torch.Generator) -> Any:
        if item.error:
            raise DecodeError(item.media, item.error, _HINT)
        if self.require_audio and not item.row.has_audio:
            raise DecodeError(item.media, "has no audio track", _HINT)
        return self.decode(item, generator)

    def _failed(self, item: ClipItem, err: Exception, failures: Failures) -> None:
        reason = err.reason if isinstance(err, DecodeError) else f"{type(err).__name__}: {err}"
        path = item.row.path
        failures.append((path, reason))
        if path not in self._warned:
            self._warned.add(path)
            self.log.warning("%s: skipping %s: %s", self.name, path, reason)

    def give_up(self, i: int, epoch: int, failures: Failures, advice: str) -> RuntimeError:
        """The error of a sample whose every attempt failed."""
        listed = "; ".join(f"{p} ({r})" for p, r in failures)
        return RuntimeError(f"{self.name}: sample {i} (epoch {epoch}) failed {len(failures)} times in a row"
                            f"{advice.format(listed=listed)}")

    # ------------------------------------------------------------------ what a kind implements
    def decode(self, item: ClipItem, generator: torch.Generator) -> Any:
        """Draw the window and decode it (inside the failure handling)."""
        raise NotImplementedError

    def sample(self, item: ClipItem, decoded: Any, generator: torch.Generator,
               failures: Failures) -> dict[str, Any]:
        """Transform a decoded window into the sample dict (outside the failure handling)."""
        raise NotImplementedError

    def read_clip(self, item: ClipItem, start: float, spec: ClipSpec,
                  extra_audio: Sequence[float] = ()) -> Clip:
        """The clip of ``spec`` at ``start`` of ``item`` (:func:`~avlearn.data.decode.decode_clip` of its
        media); a source whose bytes are not a media file (pre-decoded frames) overrides only this."""
        return decode_clip(item.media, start, spec, self.backend, extra_audio=extra_audio)

    # --------------------------------------------------------------------------- windows
    def duration(self, row: VideoInfo, media: MediaSource) -> float:
        """The row's duration, probed from ``media`` (once per process) when the row has none."""
        if row.duration > 0:
            return row.duration
        if row.path not in self._durations:
            self._durations[row.path] = probe_duration(media)
        return self._durations[row.path]

    def span(self, spec: ClipSpec | None = None) -> tuple[float, float]:
        """Seconds the clip (video and synchronised audio) reaches before and after its start."""
        spec = self.spec if spec is None else spec
        rel = audio_window_start(0.0, dataclasses.replace(spec, audio_offset=0.0))
        before = max(0.0, -rel)
        after = max(spec.video_seconds, rel + spec.audio_seconds)
        return before, after

    def sample_start(self, duration: float, generator: torch.Generator,
                     spec: ClipSpec | None = None) -> float:
        """Clip start uniform over the starts whose clip (``spec``, default the maker's) fits in
        ``duration`` (0 for short videos)."""
        before, after = self.span(spec)
        high = duration - after
        if high <= before:
            return 0.0
        return _uniform(before, high, generator)


class AVClips(ClipMaker):
    """Random synchronised (or AV-offset) clips for pretraining; samples as
    :class:`~avlearn.data.dataset.AVClipDataset` documents them.

    Args (besides :class:`ClipMaker`'s):
        max_av_offset: each sample's audio window is shifted by ``U(-x, x)`` seconds (0: synchronised).
        shifted_audio: when > 0, each sample also carries ``audio_shifted``, a window of the same
            video at least this many seconds from the clip's own.
        fps_choices: each clip's frame rate drawn uniformly from these instead of ``spec.fps``.
    """

    def __init__(self, spec: ClipSpec, backend: str = "pyav", *, max_av_offset: float = 0.0,
                 shifted_audio: float = 0.0, fps_choices: Sequence[float] = (), **common: Any) -> None:
        if max_av_offset < 0:
            raise ValueError(f"max_av_offset must be >= 0 seconds, got {max_av_offset}")
        if shifted_audio < 0:
            raise ValueError(f"shifted_audio must be >= 0 seconds, got {shifted_audio}")
        if any(f <= 0 for f in fps_choices):
            raise ValueError(f"fps_choices must all be > 0 frames per second, got {list(fps_choices)}")
        super().__init__(spec, backend, **common)
        self.max_av_offset = float(max_av_offset)
        self.shifted_audio = float(shifted_audio)
        self.fps_choices = tuple(float(f) for f in fps_choices)

    def shifted_start(self, own: float, duration: float, generator: torch.Generator) -> float:
        """Start of a window of ``audio_seconds`` in ``[0, duration]`` at least ``shifted_audio``
        seconds from ``own`` (uniform over the allowed starts; the farthest start if none is)."""
        last = max(0.0, duration - self.spec.audio_seconds)
        gap = self.shifted_audio
        before = (0.0, min(last, own - gap))  # allowed intervals on either side of the own window
        after = (max(0.0, own + gap), last)
        lengths = [max(0.0, hi - lo) for lo, hi in (before, after)]
        valid = [lo <= hi for lo, hi in (before, after)]
        if not any(valid):
            return 0.0 if own >= last - own else last
        if sum(lengths) == 0:  # single allowed points
            return before[0] if valid[0] else after[0]
        u = _uniform(0.0, sum(lengths), generator)
        return before[0] + u if u < lengths[0] else after[0] + (u - lengths[0])

    def decode(self, item: ClipItem, generator: torch.Generator) -> tuple[Clip, float, Clip | None]:
        """Draw the start and AV offset of a clip of ``item`` and decode it; returns
        ``(clip, offset, shifted)``, ``shifted`` a clip whose ``audio`` is the shifted window."""
        row = item.row
        duration = self.duration(row, item.media)
        spec = self.spec
        if self.fps_choices:  # drawn first: the start must leave room for the clip at this rate
            pick = int(torch.randint(len(self.fps_choices), (), generator=generator))
            spec = dataclasses.replace(spec, fps=self.fps_choices[pick])
        start = self.sample_start(duration, generator, spec)
        offset = spec.audio_offset
        if self.max_av_offset > 0:
            offset += _uniform(-self.max_av_offset, self.max_av_offset, generator)
        spec = dataclasses.replace(spec, audio_offset=offset)
        if not row.has_audio:  # only when require_audio=False: silent audio of the right length
            spec = dataclasses.replace(spec, audio_seconds=0.0)
        # the shifted window depends only on where the clip's own audio starts, so it is drawn first
        # and read from the same open file (decode_clip's extra_audio) instead of opening it again
        at = (self.shifted_start(audio_window_start(start, spec), duration, generator)
              if self.shifted_audio > 0 else None)
        extra = [at] if at is not None and row.has_audio else []
        clip = self.read_clip(item, start, spec, extra)
        if not row.has_audio:
            clip.audio = torch.zeros(self.spec.num_samples)
        shifted = None
        if at is not None:
            audio = clip.extra_audio[0] if extra else torch.zeros(self.spec.num_samples)
            shifted = dataclasses.replace(clip, audio=audio, audio_start=at, extra_audio=[])
            clip.extra_audio = []
        return clip, offset, shifted

    def sample(self, item: ClipItem, decoded: tuple[Clip, float, Clip | None], generator: torch.Generator,
               failures: Failures) -> dict[str, Any]:
        clip, offset, shifted = decoded
        row = item.row
        video, video_aug = _transform(self.video_transform, clip.video, generator)
        audio, audio_aug = _transform(self.audio_transform, clip.audio, generator)
        sample: dict[str, Any] = {
            "video": video, "audio": audio, "index": item.index, "video_id": row.video_id,
            "start": float(clip.start), "av_offset": float(offset),
            "skipped": len(failures), "failures": failures,
            "audio_padded": float(clip.audio_padded) if row.has_audio else 0.0,
        }
        for key, drawn in (("video_aug", video_aug), ("audio_aug", audio_aug)):
            if drawn is not None:
                sample[key] = drawn
        if shifted is not None:
            # its own augmentation draw, as the true audio's: nothing but timing tells them apart
            other, other_aug = _transform(self.audio_transform, shifted.audio, generator)
            sample["audio_shifted"] = other
            if other_aug is not None:
                sample["audio_shifted_aug"] = other_aug
            sample["shift"] = float(shifted.audio_start - clip.audio_start)
        if self.class_to_idx is not None:
            sample["label"] = self.class_to_idx.get(row.label, -1)
        return sample


class LabelledClips(ClipMaker):
    """Labelled clips: random ones (``train``) or clip ``item.clip`` of ``num_clips`` uniformly
    spaced ones; samples as :class:`~avlearn.data.labelled.LabelledClipDataset` documents them.

    Args (besides :class:`ClipMaker`'s):
        train: random starts, or uniformly spaced ones.
        num_clips: evaluation clips per video.
        with_audio: decode audio too (``require_audio``); without, the spec's audio window is ignored.
    """

    def __init__(self, spec: ClipSpec, backend: str = "pyav", *, train: bool = True, num_clips: int = 10,
                 with_audio: bool = False, **common: Any) -> None:
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        if not with_audio:
            spec = dataclasses.replace(spec, audio_seconds=0.0)
        super().__init__(spec, backend, require_audio=with_audio, **common)
        self.train = train
        self.num_clips = num_clips

    @property
    def with_audio(self) -> bool:
        return self.require_audio

    def clip_start(self, duration: float, clip_index: int, generator: torch.Generator) -> float:
        """Train: a random start (:meth:`sample_start`); eval: the ``clip_index``-th of ``num_clips``
        uniformly spaced starts over the starts whose clip fits in ``duration``."""
        if self.train:
            return self.sample_start(duration, generator)
        before, after = self.span()
        high = duration - after
        if high <= before:
            return 0.0
        return before + clip_index * (high - before) / max(self.num_clips - 1, 1)

    def decode(self, item: ClipItem, generator: torch.Generator) -> Clip:
        start = self.clip_start(self.duration(item.row, item.media), item.clip, generator)
        return self.read_clip(item, start, self.spec)

    def sample(self, item: ClipItem, decoded: Clip, generator: torch.Generator,
               failures: Failures) -> dict[str, Any]:
        """``item.row.label`` must be one of :attr:`class_to_idx`."""
        video = decoded.video
        if self.video_transform is not None:
            video = self.video_transform(video, generator)
        assert self.class_to_idx is not None
        sample: dict[str, Any] = {
            "video": video, "label": self.class_to_idx[item.row.label], "video_index": item.index,
            "clip_index": item.clip, "video_id": item.row.video_id, "start": float(decoded.start),
            "skipped": len(failures), "failures": failures,
        }
        if self.with_audio:
            audio = decoded.audio
            if self.audio_transform is not None:
                audio = self.audio_transform(audio, generator)
            sample["audio"] = audio
        return sample


def _transform(transform: Transform | None, x: torch.Tensor,
               generator: torch.Generator) -> tuple[torch.Tensor, Any]:
    """``(transformed x, None)``; for a deferred transform (``data.augment_on: device``, one with
    ``draw_params``) ``(x, its draws)``: the pixels are done on the accelerator."""
    if transform is None:
        return x, None
    draw = getattr(transform, "draw_params", None)
    if draw is not None:
        return x, draw(x, generator)
    return transform(x, generator), None


class AudioClips(ClipMaker):
    """Audio windows only (the linear probe's audio modality): window ``item.clip`` of ``num_clips``
    uniformly spaced ones over the audio track, ``spec.audio_seconds`` long at ``spec.sample_rate``.

    Samples: ``audio`` (the audio transform's output, e.g. a spectrogram ``(1, F, T)``), ``label``,
    ``video_index`` (``item.index``), ``clip_index``.
    """

    def __init__(self, spec: ClipSpec, backend: str = "pyav", *, num_clips: int = 1, **common: Any) -> None:
        super().__init__(spec, backend, **common)
        self.num_clips = num_clips

    def duration(self, row: VideoInfo, media: MediaSource) -> float:
        """The audio track's duration (s), probed once per file and process."""
        if row.path not in self._durations:
            self._durations[row.path] = probe_audio_duration(media)
        return self._durations[row.path]

    def decode(self, item: ClipItem, generator: torch.Generator) -> torch.Tensor:
        span = max(self.duration(item.row, item.media) - self.spec.audio_seconds, 0.0)
        start = item.clip * span / max(self.num_clips - 1, 1)
        return read_audio(item.media, start, self.spec.audio_seconds, self.spec.sample_rate)

    def sample(self, item: ClipItem, decoded: torch.Tensor, generator: torch.Generator,
               failures: Failures) -> dict[str, Any]:
        audio = decoded if self.audio_transform is None else self.audio_transform(decoded, generator)
        assert self.class_to_idx is not None
        return {"audio": audio, "label": self.class_to_idx[item.row.label], "video_index": item.index,
                "clip_index": item.clip}


class ClipSource:
    """What every clip dataset forwards to its maker (``self.clips``): a source subclasses it."""

    clips: ClipMaker

    @property
    def spec(self) -> ClipSpec:
        return self.clips.spec

    @property
    def seed(self) -> int:
        return self.clips.seed

    @property
    def epoch(self) -> int:
        return self.clips.epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose randomness the next samples use (call before ``iter(loader)``)."""
        self.clips.set_epoch(epoch)

    @property
    def class_names(self) -> list[str]:
        """Class names ordered by label id (empty without labels)."""
        classes = self.clips.class_to_idx or {}
        return sorted(classes, key=classes.__getitem__)
