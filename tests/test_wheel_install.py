"""A non-editable install works from any folder: build the wheel, install it into a target folder, run it.

The wheel is built from a copy of the packages (the checkout stays clean) without build isolation
and installed with ``--no-deps --target``, so it runs on the dependencies already installed. Every
command then runs from a folder outside the checkout with ``PYTHONPATH`` = the target folder +
this interpreter's site-packages: the checkout is not importable, and the configs must come from
the wheel's package data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from tests.test_configs import CONFIG_CLASSES

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("avlearn", "data_prep", "demos")

# Run in the installed copy: the module files, then every shipped config through the typed loader.
CHECK = r"""
import importlib, json, sys
import avlearn, data_prep, demos
from demos.demo_stages import CONFIGS as DEMO_CONFIGS
from avlearn.config import load_config
from avlearn.configs import shipped_configs

classes = json.loads(sys.argv[1])

def config_class(kind):
    module, name = classes[kind].split(":")
    return getattr(importlib.import_module(module), name)

loaded = []
for name in shipped_configs():
    load_config(config_class(name.split("/")[0]), name)
    loaded.append("avlearn/configs/" + name)
for path in sorted(DEMO_CONFIGS.glob("*.yaml")):  # where the demo itself reads its configs
    load_config(config_class(path.name.removesuffix(".yaml")), str(path))
    loaded.append("demos/configs/" + path.name)
print(json.dumps({"files": {m.__name__: m.__file__ for m in (avlearn, data_prep, demos)}, "loaded": loaded}))
"""


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 300) -> str:
    """Run ``cmd``; on failure the test fails with the command and its whole output."""
    shown = " ".join(arg if len(arg) < 100 else "<script>" for arg in cmd)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    print(f"$ {shown}  ({time.perf_counter() - t0:.1f} s, exit {proc.returncode})")
    if proc.returncode != 0:
        pytest.fail(f"{shown} exited {proc.returncode} in {cwd}\n--- stdout\n{proc.stdout}\n"
                    f"--- stderr\n{proc.stderr}", pytrace=False)
    return proc.stdout


def _build_wheel(tmp: Path) -> Path:
    """``pip wheel`` of a copy of the project's packaging inputs (no build/ or egg-info in the checkout)."""
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in PACKAGES:
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist")], tmp)
    (wheel,) = (tmp / "dist").glob("avlearn-*.whl")
    _run([*pip, "install", "--no-deps", "-q", "--target", str(tmp / "site"), str(wheel)], tmp)
    return tmp / "site"


def _isolated_env(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]])
    env["PYTHONNOUSERSITE"] = "1"
    return env


@pytest.mark.slow  # 71-74 s wall on a 2-core machine at load 5-16; 27 s of CPU (5 interpreter start-ups)
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    site = _build_wheel(tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = _isolated_env(site)
    py = [sys.executable, "-m", "avlearn"]

    assert "--pretrain-epochs" in _run([*py, "demo", "--help"], work, env)

    report = json.loads(_run([sys.executable, "-c", CHECK, json.dumps(CONFIG_CLASSES)], work, env))
    for module, file in report["files"].items():
        assert Path(file).is_relative_to(site), f"{module} imported from {file}, not from the wheel in {site}"
    in_checkout = sorted(p.relative_to(ROOT).as_posix() for d in ("avlearn/configs", "demos/configs")
                         for p in (ROOT / d).rglob("*.yaml"))
    assert sorted(report["loaded"]) == in_checkout  # the wheel ships every config, and each one loads

    _run([*py, "synth", "--out", "synth", "--num-videos", "6", "--duration", "1", "--size", "48",
          "--fps", "8", "--workers", "1", "--max-distractors", "0", "--no-progress"], work, env)
    _run([*py, "prepare", "index", "synth/videos", "--out", "synth/manifest.csv", "--workers", "1",
          "--quiet"], work, env)
    overrides = ["run_dir=run", "data.manifest=synth/manifest.csv", "max_steps=2", "data.batch_size=4",
                 "data.num_workers=0", "data.decode_size=40", "data.video_aug.size=32",
                 "model.embed_dim=16", "model.proj_hidden=32", "train.progress=false",
                 "train.tensorboard=false", "train.log_every=1", "optim.warmup_epochs=0"]
    # a shipped config named as in the README, from a folder that has no configs/
    _run([*py, "pretrain", "--config", "configs/pretrain/synth_cpu.yaml", "--fresh", *overrides], work, env)
    events = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    assert max(e.get("step", 0) for e in events) == 2
    assert (work / "run" / "encoders.safetensors").is_file()
    print(f"wheel build + install + 5 commands: {time.perf_counter() - t0:.1f} s")
