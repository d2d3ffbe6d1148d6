"""Audio-visual clip dataset over a manifest, deterministic and robust to bad files.

``AVClipDataset`` yields ``clips_per_video`` random clips of every usable video per epoch.
Sample ``i`` shows video ``i % num_videos``; all of its randomness (start time, AV offset,
transforms) comes from a ``torch.Generator`` seeded by ``(seed, epoch, i)``, so a sample is
the same whichever DataLoader worker produces it, and workers need no ``worker_init_fn``.
The epoch lives in a shared-memory tensor, so ``set_epoch`` reaches persistent workers too
(call it before ``iter(loader)``, as with ``DistributedSampler``).

A video that fails to decode is logged (once per file and process) and replaced by a video
drawn from a generator seeded by ``(seed, epoch, i, attempt)``, up to ``max_retries`` times.
Each sample carries the failures met while producing it (``"skipped"``, ``"failures"``), so
the training loop sees every failure whichever worker met it: collate with :func:`av_collate`
and feed the batches to a :class:`FailureTracker`.

Example::

    ds = AVClipDataset("manifest.csv", ClipSpec(num_frames=8, fps=16), backend="pyav",
                       clips_per_video=2, max_av_offset=0.5, seed=0)
    loader = DataLoader(ds, batch_size=32, shuffle=True, num_workers=8, collate_fn=av_collate,
                        persistent_workers=True)
    tracker = FailureTracker()
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        for batch in loader:
            tracker.update(batch)  # batch["video"]: (B, C, T, H, W), batch["audio"]: (B, S)
            ...
        print(tracker.report(epoch))  # "epoch 3: 2 of 5000 clips replaced; bad files: ..."
        tracker.reset()
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from avlearn.data.decode import (
    Clip,
    ClipSpec,
    DecodeError,
    MediaSource,
    audio_window_start,
    decode_clip,
    get_decoder,
    probe_duration,
)
from avlearn.data.device_aug import pad_frames
from avlearn.data.manifest import VideoInfo, read_manifest

__all__ = ["AVClipDataset", "FailureTracker", "NoUsableVideoError", "Transform", "av_collate",
           "sample_generator"]

logger = logging.getLogger(__name__)

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
"""A random transform: ``(tensor, generator) -> tensor``; all its randomness must come from the generator."""

_LIST_KEYS = ("video_id", "failures")  # collated as lists (strings; per-sample lists concatenated)
PAD_TOLERANCE_S = 0.1
"""Silence padded into a clip's audio window beyond this (s) is counted (AAC frames end up to 64 ms
off the video's end at 16 kHz; more means the audio track is really shorter)."""


class NoUsableVideoError(ValueError):
    """A manifest (or split) in which no row can feed the dataset; the message says what was dropped."""


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


class AVClipDataset(Dataset[dict[str, Any]]):
    """Random synchronised (or AV-offset) clips from the usable videos of a manifest.

    Args:
        manifest: rows from :func:`~avlearn.data.manifest.read_manifest`, or a manifest path.
        spec: what to decode (frames, fps, size, audio window); its ``audio_offset`` is a fixed
            shift added to the random one.
        backend: video decoder, ``"pyav"`` or ``"decord"`` (see :mod:`avlearn.data.decode`).
        clips_per_video: clips drawn from every video per epoch; ``len = clips_per_video * num_videos``.
        max_av_offset: each sample's audio window is shifted by ``U(-x, x)`` seconds (0: synchronised).
        video_transform: ``(video (C, T, H, W), generator) -> tensor``.
        audio_transform: ``(waveform (S,), generator) -> tensor`` (may return a spectrogram ``(1, F, T)``).
        seed: base seed of all sampling randomness.
        require_audio: drop rows without an audio track (audio-visual training); when False they
            yield silent audio.
        max_retries: replacements tried for one sample before giving up with an error.
        shifted_audio: when > 0, each sample also carries ``audio_shifted``: an audio window of the
            *same* video starting at least this many seconds away from the clip's own window
            (uniform over the allowed starts; the farthest window when the video is too short). A
            hard negative in the style of AVTS: only features that follow the motion in time can
            tell it from the true audio, whereas other clips' audio differs in content.
        class_to_idx: label name -> class index; default: sorted label names of the kept rows.
        fps_choices: when given, each clip's frame rate is drawn uniformly from these instead of
            ``spec.fps`` (temporal-scale augmentation; the clip keeps ``spec.num_frames`` frames and
            its start is drawn so that the clip at the drawn rate fits the video).

    Sample (a dict):
        ``video``: ``(C, T, H, W)`` float32 (or the video transform's output);
        ``audio``: ``(S,)`` float32 waveform (or the audio transform's output, e.g. ``(1, F, T)``);
        ``index``: int, position of the video in :attr:`videos` (``0 .. num_videos - 1``, what a
        memory bank indexes; the replacement's index when the sample was replaced);
        ``video_id``: str; ``start``: clip start (s); ``av_offset``: total audio shift (s, signed:
        positive means the audio window starts later than the video);
        ``label``: int class index (-1 when the row has none), only when the manifest has labels;
        ``audio_shifted``: like ``audio``, only with ``shifted_audio > 0``; ``shift``: its start
        minus the own window's start (s);
        ``skipped``: int, bad videos replaced while producing this sample;
        ``failures``: ``list[tuple[path, reason]]`` of those replacements;
        ``audio_padded``: seconds of the audio window outside the file's audio track, filled with
        silence (a track shorter than the video; 0 for rows without audio, which are silent by
        request); :class:`FailureTracker` counts the clips where it exceeds ``PAD_TOLERANCE_S``;
        ``video_aug`` / ``audio_aug`` / ``audio_shifted_aug``: a deferred transform's draws, only
        with ``data.augment_on: device`` (see :mod:`avlearn.data.device_aug`).
    """

    def __init__(
        self,
        manifest: str | os.PathLike[str] | Sequence[VideoInfo],
        spec: ClipSpec,
        backend: str = "pyav",
        *,
        clips_per_video: int = 1,
        max_av_offset: float = 0.0,
        video_transform: Transform | None = None,
        audio_transform: Transform | None = None,
        seed: int = 0,
        require_audio: bool = True,
        max_retries: int = 10,
        class_to_idx: Mapping[str, int] | None = None,
        shifted_audio: float = 0.0,
        fps_choices: Sequence[float] = (),
    ) -> None:
        if clips_per_video < 1:
            raise ValueError(f"clips_per_video must be >= 1, got {clips_per_video}")
        if max_av_offset < 0:
            raise ValueError(f"max_av_offset must be >= 0 seconds, got {max_av_offset}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if shifted_audio < 0:
            raise ValueError(f"shifted_audio must be >= 0 seconds, got {shifted_audio}")
        if any(f <= 0 for f in fps_choices):
            raise ValueError(f"fps_choices must all be > 0 frames per second, got {list(fps_choices)}")
        get_decoder(backend)  # unknown backend -> error listing the valid ones, now rather than in a worker
        source = "manifest"
        if isinstance(manifest, (str, os.PathLike)):
            source = str(manifest)
            rows = read_manifest(Path(manifest))
        else:
            rows = list(manifest)
        self.videos, dropped = self._filter(rows, require_audio)
        if dropped:
            why = ", ".join(f"{n} {reason}" for reason, n in dropped.most_common())
            logger.warning("AVClipDataset: kept %d of %d videos from %s; dropped %s",
                           len(self.videos), len(rows), source, why)
        if not self.videos:
            raise NoUsableVideoError(f"no usable video in {source} ({len(rows)} rows"
                             + (f"; dropped {why})" if dropped else ")")
                             + "; check the manifest with `avlearn prepare index`")
        # a transform chain that crops in 8 bits (VideoAugConfig.fused) takes the decoder's uint8 frames
        uint8 = bool(getattr(video_transform, "uint8_input", False))
        self.spec = dataclasses.replace(spec, uint8_frames=uint8)
        self.backend = backend
        self.clips_per_video = clips_per_video
        self.max_av_offset = float(max_av_offset)
        self.shifted_audio = float(shifted_audio)
        self.fps_choices = tuple(float(f) for f in fps_choices)
        self.video_transform = video_transform
        self.audio_transform = audio_transform
        self.seed = int(seed)
        self.max_retries = max_retries
        self.class_to_idx = self._classes(class_to_idx)
        # Shared memory: set_epoch in the main process is seen by (persistent) DataLoader workers.
        self._epoch = torch.zeros((), dtype=torch.int64)
        self._epoch.share_memory_()  # type: ignore[no-untyped-call]
        self._warned: set[str] = set()  # files already logged by this process
        self._durations: dict[str, float] = {}  # probed when the manifest has no duration

    @staticmethod
    def _filter(rows: Sequence[VideoInfo], require_audio: bool) -> tuple[list[VideoInfo], Counter[str]]:
        kept: list[VideoInfo] = []
        dropped: Counter[str] = Counter()
        for row in rows:
            if row.status == "bad":
                dropped["marked 'bad' by the indexer"] += 1
            elif not row.has_video:
                dropped["without a video track"] += 1
            elif require_audio and not row.has_audio:
                dropped["without an audio track"] += 1
            else:
                kept.append(row)
        return kept, dropped

    def _classes(self, class_to_idx: Mapping[str, int] | None) -> dict[str, int] | None:
        labels = {row.label for row in self.videos if row.label}
        if class_to_idx is None:
            return {name: i for i, name in enumerate(sorted(labels))} if labels else None
        unknown = sorted(labels - set(class_to_idx))
        if unknown:
            raise ValueError(f"AVClipDataset: label(s) {unknown[:5]} not in class_to_idx; "
                             f"valid: {sorted(class_to_idx)[:20]}")
        return dict(class_to_idx)

    # ------------------------------------------------------------------------------ sampling

    @property
    def num_videos(self) -> int:
        return len(self.videos)

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose randomness the next samples use (call before ``iter(loader)``)."""
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return self.clips_per_video * len(self.videos)

    def _duration(self, row: VideoInfo, source: MediaSource | None = None) -> float:
        if row.duration > 0:
            return row.duration
        if row.path not in self._durations:
            self._durations[row.path] = probe_duration(row.path if source is None else source)
        return self._durations[row.path]

    def _span(self, spec: ClipSpec | None = None) -> tuple[float, float]:
        """Seconds the clip (video and synchronised audio) reaches before and after its start."""
        spec = self.spec if spec is None else spec
        rel = audio_window_start(0.0, dataclasses.replace(spec, audio_offset=0.0))
        before = max(0.0, -rel)
        after = max(spec.video_seconds, rel + spec.audio_seconds)
        return before, after

    def sample_start(self, duration: float, generator: torch.Generator,
                     spec: ClipSpec | None = None) -> float:
        """Clip start uniform over the starts whose clip (``spec``, default the dataset's) fits in
        ``duration`` (0 for short videos)."""
        before, after = self._span(spec)
        high = duration - after
        if high <= before:
            return 0.0
        return _uniform(before, high, generator)

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

    def _decode(self, row: VideoInfo, generator: torch.Generator,
                source: MediaSource | None = None) -> tuple[Clip, float, Clip | None]:
        """Draw the start and AV offset of a clip of ``row`` and decode it from ``source`` (default
        ``row.path``; :class:`~avlearn.data.decode.MediaBytes` for a shard's member); returns
        ``(clip, offset, shifted)``, ``shifted`` a clip whose ``audio`` is the shifted window."""
        duration = self._duration(row, source)
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
        media = row.path if source is None else source
        clip = decode_clip(media, start, spec, self.backend, extra_audio=extra)
        if not row.has_audio:
            clip.audio = torch.zeros(self.spec.num_samples)
        shifted = None
        if at is not None:
            audio = clip.extra_audio[0] if extra else torch.zeros(self.spec.num_samples)
            shifted = dataclasses.replace(clip, audio=audio, audio_start=at, extra_audio=[])
            clip.extra_audio = []
        return clip, offset, shifted

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"AVClipDataset index {index} out of range [0, {len(self)})")
        epoch = self.epoch
        video_index = index % len(self.videos)
        failures: list[tuple[str, str]] = []
        for attempt in range(self.max_retries + 1):
            generator = sample_generator(self.seed, epoch, index, attempt)
            if attempt > 0:  # a replacement video, deterministic given (seed, epoch, index, attempt)
                video_index = int(torch.randint(len(self.videos), (), generator=generator))
            row = self.videos[video_index]
            try:
                clip, offset, shifted = self._decode(row, generator)
            except Exception as err:  # decode failures of any kind (PyAV, decord, OS); counted, never silent
                reason = err.reason if isinstance(err, DecodeError) else f"{type(err).__name__}: {err}"
                failures.append((row.path, reason))
                if row.path not in self._warned:
                    self._warned.add(row.path)
                    logger.warning("AVClipDataset: skipping %s: %s", row.path, reason)
                continue
            return self._sample(row, video_index, clip, offset, generator, failures, shifted)
        listed = "; ".join(f"{p} ({r})" for p, r in failures)
        raise RuntimeError(
            f"AVClipDataset: sample {index} (epoch {epoch}) failed {len(failures)} times in a row, "
            f"the manifest has too many unreadable videos: {listed}. Re-run `avlearn prepare index` "
            f"and drop the rows it marks 'bad', or raise max_retries.")

    def _sample(self, row: VideoInfo, video_index: int, clip: Clip, offset: float, generator: torch.Generator,
                failures: list[tuple[str, str]], shifted: Clip | None = None) -> dict[str, Any]:
        """Transforms (outside the failure handling: a transform bug is an error, not a bad file)."""
        video, video_aug = _transform(self.video_transform, clip.video, generator)
        audio, audio_aug = _transform(self.audio_transform, clip.audio, generator)
        sample: dict[str, Any] = {
            "video": video, "audio": audio, "index": video_index, "video_id": row.video_id,
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


def av_collate(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate samples of :class:`AVClipDataset` (use as the DataLoader's ``collate_fn``).

    Tensors and numbers go through ``default_collate`` (``video`` -> ``(B, C, T, H, W)``,
    ``audio`` -> ``(B, S)`` or ``(B, 1, F, T)``, ``index`` -> ``(B,)``; uint8 frames of samples with
    ``video_aug`` are zero-padded to the batch's largest frame size); ``video_id`` becomes a
    list of B strings; ``failures`` the concatenation of the samples' lists.
    """
    if not batch:
        raise ValueError("av_collate: empty batch")
    plain = [{k: v for k, v in s.items() if k not in _LIST_KEYS} for s in batch]
    if "video_aug" in batch[0]:  # undecoded sizes (augment_on: device) may differ between videos
        for s, video in zip(plain, pad_frames([s["video"] for s in plain]), strict=True):
            s["video"] = video
    out: dict[str, Any] = default_collate(plain)
    if "video_id" in batch[0]:
        out["video_id"] = [s["video_id"] for s in batch]
    if "failures" in batch[0]:
        out["failures"] = [tuple(f) for s in batch for f in s["failures"]]
    return out


class FailureTracker:
    """Counts decode failures across batches (hence across DataLoader workers) for an epoch report."""

    def __init__(self) -> None:
        self.clips = 0
        self.replaced = 0  # clips that needed at least one replacement
        self.failures = 0  # decode failures (a clip may need several replacements)
        self.files: Counter[tuple[str, str]] = Counter()
        self.padded = 0  # clips whose audio window ran past the audio track (silence padded in)
        self.padded_videos: Counter[str] = Counter()

    def reset(self) -> None:
        self.clips = self.replaced = self.failures = self.padded = 0
        self.files.clear()
        self.padded_videos.clear()

    def update(self, batch: Mapping[str, Any]) -> None:
        """Add one collated batch (from :func:`av_collate`)."""
        skipped = batch.get("skipped")
        if skipped is not None:
            counts = torch.as_tensor(skipped)
            self.clips += int(counts.numel())
            self.replaced += int((counts > 0).sum())
            self.failures += int(counts.sum())
        for path, reason in batch.get("failures", []):
            self.files[(str(path), str(reason))] += 1
        padded = batch.get("audio_padded")
        if padded is not None:
            over = (torch.as_tensor(padded) > PAD_TOLERANCE_S).tolist()
            self.padded += sum(over)
            ids = batch.get("video_id") or [""] * len(over)
            self.padded_videos.update(str(v) for v, o in zip(ids, over, strict=True) if o)

    @property
    def bad_paths(self) -> list[str]:
        return sorted({path for path, _ in self.files})

    def report(self, epoch: int | None = None) -> str:
        """One line, e.g. ``"epoch 3: 2 of 400 clips replaced; bad files: a.mp4 (file is empty) x2"``."""
        head = f"epoch {epoch}: " if epoch is not None else ""
        if not self.failures:
            text = f"{head}no decode failures in {self.clips} clips"
        else:
            files = "; ".join(f"{path} ({reason})" + (f" x{n}" if n > 1 else "")
                              for (path, reason), n in self.files.most_common())
            text = (f"{head}{self.replaced} of {self.clips} clips replaced after {self.failures} decode "
                    f"failure(s); bad files: {files}")
        return text + self._padding_report()

    def _padding_report(self, limit: int = 10) -> str:
        if not self.padded:
            return ""
        videos = ", ".join(v + (f" x{n}" if n > 1 else "") for v, n in self.padded_videos.most_common(limit))
        more = len(self.padded_videos) - limit
        return (f"; {self.padded} of {self.clips} clips had silence padded into their audio (audio track "
                f"shorter than the video; `avlearn prepare index` warns of these files): {videos}"
                + (f" and {more} more" if more > 0 else ""))
