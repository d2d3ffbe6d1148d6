"""Peak resident memory and wall time of ``avlearn localize`` against clip length and resolution.

Each clip is generated here (no long real clip ships with the project): a colour ramp with a red
box sweeping across it at 25 fps, H.264 with x264's default keyframe interval (250 frames, what
``ffmpeg -i testsrc -c:v libx264`` writes), a 440 Hz tone in 48 kHz stereo AAC. ``avlearn
localize`` runs on it in a fresh process per clip, writing an MP4 overlay with the sound and its
PNG strip, with the demo's model: ``demos/configs/pretrain.yaml``'s architecture, input settings
(4 frames at 16 fps, 64 px, 1 s of audio) and learned localizer (``layer3`` grid). Its weights
are random unless ``--checkpoint`` names a trained one: memory and time do not depend on the
weights' values. Peak RSS is the child's ``ru_maxrss`` (``os.wait4``); the baseline is the RSS of
a process that only imports the command's modules (torch, torchvision, PyAV, matplotlib).

With ``--before DIR`` (a checkout of older code, e.g. ``git worktree add DIR <commit>``) each clip
is also localized by that code, so the table shows before and after on the same clips.

    python -m benchmarks.localize_memory --before /tmp/base   # writes benchmarks/results/localize_memory.*
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks import harness

NAME = "localize_memory"
DEMO_CONFIG = harness.ROOT / "demos" / "configs" / "pretrain.yaml"
FPS, SAMPLE_RATE, GOP = 25, 48000, 250
GRID = ((5, 720), (20, 720), (60, 720), (20, 360), (20, 1080))  # (seconds, height)
IMPORTS = "import avlearn.localization.cli, avlearn.localization.video"


def parser() -> argparse.ArgumentParser:
    p = harness.parser(__doc__, NAME)
    p.add_argument("--work", type=Path, default=harness.CACHE / "localize_memory",
                   help="where the generated clips, the model and the overlays go")
    p.add_argument("--checkpoint", type=Path,
                   help="a trained encoders file (default: the demo's model, random weights)")
    p.add_argument("--before", type=Path, help="a checkout of the older code to measure too")
    p.add_argument("--clips", default=",".join(f"{s}x{h}" for s, h in GRID),
                   help="SECONDSxHEIGHT,... (default: %(default)s)")
    return p


def test_clip(path: Path, seconds: float, height: int) -> Path:
    """Write a 16:9 clip of ``seconds`` at ``height`` px with sound (kept when it exists)."""
    from avlearn.media import AVWriter

    if path.is_file():
        return path
    width = height * 16 // 9 + height * 16 // 9 % 2
    y, x = np.mgrid[0:height, 0:width]
    ramp = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 128)], -1).astype(np.uint8)
    side, n = height // 4, int(seconds * FPS)
    part = path.with_suffix(".part.mp4")
    with AVWriter(part, FPS, (height, width), 2, SAMPLE_RATE, gop=GOP, preset="ultrafast",
                  reproducible=False) as writer:
        for first in range(0, n, FPS):
            frames = np.repeat(ramp[None], min(FPS, n - first), axis=0)
            for k, frame in enumerate(frames):
                left = int((width - side) * (0.5 + 0.5 * np.sin((first + k) / 20)))
                frame[height // 3 : height // 3 + side, left : left + side] = (230, 40, 40)
            writer.write_frames(frames)
        tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE)
        writer.write_audio(np.stack([tone, tone]).astype(np.float32))
    part.rename(path)
    return path


def demo_model(out: Path) -> Path:
    """The demo's encoders and learned localizer, random weights (seed 0), with its input settings."""
    import torch

    from avlearn.localization.export import localizer_path, save_localizer
    from avlearn.localization.learned import LocalizerSpec
    from avlearn.models.checkpoint import save_encoders
    from avlearn.models.registry import ModelConfig, build_av_model

    cfg = yaml.safe_load(DEMO_CONFIG.read_text())
    torch.manual_seed(0)
    model = build_av_model(ModelConfig(**cfg["model"]))
    path = save_encoders(model, out / "demo_random.safetensors", {"model": cfg["model"], "data": cfg["data"]})
    loc = cfg["localization"]
    spec = LocalizerSpec.for_model(model, loc["embed_dim"], loc["audio_input"], loc["grid_stage"])
    spec = dataclasses.replace(spec, floor=0.05)  # floored maps, as the demo's
    save_localizer(spec.build(), spec, localizer_path(path))
    return path


def peak_rss(argv: list[str], code: Path) -> dict[str, Any]:
    """Run ``argv`` with ``code`` first on the Python path; its peak RSS (MB), wall time (s), exit code."""
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=code)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        print(err[-2000:], file=sys.stderr)
    return {"peak_rss_mb": round(usage.ru_maxrss / 1024), "wall_s": round(time.perf_counter() - start, 1),
            "rc": proc.returncode}


def _commit(code: Path) -> str:
    """The commit checked out in ``code`` (``+`` when its tracked files differ from it)."""
    head = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(code), "diff", "--quiet", "HEAD"]).returncode
    return head + ("+" if dirty else "")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    args.work.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint or demo_model(args.work)
    trees = {"after": harness.ROOT, **({"before": args.before.resolve()} if args.before else {})}
    commits = {name: _commit(code) for name, code in trees.items()}
    baseline = {name: peak_rss([sys.executable, "-c", IMPORTS], code) for name, code in trees.items()}
    rows = []
    for item in args.clips.split(","):
        seconds, height = (int(v) for v in item.split("x"))
        clip = test_clip(args.work / f"clip_{seconds}s_{height}p.mp4", seconds, height)
        for name, code in trees.items():
            out = args.work / f"overlay_{name}_{seconds}s_{height}p.mp4"
            cmd = [sys.executable, "-m", "avlearn.cli", "localize", str(clip), "--checkpoint",
                   str(checkpoint), "--out", str(out), "--quiet"]
            rows.append({"seconds": seconds, "height": height, "code": name, **peak_rss(cmd, code)})
            print(rows[-1], flush=True)
    return {"clips": f"{FPS} fps H.264 (keyframe every {GOP} frames), {SAMPLE_RATE} Hz stereo AAC, 16:9",
            "model": "demo's config, random weights" if args.checkpoint is None else str(args.checkpoint),
            "commits": commits, "baseline_import": baseline, "rows": rows,
            "load_average_1min_at_end": harness.load_1min()}


def headline(record: dict[str, Any]) -> str:
    """Peak RSS and time of the 60 s 720p clip (before -> after when both were measured)."""
    rows = {r["code"]: r for r in record["rows"] if (r["seconds"], r["height"]) == (60, 720)}
    if not rows:
        return "-"
    after = rows["after"]
    text = f"60 s 720p with sound to MP4: peak {after['peak_rss_mb']} MB, {after['wall_s']} s"
    if "before" in rows:
        before = rows["before"]
        text += f" (before: {before['peak_rss_mb']} MB, {before['wall_s']} s)"
    return text


def markdown(record: dict[str, Any]) -> str:
    codes = [c for c in ("before", "after") if c in record["baseline_import"]]
    head = "| clip | " + " | ".join(f"peak RSS {c} (MB) | time {c} (s)" for c in codes) + " |"
    lines = ["# `avlearn localize`: peak memory and time against clip length and resolution", "",
             f"Clips: {record['clips']}. Model: {record['model']}. Output: MP4 overlay with the sound and "
             f"its PNG strip. Machine: {harness.machine_text(record)}.", "", head,
             "|---" * (1 + 2 * len(codes)) + "|"]
    by_clip: dict[tuple[int, int], dict[str, Any]] = {}
    for r in record["rows"]:
        by_clip.setdefault((r["seconds"], r["height"]), {})[r["code"]] = r
    for (seconds, height), cells in by_clip.items():
        values = " | ".join(f"{cells[c]['peak_rss_mb']} | {cells[c]['wall_s']}" if c in cells else "- | -"
                            for c in codes)
        lines.append(f"| {seconds} s {height}p | {values} |")
    base = ", ".join(f"{c} ({record['commits'][c]}) {record['baseline_import'][c]['peak_rss_mb']} MB"
                     for c in codes)
    lines += ["", f"Importing the command's modules alone (torch, torchvision, PyAV, matplotlib): {base}.",
              "", f"Command: `{record['command']}`"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return harness.run(NAME, argv, parser(), measure, markdown)


if __name__ == "__main__":
    raise SystemExit(main())
