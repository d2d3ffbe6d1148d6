"""Which pretraining levers move the frozen features' action probe? One run per lever and seed.

    python -m benchmarks.downstream_levers [--levers base e120] [--seeds 0] [--threads 1] [--merge]

Each lever is a set of overrides on top of :mod:`benchmarks.downstream_synth`'s pretraining (same
collection per seed, train split without labels, InfoNCE, 60 epochs x 2 clips, same-video shifted
audio as extra negatives). For each run: the linear probes of ``downstream_synth.py`` (layer3 +
layer4, averaged; 3 test clips per video) on actions and object classes, and the same probes on
random-init features. Only the probes: fine-tuning costs ten times more and follows the probe
(``downstream_synth_seeds.md``). ``base`` is the benchmark's earlier 60-epoch run (reused from the
cache when it is there). A lever's run is reused only when its stored config equals
the one the lever asks for.

Writes ``benchmarks/results/downstream_levers.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import downstream_synth as ds
from benchmarks import harness
from benchmarks.lever_reports import lever_parser, merged_levers, previous_reports, wanted

NAME = "downstream_levers"

# slug: (what, overrides on top of the benchmark's pretraining, seeds)
LEVERS: dict[str, tuple[str, list[str], tuple[int, ...]]] = {
    "base": ("60 epochs (1260 steps), the benchmark's earlier budget", [], (0,)),
    "hcl05": ("hard negatives, objective.hard_negative_beta=0.5 (HCL)", ["objective.hard_negative_beta=0.5"],
              (0,)),
    "e120": ("twice the budget: 120 epochs (2520 steps)", ["epochs=120"],
             (0, 1, 2)),
    "e240": ("four times the budget: 240 epochs (5040 steps; now the benchmark's default)", ["epochs=240"],
             (0, 1, 2)),
}


def lever_run(slug: str, train_manifest: Path) -> tuple[Path, float]:
    """Pretrain (or reuse) lever ``slug`` on the current seed; returns (run, seconds)."""
    return ds.pretrain(train_manifest, 60, reuse=True, extra=tuple(LEVERS[slug][1]),
                       name="" if slug == "base" else f"exp_{slug}")


def probes(init: str, name: str) -> dict[str, float]:
    """Video-level top-1 of the action and object-class probes of ``init`` (a run or ``scratch``)."""
    return {label: float(ds.probe(init, f"lever_{name}_{label}", label, None, 3)["video_top1"])
            for label in ("action", "object")}


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Pretraining levers for actions (frozen features, linear probe)", "",
             f"Command: `{report['command']}`  ",
             *([f"Rows merged from the reports of: {'; '.join(f'`{c}`' for c in report['merged'])}  "]
               if report.get("merged") else []),
             f"Machine: {harness.machine_text(report, with_load=False)}; {report['seconds']:.0f} s (reused "
             "runs cost only their probes)", "",
             "Video-level top-1 (%) on each seed's 48 test videos (one video is 2.1 points; 6 actions, "
             "8 object classes). Random: the same probe on random-init features of that seed. Goal "
             "(issue 15): the action probe on AV features >= 30 points above random.", "",
             "| lever | seed | pretraining s | action, AV | action, random | gap | object, AV |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for slug, runs in report["levers"].items():
        for seed, r in sorted(runs.items(), key=lambda kv: int(kv[0])):
            random = report["random"][seed]
            lines.append(f"| {LEVERS[slug][0]} | {seed} | {r['pretrain_seconds']:.0f} | "
                         f"{100 * r['action']:.1f} | {100 * random['action']:.1f} | "
                         f"{100 * (r['action'] - random['action']):+.1f} | {100 * r['object']:.1f} |")
    lines += ["", "Action gap (AV - random, points) per lever: mean +- standard deviation over its seeds, "
              "and the goal checked on the mean for a lever probed on three seeds or more.", ""]
    for slug, runs in report["levers"].items():
        runs = dict(sorted(runs.items(), key=lambda kv: int(kv[0])))
        gaps = [100 * (r["action"] - report["random"][s]["action"]) for s, r in runs.items()]
        met = "met" if np.mean(gaps) >= 30 else "NOT met"
        verdict = "" if len(gaps) < 3 else f": goal (>= +30 on the mean of {len(gaps)} seeds) {met}"
        lines.append(f"- {LEVERS[slug][0]}: {np.mean(gaps):+.1f} +- {np.std(gaps):.1f} "
                     f"(seeds {', '.join(runs)}: {' / '.join(f'{g:+.1f}' for g in gaps)}){verdict}")
    return "\n".join(lines) + "\n"


def headline(report: dict[str, Any]) -> str:
    """The mean action-probe gap (AV - random, points) of each lever, over its seeds."""
    parts = []
    for slug, runs in report["levers"].items():
        gaps = [100 * (r["action"] - report["random"][seed]["action"]) for seed, r in runs.items()]
        parts.append(f"{slug} {harness.mean(gaps):+.1f} ({len(gaps)} seed{'s' if len(gaps) > 1 else ''})")
    return "action probe, AV - random init, mean points per lever: " + ", ".join(parts)


def parser() -> argparse.ArgumentParser:
    return lever_parser(__doc__, NAME, LEVERS, "runs probed now")


def measure(a: argparse.Namespace) -> dict[str, Any]:
    """Pretrain (or reuse) each lever's run per seed and probe it and random-init features."""
    t0 = time.perf_counter()
    random: dict[str, dict[str, float]] = {}
    merged, previous = previous_reports(a.merge, Path(a.out))
    for earlier in previous:
        random.update(earlier["random"])
    levers = merged_levers(previous)
    fresh_random: set[str] = set()  # seeds whose random-init probe ran in this process
    for slug in a.levers:
        levers.setdefault(slug, {})
        for seed in (s for s in LEVERS[slug][2] if wanted(s, a.seeds)):
            ds.use_seed(seed)
            found = ds.manifests(ds.collection())
            run, seconds = lever_run(slug, found["train"])
            levers[slug][str(seed)] = {"pretrain_seconds": seconds, **probes(str(run), slug)}
            if str(seed) not in fresh_random:
                random[str(seed)] = probes("scratch", "random")
                fresh_random.add(str(seed))
            print(slug, seed, levers[slug][str(seed)], flush=True)
    levers = {slug: runs for slug, runs in levers.items() if runs}  # a lever none of whose seeds ran
    return {
        "merged": merged,  # the commands of the reports whose rows this one started from
        "seconds": time.perf_counter() - t0,
        "levers": levers,
        "random": random,
        "mean_gap": {slug: float(np.mean([r["action"] - random[s]["action"] for s, r in runs.items()]))
                     for slug, runs in levers.items() if runs},
        "definitions": {k: {"what": v[0], "overrides": v[1], "seeds": v[2]} for k, v in LEVERS.items()},
    }


def main(argv: list[str] | None = None) -> int:
    return harness.run(NAME, argv, parser(), measure, markdown, log=True)


if __name__ == "__main__":
    sys.exit(main())
