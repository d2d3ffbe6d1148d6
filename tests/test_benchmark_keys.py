"""The synthetic benchmarks key their cached collections and runs by every setting, the seed included."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str) -> ModuleType:
    """The benchmark module ``benchmarks.<name>``, as ``python -m benchmarks.<name>`` imports it."""
    return importlib.import_module(f"benchmarks.{name}")


def test_localization_benchmark_keys_collections_and_runs_by_seed(tmp_path: Path) -> None:
    bench = _load("localization_synth")
    p = bench.parser()
    base = p.parse_args(["--cache", str(tmp_path)])
    other_seed = p.parse_args(["--cache", str(tmp_path), "--seed", "1"])
    assert bench.collection_name(base) == bench.collection_name(p.parse_args(["--cache", str(tmp_path)]))
    assert bench.collection_name(base) != bench.collection_name(other_seed)

    def run_dir(args: object, root_name: str, **change: object) -> Path:
        for k, v in change.items():
            setattr(args, k, v)
        return Path(bench.run_overrides(args, tmp_path / root_name, "loc", 1.0)["run_dir"])

    root = bench.collection_name(base)
    first = run_dir(base, root)
    assert first == run_dir(p.parse_args(["--cache", str(tmp_path)]), root)  # same settings, same run
    assert run_dir(other_seed, bench.collection_name(other_seed)) != first
    # the training seed alone, or any training option, also moves the run
    assert run_dir(p.parse_args(["--cache", str(tmp_path)]), root, seed=5) != first
    assert run_dir(p.parse_args(["--cache", str(tmp_path)]), root, num_frames=8) != first
    assert run_dir(p.parse_args(["--cache", str(tmp_path)]), root, fps=4.0) != first


def test_downstream_benchmark_caches_each_seed_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _load("downstream_synth")
    for name in ("SEED", "CACHE", "COLLECTION"):  # use_seed moves them: restored after the test
        monkeypatch.setattr(bench, name, getattr(bench, name))
    bench.use_seed(0)
    zero = (bench.CACHE, bench.COLLECTION, bench.seeds())
    bench.use_seed(3)
    assert zero[0] != bench.CACHE and zero[1] != bench.COLLECTION
    assert bench.COLLECTION.is_relative_to(bench.CACHE)
    assert bench.seeds() == ["seed=3", "data.seed=3"] and zero[2] == ["seed=0", "data.seed=0"]


def test_downstream_reuse_finds_a_finished_run_of_the_same_config_in_any_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from avlearn.config import load_config
    from avlearn.train.config import PretrainConfig
    from avlearn.train.engine import write_config

    bench = _load("downstream_synth")
    monkeypatch.setattr(bench, "CACHE", tmp_path / "seed0")
    config = ROOT / "avlearn/configs/pretrain/synth_cpu.yaml"

    def cfg(run: Path, *extra: str) -> PretrainConfig:
        return load_config(PretrainConfig, config, [f"run_dir={run}", "epochs=120", *extra])

    def finished(run: Path, *extra: str) -> None:
        write_config(cfg(run, *extra), run)
        (run / "encoders.safetensors").write_bytes(b"")

    wanted = cfg(bench.CACHE / "pretrain")
    assert bench.same_run(wanted, bench.CACHE / "pretrain") is None
    finished(bench.CACHE / "exp_other", "objective.temperature=0.2")  # another config
    assert bench.same_run(wanted, bench.CACHE / "pretrain") is None
    (bench.CACHE / "exp_unfinished").mkdir()
    write_config(cfg(bench.CACHE / "exp_unfinished"), bench.CACHE / "exp_unfinished")  # no encoders yet
    assert bench.same_run(wanted, bench.CACHE / "pretrain") is None
    finished(bench.CACHE / "exp_e120")  # the same config in a lever's folder
    assert bench.same_run(wanted, bench.CACHE / "pretrain") == bench.CACHE / "exp_e120"
    finished(bench.CACHE / "pretrain")  # the benchmark's own folder comes first
    assert bench.same_run(wanted, bench.CACHE / "pretrain") == bench.CACHE / "pretrain"


def test_levers_merge_keeps_earlier_runs_and_names_their_command(tmp_path: Path) -> None:
    import json

    levers = _load("localization_levers")
    part = {m: 0.5 for m in levers.METRICS}
    run = {"floor": 0.6, "raw": part, "floored": part,
           "center_box": {"ciou50": 0.6, "auc": 0.5, "pointing": 0.3},
           "oracle_grid": {"ciou50": 1.0, "auc": 0.7, "pointing": 1.0}}
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"command": "python benchmarks/localization_levers.py --levers l3",
                                   "levers": {"l3": {"0": run, "1": run}}}))
    out = tmp_path / "merged"
    # seed 99 is no lever's: nothing is trained or scored, the report is the earlier one's runs
    import torch

    threads = str(torch.get_num_threads())  # main sets torch's threads: keep this worker's
    assert levers.main(["--levers", "l2", "--seeds", "99", "--merge", str(earlier), "--out", str(out),
                        "--threads", threads]) == 0
    assert torch.get_num_threads() == int(threads)
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["levers"] == {"l3": {"0": run, "1": run}}
    assert report["merged"] == ["python benchmarks/localization_levers.py --levers l3"]
    assert "Runs merged from the reports of: `python benchmarks/localization_levers.py --levers l3`" in (
        out.with_suffix(".md").read_text())


def test_downstream_levers_merge_keeps_rows_and_checks_the_goal_on_the_mean(tmp_path: Path) -> None:
    import json

    import torch

    levers = _load("downstream_levers")
    random = {s: {"action": 0.25, "object": 0.5} for s in ("0", "1", "2")}
    rows = {"2": {"pretrain_seconds": 1.0, "action": 0.75, "object": 1.0},
            "0": {"pretrain_seconds": 1.0, "action": 0.5, "object": 1.0},
            "1": {"pretrain_seconds": 1.0, "action": 0.5, "object": 1.0}}
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"command": "python benchmarks/downstream_levers.py --levers e240",
                                   "merged": ["python benchmarks/downstream_levers.py"],
                                   "levers": {"e240": rows, "e120": {"0": rows["0"]}}, "random": random}))
    out = tmp_path / "merged"
    threads = str(torch.get_num_threads())  # main sets torch's threads: keep this worker's
    # seed 99 is no lever's: nothing is trained or probed, the report is the earlier one's rows
    assert levers.main(["--levers", "hcl05", "--seeds", "99", "--merge", str(earlier), "--out", str(out),
                        "--threads", threads]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["levers"] == {"e240": rows, "e120": {"0": rows["0"]}}
    assert report["random"] == random
    assert report["merged"] == ["python benchmarks/downstream_levers.py",
                                "python benchmarks/downstream_levers.py --levers e240"]
    text = out.with_suffix(".md").read_text()
    # gaps +25 / +25 / +50 points: mean +33.3 on three seeds meets the +30 goal, listed in seed order
    assert ("+33.3 +- 11.8 (seeds 0, 1, 2: +25.0 / +25.0 / +50.0): goal (>= +30 on the mean of 3 seeds) "
            "met") in text
    assert "goal" not in next(line for line in text.splitlines() if line.startswith("- twice"))


def test_localization_levers_check_the_goals_on_the_means() -> None:
    levers = _load("localization_levers")

    def seed(ciou: float, auc: float) -> dict[str, dict[str, float]]:
        return {"floored": {"ciou50": ciou, "auc": auc, "pointing": 1.0, "pair_pointing": 0.9,
                            "on_distractor": 0.02},
                "oracle_grid": {"ciou50": 1.0, "auc": 0.6}, "center_box": {"ciou50": 0.7, "auc": 0.5}}

    # cIoU50 mean 0.8 (< 0.85 x 1.0, > centre 0.7); AUC mean 0.58 (>= 0.95 x 0.6 = 0.57)
    checks = levers.goals([seed(0.7, 0.56), seed(0.9, 0.60), seed(0.8, 0.58)])
    verdicts = [c.rsplit(": ", 1)[1] for c in checks]
    assert verdicts == ["NOT met", "met", "met", "met", "NOT met", "met"], checks
    assert checks[2].startswith("auc 0.580 >= 0.95 x oracle_grid (0.600) = 0.570")


def test_finetune_levers_gaps_to_own_and_best_scratch(tmp_path: Path) -> None:
    import json

    import torch

    levers = _load("finetune_levers")

    def run(top1: float) -> dict[str, float]:
        return {"video_top1": top1, "train_seconds": 1.0, "steps": 135, "train_videos": 18}

    # lever "short" helps AV and hurts scratch; "base" has the better scratch on seeds 0 and 1
    rows = {"base": {s: {"av": run(0.4), "scratch": run(0.3)} for s in ("0", "1", "2")},
            "short": {"1": {"av": run(0.6), "scratch": run(0.2)}, "0": {"av": run(0.5), "scratch": run(0.25)},
                      "2": {"av": run(0.5), "scratch": run(0.35)}},
            # another draw of the labelled videos: its scratch is no rival for draw 0's levers
            "base_draw1": {s: {"av": run(0.9), "scratch": run(0.8)} for s in ("0", "1", "2")}}
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"command": "python benchmarks/finetune_levers.py", "fraction": 0.1,
                                   "levers": rows}))
    out = tmp_path / "merged"
    threads = str(torch.get_num_threads())
    # seed 99 is no lever's: nothing is trained, the report is the earlier one's rows
    assert levers.main(["--levers", "short", "--seeds", "99", "--merge", str(earlier), "--out", str(out),
                        "--threads", threads]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    short = report["gaps"]["short"]
    assert list(short) == ["0", "1", "2"]  # seed order
    assert [round(v["same"], 1) for v in short.values()] == [25.0, 40.0, 15.0]
    # the best scratch of any lever on the same draw: 30 / 30 / 35
    assert [round(v["best"], 1) for v in short.values()] == [20.0, 30.0, 15.0]
    assert [round(v["best"], 1) for v in report["gaps"]["base_draw1"].values()] == [10.0, 10.0, 10.0]
    text = out.with_suffix(".md").read_text()
    assert ("+26.7 +- 10.3 (seeds 0, 1, 2: +25.0 / +40.0 / +15.0); to the best scratch +21.7 +- 6.2: goal "
            "met against its own scratch, met against the best scratch") in text
    assert "+10.0 +- 0.0" in text and "NOT met against its own scratch" in text  # base: +10 on each seed
    bad = tmp_path / "other_fraction.json"
    bad.write_text(json.dumps({"command": "x", "fraction": 1.0, "levers": rows}))
    try:
        levers.main(["--seeds", "99", "--merge", str(bad), "--out", str(out), "--threads", threads])
    except SystemExit as stop:
        assert "of the labels" in str(stop)
    else:
        raise AssertionError("a report of another label fraction was merged")
