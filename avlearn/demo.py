"""``avlearn demo``: the main job on the embedded default (the synthetic audio-visual collection).

Stages (each prints what it did and adds to ``OUT/summary.json``):

1. **generate** a small synthetic collection (``OUT/synth``; resumed when it already exists),
2. **index** it into ``OUT/synth/manifest.csv`` (per-file status, counts),
3. **decode** the same random clips with every backend through the training dataset and a
   multi-worker DataLoader: clips/s, and how closely the backends agree,
4. **batch**: one augmented training batch (video crops and AVID spectrograms) and its shapes,
5. **look**: ``OUT/contact_sheet.png``: one row per action, frames with the ground-truth box of
   the sounding object, and the clip's spectrogram,
6. **pretrain** (``--stages ... pretrain``): self-supervised pretraining on the unlabeled train
   split (``configs/pretrain/synth_cpu.yaml``), held-out retrieval before/after, loss and
   retrieval curves as PNGs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch.nn import functional as F

from avlearn.data.audio import SpecConfig, build_spectrogram
from avlearn.data.config import DataConfig, build_dataset, build_loader
from avlearn.data.dataset import AVClipDataset, FailureTracker, av_collate
from avlearn.data.decode import DECODERS, ClipSpec, decode_clip
from avlearn.data.manifest import read_manifest

__all__ = ["contact_sheet", "main"]


def _stage(name: str) -> float:
    print(f"\n== {name}", flush=True)
    return time.perf_counter()


def decode_stage(manifest: Path, clips: int, workers: int, seed: int) -> dict[str, Any]:
    """Decode the same ``clips`` requests with each backend; clips/s and backend agreement."""
    spec = ClipSpec(num_frames=8, fps=16, size=112, audio_seconds=2.0, sample_rate=16000)
    out: dict[str, Any] = {
        "spec": "8 frames at 16 fps, short side 112, 2 s of 16 kHz audio",
        "workers": workers,
        "clips": clips,
    }
    batches: dict[str, list[dict[str, Any]]] = {}
    for backend in sorted(DECODERS):
        ds = AVClipDataset(manifest, spec, backend, seed=seed, clips_per_video=1)
        subset = torch.utils.data.Subset(ds, range(min(clips, len(ds))))
        loader = torch.utils.data.DataLoader(subset, batch_size=8, num_workers=workers, collate_fn=av_collate)
        tracker = FailureTracker()
        t0 = time.perf_counter()
        batches[backend] = []
        for batch in loader:
            tracker.update(batch)
            batches[backend].append(batch)
        seconds = time.perf_counter() - t0
        n = sum(len(b["video_id"]) for b in batches[backend])
        out[backend] = {
            "clips_per_s": round(n / seconds, 1),
            "seconds": round(seconds, 2),
            "failures": tracker.report(),
        }
        print(
            f"{backend:>7}: {n} clips in {seconds:.1f} s = {n / seconds:.1f} clips/s with {workers} workers "
            f"(incl. worker start-up); {tracker.report()}"
        )
    names = sorted(batches)
    if len(names) == 2:
        a, b = (torch.cat([x["video"] for x in batches[k]]) for k in names)
        wa, wb = (torch.cat([x["audio"] for x in batches[k]]) for k in names)
        out["agreement"] = {
            "video_mean_abs_diff_0_255": round(float((a - b).abs().mean()) * 255, 3),
            "audio_max_abs_diff": float((wa - wb).abs().max()),
        }
        print(
            f"{names[0]} vs {names[1]}: frames differ by "
            f"{out['agreement']['video_mean_abs_diff_0_255']:.2f}/255 on average, "
            f"audio by at most {out['agreement']['audio_max_abs_diff']:.2e}"
        )
    return out


def _to_uint8(img: torch.Tensor) -> torch.Tensor:
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def _spectrogram_image(wav: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``wav: (S,)`` -> ``(3, height, width)`` float image of its AVID log-power spectrogram."""
    spec = build_spectrogram(SpecConfig(kind="avid_linear"))(wav)[0]  # (F, T)
    lo, hi = spec.median(), spec.max()  # the noise floor maps to dark
    img = ((spec - lo) / (hi - lo + 1e-6)).clamp(0, 1).flip(0)  # low frequencies at the bottom
    img = F.interpolate(img[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    # A simple dark-blue -> yellow colour map, so loud parts are easy to spot.
    return torch.stack([img, img**0.7, 0.4 * (1 - img) + 0.1 * img])


def contact_sheet(synth_dir: Path, out_png: Path, frames_per_row: int = 5) -> Path:
    """One row per action: frames of a video with its sounding object's box, then its spectrogram."""
    from PIL import Image  # torchvision's own dependency; its write_png is deprecated
    from torchvision.utils import draw_bounding_boxes, make_grid

    doc = json.loads((synth_dir / "annotations.json").read_text())
    tiles: list[torch.Tensor] = []
    for action in doc["actions"]:
        ann = next((v for v in doc["videos"] if v["action"] == action), None)
        if ann is None:
            continue
        path = synth_dir / ann["file"]
        duration = ann["num_frames"] / ann["fps"]
        spec = ClipSpec(
            num_frames=frames_per_row,
            fps=frames_per_row / duration,
            size=None,
            audio_seconds=duration,
            sample_rate=16000,
        )
        clip = decode_clip(path, 0.0, spec)
        for i, t in enumerate(clip.frame_times):
            frame = _to_uint8(clip.video[:, i])
            box = ann["bbox"][min(round(float(t) * ann["fps"]), ann["num_frames"] - 1)]
            if box is not None:
                label = f"{action}: {ann['class']}" if i == 0 else ""
                frame = draw_bounding_boxes(
                    frame, torch.tensor([box], dtype=torch.float), labels=[label], colors="lime", width=2
                )
            tiles.append(frame)
        h, w = tiles[-1].shape[1:]
        tiles.append(_to_uint8(_spectrogram_image(clip.audio, h, w)))
    grid = make_grid(tiles, nrow=frames_per_row + 1, padding=2, pad_value=255)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rearrange(grid, "c h w -> h w c").numpy()).save(out_png)
    return out_png


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avlearn demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=Path("outputs/demo"), help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--num-videos",
        type=int,
        default=120,
        help="videos in the synthetic collection (default: %(default)s)",
    )
    parser.add_argument(
        "--duration", type=float, default=4.0, help="seconds per video (default: %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="collection and sampling seed (default: %(default)s)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="processes for generation, indexing and data loading (default: %(default)s)",
    )
    parser.add_argument(
        "--clips", type=int, default=48, help="clips decoded per backend (default: %(default)s)"
    )
    parser.add_argument(
        "--stages",
        nargs="+",
        default=list(STAGES),
        choices=list(STAGES),
        help="stage groups to run (default: all): data = generate, index, decode, batch, "
        "contact sheet; pretrain = self-supervised pretraining + retrieval",
    )
    parser.add_argument(
        "--pretrain-epochs",
        type=int,
        default=20,
        help="pretraining epochs over the train split (default: %(default)s)",
    )
    parser.add_argument(
        "--max-distractors",
        type=int,
        default=1,
        help="silent distractor objects per video, 0..N (default: %(default)s)",
    )
    return parser


STAGES = ("data", "pretrain")


def split_manifests(synth_dir: Path, manifest: Path) -> dict[str, Path]:
    """``manifest_<split>.csv`` per split of the synthetic collection, rows labelled with the action."""
    from avlearn.data.manifest import write_manifest

    doc = json.loads((synth_dir / "annotations.json").read_text())
    info = {v["video_id"]: v for v in doc["videos"]}
    rows = read_manifest(manifest)
    out = {}
    for split in ("train", "val", "test"):
        kept = []
        for row in rows:
            ann = info.get(Path(row.path).stem)
            if ann is not None and ann["split"] == split:
                row.label = ann["action"]
                kept.append(row)
        out[split] = synth_dir / f"manifest_{split}.csv"
        write_manifest(kept, out[split])
    return out


def pretrain_stage(out: Path, splits: dict[str, Path], epochs: int, workers: int) -> dict[str, Any]:
    """Pretrain with ``configs/pretrain/synth_cpu.yaml`` on the train split; curves and retrieval."""
    from avlearn.report import metric_series, plot_lines
    from avlearn.train.pretrain import main as pretrain_main

    run = out / "pretrain"
    config = Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "synth_cpu.yaml"
    overrides = [
        f"run_dir={run}",
        f"data.manifest={splits['train']}",
        f"eval.manifest={splits['test']}",
        f"epochs={epochs}",
        f"eval.every_epochs={max(1, epochs // 5)}",
        "data.clips_per_video=2",
        f"data.num_workers={workers}",
        "train.tensorboard=true",
    ]
    code = pretrain_main(["--config", str(config), *overrides])
    if code != 0:
        raise RuntimeError(f"pretraining stopped with exit code {code}; see {run / 'metrics.jsonl'}")
    log = run / "metrics.jsonl"
    loss_png = plot_lines(
        {"train loss": metric_series(log, "train/loss")},
        out / "pretrain_loss.png",
        title="pretraining loss (InfoNCE, in-batch)",
    )
    ret = {k: metric_series(log, f"retrieval/{k}_r1") for k in ("v2a", "a2v")}
    chance = metric_series(log, "retrieval/chance_r1")
    ret_png = plot_lines(
        {"video->audio R@1": ret["v2a"], "audio->video R@1": ret["a2v"], "chance": chance},
        out / "pretrain_retrieval.png",
        title="held-out retrieval (test split)",
    )
    before = {k: v[0][1] for k, v in ret.items() if v}
    after = {k: v[-1][1] for k, v in ret.items() if v}
    result: dict[str, Any] = {
        "run_dir": str(run),
        "encoders": str(run / "encoders.safetensors"),
        "retrieval_before": before,
        "retrieval_after": after,
        "chance_r1": chance[0][1] if chance else None,
        "plots": [str(loss_png), str(ret_png)],
    }
    print(
        f"held-out video->audio R@1: {before.get('v2a')} at initialisation -> "
        f"{after.get('v2a')} after pretraining (chance {result['chance_r1']}); "
        f"curves: {loss_png}, {ret_png}"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    from data_prep.index import index_collection, summarize
    from data_prep.synth import SynthConfig, generate

    args = _parser().parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"command": "avlearn demo " + " ".join(sys.argv[1:] if argv is None else argv)}
    timings: dict[str, float] = {}

    t0 = _stage(f"1 generate {args.num_videos} synthetic videos -> {out / 'synth'}")
    synth_dir = out / "synth"
    ann_path = generate(
        SynthConfig(
            out=synth_dir,
            num_videos=args.num_videos,
            seed=args.seed,
            clips_per_group=2,  # 120 videos: 10 groups per action, train/val/test 7/1/2 groups
            max_distractors=args.max_distractors,
            duration=args.duration,
            workers=args.workers,
        )
    )
    doc = json.loads(ann_path.read_text())
    videos = doc["videos"]
    summary["collection"] = {
        "videos": len(videos),
        "splits": doc["splits"],
        "actions": dict(Counter(v["action"] for v in videos)),
        "sounding_classes": dict(Counter(v["class"] for v in videos)),
        "annotations": str(ann_path),
    }
    print(
        f"{len(videos)} videos; splits {doc['splits']}; {len(doc['classes'])} object classes, "
        f"{len(doc['actions'])} actions"
    )
    timings["generate"] = time.perf_counter() - t0

    t0 = _stage("2 index")
    manifest = synth_dir / "manifest.csv"
    rows = index_collection([synth_dir / "videos"], manifest, workers=args.workers, progress=False)
    print(summarize(rows))
    summary["index"] = {"manifest": str(manifest), "status": dict(Counter(r.status for r in rows))}
    timings["index"] = time.perf_counter() - t0

    if "data" in args.stages:
        t0 = _stage("3 decode clips with every backend")
        summary["decode"] = decode_stage(manifest, args.clips, args.workers, args.seed)
        timings["decode"] = time.perf_counter() - t0

        t0 = _stage("4 one augmented training batch")
        cfg = DataConfig(
            manifest=str(manifest), num_workers=0, batch_size=8, max_av_offset=0.1, seed=args.seed
        )
        batch = next(iter(build_loader(cfg, build_dataset(cfg, train=True), shuffle=True)))
        shapes = {k: list(v.shape) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        print("  " + "\n  ".join(f"{k}: {tuple(s)}" for k, s in shapes.items()))
        vmean = rearrange(batch["video"], "b c t h w -> c (b t h w)").mean(dim=1)
        print(f"  video per-channel mean after normalisation: {[round(float(x), 3) for x in vmean]}")
        summary["batch"] = shapes
        timings["batch"] = time.perf_counter() - t0

        t0 = _stage("5 contact sheet")
        png = contact_sheet(synth_dir, out / "contact_sheet.png")
        print(
            f"{png}: one row per action; green box = ground truth of the sounding object; last column = "
            "its spectrogram (time left to right, frequency bottom to top)"
        )
        summary["contact_sheet"] = str(png)
        timings["contact_sheet"] = time.perf_counter() - t0

    if "pretrain" in args.stages:
        t0 = _stage("6 pretrain (self-supervised, train split without labels) + held-out retrieval")
        splits = split_manifests(synth_dir, manifest)
        summary["pretrain"] = pretrain_stage(out, splits, args.pretrain_epochs, args.workers)
        timings["pretrain"] = time.perf_counter() - t0

    summary["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nsummary: {out / 'summary.json'}  (stage seconds: {summary['seconds']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
