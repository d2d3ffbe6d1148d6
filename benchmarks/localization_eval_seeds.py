"""The localization benchmark on its evaluation seeds, beside the development seeds the levers were
chosen on (``harness.DEV_SEEDS``, ``harness.EVAL_SEEDS``; see docs/benchmarks.md).

    python -m benchmarks.localization_eval_seeds --references   # before any training: the priors
    python -m benchmarks.localization_eval_seeds --run          # train + score each missing seed
    python -m benchmarks.localization_eval_seeds                # only summarize the seeds' files

``--references`` scores, on each evaluation seed's collection, what needs no training: the centre
box, the gt box averaged to the learned localizer's grid and a silent distractor's box
(``localization_synth_eval_seeds_references.{json,md}``). ``--run`` runs
``benchmarks/localization_synth.py`` with the development results' settings (their epochs; every
other option at its default, as those results were made) on each evaluation seed that has no
results file yet, one seed at a time, each into ``localization_synth_eval_seeds/seed<N>.{json,md}``.
The summary (``localization_synth_eval_seeds.{json,md}``) puts the development and evaluation
figures side by side, checks the goals on the evaluation seeds (the learned localizer above the
centre box on cIoU50 on *every* seed), pools the metrics by box area and centre offset over the
seeds, and reads each seed's cIoU50 against its sampling error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import harness
from benchmarks import localization_strata as strata
from benchmarks import localization_synth as loc
from benchmarks.harness import RESULTS
from data_prep.synth import GENERATOR_VERSION

NAME = "localization_eval_seeds"
EVAL_SEEDS = harness.EVAL_SEEDS["localization_synth"]
STEM = RESULTS / "localization_synth_eval_seeds"
DEV = RESULTS / "localization_synth_seeds.json"


def per_seed_path(seed: int, folder: Path = STEM) -> Path:
    return folder / f"seed{seed}.json"


def seed_options(dev: dict[str, Any], seed: int, out: Path) -> list[str]:
    """``localization_synth.py``'s options for one evaluation seed: the development results' epochs
    and objective, every other option at its default (as those results were made)."""
    train = dev["per_seed"][0]["train"]
    return ["--seed", str(seed), "--epochs", str(train["epochs"]), "--objective", str(train["objective"]),
            "--reuse", "--out", str(out.with_suffix(""))]


# ------------------------------------------------------------------------------------ references
def measure_references(args: argparse.Namespace) -> dict[str, Any]:
    """Each seed's collection (generated when missing), the learned localizer's grid (from the
    config, untrained) and the references that need no training."""
    per_seed: list[dict[str, Any]] = []
    for seed in args.seeds:
        opts = loc.parser().parse_args(["--seed", str(seed)])
        root = loc.make_collection(opts)
        videos = json.loads((root / "annotations.json").read_text())["videos"]
        tests = [v for v in videos if v["split"] == "test"]
        grid = loc.config_grid(opts, root)
        data: dict[str, Any] = {"seed": seed, "generator_version": GENERATOR_VERSION,
                                "num_videos": opts.num_videos, "test_videos": len(tests)}
        refs = loc.references(tests, grid)
        per_seed.append({"data": data, "grid": f"{grid[0]}x{grid[1]}", "results": refs})
    pooled = {k: strata.concat([r["results"]["frames"][k] for r in per_seed])
              for k in ("center_box", "oracle_grid")}
    return {"references_only": True, "seeds": list(args.seeds), "per_seed": per_seed,
            "strata": strata.stratify(pooled)}


def markdown_references(report: dict[str, Any]) -> str:
    lines = [
        f"# Localization references on collection seeds {', '.join(map(str, report['seeds']))} (no training)",
        "", f"Command: `{report['command']}`  ",
        f"Machine: {harness.machine_text(report)}", "",
        "What a map scores on each seed's 48 test frames without any model: the centre box, the gt box "
        "averaged to the learned localizer's grid (the best a map of that grid can do) and a silent "
        "distractor's box (frames with a distractor). *near 0.5*: the share of frames whose cIoU lies "
        f"within {strata.NEAR} of the 0.5 threshold; *SE*: the binomial standard error of the cIoU50 "
        "(48 frames).", "",
        "| seed | grid | mean box area | mean centre offset | centre box cIoU50 (SE) | AUC | mean cIoU "
        "| near 0.5 | grid oracle cIoU50 | AUC | wrong-object cIoU50 | centre box / grid oracle cIoU50, "
        "5 frames per video |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["per_seed"]:
        res, b = r["results"], r["results"]["boxes"]
        c, noise = res["center_box"], strata.threshold_noise(res["frames"]["center_box"])
        wrong = res.get("wrong_object_oracle") or {}
        spread = res["spread"]["scores"]
        lines.append(
            f"| {r['data']['seed']} | {r['grid']} | {b['mean_area']:.3f} | {b['mean_offset']:.3f} | "
            f"{c['ciou50']:.3f} ({noise['ciou50_se']:.3f}) | {c['auc']:.3f} | {c['mean_ciou']:.3f} | "
            f"{noise['near_threshold']:.2f} | {res['oracle_grid']['ciou50']:.3f} | "
            f"{res['oracle_grid']['auc']:.3f} | {wrong.get('ciou50', float('nan')):.3f} | "
            f"{spread['center_box']['ciou50']:.3f} / {spread['oracle_grid']['ciou50']:.3f} |")
    spread_ciou50 = [r["results"]["spread"]["scores"]["center_box"]["ciou50"] for r in report["per_seed"]]
    middle_ciou50 = [r["results"]["center_box"]["ciou50"] for r in report["per_seed"]]
    times = ", ".join(f"{t:g}" for t in report["per_seed"][0]["results"]["spread"]["times_s"])
    lines += ["", f"Centre box cIoU50 over the seeds: on the middle frame mean {np.mean(middle_ciou50):.3f}, "
              f"standard deviation {np.std(middle_ciou50):.3f}; on 5 frames per video (windows at {times} s) "
              f"mean {np.mean(spread_ciou50):.3f}, standard deviation {np.std(spread_ciou50):.3f}."]
    lines += ["", "Pooled over the seeds:", "",
              *strata.strata_markdown(report["strata"], {"center_box": "centre box",
                                                         "oracle_grid": "grid oracle"})]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- the summary
def run_missing(args: argparse.Namespace, dev: dict[str, Any]) -> None:
    """Train and score every seed of ``args.seeds`` without a results file, one at a time."""
    for seed in args.seeds:
        path = per_seed_path(seed, args.per_seed_dir)
        if not path.is_file():
            loc.main(seed_options(dev, seed, path))


def slim(report: dict[str, Any]) -> dict[str, Any]:
    """A seed's record without its per-frame tables and strata (they stay in the seed's own file)."""
    results = {k: v for k, v in report["results"].items() if k not in ("frames", "strata", "spread")}
    results["spread"] = {k: v for k, v in report["results"]["spread"].items() if k != "frames"}
    return {**{k: v for k, v in report.items() if k != "results"}, "results": results}


def same_settings(dev: dict[str, Any], reports: list[dict[str, Any]]) -> list[str]:
    """The training settings in which an evaluation seed differs from the development results."""
    ref = dev["per_seed"][0]["train"]
    keys = ("config", "objective", "epochs", "steps_per_epoch", "batch_size", "num_frames", "fps", "size",
            "grid", "localization")
    return [f"seed {r['data']['seed']}: {k} {r['train'].get(k)!r} (development: {ref.get(k)!r})"
            for r in reports for k in keys if r["train"].get(k) != ref.get(k)]


def eval_goals(reports: list[dict[str, Any]], summary: dict[str, Any]) -> list[str]:
    """The issue's goals on the evaluation seeds: those of the development seeds (on the means), the
    learned localizer above the centre box on cIoU50 on every seed and on AUC in the mean."""
    lines = loc.goal_lines(summary)
    per = [(r["data"]["seed"], r["results"]["loc_learned"]["ciou50"], r["results"]["center_box"]["ciou50"])
           for r in reports]
    below = [seed for seed, ours, centre in per if not ours > centre]
    lines.append("ciou50 above the centre box on every seed: "
                 + ", ".join(f"seed {s} {a:.3f} vs {c:.3f}" for s, a, c in per)
                 + (": met" if not below else f": NOT met (seed {', '.join(map(str, below))})"))
    ours, centre = summary["loc_learned"]["auc"]["mean"], summary["center_box"]["auc"]["mean"]
    lines.append(f"auc {ours:.3f} {'>' if ours > centre else '<='} centre box ({centre:.3f}) in the mean: "
                 f"{'met' if ours > centre else 'NOT met'}")
    return lines


def variation(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per seed: box statistics, and each key method's cIoU50 with its sampling error, the share of
    frames near the threshold, the predicted area; the learned localizer's paired gap to the centre box."""
    rows = []
    for r in reports:
        res, frames = r["results"], r["results"]["frames"]
        row: dict[str, Any] = {"seed": r["data"]["seed"], "mean_area": res["boxes"]["mean_area"],
                               "mean_offset": res["boxes"]["mean_offset"],
                               "floor": r["train"].get("localizer_floor")}
        for key in ("loc_learned", "center_box", "oracle_grid"):
            row[key] = {**strata.scores(frames[key]), **strata.threshold_noise(frames[key])}
        row["learned_vs_centre"] = strata.paired_gap(frames["loc_learned"], frames["center_box"])
        spread = res["spread"]["frames"]
        ours, centre = spread["loc_learned"], spread["center_box"]
        row["spread"] = {k: strata.scores(spread[k]) for k in ("loc_learned", "center_box", "oracle_grid")}
        if len(ours["ciou"]) == len(centre["ciou"]):  # the same frames
            row["spread"]["learned_vs_centre"] = strata.paired_gap(ours, centre)
        rows.append(row)
    return rows


def measure_summary(args: argparse.Namespace) -> dict[str, Any]:
    """The development and evaluation figures side by side, the goals, strata and per-seed variation."""
    dev = json.loads(args.dev.read_text())
    if args.run:
        run_missing(args, dev)
    paths = [per_seed_path(s, args.per_seed_dir) for s in args.seeds]
    found = [p for p in paths if p.is_file()]
    if not found:
        raise SystemExit(f"no evaluation seed has a results file yet ({paths[0]}, ...); run with --run")
    reports = [json.loads(p.read_text()) for p in found]
    summary = loc.summarize(reports)
    pooled = {k: strata.concat([r["results"]["frames"][k] for r in reports]) for k in loc.STRATA_ROWS
              if all(k in r["results"]["frames"] for r in reports)}
    return {
        "seeds": [r["data"]["seed"] for r in reports],
        "missing_seeds": [s for s, p in zip(args.seeds, paths, strict=True) if not p.is_file()],
        "files": [str(p) for p in found],
        "seconds": sum(r["seconds"]["total"] for r in reports),
        "development": {"file": str(args.dev), "seeds": dev["seeds"],
                        "summary": dev["summary"]},
        "settings_differ": same_settings(dev, reports),
        "summary": summary, "goals": eval_goals(reports, summary),
        "strata": strata.stratify(pooled), "variation": variation(reports),
        "per_seed": [slim(r) for r in reports], "notes": list(args.note),
    }


def _cell(m: dict[str, Any] | None) -> str:
    return "-" if not m else f"{m['mean']:.3f} +- {m['std']:.3f}"


def markdown_summary(report: dict[str, Any]) -> str:
    first, dev, missing = report["per_seed"][0], report["development"], report["missing_seeds"]
    differ = report["settings_differ"]
    objective = loc.objective_label(first["train"])
    lines = [
        "# Sound localization on the synthetic collection: development vs evaluation seeds", "",
        f"Command: `{report['command']}` (each seed's own command and machine are in its file: "
        + ", ".join(f"`{f}`" for f in report["files"]) + ")  ",
        f"Evaluation seeds: {', '.join(map(str, report['seeds']))}"
        + (f" (not yet run: {', '.join(map(str, missing))})" if missing else "")
        + f", fixed on {harness.EVAL_SEEDS_CHOSEN} before any training on them; no lever was chosen on them. "
        f"Development seeds: {', '.join(map(str, dev['seeds']))} (`{dev['file']}`), where every lever was "
        f"chosen. Training: {first['train']['epochs']} epochs x {first['train']['steps_per_epoch']} steps "
        f"of batch {first['train']['batch_size']}, learned localizer on a {first['train']['grid']} grid "
        f"({', '.join(f'{k}={v}' for k, v in first['train']['localization'].items())}); "
        + ("the same settings as the development results." if not differ else
           "settings that differ from the development results: " + "; ".join(differ) + "."),
        f"Run time: {report['seconds']:.0f} s for the evaluation seeds.", "",
        "Mean +- standard deviation over the seeds.", "",
        "| method | " + " | ".join(f"{m} dev | {m} eval" for m in ("cIoU50", "AUC", "pointing", "pairs",
                                                                      "on a distractor")) + " |",
        "|---|" + "---|" * 10,
    ]
    for key, label in loc.ROWS:
        ev, dv = report["summary"].get(key), dev["summary"].get(key)
        if not ev:
            continue
        cells = [f"{_cell((dv or {}).get(m))} | {_cell(ev.get(m))}"
                 for m in ("ciou50", "auc", "pointing", "pair_pointing", "on_distractor")]
        lines.append(f"| {label.format(objective=objective)} | " + " | ".join(cells) + " |")
    lines += ["", "Goals on the evaluation seeds (issue 31):", "", *[f"- {g}" for g in report["goals"]], ""]
    lines += ["Per evaluation seed: the boxes, and each cIoU50 with its binomial standard error over the "
              f"{first['data']['test_videos']} test frames (SE); *near 0.5*: share of frames with a cIoU "
              f"within {strata.NEAR} of the threshold; *pred. area*: the fraction of the frame the protocol "
              "predicts (the upper half of the map: the floor decides it for the learned localizer); gap: "
              "learned minus centre box cIoU50 on the same frames, +- its paired SE.", "",
              "| seed | box area | centre offset | floor | learned cIoU50 (SE) | near 0.5 | pred. area "
              "| centre box cIoU50 (SE) | near 0.5 | grid oracle cIoU50 | gap (paired SE) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for v in report["variation"]:
        ours, centre, grid, gap = v["loc_learned"], v["center_box"], v["oracle_grid"], v["learned_vs_centre"]
        floor = "-" if v["floor"] is None else f"{v['floor']:.3f}"
        lines.append(f"| {v['seed']} | {v['mean_area']:.3f} | {v['mean_offset']:.3f} | {floor} | "
                     f"{ours['ciou50']:.3f} ({ours['ciou50_se']:.3f}) | {ours['near_threshold']:.2f} | "
                     f"{ours['pred_area']:.3f} | {centre['ciou50']:.3f} ({centre['ciou50_se']:.3f}) | "
                     f"{centre['near_threshold']:.2f} | {grid['ciou50']:.3f} | "
                     f"{gap['gap']:+.3f} ({gap['se']:.3f}) |")
    spread = np.std([v["center_box"]["ciou50"] for v in report["variation"]])
    se = np.mean([v["center_box"]["ciou50_se"] for v in report["variation"]])
    lines += ["", f"The centre box's cIoU50 spreads by {spread:.3f} (standard deviation over these seeds) "
              f"against a binomial standard error of {se:.3f} per seed.", "", *spread_table(report), "",
              f"Pooled over the {len(report['seeds'])} evaluation seeds "
              f"({sum(r['data']['test_videos'] for r in report['per_seed'])} test frames):", "",
              *strata.strata_markdown(report["strata"], {k: dict(loc.ROWS)[k].format(objective=objective)
                                                         for k in loc.STRATA_ROWS})]
    if report.get("notes"):
        lines += ["Notes:", "", *[f"- {n}" for n in report["notes"]], ""]
    return "\n".join(lines)


def spread_table(report: dict[str, Any]) -> list[str]:
    """Each evaluation seed on several frames per test video (``localization_synth.SPREAD_TIMES``)."""
    keys = ("loc_learned", "center_box", "oracle_grid")
    lines = ["Several frames per test video (windows at "
             + ", ".join(f"{t:g}" for t in report["per_seed"][0]["results"]["spread"]["times_s"])
             + " s; not the published protocol, a lower-noise reading beside it):", "",
             "| seed | frames | learned cIoU50 / AUC | centre box cIoU50 / AUC | grid oracle cIoU50 / AUC "
             "| learned - centre box cIoU50 (paired SE) |", "|---|---|---|---|---|---|"]
    for v in report["variation"]:
        s = v["spread"]
        gap = s.get("learned_vs_centre")
        lines.append(f"| {v['seed']} | {s['loc_learned']['n']} | "
                     + " | ".join(f"{s[k]['ciou50']:.3f} / {s[k]['auc']:.3f}" for k in keys)
                     + (f" | {gap['gap']:+.3f} ({gap['se']:.3f}) |" if gap else " | - |"))
    per = [v["spread"] for v in report["variation"]]
    means = {k: (np.mean([s[k]["ciou50"] for s in per]), np.mean([s[k]["auc"] for s in per])) for k in keys}
    lines.append("| mean | | " + " | ".join(f"{c:.3f} / {a:.3f}" for c, a in means.values()) + " | |")
    above = [s["loc_learned"]["ciou50"] > s["center_box"]["ciou50"] for s in per]
    lines += ["", f"On these frames the learned localizer is above the centre box on cIoU50 on {sum(above)} "
              f"of {len(above)} evaluation seeds."]
    return lines


# ------------------------------------------------------------------------------------ the command
def parser() -> argparse.ArgumentParser:
    p = harness.parser(__doc__, NAME, out=STEM)
    p.add_argument("--seeds", type=int, nargs="+", default=list(EVAL_SEEDS),
                   help="collection seeds (default: the evaluation seeds, harness.EVAL_SEEDS)")
    p.add_argument("--references", action="store_true",
                   help="only the references that need no training; writes OUT_references.{json,md}")
    p.add_argument("--run", action="store_true",
                   help="train and score each seed without a results file first (one at a time)")
    p.add_argument("--per-seed-dir", type=Path, default=STEM, help="each seed's results: DIR/seed<N>.json")
    p.add_argument("--dev", type=Path, default=DEV, help="the development seeds' results")
    p.add_argument("--note", action="append", default=[], help="a note for the report (repeatable)")
    return p


def measure(args: argparse.Namespace) -> dict[str, Any]:
    return measure_references(args) if args.references else measure_summary(args)


def headline(record: dict[str, Any]) -> str:
    """The references' centre box and grid oracle, or the evaluation seeds' learned localizer."""
    if record.get("references_only"):
        per = record["per_seed"]
        centre = [r["results"]["center_box"]["ciou50"] for r in per]
        grid = [r["results"]["oracle_grid"]["ciou50"] for r in per]
        return (f"references on seeds {', '.join(str(r['data']['seed']) for r in per)}: cIoU50 centre box "
                f"{min(centre):.2f}-{max(centre):.2f}, grid oracle {min(grid):.2f}-{max(grid):.2f}")
    sm, dev = record["summary"], record["development"]["summary"]
    met = sum(g.endswith(": met") for g in record["goals"])
    ours, centre = sm["loc_learned"]["ciou50"]["mean"], sm["center_box"]["ciou50"]["mean"]
    return (f"{len(record['seeds'])} evaluation seeds vs {len(record['development']['seeds'])} development, "
            f"learned localizer cIoU50 {ours:.2f} vs {dev['loc_learned']['ciou50']['mean']:.2f} (centre box "
            f"{centre:.2f} vs {dev['center_box']['ciou50']['mean']:.2f}); goals met {met} of "
            f"{len(record['goals'])}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # paths relative to the repository in the markdown too
    record = harness.relative_paths({**harness.record_for(NAME, argv), **measure(args)})
    if args.references:
        harness.write(Path(f"{args.out}_references"), record, markdown_references(record))
    else:
        harness.write(args.out, record, markdown_summary(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
