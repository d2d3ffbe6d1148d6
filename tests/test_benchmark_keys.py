"""The synthetic benchmarks key their cached collections and runs by every setting, the seed included."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_downstream_benchmark_caches_each_seed_apart() -> None:
    bench = _load("downstream_synth")
    bench.use_seed(0)
    zero = (bench.CACHE, bench.COLLECTION, bench.seeds())
    bench.use_seed(3)
    assert zero[0] != bench.CACHE and zero[1] != bench.COLLECTION
    assert bench.COLLECTION.is_relative_to(bench.CACHE)
    assert bench.seeds() == ["seed=3", "data.seed=3"] and zero[2] == ["seed=0", "data.seed=0"]
