"""The benchmarks are a suite: each runs as ``python -m benchmarks.<name>``, measures in one function and
states its headline in another, writes its record through :mod:`benchmarks.harness`, and takes objective
and architecture names from the registries."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from avlearn.models.registry import VIDEO_ENCODERS
from avlearn.objectives import OBJECTIVES
from benchmarks import harness, readme_table

ROOT = Path(__file__).resolve().parents[1]
# helpers, not benchmarks
SHARED = {"__init__", "harness", "lever_reports", "localization_strata", "readme_table"}
SCRIPTS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem not in SHARED)
BENCHMARKS = [*SCRIPTS, "gpu.suite"]
SOURCES = sorted((ROOT / "benchmarks").rglob("*.py"))


# runs each module as `python -m` does (runpy, as __main__), with --help: exits 0 after parsing
HELP_EACH = """
import runpy, sys
for name in sys.argv[1:]:
    sys.argv = [name, "--help"]
    try:
        runpy.run_module(f"benchmarks.{name}", run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        assert stop.code in (0, None), (name, stop.code)
    else:
        raise AssertionError(f"{name} --help did not exit")
    print("ok", name, flush=True)
"""


def test_every_script_runs_under_python_m() -> None:
    """``python -m benchmarks.<name> --help`` for every script, in one interpreter."""
    names = [*BENCHMARKS, "readme_table"]
    proc = subprocess.run([sys.executable, "-c", HELP_EACH, *names], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("ok ")] == names


@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_benchmark_measures_and_states_its_headline(name: str) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    assert callable(module.measure) and callable(module.headline) and callable(module.main)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_sys_path_edits_and_no_bare_sibling_imports(path: Path) -> None:
    siblings = {p.stem for p in path.parent.glob("*.py")} - {"__init__"}
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys":
            pytest.fail(f"{path.name}:{node.lineno} touches sys.path")
        if isinstance(node, ast.Import):
            bare = [a.name for a in node.names if a.name.split(".")[0] in siblings]
            assert not bare, f"{path.name}:{node.lineno} imports {bare}: use from benchmarks import x"
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            where = f"{path.name}:{node.lineno}"
            assert node.module.split(".")[0] not in siblings, f"{where} imports {node.module} by bare name"


def test_a_quick_run_writes_a_record_the_table_reads(tmp_path: Path) -> None:
    """model_cost without timing (FLOPs on the meta device): the harness end to end, into a temp dir."""
    from benchmarks import model_cost

    assert model_cost.main(["--steps", "0", "--out", str(tmp_path / "model_cost")]) == 0
    text = (tmp_path / "model_cost.json").read_text()
    record = json.loads(text)
    assert record["benchmark"] == "model_cost"
    assert "python -m benchmarks.model_cost --steps 0 --out" in record["command"]
    facts = {"processor", "cpu_count", "torch", "torch_threads", "load_average_at_start"}
    assert facts <= set(record["machine"])
    assert set(record["video"]) == set(VIDEO_ENCODERS)
    assert str(ROOT) + "/" not in text  # paths relative to the repository
    assert (tmp_path / "model_cost.md").read_text().startswith("# Encoder cost")
    row = readme_table.rows_for(tmp_path / "model_cost.json")[0]
    assert model_cost.headline(record) in row and "python -m benchmarks.model_cost" in row


def test_relative_paths_and_machine_text_of_old_records() -> None:
    inside = f"{ROOT}/benchmarks/results/x.json"
    assert harness.relative_paths({"a": [inside, f"--out {inside}"], "b": "/elsewhere/y"}) == {
        "a": ["benchmarks/results/x.json", "--out benchmarks/results/x.json"], "b": "/elsewhere/y"}
    assert harness.machine_text({"machine": "x86_64, 1 thread", "load_average_1min_at_end": 3.42}) == (
        "x86_64, 1 thread; load 3.4")
    old = {"machine": {"platform": "Linux", "cpu_count": 2, "threads": 1,
                       "load_average_at_start": [2.5, 1.0, 1.0]}}
    assert harness.machine_text(old) == "Linux, 2 cores, 1 thread; load 2.5"
    assert harness.machine_text(old, with_load=False) == "Linux, 2 cores, 1 thread"


def test_objective_and_architecture_names_come_from_the_registries() -> None:
    from benchmarks import downstream_synth, localization_synth, model_cost

    for bench in (downstream_synth, localization_synth):
        objective = next(a for a in bench.parser()._actions if a.dest == "objective")
        assert list(objective.choices) == list(OBJECTIVES)
        with pytest.raises(SystemExit):
            bench.parser().parse_args(["--objective", "no_such_objective"])
    full_size = [n for n in VIDEO_ENCODERS if not n.endswith(("_small", "_tiny"))]
    assert full_size == model_cost.SPEED_ARCHS and "r2plus1d_18_avid" in full_size
    # every registered objective gets its run overrides (AVID with its own settings)
    args = localization_synth.parser().parse_args(["--cache", "/tmp/x", "--objective", "avid"])
    overrides = localization_synth.run_overrides(args, Path("/tmp/x/c"), "loc", 1.0)
    assert overrides["objective.name"] == "avid" and overrides["objective.num_negatives"] == 128
