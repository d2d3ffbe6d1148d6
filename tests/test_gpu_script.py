"""``benchmarks/gpu/run.sh --dry-run``: every stage on the CPU, as on the GPU machine (no PyAV, decord
or webdataset), writing the results files that a GPU run writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from avlearn.models import registry
from avlearn.models.registry import Registry
from avlearn.objectives import OBJECTIVES
from benchmarks.gpu import e2e, frames_bench, peaks, step_split, suite
from benchmarks.readme_table import rows_for

ROOT = Path(__file__).resolve().parents[1]
MISSING_ON_THE_GPU_MACHINE = ("av", "decord", "webdataset")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """Run the dry run once with PyAV, decord and webdataset unimportable; returns (out, $OUT, stdout)."""
    tmp = tmp_path_factory.mktemp("gpu_dry_run")
    block = tmp / "block"
    for name in MISSING_ON_THE_GPU_MACHINE:
        (block / name).mkdir(parents=True)
        (block / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked by the test')\n")
    out, env_out = tmp / "results", tmp / "OUT"
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(block), "OMP_NUM_THREADS": "1",
           "OUT": str(env_out)}
    script = ROOT / "benchmarks" / "gpu" / "run.sh"
    proc = subprocess.run(["bash", str(script), "--dry-run", "--out", str(out)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"dry run failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return out, env_out, proc.stdout


def _result(folder: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((folder / "gpu_cpu_dry_run.json").read_text())
    return result


@pytest.mark.slow
def test_dry_run_runs_every_stage_without_the_media_packages(dry_run: tuple[Path, Path, str]) -> None:
    out, _, stdout = dry_run
    result = _result(out)
    stages = result["stages"]
    assert list(stages) == list(suite.STAGES)
    layout = frames_bench.frame_module() is not None  # issue 30's shard layout
    shards = layout and e2e.DEFAULT_SHARDS.is_file()  # a set written for the GPU machine, when there is one
    assert {name: s["status"] for name, s in stages.items()} == {
        "peak": "ok", "tests": "ok", "smoke": "ok", "encoders": "ok", "layers": "ok", "loader": "skipped",
        "frames": "ok" if layout else "skipped", "e2e": "ok" if shards else "skipped", "step": "ok"}
    if not layout:
        assert all(frames_bench.MODULE in stages[name]["message"] for name in ("frames", "e2e"))
    elif not shards:
        assert "no frame shards" in stages["e2e"]["message"]
    else:  # the WAV files of evaluate localization need PyAV, blocked here as on the GPU machine
        assert stages["e2e"]["pretrain"]["ok"] and "PyAV" in stages["e2e"]["localization"]["message"]
    assert all(result["versions"][name] is None for name in MISSING_ON_THE_GPU_MACHINE)
    assert result["dry_run"] and result["command"].startswith("benchmarks/gpu/run.sh --dry-run")
    assert "stage encoders: ok" in stdout  # progress is printed as it goes
    # the GPU-marked tests were collected, and each skipped itself on the CPU
    tests = stages["tests"]
    assert tests["counts"].get("skipped", 0) >= 5 and "failed" not in tests["counts"]
    assert any("test_sync_bn" in f for f in tests["files"])
    # every registered objective pretrained, and fine-tuning ran from the AVID run
    pretrain = stages["smoke"]["pretrain"]
    assert [r["objective"] for r in pretrain] == [*OBJECTIVES, "avid"]
    assert all(r["ok"] and r["steps"] > 0 for r in pretrain)
    assert pretrain[-1]["precision"] == "bf16 resumed" and pretrain[-1]["resumed"]
    assert pretrain[-1]["steps"] > pretrain[0]["steps"]  # a third epoch on top of the first two
    assert stages["smoke"]["finetune"]["ok"]


@pytest.mark.slow
def test_dry_run_measures_the_step_matrix(dry_run: tuple[Path, Path, str]) -> None:
    rows = _result(dry_run[0])["stages"]["encoders"]["rows"]
    sizes = suite.DRY
    at_batch = [r for r in rows if r["batch"] == sizes.batch]
    assert len(at_batch) == 4 * len(sizes.crops)  # eager / compile x contiguous / channels_last per crop
    layouts = {(r["compile"], r["channels_last"]) for r in at_batch}
    assert layouts == {(c, cl) for c in (False, True) for cl in (False, True)}
    for crop in sizes.crops:  # the best layout at batch 64 is measured again at the other batches
        best = suite.best_row(rows, "r2plus1d_tiny", "avid_spec_cnn9_tiny", crop, sizes.batch)
        assert best is not None
        others = [r for r in rows if r["crop"] == crop and r["batch"] != sizes.batch]
        assert sorted(r["batch"] for r in others) == sorted(sizes.other_batches)
        assert all(r["layout"] == best["layout"] for r in others)
    for r in rows:
        assert r["status"] == "ok" and r["clips_per_s"] > 0 and r["flops_per_step"] > 0 and r["mfu"] > 0
        assert set(r["parts_s"]) == {"data", "forward", "objective", "backward", "optimizer"}
        assert 0 < r["objective_share"] < 1
    small, large = (next(r for r in at_batch if r["crop"] == c) for c in sizes.crops)
    assert large["flops_per_step"] > small["flops_per_step"]  # larger frames, more FLOP


@pytest.mark.slow
def test_dry_run_splits_the_step_against_its_convolutions(dry_run: tuple[Path, Path, str]) -> None:
    step = _result(dry_run[0])["stages"]["step"]
    assert step["setup"]["batch"] == suite.DRY.batch and step["setup"]["cudnn_benchmark"]
    conv = step["convolutions"]
    assert conv["video_ms"] > 0 and conv["audio_ms"] > 0 and conv["total_ms"] == pytest.approx(
        conv["video_ms"] + conv["audio_ms"], abs=1e-3)
    assert [r["lever"] for r in step["levers"]] == list(step_split.LEVERS)
    for r in step["levers"]:
        assert r["status"] == "ok" and r["channels_last"] and 0 < r["objective_share"] < 1
        assert r["step_over_convolutions"] == pytest.approx(1e3 * r["step_s"] / conv["total_ms"], rel=1e-2)
    assert step["levers"][-1]["compile_mode"] == "reduce-overhead"
    assert step["optimizer"]["default_ms"] > 0 and step["optimizer"]["fused_ms"] is None  # fused: CUDA only
    assert "## The step against its convolutions" in (dry_run[0] / "gpu_cpu_dry_run.md").read_text()


@pytest.mark.slow
def test_dry_run_writes_json_markdown_and_log_to_out_and_dollar_out(dry_run: tuple[Path, Path, str]) -> None:
    out, env_out, _ = dry_run
    for folder in (out, env_out):
        assert {p.name for p in folder.iterdir()} == {f"gpu_cpu_dry_run.{s}" for s in ("json", "md", "log")}
    md = (out / "gpu_cpu_dry_run.md").read_text()
    for heading in ("## Stages", "## GPU-marked tests", "## Smoke runs", "## Pretraining step",
                    "## Convolutions of the video encoders"):
        assert heading in md
    assert "stage loader: skipped" in (out / "gpu_cpu_dry_run.log").read_text()
    layers = _result(out)["stages"]["layers"]["tables"]["r2plus1d_tiny"]["rows"]
    assert layers and all(r["ms"] > 0 for r in layers)
    row = rows_for(out / "gpu_cpu_dry_run.json")
    assert len(row) == 1 and "clips/s" in row[0] and "MFU" in row[0]


def test_architectures_come_from_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    known = registry.VIDEO_ENCODERS
    videos = Registry("video encoder", {**known, "paper_r2plus1d_18": known["r2plus1d_18"]})
    monkeypatch.setattr(registry, "VIDEO_ENCODERS", videos)
    pairs = suite.arch_pairs(None, None)
    full = [name for name in videos if not name.endswith(("_small", "_tiny"))]
    assert "r2plus1d_18" in full and "paper_r2plus1d_18" in full and len(full) < len(videos)
    audios = [name for name in registry.AUDIO_ENCODERS if not name.endswith(("_small", "_tiny"))]
    video0, audio0 = registry.ModelConfig.video_arch, registry.ModelConfig.audio_arch
    assert sorted(pairs) == sorted([(name, audio0) for name in full]
                                   + [(video0, name) for name in audios if name != audio0])
    sizes = [sum(p.numel() for p in videos[v]().parameters()) for v, a in pairs if a == audio0]
    assert sizes == sorted(sizes)  # the cheaper setups first
    with pytest.raises(ValueError, match="Valid video encoder names"):
        suite.arch_pairs(["r2plus1d_81"], None)


def test_peak_table_lookup() -> None:
    assert peaks.lookup_peak("NVIDIA H200") is peaks.PEAKS["H200"]
    assert peaks.lookup_peak("NVIDIA H100 PCIe") is peaks.PEAKS["H100 PCIe"]
    assert peaks.lookup_peak("NVIDIA H100 80GB HBM3") is peaks.PEAKS["H100"]
    assert peaks.lookup_peak("some CPU") is None


def test_a_stage_missing_a_package_is_skipped_and_a_broken_one_failed(tmp_path: Path) -> None:
    run = suite.Run(suite.parse_args(["--dry-run", "--out", str(tmp_path)]), torch.device("cpu"), suite.DRY)

    def missing(run: suite.Run) -> dict[str, Any]:
        raise ModuleNotFoundError("No module named 'pyav_like'", name="pyav_like")

    def broken(run: suite.Run) -> dict[str, Any]:
        raise ModuleNotFoundError("No module named 'avlearn.gone'", name="avlearn.gone")

    run.stage("loader", missing)
    run.stage("smoke", broken)
    assert run.stages["loader"]["status"] == "skipped" and "pyav_like" in run.stages["loader"]["message"]
    assert run.stages["smoke"]["status"] == "failed" and "avlearn.gone" in run.stages["smoke"]["message"]
    assert any("stage loader: skipped" in line for line in run.log)


def test_frames_measure_decodes_jpeg_clips_on_a_core() -> None:
    """The ``frames`` stage's measurement, with torchvision's decoder (what the layout's falls back to)."""
    decode = frames_bench.layout_decoder(ModuleType("no_decoder_here"))
    rows = frames_bench.measure(decode, torch.device("cpu"), frames=2, crops=(112,), batch=2,
                                audio_seconds=1.0, reps=1)
    (row,) = rows
    assert row["decode_size"] == 128 and row["cpu_ms_per_clip"] > 0 and row["gpu_ms_per_clip"] is None
    rate = frames_bench.STEP_CLIPS_PER_S[112]
    assert row["cores_per_gpu"] == pytest.approx(rate * row["cpu_ms_per_clip"] / 1e3, rel=1e-2)
    assert row["bytes_per_clip"] > 2 * 16000 and row["jpeg_psnr_db"] > 25  # PCM + two JPEGs; quality 90
    assert frames_bench.nvdec(torch.device("cpu"), ROOT / "missing.mp4")["status"] == "not measurable"


@pytest.mark.slow
def test_e2e_pieces_run_on_the_cpu(tmp_path: Path) -> None:
    """SIGTERM + resume of ``avlearn pretrain``, fine-tuning and ``evaluate localization`` (here from
    media files: the GPU machine's shards need the frame layout)."""
    pytest.importorskip("av")
    from data_prep.index import index_collection
    from data_prep.synth import SynthConfig, generate

    generate(SynthConfig(out=tmp_path / "synth", num_videos=8, seed=0, duration=2.0, size=64, workers=1),
             progress=False)
    manifest = tmp_path / "synth" / "manifest.csv"
    index_collection([tmp_path / "synth" / "videos"], manifest, workers=1, progress=False)
    common = ["train.progress=false", "train.tensorboard=false", "train.ckpt_every_steps=0"]
    data = [f"data.manifest={manifest}", "data.num_workers=1", "data.batch_size=4", "eval.manifest="]
    run = e2e.interrupted_pretrain(tmp_path / "run", [*common, *data, "train.log_every=1", "epochs=1000"],
                                   stop_after=2, total=12, timeout_s=300, config="pretrain/synth_cpu.yaml")
    exits = (run["signal_exit_code"], run["resume_exit_code"], run["last_step"])
    assert run["ok"] and exits == (75, 0, 12), run.get("output_tail")
    assert run["clips_per_s"] > 0 and 0 <= run["data_wait_share"] < 1
    ft = e2e.finetune_run(tmp_path / "ft", tmp_path / "run", common, frames=4, crop=32, batch=4,
                          config="finetune/synth_cpu.yaml")
    assert ft["ok"] and ft["steps"] > 0
    loc = e2e.evaluate_localization(tmp_path / "run" / "encoders.safetensors",
                                    e2e.write_vggss_layout(tmp_path / "vggss"), timeout_s=300)
    assert loc["ok"] and loc["trials"]["positive"] == 4
