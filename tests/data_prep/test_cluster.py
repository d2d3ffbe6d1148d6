"""``prepare index | reencode --engine ray``: the same outputs as the local engine, on a local Ray
instance with 2 CPUs that the module starts and stops; failures and dead workers become rows."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from avlearn.data.cluster import ray_map
from data_prep import index as index_cli
from data_prep.index import index_collection
from data_prep.reencode import EncodeOptions, reencode_collection
from tests.data_prep.odd_media import write_odd_media

ray = pytest.importorskip("ray", reason="ray is in the dev extra (pip install -e '.[dev]')")

OPTS = EncodeOptions(short_side=32, fps=16, gop=8, preset="ultrafast")


@pytest.fixture(scope="module", autouse=True)
def ray_instance() -> Iterator[None]:
    """One local instance for the module (ray_map uses a running one and leaves it running)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("odd")
    write_odd_media(root)
    return root


def _square(x: int) -> int:
    if x == 3:
        raise ValueError("three is refused")
    if x == 5:
        os._exit(1)  # the worker process dies, as on an FFmpeg crash: Ray retries once, then a row
    return x * x


def test_ray_map_keeps_order_and_turns_failures_into_rows() -> None:
    out = ray_map(_square, list(range(8)), lambda x, msg: f"failed {x}: {msg}", progress=False,
                  max_in_flight=3)
    assert out[:3] == [0, 1, 4] and out[4] == 16 and out[6:] == [36, 49]
    assert out[3].startswith("failed 3: ValueError") and "three is refused" in out[3]
    assert out[5].startswith("failed 5: worker died")


def test_index_on_ray_writes_the_local_manifest(media: Path, tmp_path: Path) -> None:
    local = tmp_path / "local" / "manifest.csv"
    on_ray = tmp_path / "ray" / "manifest.csv"
    index_collection(media, local, workers=2, progress=False)
    rows = index_collection(media, on_ray, workers=2, progress=False, engine="ray")
    assert {r.status for r in rows} == {"ok", "warn", "bad"}  # the odd files are reported, not fatal
    assert on_ray.read_text() == local.read_text()


def test_reencode_on_ray_gives_the_same_bytes_and_resumes(media: Path, tmp_path: Path) -> None:
    local_results, _ = reencode_collection(media, tmp_path / "local", OPTS, workers=2, progress=False)
    results, _ = reencode_collection(media, tmp_path / "ray", OPTS, workers=2, progress=False, engine="ray")
    assert [(r.status, r.reason) for r in results] == [(r.status, r.reason) for r in local_results]
    assert sum(r.status == "done" for r in results) >= 8 and any(r.status == "failed" for r in results)
    outputs = sorted(p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("*.mp4"))
    assert outputs == sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.mp4"))
    for rel in outputs:  # encodes are deterministic, so the engines agree byte for byte
        assert (tmp_path / "ray" / rel).read_bytes() == (tmp_path / "local" / rel).read_bytes(), rel
    again, _ = reencode_collection(media, tmp_path / "ray", OPTS, workers=2, progress=False, engine="ray")
    local_again, _ = reencode_collection(media, tmp_path / "local", OPTS, workers=2, progress=False)
    # resume: finished outputs are skipped (the 2-frame 4K file becomes a 1-frame output at 16 fps,
    # which the damage check encodes again on every run, on either engine)
    assert [(r.status, r.reason) for r in again] == [(r.status, r.reason) for r in local_again]
    assert sum(r.status == "skipped" for r in again) == sum(r.status == "done" for r in results) - 1


def test_cli_without_ray_says_how_to_install_it(media: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ModuleNotFoundError
    argv = [str(media), "--out", str(tmp_path / "m.csv"), "--engine", "ray", "--quiet"]
    assert index_cli.main(argv) == 2
    assert "pip install 'avlearn[cluster]'" in capsys.readouterr().err


@pytest.mark.parametrize("short_side", [0, 24])
def test_shards_are_the_same_on_any_engine(media: Path, tmp_path: Path, short_side: int) -> None:
    from data_prep.shard import MapEngine, ShardOptions, write_shards

    manifest = tmp_path / "manifest.csv"
    index_collection(media, manifest, workers=2, progress=False)
    opts = ShardOptions(samples_per_shard=3, short_side=short_side)
    engines = {"serial": MapEngine(), "pool": MapEngine("local", 2), "ray": MapEngine("ray", 2)}
    for name, engine in engines.items():
        write_shards(manifest, tmp_path / name, opts, progress=False, engine=engine)
    names = sorted(p.name for p in (tmp_path / "serial").iterdir())
    assert "index.json" in names and sum(n.endswith(".tar") for n in names) >= 3
    for name in ("pool", "ray"):  # shards, index (failures included): byte for byte
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == names
        for n in names:
            assert (tmp_path / name / n).read_bytes() == (tmp_path / "serial" / n).read_bytes(), (name, n)
