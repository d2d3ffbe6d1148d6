"""Pretraining on CPU with 1 vs 2 processes (gloo): clips/s, speed-up and whether results agree.

Both runs are ``avlearn pretrain`` with ``avlearn/configs/pretrain/synth_cpu.yaml`` (InfoNCE, tiny
encoders, 32 px crops, no loader workers) on a small synthetic collection made once under
``.cache/scaling_cpu``, launched with ``torch.distributed.run --standalone`` (Accelerate picks
``cpu=True`` on a GPU-less machine, which is what makes 2 processes real; see ENVIRONMENT.md).
The global batch is the same: 1 process x 16 clips with 2 threads vs 2 processes x 8 clips with
1 thread each, so both use the 2 cores. That 2 processes ran is read from the ``world_size``
of the run's ``start`` record in ``metrics.jsonl``.

clips/s excludes the first ``--warmup`` steps. "Identical" compares the per-step losses and the
exported encoder weights of the two runs with ``--atol``. A third run, 1 process x 16 clips with
1 thread, separates the gain from a second core within one process from that of a second process,
and, compared with the 2-thread run, shows how far float rounding alone (the order of sums changes
with the thread count) moves this training; a fourth, 2 processes with per-process BatchNorm, prices
the global BatchNorm. ``--sgd`` adds the 1-vs-2 pair with SGD. Last, the model's forward + backward
on random tensors (no data, no communication) in 1 process x 2 threads, 1 x 1 and 2 independent
processes x half the batch gives the ceiling any 2-process launch can reach on this machine.

    python -m benchmarks.scaling_cpu                 # 60 steps per run, about 3 min on 2 idle cores
    python -m benchmarks.scaling_cpu --steps 20 --no-reference

Writes ``benchmarks/results/scaling_cpu.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks import harness
from benchmarks.harness import ROOT

NAME = "scaling_cpu"
CACHE = harness.CACHE / NAME
CONFIG = ROOT / "avlearn" / "configs" / "pretrain" / "synth_cpu.yaml"
GOAL = 1.7
SGD_LR = 0.05


@dataclass(frozen=True)
class Run:
    """One pretraining launch: ``procs`` processes of ``batch`` clips with ``threads`` threads each."""

    name: str
    procs: int
    batch: int
    threads: int
    sync_batchnorm: bool = True
    sgd_lr: float = 0.0  # > 0: SGD (momentum 0.9) at this learning rate instead of the config's Adam


def collection(num_videos: int) -> Path:
    """Generate and index the synthetic collection once; returns its manifest."""
    out = harness.synthetic_collection(CACHE / f"synth_n{num_videos}", num_videos=num_videos, seed=0,
                                       duration=3.0, size=64, max_distractors=0, object_scale=0.4)
    return out / "manifest.csv"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def launch(run: Run, manifest: Path, steps: int, decode: int = 40,
           crop: int = 32) -> tuple[list[str], float, float]:
    """Run ``avlearn pretrain`` under torchrun; returns the command, wall and CPU seconds."""
    run_dir = CACHE / "runs" / run.name
    if run_dir.exists():
        for path in sorted(run_dir.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
    overrides = {
        "run_dir": run_dir,
        "data.manifest": manifest,
        "data.decode_size": decode,
        "data.video_aug.size": crop,
        "data.batch_size": run.batch,
        "data.num_workers": 0,
        "epochs": 10_000,
        "max_steps": steps,
        "optim.warmup_epochs": 0,
        "train.log_every": 1,
        "train.ckpt_every_steps": 0,
        "train.progress": False,
        "train.tensorboard": False,
        "train.sync_batchnorm": run.sync_batchnorm,
    }
    if run.sgd_lr > 0:
        overrides.update({"optim.name": "sgd", "optim.lr": run.sgd_lr})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           str(run.procs), "-m", "avlearn", "pretrain", "--config", str(CONFIG.relative_to(ROOT)),
           *(f"{k}={v}" for k, v in overrides.items())]
    env = {**os.environ, "OMP_NUM_THREADS": str(run.threads), "MKL_NUM_THREADS": str(run.threads),
           "MASTER_PORT": str(_free_port())}
    t0, cpu0 = time.perf_counter(), _children_cpu()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"{run.name} failed with exit code {proc.returncode}:\n{proc.stderr[-4000:]}")
    return cmd, seconds, cpu


def summarise(run: Run, warmup: int) -> dict[str, Any]:
    """World size, clips/s after warm-up, data-wait share and per-step losses of a finished run."""
    run_dir = CACHE / "runs" / run.name
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    start = next(r for r in records if r.get("event") == "start")
    steps = [r for r in records if "train/loss" in r]
    timed = [r for r in steps if r["step"] > warmup]
    if len(timed) < 2:
        raise ValueError(f"{run.name}: {len(steps)} steps logged, need more than --warmup {warmup} + 1")
    # clips of steps warmup+2 .. last over the time between the logs of step warmup+1 and the last
    seconds = timed[-1]["time"] - timed[0]["time"]
    global_batch = run.batch * start["world_size"]
    return {
        "processes": run.procs,
        "threads_per_process": run.threads,
        "batch_per_process": run.batch,
        "world_size": start["world_size"],
        "timed_steps": len(timed) - 1,
        "clips_per_s": round(global_batch * (len(timed) - 1) / seconds, 2),
        "step_s": round(seconds / (len(timed) - 1), 4),
        "data_wait_fraction": round(sum(r["perf/data_wait_fraction"] for r in timed) / len(timed), 3),
        "losses": [r["train/loss"] for r in steps],
    }


def max_weight_diff(a: Path, b: Path) -> float:
    """Largest absolute difference over all tensors of two exported ``.safetensors`` files."""
    from safetensors.torch import load_file

    wa, wb = load_file(str(a)), load_file(str(b))
    if wa.keys() != wb.keys():
        raise ValueError(f"{a} and {b} hold different tensors")
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)


def compare(one: dict[str, Any], two: dict[str, Any], a: str, b: str) -> dict[str, Any]:
    """Largest per-step loss and exported-weight differences of runs ``a`` and ``b``."""
    losses = list(zip(one["losses"], two["losses"], strict=True))
    return {"max_abs_loss_diff": max(abs(x - y) for x, y in losses),
            "step1_loss_diff": abs(losses[0][0] - losses[0][1]),
            "step2_loss_diff": abs(losses[1][0] - losses[1][1]) if len(losses) > 1 else 0.0,
            "max_abs_weight_diff": max_weight_diff(CACHE / f"runs/{a}/encoders.safetensors",
                                                   CACHE / f"runs/{b}/encoders.safetensors"),
            "loss_first_last": [round(one["losses"][0], 4), round(one["losses"][-1], 4)]}


def _compute_worker(batch: int, size: int = 32, steps: int = 12) -> None:
    """Forward + backward of the config's encoders on random tensors; prints the median step seconds."""
    import statistics

    import yaml

    from avlearn.models.registry import ModelConfig, build_av_model

    torch.manual_seed(0)
    model = build_av_model(ModelConfig(**yaml.safe_load(CONFIG.read_text())["model"])).train()
    video, audio = torch.rand(batch, 3, 8, size, size), torch.randn(batch, 1, 257, 100)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        out = model(video, audio)
        (out.video_emb.sum() + out.audio_emb.sum()).backward()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"step_s": statistics.median(times[2:])}))


def _gather_worker(repeats: int = 300) -> None:
    """Under torchrun: mean seconds of a gloo all-gather of 129 floats (a BatchNorm layer's statistics)."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    x = torch.randn(129)
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    for _ in range(20):
        dist.all_gather(parts, x)
    t0 = time.perf_counter()
    for _ in range(repeats):
        dist.all_gather(parts, x)
    if dist.get_rank() == 0:
        print(json.dumps({"all_gather_s": (time.perf_counter() - t0) / repeats}))
    dist.destroy_process_group()


def gather_latency() -> float:
    """Microseconds of one small gloo all-gather between 2 processes on this machine."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", f"benchmarks.{NAME}", "--gather-worker"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": str(_free_port())}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("{"))
    return round(float(json.loads(line)["all_gather_s"]) * 1e6, 1)


def count_batchnorms() -> int:
    import yaml

    from avlearn.models.registry import ModelConfig, build_av_model

    model = build_av_model(ModelConfig(**yaml.safe_load(CONFIG.read_text())["model"]))
    return sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def compute_ceiling(batch: int, crop: int = 32) -> dict[str, float]:
    """Clips/s of model compute alone: 1 process x 2 threads, 1 x 1, and 2 independent processes.

    The 2 processes run at once on half the batch each with no communication at all, so their
    clips/s bound what any 2-process training run can do with this model on this machine.
    """
    def clips_per_s(per_process: int, threads: int, copies: int) -> float:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        cmd = [sys.executable, "-m", f"benchmarks.{NAME}", "--compute-worker", str(per_process),
               "--crop", str(crop)]
        procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
                 for _ in range(copies)]
        steps = [float(json.loads(p.communicate()[0].splitlines()[-1])["step_s"]) for p in procs]
        return round(per_process * copies / max(steps), 2)

    return {"p1_t2": clips_per_s(batch, 2, 1), "p1_t1": clips_per_s(batch, 1, 1),
            "p2_t1_independent": clips_per_s(batch // 2, 1, 2)}


def batchnorm_effect(batch: int, crop: int = 32) -> dict[str, float]:
    """InfoNCE loss of one random batch, BatchNorm over all clips vs over two halves (one process).

    With ``train.sync_batchnorm=false`` a 2-process run would normalise each half of the global
    batch with its own statistics; this measures how far that alone moves the loss at initialisation.
    """
    import yaml

    from avlearn.models.registry import ModelConfig, build_av_model
    from avlearn.objectives.infonce import infonce_loss

    torch.manual_seed(0)
    model_cfg = yaml.safe_load(CONFIG.read_text())["model"]
    model = build_av_model(ModelConfig(**model_cfg)).train()
    video, audio = torch.rand(batch, 3, 8, crop, crop), torch.randn(batch, 1, 257, 100)
    half = batch // 2
    with torch.no_grad():
        full = model(video, audio)
        parts = [model(video[i : i + half], audio[i : i + half]) for i in (0, half)]
        loss_full, _ = infonce_loss(full.video_emb, full.audio_emb)
        loss_halves, _ = infonce_loss(torch.cat([p.video_emb for p in parts]),
                                      torch.cat([p.audio_emb for p in parts]))
    return {"loss_bn_over_all": round(float(loss_full), 4), "loss_bn_per_half": round(float(loss_halves), 4),
            "abs_diff": round(abs(float(loss_full - loss_halves)), 4)}


def parser() -> argparse.ArgumentParser:
    p = harness.parser(__doc__, NAME)
    p.add_argument("--steps", type=int, default=40, help="optimiser steps per run")
    p.add_argument("--warmup", type=int, default=5, help="first steps left out of clips/s")
    p.add_argument("--batch", type=int, default=16, help="global batch (clips per step)")
    p.add_argument("--videos", type=int, default=96, help="videos in the synthetic collection")
    p.add_argument("--atol", type=float, default=1e-4, help="tolerance of 'identical'")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the 1 process x 1 thread run and the per-process BatchNorm run")
    p.add_argument("--crop", type=int, default=32, help="video crop side (px)")
    p.add_argument("--decode", type=int, default=40, help="decode size, short side (px)")
    p.add_argument("--name", default=NAME, help="results file stem under benchmarks/results")
    p.add_argument("--sgd", action="store_true", help="also run the pair with SGD instead of Adam")
    p.add_argument("--compute-worker", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--gather-worker", action="store_true", help=argparse.SUPPRESS)
    return p


def runs_for(args: argparse.Namespace) -> list[Run]:
    """The launches: 1 x 2 threads vs 2 x 1, then the references and the SGD pair when asked."""
    runs = [Run("p1_t2", 1, args.batch, 2), Run("p2_t1", 2, args.batch // 2, 1)]
    if not args.no_reference:
        runs.append(Run("p1_t1", 1, args.batch, 1))
        # what the global BatchNorm's all-reduces (one per layer, forward and backward) cost
        runs.append(Run("p2_t1_local_bn", 2, args.batch // 2, 1, sync_batchnorm=False))
    if args.sgd:
        runs += [Run("p1_t2_sgd", 1, args.batch, 2, sgd_lr=SGD_LR),
                 Run("p2_t1_sgd", 2, args.batch // 2, 1, sgd_lr=SGD_LR)]
    return runs


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Launch every run, compare them, and measure the compute ceiling and the collectives' cost."""
    load_start = harness.load_1min() or 0.0
    manifest = collection(args.videos)
    results: dict[str, dict[str, Any]] = {}
    for run in runs_for(args):
        load_before = harness.load_1min()
        cmd, wall, cpu = launch(run, manifest, args.steps, args.decode, args.crop)
        results[run.name] = {**summarise(run, args.warmup), "wall_s": round(wall, 1),
                             "cpu_cores_used": round(cpu / wall, 2),
                             "load_average_1min": [load_before, harness.load_1min()],
                             "launch": " ".join(cmd[1:]).replace(str(ROOT) + "/", "")}
        print(f"{run.name}: {results[run.name]['clips_per_s']} clips/s "
              f"(world size {results[run.name]['world_size']}, {wall:.0f} s)", flush=True)
    one, two, ref = results["p1_t2"], results["p2_t1"], results.get("p1_t1")
    if two["world_size"] != 2:
        raise RuntimeError(f"the 2-process run reports world size {two['world_size']}: it did not run 2")
    ratio = round(two["clips_per_s"] / one["clips_per_s"], 3)
    adam = compare(one, two, "p1_t2", "p2_t1")
    return {
        "load_average_1min_at_start": load_start,
        "global_batch": args.batch, "crop": args.crop, "decode_size": args.decode, "steps": args.steps,
        "warmup_steps": args.warmup, "videos": args.videos,
        "speedup_2_vs_1": ratio,
        "speedup_2_vs_1_thread": round(two["clips_per_s"] / ref["clips_per_s"], 3) if ref else None,
        "goal": GOAL, "goal_met": ratio >= GOAL,
        "identical": adam["max_abs_loss_diff"] <= args.atol and adam["max_abs_weight_diff"] <= args.atol,
        "atol": args.atol,
        "max_abs_loss_diff": adam["max_abs_loss_diff"], "max_abs_weight_diff": adam["max_abs_weight_diff"],
        "step1_loss_diff": abs(one["losses"][0] - two["losses"][0]),
        "adam": adam,
        "sgd": (compare(results["p1_t2_sgd"], results["p2_t1_sgd"], "p1_t2_sgd", "p2_t1_sgd")
                if "p2_t1_sgd" in results else None),
        "batchnorm_effect_at_init": batchnorm_effect(args.batch, args.crop),
        "rounding_between_thread_counts": compare(one, ref, "p1_t2", "p1_t1") if ref else None,
        "compute_ceiling_clips_per_s": compute_ceiling(args.batch, args.crop),
        "gloo_all_gather_us": gather_latency(),
        "batchnorm_layers": count_batchnorms(),
        "load_average_1min_at_end": harness.load_1min(),
        "results": results,
    }


def headline(record: dict[str, Any]) -> str:
    """The 2-process speed-up against its goal, and whether the two runs agree."""
    r = record["results"]
    one, two = r["p1_t2"], r["p2_t1"]
    goal = "met" if record["goal_met"] else "not met"
    return (f"clips/s 1 process x 2 threads {harness.num(one['clips_per_s'])} vs 2 processes "
            f"{harness.num(two['clips_per_s'])}: {harness.num(record['speedup_2_vs_1'])}x (goal "
            f"{harness.num(record['goal'])}x {goal}); identical {'yes' if record['identical'] else 'no'}")


def analysis(record: dict[str, Any]) -> list[str]:
    """What the runs' CPU shares, the references and the compute ceiling say, in sentences."""
    results, load_start = record["results"], record["load_average_1min_at_start"]
    one, two, ref = results["p1_t2"], results["p2_t1"], results.get("p1_t1")
    ceiling, batch = record["compute_ceiling_clips_per_s"], record["global_batch"]
    cores = ", ".join(f"{name} {r['cpu_cores_used']}" for name, r in results.items())
    out = [f"1-minute load average before the runs {load_start:.2f} "
           + ("(other jobs were using the cores)" if load_start > 0.5 else "(cores otherwise idle)")
           + f"; CPU time of each run over its wall time, in cores: {cores} (2 would be both cores)."]
    if two["cpu_cores_used"] < 1.5:
        out.append(f"The 2-process run got {two['cpu_cores_used']} cores of CPU time out of 2: other "
                   "jobs held the rest, so its clips/s show the share it was given, not how 2 processes "
                   "scale on 2 free cores.")
    if ref is not None:
        out.append(
            f"1 process with 1 thread: {ref['clips_per_s']} clips/s. Over it, a second thread inside the "
            f"process gives {one['clips_per_s'] / ref['clips_per_s']:.2f}x, a second process "
            f"{two['clips_per_s'] / ref['clips_per_s']:.2f}x. The goal compares 2 processes with the "
            "2-thread process, so it measures both how well 2 processes scale and how poorly 2 threads do."
            + (f" The 2-thread process got {one['cpu_cores_used']} cores of CPU time, the 1-thread one "
               f"{ref['cpu_cores_used']}, yet it made fewer steps: likely its 2 OpenMP threads waiting for "
               "each other at every op on busy cores (not "
               "measured further)." if one["clips_per_s"] < ref["clips_per_s"] else ""))
    local = results.get("p2_t1_local_bn")
    if local is not None:
        out.append(
            "Global BatchNorm costs one all-gather per BatchNorm layer "
            f"({record['batchnorm_layers']} layers) in the forward and one in the backward pass, each a "
            "point where both processes wait for each other (a lone gloo all-gather of 129 floats takes "
            f"{record['gloo_all_gather_us']:.0f} us here): with per-process statistics "
            "(train.sync_batchnorm=false) 2 processes make "
            f"{local['clips_per_s']} clips/s ({local['step_s']} s per step) vs {two['clips_per_s']} "
            f"({two['step_s']} s) with them; per-process statistics make results depend on the process "
            "count (see step 1 above).")
    out.append(
        f"Model compute alone (forward + backward on random tensors, no data, no communication): "
        f"1 process x 2 threads {ceiling['p1_t2']} clips/s, 1 x 1 {ceiling['p1_t1']}, 2 independent "
        f"processes x {batch // 2} clips at once {ceiling['p2_t1_independent']}: the ceiling of any "
        f"2-process launch is {ceiling['p2_t1_independent'] / ceiling['p1_t2']:.2f}x the 2-thread process "
        f"and {ceiling['p2_t1_independent'] / ceiling['p1_t1']:.2f}x the 1-thread one on this machine "
        "with this model (half the batch per process runs the small convolutions less efficiently, and "
        "two processes share the caches and memory bandwidth).")
    out.append(f"Data loading runs inside the training processes (num_workers 0): waiting for it takes "
               f"{one['data_wait_fraction']:.0%} of a step with 1 process and "
               f"{two['data_wait_fraction']:.0%} with 2; with 2 processes each decodes half the batch.")
    return out


def _drift(record: dict[str, Any]) -> str:
    """Why runs that are not identical differ: rounding, amplified step by step (or not measured)."""
    one, two = record["results"]["p1_t2"], record["results"]["p2_t1"]
    adam, rounding, sgd = record["adam"], record["rounding_between_thread_counts"], record["sgd"]
    loss_diff, weight_diff = record["max_abs_loss_diff"], record["max_abs_weight_diff"]
    if rounding is not None:
        return (
            f"Step 1 agrees to {adam['step1_loss_diff']:.3g} (BatchNorm statistics cover the global batch, "
            "train.sync_batchnorm). After that the runs drift apart, and so do two 1-process runs that "
            "differ only in the thread count (1 vs 2: it changes the order of float sums, nothing else): "
            f"p1_t1 vs p1_t2 differ by {rounding['step1_loss_diff']:.3g} at step 1, "
            f"{rounding['max_abs_loss_diff']:.3g} at most in loss and "
            f"{rounding['max_abs_weight_diff']:.3g} in exported weights, against "
            f"{loss_diff:.3g} and {weight_diff:.3g} for 1 vs 2 processes. This training amplifies rounding "
            "differences step by step (step 2: "
            f"{rounding['step2_loss_diff']:.3g} between thread counts, {adam['step2_loss_diff']:.3g} "
            "between process counts), so bit-identical runs are out of reach for any change of "
            "threads or processes; the 2-process run computes the same thing as the 1-process run, up to "
            "rounding (checked exactly by the gradient tests of the objectives and of GlobalBatchNorm, "
            "and here by step 1).")
    bn = record["batchnorm_effect_at_init"]
    return (
        f"Step 1 agrees to {abs(one['losses'][0] - two['losses'][0]):.3g} (BatchNorm statistics "
        "cover the global batch, train.sync_batchnorm; without that, one random batch at "
        f"initialisation gives InfoNCE {bn['loss_bn_over_all']} over all {record['global_batch']} clips vs "
        f"{bn['loss_bn_per_half']} over two halves). Later steps drift apart: step 2 differs by "
        f"{abs(one['losses'][1] - two['losses'][1]):.3g}."
        + (" The same pair with SGD (lr " + f"{SGD_LR:g}, loss {sgd['loss_first_last'][0]} -> "
           f"{sgd['loss_first_last'][1]} over the run): max loss difference "
           f"{sgd['max_abs_loss_diff']:.3g}, weights {sgd['max_abs_weight_diff']:.3g}. "
           + ("So the 2-process computation is the 1-process one up to float rounding (summation "
              "order of the all-reduces and of the batch split); Adam's first updates (about "
              "lr * sign(g)) turn that rounding in near-zero gradient components into full-size steps."
              if sgd["max_abs_loss_diff"] <= 100 * record["atol"] else
              "SGD drifts too, so rounding amplified by Adam does not explain the difference.")
           if sgd is not None else " Not measured further (--sgd checks with SGD)."))


def summary(record: dict[str, Any]) -> list[str]:
    """The speed-ups against the goal and whether the runs agree."""
    one, ref = record["results"]["p1_t2"], record["results"].get("p1_t1")
    ratio, ratio_t1 = record["speedup_2_vs_1"], record["speedup_2_vs_1_thread"]
    verdict = "met" if record["goal_met"] else "NOT met"
    out = [f"2 vs 1 process: {ratio}x (goal >= {record['goal']}x: {verdict})."]
    if ref is not None and ratio_t1 is not None:
        out.append(f"Against the 1-process run with 1 thread ({ref['clips_per_s']} clips/s): {ratio_t1}x.")
        if ref["clips_per_s"] > one["clips_per_s"]:
            out.append("The 2-thread process was slower than the 1-thread one: the first ratio "
                       "compares with a slow baseline, read the second too.")
    out.append(f"Identical (atol {record['atol']:g}): {'yes' if record['identical'] else 'no'}; max abs "
               f"difference of per-step losses {record['max_abs_loss_diff']:.3g} over {len(one['losses'])} "
               f"steps, of exported weights {record['max_abs_weight_diff']:.3g}.")
    if not record["identical"]:
        out.append(_drift(record))
    return out


def markdown(record: dict[str, Any]) -> str:
    lines = [
        "| run | processes x threads | batch per process | world size (metrics.jsonl) | clips/s | step s "
        "| data wait | CPU cores used | load avg before, after |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {name} | {r['processes']} x {r['threads_per_process']} | {r['batch_per_process']} | "
        f"{r['world_size']} | {r['clips_per_s']} | {r['step_s']} | {r['data_wait_fraction']:.0%} | "
        f"{r['cpu_cores_used']} | {r['load_average_1min'][0]}, {r['load_average_1min'][1]} |"
        for name, r in record["results"].items()
    ]
    note = (f"Global batch {record['global_batch']}, {record['steps']} steps per run, first "
            f"{record['warmup_steps']} left out of clips/s; configs/pretrain/synth_cpu.yaml (InfoNCE, tiny "
            f"encoders) with {record['decode_size']} px decode, {record['crop']} px crops, no loader "
            f"workers, on {record['videos']} synthetic videos (3 s, 64 px). Threads (OMP_NUM_THREADS): 2 for "
            "the 1-process run, 1 per process for the 2-process run and 1 for the reference. "
            f"{harness.machine_text(record, with_load=False)}; load average "
            f"{record['load_average_1min_at_start']:.2f} at the start, "
            f"{record['load_average_1min_at_end']:.2f} at the end; `{record['command']}`")
    heading = "Analysis (measured)" + ("" if record["goal_met"] else "; the goal is not met")
    return ("# Pretraining on CPU, 1 vs 2 processes (gloo)\n\n" + "\n".join(lines) + "\n\n"
            + "\n".join(summary(record)) + "\n\n" + note + f"\n\n{heading}:\n\n"
            + "\n".join(f"- {a}" for a in analysis(record)))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.compute_worker:
        _compute_worker(args.compute_worker, args.crop)
        return 0
    if args.gather_worker:
        _gather_worker()
        return 0
    if args.batch % 2:
        parser().error("--batch must be even (split over 2 processes)")
    record = {**harness.record_for(NAME, argv), **measure(args)}
    record["analysis"] = analysis(record)
    harness.write(harness.RESULTS / args.name if args.out == parser().get_default("out") else args.out,
                  record, markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
