"""Record a demo run's figures as ``benchmarks/results/demo.json`` (the README quotes them from there).

    python -m avlearn demo --out outputs/demo                 # or: make demo
    python -m benchmarks.record_demo outputs/demo/summary.json
    python -m benchmarks.readme_table --write                 # the README's demo paragraph, the table row

Paths inside the summary are written relative to the repository when they lie under it, and
relative to the run's folder otherwise, so the results file holds no machine's absolute paths.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.harness import ROOT

OUT = harness.RESULTS / "demo.json"


def relative_paths(x: Any, run_dir: Path) -> Any:
    """``x`` with every absolute path string made relative (to the repository, else to ``run_dir``)."""
    if isinstance(x, dict):
        return {k: relative_paths(v, run_dir) for k, v in x.items()}
    if isinstance(x, list):
        return [relative_paths(v, run_dir) for v in x]
    if isinstance(x, str) and x.startswith("/"):
        path = Path(x)
        for base, prefix in ((ROOT, ""), (run_dir, "<demo out>/")):
            if path.is_relative_to(base):
                return prefix + path.relative_to(base).as_posix()
        return path.name
    if isinstance(x, str) and x.startswith("avlearn demo --out /"):  # the command line
        return "python -m avlearn demo --out <demo out>"
    return x


def _p1(x: float) -> str:
    return harness.pct(x, 1)


def _versus(learned: float, centre: float) -> str:
    """How the learned localizer compares with the centre box on one metric, in words."""
    return "above" if learned > centre else "equal to" if learned == centre else "below"


def _demo_figures(d: dict[str, Any]) -> dict[str, str]:
    """The demo's headline figures as text, by name."""
    pre, down, loc = d["pretrain"], d["downstream"], d["localization"]["methods"]
    probe, ft, chance = down["linear_probe"], down["finetune"]["action"], down["chance"]
    avid = down["finetune"].get("action_avid_recipe")
    learned, posthoc = loc["trained, learned localizer"], loc["trained, post hoc"]
    rand, centre = loc["random init, post hoc"], loc["centre box"]
    return {
        "r1_before": _p1(pre["retrieval_before"]["v2a_r1"]),
        "r1_after": _p1(pre["retrieval_after"]["v2a_r1"]),
        "r1_chance": _p1(pre["chance_r1"]),
        "object_av": _p1(probe["object"]["av"]["video_top1"]),
        "object_random": _p1(probe["object"]["random"]["video_top1"]),
        "action_av": _p1(probe["action"]["av"]["video_top1"]),
        "action_random": _p1(probe["action"]["random"]["video_top1"]), "action_chance": _p1(chance["action"]),
        "ft_av": _p1(ft["av"]["video_top1"]), "ft_scratch": _p1(ft["random"]["video_top1"]),
        "ft_steps": str(ft["av"]["steps"]),
        "ft_how": (f", {down['finetune_recipe']}, on {down['clips']['finetune']}" if "clips" in down else ""),
        "ft_avid": (f"; AVID's recipe, a random classifier trained alone for an epoch: "
                    f"{_p1(avid['av']['video_top1'])} vs {_p1(avid['random']['video_top1'])}"
                    if avid else ""),
        "point_learned": f"{learned['pointing']:.2f}", "point_posthoc": f"{posthoc['pointing']:.2f}",
        "point_centre": f"{centre['pointing']:.2f}", "point_random": f"{rand['pointing']:.2f}",
        "ciou_learned": f"{learned['ciou50']:.2f}", "ciou_posthoc": f"{posthoc['ciou50']:.2f}",
        "ciou_centre": f"{centre['ciou50']:.2f}",
        "auc_learned": f"{learned['auc']:.2f}", "auc_posthoc": f"{posthoc['auc']:.2f}",
        "auc_centre": f"{centre['auc']:.2f}",
        "ciou_verdict": _versus(learned["ciou50"], centre["ciou50"]),
        "auc_verdict": _versus(learned["auc"], centre["auc"]),
        "pair_learned": harness.pct(learned["pair_pointing"]),
        "pair_posthoc": harness.pct(posthoc["pair_pointing"]),
        "pair_random": harness.pct(rand["pair_pointing"]),
    }


def headline(d: dict[str, Any]) -> str:
    """The demo's retrieval, action probe and localization figures against their baselines."""
    f = _demo_figures(d)
    return (f"{d['pretrain']['steps']} pretraining steps: v2a R@1 {f['r1_before']} -> {f['r1_after']}; "
            f"action probe {f['action_av']} vs {f['action_random']} random; "
            f"pointing {f['point_learned']} vs centre box {f['point_centre']}")


def demo_paragraph(d: dict[str, Any]) -> str:
    """The README's paragraph on what one ``make demo`` run measured."""
    f, sec, machine = _demo_figures(d), d["seconds"], d["machine"]
    load = machine.get("load_start") or [0.0]
    wall = round(d["wall_seconds"])
    return (
        f"Measured (one run of `python -m avlearn demo`, {machine['cpu_count']}-core CPU, torch "
        f"{machine['torch']} with {machine['torch_threads']} threads, load average {load[0]:.1f} at the "
        f"start; `benchmarks/results/demo.json`): {wall // 60} min {wall % 60} s in all (pretraining "
        f"{sec['pretrain']:.0f} s, downstream {sec['downstream']:.0f} s). On the "
        f"{d['downstream']['test_videos']} test videos: held-out video→audio R@1 {f['r1_before']} at "
        f"random init vs {f['r1_after']} after pretraining (chance {f['r1_chance']}); object-class probe "
        f"{f['object_av']} vs {f['object_random']} for random features; actions {f['action_av']} vs "
        f"{f['action_random']} (chance {f['action_chance']}); fine-tuning on actions {f['ft_av']} from "
        f"the pretrained start vs {f['ft_scratch']} from scratch in the demo's budget ({f['ft_steps']} "
        f"steps{f['ft_how']}{f['ft_avid']}; the downstream benchmark (docs/benchmarks.md) gives "
        f"fine-tuning 1260 steps); "
        f"localization pointing {f['point_learned']} for the learned localizer ({f['point_posthoc']} "
        f"post hoc) vs {f['point_centre']} for the centre box and {f['point_random']} for a random-init "
        f"model; cIoU50 {f['ciou_learned']} learned ({f['ciou_verdict']} the centre box's "
        f"{f['ciou_centre']}; post hoc {f['ciou_posthoc']}) and AUC {f['auc_learned']} "
        f"({f['auc_verdict']} the centre box's {f['auc_centre']}; post hoc {f['auc_posthoc']}); with two "
        f"test videos side by side the peak lands on the object whose sound plays in {f['pair_learned']} "
        f"of the trials ({f['pair_posthoc']} post hoc, random init {f['pair_random']}). The generated "
        f"collection and every figure are the same from run to "
        f"run on one machine and thread count."
    )


def parser() -> argparse.ArgumentParser:
    p = harness.parser(__doc__, "record_demo", out=OUT)
    p.add_argument("summary", type=Path, help="a demo run's summary.json")
    return p


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """The demo's record: its summary, read from the run (the demo itself measured)."""
    summary: dict[str, Any] = json.loads(args.summary.read_text())
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    summary = measure(args)
    if "downstream" not in summary or "localization" not in summary:
        print(f"{args.summary}: not the summary of a full demo run (stages downstream and localize missing)")
        return 2
    harness.write(args.out, relative_paths(summary, args.summary.resolve().parent))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
