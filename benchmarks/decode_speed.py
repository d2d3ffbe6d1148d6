"""Clips decoded per second per core, for each decoding backend.

One process, one thread (``torch.set_num_threads(1)``, decord with one thread), so the figure
is per core; a DataLoader with W workers scales it by about W on W free cores. Each clip is the
training request: 8 frames at 16 fps resized to 112 on the short side plus 2 s of 16 kHz mono
audio, at a random start.

    python -m benchmarks.decode_speed                   # generates a small synthetic collection
    python -m benchmarks.decode_speed --manifest data/x/manifest.csv --clips 200

Prints a table and writes ``benchmarks/results/decode_speed.json`` (with the command line).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any

import torch

from avlearn.data.decode import DECODERS, ClipSpec, decode_clip
from avlearn.data.manifest import VideoInfo, read_manifest
from benchmarks import harness

NAME = "decode_speed"


def bench(rows: list[VideoInfo], backend: str, spec: ClipSpec, clips: int, seed: int = 0) -> dict[str, float]:
    """Decode ``clips`` random clips (after 3 warm-up clips) and time them."""
    rng = random.Random(seed)
    requests = []
    for _ in range(clips + 3):
        row = rng.choice(rows)
        span = max(spec.video_seconds, spec.audio_seconds)
        requests.append((row.path, rng.uniform(0.0, max((row.duration or span) - span, 0.0))))
    for path, start in requests[:3]:
        decode_clip(path, start, spec, backend)
    t0 = time.perf_counter()
    for path, start in requests[3:]:
        decode_clip(path, start, spec, backend)
    seconds = time.perf_counter() - t0
    return {"clips": clips, "seconds": round(seconds, 3), "clips_per_s_per_core": round(clips / seconds, 2)}


def parser() -> argparse.ArgumentParser:
    p = harness.parser(__doc__, NAME)
    harness.add_collection_options(p, ".cache/bench_synth", num_videos=16, video_size=112)
    p.add_argument("--clips", type=int, default=100, help="clips timed per backend")
    p.add_argument("--backends", nargs="+", default=sorted(DECODERS), choices=sorted(DECODERS))
    p.add_argument("--size", type=int, default=112, help="output short side")
    return p


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Clips/s per core of each backend on the collection (one torch thread)."""
    torch.set_num_threads(1)
    manifest, source = harness.collection_manifest(args)
    rows = [r for r in read_manifest(manifest) if r.usable_av]  # resolves the manifest's relative paths
    spec = ClipSpec(num_frames=8, fps=16, size=args.size, audio_seconds=2.0, sample_rate=16000)
    results = {b: bench(rows, b, spec, args.clips) for b in args.backends}
    return {"source": source, "load_average_1min_at_end": harness.load_1min(),
            "spec": {"num_frames": 8, "fps": 16, "size": args.size, "audio_seconds": 2.0,
                     "sample_rate": 16000},
            "results": results}


def headline(record: dict[str, Any]) -> str:
    spec = record["spec"]
    figures = ", ".join(f"{name} {harness.num(r['clips_per_s_per_core'])}"
                        for name, r in record["results"].items())
    return f"clips/s per core ({spec['num_frames']}x{spec['size']} px + audio): {figures}"


def markdown(record: dict[str, Any]) -> str:
    lines = [f"{'backend':<8} {'clips/s/core':>12}  ({record['source']})"]
    lines += [f"{name:<8} {r['clips_per_s_per_core']:>12.1f}" for name, r in record["results"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return harness.run(NAME, argv, parser(), measure, markdown)


if __name__ == "__main__":
    sys.exit(main())
