"""Training throughput on this machine: clips/s and where a step's time goes.

For each model size, a training step on in-memory batches (so data loading is excluded; see
``data_loading.py`` for that side) is timed in parts: video forward, audio forward, objective
(AVID NCE over a memory bank with 1024 sampled negatives), backward, optimiser step, and the
memory-bank update.

    python benchmarks/train_throughput.py                        # tiny, small, full on CPU
    python benchmarks/train_throughput.py --sizes full --batch 16 --steps 5

Writes ``benchmarks/results/train_throughput_<device>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from avlearn.models.registry import ModelConfig, build_av_model
from avlearn.objectives import AVIDLoss

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = {
    "tiny": ("r2plus1d_tiny", "avid_spec_cnn9_tiny"),
    "small": ("r2plus1d_small", "avid_spec_cnn9_small"),
    "full": ("r2plus1d_18", "avid_spec_cnn9"),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(size: str, batch: int, steps: int, crop: int, device: torch.device, bank: int) -> dict[str, float]:
    """Mean seconds per part of a step (after one warm-up step) and clips/s."""
    video_arch, audio_arch = SIZES[size]
    model = build_av_model(ModelConfig(video_arch=video_arch, audio_arch=audio_arch)).to(device)
    objective = AVIDLoss(bank, 128, num_negatives=1024).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    video = torch.rand(batch, 3, 8, crop, crop, device=device)
    audio = torch.randn(batch, 1, 257, 200, device=device)  # 2 s, AVID spectrogram
    parts = dict.fromkeys(
        ("video_forward", "audio_forward", "objective", "backward", "optimizer", "bank_update"), 0.0
    )
    for step in range(steps + 1):
        index = torch.randint(0, bank, (batch,), device=device)
        marks = [time.perf_counter()]

        def mark(marks: list[float] = marks) -> None:
            _sync(device)
            marks.append(time.perf_counter())

        v = model.encode_video(video)
        mark()
        a = model.encode_audio(audio)
        mark()
        loss, _ = objective(v, a, index, update_memory=False)
        mark()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        mark()
        opt.step()
        mark()
        with torch.no_grad():
            objective.update_memory(v.detach(), a.detach(), index)
        mark()
        if step > 0:  # the first step pays for allocations and kernel selection
            for name, t0, t1 in zip(parts, marks, marks[1:], strict=False):
                parts[name] += (t1 - t0) / steps
    total = sum(parts.values())
    out = {k: round(v, 4) for k, v in parts.items()}
    out.update(
        step_s=round(total, 4),
        clips_per_s=round(batch / total, 2),
        objective_and_bank_share=round((parts["objective"] + parts["bank_update"]) / total, 4),
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--batch", type=int, default=8, help="clips per step")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per size (after one warm-up)")
    parser.add_argument("--crop", type=int, default=112, help="frame crop (8 frames)")
    parser.add_argument("--bank", type=int, default=10_000, help="memory-bank entries")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    results = {s: bench(s, args.batch, args.steps, args.crop, device, args.bank) for s in args.sizes}

    cols = [
        "clips_per_s",
        "step_s",
        "video_forward",
        "audio_forward",
        "objective",
        "backward",
        "optimizer",
        "bank_update",
        "objective_and_bank_share",
    ]
    lines = ["| size | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {s} | " + " | ".join(str(r[c]) for c in cols) + " |" for s, r in results.items()]
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    )
    command = "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:] if argv is None else argv)
    note = (
        f"batch {args.batch}, 8x{args.crop}x{args.crop} video + 2 s audio (257x200), fp32, "
        f"seconds per step part; {machine}; load average {os.getloadavg()[0]:.2f}; `{command}`"
    )
    print("\n".join(lines) + "\n\n" + note)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"train_throughput_{device.type}"
    stem.with_suffix(".json").write_text(
        json.dumps(
            {
                "command": command,
                "machine": machine,
                "batch": args.batch,
                "crop": args.crop,
                "load_average_1min": round(os.getloadavg()[0], 2),
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n\n" + note + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
