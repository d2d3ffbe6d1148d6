"""Training throughput on this machine: clips/s and where a step's time goes.

For each model size, a training step is timed in parts: data wait (the time ``next()`` on the
DataLoader blocks), video forward, audio forward, objective (AVID NCE over a memory bank with 1024
sampled negatives), backward, optimiser step, and the memory-bank update. Batches come from the
training pipeline (``AVClipDataset`` with the default training augmentation, ``--workers``
DataLoader processes) on a synthetic collection made once under ``.cache/train_throughput``;
``--workers 0`` loads in the training process, ``--in-memory`` reuses one random batch (data
loading excluded, as ``data_loading.py`` measures that side).

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
from typing import Any

import torch
from torch.utils.data import DataLoader

from avlearn.models.registry import ModelConfig, build_av_model
from avlearn.objectives import AVIDLoss

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # data_prep, when run as a script
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / ".cache" / "train_throughput"
SIZES = {
    "tiny": ("r2plus1d_tiny", "avid_spec_cnn9_tiny"),
    "small": ("r2plus1d_small", "avid_spec_cnn9_small"),
    "full": ("r2plus1d_18", "avid_spec_cnn9"),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def loader(batch: int, crop: int, workers: int, videos: int = 32) -> DataLoader[Any]:
    """The training pipeline's DataLoader over a synthetic collection (made once, 3 s, 144 px)."""
    from avlearn.data.audio import SpecConfig
    from avlearn.data.dataset import AVClipDataset, av_collate
    from avlearn.data.decode import ClipSpec
    from avlearn.data.transforms import (
        AudioAugConfig,
        VideoAugConfig,
        build_audio_transform,
        build_video_transform,
    )
    from data_prep.index import index_collection
    from data_prep.synth import SynthConfig, generate

    out = CACHE / f"synth_n{videos}"
    manifest = out / "manifest.csv"
    if not manifest.exists():
        generate(SynthConfig(out=out, num_videos=videos, seed=0, duration=3.0, size=144, workers=2),
                 progress=False)
        index_collection([out / "videos"], manifest, workers=2, progress=False)
    spec = ClipSpec(num_frames=8, fps=16, size=round(crop * 8 / 7), audio_seconds=2.0, sample_rate=16000)
    ds = AVClipDataset(manifest, spec, "pyav", clips_per_video=64, seed=0,
                       video_transform=build_video_transform(VideoAugConfig(size=crop), True),
                       audio_transform=build_audio_transform(AudioAugConfig(), SpecConfig(), True))
    return DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=av_collate,
                      persistent_workers=workers > 0, drop_last=True)


def bench(size: str, batch: int, steps: int, crop: int, device: torch.device, bank: int,
          data: DataLoader[Any] | None) -> dict[str, float]:
    """Mean seconds per part of a step (after one warm-up step) and clips/s."""
    video_arch, audio_arch = SIZES[size]
    model = build_av_model(ModelConfig(video_arch=video_arch, audio_arch=audio_arch)).to(device)
    objective = AVIDLoss(bank, 128, num_negatives=1024).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    video = torch.rand(batch, 3, 8, crop, crop, device=device)
    audio = torch.randn(batch, 1, 257, 200, device=device)  # 2 s, AVID spectrogram
    batches = iter(data) if data is not None else None
    parts = dict.fromkeys(
        ("data_wait", "video_forward", "audio_forward", "objective", "backward", "optimizer", "bank_update"),
        0.0,
    )
    for step in range(steps + 1):
        index = torch.randint(0, bank, (batch,), device=device)
        marks = [time.perf_counter()]

        def mark(marks: list[float] = marks) -> None:
            _sync(device)
            marks.append(time.perf_counter())

        if batches is not None:
            b = next(batches)
            video, audio = b["video"].to(device), b["audio"].to(device)
            index = b["index"].to(device) % bank
        mark()
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
        data_wait_share=round(parts["data_wait"] / total, 4),
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
    parser.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    parser.add_argument("--in-memory", action="store_true", help="one random batch, no data loading")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    data = None if args.in_memory else loader(args.batch, args.crop, args.workers)
    results = {s: bench(s, args.batch, args.steps, args.crop, device, args.bank, data) for s in args.sizes}

    cols = [
        "clips_per_s",
        "step_s",
        "data_wait",
        "data_wait_share",
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
    source = ("one random in-memory batch (no data loading)" if args.in_memory else
              f"batches from the training pipeline (AVClipDataset, default augmentation, AVID spectrogram) "
              f"with {args.workers} DataLoader worker(s) on synthetic 144 px videos")
    note = (
        f"batch {args.batch}, 8x{args.crop}x{args.crop} video + 2 s audio, fp32, seconds per step part; "
        f"{source}; {machine}; load average {os.getloadavg()[0]:.2f}; `{command}`"
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
                "data": "in-memory" if args.in_memory else f"pipeline, {args.workers} DataLoader worker(s)",
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
