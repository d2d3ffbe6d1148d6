"""End-to-end tests of `avlearn pretrain` on a tiny synthetic collection (CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor

from avlearn.config import ConfigError, load_config
from avlearn.eval.retrieval import retrieval_metrics
from avlearn.models.weights import load_av_model
from avlearn.train.checkpoint import CheckpointManager
from avlearn.train.config import PretrainConfig
from avlearn.train.pretrain import main
from tests.torchrun import free_port
from tests.train.pretrain_helpers import ROOT, SYNTH_CPU, fast_overrides, read_metrics

CONFIGS = sorted((ROOT / "avlearn" / "configs" / "pretrain").glob("*.yaml"))


# ------------------------------------------------------------------------------------- config


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_load(path: Path) -> None:
    cfg = load_config(PretrainConfig, path)
    assert cfg.epochs >= 1


def test_expected_configs_are_shipped() -> None:
    names = {p.stem for p in CONFIGS}
    expected = {"synth_cpu", "avid_kinetics400", "avid_cma_kinetics400", "avid_audioset", "avid_cma_audioset"}
    assert expected <= names


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("optim.lrr=0.1", ["optim.lrr", "lr"]),
        ("objective.temprature=0.1", ["objective.temprature", "temperature"]),
        ("trian.log_every=3", ["trian", "train"]),
    ],
)
def test_misspelt_key_is_named(override: str, names: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, SYNTH_CPU, [override])
    for name in names:
        assert name in str(err.value)


def test_bad_values_rejected_at_load() -> None:
    with pytest.raises(ConfigError, match="objective"):
        load_config(PretrainConfig, SYNTH_CPU, ["objective.name=simclr"])
    with pytest.raises(ConfigError, match="cma_start_epoch"):
        load_config(PretrainConfig, SYNTH_CPU, ["objective.name=cma", "objective.cma_start_epoch=99"])
    with pytest.raises(ConfigError, match="mixed_precision"):
        load_config(PretrainConfig, SYNTH_CPU, ["train.mixed_precision=fp8"])
    with pytest.raises(ConfigError, match="shifted_audio"):
        load_config(PretrainConfig, SYNTH_CPU, ["data.shifted_audio=-0.5"])


def test_cli_bad_key_exit_code(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--config", str(SYNTH_CPU), f"run_dir={tmp_path}", "data.batchsize=3"]) == 2
    assert "data.batchsize" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- retrieval


def _naive_recall(v: torch.Tensor, a: torch.Tensor, k: int) -> float:
    hits = 0
    for i in range(v.shape[0]):
        scores = [float(torch.dot(v[i], a[j]) / (v[i].norm() * a[j].norm())) for j in range(a.shape[0])]
        better = sum(1 for j, s in enumerate(scores) if s > scores[i])
        hits += better < k
    return hits / v.shape[0]


@pytest.mark.parametrize(("n", "d", "seed"), [(5, 3, 0), (17, 8, 1), (40, 4, 2)])
def test_retrieval_metrics_match_naive(n: int, d: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    v, a = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    a[: n // 2] = v[: n // 2] + 0.3 * a[: n // 2]  # half the pairs related
    m = retrieval_metrics(v, a)
    for k in (1, 5):
        assert m[f"v2a_r{k}"] == pytest.approx(_naive_recall(v, a, k))
        assert m[f"a2v_r{k}"] == pytest.approx(_naive_recall(a, v, k))
    assert m["chance_r1"] == pytest.approx(1 / n)


def test_retrieval_metrics_perfect_and_shape_check() -> None:
    e = torch.nn.functional.normalize(torch.randn(10, 6), dim=1)
    assert retrieval_metrics(e, e)["v2a_r1"] == 1.0
    with pytest.raises(ValueError, match="must both be"):
        retrieval_metrics(e, e[:5])


# ------------------------------------------------------------------------------------- runs


def _run(manifest: Path, run_dir: Path, *args: str, **extra: object) -> int:
    return main(["--config", str(SYNTH_CPU), *args, *fast_overrides(manifest, run_dir, **extra)])


def test_run_writes_checkpoints_logs_and_export(synth_train: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert (
        _run(
            synth_train,
            run,
            epochs=2,
            max_steps=3,
            **{"train.ckpt_every_steps": 2, "train.tensorboard": True},
        )
        == 0
    )
    assert [s for s, _ in CheckpointManager(run / "checkpoints").list()] == [2, 3]
    records = read_metrics(run)
    assert records[0]["event"] == "start" and records[0]["world_size"] == 1
    steps = [r["step"] for r in records if "train/loss" in r]
    assert steps == [1, 2, 3]
    assert all(k in records[1] for k in ("train/lr", "perf/clips_per_s", "perf/data_wait_fraction"))
    assert any((run / "tb").iterdir())
    model, _ = load_av_model(run / "encoders.safetensors")
    state = CheckpointManager.load(run / "checkpoints" / "step_00000003.pt")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state["model"][key])


def test_resume_matches_uninterrupted(synth_train: Path, tmp_path: Path) -> None:
    k = 3  # 36 clips / batch 8 = 4 steps per epoch: the resume lands mid-epoch 0, run ends in epoch 1
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = {"epochs": 3, "train.ckpt_every_steps": 100}
    assert _run(synth_train, straight, max_steps=2 * k, **common) == 0
    assert _run(synth_train, split, max_steps=k, **common) == 0
    assert _run(synth_train, split, "--resume", max_steps=2 * k, **common) == 0

    resumed = [r for r in read_metrics(split) if r.get("event") == "resume"]
    assert len(resumed) == 1 and resumed[0]["step"] == k and resumed[0]["batch_in_epoch"] == k
    logged = [r["step"] for r in read_metrics(split) if "train/loss" in r]
    assert logged == list(range(1, 2 * k + 1))  # nothing repeated, nothing skipped

    a = CheckpointManager.load(CheckpointManager(straight / "checkpoints").latest())  # type: ignore[arg-type]
    b = CheckpointManager.load(CheckpointManager(split / "checkpoints").latest())  # type: ignore[arg-type]
    assert a["step"] == b["step"] == 2 * k
    for part in ("model", "objective"):
        for key in a[part]:
            torch.testing.assert_close(a[part][key], b[part][key], rtol=1e-5, atol=1e-6, msg=f"{part}.{key}")
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        torch.testing.assert_close(sa["exp_avg"], sb["exp_avg"], rtol=1e-5, atol=1e-7)
    loss_a = [r["train/loss"] for r in read_metrics(straight) if "train/loss" in r]
    loss_b = [r["train/loss"] for r in read_metrics(split) if "train/loss" in r]
    assert loss_a == pytest.approx(loss_b, rel=1e-5)


def test_resume_at_another_thread_count_warns(synth_train: Path, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """The checkpoint records the torch thread count; a resume at another count says it will not be
    bit-identical (and still runs), one at the same count says nothing."""
    run, before = tmp_path / "run", torch.get_num_threads()
    common = {"epochs": 3, "train.ckpt_every_steps": 100}
    try:
        torch.set_num_threads(1)
        assert _run(synth_train, run, max_steps=2, **common) == 0
        state = CheckpointManager.load(CheckpointManager(run / "checkpoints").latest())  # type: ignore[arg-type]
        assert state["torch_threads"] == 1
        with caplog.at_level("WARNING", logger="avlearn.train.engine"):
            assert _run(synth_train, run, "--resume", max_steps=3, **common) == 0
        assert not [r for r in caplog.records if "torch threads" in r.getMessage()]
        torch.set_num_threads(2)
        with caplog.at_level("WARNING", logger="avlearn.train.engine"):
            assert _run(synth_train, run, "--resume", max_steps=4, **common) == 0
        warned = [r.getMessage() for r in caplog.records if "torch threads" in r.getMessage()]
        assert len(warned) == 1 and "saved with 1 torch threads, this process has 2" in warned[0]
    finally:
        torch.set_num_threads(before)


def test_bf16_with_gradient_accumulation(synth_train: Path, tmp_path: Path) -> None:
    # 36 clips / batch 8 = 4 batches per epoch; accumulating 2 of them makes 2 optimiser steps per epoch
    run = tmp_path / "bf16"
    assert _run(synth_train, run, epochs=1, **{"train.mixed_precision": "bf16", "train.grad_accum": 2}) == 0
    records = read_metrics(run)
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert [r["step"] for r in records if "train/loss" in r] == [1, 2]
    assert all(torch.isfinite(torch.tensor(losses)))
    model, _ = load_av_model(run / "encoders.safetensors")
    state = CheckpointManager.load(CheckpointManager(run / "checkpoints").latest())  # type: ignore[arg-type]
    assert state["step"] == 2
    # the exported weights are the trained fp32 master weights, not a bf16 copy
    assert all(v.dtype == torch.float32 for v in model.state_dict().values() if v.is_floating_point())


def test_shifted_audio_negatives_train_and_log(synth_train: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "shifted"
    assert _run(synth_train, run, epochs=1, max_steps=2,
                **{"objective.name": "infonce", "data.shifted_audio": 0.5}) == 0
    logged = [r for r in read_metrics(run) if "train/loss" in r]
    assert [r["step"] for r in logged] == [1, 2]
    assert all(0.0 <= r["train/shift_acc"] <= 1.0 and -1.0 <= r["train/shift_sim"] <= 1.0 for r in logged)
    # memory-bank objectives have no use for them: the config says so at load
    assert _run(synth_train, tmp_path / "bad", max_steps=1, **{"data.shifted_audio": 0.5}) == 2
    assert "data.shifted_audio" in capsys.readouterr().err


def test_vicreg_trains_its_expanders_and_resumes_them(synth_train: Path, tmp_path: Path) -> None:
    run = tmp_path / "vicreg"
    extra = {"objective.name": "vicreg", "objective.expander_dims": "[32,32]", "epochs": 2}
    assert _run(synth_train, run, max_steps=2, **extra) == 0
    first = CheckpointManager.load(CheckpointManager(run / "checkpoints").latest())  # type: ignore[arg-type]
    assert _run(synth_train, run, max_steps=3, **extra) == 0  # resumes at step 2
    state = CheckpointManager.load(CheckpointManager(run / "checkpoints").latest())  # type: ignore[arg-type]
    assert state["step"] == 3 and state["objective_name"] == "vicreg"
    key = "video_expander.0.weight"
    assert state["objective"][key].shape == (32, 32)
    assert not torch.equal(state["objective"][key], first["objective"][key])  # the optimiser moved it
    logged = [r for r in read_metrics(run) if "train/variance" in r]
    assert [r["step"] for r in logged] == [1, 2, 3]
    assert all(r["train/std_video"] > 0 for r in logged)


def test_nan_guard_names_the_step(
    synth_train: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run(synth_train, tmp_path / "nan", max_steps=4, **{"optim.lr": 1e30, "optim.clip_grad_norm": 0})
    assert code == 1
    err = capsys.readouterr().err
    assert "non-finite loss or embeddings at step 1" in err


def test_cma_warmup_then_positive_sets(synth_train: Path, tmp_path: Path) -> None:
    run = tmp_path / "cma"
    extra = {
        "epochs": 2,
        "max_steps": 6,
        "objective.name": "cma",
        "objective.cma_start_epoch": 1,
        "objective.positive_set_size": 4,
        "objective.num_positives": 2,
        "objective.within_weight": 1.0,
    }
    assert _run(synth_train, run, **extra) == 0
    events = [r for r in read_metrics(run) if r.get("event") == "positive_sets"]
    assert [e["epoch"] for e in events] == [1]
    state = CheckpointManager.load(CheckpointManager(run / "checkpoints").latest())  # type: ignore[arg-type]
    assert state["objective_name"] == "cma" and bool((state["objective"]["positive_sets"] >= 0).all())



def test_two_process_gloo_run(synth_train: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "avlearn",
        "pretrain",
        "--config",
        str(SYNTH_CPU),
        *fast_overrides(synth_train, run, max_steps=3, **{"data.batch_size": 4}),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": str(free_port())}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = read_metrics(run)
    assert records[0]["world_size"] == 2
    end = next(r for r in records if r.get("event") == "end")
    ranks = end["processes"]
    assert [p["rank"] for p in ranks] == [0, 1] and all(p["world_size"] == 2 for p in ranks)
    assert ranks[0]["objective_digest"] == ranks[1]["objective_digest"]  # identical memory banks
    assert ranks[0]["step"] == 3


@pytest.mark.slow
def test_pretraining_improves_heldout_retrieval(
    synth_learn: Path, synth_heldout: Path, tmp_path: Path
) -> None:
    run = tmp_path / "learn"
    extra = {
        "epochs": 15,
        "eval.manifest": str(synth_heldout),
        "optim.lr": 2e-3,
        "data.clips_per_video": 1,
        "objective.name": "infonce",
        "data.batch_size": 16,
        "data.video_aug.hue": 0.0,
        "data.video_aug.grayscale_p": 0.0,
        "train.log_every": 10,
        "train.ckpt_every_steps": 0,
    }
    assert _run(synth_learn, run, **extra) == 0
    evals = [r for r in read_metrics(run) if "retrieval/v2a_r1" in r]
    before, after = evals[0], evals[-1]
    chance = before["retrieval/chance_r1"]
    print(
        f"v2a r@1 before {before['retrieval/v2a_r1']:.3f} after {after['retrieval/v2a_r1']:.3f} "
        f"(chance {chance:.3f}); a2v after {after['retrieval/a2v_r1']:.3f}"
    )
    assert after["retrieval/v2a_r1"] >= 3 * chance
    mean = {
        k: (r["retrieval/v2a_r1"] + r["retrieval/a2v_r1"]) / 2
        for k, r in (("before", before), ("after", after))
    }
    assert mean["after"] > 2 * max(mean["before"], chance)


def test_to_channels_last_handles_2d_and_3d_convolutions() -> None:
    from torch import nn

    from avlearn.train.engine import to_channels_last

    torch.manual_seed(0)
    net = nn.ModuleDict({"v": nn.Conv3d(3, 8, 3), "a": nn.Conv2d(1, 8, 3)})
    video, audio = torch.randn(2, 3, 4, 8, 8), torch.randn(2, 1, 8, 8)
    before = (net["v"](video), net["a"](audio))
    weight = net["v"].weight
    with pytest.raises(RuntimeError):  # why the engine does not use Module.to(memory_format=...)
        net.to(memory_format=torch.channels_last_3d)
    to_channels_last(net)
    assert net["v"].weight is weight  # same Parameter: an optimiser built on it still trains it
    assert weight.is_contiguous(memory_format=torch.channels_last_3d) and not weight.is_contiguous()
    assert net["a"].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(net["v"](video), before[0])
    torch.testing.assert_close(net["a"](audio), before[1])


@pytest.mark.usefixtures("one_torch_thread")  # the forward's exactness across layouts holds at one thread
def test_channels_last_and_compile_train_the_same(synth_train: Path, tmp_path: Path) -> None:
    """The layout and compilation options change how a step runs, not what it computes.

    In float64 the two layouts' gradients agree to 1e-14. In float32 on the CPU, channels-last
    gradients are far less exact (3.6e-3 relative to float64 vs 6e-6 contiguous, this model), and
    the tiny test model amplifies that: after 2-3 steps losses were 1-2 % apart. So: one SGD step,
    its loss exact (the forward), the weights after it within that noise (the backward)."""
    common = {"epochs": 1, "max_steps": 1, "optim.name": "sgd", "optim.lr": 0.1}
    runs = {"plain": {}, "channels_last": {"train.channels_last": True},
            "compiled": {"train.compile": True, "train.compile_backend": "eager"},
            "init": {"optim.lr": 1e-12}}  # one step that moves nothing: the initial weights
    losses, states = {}, {}
    for name, extra in runs.items():
        assert _run(synth_train, tmp_path / name, **{**common, **extra}) == 0
        losses[name] = [r["train/loss"] for r in read_metrics(tmp_path / name) if "train/loss" in r]
        states[name] = CheckpointManager.load(CheckpointManager(tmp_path / name / "checkpoints").latest())  # type: ignore[arg-type]
    conv = next(k for k, v in states["channels_last"]["model"].items() if v.dim() == 5)
    assert states["channels_last"]["model"][conv].is_contiguous(memory_format=torch.channels_last_3d)
    assert not states["plain"]["model"][conv].is_contiguous(memory_format=torch.channels_last_3d)
    for name in ("channels_last", "compiled", "init"):
        assert losses[name] == pytest.approx(losses["plain"], rel=1e-6), name

    def update(name: str) -> Tensor:  # the step's change of every floating weight, flattened
        return torch.cat([(states[name]["model"][k] - v).flatten() for k, v in states["init"]["model"].items()
                          if v.is_floating_point() and "running" not in k])

    plain = update("plain")
    assert plain.norm() > 0.01  # the step moved the weights: a wrong gradient would show below
    assert (update("compiled") - plain).norm() / plain.norm() < 1e-5
    assert (update("channels_last") - plain).norm() / plain.norm() < 2e-2
