"""Clips decoded per second per core, for each decoding backend.

One process, one thread (``torch.set_num_threads(1)``, decord with one thread), so the figure
is per core; a DataLoader with W workers scales it by about W on W free cores. Each clip is the
training request: 8 frames at 16 fps resized to 112 on the short side plus 2 s of 16 kHz mono
audio, at a random start.

    python benchmarks/decode_speed.py                       # generates a small synthetic collection
    python benchmarks/decode_speed.py --manifest data/x/manifest.csv --clips 200

Prints a table and writes ``benchmarks/results/decode_speed.json`` (with the command line).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import torch

from avlearn.data.decode import DECODERS, ClipSpec, decode_clip
from avlearn.data.manifest import VideoInfo, read_manifest

RESULTS = Path(__file__).resolve().parent / "results"


def _synthetic_manifest(root: Path, num_videos: int, size: int) -> list[VideoInfo]:
    from data_prep.index import index_collection
    from data_prep.synth import SynthConfig, generate

    generate(SynthConfig(out=root, num_videos=num_videos, size=size, seed=0), progress=False)
    index_collection([root / "videos"], root / "manifest.csv", workers=2, progress=False)
    return read_manifest(root / "manifest.csv")  # resolves the manifest's relative paths


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--manifest", type=Path, help="manifest of the collection (default: generate one)")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(".cache/bench_synth"),
        help="where to generate the synthetic collection when --manifest is not given",
    )
    parser.add_argument("--num-videos", type=int, default=16, help="videos to generate")
    parser.add_argument("--video-size", type=int, default=112, help="generated videos' frame size")
    parser.add_argument("--clips", type=int, default=100, help="clips timed per backend")
    parser.add_argument("--backends", nargs="+", default=sorted(DECODERS), choices=sorted(DECODERS))
    parser.add_argument("--size", type=int, default=112, help="output short side")
    parser.add_argument("--out", type=Path, default=RESULTS / "decode_speed.json")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    if args.manifest:
        rows = [r for r in read_manifest(args.manifest) if r.usable_av]
        source = str(args.manifest)
    else:
        rows = _synthetic_manifest(args.work, args.num_videos, args.video_size)
        rows = [r for r in rows if r.usable_av]
        source = f"synthetic: {args.num_videos} videos {args.video_size}px"
    spec = ClipSpec(num_frames=8, fps=16, size=args.size, audio_seconds=2.0, sample_rate=16000)
    results = {b: bench(rows, b, spec, args.clips) for b in args.backends}
    what = f"{args.clips} clips of 8x{args.size}px + 2 s audio; {source}"
    print(f"{'backend':<8} {'clips/s/core':>12}  ({what})")
    for name, r in results.items():
        print(f"{name:<8} {r['clips_per_s_per_core']:>12.1f}")
    record = {
        "command": "python benchmarks/decode_speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "source": source,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread",
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),  # other work on the machine slows it
        "spec": {"num_frames": 8, "fps": 16, "size": args.size, "audio_seconds": 2.0, "sample_rate": 16000},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
