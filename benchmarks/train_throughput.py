"""Training throughput on this machine: clips/s and where a step's time goes.

For each model size, a training step is timed in parts: data wait (the time ``next()`` on the
DataLoader blocks), video forward, audio forward, objective (AVID NCE over a memory bank with 1024
sampled negatives), backward, optimiser step, and the memory-bank update. Batches come from the
training pipeline (``AVClipDataset`` with the default training augmentation, ``--workers``
DataLoader processes) on a synthetic collection made once under ``.cache/train_throughput``;
``--workers 0`` loads in the training process, ``--in-memory`` reuses one random batch (data
loading excluded, as ``data_loading.py`` measures that side).

    python -m benchmarks.train_throughput                        # tiny, small, full on CPU
    python -m benchmarks.train_throughput --sizes full --batch 16 --steps 5

Writes ``benchmarks/results/train_throughput_<device>.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch
from torch.utils.data import DataLoader

from avlearn.models.registry import ModelConfig, build_av_model
from avlearn.objectives import AVIDLoss
from benchmarks import harness

NAME = "train_throughput"
CACHE = harness.CACHE / NAME
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

    out = harness.synthetic_collection(CACHE / f"synth_n{videos}", num_videos=videos, seed=0, duration=3.0,
                                       size=144)
    manifest = out / "manifest.csv"
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


COLUMNS = ("clips_per_s", "step_s", "data_wait", "data_wait_share", "video_forward", "audio_forward",
           "objective", "backward", "optimizer", "bank_update", "objective_and_bank_share")


def parser() -> argparse.ArgumentParser:
    p = harness.parser(__doc__, NAME, out=harness.RESULTS / f"{NAME}_<device>")
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--batch", type=int, default=8, help="clips per step")
    p.add_argument("--steps", type=int, default=3, help="timed steps per size (after one warm-up)")
    p.add_argument("--crop", type=int, default=112, help="frame crop (8 frames)")
    p.add_argument("--bank", type=int, default=10_000, help="memory-bank entries")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    p.add_argument("--in-memory", action="store_true", help="one random batch, no data loading")
    return p


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per part of a training step and clips/s for each model size."""
    device = torch.device(args.device)
    data = None if args.in_memory else loader(args.batch, args.crop, args.workers)
    results = {s: bench(s, args.batch, args.steps, args.crop, device, args.bank, data) for s in args.sizes}
    return {"batch": args.batch, "crop": args.crop,
            "data": "in-memory" if args.in_memory else f"pipeline, {args.workers} DataLoader worker(s)",
            "load_average_1min": harness.load_1min(), "results": results}


def headline(record: dict[str, Any]) -> str:
    res = record["results"]
    sizes = ", ".join(f"{s} {harness.num(r['clips_per_s'])}" for s, r in res.items())
    share = max(r["objective_and_bank_share"] for r in res.values())
    source = "in-memory batches" if record.get("data", "in-memory") == "in-memory" else "pipeline batches"
    return (f"clips/s at batch {record['batch']}, 8x{record['crop']}², {source}: {sizes}; "
            f"objective + bank <= {harness.pct(share)} of a step")


def markdown(record: dict[str, Any]) -> str:
    lines = ["| size | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    lines += [f"| {s} | " + " | ".join(str(r[c]) for c in COLUMNS) + " |"
              for s, r in record["results"].items()]
    source = ("one random in-memory batch (no data loading)" if record["data"] == "in-memory" else
              f"batches from the training pipeline (AVClipDataset, default augmentation, AVID spectrogram) "
              f"with {record['data'].removeprefix('pipeline, ')} on synthetic 144 px videos")
    crop = record["crop"]
    note = (f"batch {record['batch']}, 8x{crop}x{crop} video + 2 s audio, fp32, seconds per step part; "
            f"{source}; {harness.machine_text(record)}; `{record['command']}`")
    return "\n".join(lines) + "\n\n" + note


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.out == parser().get_default("out"):
        args.out = harness.RESULTS / f"{NAME}_{torch.device(args.device).type}"
    record = {**harness.record_for(NAME, argv), **measure(args)}
    harness.write(args.out, record, markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
