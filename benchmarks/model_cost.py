"""Parameters and forward FLOPs of every registered encoder and head, and CPU clips/s of the two R(2+1)D-18s.

FLOPs come from ``torch.utils.flop_counter`` (a multiply-add counts 2) on the meta device, so
no memory or time is spent: video at 3x8x112² and 3x8x224², audio on 2 s of spectrogram
(257 x 200, what both ``avid_db`` at 24 kHz and ``avid_linear`` at 16 kHz give), heads on one
512-d embedding. Then, on the CPU, clips/s of a training step (forward + backward, batch 2,
8x112²) and of inference (forward, batch 4) of AVID-CMA's ``r2plus1d_18_avid`` and
torchvision's ``r2plus1d_18``, with the thread count and load average recorded.

    python -m benchmarks.model_cost               # writes benchmarks/results/model_cost.{json,md}
    python -m benchmarks.model_cost --steps 0     # FLOPs and parameters only
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from avlearn.models.registry import AUDIO_ENCODERS, HEADS, VIDEO_ENCODERS
from benchmarks import harness

NAME = "model_cost"
VIDEO_SHAPES = {"8x112": (1, 3, 8, 112, 112), "8x224": (1, 3, 8, 224, 224)}
AUDIO_SHAPE = (1, 1, 257, 200)  # 2 s: 257 bins x 200 frames of 10 ms
SPEED_ARCHS = harness.full_size(VIDEO_ENCODERS)  # the real networks, not the CPU-sized variants


def params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def gflop(model: nn.Module, shape: tuple[int, ...]) -> tuple[float, list[int]]:
    """Forward GFLOP of ``model`` on one input of ``shape`` (meta device) and its output grid shape."""
    with torch.device("meta"):
        x = torch.empty(shape)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(x)
    grid = list(getattr(out, "grid", out).shape[1:])
    return counter.get_total_flops() / 1e9, grid


def encoder_costs() -> dict[str, Any]:
    video = {}
    for name, build in VIDEO_ENCODERS.items():
        with torch.device("meta"):
            model = build().eval()
        entry: dict[str, Any] = {"params": params(model)}
        for key, shape in VIDEO_SHAPES.items():
            entry[f"gflop_{key}"], entry[f"grid_{key}"] = gflop(model, shape)
        video[name] = entry
    audio = {}
    for name, build_audio in AUDIO_ENCODERS.items():
        with torch.device("meta"):
            spec_cnn = build_audio().eval()
        cost, grid = gflop(spec_cnn, AUDIO_SHAPE)
        audio[name] = {"params": params(spec_cnn), "gflop_2s": cost, "grid_2s": grid}
    heads = {name: {"params": params(build(512, 128, 512))} for name, build in HEADS.items()}
    return {"video": video, "audio": audio, "heads_512_512_128": heads}


def clips_per_s(name: str, steps: int, train: bool) -> float:
    """Clips/s of ``steps`` timed iterations (after one warm-up) on random 8x112² clips."""
    torch.manual_seed(0)
    model = VIDEO_ENCODERS[name]().train(train)
    batch = 2 if train else 4
    x = torch.randn(batch, 3, 8, 112, 112)
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        if train:
            model(x).emb.sum().backward()
        else:
            with torch.no_grad():
                model(x)
        if i:
            times.append(time.perf_counter() - start)
    return batch * len(times) / sum(times)


def headline(record: dict[str, Any]) -> str:
    """Parameters and GFLOP at 8x112² of each video encoder."""
    video = ", ".join(f"{n} {e['params'] / 1e6:.1f} M / {e['gflop_8x112']:.0f}"
                      for n, e in record["video"].items())
    return f"video encoders, parameters / GFLOP at 8x112²: {video}"


def markdown(res: dict[str, Any]) -> str:
    lines = ["# Encoder cost (`python -m benchmarks.model_cost`)", "", f"Command: `{res['command']}`", "",
             "| video encoder | parameters | GFLOP 8x112² (grid) | GFLOP 8x224² (grid) |",
             "|---|---|---|---|"]
    for name, e in res["video"].items():
        lines.append(f"| `{name}` | {e['params'] / 1e6:.2f} M | {e['gflop_8x112']:.1f} ({e['grid_8x112']}) | "
                     f"{e['gflop_8x224']:.1f} ({e['grid_8x224']}) |")
    lines += ["", "| audio encoder | parameters | GFLOP 2 s (257x200) (grid) |", "|---|---|---|"]
    for name, e in res["audio"].items():
        lines.append(f"| `{name}` | {e['params'] / 1e6:.2f} M | {e['gflop_2s']:.2f} ({e['grid_2s']}) |")
    lines += ["", "Heads 512 -> 128: " + ", ".join(f"`{k}` {v['params']:,}" for k, v in
                                                      res["heads_512_512_128"].items())]
    if res.get("cpu_clips_per_s"):
        lines += ["", f"CPU clips/s at 8x112² ({res['machine']['torch_threads']} torch threads, load "
                  f"{res['load_average_1min']:.1f}):", ""]
        lines += [f"- `{n}`: train step {v['train']:.2f}, inference {v['inference']:.2f}"
                  for n, v in res["cpu_clips_per_s"].items()]
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = harness.parser(__doc__, NAME)
    p.add_argument("--steps", type=int, default=3, help="timed iterations per model (0: no timing)")
    return p


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Costs of every registered encoder and head; CPU clips/s of :data:`SPEED_ARCHS` when timed."""
    res: dict[str, Any] = encoder_costs()
    if args.steps > 0:
        res["cpu_clips_per_s"] = {n: {"train": clips_per_s(n, args.steps, True),
                                      "inference": clips_per_s(n, args.steps, False)} for n in SPEED_ARCHS}
    res["load_average_1min"] = harness.load_1min()
    return res


def main(argv: list[str] | None = None) -> int:
    return harness.run(NAME, argv, parser(), measure, markdown)


if __name__ == "__main__":
    raise SystemExit(main())
