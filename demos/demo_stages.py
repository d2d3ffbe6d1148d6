"""The model stages of ``avlearn demo``: pretraining, downstream evaluation and sound localization.

Every stage reads what earlier stages left in the output folder ``OUT`` and returns a dict of its
figures (the demo stores it in ``OUT/summary.json``):

* :func:`pretrain_stage`: AVID on memory banks, then CMA on the same banks in the same run, with
  the sound localizer trained alongside (``demos/configs/pretrain.yaml``); held-out retrieval
  before / during / after, loss and retrieval curves.
* :func:`downstream_stage`: held-out retrieval recall of the pretrained vs a random-init model,
  linear probes (action and object class) on frozen AV vs random features, and fine-tuning of
  the action classifier from the AV init vs from scratch (``demos/configs/{probe,finetune}.yaml``).
* :func:`cka_stage`: linear and minibatch CKA between every block of the pretrained model and
  of its random initialisation (:mod:`avlearn.analysis.cka_cli`), on every video of the collection.
* :func:`localize_stage`: cIoU50 / AUC / pointing of the middle frame of every test video for the
  trained model (learned localizer and post hoc), a random-init model, a centre box and the
  oracle, whether the peak follows the sound (:mod:`avlearn.localization.sound_checks`: swapped
  sound, two videos side by side), and overlay videos (MP4 with sound + PNG strip).
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

__all__ = ["cka_stage", "downstream_stage", "localize_stage", "pretrain_stage", "split_manifests"]

# the demo's configs ship as package data of ``demos`` (``demos/configs/*.yaml``)
CONFIGS = Path(str(resources.files("demos") / "configs"))


def split_manifests(synth_dir: Path, manifest: Path) -> dict[str, Path]:
    """``manifest_<split>.csv`` per split (and ``trainval``), rows labelled with the action."""
    from avlearn.data.manifest import read_manifest, write_manifest

    doc = json.loads((synth_dir / "annotations.json").read_text())
    info = {v["video_id"]: v for v in doc["videos"]}
    rows = read_manifest(manifest)
    out = {}
    for name, splits in (
        ("train", {"train"}),
        ("val", {"val"}),
        ("test", {"test"}),
        ("trainval", {"train", "val"}),
    ):
        kept = []
        for row in rows:
            ann = info.get(Path(row.path).stem)
            if ann is not None and ann["split"] in splits:
                row.label = ann["action"]
                kept.append(row)
        out[name] = synth_dir / f"manifest_{name}.csv"
        write_manifest(kept, out[name])
    return out


def cma_start_epoch(epochs: int) -> int:
    """AVID warm-up epochs before CMA: about 60 % of the run, at least one CMA epoch."""
    return 0 if epochs < 2 else min(epochs - 1, max(1, round(0.6 * epochs)))


# ------------------------------------------------------------------------------------ pretrain


def pretrain_stage(out: Path, splits: dict[str, Path], epochs: int, workers: int) -> dict[str, Any]:
    """Pretrain AVID -> CMA (+ localizer) on train + val without labels; curves and retrieval.

    Starts afresh in ``OUT/pretrain`` (its old content is removed, so every curve is this run's).
    """
    from avlearn.report import metric_series, plot_lines
    from avlearn.train.pretrain import main as pretrain_main

    run = out / "pretrain"
    if run.exists():
        shutil.rmtree(run)
    start = cma_start_epoch(epochs)
    overrides = [
        f"run_dir={run}",
        f"data.manifest={splits['trainval']}",
        f"eval.manifest={splits['test']}",
        f"epochs={epochs}",
        f"objective.cma_start_epoch={start}",
        f"eval.every_epochs={max(1, epochs // 5)}",
        f"data.num_workers={min(workers, 1)}",
    ]
    code = pretrain_main(["--config", str(CONFIGS / "pretrain.yaml"), "--fresh", *overrides])
    if code != 0:
        raise RuntimeError(f"pretraining stopped with exit code {code}; see {run / 'metrics.jsonl'}")
    log = run / "metrics.jsonl"
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    begin = next(e for e in events if e.get("event") == "start")
    cma_step = start * int(begin["steps_per_epoch"])
    loss = {
        "total": metric_series(log, "train/loss"),
        "AVID / CMA": metric_series(log, "train/objective_loss"),
        "localization": metric_series(log, "train/loc/loss"),
    }
    title = f"pretraining loss (AVID until step {cma_step}, then CMA; + localization)"
    loss_png = plot_lines({k: v for k, v in loss.items() if v}, out / "pretrain_loss.png", title=title)
    ret = {f"{d}_r{r}": metric_series(log, f"retrieval/{d}_r{r}") for d in ("v2a", "a2v") for r in (1, 5)}
    chance = metric_series(log, "retrieval/chance_r1")
    ret_png = plot_lines(
        {
            "video->audio R@1": ret["v2a_r1"],
            "audio->video R@1": ret["a2v_r1"],
            "video->audio R@5": ret["v2a_r5"],
            "audio->video R@5": ret["a2v_r5"],
            "chance R@1": chance,
        },
        out / "pretrain_retrieval.png",
        title="held-out retrieval during pretraining (test split)",
    )
    before = {k: v[0][1] for k, v in ret.items() if v}
    after = {k: v[-1][1] for k, v in ret.items() if v}
    result: dict[str, Any] = {
        "run_dir": str(run),
        "encoders": str(run / "encoders.safetensors"),
        "config": str(CONFIGS / "pretrain.yaml"),
        "epochs": epochs,
        "steps": int(events[-1].get("step", 0)),
        "steps_per_epoch": int(begin["steps_per_epoch"]),
        "schedule": f"AVID for {start} epochs, then CMA for {epochs - start} (+ localization objective)",
        "cma_start_epoch": start,
        "train_videos": _rows(splits["trainval"]),
        "retrieval_before": before,
        "retrieval_after": after,
        "chance_r1": chance[0][1] if chance else None,
        "final_loss": loss["total"][-1][1] if loss["total"] else None,
        "plots": [str(loss_png), str(ret_png)],
    }
    print(
        f"held-out video->audio R@1: {before.get('v2a_r1')} at initialisation -> "
        f"{after.get('v2a_r1')} after pretraining (chance {result['chance_r1']}); "
        f"curves: {loss_png}, {ret_png}"
    )
    return result


def _rows(manifest: Path) -> int:
    return max(0, len(manifest.read_text().splitlines()) - 1)


# ---------------------------------------------------------------------------------- downstream


def downstream_stage(
    out: Path, synth_dir: Path, splits: dict[str, Path], finetune_epochs: int, test_clips: int
) -> dict[str, Any]:
    """Retrieval recall, linear probes and fine-tuning: AV-pretrained vs random init / scratch."""
    from avlearn.config import load_config
    from avlearn.eval.retrieval_cli import evaluate as evaluate_retrieval
    from avlearn.train.finetune import FinetuneConfig, finetune
    from avlearn.train.linear_probe import ProbeConfig, linear_probe

    run = out / "pretrain"
    if not (run / "encoders.safetensors").is_file():
        raise FileNotFoundError(f"{run}/encoders.safetensors missing: run the pretrain stage first")
    work = out / "downstream"
    if work.exists():
        shutil.rmtree(work)
    inits = {"av": str(run), "random": "scratch"}
    jobs = [("retrieval", name) for name in inits] + [("probe", name) for name in inits]
    # finetune: the demo's recipe (finetune.yaml: LP-FT); finetune_avid: AVID's, a random classifier
    # trained alone for an epoch, then everything at one learning rate (a fair start for scratch,
    # whose LP-FT head is a probe of random features)
    jobs += [(kind, name) for kind in ("finetune", "finetune_avid") for name in inits]
    result: dict[str, Any] = {
        "retrieval": {},
        "linear_probe": {"action": {}, "object": {}},
        "finetune": {"action": {}, "action_avid_recipe": {}},
    }
    bar = tqdm(jobs, desc="downstream", unit="job", dynamic_ncols=True)
    for kind, name in bar:
        bar.set_postfix_str(f"{kind} {name}")
        init = inits[name]
        if kind == "retrieval":
            r = evaluate_retrieval(init, str(splits["test"]), str(run / "config.yaml"))
            result["retrieval"][name] = {k: v for k, v in r.items() if isinstance(v, float)}
        elif kind == "probe":
            cache = work / "probe" / f"{name}_features"
            for label in ("action", "object"):
                overrides = [
                    f"run_dir={work / 'probe' / f'{name}_{label}'}",
                    f"dataset.root={synth_dir}",
                    f"dataset.label={label}",
                    f"features.cache_dir={cache}",
                    f"features.test_clips={test_clips}",
                ]
                cfg = load_config(ProbeConfig, CONFIGS / "probe.yaml", overrides)
                result["linear_probe"][label][name] = _brief(linear_probe(cfg, init))
        else:
            overrides = [
                f"run_dir={work / kind / name}",
                f"dataset.root={synth_dir}",
                f"epochs={finetune_epochs}",
                f"eval.num_clips={test_clips}",
            ]
            if kind == "finetune_avid":
                overrides += ["head_init=random", "encoder_lr_scale=1",
                              f"warmup_classifier_epochs={min(1, finetune_epochs - 1)}"]
            tune_cfg = load_config(FinetuneConfig, CONFIGS / "finetune.yaml", overrides)
            key = "action" if kind == "finetune" else "action_avid_recipe"
            result["finetune"][key][name] = _brief(finetune(tune_cfg, init, resume=False))
    doc = json.loads((synth_dir / "annotations.json").read_text())
    result["chance"] = {
        "action": 1 / len(doc["actions"]),
        "object": 1 / len(doc["classes"]),
        "retrieval_r1": 1 / max(1, _rows(splits["test"])),
    }
    tune = load_config(FinetuneConfig, CONFIGS / "finetune.yaml")
    probe = load_config(ProbeConfig, CONFIGS / "probe.yaml")
    result["clips"] = {
        "probe": f"{probe.data.num_frames} frames at {probe.data.fps:g} fps",
        "finetune": f"{tune.data.num_frames} frames at {tune.data.fps:g} fps",
    }
    result["finetune_recipe"] = (
        "LP-FT: classifier from a linear probe, encoder at "
        f"{tune.encoder_lr_scale:g} x the learning rate" if tune.head_init == "probe" else
        f"classifier alone for {tune.warmup_classifier_epochs} epoch(s), encoder at "
        f"{tune.encoder_lr_scale:g} x the learning rate"
    )
    result["test_videos"] = _rows(splits["test"])
    result["test_clips_per_video"] = test_clips
    result["finetune_epochs"] = finetune_epochs
    return result


def _brief(r: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "video_top1",
        "clip_top1",
        "mean_class_accuracy",
        "train_videos",
        "test_videos",
        "steps",
        "train_clip_top1",
        "feature_dim",
        "seconds",
        "train_seconds",
    )
    return {k: r[k] for k in keep if k in r}


# ------------------------------------------------------------------------------------------ CKA


def cka_stage(out: Path, manifest: Path) -> dict[str, Any]:
    """CKA of every block of the pretrained model vs its random initialisation (``OUT/cka``), and of
    its video blocks vs the model fine-tuned from it (``OUT/cka_finetuned``, when the downstream
    stage ran).

    The random model is built with the run's seed, as the pretraining started; all see the
    centre clip of every video of ``manifest``. Returns the matrices' diagonals (a block against
    the same block) and the figures.
    """
    from avlearn.analysis.cka_cli import analyze

    run = out / "pretrain"
    if not (run / "encoders.safetensors").is_file():
        raise FileNotFoundError(f"{run}/encoders.safetensors missing: run the pretrain stage first")
    result = analyze(str(run), "scratch", str(manifest), out / "cka", cka_batch=64)
    blocks = result["blocks_a"]
    same = {name: {kind: result[kind][i][i] for kind in ("linear", "minibatch")}
            for i, name in enumerate(blocks)}
    summary = {"clips": result["clips"], "cka_batch": result["cka_batch"], "figure": result["figure"],
               "json": str(out / "cka" / "cka.json"), "same_block": same}
    tuned = out / "downstream" / "finetune" / "av"
    if (tuned / "checkpoints").is_dir():
        ft = analyze(str(run), str(tuned), str(manifest), out / "cka_finetuned", cka_batch=64)
        rows = [ft["blocks_a"].index(name) for name in ft["blocks_b"]]
        summary["finetuned"] = {
            "figure": ft["figure"], "json": str(out / "cka_finetuned" / "cka.json"),
            "same_block": {name: {kind: ft[kind][i][j] for kind in ("linear", "minibatch")}
                           for j, (name, i) in enumerate(zip(ft["blocks_b"], rows, strict=True))}}
    return summary


# -------------------------------------------------------------------------------- localization


def _enlarge(png: Path, min_height: int = 192) -> None:
    """Scale a small strip up (nearest neighbour: the model's grid stays visible) so it reads in a report."""
    from PIL import Image

    with Image.open(png) as img:
        factor = -(-min_height // img.height)
        big = (
            img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
            if factor > 1
            else None
        )
    if big is not None:
        big.save(png)


def localize_stage(out: Path, synth_dir: Path, overlays: int) -> dict[str, Any]:
    """Score the middle frame of every test video; write overlay MP4s (own and swapped sound)."""
    from avlearn.config import load_config
    from avlearn.localization.cli import main as localize_main
    from avlearn.localization.inputs import load_for_localization
    from avlearn.localization.metrics import center_box_map, evaluate_maps, oracle_map
    from avlearn.localization.sound_checks import middle_windows, model_grid, score_model
    from avlearn.models.registry import build_av_model
    from avlearn.train.config import PretrainConfig

    export = out / "pretrain" / "encoders.safetensors"
    if not export.is_file():
        raise FileNotFoundError(f"{export} missing: run the pretrain stage first")
    videos = json.loads((synth_dir / "annotations.json").read_text())["videos"]
    tests = [v for v in videos if v["split"] == "test"]
    model, inp, learned = load_for_localization(export, "auto")
    cfg = load_config(PretrainConfig, export.parent / "config.yaml")
    torch.manual_seed(cfg.seed)  # the initialisation the pretraining started from
    random_model = build_av_model(cfg.model).eval()
    methods = {
        "trained, learned localizer": (model, learned),
        "trained, post hoc": (model, None),
        "random init, post hoc": (random_model, None),
    }
    items = middle_windows(synth_dir, tests, videos, inp)
    gts = [it.gt for it in items]
    if not gts:
        raise RuntimeError(f"no test video of {synth_dir} has a visible sounding object on its middle frame")
    scores: dict[str, dict[str, Any]] = {}
    for name, (m, loc) in tqdm(methods.items(), desc="localize", unit="model", dynamic_ncols=True):
        scores[name] = score_model(m, inp, loc, items)
    scores["centre box"] = evaluate_maps([center_box_map(*g.shape) for g in gts], gts).to_dict()
    scores["oracle (gt box)"] = evaluate_maps([oracle_map(g) for g in gts], gts).to_dict()

    made: list[dict[str, str]] = []
    learned_hits = scores["trained, learned localizer"]["per_video"]
    swap_pick, own, selection = pick_overlays(tests, videos, learned_hits)
    picks: list[tuple[dict[str, Any], dict[str, Any] | None]] = [(v, None) for v in own[:overlays]]
    if swap_pick is not None and overlays > 0:
        picks.append(swap_pick)
    folder = out / "overlays"
    if folder.exists():
        shutil.rmtree(folder)
    for entry, donor in tqdm(picks, desc="overlays", unit="video", dynamic_ncols=True):
        mp4 = folder / f"{entry['video_id']}{'_swapped' if donor else ''}.mp4"
        argv = [str(synth_dir / entry["file"]), "--checkpoint", str(export), "--out", str(mp4)]
        if donor is not None:
            argv += ["--audio", str(synth_dir / donor["file"])]
        if localize_main(argv) != 0:
            raise RuntimeError(f"avlearn localize failed on {entry['file']}")
        _enlarge(mp4.with_suffix(".png"))
        made.append(
            {
                "video": entry["video_id"],
                "mp4": str(mp4),
                "png": str(mp4.with_suffix(".png")),
                "sounding": entry["class"],
                "action": entry["action"],
                "sound": "own" if donor is None else f"swapped: {donor['class']} ({donor['video_id']})",
            }
        )
    return {
        "test_frames": len(gts),
        "swap_frames": scores["trained, learned localizer"]["n_swap"],
        "pairs": scores["trained, learned localizer"]["n_pairs"],
        "grid": "x".join(map(str, model_grid(model, inp, learned))),
        "localizer_floor": None if learned is None else learned[1].floor,
        "input": f"{inp.num_frames} frames at {inp.fps:g} fps, {inp.size} px, {inp.audio_seconds:g} s audio",
        "methods": scores,
        "overlays": made,
        "overlay_selection": selection,
    }


OVERLAY_RULE = (
    "Examples are chosen by a rule, not by hand: first the first test video (in the collection's "
    "order) where the learned localizer's peak is on the sounding object with the video's own sound "
    "*and* moves onto the visible distractor when that distractor's sound is played instead (shown "
    "with both sounds); then the next test videos whose peak is on the sounding object; then the "
    "others. Where no video meets a condition, the next one in order is shown and this says so."
)


def pick_overlays(
    tests: list[dict[str, Any]], videos: list[dict[str, Any]], hits: dict[str, dict[str, Any]]
) -> tuple[tuple[dict[str, Any], dict[str, Any]] | None, list[dict[str, Any]], dict[str, Any]]:
    """The swapped-sound example ``(video, donor)``, the videos to show with their own sound (in
    order) and a record of the rule (:data:`OVERLAY_RULE`) and how it was met.

    ``hits``: ``score_model(...)["per_video"]``: ``{video_id: {"own": bool, "swap": bool | None}}``.
    """
    from avlearn.localization.sound_checks import swap_donor

    scored = [v for v in tests if v["video_id"] in hits]
    donors = {v["video_id"]: d[0] for v in scored if (d := swap_donor(v, videos)) is not None}
    both = [v for v in scored if hits[v["video_id"]]["own"] and hits[v["video_id"]].get("swap")
            and v["video_id"] in donors]
    fallback = [v for v in scored if v["video_id"] in donors]
    chosen = (both or fallback)[0] if both or fallback else None
    swap_pick = None if chosen is None else (chosen, donors[chosen["video_id"]])
    on_object = [v for v in scored if hits[v["video_id"]]["own"] and v is not chosen]
    rest = [v for v in tests if v is not chosen and v not in on_object]
    own = ([chosen] if chosen is not None else []) + on_object + rest
    selection = {
        "rule": OVERLAY_RULE,
        "videos_peak_on_object": sum(bool(h["own"]) for h in hits.values()),
        "videos_with_swap_sound": len(donors),
        "videos_peak_on_object_and_moved_by_swap": len(both),
        "swap_example_meets_rule": bool(both),
    }
    return swap_pick, own, selection
