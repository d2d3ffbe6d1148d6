"""Training data pipeline vs. the decode-only limit vs. a straightforward reference-style loader.

All three load random clips (8 frames at 16 fps + 2 s of audio) from the same files, in
one process with one thread, so each figure is clips/s per CPU core:

* **pipeline**: ``AVClipDataset`` as training uses it (decode, resample, AVID log-power
  spectrogram, random resized crop, flip, colour jitter, grayscale, normalise).
* **decode-only limit**: PyAV seek + decode of exactly the video packets the clip needs, the 8
  chosen frames converted to RGB at the decode size, and the audio packets of the window;
  nothing else (no resampling, no spectrogram, no augmentation, no tensors).
* **straightforward**: the way the AVID-CMA reference loader works: PyAV seek, every frame of the
  window converted to a PIL image, subsampled to 16 fps, resized and cropped with torchvision on
  PIL images, audio decoded frame by frame, concatenated and resampled, the spectrogram computed.

    python benchmarks/data_loading.py                  # generates a synthetic collection (224 px)
    python benchmarks/data_loading.py --manifest M.csv --clips 100

Prints clips/s and the ratios, a profile of where the pipeline's time goes, and writes
``benchmarks/results/data_loading.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import platform
import pstats
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torchaudio
from torchvision.transforms import v2

from avlearn.data.audio import SpecConfig, build_spectrogram
from avlearn.data.dataset import AVClipDataset
from avlearn.data.decode import ClipSpec, clip_frame_times
from avlearn.data.manifest import VideoInfo, read_manifest
from avlearn.data.transforms import (
    AudioAugConfig,
    VideoAugConfig,
    build_audio_transform,
    build_video_transform,
)

RESULTS = Path(__file__).resolve().parent / "results"
SPEC = ClipSpec(num_frames=8, fps=16, size=128, audio_seconds=2.0, sample_rate=16000)


def decode_only(path: str, start: float) -> None:
    """The least work that yields the clip's 8 RGB frames and its audio packets decoded."""
    with av.open(path) as container:
        stream = container.streams.video[0]
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
        for i in idx:
            frames[int(i)].to_ndarray(width=w, height=h, format="rgb24")
        audio = container.streams.audio[0]
        container.seek(int(max(start - 0.1, 0) / audio.time_base), stream=audio)
        for frame in container.decode(audio):
            if frame.time is not None and frame.time > start + SPEC.audio_seconds:
                break
            frame.to_ndarray()


class Straightforward:
    """A loader in the style of the AVID-CMA reference: PIL frames, per-frame transforms."""

    def __init__(self) -> None:
        self.video_tf = v2.Compose(
            [
                v2.Resize(SPEC.size),
                v2.RandomResizedCrop(112, scale=(0.2, 1.0)),
                v2.RandomHorizontalFlip(),
                v2.ColorJitter(0.4, 0.4, 0.4, 0.1),
                v2.PILToTensor(),
                v2.ToDtype(torch.float32, scale=True),
            ]
        )
        self.spec = build_spectrogram(SpecConfig(kind="avid_linear"))

    def __call__(self, path: str, start: float) -> tuple[torch.Tensor, torch.Tensor]:
        with av.open(path) as container:
            vs = container.streams.video[0]
            container.seek(int(max(start - 0.1, 0) / vs.time_base), stream=vs)
            end = start + SPEC.video_seconds
            images = []
            for frame in container.decode(vs):
                if frame.time is None or frame.time < start:
                    continue
                if frame.time >= end:
                    break
                images.append(frame.to_image())  # every frame of the window to PIL
            step = max(1, round(len(images) / SPEC.num_frames))
            images = images[::step][: SPEC.num_frames]
            torch.manual_seed(random.randrange(1 << 30))
            video = torch.stack([self.video_tf(img) for img in images], dim=1)  # per-frame transforms
            aus = container.streams.audio[0]
            container.seek(int(max(start - 0.1, 0) / aus.time_base), stream=aus)
            chunks, sr = [], aus.codec_context.sample_rate
            for frame in container.decode(aus):
                if frame.time is None or frame.time + frame.samples / sr < start:
                    continue
                if frame.time >= start + SPEC.audio_seconds:
                    break
                chunks.append(frame.to_ndarray().mean(axis=0))
            wav = torch.from_numpy(np.concatenate(chunks)).float()
            wav = torchaudio.functional.resample(wav, sr, SPEC.sample_rate)[: SPEC.num_samples]
            return video, self.spec(wav)


def _requests(rows: list[VideoInfo], n: int, seed: int) -> list[tuple[int, str, float]]:
    rng = random.Random(seed)
    span = max(SPEC.video_seconds, SPEC.audio_seconds)
    out = []
    for _ in range(n):
        i = rng.randrange(len(rows))
        out.append((i, rows[i].path, rng.uniform(0, max(rows[i].duration - span, 0))))
    return out


def _time(fn: Callable[[int, str, float], Any], requests: list[tuple[int, str, float]]) -> float:
    for req in requests[:3]:
        fn(*req)
    t0 = time.perf_counter()
    for req in requests[3:]:
        fn(*req)
    return (len(requests) - 3) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--manifest", type=Path, help="manifest of the collection (default: generate one)")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(".cache/bench_synth224"),
        help="where to generate the synthetic collection when --manifest is not given",
    )
    parser.add_argument("--num-videos", type=int, default=12, help="videos to generate")
    parser.add_argument("--video-size", type=int, default=224, help="generated videos' frame size")
    parser.add_argument("--clips", type=int, default=60, help="clips timed per loader")
    parser.add_argument("--out", type=Path, default=RESULTS / "data_loading")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    if args.manifest:
        source = str(args.manifest)
        rows = [r for r in read_manifest(args.manifest) if r.usable_av]
    else:
        from data_prep.index import index_collection
        from data_prep.synth import SynthConfig, generate

        generate(
            SynthConfig(out=args.work, num_videos=args.num_videos, size=args.video_size, workers=2),
            progress=False,
        )
        index_collection([args.work / "videos"], args.work / "manifest.csv", workers=2, progress=False)
        rows = [r for r in read_manifest(args.work / "manifest.csv") if r.usable_av]
        source = f"synthetic: {args.num_videos} videos {args.video_size}px 25 fps, AAC 16 kHz"
    requests = _requests(rows, args.clips + 3, seed=0)

    ds = AVClipDataset(
        rows,
        SPEC,
        "pyav",
        video_transform=build_video_transform(VideoAugConfig(), True),
        audio_transform=build_audio_transform(AudioAugConfig(), SpecConfig(), True),
    )

    def pipeline(i: int, path: str, start: float) -> Any:
        return ds[i]  # same video; the dataset draws its own start (same cost)

    ref = Straightforward()
    rates = {
        "pipeline": _time(pipeline, requests),
        "decode_only": _time(lambda i, p, s: decode_only(p, s), requests),
        "straightforward": _time(lambda i, p, s: ref(p, s), requests),
    }
    profile = cProfile.Profile()
    profile.enable()
    for req in requests[3:33]:
        pipeline(*req)
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(12)
    top = [line for line in text.getvalue().splitlines() if line.strip()][-13:]

    ratios = {
        "pipeline_vs_decode_only": rates["pipeline"] / rates["decode_only"],
        "pipeline_vs_straightforward": rates["pipeline"] / rates["straightforward"],
    }
    print(f"clips/s per core ({args.clips} clips, {source}):")
    for name, r in rates.items():
        print(f"  {name:<16} {r:7.1f}")
    print(f"pipeline / decode-only limit: {ratios['pipeline_vs_decode_only']:.2f}x (goal >= 0.8x)")
    print(f"pipeline / straightforward:  {ratios['pipeline_vs_straightforward']:.2f}x (goal >= 3x)")
    print("where the pipeline's time goes (cProfile, tottime):\n" + "\n".join(top))
    record = {
        "command": "python benchmarks/data_loading.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, 1 thread used",
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "source": source,
        "clip": "8 frames at 16 fps decoded at short side 128, crop 112; 2 s of 16 kHz audio",
        "clips_per_s_per_core": {k: round(v, 2) for k, v in rates.items()},
        "ratios": {k: round(v, 2) for k, v in ratios.items()},
        "profile_top": top,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    md = ["| loader | clips/s per core |", "|---|---|"]
    md += [f"| {k} | {v:.1f} |" for k, v in rates.items()]
    md += [
        "",
        f"pipeline / decode-only: {ratios['pipeline_vs_decode_only']:.2f}x; "
        f"pipeline / straightforward: {ratios['pipeline_vs_straightforward']:.2f}x",
        "",
        f"`{record['command']}` on {record['machine']} (load {record['load_average_1min_at_end']}); {source}",
    ]
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    assert math.isfinite(rates["pipeline"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
