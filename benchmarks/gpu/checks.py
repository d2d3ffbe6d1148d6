"""The GPU-marked tests (``pytest -m gpu``) and the loader with augmentation on the device.

GPU-marked tests are those under ``tests/`` marked ``@pytest.mark.gpu`` (registered in
``tests/conftest.py``; each also skips itself without cuda). Only the files that hold one are
collected, so test files that need PyAV elsewhere do not stop the run on a machine without it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["device_augmentation_available", "gpu_test_files", "loader_run", "run_gpu_tests"]

MARK = re.compile(r"pytest\.mark\.gpu\b")
SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)")


def gpu_test_files(root: Path) -> list[Path]:
    """Test files under ``root/tests`` that mark a test ``@pytest.mark.gpu``."""
    return sorted(p for p in (root / "tests").rglob("test_*.py") if MARK.search(p.read_text()))


def run_gpu_tests(root: Path, timeout_s: float) -> dict[str, Any]:
    """``pytest -m gpu`` over :func:`gpu_test_files`; counts per outcome and the output's tail."""
    files = gpu_test_files(root)
    if not files:
        return {"status": "skipped", "message": "no test is marked @pytest.mark.gpu"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
           *[str(f.relative_to(root)) for f in files]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout_s)
    lines = proc.stdout.strip().splitlines()
    counts = {kind.rstrip("s") if kind.startswith("error") else kind: int(n)
              for n, kind in SUMMARY.findall(lines[-1] if lines else "")}
    failed = proc.returncode != 0 and proc.returncode != 5  # 5: nothing collected
    return {"status": "failed" if failed else "ok", "files": [str(f.relative_to(root)) for f in files],
            "counts": counts, "returncode": proc.returncode, "command": " ".join(cmd[1:]),
            "tail": "\n".join(lines[-15:]) + ("\n" + proc.stderr[-2000:] if failed else "")}


def device_augmentation_available() -> str | None:
    """None when the data config has a device-side augmentation option, else why not."""
    from avlearn.data.config import DataConfig

    if "augment_on" not in {f.name for f in dataclasses.fields(DataConfig)}:
        return ("this tree has no augmentation on the device (data.augment_on, the scale issue): "
                "nothing to run")
    for package in ("av",):
        try:
            __import__(package)
        except ImportError:
            return f"the loader decodes media and {package} is not installed here"
    return None


def loader_run(work: Path, *, videos: int, steps: int, batch: int, workers: int,
               model: dict[str, str]) -> dict[str, Any]:
    """Pretrain ``steps`` steps from a synthetic collection with ``data.augment_on=device``; the
    engine's ``perf/clips_per_s`` and ``perf/data_wait_fraction`` of the last logged window."""
    import json

    from avlearn.config import load_config
    from avlearn.train.config import PretrainConfig
    from avlearn.train.loop import pretrain
    from data_prep.index import index_collection
    from data_prep.synth import SynthConfig, generate

    generate(SynthConfig(out=work / "synth", num_videos=videos, seed=0, duration=3.0, size=144,
                         workers=workers), progress=False)
    manifest = work / "synth" / "manifest.csv"
    index_collection([work / "synth" / "videos"], manifest, workers=workers, progress=False)
    overrides = [f"run_dir={work / 'run'}", f"data.manifest={manifest}", "data.augment_on=device",
                 f"data.num_workers={workers}", f"data.batch_size={batch}", f"max_steps={steps}",
                 "epochs=100", "train.mixed_precision=bf16", "train.progress=false",
                 "train.tensorboard=false", f"train.log_every={max(1, steps // 2)}",
                 *[f"model.{k}={v}" for k, v in model.items()]]
    pretrain(load_config(PretrainConfig, "pretrain/synth_cpu.yaml", overrides), resume=False)
    records = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if "perf/clips_per_s" in r][-1]
    return {"status": "ok", "clips_per_s": round(last["perf/clips_per_s"], 1),
            "data_wait_share": round(last["perf/data_wait_fraction"], 3), "workers": workers,
            "batch": batch, "steps": steps}
