"""The ``e2e`` stage: the commands end to end on the device, from shards through DataLoader workers.

* ``avlearn pretrain`` (a subprocess, as a user runs it) with the paper preset
  (:data:`PRETRAIN_CONFIG`: AVID-CMA's R(2+1)D-18 + audio CNN, bf16, channels_last) on a small shard
  set through ``data.num_workers`` workers: the engine's ``perf/clips_per_s`` and
  ``perf/data_wait_fraction`` (the step's wait for data; goal <= 5 %) and the process's peak GPU
  memory (``nvidia-smi``); the run gets SIGTERM after some steps (exit 75 with a checkpoint) and is
  resumed with ``--resume`` to its end;
* fine-tuning (:func:`avlearn.train.finetune.finetune`, the command's function, on clips held in
  memory: labelled files need PyAV) from that run's checkpoint on the device;
* ``avlearn evaluate localization`` on a tiny VGG-SS-layout set written here, when PyAV (which reads
  its WAV files) is installed.

The shard set comes from outside (the GPU machine cannot write one: the writers decode with PyAV):
``--frame-shards INDEX`` (default :data:`DEFAULT_SHARDS`, carried with the working tree), written on
a CPU with ``avlearn prepare shard --format frames``.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import torch

__all__ = ["DEFAULT_SHARDS", "PRETRAIN_CONFIG", "evaluate_localization", "finetune_run",
           "interrupted_pretrain", "write_vggss_layout"]

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SHARDS = ROOT / ".cache" / "gpu_frame_shards" / "index.json"
PRETRAIN_CONFIG = "pretrain/avid_kinetics400.yaml"


def _records(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip().endswith("}")]


def _gpu_memory_mib(pid: int) -> float | None:
    """The process's GPU memory (``nvidia-smi``, MiB; context included), None when not listed."""
    try:
        query = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
        out = subprocess.run(query, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 2 and fields[0] == str(pid) and fields[1].isdigit():
            return float(fields[1])
    return None


def _command(config: str, overrides: list[str], resume: bool) -> list[str]:
    return [sys.executable, "-m", "avlearn", "pretrain", "--config", config,
            *(["--resume"] if resume else []), *overrides]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def interrupted_pretrain(run_dir: Path, overrides: list[str], *, stop_after: int, total: int,
                         timeout_s: float, config: str = PRETRAIN_CONFIG,
                         watch_gpu: bool = False) -> dict[str, Any]:
    """``avlearn pretrain`` until ``stop_after`` steps are logged, SIGTERM, then ``--resume`` to ``total``.

    ``overrides`` must log every step (``train.log_every=1``). Returns the exit codes (75, then 0),
    whether the resumed run continued from the checkpoint, the perf windows of the first run (clips/s,
    data-wait share; the first window, with start-up, left out) and the peak GPU memory seen.
    """
    args = [f"run_dir={run_dir}", f"max_steps={total}", *overrides]
    t0 = time.monotonic()
    proc = subprocess.Popen(_command(config, args, False), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    peak, signalled = None, False
    while proc.poll() is None and time.monotonic() - t0 < timeout_s:
        if watch_gpu:
            mib = _gpu_memory_mib(proc.pid)
            peak = mib if peak is None or (mib is not None and mib > peak) else peak
        if not signalled and sum("train/loss" in r for r in _records(run_dir)) >= stop_after:
            proc.send_signal(signal.SIGTERM)
            signalled = True
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
    first_out = (proc.communicate()[0] or "")[-3000:]
    first_rc, first_s = proc.returncode, time.monotonic() - t0
    perf = [r for r in _records(run_dir) if "perf/clips_per_s" in r][1:]
    resumed = subprocess.run(_command(config, args, True), env=_env(), capture_output=True, text=True,
                             timeout=max(30.0, timeout_s - first_s))
    records = _records(run_dir)
    steps = [r["step"] for r in records if "train/loss" in r]
    ok = first_rc == 75 and resumed.returncode == 0 and any(r.get("event") == "resume" for r in records)
    return {
        "ok": ok, "signal_exit_code": first_rc, "resume_exit_code": resumed.returncode,
        "steps_before_signal": stop_after, "last_step": max(steps, default=None),
        "clips_per_s": _mean([r["perf/clips_per_s"] for r in perf]),
        "data_wait_share": _mean([r["perf/data_wait_fraction"] for r in perf]),
        "perf_windows": len(perf), "peak_gpu_memory_mib": peak, "seconds": round(time.monotonic() - t0, 1),
        **({} if ok else {"output_tail": first_out + "\n--- resumed ---\n" + resumed.stdout[-2000:]
                          + resumed.stderr[-2000:]}),
    }


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def finetune_run(run_dir: Path, init: Path, overrides: list[str], *, frames: int, crop: int, batch: int,
                 config: str = "finetune/ucf101_avid_paper.yaml") -> dict[str, Any]:
    """Fine-tune the video encoder of the pretraining run ``init`` on clips held in memory (device: the
    engine's, cuda when there is one)."""
    from avlearn.config import load_config
    from avlearn.train.finetune import FinetuneConfig, finetune
    from benchmarks.gpu.smoke import MemoryClips

    spec = (1, 1)  # fine-tuning reads the video only
    train, test = (MemoryClips(2 * batch, frames, crop, spec, seed=i) for i in (1, 2))
    cfg = load_config(FinetuneConfig, config, [f"run_dir={run_dir}", "epochs=1", "warmup_classifier_epochs=0",
                                               "data.num_workers=0", f"data.batch_size={batch}",
                                               "train.progress=false", "train.tensorboard=false",
                                               "eval.num_clips=1", f"eval.batch_size={batch}", *overrides])
    t0 = time.monotonic()
    results = finetune(cfg, str(init), resume=False, datasets=(train, test))
    return {"ok": bool(results.get("finished")), "steps": results.get("steps"),
            "video_top1": results.get("video_top1"), "seconds": round(time.monotonic() - t0, 1),
            "device": "cuda" if torch.cuda.is_available() else "cpu"}


def write_vggss_layout(root: Path, items: int = 4, seconds: float = 3.0, sample_rate: int = 16000) -> Path:
    """A tiny set in VGG-SS's layout (``frames/<id>.jpg``, ``audio/<id>.wav``, ``vggss.json``,
    ``test.csv``); returns ``root``."""
    from torchvision.io import write_jpeg

    (root / "frames").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    entries = []
    for i in range(items):
        name = f"item{i:03d}"
        frame = torch.full((3, 224, 224), 40, dtype=torch.uint8)
        frame[:, 60:160, 60:160] = 220  # the "sounding object"
        write_jpeg(frame, str(root / "frames" / f"{name}.jpg"))
        pcm = (torch.randn(round(seconds * sample_rate), generator=gen) * 3000).to(torch.int16)
        with wave.open(str(root / "audio" / f"{name}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            w.writeframes(pcm.numpy().tobytes())
        entries.append({"file": name, "class": "thing", "bbox": [[60 / 224, 60 / 224, 160 / 224, 160 / 224]]})
    (root / "vggss.json").write_text(json.dumps(entries))
    with open(root / "test.csv", "w", newline="") as f:
        csv.writer(f).writerows([[e["file"]] for e in entries])
    return root


def evaluate_localization(checkpoint: Path, root: Path, timeout_s: float) -> dict[str, Any]:
    """``avlearn evaluate localization --format vggss`` on :func:`write_vggss_layout`'s set."""
    out = root / "result.json"
    cmd = [sys.executable, "-m", "avlearn", "evaluate", "localization", "--checkpoint", str(checkpoint),
           "--format", "vggss", "--root", str(root), "--annotations", str(root / "vggss.json"),
           "--test-list", str(root / "test.csv"), "--json", str(out)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout_s)
    report = json.loads(out.read_text()) if out.is_file() else {}
    return {"ok": proc.returncode == 0 and bool(report), "exit_code": proc.returncode,
            "seconds": round(time.monotonic() - t0, 1), "trials": report.get("trials"),
            # the command has no device option: it scores on the CPU whatever the machine has
            "device": "cpu", **({} if proc.returncode == 0 else {"output_tail": proc.stderr[-2000:]})}
