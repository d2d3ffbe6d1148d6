"""How many CPU cores the data loader needs to keep one GPU busy: measured loader x measured GPU step.

Nothing here is measured anew; every figure is read from ``benchmarks/results``:

* loader rates, clips/s per core, from ``data_loading.json`` (one thread per loader, 8 frames at
  16 fps decoded at short side 128, crop 112, 2 s of audio): the default worker pipeline, the
  fused one (``video_aug.fused``), the worker's share with ``data.augment_on=device`` (decode +
  random draws) and the decode-only limit;
* the GPU's rate, clips/s, from the ``gpu_*.json`` files of ``benchmarks/gpu/run.sh`` (bf16
  pretraining steps of AVID-CMA's model, ``r2plus1d_18_avid`` + ``avid_spec_cnn9``): the best
  layout at batch 64 and the best at any batch, per crop; and, beside them, the rate the
  ``torch.utils.flop_counter`` FLOP per clip of those runs give at 30 % of the bf16 peak measured
  on that GPU.

Cores per GPU = GPU clips/s / loader clips/s per core. The loader was timed at crop 112 only: for
8x224² (decode short side >= 224, 4x the pixels to convert and augment) the figures are lower
bounds. With ``augment_on=device`` the GPU also spends time on the augmentation, which no GPU
run here has measured yet (the ``loader`` stage of ``benchmarks/gpu`` does).

    python -m benchmarks.loader_cores   # writes benchmarks/results/loader_cores.json and .md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks import harness

NAME = "loader_cores"
MODEL = ("r2plus1d_18_avid", "avid_spec_cnn9")
LOADERS = {
    "pipeline": "worker pipeline (default)",
    "pipeline_fused": "worker pipeline, video_aug.fused",
    "pipeline_device": "augment_on=device (worker: decode + draws)",
    "decode_only": "decode-only limit",
}
MFU = 0.30


def gpu_rates(results: Path, batch: int = 64) -> dict[str, Any]:
    """Per crop: the best measured rate at ``batch`` and at any batch, GFLOP per clip and the peak."""
    out: dict[str, Any] = {"files": [], "crops": {}}
    for path in sorted(results.glob("gpu_*.json")):
        d = json.loads(path.read_text())
        if d.get("dry_run"):
            continue
        peak = d["stages"]["peak"]["peak"]["bf16_flops"]
        out["files"].append(path.name)
        for r in d["stages"].get("encoders", {}).get("rows", []):
            if r.get("status") != "ok" or (r["video_arch"], r["audio_arch"]) != MODEL or r["frames"] != 8:
                continue
            row = {"clips_per_s": r["clips_per_s"], "batch": r["batch"], "layout": r["layout"],
                   "mfu": r["mfu"], "file": path.name, "gflop_per_clip": r["gflop_per_clip"],
                   "peak_bf16_flops": peak, "cudnn_benchmark": bool(d.get("cudnn_benchmark"))}
            crop = out["crops"].setdefault(str(r["crop"]), {})
            for key, ok in (("best_at_batch_64", r["batch"] == batch), ("best_any_batch", True)):
                if ok and r["clips_per_s"] > crop.get(key, {}).get("clips_per_s", 0):
                    crop[key] = row
    for crop in out["crops"].values():
        best = crop["best_any_batch"]
        crop["gflop_per_clip"] = best["gflop_per_clip"]
        crop["mfu_30_clips_per_s"] = MFU * best["peak_bf16_flops"] / (best["gflop_per_clip"] * 1e9)
    return out


def loader_rates(loading: dict[str, Any]) -> tuple[dict[str, float], str]:
    """Clips/s per core of each loader, per wall second of the one-thread loader (the conservative
    figure: per CPU second, also recorded, is ~20 % higher), and a note on which."""
    return loading["clips_per_s_per_core"], "per core (wall time, one thread)"


def table(loading: dict[str, Any], gpu: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (crop, GPU rate): the clips/s and the cores each loader needs for it."""
    per_core = loader_rates(loading)[0]
    rows = []
    for crop, c in sorted(gpu["crops"].items(), key=lambda kv: int(kv[0])):
        rates = []
        for key in ("best_at_batch_64", "best_any_batch"):
            r = c[key]
            tuned = ", cuDNN autotuned" if r["cudnn_benchmark"] else ""
            what = f"measured, batch {r['batch']}, {r['layout']}{tuned} (MFU {100 * r['mfu']:.1f} %)"
            if key == "best_any_batch" and r is c["best_at_batch_64"]:
                continue
            rates.append((what, r["clips_per_s"]))
        rates.append((f"{100 * MFU:.0f} % MFU of the measured bf16 peak", c["mfu_30_clips_per_s"]))
        for what, rate in rates:
            cores = {k: round(rate / per_core[k], 1) for k in LOADERS if k in per_core}
            rows.append({"crop": int(crop), "gflop_per_clip": c["gflop_per_clip"], "gpu_rate": what,
                         "gpu_clips_per_s": round(rate, 1), "cores_per_gpu": cores})
    return rows


def markdown(record: dict[str, Any]) -> str:
    per_core, how, gpu = record["loader_clips_per_s_per_core"], record["loader_rate_kind"], record["gpu"]
    keys = [k for k in LOADERS if k in per_core]
    head = " | ".join(f"{LOADERS[k]} ({per_core[k]:.1f}/core)" for k in keys)
    md = ["Cores per GPU a loader needs to keep one H200 busy with AVID-CMA's model (r2plus1d_18_avid + "
          f"avid_spec_cnn9, 8 frames + 2 s audio, bf16). Loader columns: clips/s {how}, from "
          "`data_loading.json`; GPU rates from " + ", ".join(f"`{f}`" for f in gpu["files"]) + ".", "",
          f"| crop | GFLOP/clip | GPU rate | GPU clips/s | {head} |",
          "|---|---|---|---|" + "---|" * len(keys)]
    for r in record["rows"]:
        cores = " | ".join(f"{r['cores_per_gpu'][k]:.0f}" for k in keys)
        md.append(f"| {r['crop']}² | {r['gflop_per_clip']:.1f} | {r['gpu_rate']} "
                  f"| {r['gpu_clips_per_s']:.0f} | {cores} |")
    md += ["", "GFLOP/clip: forward + backward, `torch.utils.flop_counter` (multiply-add = 2). A node has "
           "12-24 cores per GPU. The loader was timed at crop 112 (decode short side 128): the 224² rows "
           "are lower bounds. With `augment_on=device` the GPU also does the augmentation (not yet measured "
           "on a GPU).", "", f"Loader figures: `{record['loader_source']}` on {record['loader_machine']}"
           + (f", median of {record['loader_repeats']} runs" if record["loader_repeats"] > 1 else "") + "."]
    return "\n".join(md) + "\n"


def parser() -> argparse.ArgumentParser:
    p = harness.parser(__doc__, NAME)
    p.add_argument("--results", type=Path, default=harness.RESULTS, help="where the measured figures are")
    return p


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Cores per GPU from the loader and GPU results files (nothing is timed)."""
    loading = json.loads((args.results / "data_loading.json").read_text())
    gpu = gpu_rates(args.results)
    if not gpu["crops"]:
        raise SystemExit(f"no GPU run of {' + '.join(MODEL)} in {args.results}/gpu_*.json: "
                         "run benchmarks/gpu/run.sh on a GPU first")
    rates, how = loader_rates(loading)
    return {"machine": "measured loader (CPU) x measured GPU step",
            "model": " + ".join(MODEL), "mfu_assumed": MFU,
            "loader_clips_per_s_per_core": {k: v for k, v in rates.items() if k in LOADERS},
            "loader_rate_kind": how, "loader_source": loading["command"],
            "loader_machine": harness.machine_text(loading), "loader_repeats": loading.get("repeats", 1),
            "gpu": gpu,
            "rows": table(loading, gpu)}


def headline(record: dict[str, Any]) -> str:
    """Cores per GPU the default loader needs, per crop: at the measured GPU rates, and at the MFU assumed."""
    measured: dict[int, list[str]] = {}
    assumed: dict[int, list[str]] = {}
    for r in record["rows"]:
        into = measured if r["gpu_rate"].startswith("measured") else assumed
        into.setdefault(r["crop"], []).append(f"{r['cores_per_gpu']['pipeline']:.0f}")

    def text(cores: dict[int, list[str]]) -> str:
        return ", ".join(f"{crop}² {' / '.join(c)}" for crop, c in cores.items())

    return (f"CPU cores per GPU for {record['model']} with the default loader: {text(measured)} at the "
            f"measured GPU rates; {text(assumed)} at {harness.pct(record['mfu_assumed'])} MFU")


def main(argv: list[str] | None = None) -> int:
    return harness.run(NAME, argv, parser(), measure, markdown)


if __name__ == "__main__":
    sys.exit(main())
