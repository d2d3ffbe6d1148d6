"""Sound localization with negatives on the synthetic collection: AP and max-F1 (SLAVC's protocol).

    python -m benchmarks.localization_negatives --reuse    # after localization_synth --seeds 0 1 2

For each seed: the collection of :mod:`benchmarks.localization_synth` (240 videos, 64 px, 3 s,
large objects, 0-2 silent distractors) with its fixed negatives list (``avlearn synth
--negatives``: every test video played with the sound of a test video whose sounding class is
not in view, an off-screen source; the list changes no video), and the same pretraining run as
that benchmark (``avlearn/configs/pretrain/synth_cpu_loc.yaml`` as it stands, in-batch InfoNCE,
same epochs, frames and cache, so ``--reuse`` scores its trained runs without training again),
then every test video's middle frame scored (:mod:`avlearn.localization.protocol`) as a positive
with its own sound, as a negative with the off-screen sound, and as a negative with silence.
Methods: the learned localizer, the same model post hoc, a random-init model post hoc, a centre
box (confidence constant). Positives: cIoU50 / AUC / pointing (LVS); with each negative
category: SLAVC's AP and max-F1 over positives and those negatives
(:mod:`avlearn.localization.negatives`).

Writes ``benchmarks/results/localization_negatives.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from avlearn.config import load_config
from avlearn.localization.inputs import load_for_localization
from avlearn.localization.metrics import center_box_map
from avlearn.localization.protocol import score_maps, synth_trials, trial_maps
from avlearn.models.registry import build_av_model
from avlearn.train.config import PretrainConfig
from benchmarks import harness
from benchmarks import localization_synth as base
from data_prep.synth import generate

NAME = "localization_negatives"
METHODS = {
    "loc_learned": "trained, learned localizer",
    "loc_posthoc": "trained, post hoc",
    "random_init_posthoc": "random init, post hoc",
    "center_box": "centre box (constant confidence)",
}


def collection(args: argparse.Namespace, seed: int) -> Path:
    """The localization_synth collection of ``seed`` (the same folder) with its negatives list."""
    args.seed = seed
    root = base.make_collection(args)
    generate(base.synth_config(args, negatives=True), progress=False)  # resumes: writes only the list
    return root


def evaluate(root: Path, export: Path, seed: int) -> dict[str, Any]:
    """Scores of every method on the test split's positives, off-screen and silent negatives."""
    tests = [v for v in json.loads((root / "annotations.json").read_text())["videos"] if v["split"] == "test"]
    model, inp, learned = load_for_localization(export, "auto")
    assert learned is not None, f"{export} has no exported localizer"
    trials = synth_trials(root, tests, inp, negatives=True, silent=True)
    torch.manual_seed(seed)  # the initialisation the run started from
    random_model = build_av_model(load_config(PretrainConfig, export.parent / "config.yaml").model)
    out: dict[str, Any] = {}
    for key, (m, loc) in {
        "loc_learned": (model, learned),
        "loc_posthoc": (model, None),
        "random_init_posthoc": (random_model, None),
    }.items():
        maps, kept = trial_maps(m, inp, loc, trials)
        out[key] = score_maps(maps, kept)
    out["center_box"] = score_maps([center_box_map(*t.size) for t in kept], kept)
    out["trials"] = {k: sum(t.kind == k for t in kept) for k in ("positive", "non-sounding", "silent")}
    return out


def _f(v: Any) -> str:
    return "-" if v is None else f"{float(v):.3f}"


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| method | cIoU50 | AUC | pointing | AP, off-screen | max-F1, off-screen | AP, silent | "
        "max-F1, silent | confidence: positive / off-screen / silent |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, label in METHODS.items():
        r = results[key]
        c = r["confidence"]
        lines.append(
            f"| {label} | {_f(r['positives']['ciou50'])} | {_f(r['positives']['auc'])} | "
            f"{_f(r['positives']['pointing'])} | {_f(r['non-sounding']['ap'])} | "
            f"{_f(r['non-sounding']['max_f1'])} | {_f(r['silent']['ap'])} | {_f(r['silent']['max_f1'])} | "
            f"{c['positive']:.3f} / {c['non-sounding']:.3f} / {c['silent']:.3f} |"
        )
    return lines


def reading(results: dict[str, Any]) -> list[str]:
    """What the table says, computed from it."""
    loc, centre = results["loc_learned"], results["center_box"]
    rand = results["random_init_posthoc"]
    out = []
    for kind, name in (("non-sounding", "an off-screen sound"), ("silent", "silence")):
        gain = loc[kind]["ap"] - max(centre[kind]["ap"], rand[kind]["ap"])
        above = loc[kind]["negatives_above_median_positive"]
        out.append(
            f"with {name}: the learned localizer's AP is {loc[kind]['ap']:.2f} vs {centre[kind]['ap']:.2f} "
            f"for the centre box and {rand[kind]['ap']:.2f} for a random-init model ("
            f"{'ahead by' if gain > 0 else 'behind by'} {abs(gain):.2f}); {above:.0%} of these "
            "negatives reach the median confidence of the positives."
        )
    out.append(
        "AP counts a confident positive as found only when its cIoU >= 0.5, so the positives' cIoU50 "
        f"caps it (learned localizer {loc['positives']['ciou50']:.2f}, post hoc "
        f"{results['loc_posthoc']['positives']['ciou50']:.2f}): the confidence separates the negatives, "
        "the cIoU of the positives limits the AP."
    )
    out.append(
        "the centre box gives every item one confidence, so it ranks nothing (AP "
        f"{centre['non-sounding']['ap']:.2f}) and every negative is one of its detections: max-F1 "
        f"{centre['non-sounding']['max_f1']:.2f} with off-screen sounds, whatever its cIoU50 "
        f"({centre['positives']['ciou50']:.2f})."
    )
    return out


def parser() -> argparse.ArgumentParser:
    """The main benchmark's options (collection, epochs, frames, cache): the same runs serve both."""
    p = base.parser()
    p.prog, p.description = f"python -m benchmarks.{NAME}", __doc__
    p.set_defaults(seeds=[0, 1, 2], out=harness.RESULTS / NAME)
    return p


def measure(args: argparse.Namespace,
            partial: Callable[[dict[str, Any]], object] | None = None) -> dict[str, Any]:
    """Train (or reuse) each seed's run and score it with negatives; ``partial`` gets the record after
    every seed, so a stopped run keeps its seeds."""
    runs: dict[str, Any] = {}
    record = {"epochs": args.epochs, "num_videos": args.num_videos, "size": args.size, "seeds": runs}
    for seed in args.seeds:
        t0 = time.perf_counter()
        root = collection(args, seed)
        export, t_train = base.train(args, root, "loc", None)  # the config's localization weight
        t1 = time.perf_counter()
        runs[str(seed)] = {
            **evaluate(root, export, seed),
            "seconds": {
                "train": round(t_train, 1),
                "eval": round(time.perf_counter() - t1, 1),
                "total": round(time.perf_counter() - t0, 1),
            },
        }
        if partial is not None:
            partial(record)
    return record


def headline(record: dict[str, Any]) -> str:
    """The learned localizer's AP with off-screen and with silent negatives, per seed."""
    learned = {seed: r["loc_learned"] for seed, r in record["seeds"].items()}
    ap = "; ".join(f"seed {seed} {r['non-sounding']['ap']:.2f} / {r['silent']['ap']:.2f}"
                   for seed, r in learned.items())
    return f"learned localizer, AP with off-screen / silent negatives: {ap}"


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.objective != "infonce":
        p.error("the negatives benchmark trains with in-batch InfoNCE (--objective infonce)")
    torch.set_num_threads(args.threads)
    head = harness.record_for(NAME, argv)
    measure(args, lambda record: harness.write(args.out, {**head, **record}, markdown({**head, **record})))
    return 0


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Sound localization with negatives on the synthetic collection (SLAVC's AP and max-F1)",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {m['platform']}, {m['cpu_count']} CPU cores (shared, load {m['load_average_at_start']}), "
        f"torch {m['torch']}  ",
        f"Per seed: {report['num_videos']} videos ({report['size']} px, 3 s, 0-2 silent distractors), "
        f"pretraining for {report['epochs']} epochs (synth_cpu_loc.yaml, in-batch InfoNCE + localization).",
        "",
    ]
    for seed, r in report["seeds"].items():
        t = r["trials"]
        lines += [
            f"## Collection seed {seed}",
            "",
            f"{t['positive']} positives (test videos' middle frames with their own sound), "
            f"{t['non-sounding']} off-screen negatives (another test video's sound, its class not in view), "
            f"{t['silent']} silent negatives; {r['seconds']['train']:.0f} s training, "
            f"{r['seconds']['eval']:.0f} s evaluation.",
            "",
            *table(r),
            "",
            "Reading (computed from the table):",
            "",
            *[f"- {line}" for line in reading(r)],
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
