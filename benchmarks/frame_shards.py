"""CPU cost of a training clip from frame shards (JPEG frames + PCM audio) vs today's H.264 shards and
files, the bytes each layout keeps on disk, and how far a frame-shard clip is from the file path's.

One process, one thread (torch, codecs, FFmpeg's scaler), so each figure is per CPU core; the time is
the process's CPU time (``time.process_time``), so other work on a shared machine inflates it less
than wall time. Sources are timed clip by clip in a rotating order (a change in load hits them
alike). A clip: 8 frames at 16 fps and 2 s of audio, through ``build_train_dataset``'s default
pipeline (random resized crop, flip, colour jitter, greyscale, normalise; AVID spectrogram):

* **files**: ``data.source: files``, PyAV decoding of the manifest's files;
* **h264 shards**: ``data.source: shards`` over ``avlearn prepare shard --short-side <decode size>``
  (H.264 re-encoded to the decode size: today's cheapest H.264 shards), read in order;
* **frames**: ``data.source: frames`` over ``avlearn prepare shard --format frames``: JPEG decoded on
  the CPU (``torchvision.io.decode_jpeg``), then the same transforms;
* **frames, augment_on=device**: the worker reads and decodes the JPEGs and draws the random
  parameters; crops, colour and the spectrogram run on the accelerator;
* **frames, bytes only**: what is left for a worker when the GPU decodes the JPEGs in batches
  (``decode_jpegs(..., device="cuda")``): the record, the chosen frames' JPEG bytes and the PCM
  window read by offset, no decoding.

Two settings: 8x112² crops from frames decoded at short side 128, and 8x224² from 256. Bytes per
clip-second are each layout's shard bytes over the seconds of video they hold. The synthetic
collection is simpler than real video (flat backgrounds): JPEG and H.264 both shrink more than on
real clips, so the byte ratio, not the absolute size, is the figure to carry over.

    python -m benchmarks.frame_shards   # ~2-3 min on one core; writes benchmarks/results/frame_shards.*
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avlearn.data.config import DataConfig, build_train_dataset, clip_spec
from avlearn.data.dataset import AVClipDataset
from avlearn.data.decode import clip_frame_times
from avlearn.data.decoding.frames import nearest
from avlearn.data.frame_shards import FrameShardDataset
from avlearn.data.loader import build_loader
from avlearn.data.transforms import VideoAugConfig
from benchmarks import harness
from data_prep.frame_shard import FRAMES_FORMAT, FrameOptions, describe, head, load_frames
from data_prep.shard import MEDIA, MapEngine, Packing, ShardOptions, write_shards

NAME = "frame_shards"
SETTINGS = {"8x112": (112, 128), "8x224": (224, 256)}  # name -> (crop, decode short side)
GOALS = {"8x112": 316.0, "8x224": 142.0}  # clips/s per core of CPU work (issue 30)
SOURCES = {
    "files": "files (PyAV)",
    "h264_shards": "H.264 shards (short side = decode size)",
    "frames": "frames (JPEG on the CPU)",
    "frames_device": "frames, augment_on=device",
    "frames_bytes": "frames, bytes only (JPEG decoded on the GPU)",
}


def parser() -> argparse.ArgumentParser:
    p = harness.parser(__doc__, NAME)
    harness.add_collection_options(p, ".cache/bench/frame_shards", num_videos=12, video_size=320)
    p.add_argument("--clips", type=int, default=60, help="clips timed per source and setting")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of the frame shards")
    p.add_argument("--workers", type=int, default=2, help="processes writing the shards")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: figures per core)")
    return p


# ------------------------------------------------------------------------------------ the shards
def _shards(manifest: Path, work: Path, decode: int, args: argparse.Namespace) -> dict[str, Any]:
    """The layouts at ``decode``, written afresh: their index paths, bytes and writing seconds."""
    engine = MapEngine(workers=args.workers)
    out: dict[str, Any] = {}
    layouts = (("frames", _packing(decode, args.quality, 0.0)), ("h264_shards", MEDIA),
               ("frames_16fps", _packing(decode, args.quality, 16.0)))
    for name, packing in layouts:
        folder = work / f"{name}_{decode}"
        start = time.perf_counter()
        shard_opts = ShardOptions(short_side=decode if packing is MEDIA else 0)
        index = write_shards(manifest, folder, shard_opts, overwrite=True, progress=False, engine=engine,
                             packing=packing)
        out[name] = {"index": folder / "index.json", "write_s": round(time.perf_counter() - start, 2),
                     "bytes": sum((folder / s["name"]).stat().st_size for s in index["shards"])}
    return out


def _packing(decode: int, quality: int, frame_rate: float) -> Packing:
    opts = FrameOptions(decode_size=decode, quality=quality, frame_rate=frame_rate)
    return Packing(FRAMES_FORMAT, load_frames, opts, head(opts), describe)


# ------------------------------------------------------------------------------------ the sources
def _config(manifest: Path, crop: int, decode: int) -> DataConfig:
    return DataConfig(manifest=str(manifest), decode_size=decode, video_aug=VideoAugConfig(size=crop),
                      shuffle_buffer=0, shard_streams=1, num_workers=0, seed=0)


def _bytes_only(ds: FrameShardDataset) -> Callable[[int], Any]:
    """A worker's reads when the GPU decodes: record, the chosen JPEGs' bytes, the PCM window."""
    spec, reader = ds.spec, ds.reader
    rng = np.random.default_rng(0)

    def read(i: int) -> Any:
        row = ds.videos[i % len(ds.videos)]
        rec = reader.record(row.path)
        start = float(rng.uniform(0, max(rec.video_duration - spec.video_seconds, 0)))
        chosen = np.unique(nearest(rec.times, clip_frame_times(start, spec)))
        return reader.jpegs(row.path, rec, chosen), reader.audio(row.path, rec, start, spec.num_samples)

    return read


def _sources(manifest: Path, shards: dict[str, Any], crop: int,
             decode: int) -> dict[str, Callable[[int], Any]]:
    cfg = _config(manifest, crop, decode)
    frames_cfg = dataclasses.replace(cfg, source="frames", shards=str(shards["frames"]["index"]))
    h264_cfg = dataclasses.replace(cfg, source="shards", shards=str(shards["h264_shards"]["index"]))
    h264 = build_train_dataset(h264_cfg)
    loader, order = build_loader(h264, batch_size=1, seed=0, num_workers=0)
    order.set_epoch(0)
    stream = iter(loader)

    def next_h264(i: int) -> Any:
        nonlocal stream
        try:
            return next(stream)
        except StopIteration:  # a new epoch of the (small) collection
            order.set_epoch(i)
            stream = iter(loader)
            return next(stream)

    files, frames = build_train_dataset(cfg), build_train_dataset(frames_cfg)
    device = build_train_dataset(dataclasses.replace(frames_cfg, augment_on="device"))
    assert isinstance(frames, FrameShardDataset)
    return {"files": lambda i: files[i % len(files)], "h264_shards": next_h264,
            "frames": lambda i: frames[i % len(frames)], "frames_device": lambda i: device[i % len(device)],
            "frames_bytes": _bytes_only(frames)}


def _time(sources: dict[str, Callable[[int], Any]], clips: int) -> dict[str, float]:
    """CPU ms per clip of each source, clip by clip in a rotating order (one warm-up clip each)."""
    names = list(sources)
    for name in names:
        sources[name](0)
    spent = dict.fromkeys(names, 0.0)
    for i in range(clips):
        for name in names[i % len(names):] + names[: i % len(names)]:
            start = time.process_time()
            sources[name](i + 1)
            spent[name] += time.process_time() - start
    return {name: round(1000 * s / clips, 3) for name, s in spent.items()}


def _distance(manifest: Path, index: Path, decode: int, clips: int = 8) -> dict[str, float]:
    """Raw clips (no transforms) of the file path vs the frame shards: mean |video| in [0, 1], max |audio|."""
    spec = dataclasses.replace(clip_spec(_config(manifest, 112, decode)), size=decode)
    files, frames = AVClipDataset(manifest, spec, seed=1), FrameShardDataset(index, spec, seed=1)
    video, audio = [], []
    for i in range(min(clips, len(files))):
        a, b = files[i], frames[i]
        video.append(float((a["video"] - b["video"]).abs().mean()))
        audio.append(float((a["audio"] - b["audio"]).abs().max()))
    return {"video_mean_abs": round(harness.mean(video), 5), "audio_max_abs": max(audio),
            "audio_max_abs_in_pcm_steps": round(max(audio) * 32768, 3)}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    manifest, source = harness.collection_manifest(args)
    from avlearn.data.manifest import read_manifest

    seconds = sum(r.duration for r in read_manifest(manifest))
    settings: dict[str, Any] = {}
    for name, (crop, decode) in SETTINGS.items():
        shards = _shards(manifest, Path(args.work) / "shards", decode, args)
        ms = _time(_sources(manifest, shards, crop, decode), args.clips)
        settings[name] = {
            "crop": crop, "decode_size": decode,
            "cpu_ms_per_clip": ms,
            "clips_per_s_per_core": {k: round(1000 / v, 1) for k, v in ms.items()},
            "bytes_per_clip_second": {k: round(v["bytes"] / seconds) for k, v in shards.items()},
            "write_s_per_video_s": {k: round(v["write_s"] / seconds, 3) for k, v in shards.items()},
            "distance_to_file_path": _distance(manifest, shards["frames"]["index"], decode),
            "goal_clips_per_s_per_core": GOALS[name],
        }
    source_bytes = sum(Path(r.path).stat().st_size for r in read_manifest(manifest))
    return {"collection": source, "video_seconds": round(seconds, 2), "clips": args.clips,
            "writers": args.workers,
            "jpeg_quality": args.quality, "source_bytes_per_clip_second": round(source_bytes / seconds),
            "settings": settings}


# ------------------------------------------------------------------------------------ the report
def _met(rate: float, goal: float) -> str:
    return "met" if rate >= goal else "not met"


def headline(record: dict[str, Any]) -> str:
    parts = []
    for name, s in record["settings"].items():
        rates, goal = s["clips_per_s_per_core"], s["goal_clips_per_s_per_core"]
        ratio = s["bytes_per_clip_second"]["frames"] / s["bytes_per_clip_second"]["h264_shards"]
        parts.append(f"{name}²: frames {rates['frames']:.0f} clips/s/core (goal {goal:g}: "
                     f"{_met(rates['frames'], goal)}; augment_on=device {rates['frames_device']:.0f}, "
                     f"GPU-decoded {rates['frames_bytes']:.0f}), files {rates['files']:.0f}; "
                     f"{ratio:.1f}x H.264's bytes")
    return "; ".join(parts)


def markdown(record: dict[str, Any]) -> str:
    lines = [f"# Frame shards vs H.264 shards and files ({record['collection']})", "",
             f"`{record['command']}`", "",
             f"Machine: {harness.machine_text(record)}. {record['clips']} clips per source and setting, "
             f"one thread, CPU time; JPEG quality {record['jpeg_quality']}.", "",
             "| setting | source | CPU ms / clip | clips/s per core | goal |", "|---|---|---|---|---|"]
    for name, s in record["settings"].items():
        goal = s["goal_clips_per_s_per_core"]
        for key, label in SOURCES.items():
            rate = s["clips_per_s_per_core"][key]
            lines.append(f"| {name}² (decode {s['decode_size']}) | {label} | "
                         f"{s['cpu_ms_per_clip'][key]:.2f} | {rate:.0f} | {goal:g}: {_met(rate, goal)} |")
    lines += ["", "| setting | frames bytes / clip-s | H.264 shards bytes / clip-s | ratio | frames at "
              "`--frame-rate 16` | source files bytes / clip-s | writing: wall s per video-s, "
              f"{record['writers']} processes (frames, H.264) | "
              "frames vs file path: mean abs video [0, 1], max abs audio (PCM steps) |",
              "|---|---|---|---|---|---|---|---|"]
    for name, s in record["settings"].items():
        b, w, d = s["bytes_per_clip_second"], s["write_s_per_video_s"], s["distance_to_file_path"]
        ratio = b["frames"] / b["h264_shards"]
        lines.append(f"| {name}² | {b['frames']} | {b['h264_shards']} | {ratio:.1f}x | {b['frames_16fps']} | "
                     f"{record['source_bytes_per_clip_second']} | {w['frames']}, {w['h264_shards']} | "
                     f"{d['video_mean_abs']}, {d['audio_max_abs_in_pcm_steps']} |")
    lines += ["", f"Headline: {headline(record)}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    torch.set_num_threads(1)
    return harness.run(NAME, argv, parser(), measure, markdown)


if __name__ == "__main__":
    sys.exit(main())
