"""Training data pipeline vs. the decode-only limit vs. a straightforward reference-style loader.

All three load random clips (8 frames at 16 fps + 2 s of audio) from the same files, in
one process with one thread (torch, the codecs and FFmpeg's scaler all single-threaded), so
each figure is clips/s per CPU core. The three are timed in the same run, interleaved clip by
clip (each clip's loaders in a rotating order), so a change in machine load hits them alike.

* **pipeline**: ``AVClipDataset`` as training uses it (decode, resample, AVID log-power
  spectrogram, random resized crop, flip, colour jitter, grayscale, normalise).
* **pipeline_device**: ``data.augment_on=device``'s worker: the same decode (uint8 frames at the
  decode size, the waveform) and the same random draws, no pixel work: crop, flip, colour,
  normalisation and the spectrogram run later on the batch, on the accelerator.
* **decode-only limit**: PyAV seek + decode of exactly the video packets the clip needs, the 8
  chosen frames converted to RGB at the decode size (bicubic, as the pipeline must, with one
  reused scaler context), and the audio packets of the window decoded to arrays; nothing else
  (no resampling, no spectrogram, no augmentation, no tensors).
* **straightforward**: the way the AVID-CMA reference loader (``utils/ioutils/av_wrappers.py``,
  ``datasets/preprocessing.py``) works: one container, a global seek, the frames kept at 16 fps
  converted to PIL images, clip-level random parameters applied frame by frame on PIL images
  with torchvision (resize to the decode size, random resized crop, flip, colour jitter,
  greyscale: the pipeline's augmentations), to tensor, normalise; audio decoded frame by frame
  through PyAV's resampler (mono, target rate), concatenated, trimmed, volume jitter, the
  same spectrogram.

A profile follows: the seconds per clip of each stage of ``AVClipDataset.__getitem__`` (the
decoder's stages from :func:`avlearn.data.decode.stage_times`, each transform timed on its
own, the rest as dataset overhead), and after them ``av_collate`` per clip in batches of 16,
which the DataLoader runs after ``__getitem__`` (not part of the timed clips/s).

    python -m benchmarks.data_loading                  # generates a synthetic collection (224 px)
    python -m benchmarks.data_loading --manifest M.csv --clips 100

Prints clips/s, the ratios and where the pipeline's time goes, and writes
``benchmarks/results/data_loading.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from torchvision.transforms import v2

from avlearn.data.audio import SpecConfig, build_spectrogram
from avlearn.data.dataset import AVClipDataset, av_collate
from avlearn.data.decode import ClipSpec, clip_frame_times, stage_times
from avlearn.data.device_aug import DeferredAudio, DeferredVideo
from avlearn.data.manifest import VideoInfo, read_manifest
from avlearn.data.transforms import (
    KINETICS_MEAN,
    KINETICS_STD,
    AudioAugConfig,
    Compose,
    Transform,
    VideoAugConfig,
    build_audio_transform,
    build_video_transform,
)
from benchmarks import harness

NAME = "data_loading"
CLOCK = time.process_time  # profiles count CPU time: steadier than wall time on a shared machine
SPEC = ClipSpec(num_frames=8, fps=16, size=128, audio_seconds=2.0, sample_rate=16000)


_SCALER = VideoReformatter()


def decode_only(path: str, start: float) -> None:
    """The least work that yields the clip's 8 RGB frames and its audio packets decoded."""
    with av.open(path) as container:
        stream: Any = container.streams.video[0]
        stream.codec_context.thread_count = 1
        targets = clip_frame_times(start, SPEC)
        container.seek(int(max(targets[0] - 0.05, 0) / stream.time_base), stream=stream)
        frames, times = [], []
        for frame in container.decode(stream):
            if frame.time is not None and frame.time >= targets[0] - 0.04:
                frames.append(frame)
                times.append(frame.time)
            if frame.time is not None and frame.time >= targets[-1]:
                break
        idx = np.clip(np.searchsorted(np.asarray(times), targets), 0, len(frames) - 1)
        scale = SPEC.size / min(frames[0].width, frames[0].height)  # type: ignore[operator]
        w, h = round(frames[0].width * scale), round(frames[0].height * scale)
        for i in np.unique(idx):
            _SCALER.reformat(frames[int(i)], width=w, height=h, format="rgb24", interpolation="BICUBIC",
                             threads=1).to_ndarray()
        audio: Any = container.streams.audio[0]
        audio.codec_context.thread_count = 1
        container.seek(int(max(start - 0.1, 0) / audio.time_base), stream=audio)
        for aframe in container.decode(audio):
            if aframe.time is not None and aframe.time > start + SPEC.audio_seconds:
                break
            aframe.to_ndarray()


class Straightforward:
    """A loader in the style of the AVID-CMA reference: PIL frames, per-frame PIL transforms."""

    def __init__(self) -> None:
        aug = VideoAugConfig()
        # v2 transforms given a list of images draw their parameters once and apply them to each
        # image: clip-level parameters, frame by frame, as AVID-CMA's stack transforms do.
        self.video_tf = v2.Compose(
            [
                v2.Resize(SPEC.size),
                v2.RandomResizedCrop(aug.size, scale=aug.crop_scale, ratio=aug.crop_ratio),
                v2.RandomHorizontalFlip(aug.flip_p),
                v2.RandomApply(
                    [v2.ColorJitter(aug.brightness, aug.contrast, aug.saturation, aug.hue)],
                    p=aug.color_jitter_p,
                ),
                v2.RandomGrayscale(aug.grayscale_p),
            ]
        )
        self.to_tensor = v2.Compose(
            [
                v2.PILToTensor(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(KINETICS_MEAN, KINETICS_STD),
            ]
        )
        self.spec = build_spectrogram(SpecConfig(kind="avid_linear", sample_rate=SPEC.sample_rate))

    def __call__(self, path: str, start: float) -> tuple[torch.Tensor, torch.Tensor]:
        with av.open(path) as container:
            vs: Any = container.streams.video[0]
            vs.codec_context.thread_count = 1  # one core, like the other loaders
            rate = float(vs.average_rate)
            wanted = [int(t * rate) for t in clip_frame_times(start, SPEC)]  # file frame numbers
            container.seek(int(start * av.time_base))
            images: list[Any] = []
            for frame in container.decode(vs):
                frame_id = frame.pts * frame.time_base * rate
                if frame_id < wanted[len(images)]:
                    continue
                image = frame.to_image(threads=1)  # only the kept frames are converted
                while len(images) < len(wanted) and frame_id >= wanted[len(images)]:
                    images.append(image)
                if len(images) == len(wanted):
                    break
            images += images[-1:] * (len(wanted) - len(images))
            torch.manual_seed(random.randrange(1 << 30))
            video = torch.stack([self.to_tensor(img) for img in self.video_tf(images)], dim=1)
            aus: Any = container.streams.audio[0]
            aus.codec_context.thread_count = 1
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=SPEC.sample_rate)
            container.seek(int(start / aus.time_base), stream=aus)
            chunks, first = [], None
            end = start + SPEC.audio_seconds
            for aframe in container.decode(aus):
                t = float(aframe.pts * aframe.time_base)
                if t + aframe.samples / aframe.sample_rate < start:
                    continue
                if t > end:
                    break
                first = t if first is None else first
                aframe.pts = None
                chunks += [f.to_ndarray()[0] for f in resampler.resample(aframe)]
            wav = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
            skip = max(0, int((start - (first or start)) * SPEC.sample_rate))
            wav = np.pad(wav[skip:], (0, max(0, SPEC.num_samples - len(wav) + skip)))[: SPEC.num_samples]
            wav = wav * random.uniform(0.9, 1.1)
            return video, self.spec(torch.from_numpy(wav).float())


def _requests(rows: list[VideoInfo], n: int, seed: int) -> list[tuple[int, str, float]]:
    rng = random.Random(seed)
    span = max(SPEC.video_seconds, SPEC.audio_seconds)
    out = []
    for _ in range(n):
        i = rng.randrange(len(rows))
        out.append((i, rows[i].path, rng.uniform(0, max(rows[i].duration - span, 0))))
    return out


def _time_interleaved(
    loaders: dict[str, Callable[[int, str, float], Any]],
    requests: list[tuple[int, str, float]],
    warmup: int = 3,
) -> tuple[dict[str, float], dict[str, float]]:
    """Clips/s of each loader over the same requests, clip by clip in a rotating order: by wall
    time, and by this process's CPU time (one thread: what a core gives when the machine is shared)."""
    names = list(loaders)
    for req in requests[:warmup]:
        for name in names:
            loaders[name](*req)
    spent = dict.fromkeys(names, 0.0)
    cpu = dict.fromkeys(names, 0.0)
    for k, req in enumerate(requests[warmup:]):
        for name in names[k % len(names) :] + names[: k % len(names)]:
            t0, c0 = time.perf_counter(), time.process_time()
            loaders[name](*req)
            spent[name] += time.perf_counter() - t0
            cpu[name] += time.process_time() - c0
    n = len(requests) - warmup
    return {name: n / spent[name] for name in names}, {name: n / cpu[name] for name in names}


class _Timed:
    """A transform that adds its own run time to ``totals[name]``."""

    def __init__(self, transform: Transform, name: str, totals: dict[str, float]) -> None:
        self.transform, self.name, self.totals = transform, name, totals

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        t0 = CLOCK()
        out = self.transform(x, generator)
        self.totals[self.name] = self.totals.get(self.name, 0.0) + CLOCK() - t0
        return out


class _TimedDraw:
    """A deferred transform (``augment_on=device``) that adds its drawing time to ``totals[name]``."""

    def __init__(self, deferred: DeferredVideo | DeferredAudio, name: str, totals: dict[str, float]) -> None:
        self.deferred, self.name, self.totals = deferred, name, totals
        self.uint8_input = True

    def draw_params(self, x: torch.Tensor, generator: torch.Generator) -> Any:
        t0 = CLOCK()
        out = self.deferred.draw_params(x, generator)
        self.totals[self.name] = self.totals.get(self.name, 0.0) + CLOCK() - t0
        return out


def profile_pipeline(
    ds: AVClipDataset, indices: list[int], batch: int = 16
) -> tuple[dict[str, float], float]:
    """Seconds per clip spent in each stage of ``ds[i]`` over ``indices``, and in collating it.

    Decoder stages come from :func:`~avlearn.data.decode.stage_times`; every video and audio
    transform is timed on its own; ``dataset overhead`` is the rest of ``__getitem__``
    (sampling, generators, the sample dict).
    """
    video_tf, audio_tf = ds.clips.video_transform, ds.clips.audio_transform
    transforms: dict[str, float] = {}
    if isinstance(video_tf, DeferredVideo) and isinstance(audio_tf, DeferredAudio):
        ds.clips.video_transform = _TimedDraw(video_tf, "video: draw parameters", transforms)  # type: ignore[assignment]
        ds.clips.audio_transform = _TimedDraw(audio_tf, "audio: draw parameters", transforms)  # type: ignore[assignment]
    else:
        assert isinstance(video_tf, Compose) and isinstance(audio_tf, Compose)
        ds.clips.video_transform = Compose([_Timed(t, f"video: {type(t).__name__}", transforms)
                                      for t in video_tf.transforms], uint8_input=video_tf.uint8_input)
        ds.clips.audio_transform = Compose([_Timed(t, f"audio: {type(t).__name__}", transforms)
                                      for t in audio_tf.transforms])
    whole = 0.0
    samples = []
    try:
        with stage_times(CLOCK) as decoder:
            for i in indices:
                t0 = CLOCK()
                samples.append(ds[i])
                whole += CLOCK() - t0
    finally:
        ds.clips.video_transform, ds.clips.audio_transform = video_tf, audio_tf
    t0 = CLOCK()
    for k in range(0, len(samples), batch):
        av_collate(samples[k : k + batch])
    collate = CLOCK() - t0
    stages = {f"decode: {k}": v for k, v in decoder.items()} | transforms
    stages["dataset overhead"] = whole - sum(stages.values())
    return {k: v / len(indices) for k, v in stages.items()}, collate / len(indices)


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each key's median over repeated runs."""
    return {k: float(np.median([r[k] for r in runs])) for k in runs[0]}


def _median_profile(runs: list[tuple[dict[str, float], float]]) -> tuple[dict[str, float], float]:
    return _median([r[0] for r in runs]), float(np.median([r[1] for r in runs]))


def parser() -> argparse.ArgumentParser:
    p = harness.parser(__doc__, NAME)
    harness.add_collection_options(p, ".cache/bench_data_loading", num_videos=12, video_size=224)
    p.add_argument("--clips", type=int, default=60, help="clips timed per loader")
    p.add_argument("--repeats", type=int, default=1,
                   help="time and profile this many times; report medians (a shared machine)")
    return p


def _dataset(rows: list[VideoInfo], aug: VideoAugConfig) -> AVClipDataset:
    """The training pipeline over ``rows`` with video augmentation ``aug`` and the default audio one."""
    return AVClipDataset(rows, SPEC, "pyav", video_transform=build_video_transform(aug, True),
                         audio_transform=build_audio_transform(AudioAugConfig(), SpecConfig(), True))


def _datasets(rows: list[VideoInfo]) -> dict[str, AVClipDataset]:
    """The pipeline's variants: default, the cheaper yiq hue, fused, and ``augment_on=device``'s worker."""
    fused_aug = VideoAugConfig(hue_mode="yiq", fused=True)  # uint8 crop + one colour map (needs yiq)
    return {
        "pipeline": _dataset(rows, VideoAugConfig()),
        "pipeline_hue_yiq": _dataset(rows, VideoAugConfig(hue_mode="yiq")),
        "pipeline_fused": _dataset(rows, fused_aug),
        # the workers decode uint8 frames and draw the fused pipeline's parameters
        "pipeline_device": AVClipDataset(rows, SPEC, "pyav", video_transform=DeferredVideo(fused_aug),  # type: ignore[arg-type]
                                         audio_transform=DeferredAudio(AudioAugConfig(), SpecConfig())),  # type: ignore[arg-type]
    }


def _by_index(ds: AVClipDataset) -> Callable[[int, str, float], Any]:
    """A loader of request ``(i, path, start)`` by ``ds[i]``: the dataset draws its own start in the
    same video (the same cost)."""
    return lambda i, path, start: ds[i]


def _profiled(ds: AVClipDataset, indices: list[int], repeats: int) -> tuple[dict[str, float], float]:
    """Median profile of ``ds`` (stages by decreasing time) and its collate seconds per clip."""
    profile, collate = _median_profile([profile_pipeline(ds, indices) for _ in range(repeats)])
    return dict(sorted(profile.items(), key=lambda kv: -kv[1])), collate


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Clips/s per core of every loader, interleaved clip by clip, and where the pipeline's time goes."""
    torch.set_num_threads(1)
    random.seed(0)
    manifest, source = harness.collection_manifest(args)
    source += "" if args.manifest else " 25 fps, AAC 16 kHz"
    rows = [r for r in read_manifest(manifest) if r.usable_av]
    requests = _requests(rows, args.clips + 3, seed=0)
    datasets = _datasets(rows)
    ref = Straightforward()
    # The ~350k objects of the imports would make the first full garbage collection a ~0.3 s
    # pause inside whichever loader's clip triggers it (a worker pays it once per run): move them
    # out of the collector's view, as a long-running DataLoader worker effectively has.
    gc.collect()
    gc.freeze()
    loaders: dict[str, Callable[[int, str, float], Any]] = {
        **{name: _by_index(ds) for name, ds in datasets.items()},
        "decode_only": lambda i, p, s: decode_only(p, s),
        "straightforward": lambda i, p, s: ref(p, s),
    }
    indices = [i for i, _, _ in requests[3:]]
    repeats = max(1, args.repeats)
    timed = [_time_interleaved(loaders, requests) for _ in range(repeats)]
    rates, cpu_rates = _median([t[0] for t in timed]), _median([t[1] for t in timed])
    assert math.isfinite(rates["pipeline"])
    profile, collate = _profiled(datasets["pipeline"], indices, repeats)
    fused_profile, _ = _profiled(datasets["pipeline_fused"], indices, repeats)
    device_profile, device_collate = _profiled(datasets["pipeline_device"], indices, repeats)
    return _record(rates, cpu_rates, source, repeats, load=harness.load_average() or [0.0, 0.0, 0.0],
                   profiles={"": (profile, collate), "fused_": (fused_profile, 0.0),
                             "device_": (device_profile, device_collate)})


def _record(rates: dict[str, float], cpu_rates: dict[str, float], source: str, repeats: int,
            load: list[float], profiles: dict[str, tuple[dict[str, float], float]]) -> dict[str, Any]:
    """The results record: rates, ratios against the two goals, the profiles and a reading."""
    (profile, collate), (fused_profile, _), (device_profile, device_collate) = profiles.values()
    profiled = sum(profile.values())
    fused_ratios = {"vs_decode_only": rates["pipeline_fused"] / rates["decode_only"],
                    "vs_straightforward": rates["pipeline_fused"] / rates["straightforward"]}
    ratios = {"pipeline_vs_decode_only": rates["pipeline"] / rates["decode_only"],
              "pipeline_vs_straightforward": rates["pipeline"] / rates["straightforward"]}
    # What 0.8x of the decode-only limit leaves for everything past decoding, per clip.
    extra_ms = 1000 * (1 / rates["pipeline"] - 1 / rates["decode_only"])
    allowed_ms = 1000 * (1 / (0.8 * rates["decode_only"]) - 1 / rates["decode_only"])
    limit_vs_ref = rates["decode_only"] / rates["straightforward"]
    reading = (f"the pipeline spends {extra_ms:.1f} ms per clip beyond the decode-only work; "
               f"0.8x of the limit would allow {allowed_ms:.1f} ms. The decode-only limit itself is "
               f"{limit_vs_ref:.2f}x the straightforward loader, so 3x of that loader needs "
               f"{3 / limit_vs_ref:.2f}x of the limit")
    return {
        "load_average_at_end": dict(zip(("1min", "5min", "15min"), load, strict=True)),
        "source": source,
        "clip": "8 frames at 16 fps decoded at short side 128, crop 112; 2 s of 16 kHz audio",
        "repeats": repeats,
        "threads": "OMP_NUM_THREADS=1, torch.set_num_threads(1), codecs single-threaded",
        "clips_per_s_per_core": {k: round(v, 2) for k, v in rates.items()},
        "clips_per_s_per_cpu_second": {k: round(v, 2) for k, v in cpu_rates.items()},
        "ratios": {k: round(v, 2) for k, v in ratios.items()},
        "goals_met": {"pipeline_vs_decode_only": ratios["pipeline_vs_decode_only"] >= 0.8,
                      "pipeline_vs_straightforward": ratios["pipeline_vs_straightforward"] >= 3.0},
        "fused_ratios": {k: round(v, 2) for k, v in fused_ratios.items()},
        "fused_goals_met": {"vs_decode_only": fused_ratios["vs_decode_only"] >= 0.8,
                            "vs_straightforward": fused_ratios["vs_straightforward"] >= 3.0},
        "fused_profile_seconds_per_clip": {k: round(v, 6) for k, v in fused_profile.items()},
        "device_profile_seconds_per_clip": {k: round(v, 6) for k, v in device_profile.items()},
        "device_collate_seconds_per_clip": round(device_collate, 6),
        "device_vs_decode_only": round(rates["pipeline_device"] / rates["decode_only"], 2),
        "reading": reading,
        "profile_seconds_per_clip": {k: round(v, 6) for k, v in profile.items()},
        "profile_share": {k: round(v / profiled, 4) for k, v in profile.items()},
        "profile_getitem_seconds_per_clip": round(profiled, 6),
        "collate_seconds_per_clip": round(collate, 6),
    }


def headline(record: dict[str, Any]) -> str:
    """Clips/s per core of the pipeline, decode-only and the reference loader, and the pipeline's ratios."""
    c, r = record["clips_per_s_per_core"], record["ratios"]
    return (f"clips/s per core, pipeline / decode-only / reference loader: {harness.num(c['pipeline'])} / "
            f"{harness.num(c['decode_only'])} / {harness.num(c['straightforward'])} "
            f"({harness.num(r['pipeline_vs_decode_only'])}x / "
            f"{harness.num(r['pipeline_vs_straightforward'])}x)")


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def _profile_table(profile: dict[str, float]) -> list[str]:
    total = sum(profile.values())
    return ["| stage | ms per clip | share |", "|---|---|---|",
            *(f"| {k} | {1000 * v:.2f} | {100 * v / total:.1f}% |" for k, v in profile.items())]


def markdown(record: dict[str, Any]) -> str:
    rates, cpu_rates = record["clips_per_s_per_core"], record["clips_per_s_per_cpu_second"]
    ratios, fused, goals = record["ratios"], record["fused_ratios"], record["goals_met"]
    profile, fused_profile = record["profile_seconds_per_clip"], record["fused_profile_seconds_per_clip"]
    device_profile = record["device_profile_seconds_per_clip"]
    load = list(record["load_average_at_end"].values())
    collate, device_collate = record["collate_seconds_per_clip"], record["device_collate_seconds_per_clip"]
    md = ["| loader | clips/s per core (wall) | clips/s per CPU second |", "|---|---|---|"]
    md += [f"| {k} | {v:.1f} | {cpu_rates[k]:.1f} |" for k, v in rates.items()]
    md += ["", "Wall: clips over elapsed time, one thread; CPU: clips over this process's CPU time (on a "
           "shared machine the wall figure also counts time the process waited for a core).", "",
           "pipeline_hue_yiq: the same pipeline with `video_aug.hue_mode=yiq` (hue as a chroma rotation, "
           f"not torchvision's HSV shift): {rates['pipeline_hue_yiq'] / rates['decode_only']:.2f}x of "
           f"decode-only, {rates['pipeline_hue_yiq'] / rates['straightforward']:.2f}x of the straightforward "
           "loader.", "",
           "pipeline_fused: `video_aug.fused=true` with `hue_mode=yiq` (8-bit frames cropped and resized in "
           "uint8, colour jitter + greyscale + normalisation as one colour map clamped once): "
           f"{fused['vs_decode_only']:.2f}x of decode-only (goal >= 0.8x: "
           f"{_met(fused['vs_decode_only'] >= 0.8)}), "
           f"{fused['vs_straightforward']:.2f}x of the straightforward loader (goal >= 3x: "
           f"{_met(fused['vs_straightforward'] >= 3.0)}).", "",
           f"pipeline / decode-only: {ratios['pipeline_vs_decode_only']:.2f}x (goal >= 0.8x: "
           f"{_met(goals['pipeline_vs_decode_only'])}); pipeline / straightforward: "
           f"{ratios['pipeline_vs_straightforward']:.2f}x (goal >= 3x: "
           f"{_met(goals['pipeline_vs_straightforward'])})",
           "", f"Reading: {record['reading']}.", "",
           f"Where the pipeline's time goes ({1000 * sum(profile.values()):.1f} ms of CPU time per "
           "`__getitem__`, "
           f"median of {record['repeats']} profiled pass(es) over the same clips; profiles count CPU time, "
           "`time.process_time`):", "", *_profile_table(profile),
           f"| then `av_collate` (batches of 16; outside `__getitem__`) | {1000 * collate:.2f} | |",
           "", f"The fused pipeline ({1000 * sum(fused_profile.values()):.1f} ms per `__getitem__`):", "",
           *_profile_table(fused_profile), "",
           "`data.augment_on=device`'s worker (decode to uint8 + the fused pipeline's random draws; the "
           f"pixels are done on the accelerator): {rates['pipeline_device']:.1f} clips/s per core, "
           f"{rates['pipeline_device'] / rates['decode_only']:.2f}x of decode-only "
           f"({1000 * sum(device_profile.values()):.1f} ms per `__getitem__`):", "",
           *_profile_table(device_profile),
           f"| then `av_collate` (uint8 frames; batches of 16) | {1000 * device_collate:.2f} | |",
           "", f"`{record['command']}` on {harness.machine_text(record)} (load average {load[0]:.2f} / "
           f"{load[1]:.2f} / {load[2]:.2f} at the end); {record['source']}"]
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    return harness.run(NAME, argv, parser(), measure, markdown)


if __name__ == "__main__":
    sys.exit(main())
