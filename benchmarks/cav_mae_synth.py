"""CAV-MAE with tiny ViTs beside InfoNCE with the tiny CNN on the synthetic downstream benchmark,
at equal pretraining CPU-seconds.

    python -m benchmarks.cav_mae_synth [--quick] [--seed N] [--reuse]   # both objectives, every evaluation
    python -m benchmarks.cav_mae_synth --quick --ablation mask0.9       # one CAV-MAE lever, probes only
    python -m benchmarks.cav_mae_synth --quick --choose-stages          # the ViT probe's stages (seed 0)

The collection, splits, probes, fine-tuning and retrieval are :mod:`benchmarks.downstream_synth`'s
(imported, not copied): 240 synthetic videos per collection seed, 168 train / 48 test, 32 px crops,
8 frames at 8 fps. InfoNCE pretrains ``configs/pretrain/synth_cpu.yaml`` (r2plus1d_tiny +
avid_spec_cnn9_tiny, same-video audio 0.5 s away as extra negatives) for ``--pretrain-epochs``;
CAV-MAE ``configs/pretrain/synth_cpu_cav_mae.yaml`` (vit_video_p8_tiny over 2x8x8 tubelets +
vit_audio_tiny over 128 Kaldi bins, one shared block, the paper's objective) for as many epochs as
take the CPU-seconds InfoNCE took: a 2-epoch calibration run measures CAV-MAE's CPU-seconds per
epoch (user + system time of this process and its data workers, which other work on a shared machine
does not inflate as it does wall time). Both runs' wall and CPU seconds are reported.

On the test split, for each objective against the same architecture at random init: linear probes
of the video encoder (action, object class), the audio-visual probe's mAP on the multi-label
``visible_and_sounding`` task (2 x 8 labels, with its chance level), fine-tuning with 10 % and 100 %
of the action labels (AVID's recipe, equal steps; AV init vs scratch) and held-out retrieval.

Known limitation (``docs/cav_mae.md``): an encoder loaded alone (probes, fine-tuning) is the ViT
without CAV-MAE's modality token and shared block; retrieval reads the full model (through the
shared block), the probes and fine-tuning do not.

ViT probe stages (``grids.i``, :mod:`avlearn.models.vit`): chosen on the development seed 0 only
(``--choose-stages``, ``benchmarks/results/cav_mae_synth_quick_stages.md``), then fixed
(:data:`VIT_FEATURES`). Levers (``--ablation``, :data:`ABLATIONS`): CAV-MAE's masking ratio and
contrastive weight, and the faithful single-frame variant, each at the base run's epochs.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import re
import resource
import sys
from pathlib import Path
from typing import Any

from avlearn.config import load_config
from avlearn.eval.retrieval_cli import evaluate as evaluate_retrieval
from benchmarks import downstream_synth as ds
from benchmarks import harness
from benchmarks.harness import ROOT

NAME = "cav_mae_synth"
CONFIG = ROOT / "avlearn/configs/pretrain/synth_cpu_cav_mae.yaml"
INFONCE = ROOT / "avlearn/configs/pretrain/synth_cpu.yaml"
CALIBRATION_EPOCHS = 2
# the probe's stages of the tiny ViTs (4 blocks: grids.0-3), chosen on seed 0 (--choose-stages)
VIT_FEATURES = ("features.stages=[grids.2,grids.3]", "features.pool=avg")
# (stages, pooling); avg_space keeps the time axis (the order of a motion)
STAGE_CHOICES = {"grids.3": ("[grids.3]", "avg"), "grids.2+3": ("[grids.2,grids.3]", "avg"),
                 "grids.1+2+3": ("[grids.1,grids.2,grids.3]", "avg"),
                 "grids.0+1+2+3": ("[grids.0,grids.1,grids.2,grids.3]", "avg"),
                 "grids.2+3, time kept": ("[grids.2,grids.3]", "avg_space")}
# CAV-MAE levers (each at the base run's epochs); "frame": the faithful single-frame variant
ABLATIONS = {
    "mask0.5": ("objective.mask_ratio_audio=0.5", "objective.mask_ratio_video=0.5"),
    "mask0.9": ("objective.mask_ratio_audio=0.9", "objective.mask_ratio_video=0.9"),
    "nce0": ("objective.contrastive_weight=0.0",),
    "nce0.1": ("objective.contrastive_weight=0.1",),
    "frame": ("model.video_arch=vit_frame_tiny", "data.num_frames=1"),
    "budget": (),  # the base at --cav-mae-epochs: how the probes grow with the pretraining budget

}
LABELS = {"infonce": "InfoNCE, tiny CNN", "cav_mae": "CAV-MAE, tiny ViTs"}
MULTI_LABEL = "visible_and_sounding"
SATURATED = 0.95  # a multi-label mAP random-init features reach is no test of pretraining


# ------------------------------------------------------------------------------------- pretraining
def cpu_seconds() -> float:
    """User + system CPU-seconds of this process and its finished children (the data workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _log_end(run: Path) -> float:
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return float(next(r["time"] for r in log if r.get("event") == "end"))


def pretrain(objective: str, epochs: int, args: argparse.Namespace, extra: tuple[str, ...] = (),
             name: str = "") -> tuple[Path, dict[str, float]]:
    """One objective's pretraining run (reused with ``--reuse``) and its wall and CPU seconds.

    A run's CPU-seconds are stored beside it (``cpu_seconds.json``, keyed by the end time of its log),
    so a reused run reports the seconds it took when it trained."""
    cav = objective == "cav_mae"
    train = ds.manifests(ds.collection())["train"]
    before = cpu_seconds()
    run, wall = ds.pretrain(train, epochs, args.reuse, args.pretrain_clips, 0.0 if cav else 0.5, objective,
                            extra, name or (f"pretrain_cav_mae_e{epochs}" if cav else "pretrain"),
                            CONFIG if cav else INFONCE)
    stamp, end = run / "cpu_seconds.json", _log_end(run)
    stored = json.loads(stamp.read_text()) if stamp.is_file() else {}
    if stored.get("end") != end:  # trained now
        stored = {"end": end, "cpu_seconds": round(cpu_seconds() - before, 1)}
        stamp.write_text(json.dumps(stored))
    return run, {"epochs": epochs, "wall_seconds": wall, "cpu_seconds": stored["cpu_seconds"]}


def matched_epochs(cpu_target: float, args: argparse.Namespace,
                   extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """CAV-MAE's epochs for ``cpu_target`` CPU-seconds, from a short calibration run of its preset."""
    _, cal = pretrain("cav_mae", CALIBRATION_EPOCHS, args, extra, "calibrate_cav_mae")
    per_epoch = cal["cpu_seconds"] / CALIBRATION_EPOCHS
    return {"calibration": cal, "cpu_seconds_per_epoch": round(per_epoch, 2),
            "epochs": max(1, round(cpu_target / per_epoch))}


# ------------------------------------------------------------------------------------- evaluations
def run_like(run: Path, audio: bool = False) -> tuple[str, ...]:
    """Overrides giving a probe or fine-tuning the run's architecture (the random init's), frames and,
    with ``audio``, its spectrogram and audio window (the audio-visual probe)."""
    from avlearn.train.config import PretrainConfig

    cfg = load_config(PretrainConfig, run / "config.yaml")
    out = [f"model.video_arch={cfg.model.video_arch}", f"model.audio_arch={cfg.model.audio_arch}",
           f"data.num_frames={cfg.data.num_frames}"]
    if audio:
        out += [f"data.spec={json.dumps(dataclasses.asdict(cfg.data.spec))}",
                f"data.audio_seconds={cfg.data.audio_seconds}", f"data.sample_rate={cfg.data.sample_rate}"]
    return tuple(out)


def features_of(run: Path) -> tuple[str, ...]:
    """The video probe's stages: layer3+layer4 of the CNN (downstream_synth's), :data:`VIT_FEATURES`."""
    return VIT_FEATURES if "vit" in run_like(run)[0] else ds.DEFAULT_FEATURES


def video_probes(tag: str, run: Path, args: argparse.Namespace,
                 features: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Action and object-class probes of the run's video encoder and of its architecture at random init."""
    like, feats = run_like(run), features or features_of(run)
    # random init: one folder per architecture, frames and stages (its cached features serve every lever)
    random = re.sub(r"[^\w.]+", "_", "random_" + "_".join(v.split("=")[1] for v in (*like, *feats)))
    out = {}
    for name, init, folder in (("av", str(run), f"{tag}_av"), ("random", "scratch", random)):
        action = f"{folder}_action"
        out[f"{name}_action"] = ds.probe(init, action, "action", None, args.test_clips, (*feats, *like))
        out[f"{name}_object"] = ds.probe(init, f"{folder}_object", "object", ds.CACHE / "probe" / action,
                                         args.test_clips, (*feats, *like))
    return out


def av_map(tag: str, run: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The audio-visual probe (each encoder's last stage) on the multi-label task, AV vs random init."""
    extra = ("modality=audio_visual", "features.stages=[]", *run_like(run, audio=True))
    return {name: ds.probe(init, f"{tag}_{name}_avmap", MULTI_LABEL, None, args.test_clips, extra)
            for name, init in (("av", str(run)), ("random", "scratch"))}


def finetunes(tag: str, run: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Fine-tuning with 10 % and 100 % of the action labels (AVID's recipe, equal steps), AV vs scratch."""
    out = {}
    for fraction, (name, init) in itertools.product((0.1, 1.0), (("av", str(run)), ("scratch", "scratch"))):
        key = f"{name}_{round(fraction * 100)}pct"
        out[key] = ds.tune(init, f"{tag}_{key}", fraction, args.finetune_epochs, args.test_clips,
                           args.finetune_clips, run_like(run), args.reuse)
    return out


def evaluate(tag: str, run: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Every evaluation of one pretraining run beside its architecture at random init (scratch)."""
    test = str(ds.manifests(ds.collection())["test"])
    retrieval = {name: evaluate_retrieval(init, test, str(run / "config.yaml"))
                 for name, init in (("av", str(run)), ("random", "scratch"))}
    probes = video_probes(tag, run, args)
    return {"retrieval": retrieval, "linear_probe": {k: _brief(v) for k, v in probes.items()},
            "multi_label": {k: _map(v) for k, v in av_map(tag, run, args).items()},
            "finetune": {k: _brief(v) for k, v in finetunes(tag, run, args).items()}}


def _brief(r: dict[str, Any]) -> dict[str, Any]:
    keep = ("video_top1", "clip_top1", "stages", "feature_dim", "train_videos", "test_videos", "steps")
    return {k: r[k] for k in keep if k in r}


def _map(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in ("video_map", "clip_map", "chance_map", "stages", "feature_dim") if k in r}


# ------------------------------------------------------------------------------------- the modes
def measure(args: argparse.Namespace) -> dict[str, Any]:
    """InfoNCE (run, or read from ``--infonce-record``), then CAV-MAE at InfoNCE's CPU-seconds; every
    evaluation of both."""
    if args.infonce_record:
        infonce = recorded_infonce(args)
    else:
        run, seconds = pretrain("infonce", args.pretrain_epochs, args)
        infonce = {"pretrain": seconds, **evaluate("cmb_infonce", run, args)}
    match = matched_epochs(infonce["pretrain"]["cpu_seconds"], args)
    cav, cav_time = pretrain("cav_mae", args.cav_mae_epochs or match["epochs"], args)
    cav_mae = {"pretrain": cav_time, **evaluate("cmb_cav_mae", cav, args)}
    return {"setup": _setup(args), "calibration": match,
            "objectives": {"infonce": infonce, "cav_mae": cav_mae}}


def recorded_infonce(args: argparse.Namespace) -> dict[str, Any]:
    """InfoNCE's figures from a ``downstream_synth`` results file of this seed and budget (its run, its
    evaluations; no audio-visual probe). Its CPU-seconds: a 2-epoch calibration run's per epoch, times
    its epochs (the file records wall seconds only)."""
    path = Path(args.out) / f"{args.infonce_record}.json"
    record = json.loads(path.read_text())
    s = record["setup"]
    wanted = {"seed": ds.SEED, "objective": "infonce", "pretrain_epochs": args.pretrain_epochs,
              "pretrain_clips_per_video": args.pretrain_clips, "shifted_audio": 0.5,
              "finetune_epochs": args.finetune_epochs, "finetune_clips_per_video": args.finetune_clips,
              "test_clips_per_video": args.test_clips}
    if (found := {k: s.get(k) for k in wanted}) != wanted:
        raise SystemExit(f"{path}: another setup ({found}); this run's is {wanted}")
    _, cal = pretrain("infonce", CALIBRATION_EPOCHS, args, name="calibrate_infonce")
    seconds = {"epochs": s["pretrain_epochs"], "wall_seconds": record["stage_seconds"]["pretrain"],
               "cpu_seconds": round(cal["cpu_seconds"] / CALIBRATION_EPOCHS * s["pretrain_epochs"], 1),
               "cpu_estimated_from": cal, "record": path.name}
    tunes = {k: record["finetune"][k] for k in ("av_10pct", "scratch_10pct", "av_100pct", "scratch_100pct")}
    return {"pretrain": seconds, "retrieval": record["retrieval"], "linear_probe": record["linear_probe"],
            "multi_label": None, "finetune": tunes}


def _setup(args: argparse.Namespace) -> dict[str, Any]:
    return {"seed": ds.SEED, "quick": args.quick, "infonce_epochs": args.pretrain_epochs,
            "pretrain_clips_per_video": args.pretrain_clips, "finetune_epochs": args.finetune_epochs,
            "finetune_clips_per_video": args.finetune_clips, "test_clips_per_video": args.test_clips,
            "vit_features": list(VIT_FEATURES), "cnn_features": list(ds.DEFAULT_FEATURES)}


def base_run(args: argparse.Namespace) -> dict[str, Any]:
    """The CAV-MAE figures of the base run's results file (the benchmark's, same ``--quick`` / ``--seed``)."""
    path = Path(args.out) / f"{args.name}.json"
    if not path.is_file():
        raise SystemExit(f"{path}: run the base benchmark first (same --quick / --seed), "
                         "or give --cav-mae-epochs")
    return dict(json.loads(path.read_text())["objectives"]["cav_mae"])


def base_epochs(args: argparse.Namespace) -> int:
    """CAV-MAE's epochs in the base run's results file (the levers run as many)."""
    return int(args.cav_mae_epochs or base_run(args)["pretrain"]["epochs"])


def lever_name(args: argparse.Namespace) -> str:
    """The lever's name in the table: with ``--cav-mae-epochs``, its epochs too (``budget@93``)."""
    return str(args.ablation) + (f"@{args.cav_mae_epochs}" if args.cav_mae_epochs else "")


def measure_ablation(args: argparse.Namespace) -> dict[str, Any]:
    """One lever of :data:`ABLATIONS`: pretrain at the base run's epochs (or ``--cav-mae-epochs``), then
    the video probes."""
    extra, name = ABLATIONS[args.ablation], lever_name(args).replace("@", "_e")
    run, seconds = pretrain("cav_mae", base_epochs(args), args, extra, f"pretrain_cav_mae_{name}")
    probes = video_probes(f"cmb_{name}", run, args)
    return {"overrides": list(extra), "pretrain": seconds,
            "linear_probe": {k: _brief(v) for k, v in probes.items()}}


def measure_stages(args: argparse.Namespace) -> dict[str, Any]:
    """Action probes of every :data:`STAGE_CHOICES` on the base CAV-MAE run (or the finished run of
    ``--cav-mae-epochs`` with ``--reuse``), AV vs random (seed 0)."""
    run, _ = pretrain("cav_mae", base_epochs(args), args)
    found = {}
    for i, (what, (stages, pool)) in enumerate(STAGE_CHOICES.items()):
        features = (f"features.stages={stages}", f"features.pool={pool}")
        probes = video_probes(f"cmb_stages{i}", run, args, features)
        found[what] = {k: probes[k]["video_top1"] for k in ("av_action", "random_action")}
    return {"seed": ds.SEED, "epochs": base_epochs(args), "chosen": list(VIT_FEATURES),
            "action_video_top1": found}


# ------------------------------------------------------------------------------------- the report
def rows(record: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(evaluation, InfoNCE AV, random, CAV-MAE AV, random) cells of the side-by-side table (%)."""
    o = record["objectives"]

    def pair(section: str, av: str, base: str, key: str = "video_top1") -> list[str]:
        return [_pct(o[m][section][k][key]) if o[m][section] else "-"
                for m in ("infonce", "cav_mae") for k in (av, base)]

    def recall(name: str) -> list[str]:
        return [f"{_pct(o[m]['retrieval'][k][f'{name}_r1'])} / {_pct(o[m]['retrieval'][k][f'{name}_r5'])}"
                for m in ("infonce", "cav_mae") for k in ("av", "random")]

    ml = o["cav_mae"]["multi_label"]["av"]
    table = [("linear probe, action (video top-1)", *pair("linear_probe", "av_action", "random_action")),
             ("linear probe, object class (video top-1)",
              *pair("linear_probe", "av_object", "random_object")),
             (f"audio-visual probe, {MULTI_LABEL} (video mAP; chance {_pct(ml['chance_map'])})",
              *pair("multi_label", "av", "random", "video_map")),
             ("fine-tune, 10 % of action labels (video top-1)",
              *pair("finetune", "av_10pct", "scratch_10pct")),
             ("fine-tune, 100 % of action labels (video top-1)",
              *pair("finetune", "av_100pct", "scratch_100pct")),
             ("held-out retrieval v2a R@1 / R@5", *recall("v2a")),
             ("held-out retrieval a2v R@1 / R@5", *recall("a2v"))]
    return table  # type: ignore[return-value]


def table(record: dict[str, Any]) -> str:
    """The side-by-side table in Markdown (also shown by ``docs/cav_mae.md``)."""
    o = record["objectives"]
    head = " | ".join(f"{LABELS[m]}: pretrained | random init / scratch" for m in ("infonce", "cav_mae"))
    secs = [f"{o[m]['pretrain']['epochs']} epochs, {o[m]['pretrain']['cpu_seconds']:.0f} CPU-s "
            f"({o[m]['pretrain']['wall_seconds']:.0f} s wall)" for m in ("infonce", "cav_mae")]
    lines = [f"| evaluation (%) | {head} |", "|---|---:|---:|---:|---:|",
             f"| pretraining | {secs[0]} | - | {secs[1]} | - |"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows(record)]
    return "\n".join(lines)


def reading(record: dict[str, Any]) -> list[str]:
    """Plain-language reading computed from the figures (nothing typed by hand)."""
    lines = []
    for m in ("infonce", "cav_mae"):
        lp = record["objectives"][m]["linear_probe"]
        gap = 100 * (lp["av_action"]["video_top1"] - lp["random_action"]["video_top1"])
        goal = f" (goal >= 30: {'met' if gap >= 30 else 'NOT met'})" if m == "cav_mae" else ""
        lines.append(f"{LABELS[m]}: action probe {gap:+.1f} points over random init{goal}.")
    ml = record["objectives"]["cav_mae"]["multi_label"]
    if ml["random"]["video_map"] >= SATURATED:
        lines.append(f"{MULTI_LABEL}: random-init features already reach {_pct(ml['random']['video_map'])} % "
                     f"mAP (chance {_pct(ml['av']['chance_map'])} %): with no silent distractors in this "
                     "collection the task names only the sounding object's class; it measures little here.")
    return lines


def markdown(record: dict[str, Any]) -> str:
    s, cal = record["setup"], record["calibration"]
    return "\n".join([
        "# CAV-MAE (tiny ViTs) vs InfoNCE (tiny CNN) on the synthetic downstream benchmark", "",
        f"Command: `{record['command']}`  ", f"Machine: {harness.machine_text(record)}", "",
        f"Collection seed {s['seed']}: 168 train / 48 test videos, 32 px crops, 8 frames at 8 fps "
        f"(benchmarks/downstream_synth.py). Equal pretraining CPU-seconds: CAV-MAE's "
        f"{cal['cpu_seconds_per_epoch']:.1f} CPU-s per epoch ({CALIBRATION_EPOCHS}-epoch calibration run) "
        f"-> {cal['epochs']} epochs for InfoNCE's {s['infonce_epochs']}. Probes: video encoder alone, "
        f"{s['test_clips_per_video']} test clips per video; ViT stages {_stages(s['vit_features'])}, CNN "
        f"{_stages(s['cnn_features'])}; the audio-visual probe takes each encoder's last stage. "
        f"Fine-tuning: {s['finetune_epochs']} epochs x {s['finetune_clips_per_video']} clips per labelled "
        "video (x10 with 10 % of the labels). Random init / scratch: the same architecture. Retrieval: "
        "the full model (CAV-MAE: through its shared block); probes and fine-tuning load an encoder alone, "
        "without CAV-MAE's modality token and shared block (docs/cav_mae.md)." + _recorded(record), "",
        table(record), "", "Reading (computed from the figures above):", "",
        *[f"- {line}" for line in reading(record)]])


def _recorded(record: dict[str, Any]) -> str:
    """Where InfoNCE's figures come from when they were read from a results file."""
    seconds = record["objectives"]["infonce"]["pretrain"]
    if "record" not in seconds:
        return ""
    return (f" InfoNCE's figures are those of `benchmarks/results/{seconds['record']}` (its run, the same "
            "setup; no audio-visual probe); its CPU-seconds are estimated: a "
            f"{CALIBRATION_EPOCHS}-epoch InfoNCE run's CPU-seconds per epoch times its epochs.")


def ablation_markdown(record: dict[str, Any]) -> str:
    lines = ["# CAV-MAE levers on the synthetic downstream benchmark (video probes)", "",
             "Each lever is one run (its command and machine in the JSON); the base is the benchmark's "
             "CAV-MAE run (masking 0.75, contrastive weight 0.01, 2x8x8 tubelets over 8 frames).", "",
             "| lever | overrides | epochs | CPU-s | action AV | action random | object AV | object random |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    levers = ({"base": record["base"]} if "base" in record else {}) | record["levers"]
    for name, r in levers.items():
        lp, p = r["linear_probe"], r["pretrain"]
        cells = [_pct(lp[k]["video_top1"])
                 for k in ("av_action", "random_action", "av_object", "random_object")]
        lines.append(f"| {name} | {', '.join(f'`{o}`' for o in r['overrides']) or '-'} | {p['epochs']} | "
                     f"{p['cpu_seconds']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stages_markdown(record: dict[str, Any]) -> str:
    lines = ["# ViT probe stages, chosen on the development seed", "",
             f"Command: `{record['command']}`. Action probe, video top-1 (%), collection seed "
             f"{record['seed']}, " + (f"CAV-MAE run of {record['epochs']} epochs" if "epochs" in record
                                      else "the base CAV-MAE run")
             + f"; chosen: {_stages(record['chosen'])}.", "",
             "| stages | CAV-MAE | random init |", "|---|---:|---:|"]
    lines += [f"| {what} | {_pct(r['av_action'])} | {_pct(r['random_action'])} |"
              for what, r in record["action_video_top1"].items()]
    return "\n".join(lines)


def headline(record: dict[str, Any]) -> str:
    """The action probes of both objectives (base record), the levers' or the stage choice's figures."""
    if "levers" in record:
        return "CAV-MAE levers, action probe AV: " + ", ".join(
            f"{k} {harness.pct(r['linear_probe']['av_action']['video_top1'])}"
            for k, r in record["levers"].items())
    if "action_video_top1" in record:
        return "ViT probe stages, action probe AV: " + ", ".join(
            f"{k} {harness.pct(r['av_action'])}" for k, r in record["action_video_top1"].items())
    o = record["objectives"]
    return "action probe AV vs random: " + "; ".join(
        f"{m} ({o[m]['pretrain']['epochs']} epochs, {o[m]['pretrain']['cpu_seconds']:.0f} CPU-s) "
        f"{harness.pct(o[m]['linear_probe']['av_action']['video_top1'])} vs "
        f"{harness.pct(o[m]['linear_probe']['random_action']['video_top1'])}" for m in ("infonce", "cav_mae"))


def docs_block(results: Path = harness.RESULTS) -> str:
    """The generated section of ``docs/cav_mae.md`` (:mod:`benchmarks.readme_table` renews it): each
    budget's side-by-side table and the levers, read from the results files, with links to them."""
    parts = []
    for stem, budget in ((NAME, "full budget"), (f"{NAME}_quick", "`--quick` budget")):
        path = results / f"{stem}.json"
        if path.is_file():
            record = json.loads(path.read_text())
            parts += [f"**{budget.capitalize()}**, collection seed {record['setup']['seed']} "
                      f"([`{stem}.md`](benchmarks/results/{stem}.md)):", "", table(record), "",
                      *[f"- {line}" for line in reading(record)], ""]
    path = results / f"{NAME}_quick_ablations.json"
    if path.is_file():
        levers = ablation_markdown(json.loads(path.read_text())).split("\n")
        parts += [f"**Levers** at the `--quick` budget, seed 0 ([`{path.stem}.md`](benchmarks/results/"
                  f"{path.stem}.md)):", "", *[line for line in levers if line.startswith("|")], ""]
    return "\n".join(parts).strip() or "No results yet: run `python -m benchmarks.cav_mae_synth --quick`."


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _stages(features: list[str]) -> str:
    return features[0].split("=", 1)[1]


# ------------------------------------------------------------------------------------- entry point
def parser() -> argparse.ArgumentParser:
    p = ds.parser()
    p.prog, p.description = f"python -m benchmarks.{NAME}", __doc__
    p.set_defaults(name=NAME)
    p.add_argument("--cav-mae-epochs", type=int, default=0,
                   help="CAV-MAE's epochs (0: as many as InfoNCE's CPU-seconds; levers: the base run's)")
    p.add_argument("--infonce-record", default="", metavar="NAME",
                   help="read InfoNCE's run and evaluations from OUT/NAME.json (a downstream_synth results "
                        "file of the same seed and budget) instead of running it")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--ablation", choices=list(ABLATIONS), help="one CAV-MAE lever, video probes only")
    mode.add_argument("--choose-stages", action="store_true",
                      help="the ViT probe's stages (development seed)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    # downstream_synth's options that do not apply here (its parser gives the budget options)
    foreign = {"--objective": args.objective != "infonce", "--shifted-audio": args.shifted_audio != 0.5,
               "--investigate": args.investigate, "--summarize": args.summarize is not None}
    if any(foreign.values()):
        p.error(f"{', '.join(k for k, v in foreign.items() if v)}: options of benchmarks.downstream_synth, "
                "not of this benchmark")
    if args.quick:
        for key, value in ds.QUICK.items():
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, value)
    ds.use_seed(args.seed)
    args.name += ("_quick" if args.quick else "") + (f"_seed{args.seed}" if args.seed else "")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out, head = Path(args.out), {**harness.record_for(NAME, argv), "benchmark": NAME}
    if args.choose_stages:
        record = {**head, **measure_stages(args)}
        budget = f"_e{args.cav_mae_epochs}" if args.cav_mae_epochs else ""  # the base run's unless given
        harness.write(out / f"{args.name}_stages{budget}", record, stages_markdown(record))
    elif args.ablation:
        path = out / f"{args.name}_ablations.json"
        record = json.loads(path.read_text()) if path.is_file() else {"benchmark": NAME, "levers": {}}
        record["levers"][lever_name(args)] = {**head, **measure_ablation(args)}
        base = {"overrides": [], **{k: base_run(args)[k] for k in ("pretrain", "linear_probe")}}
        record = {**head, "base": base, "levers": record["levers"]}
        harness.write(path, record, ablation_markdown(record))
    else:
        record = {**head, **measure(args)}
        harness.write(out / args.name, record, markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
