"""The test protocol with negatives: trials (a frame, a sound, a ground truth), their maps, their scores.

A :class:`Trial` is a window of frames normalised as the model was trained, the frame scored in
it, the waveform played and the ground truth: a box map for a *positive*, ``None`` for a
*negative* (``non-sounding``: another clip's sound, whose source is not in view; ``silent``: no
sound at all, reported as its own category). Trials come from the synthetic collection
(:func:`synth_trials`, with the collection's fixed negatives list ``splits/test_plus_silent.csv``
written by ``avlearn synth --negatives``) or from a benchmark's frames (:func:`image_trial`).
:func:`trial_maps` runs a model over trials; :func:`score_maps` gives the published metrics on the
positives (:mod:`avlearn.localization.metrics`, unchanged) and SLAVC's AP and max-F1 per negative
category (:mod:`avlearn.localization.negatives`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from PIL import Image
from torch import Tensor

from avlearn.data.decode import DecodeError, read_audio
from avlearn.localization.benchmarks import AnnotationError, BenchmarkItem, Kind, read_extended_list
from avlearn.localization.inputs import ModelInput, normalize_video
from avlearn.localization.learned import Learned
from avlearn.localization.metrics import ciou, evaluate_maps, median_prediction
from avlearn.localization.negatives import Scored, average_precision, detection_scores, map_confidence
from avlearn.localization.sound_checks import heatmaps, middle_windows
from avlearn.models.av import AVModel

__all__ = ["NEGATIVES_LIST", "Trial", "image_trial", "score_maps", "synth_trials", "trial_maps"]

NEGATIVES_LIST = "splits/test_plus_silent.csv"  # in a synthetic collection, SLAVC's layout


@dataclasses.dataclass
class Trial:
    """One scored frame with one sound.

    Attributes:
        video: ``(C, T, H, W)`` normalised as in training.
        frame: index of the scored frame in the window.
        audio: ``(S,)`` waveform played (zeros for ``silent``).
        gt: ``(H_gt, W_gt)`` ground truth of a positive, ``None`` for a negative.
        size: ``(H_gt, W_gt)`` at which the map is scored (the gt's, or the frame's for a negative).
        kind: ``positive``, ``non-sounding`` or ``silent``.
    """

    video: Tensor
    frame: int
    audio: Tensor
    gt: np.ndarray | None
    size: tuple[int, int]
    kind: Kind


def _audio_duration(path: Path) -> float:
    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            return float(container.duration or 0) / 1e6
    except (av.FFmpegError, IndexError) as err:
        raise DecodeError(path, f"no readable audio track ({err})") from None


def image_trial(item: BenchmarkItem, inp: ModelInput) -> Trial:
    """A benchmark item as a trial: its frame repeated over the model's window (resized to the
    model's size, as SLAVC resizes to 224 x 224) and the middle ``audio_seconds`` of its sound."""
    with Image.open(item.frame) as img:
        rgb = np.asarray(img.convert("RGB").resize((inp.size, inp.size), Image.Resampling.BICUBIC))
    frame = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255.0  # (C, H, W)
    video = normalize_video(frame.unsqueeze(1).repeat(1, inp.num_frames, 1, 1), inp)
    samples = round(inp.audio_seconds * inp.sample_rate)
    if item.audio is None:
        audio = torch.zeros(samples)
    else:
        start = max(_audio_duration(item.audio) / 2 - inp.audio_seconds / 2, 0.0)
        audio = read_audio(item.audio, start, inp.audio_seconds, inp.sample_rate)
    size = item.gt.shape if item.gt is not None else (224, 224)
    return Trial(video, inp.num_frames // 2, audio, item.gt, (int(size[0]), int(size[1])), item.kind)


def synth_trials(root: Path, tests: list[dict[str, Any]], inp: ModelInput, negatives: bool = False,
                 silent: bool = False, progress: bool = False) -> list[Trial]:
    """Trials of a synthetic collection's test videos: the middle-frame window of each video with
    a visible sounding object (positives); with ``negatives``, every row of the collection's
    ``splits/test_plus_silent.csv`` (a test video's window with another test video's sound over
    the same window); with ``silent``, every positive's window with silence."""
    windows = middle_windows(root, tests, None, inp, progress=progress)
    trials = [Trial(w.video, w.frame, w.audio, w.gt, w.gt.shape, "positive") for w in windows]
    if negatives:
        trials += list(_synth_negatives(root, tests, inp))
    if silent:
        trials += [Trial(t.video, t.frame, torch.zeros_like(t.audio), None, t.size, "silent")
                   for t in trials if t.kind == "positive"]
    return trials


def _synth_negatives(root: Path, tests: list[dict[str, Any]], inp: ModelInput) -> Iterator[Trial]:
    path = root / NEGATIVES_LIST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no negatives list; generate the collection with "
                                "`avlearn synth --negatives` (the videos stay the same)")
    by_id = {v["video_id"]: v for v in tests}
    listed = read_extended_list(path)
    rows = [(video, donor) for video, donor in listed if video in by_id and donor in by_id]
    if listed and not rows:  # the list covers the test split; --limit keeps the pairs it holds
        raise AnnotationError(f"{path}: none of its videos is among the evaluated ones (it lists test "
                              f"videos such as {listed[0][0]})")
    chosen = [by_id[video] for video, _ in rows]
    windows = middle_windows(root, chosen, None, inp, progress=False)
    if len(windows) != len(rows):
        raise AnnotationError(f"{path}: every listed video needs a box on its middle frame")
    for (_, donor), w in zip(rows, windows, strict=True):
        start = inp.audio_start(inp.middle_window(int(by_id[donor]["num_frames"]) // 2
                                                  / float(by_id[donor]["fps"]))[0])
        audio = read_audio(root / by_id[donor]["file"], start, inp.audio_seconds, inp.sample_rate)
        yield Trial(w.video, w.frame, audio, None, w.gt.shape, "non-sounding")


def _chunks(trials: Iterable[Trial], size: int) -> Iterator[list[Trial]]:
    chunk: list[Trial] = []
    for trial in trials:
        chunk.append(trial)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def trial_maps(model: AVModel, inp: ModelInput, learned: Learned | None, trials: Iterable[Trial],
               batch_size: int = 16) -> tuple[list[np.ndarray], list[Trial]]:
    """Grid maps ``(H', W')`` of every trial's frame with its sound, and the trials with their
    videos dropped (so a long benchmark never holds more than a batch of frames)."""
    model.eval()
    maps: list[np.ndarray] = []
    kept: list[Trial] = []
    for chunk in _chunks(trials, batch_size):
        maps += heatmaps(model, inp, learned, [t.video for t in chunk], [t.frame for t in chunk],
                         [t.audio for t in chunk], batch_size)
        kept += [dataclasses.replace(t, video=torch.empty(0), audio=torch.empty(0)) for t in chunk]
    return maps, kept


def score_maps(maps: Sequence[np.ndarray], trials: Sequence[Trial]) -> dict[str, Any]:
    """Published metrics on the positives, and AP / max-F1 with each negative category.

    Returns ``{"positives": {ciou50, auc, pointing, n, mean_ciou}, "ap_positives_only",
    "non-sounding": {ap, max_f1, n_negatives, negatives_above_median_positive}, "silent": {...},
    "confidence": {kind: mean}}``; a category without trials is absent.
    """
    pos = [(m, t) for m, t in zip(maps, trials, strict=True) if t.kind == "positive" and t.gt is not None]
    if not pos:
        raise ValueError("no positive trial to score")
    out: dict[str, Any] = {"positives": evaluate_maps([m for m, _ in pos], [t.gt for _, t in pos]).to_dict()}
    scored: dict[str, list[Scored]] = {}
    for m, t in zip(maps, trials, strict=True):
        value = ciou(median_prediction(m, *t.gt.shape), t.gt) if t.gt is not None else 0.0
        scored.setdefault(t.kind, []).append(Scored(t.kind == "positive", value, map_confidence(m, *t.size)))
    positives = scored["positive"]
    out["ap_positives_only"] = average_precision(positives)
    for kind in ("non-sounding", "silent"):
        if kind in scored:
            out[kind] = detection_scores(positives, scored[kind])
    out["confidence"] = {kind: float(np.mean([s.confidence for s in items]))
                         for kind, items in scored.items()}
    return out
