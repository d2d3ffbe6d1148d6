"""Checks and measurements of the CUDA paths in one call (``benchmarks/gpu/run.sh`` runs this).

Stages, in order (each optional: ``--only`` / ``--skip``):

* ``peak``: the device's bf16 matrix rate, measured, and its peak from :mod:`benchmarks.gpu.peaks`;
* ``tests``: ``pytest -m gpu`` (GlobalBatchNorm over gloo in two processes on the one GPU, models
  and transforms on cuda, ...);
* ``smoke``: pretraining with every registered objective in bf16 (and AVID in fp16 on cuda), then
  fine-tuning, through the engine on the device, from clips held in memory;
* ``encoders``: one pretraining step of each registered full-size video encoder with the default
  audio encoder (and each other audio encoder with the default video encoder) at 8x112² and
  8x224² + 2 s audio, bf16: step parts, clips/s, MFU, peak memory; eager / ``torch.compile`` x
  contiguous / ``channels_last_3d`` at batch 64, then batch 32 and 128 for the best of those;
* ``layers``: each convolution of the video encoders alone, and which are memory-bound;
* ``loader``: pretraining from decoded media with augmentation on the device (when this tree has it);
* ``frames``: CPU and GPU (nvJPEG, batched) ms per clip of the JPEG + PCM shard layout, bytes, NVDEC
  when torchcodec imports (:mod:`benchmarks.gpu.frames_bench`);
* ``e2e``: ``avlearn pretrain`` with the paper preset from frame shards through DataLoader workers
  (clips/s, data-wait share, peak memory), SIGTERM and ``--resume``, fine-tuning, ``avlearn evaluate
  localization`` (:mod:`benchmarks.gpu.e2e`);
* ``step``: the step at 8x112² batch 64 under each lever (eager, compile, CUDA graphs) against the
  sum of its convolutions timed alone, the objective's share, fused Adam
  (:mod:`benchmarks.gpu.step_split`).

Issue 30's stages in one call of under 8 minutes: ``run.sh --only frames e2e step``.

Writes ``gpu_<device>.json``, ``.md`` and ``.log`` to ``--out`` (default ``benchmarks/results``)
and to ``$OUT`` when set (the GPU machine's folder that comes back). ``--dry-run`` runs every
stage on the CPU with tiny shapes (the test ``tests/test_gpu_script.py`` does) and writes to
``.cache/gpu_dry_run``. Stops launching measurements when ``--budget-s`` is nearly spent.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from benchmarks import harness
from benchmarks.gpu import checks, e2e, frames_bench, layer_bench, peaks, smoke, step_bench, step_split
from benchmarks.gpu.report import headline as headline  # the results' headline, for readme_table
from benchmarks.gpu.report import markdown
from benchmarks.harness import full_size

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("peak", "tests", "smoke", "encoders", "layers", "loader", "frames", "e2e", "step")
OWN_PACKAGES = ("avlearn", "benchmarks", "data_prep", "tests")  # missing modules there are bugs


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Shapes and step counts of a run (:data:`FULL` on the GPU, :data:`DRY` for ``--dry-run``)."""

    frames: int
    crops: tuple[int, ...]
    audio_seconds: float
    batch: int
    other_batches: tuple[int, ...]
    warmup: int
    split_steps: int
    steps: int
    bank_items: int
    matmul_n: int
    layer_reps: int
    smoke_videos: int
    smoke_crop: int
    smoke_batch: int
    compile_backend: str
    budget_s: float


FULL = Sizes(frames=8, crops=(112, 224), audio_seconds=2.0, batch=64, other_batches=(32, 128), warmup=3,
             split_steps=5, steps=10, bank_items=240_000, matmul_n=8192, layer_reps=10, smoke_videos=48,
             smoke_crop=112, smoke_batch=8, compile_backend="inductor", budget_s=420)
DRY = Sizes(frames=4, crops=(16, 32), audio_seconds=0.25, batch=4, other_batches=(2, 8), warmup=1,
            split_steps=1, steps=1, bank_items=256, matmul_n=256, layer_reps=1, smoke_videos=16,
            smoke_crop=32, smoke_batch=8, compile_backend="eager", budget_s=600)


class Run:
    """Where the run stands: device, sizes, clock, progress log and each stage's record."""

    def __init__(self, args: argparse.Namespace, device: torch.device, sizes: Sizes) -> None:
        self.args, self.device, self.sizes = args, device, sizes
        self.t0 = time.monotonic()
        self.log: list[str] = []
        self.stages: dict[str, dict[str, Any]] = {}
        self.peak: peaks.Peak | None = None
        self.compile_estimate_s: float = args.compile_estimate_s  # replaced by measured compiles
        self.compiles_measured = 0

    def say(self, msg: str) -> None:
        line = f"[gpu {time.monotonic() - self.t0:6.1f}s] {msg}"
        print(line, flush=True)
        self.log.append(line)

    def left_s(self) -> float:
        return self.sizes.budget_s - (time.monotonic() - self.t0)

    def fits(self, compiled: bool) -> bool:
        """Whether a setup (compiled or eager) can still be launched within the budget."""
        return self.left_s() >= (self.compile_estimate_s if compiled else 15.0) + 30

    def note_compile(self, row: dict[str, Any]) -> None:
        """A compiled setup takes about as long as the longest measured one: update the estimate."""
        s = self.sizes
        took = 1.25 * row["compile_s"] + (s.split_steps + s.steps + 2) * row["step_s"] + 5
        earlier = self.compile_estimate_s if self.compiles_measured else 0.0
        self.compile_estimate_s, self.compiles_measured = max(earlier, took), self.compiles_measured + 1

    def measure_step(self, setup: step_bench.Setup, flops: float | None = None) -> dict[str, Any]:
        """:func:`step_bench.measure` of ``setup`` with this run's sizes and peak."""
        assert self.peak is not None
        s = self.sizes
        row = step_bench.measure(setup, self.device, warmup=s.warmup, split_steps=s.split_steps,
                                 steps=s.steps, bank_items=s.bank_items, compile_backend=s.compile_backend,
                                 peak_flops=self.peak.bf16_flops, flops=flops)
        if setup.compile:
            self.note_compile(row)
        return row

    def stage(self, name: str, fn: Callable[[Run], dict[str, Any]]) -> None:
        """Run one stage; an exception is recorded as its failure (a missing package: skipped) and the
        run goes on."""
        self.say(f"stage {name} ...")
        t = time.monotonic()
        try:
            record = fn(self)
        except Exception as err:
            record = {"status": "failed", "message": f"{type(err).__name__}: {err}",
                      "traceback": traceback.format_exc()[-3000:]}
            if isinstance(err, ModuleNotFoundError) and (err.name or "").split(".")[0] not in OWN_PACKAGES:
                record = {"status": "skipped", "message": f"needs the package {err.name!r} (not installed)"}
        record.setdefault("status", "ok")
        record["seconds"] = round(time.monotonic() - t, 1)
        self.stages[name] = record
        message = f": {record['message']}" if record.get("message") else ""
        self.say(f"stage {name}: {record['status']} in {record['seconds']} s{message}")


# ----------------------------------------------------------------------------------------- stages


def stage_peak(run: Run) -> dict[str, Any]:
    name = device_name(run.device)
    measured = peaks.measure_matmul(run.device, run.sizes.matmul_n)
    run.peak = peaks.lookup_peak(name)
    if run.peak is None:
        run.peak = peaks.Peak(measured, 0.0, f"no table row for {name!r}: this run's bf16 matmul "
                              f"({run.sizes.matmul_n}^3)")
    run.say(f"bf16 matmul {run.sizes.matmul_n}^3: {measured / 1e12:.3g} TFLOP/s; MFU against "
            f"{run.peak.bf16_flops / 1e12:.3g} TFLOP/s ({run.peak.source})")
    return {"matmul_n": run.sizes.matmul_n, "measured_tflops": round(measured / 1e12, 2),
            "peak": run.peak.as_dict()}


def stage_tests(run: Run) -> dict[str, Any]:
    try:
        import pytest  # noqa: F401
    except ImportError:
        return {"status": "skipped", "message": "pytest is not installed"}
    record = checks.run_gpu_tests(ROOT, timeout_s=max(60.0, min(300.0, run.left_s())))
    run.say(f"pytest -m gpu: {record.get('counts')}")
    return record


def stage_smoke(run: Run) -> dict[str, Any]:
    from avlearn.models.registry import ModelConfig
    from avlearn.objectives import OBJECTIVES

    s = run.sizes
    spec = step_bench.spectrogram_shape(s.audio_seconds)
    model = {"video_arch": ModelConfig.video_arch, "audio_arch": ModelConfig.audio_arch}
    if run.args.dry_run:
        model = {"video_arch": "r2plus1d_tiny", "audio_arch": "avid_spec_cnn9_tiny"}
    data = smoke.MemoryClips(s.smoke_videos, s.frames, s.smoke_crop, spec)
    shaped = {name: smoke.MemoryClips(s.smoke_videos, s.frames, s.smoke_crop, shape)
              for name, shape in smoke.OBJECTIVE_SPECS.items()}
    runs = [(name, "bf16") for name in OBJECTIVES]
    if run.device.type == "cuda":
        runs.append(("avid", "fp16"))
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for objective, precision in runs:
            label = {"objective": objective, "precision": precision}
            r = _attempt(label, functools.partial(smoke.pretrain_run, Path(tmp) / f"{objective}_{precision}",
                                                  shaped.get(objective, data), objective=objective,
                                                  precision=precision, model=model, batch=s.smoke_batch))
            run.say(f"pretrain {objective} {precision}: {r}")
            results.append(r)
        again = _attempt({"objective": "avid", "precision": "bf16 resumed"}, functools.partial(
            smoke.pretrain_run, Path(tmp) / "avid_bf16", data, objective="avid", precision="bf16",
            model=model, batch=s.smoke_batch, epochs=3, resume=True))  # its checkpoint (banks on the device)
        results.append({**again, "precision": "bf16 resumed"})
        run.say(f"pretrain avid bf16, resumed for a third epoch: {again}")
        train, test = (smoke.MemoryClips(s.smoke_videos, s.frames, s.smoke_crop, spec, seed=i)
                       for i in (1, 2))
        ft = _attempt({"precision": "bf16"}, functools.partial(
            smoke.finetune_run, Path(tmp) / "finetune", Path(tmp) / "avid_bf16", train, test,
            precision="bf16", batch=s.smoke_batch))
        run.say(f"finetune bf16: {ft}")
    failed = [f"{r['objective']} {r['precision']}" for r in results if not r["ok"]]
    failed += [] if ft["ok"] else ["finetune"]
    status = "failed" if failed else "ok"
    return {"status": status, "device": str(run.device), "model": model, "pretrain": results, "finetune": ft,
            **({"message": "not finished, non-finite or raised: " + ", ".join(failed)} if failed else {})}


def _attempt(label: dict[str, Any], fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``fn()``, or ``label`` with ``ok=False`` and the error when it raises (the other runs go on)."""
    try:
        return fn()
    except Exception as err:
        return {**label, "ok": False, "steps": 0, "first_loss": None, "last_loss": None,
                "error": f"{type(err).__name__}: {str(err)[:500]}"}


def stage_encoders(run: Run) -> dict[str, Any]:
    s, args = run.sizes, run.args
    pairs = arch_pairs(args.video_archs, args.audio_archs)
    spec = step_bench.spectrogram_shape(s.audio_seconds)
    rows: list[dict[str, Any]] = []
    flops: dict[tuple[str, str, int, int, int], float] = {}
    for crop in s.crops:  # first every pair's eager figures (cheap), then compiles (tens of seconds each)
        for v, a in pairs:
            for channels_last in (False, True):
                if ("eager-cl" if channels_last else "eager") not in args.layouts:
                    continue
                _measure(run, step_bench.Setup(v, a, s.frames, crop, spec, s.batch, False, channels_last),
                         rows, flops)
    for crop in s.crops:
        for v, a in pairs:
            for channels_last in ([] if args.no_compile else [False, True]):
                if ("compile-cl" if channels_last else "compile") not in args.layouts:
                    continue
                _measure(run, step_bench.Setup(v, a, s.frames, crop, spec, s.batch, True, channels_last),
                         rows, flops)
    for crop in s.crops:  # last, the best layout of each at the other batches
        for v, a in pairs:
            best = best_row(rows, v, a, crop, s.batch)
            for batch in s.other_batches:
                if best is not None:
                    _measure(run, dataclasses.replace(_setup_of(best, spec), batch=batch), rows, flops)
    failed = [r for r in rows if r.get("status") == "failed"]
    skipped = [r for r in rows if r.get("status") == "skipped"]
    notes = ([f"{len(failed)} setups failed"] if failed else []) + (
        [f"{len(skipped)} setups skipped: time budget spent"] if skipped else [])
    return {"status": "failed" if failed else "ok", "pairs": [list(p) for p in pairs], "spec": list(spec),
            "rows": rows, **({"message": "; ".join(notes)} if notes else {})}


def _setup_of(row: dict[str, Any], spec: tuple[int, int]) -> step_bench.Setup:
    return step_bench.Setup(row["video_arch"], row["audio_arch"], row["frames"], row["crop"], spec,
                            row["batch"], row["compile"], row["channels_last"],
                            row.get("compile_mode", "default"))


def _measure(run: Run, setup: step_bench.Setup, rows: list[dict[str, Any]],
             flops: dict[tuple[str, str, int, int, int], float]) -> None:
    """Measure ``setup`` into ``rows`` unless too little of the budget is left for it."""
    clip = f"{setup.frames}x{setup.crop}²"
    name = f"{setup.video_arch} + {setup.audio_arch} {clip} b{setup.batch} {setup.layout}"
    base = {**dataclasses.asdict(setup), "layout": setup.layout}
    if not run.fits(setup.compile):
        rows.append({**base, "status": "skipped", "message": "time budget spent"})
        run.say(f"skip {name}: {run.left_s():.0f} s of the budget left")
        return
    try:
        row = run.measure_step(setup, flops.get(setup.key()))
    except Exception as err:  # e.g. out of memory at batch 128: record it, measure the rest
        rows.append({**base, "status": "failed", "message": f"{type(err).__name__}: {str(err)[:500]}"})
        run.say(f"FAILED {name}: {type(err).__name__}: {str(err)[:300]}")
        if run.device.type == "cuda":
            torch.cuda.empty_cache()
        return
    flops[setup.key()] = row["flops_per_step"]
    rows.append({**row, "status": "ok"})
    parts = " ".join(f"{k} {1e3 * v:.1f}" for k, v in row["parts_s"].items())
    run.say(f"{name}: {row['clips_per_s']} clips/s, MFU {100 * row['mfu']:.1f} %, step "
            f"{1e3 * row['step_s']:.1f} ms (split ms: {parts}), {row['gflop_per_clip']} GFLOP/clip, "
            f"peak {row['peak_memory_gib']} GiB, warm-up {row['compile_s']} s")


def best_row(rows: list[dict[str, Any]], video: str, audio: str, crop: int,
             batch: int) -> dict[str, Any] | None:
    """The measured row of highest clips/s among ``video`` + ``audio`` at ``crop`` and ``batch``."""
    ok = [r for r in rows if r.get("status") == "ok" and r["video_arch"] == video and r["audio_arch"] == audio
          and r["crop"] == crop and r["batch"] == batch]
    return max(ok, key=lambda r: r["clips_per_s"], default=None)


def stage_layers(run: Run) -> dict[str, Any]:
    from avlearn.models.registry import VIDEO_ENCODERS

    s = run.sizes
    assert run.peak is not None
    rows = run.stages.get("encoders", {}).get("rows", [])
    tables = {}
    crop = s.crops[0]
    for video, audio in arch_pairs(run.args.video_archs, run.args.audio_archs):
        if video in tables:
            continue
        best = best_row(rows, video, audio, crop, s.batch)
        channels_last = bool(best and best["channels_last"])
        torch.manual_seed(0)
        encoder = VIDEO_ENCODERS[video]().to(run.device)
        clip = torch.empty(s.batch, 3, s.frames, crop, crop, device=run.device)
        table = layer_bench.layer_table(encoder, clip, run.device, channels_last=channels_last,
                                        peak_flops=run.peak.bf16_flops,
                                        peak_bytes_per_s=run.peak.mem_bytes_per_s or None,
                                        reps=s.layer_reps, warmup=1 if run.args.dry_run else 2)
        bound = sum(r["time_share"] for r in table if r["memory_bound"]) if run.peak.mem_bytes_per_s else None
        tables[video] = {"crop": crop, "batch": s.batch, "channels_last": channels_last,
                         "memory_bound_time_share": None if bound is None else round(bound, 3), "rows": table}
        share = "(bandwidth unknown) ?" if bound is None else f"{100 * bound:.0f} %"
        run.say(f"{video} convolutions at {s.frames}x{crop}² b{s.batch}: {len(table)} distinct, "
                f"{share} of their time in memory-bound ones")
    return {"tables": tables}


def stage_loader(run: Run) -> dict[str, Any]:
    why = checks.device_augmentation_available()
    if why is not None:
        return {"status": "skipped", "message": why}
    from avlearn.models.registry import ModelConfig

    model = {"video_arch": ModelConfig.video_arch, "audio_arch": ModelConfig.audio_arch}
    if run.args.dry_run:
        model = {"video_arch": "r2plus1d_tiny", "audio_arch": "avid_spec_cnn9_tiny"}
    with tempfile.TemporaryDirectory() as tmp:
        return checks.loader_run(Path(tmp), videos=16 if run.args.dry_run else 64,
                                 steps=4 if run.args.dry_run else 40, batch=run.sizes.smoke_batch,
                                 workers=min(8, os.cpu_count() or 1), model=model)


def _model(run: Run) -> dict[str, str]:
    """The default encoders; the tiny ones for a dry run."""
    from avlearn.models.registry import ModelConfig

    if run.args.dry_run:
        return {"video_arch": "r2plus1d_tiny", "audio_arch": "avid_spec_cnn9_tiny"}
    return {"video_arch": ModelConfig.video_arch, "audio_arch": ModelConfig.audio_arch}


def stage_frames(run: Run) -> dict[str, Any]:
    module = frames_bench.frame_module()
    if module is None:
        return {"status": "skipped", "message": f"this tree has no {frames_bench.MODULE} (the JPEG + PCM "
                "shard layout): nothing to measure"}
    s = run.sizes
    rows = frames_bench.measure(frames_bench.layout_decoder(module), run.device, frames=s.frames,
                                crops=s.crops, batch=s.batch, audio_seconds=s.audio_seconds,
                                reps=s.split_steps)
    for r in rows:
        run.say(f"frames {r['frames']}x{r['decode_size']} px JPEG: CPU {r['cpu_ms_per_clip']} ms/clip "
                f"({r['cpu_clips_per_s_per_core']} clips/s per core), GPU {r['gpu_ms_per_clip']} ms/clip, "
                f"{r['bytes_per_clip']} B/clip, cores per GPU {r['cores_per_gpu']}")
    nvdec = frames_bench.nvdec(run.device, ROOT / ".cache" / "media" / "bigbuckbunny.mp4")
    run.say(f"NVDEC (torchcodec): {nvdec}")
    return {"rows": rows, "nvdec": nvdec}


def _importable(package: str) -> bool:
    try:
        __import__(package)
    except ImportError:
        return False
    return True


def stage_e2e(run: Run) -> dict[str, Any]:
    if frames_bench.frame_module() is None:
        return {"status": "skipped",
                "message": f"this tree has no {frames_bench.MODULE}: no shards to train from"}
    index = Path(run.args.frame_shards or e2e.DEFAULT_SHARDS)
    if not index.is_file():
        return {"status": "skipped", "message": f"no frame shards at {index}: write a small set on a CPU "
                "with `avlearn prepare shard --format frames` and pass --frame-shards (or carry it there)"}
    if run.left_s() < 120:
        return {"status": "skipped", "message": "time budget spent"}
    s, dry = run.sizes, run.args.dry_run
    workers = run.args.workers or min(8, os.cpu_count() or 1)
    model = [f"model.{k}={v}" for k, v in _model(run).items()] if dry else []  # else the preset's own
    common = [*model, "train.progress=false", "train.tensorboard=false", "train.ckpt_every_steps=0"]
    # the preset's per-frequency statistics file is the dataset's (not carried): per-clip normalisation
    spec = ["data.spec.normalize=instance", "data.spec.stats=null"]
    overrides = [*common, *spec, "data.source=frames", f"data.shards={index}", f"data.num_workers={workers}",
                 f"data.batch_size={s.smoke_batch if dry else s.batch}", "train.log_every=1", "epochs=1000"]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "pretrain"
        record: dict[str, Any] = {"shards": str(index), "workers": workers}
        record["pretrain"] = e2e.interrupted_pretrain(
            run_dir, overrides, stop_after=3 if dry else 20, total=12 if dry else 40,
            timeout_s=min(240.0, run.left_s() - 60), watch_gpu=run.device.type == "cuda")
        run.say(f"pretrain from frame shards, SIGTERM and resume: {record['pretrain']}")
        record["finetune"] = _attempt({}, lambda: e2e.finetune_run(
            Path(tmp) / "finetune", run_dir, common, frames=s.frames, crop=s.crops[0], batch=s.smoke_batch))
        run.say(f"finetune: {record['finetune']}")
        if not _importable("av"):
            record["localization"] = {"ok": False, "message": "skipped: its WAV files are read with PyAV"}
        else:
            export = run_dir / "encoders.safetensors"
            record["localization"] = _attempt({}, lambda: e2e.evaluate_localization(
                export, e2e.write_vggss_layout(Path(tmp) / "vggss"), timeout_s=120))
        run.say(f"evaluate localization: {record['localization']}")
    failed = [k for k in ("pretrain", "finetune") if not record[k].get("ok")]
    return {**record, **({"status": "failed", "message": "not ok: " + ", ".join(failed)} if failed else {})}


def stage_step(run: Run) -> dict[str, Any]:
    s = run.sizes
    video, audio = arch_pairs(run.args.video_archs, run.args.audio_archs)[0]
    base = step_bench.Setup(video, audio, s.frames, s.crops[0], step_bench.spectrogram_shape(s.audio_seconds),
                            s.batch, channels_last=True)
    autotune = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # the goal is stated for cuDNN autotuned
    try:
        conv = step_split.conv_bound(base, run.device, reps=s.layer_reps, warmup=1 if run.args.dry_run else 2)
        run.say(f"convolutions alone at {s.frames}x{base.crop}² b{s.batch}: video {conv['video_ms']} ms + "
                f"audio {conv['audio_ms']} ms")
        rows = step_split.measure_levers(base, run.device, fits=run.fits, measure=run.measure_step)
        for r in rows:
            if r["status"] == "ok":
                r.update(step_split.summarize(r, conv["total_ms"]))
                run.say(f"step, {r['lever']}: {1e3 * r['step_s']:.1f} ms = {r['step_over_convolutions']}x "
                        f"the convolutions, objective + bank {100 * r['objective_share']:.1f} %, MFU "
                        f"{100 * r['mfu']:.1f} %")
            else:
                run.say(f"step, {r['lever']}: {r['status']} ({r.get('message')})")
        optimizer = step_split.optimizer_lever(base, run.device, reps=max(2, s.steps))
        run.say(f"Adam step alone: {optimizer}")
    finally:
        torch.backends.cudnn.benchmark = autotune
    failed = [r["lever"] for r in rows if r["status"] == "failed"]
    return {"setup": {**dataclasses.asdict(base), "cudnn_benchmark": True}, "convolutions": conv,
            "levers": rows, "optimizer": optimizer,
            **({"message": "failed: " + ", ".join(failed)} if failed else {})}


STAGE_FNS: dict[str, Callable[[Run], dict[str, Any]]] = {
    "peak": stage_peak, "tests": stage_tests, "smoke": stage_smoke, "encoders": stage_encoders,
    "layers": stage_layers, "loader": stage_loader, "frames": stage_frames, "e2e": stage_e2e,
    "step": stage_step,
}


# ----------------------------------------------------------------------------------- architectures


def by_size(names: list[str], registry: Mapping[str, Callable[..., torch.nn.Module]]) -> list[str]:
    """``names`` by the parameter count of the module each builds, smallest first (stable)."""
    return sorted(names, key=lambda n: sum(p.numel() for p in registry[n]().parameters()))


def arch_pairs(video_archs: list[str] | None, audio_archs: list[str] | None) -> list[tuple[str, str]]:
    """(video, audio) pairs to measure: each video encoder with the default audio encoder, then each
    other audio encoder with the default video encoder. Default lists: the full-size registered ones,
    fewest parameters first (cheaper setups first, so that more of them fit the time budget)."""
    from avlearn.models.registry import AUDIO_ENCODERS, VIDEO_ENCODERS, ModelConfig

    videos = video_archs or by_size(full_size(VIDEO_ENCODERS), VIDEO_ENCODERS)
    audios = audio_archs or by_size(full_size(AUDIO_ENCODERS), AUDIO_ENCODERS)
    for name in videos:
        VIDEO_ENCODERS[name]  # an unknown name fails here, listing the valid ones
    for name in audios:
        AUDIO_ENCODERS[name]
    audio0 = ModelConfig.audio_arch if ModelConfig.audio_arch in audios else audios[0]
    video0 = ModelConfig.video_arch if ModelConfig.video_arch in videos else videos[0]
    return [(v, audio0) for v in videos] + [(video0, a) for a in audios if a != audio0]


# ------------------------------------------------------------------------------------ the machine


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def device_slug(device: torch.device, dry_run: bool) -> str:
    """File-name part: ``nvidia_h200``; ``cpu_dry_run`` for a dry run."""
    if dry_run:
        return "cpu_dry_run"
    return re.sub(r"[^a-z0-9]+", "_", device_name(device).lower()).strip("_")


def machine_info(device: torch.device) -> dict[str, Any]:
    """The harness's machine record with the device's name as the processor and, on CUDA, the GPU's facts."""
    info: dict[str, Any] = {**harness.machine(), "processor": device_name(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(cuda=True, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count)
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            info["driver"] = smi.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            info["driver"] = None
    return info


def versions() -> dict[str, Any]:
    import torchvision

    out: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "torchvision": torchvision.__version__, "cuda": torch.version.cuda,
                           "cudnn": torch.backends.cudnn.version()}  # type: ignore[no-untyped-call]
    for package in ("accelerate", "triton", "av", "decord", "webdataset"):
        try:
            out[package] = getattr(__import__(package), "__version__", "installed")
        except ImportError:
            out[package] = None
    try:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10)
        out["avlearn_commit"] = git.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        out["avlearn_commit"] = None
    return out


# ---------------------------------------------------------------------------------------- results


def write_results(run: Run, result: dict[str, Any], slug: str) -> list[Path]:
    """``gpu_<slug>.json``, ``.md`` and ``.log`` into ``--out`` and ``$OUT`` (when set)."""
    folders = [Path(run.args.out)]
    if os.environ.get("OUT"):
        folders.append(Path(os.environ["OUT"]))
    written = []
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"gpu_{slug}"
        stem.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        stem.with_suffix(".md").write_text(markdown(result))
        stem.with_suffix(".log").write_text("\n".join(run.log) + "\n")
        written += [stem.with_suffix(s) for s in (".json", ".md", ".log")]
    return written


LAYOUTS = ("eager", "eager-cl", "compile", "compile-cl")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/gpu/run.sh", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--dry-run", action="store_true", help="every stage on the CPU with tiny shapes")
    p.add_argument("--only", nargs="+", choices=STAGES, help="run these stages only")
    p.add_argument("--skip", nargs="+", choices=STAGES, default=[], help="leave these stages out")
    p.add_argument("--out", help="results folder (default benchmarks/results; "
                   ".cache/gpu_dry_run for --dry-run)")
    p.add_argument("--video-archs", nargs="+", help="video encoders (default: the full-size registered ones)")
    p.add_argument("--audio-archs", nargs="+", help="audio encoders (default: the full-size registered ones)")
    p.add_argument("--crops", nargs="+", type=int, help="frame sizes (default 112 224)")
    p.add_argument("--no-compile", action="store_true", help="leave torch.compile out of the encoder stage")
    p.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS), metavar="LAYOUT",
                   help=f"encoder-stage layouts at the main batch, of {', '.join(map(repr, LAYOUTS))} "
                   "(default all; cl = channels_last_3d)")
    p.add_argument("--batches", nargs="+", type=int,
                   help="the other batches the best layout is measured at (default 32 128)")
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="torch.backends.cudnn.benchmark = True: cuDNN times its algorithms per shape "
                   "(what a fixed-shape training run would use)")
    p.add_argument("--frame-shards", help="e2e: index.json of a small frame-shard set (default "
                   ".cache/gpu_frame_shards/index.json)")
    p.add_argument("--workers", type=int, help="e2e: DataLoader workers (default min(8, cores))")
    p.add_argument("--tag", help="results go to gpu_<device>_<tag>.* (a run with other settings)")
    p.add_argument("--budget-s", type=float, help="wall-clock budget; measurements stop being launched "
                   "when it is nearly spent (default 420; 600 for --dry-run)")
    p.add_argument("--compile-estimate-s", type=float, default=90.0,
                   help="budget a compiled setup needs before it is launched (default 90)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line the results name
    args.out = args.out or str(ROOT / (".cache/gpu_dry_run" if args.dry_run else "benchmarks/results"))
    if args.dry_run:  # the CPU-sized variants: the full-size ones take minutes on a CPU
        args.video_archs = args.video_archs or ["r2plus1d_tiny"]
        args.audio_archs = args.audio_archs or ["avid_spec_cnn9_tiny"]
    return args


def measure(run: Run) -> dict[str, Any]:
    """Run the stages (``peak`` first, for MFU) and return the results record."""
    stages = [s for s in (run.args.only or STAGES) if s not in run.args.skip]
    if "peak" not in stages:  # MFU needs a peak: the table's, else a quick measurement
        stages.insert(0, "peak")
    command = "benchmarks/gpu/run.sh " + shlex.join(run.args.argv)
    run.say(f"{command} on {device_name(run.device)}; stages {', '.join(stages)}; "
            f"budget {run.sizes.budget_s:.0f} s")
    for name in stages:
        run.stage(name, STAGE_FNS[name])
    run.say("done: " + ", ".join(f"{k} {v['status']}" for k, v in run.stages.items()))
    return {"benchmark": "gpu.suite", "command": command, "dry_run": run.args.dry_run,
            "machine": machine_info(run.device),
            "versions": versions(), "sizes": dataclasses.asdict(run.sizes),
            "cudnn_benchmark": run.args.cudnn_benchmark,
            "seconds": round(time.monotonic() - run.t0, 1), "stages": run.stages}


def main(argv: list[str] | None = None) -> int:
    """Run the stages; returns 0 when none failed, 1 otherwise, 2 without cuda and ``--dry-run``."""
    args = parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("benchmarks/gpu: no CUDA device here; use --dry-run to run every stage on the CPU",
              file=sys.stderr)
        return 2
    sizes = DRY if args.dry_run else FULL
    sizes = dataclasses.replace(sizes, crops=tuple(args.crops or sizes.crops),
                                other_batches=tuple(args.batches or sizes.other_batches),
                                budget_s=args.budget_s or sizes.budget_s)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    run = Run(args, torch.device("cpu" if args.dry_run else "cuda"), sizes)
    result = measure(run)
    slug = device_slug(run.device, args.dry_run) + (f"_{args.tag}" if args.tag else "")
    for path in write_results(run, result, slug):
        print(f"wrote {path}")
    return 1 if any(v["status"] == "failed" for v in run.stages.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
