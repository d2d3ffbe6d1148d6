"""The decode-only limit, attacked: per-stage milliseconds per clip of the loader's decode, before/after.

What ``data.augment_on=device`` leaves on the CPU is the decode (uint8 frames at the decode size,
the audio window) and the random draws. This times variants of that decode on the same random
clips, interleaved clip by clip (rotating order) and repeated (median of the repeats), with the
decoder's own stage clock (:func:`avlearn.data.decode.stage_times`) counting CPU time of the
process (all its threads; wall time is recorded beside it):

* ``baseline``: :func:`~avlearn.data.decode.decode_clip`, one open per clip, codecs single-threaded,
  frames converted by FFmpeg's bicubic scaler, audio decoded only for the window (plus 0.1 s of
  pre-roll: AAC frames need their predecessor);
* ``k_per_open``: :func:`~avlearn.data.decode.decode_clips`, k windows of one video per open of the
  file (the cost of a visit divided by k);
* ``threads_N_kind``: FFmpeg decoding with N codec threads (``frame`` or ``slice`` threading);
  reported with the cores they keep busy (process CPU time / wall time);
* ``convert_X``: the frame conversion with a cheaper scaler (``bilinear``, ``fast_bilinear``):
  different pixels, so an option, not a default.

    OMP_NUM_THREADS=1 python -m benchmarks.decode_variants --manifest .cache/bench_data_loading/manifest.csv

Writes ``benchmarks/results/decode_variants.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avlearn.data.decode import ClipSpec, decode_clip, decode_clips, stage_times
from avlearn.data.decoding import media, pyav_backend
from avlearn.data.manifest import VideoInfo, read_manifest
from benchmarks import harness

NAME = "decode_variants"
SPEC = ClipSpec(num_frames=8, fps=16, size=128, audio_seconds=2.0, sample_rate=16000, uint8_frames=True)

Request = tuple[str, list[float]]


@contextlib.contextmanager
def codec_threads(count: int, kind: str) -> Iterator[None]:
    """Decode with ``count`` FFmpeg threads of ``kind`` (``FRAME`` / ``SLICE``) inside the block."""
    original = media.single_threaded

    def threaded(stream: Any) -> None:
        codec = stream.codec_context
        if not codec.is_open:
            codec.thread_count = count
            codec.thread_type = kind

    media.single_threaded = threaded  # type: ignore[assignment]
    try:
        yield
    finally:
        media.single_threaded = original  # type: ignore[assignment]


@contextlib.contextmanager
def scaler(interpolation: str) -> Iterator[None]:
    """Convert frames with FFmpeg's ``interpolation`` scaler instead of bicubic inside the block."""
    original = pyav_backend._rgb

    def rgb(frame: Any, width: int, height: int) -> np.ndarray:
        out = pyav_backend._reformatter().reformat(frame, width=width, height=height, format="rgb24",
                                             interpolation=interpolation, threads=1)
        array: np.ndarray = out.to_ndarray()
        return array

    pyav_backend._rgb = rgb  # type: ignore[assignment]
    try:
        yield
    finally:
        pyav_backend._rgb = original  # type: ignore[assignment]


def variants() -> dict[str, Callable[[Request], int]]:
    """Name -> a function decoding one request (a video and k starts) that returns the clips made."""
    def per_clip(req: Request) -> int:
        decode_clip(req[0], req[1][0], SPEC)
        return 1

    def per_open(k: int) -> Callable[[Request], int]:
        def run(req: Request) -> int:
            return len(decode_clips(req[0], req[1][:k], SPEC))
        return run

    def within(ctx: Callable[[], contextlib.AbstractContextManager[None]]) -> Callable[[Request], int]:
        def run(req: Request) -> int:
            with ctx():
                return per_clip(req)
        return run

    out: dict[str, Callable[[Request], int]] = {"baseline": per_clip, "2_per_open": per_open(2),
                                                "4_per_open": per_open(4)}
    for n, kind in ((2, "FRAME"), (2, "SLICE"), (4, "FRAME")):
        out[f"threads_{n}_{kind.lower()}"] = within(lambda n=n, kind=kind: codec_threads(n, kind))  # type: ignore[misc]
    for interp in ("BILINEAR", "FAST_BILINEAR"):
        out[f"convert_{interp.lower()}"] = within(lambda interp=interp: scaler(interp))  # type: ignore[misc]
    return out


def requests(rows: list[VideoInfo], n: int, seed: int, k: int = 4) -> list[Request]:
    rng = random.Random(seed)
    span = max(SPEC.video_seconds, SPEC.audio_seconds) + 0.1
    out = []
    for _ in range(n):
        row = rows[rng.randrange(len(rows))]
        out.append((row.path, [rng.uniform(0, max(row.duration - span, 0)) for _ in range(k)]))
    return out


def time_once(fns: dict[str, Callable[[Request], int]], reqs: list[Request]) -> dict[str, dict[str, float]]:
    """Per variant: ms per clip of wall time, CPU time and each decoder stage, interleaved."""
    names = list(fns)
    acc = {name: {"wall": 0.0, "cpu": 0.0, "clips": 0.0} for name in names}
    stages: dict[str, dict[str, float]] = {name: {} for name in names}
    for j, req in enumerate(reqs):
        for name in names[j % len(names):] + names[: j % len(names)]:
            with stage_times(time.process_time) as st:
                w0, c0 = time.perf_counter(), time.process_time()
                clips = fns[name](req)
                acc[name]["wall"] += time.perf_counter() - w0
                acc[name]["cpu"] += time.process_time() - c0
            acc[name]["clips"] += clips
            for k, v in st.items():
                stages[name][k] = stages[name].get(k, 0.0) + v
    out = {}
    for name in names:
        n = acc[name]["clips"]
        out[name] = {"wall_ms": 1000 * acc[name]["wall"] / n, "cpu_ms": 1000 * acc[name]["cpu"] / n,
                     **{f"{k} ms": 1000 * v / n for k, v in stages[name].items()}}
    return out


def parser() -> argparse.ArgumentParser:
    p = harness.parser(__doc__, NAME)
    p.add_argument("--manifest", type=Path, default=Path(".cache/bench_data_loading/manifest.csv"))
    p.add_argument("--clips", type=int, default=60, help="requests per variant and repeat")
    p.add_argument("--repeats", type=int, default=3)
    return p


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Per-stage ms per clip of each decode variant: the median of interleaved repeats."""
    torch.set_num_threads(1)
    rows = [r for r in read_manifest(args.manifest) if r.usable_av]
    fns = variants()
    reqs = requests(rows, args.clips, seed=0)
    time_once(fns, reqs[:3])  # warm-up
    runs = [time_once(fns, reqs) for _ in range(args.repeats)]
    median = {name: {k: float(np.median([r[name].get(k, 0.0) for r in runs])) for k in runs[0][name]}
              for name in fns}
    return {
        "load_average_at_end": dict(zip(("1min", "5min", "15min"), harness.load_average() or [0.0] * 3,
                                        strict=True)),
        "source": str(args.manifest),
        "clip": "8 frames at 16 fps, uint8 at short side 128; 2 s of 16 kHz audio",
        "repeats": args.repeats, "requests": args.clips,
        "ms_per_clip": {n: {k: round(v, 3) for k, v in m.items()} for n, m in median.items()},
        "clips_per_s_per_core": {n: round(1000 / m["cpu_ms"], 1) for n, m in median.items()},
        "clips_per_s_wall": {n: round(1000 / m["wall_ms"], 1) for n, m in median.items()},
        "cores_used": {n: round(m["cpu_ms"] / m["wall_ms"], 2) for n, m in median.items()},
    }


def headline(record: dict[str, Any]) -> str:
    """Clips/s per core of the baseline decode and of the best variant."""
    rates = record["clips_per_s_per_core"]
    best = max(rates, key=lambda name: rates[name])
    return (f"decode for augment_on=device, clips/s per core: baseline {harness.num(rates['baseline'])}, "
            f"best {best} {harness.num(rates[best])}")


def markdown(record: dict[str, Any]) -> str:
    median, names = record["ms_per_clip"], list(record["ms_per_clip"])
    stages = sorted({k for m in median.values() for k in m if k.endswith(" ms")},
                    key=lambda k: -median["baseline"].get(k, 0.0))
    load = list(record["load_average_at_end"].values())
    md = ["Decode of one clip as `augment_on=device`'s worker does it, ms per clip (median of "
          f"{record['repeats']} interleaved runs of {record['requests']} requests); `baseline` is before, "
          "the others are one change each.", "",
          "| stage | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k in stages:
        cells = " | ".join(f"{median[n].get(k, 0.0):.2f}" for n in names)
        md.append(f"| {k.removesuffix(' ms')} | {cells} |")
    md.append("| **wall** | " + " | ".join(f"**{median[n]['wall_ms']:.2f}**" for n in names) + " |")
    md.append("| CPU (all threads) | " + " | ".join(f"{median[n]['cpu_ms']:.2f}" for n in names) + " |")
    md.append("| cores used | " + " | ".join(f"{record['cores_used'][n]:.2f}" for n in names) + " |")
    rates = record["clips_per_s_per_core"]
    md.append("| clips/s per core | " + " | ".join(f"{rates[n]:.1f}" for n in names) + " |")
    md += ["", f"`{record['command']}` on {harness.machine_text(record)} (load average {load[0]:.2f} / "
           f"{load[1]:.2f} / {load[2]:.2f} at the end: a shared machine); {record['source']}"]
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    return harness.run(NAME, argv, parser(), measure, markdown)


if __name__ == "__main__":
    sys.exit(main())
