"""The README's benchmark table, rendered from ``benchmarks/results/*.json`` (never typed by hand).

Each results file gives one or a few rows: benchmark | what it measured (headline figures) |
machine | command. Known files have a renderer that picks their headline numbers; any other
JSON (or one whose shape changed) gets a generic row from its top-level numbers, so adding a
benchmark never breaks the table.

    python benchmarks/readme_table.py            # print the table
    python benchmarks/readme_table.py --write    # replace the block in README.md
    python benchmarks/readme_table.py --check    # exit 1 if README.md is out of date

The block sits between ``<!-- benchmarks:start -->`` and ``<!-- benchmarks:end -->``. The
paragraph on what ``make demo`` measured sits between ``<!-- demo:start -->`` and
``<!-- demo:end -->``, rendered from ``benchmarks/results/demo.json`` (written by
``benchmarks/record_demo.py`` from a demo run's ``summary.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
DEMO_START, DEMO_END = "<!-- demo:start -->", "<!-- demo:end -->"
DEMO = RESULTS / "demo.json"
HEADER = "| benchmark | what it measured (headline figures) | machine | command |\n|---|---|---|---|"

Row = tuple[str, str, str]  # (what it measured, machine, command); "" means the file's own


def _num(x: Any, digits: int = 3) -> str:
    """A number as short text: integers as such, floats to ``digits`` significant figures."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return str(x)
    return str(x) if isinstance(x, int) else f"{x:.{digits}g}"


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _load(d: dict[str, Any]) -> str:
    for key in ("load_average_1min", "load_average_1min_at_end", "load_average_1min_at_start"):
        if isinstance(d.get(key), int | float):
            return f"load {d[key]:.1f}"
    machine = d.get("machine")
    loads = machine.get("load_average_at_start") if isinstance(machine, dict) else None
    if isinstance(loads, list) and loads and isinstance(loads[0], int | float):
        return f"load {loads[0]:.1f}"
    return ""


def machine_text(d: dict[str, Any]) -> str:
    """The ``machine`` entry (text or a dict of facts) plus the load average where recorded."""
    machine = d.get("machine")
    if isinstance(machine, dict):
        parts = [str(machine.get("processor") or machine.get("platform") or "")]
        if "cpu_count" in machine:
            parts.append(f"{machine['cpu_count']} cores")
        threads = machine.get("torch_threads", machine.get("threads"))
        if threads is not None:
            parts.append(f"{threads} threads")
        if machine.get("cuda"):
            parts.append("CUDA")
        text = ", ".join(p for p in parts if p)
    else:
        text = str(machine) if machine else "-"
    load = _load(d)
    return f"{text}; {load}" if load and text != "-" else text


def _decode_speed(d: dict[str, Any]) -> list[Row]:
    spec = d["spec"]
    figures = ", ".join(f"{name} {_num(r['clips_per_s_per_core'])}" for name, r in d["results"].items())
    return [(f"clip decoding ({spec['num_frames']} frames at {spec['fps']} fps, {spec['size']} px + "
             f"{_num(spec['audio_seconds'])} s audio) from `{d['source']}`: clips/s per core {figures}",
             "", "")]


def _data_loading(d: dict[str, Any]) -> list[Row]:
    c, r = d["clips_per_s_per_core"], d["ratios"]
    return [(f"training data pipeline vs decode-only vs reference-style loader ({d['clip']}): "
             f"{_num(c['pipeline'])} / {_num(c['decode_only'])} / {_num(c['straightforward'])} clips/s "
             f"per core; pipeline at {_num(r['pipeline_vs_decode_only'])}x of decode-only, "
             f"{_num(r['pipeline_vs_straightforward'])}x of the reference loader"
             + (f"; with video_aug.fused (uint8 crop, one colour map) {_num(c['pipeline_fused'])} clips/s: "
                f"{_num(f['vs_decode_only'])}x / {_num(f['vs_straightforward'])}x"
                if (f := d.get("fused_ratios")) else "")
             + (f"; augment_on=device's worker (decode + draws) {_num(c['pipeline_device'])} clips/s: "
                f"{_num(d['device_vs_decode_only'])}x of decode-only" if "pipeline_device" in c else ""),
             "", "")]


def _train_throughput(d: dict[str, Any]) -> list[Row]:
    res = d["results"]
    sizes = ", ".join(f"{s} {_num(r['clips_per_s'])}" for s, r in res.items())
    share = max(r["objective_and_bank_share"] for r in res.values())
    data = d.get("data", "in-memory")
    source = ("in-memory batches" if data == "in-memory"
              else f"batches from the training pipeline ({data.removeprefix('pipeline, ')})")
    wait = ""
    if data != "in-memory" and all("data_wait_share" in r for r in res.values()):
        wait = "; data wait " + ", ".join(f"{s} {_pct(r['data_wait_share'])}" for s, r in res.items())
    return [(f"training step, batch {d['batch']}, 8x{d['crop']}² video + 2 s audio, {source}: "
             f"clips/s {sizes}; objective + bank update at most {_pct(share)} of a step{wait}", "", "")]


def _downstream(d: dict[str, Any]) -> list[Row]:
    lp, ft, ret = d["linear_probe"], d["finetune"], d["retrieval"]
    s = d["setup"]
    return [(
        f"downstream on synthetic data ({s['videos']} videos, {s['pretrain_epochs']} pretraining epochs), "
        f"AV-pretrained vs random init, video top-1: linear probe object class "
        f"{_pct(lp['av_object']['video_top1'])} vs {_pct(lp['random_object']['video_top1'])}, action "
        f"{_pct(lp['av_action']['video_top1'])} vs {_pct(lp['random_action']['video_top1'])}; "
        f"fine-tune action 10 % labels {_pct(ft['av_10pct']['video_top1'])} vs "
        f"{_pct(ft['scratch_10pct']['video_top1'])}"
        + (f" (few-label recipe {_pct(ft['av_10pct_lpft']['video_top1'])} vs "
           f"{_pct(ft['scratch_10pct_lpft']['video_top1'])})" if "av_10pct_lpft" in ft else "")
        + f", 100 % {_pct(ft['av_100pct']['video_top1'])} vs "
        f"{_pct(ft['scratch_100pct']['video_top1'])}; v2a R@5 {_pct(ret['av']['v2a_r5'])} vs "
        f"{_pct(ret['random']['v2a_r5'])}", "", "")]


def _downstream_seeds(d: dict[str, Any]) -> list[Row]:
    """benchmarks/downstream_synth.py --summarize: means over the seeds and the action goals."""
    t = d["table"]

    def pair(av: str, base: str) -> str:
        return f"{t[av]['mean']:.1f} vs {t[base]['mean']:.1f}"

    goals = "; ".join(
        f"{g['goal'].split(':')[0]} {g['gap_mean']:+.1f} points ({'met' if g['met'] else 'not met'})"
        for g in d["goals"])
    seeds = ", ".join(map(str, d["seeds"]))
    return [(f"downstream on synthetic data, {len(d['seeds'])} collection seeds ({seeds}), mean video "
             f"top-1 %, AV vs random / scratch: probe action {pair('av_action', 'random_action')}, object "
             f"{pair('av_object', 'random_object')}; fine-tune 10 % {pair('av_10pct', 'scratch_10pct')}"
             + (f" (few-label recipe {pair('av_10pct_lpft', 'scratch_10pct_lpft')})" if "av_10pct_lpft" in t
                else "") + ", "
             f"100 % {pair('av_100pct', 'scratch_100pct')}; goals: {goals}", "", "")]


def _downstream_actions(d: dict[str, Any]) -> list[Row]:
    variants = "; ".join(f"{name}: {_pct(r['av'])} vs {_pct(r['random'])}"
                         for name, r in d["action_video_top1"].items())
    seed = f", collection seed {d['seed']}" if "seed" in d else ""
    return [(f"action linear probes{seed}, AV-pretrained vs random init, video top-1: {variants}", "", "")]


def _downstream_levers(d: dict[str, Any]) -> list[Row]:
    """benchmarks/downstream_levers.py: the action probe of each pretraining lever, AV vs random."""
    parts = []
    for slug, runs in d["levers"].items():
        runs = dict(sorted(runs.items(), key=lambda kv: int(kv[0])))
        figures = ", ".join(f"seed {seed} {_pct(r['action'])} vs {_pct(d['random'][seed]['action'])}"
                            for seed, r in runs.items())
        gaps = [100 * (r["action"] - d["random"][seed]["action"]) for seed, r in runs.items()]
        mean = f" (mean gap {sum(gaps) / len(gaps):+.1f} points)" if len(gaps) > 1 else ""
        parts.append(f"{d['definitions'][slug]['what']}: {figures}{mean}")
    return [("pretraining levers for actions, linear probe on frozen features, action top-1 AV vs random "
             "init: " + "; ".join(parts), "", "")]


def _finetune_levers(d: dict[str, Any]) -> list[Row]:
    """benchmarks/finetune_levers.py: few-label fine-tuning recipes, AV init vs scratch."""
    parts = []
    for slug, per_seed in d["gaps"].items():
        if not per_seed:
            continue
        same = [v["same"] for v in per_seed.values()]
        best = [v["best"] for v in per_seed.values()]
        av = [100 * d["levers"][slug][s]["av"]["video_top1"] for s in per_seed]
        parts.append(f"{d['definitions'][slug]['what']}: AV {sum(av) / len(av):.1f} %, gap "
                     f"{sum(same) / len(same):+.1f} (to the best scratch {sum(best) / len(best):+.1f}) on "
                     f"seed{'s' if len(same) > 1 else ''} {', '.join(per_seed)}")
    return [(f"fine-tuning levers with {round(100 * d['fraction'])} % of the action labels, mean video "
             "top-1 and gap to scratch in points: " + "; ".join(parts), "", "")]


def _localization(d: dict[str, Any]) -> list[Row]:
    r, t = d["results"], d["train"]
    steps = t["epochs"] * t["steps_per_epoch"]
    labels = {"avid": "AVID-softmax", "infonce": "InfoNCE"}
    objective = labels.get(str(t.get("objective", "infonce")), "pretrained")
    names = {"loc_learned": "learned localizer", "pretrained_posthoc": f"{objective} post hoc",
             "random_init_posthoc": "random init", "center_box": "centre box"}
    pointing = ", ".join(f"{label} {_num(r[k]['pointing'], 2)}" for k, label in names.items() if k in r)
    rows = [(f"sound localization on synthetic data with distractors, {objective}, {steps} steps: "
             f"pointing {pointing}; "
             f"peak follows a swapped sound {_pct(r['loc_learned']['swap_pointing'])}"
             + (f"; two videos side by side, peak on the object whose sound plays "
                f"{_pct(r['loc_learned']['pair_pointing'])} (a sound-blind map <= 50 %)"
                if r["loc_learned"].get("pair_pointing") is not None else ""), "", "")]
    longer = d.get("longer_run")
    if isinstance(longer, dict) and "loc_learned" in longer:
        ll = longer["loc_learned"]
        rows.append((f"the same, longer run (see JSON `longer_run`): learned localizer pointing "
                     f"{_num(ll['pointing'], 2)}, cIoU50 {_num(ll['ciou50'], 2)}, peak follows a swapped "
                     f"sound {_pct(ll['swap_pointing'])}", "", "see `longer_run.what` in the JSON"))
    return rows


def _localization_seeds(d: dict[str, Any]) -> list[Row]:
    """benchmarks/localization_synth.py --seeds: means over the collection seeds and the goals."""
    sm, first = d["summary"], d["per_seed"][0]["train"]
    steps = first["epochs"] * first["steps_per_epoch"]

    def m(key: str, metric: str) -> str:
        v = sm[key][metric]
        return f"{_num(v['mean'], 2)} ({' / '.join(_num(x, 2) for x in v['values'])})"

    return [(f"sound localization, {len(d['seeds'])} collection seeds ({', '.join(map(str, d['seeds']))}), "
             f"{steps} steps, learned localizer on a {first['grid']} grid, mean (per seed): pointing "
             f"{m('loc_learned', 'pointing')}, side-by-side pairs {m('loc_learned', 'pair_pointing')}, "
             f"peak on a silent distractor {m('loc_learned', 'on_distractor')}, cIoU50 "
             f"{m('loc_learned', 'ciou50')} vs centre box {m('center_box', 'ciou50')} and grid oracle "
             f"{m('oracle_grid', 'ciou50')}, AUC {m('loc_learned', 'auc')} vs {m('center_box', 'auc')} and "
             f"{m('oracle_grid', 'auc')}", "", "")]


def _levers(d: dict[str, Any]) -> list[Row]:
    """benchmarks/localization_levers.py: mean pointing and floored cIoU50 / AUC of each lever."""
    parts = []
    for slug, runs in d["levers"].items():
        rows = list(runs.values())
        what = d["definitions"][slug]

        def mean(part: str, metric: str, rows: list[dict[str, Any]] = rows) -> str:
            return _num(sum(r[part][metric] for r in rows) / len(rows), 2)

        parts.append(f"{what['what'].split(':')[0]}, {what['epochs']} epochs (seeds "
                     f"{', '.join(runs)}): {mean('raw', 'pointing')} / {mean('floored', 'ciou50')} / "
                     f"{mean('floored', 'auc')}")
    return [("levers for the learned localizer, mean pointing / floored cIoU50 / floored AUC: "
             + "; ".join(parts), "", "")]


def _negatives(d: dict[str, Any]) -> list[Row]:
    names = {"loc_learned": "learned localizer", "loc_posthoc": "post hoc",
             "random_init_posthoc": "random init", "center_box": "centre box"}
    rows = []
    for seed, r in d["seeds"].items():
        ap = ", ".join(f"{label} {_num(r[k]['non-sounding']['ap'], 2)} / {_num(r[k]['silent']['ap'], 2)}"
                       for k, label in names.items())
        rows.append((f"sound localization with negatives (SLAVC's AP), synthetic seed {seed}, "
                     f"{d['epochs']} epochs, {r['trials']['positive']} positives: AP with off-screen / "
                     f"silent negatives: {ap}", "", ""))
    return rows


def _scaling(d: dict[str, Any]) -> list[Row]:
    r = d["results"]
    one, two = r["p1_t2"], r["p2_t1"]
    goal = "met" if d["goal_met"] else "not met"
    if d["goal_met"] and "p1_t1" in r and r["p1_t1"]["clips_per_s"] > one["clips_per_s"]:
        goal = "met only against a 2-thread run slower than 1 thread"
    vs_t1 = (f" (vs 1 process x 1 thread, {_num(r['p1_t1']['clips_per_s'])} clips/s: "
             f"{_num(d['speedup_2_vs_1_thread'])}x)" if d.get("speedup_2_vs_1_thread") else "")
    return [(
        f"pretraining 1 vs 2 processes (gloo), global batch {d['global_batch']}: "
        f"{_num(one['clips_per_s'])} clips/s (1 x {one['threads_per_process']} threads) vs "
        f"{_num(two['clips_per_s'])} (2 x {two['threads_per_process']}, world size {two['world_size']}): "
        f"{_num(d['speedup_2_vs_1'])}x, goal {_num(d['goal'])}x {goal}{vs_t1}; "
        f"identical {'yes' if d['identical'] else 'no'} (max loss diff {_num(d['max_abs_loss_diff'])}, "
        f"weights {_num(d['max_abs_weight_diff'])}"
        + (f"; 1 vs 2 threads in one process: {_num(t['max_abs_loss_diff'])}, "
           f"{_num(t['max_abs_weight_diff'])}"
           if (t := d.get("rounding_between_thread_counts")) else "") + ")"
        + (f"; compute-only ceiling of 2 processes {_num(c['p2_t1_independent'] / c['p1_t2'])}x"
           if (c := d.get("compute_ceiling_clips_per_s")) else ""), "", "")]


def _model_cost(d: dict[str, Any]) -> list[Row]:
    video = ", ".join(f"{n} {e['params'] / 1e6:.1f} M / {e['gflop_8x112']:.1f} / {e['gflop_8x224']:.1f}"
                      for n, e in d["video"].items())
    audio = ", ".join(f"{n} {e['params'] / 1e6:.2f} M / {e['gflop_2s']:.2f}" for n, e in d["audio"].items())
    speed = ""
    if isinstance(c := d.get("cpu_clips_per_s"), dict) and c:
        speed = "; CPU clips/s at 8x112² (train step / inference): " + ", ".join(
            f"{n} {_num(v['train'], 2)} / {_num(v['inference'], 2)}" for n, v in c.items())
    return [(f"encoder size and cost (torch.utils.flop_counter, multiply-add = 2 FLOPs): video parameters / "
             f"GFLOP at 8x112² / 8x224²: {video}; audio parameters / GFLOP on 2 s (257x200): {audio}{speed}",
             "", "")]


def _p1(x: float) -> str:
    return f"{100 * x:.1f} %"


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
        "pair_learned": _pct(learned["pair_pointing"]), "pair_posthoc": _pct(posthoc["pair_pointing"]),
        "pair_random": _pct(rand["pair_pointing"]),
    }


def _demo(d: dict[str, Any]) -> list[Row]:
    f = _demo_figures(d)
    return [(
        f"`make demo` ({d['pretrain']['steps']} pretraining steps): held-out v2a R@1 "
        f"{f['r1_before']} at init vs {f['r1_after']} after pretraining; probes object "
        f"{f['object_av']} vs {f['object_random']}, action {f['action_av']} vs "
        f"{f['action_random']}; fine-tune action {f['ft_av']} vs {f['ft_scratch']}; "
        f"pointing {f['point_learned']} vs centre box {f['point_centre']}, "
        f"cIoU50 {f['ciou_learned']} vs {f['ciou_centre']}, AUC {f['auc_learned']} vs {f['auc_centre']}",
        "", "")]


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
        f"steps{f['ft_how']}{f['ft_avid']}; the downstream benchmark below gives fine-tuning 1260 steps); "
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


def _gpu(d: dict[str, Any]) -> list[Row]:
    """benchmarks/gpu: the best clips/s and MFU per model and clip size at batch 64, tests, smoke runs."""
    st = d["stages"]
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in st.get("encoders", {}).get("rows", []):
        key = (f"{r['video_arch']} + {r['audio_arch']}", f"{r['frames']}x{r['crop']}²")
        if r.get("status") == "ok" and r["batch"] == d["sizes"]["batch"] and (
                key not in best or r["clips_per_s"] > best[key]["clips_per_s"]):
            best[key] = r
    top: dict[tuple[str, str], dict[str, Any]] = {}  # the best at any batch, where another is better
    for r in st.get("encoders", {}).get("rows", []):
        key = (f"{r['video_arch']} + {r['audio_arch']}", f"{r['frames']}x{r['crop']}²")
        if r.get("status") == "ok" and key in best and r["clips_per_s"] > max(
                best[key]["clips_per_s"], top.get(key, {}).get("clips_per_s", 0)):
            top[key] = r
    steps = "; ".join(
        f"{m} {c}: {r['clips_per_s']:.0f} clips/s, MFU {_pct(r['mfu'])} ({r['layout']}), objective + bank "
        f"{_pct(r['objective_share'])}" + (f" (batch {top[m, c]['batch']}: {top[m, c]['clips_per_s']:.0f} "
                                           f"clips/s, MFU {_pct(top[m, c]['mfu'])})" if (m, c) in top else "")
        for (m, c), r in best.items())
    counts = st.get("tests", {}).get("counts", {})
    tests = ", ".join(f"{n} {k}" for k, n in counts.items()) or st.get("tests", {}).get("status", "-")
    cudnn = ", cuDNN autotuned" if d.get("cudnn_benchmark") else ""
    return [(f"{'dry run on CPU, tiny shapes: ' if d.get('dry_run') else ''}pretraining step, bf16{cudnn}, "
             f"batch {d['sizes']['batch']}: {steps or '-'}; GPU tests: {tests}; smoke runs: "
             f"{st.get('smoke', {}).get('status', '-')}", "", "")]


def _loader_cores(d: dict[str, Any]) -> list[Row]:
    """benchmarks/loader_cores.py: cores per GPU each loader needs, per crop and GPU rate."""
    names = {"pipeline": "default", "pipeline_fused": "fused", "pipeline_device": "augment_on=device",
             "decode_only": "decode-only"}
    per_core = ", ".join(f"{names.get(k, k)} {_num(v)}" for k, v in d["loader_clips_per_s_per_core"].items())
    parts = []
    for r in d["rows"]:
        cores = " / ".join(f"{v:.0f}" for v in r["cores_per_gpu"].values())
        rate = r["gpu_rate"].split(" (")[0]
        parts.append(f"{r['crop']}² at {r['gpu_clips_per_s']:.0f} clips/s ({rate}): {cores}")
    return [(f"CPU cores per GPU to feed {d['model']} (loader clips/s per core: {per_core}); cores for "
             f"{' / '.join(names.get(k, k) for k in d['loader_clips_per_s_per_core'])}: " + "; ".join(parts),
             "measured loader (CPU) x measured GPU step (H200)", "")]


RENDERERS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "gpu_": _gpu,
    "loader_cores": _loader_cores,
    "model_cost": _model_cost,
    "demo": _demo,
    "decode_speed_": _decode_speed,
    "data_loading": _data_loading,
    "train_throughput_": _train_throughput,
    "downstream_synth.actions": _downstream_actions,
    "downstream_synth_seeds": _downstream_seeds,
    "downstream_levers": _downstream_levers,
    "downstream_synth": _downstream,
    "finetune_levers": _finetune_levers,
    "localization_synth_seeds": _localization_seeds,
    "localization_synth": _localization,
    "localization_levers": _levers,
    "localization_negatives": _negatives,
    "scaling_cpu": _scaling,
}


def generic(d: Any) -> list[Row]:
    """A row for any JSON: its top-level numbers (at most six), or its top-level keys."""
    if not isinstance(d, dict):
        return [(f"{type(d).__name__} of results (no renderer)", "", "")]
    numbers = [f"{k} {_num(v)}" for k, v in d.items()
               if isinstance(v, int | float) and not isinstance(v, bool)]
    if numbers:
        return [("; ".join(numbers[:6]), "", "")]
    keys = ", ".join(str(k) for k in list(d)[:8] if k not in ("command", "machine"))
    return [(f"see the file (keys: {keys or 'none'})", "", "")]


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split()) or "-"


def rows_for(path: Path) -> list[str]:
    """Markdown rows of one results file (a renderer by name prefix, else the generic row)."""
    name = path.name.removesuffix(".json")
    md = path.with_suffix(".md")
    link = f"[`{md.name}`](benchmarks/results/{md.name})" if md.exists() else f"`{path.name}`"
    try:
        data: Any = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return [f"| {link} | {_cell(f'unreadable: {err}')} | - | - |"]
    render = next((f for prefix, f in RENDERERS.items() if name.startswith(prefix)), None)
    if name.endswith(".actions"):  # downstream_synth.py --investigate, any seed
        render = _downstream_actions
    rows = generic(data)
    if render is not None and isinstance(data, dict):
        try:
            rows = render(data)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            print(f"readme_table: {path.name} no longer has the shape its renderer expects ({err!r}); "
                  "using the generic row", file=sys.stderr)
    machine = machine_text(data) if isinstance(data, dict) else "-"
    command = f"`{data['command']}`" if isinstance(data, dict) and data.get("command") else "-"
    return [f"| {link} | {_cell(what)} | {_cell(m or machine)} | {_cell(c or command)} |"
            for what, m, c in rows]


def render(results: Path = RESULTS) -> str:
    """The whole table for every ``*.json`` under ``results``, in file-name order."""
    lines = [HEADER]
    for path in sorted(results.glob("*.json")):
        lines += rows_for(path)
    return "\n".join(lines)


def replace_block(text: str, table: str, start: str = START, end: str = END) -> str:
    """``text`` with the lines between the markers replaced by ``table``."""
    if start not in text or end not in text or text.index(start) > text.index(end):
        raise ValueError(f"README has no '{start}' ... '{end}' block; add the markers where it goes")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{table}\n{end}{tail}"


def render_readme(text: str, results: Path = RESULTS) -> str:
    """``text`` with the benchmark table and, where it has the markers, the demo paragraph renewed."""
    text = replace_block(text, render(results))
    demo = results / DEMO.name
    if DEMO_START in text and demo.is_file():
        text = replace_block(text, demo_paragraph(json.loads(demo.read_text())), DEMO_START, DEMO_END)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="replace the blocks in the README")
    mode.add_argument("--check", action="store_true", help="exit 1 if the README's blocks are out of date")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    table = render(args.results)
    if not (args.write or args.check):
        print(table)
        return 0
    text = args.readme.read_text()
    try:
        new = render_readme(text, args.results)
    except ValueError as err:
        print(f"{args.readme}: {err}", file=sys.stderr)
        return 2
    if args.check:
        if new != text:
            print(f"{args.readme}: the benchmark table or demo paragraph is out of date; run "
                  "python benchmarks/readme_table.py --write", file=sys.stderr)
            return 1
        return 0
    if new != text:
        args.readme.write_text(new)
        print(f"updated the benchmark table and demo paragraph in {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
