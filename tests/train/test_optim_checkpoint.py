from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import pytest
import torch

from avlearn.config import ConfigError
from avlearn.train.checkpoint import CheckpointManager, get_rng_state, set_rng_state
from avlearn.train.optim import OptimConfig, build_optimizer, build_scheduler, fuse_on_cuda, lr_factor


def test_warmup_then_cosine_reaches_floor() -> None:
    cfg = OptimConfig(lr=0.1, warmup_epochs=1, min_lr_ratio=0.1)
    steps_per_epoch, total = 10, 50
    factors = [lr_factor(s, steps_per_epoch, total, cfg) for s in range(total)]
    assert factors[0] == pytest.approx(0.1)  # (0 + 1) / 10 warm-up steps
    assert factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))  # monotone decay
    assert lr_factor(total, steps_per_epoch, total, cfg) == pytest.approx(0.1)
    mid = 10 + (total - 10) // 2
    assert factors[mid] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_step_schedule_and_scheduler_drive_optimizer() -> None:
    cfg = OptimConfig(name="sgd", lr=1.0, schedule="step", milestones=[2.0, 4.0], gamma=0.5)
    param = torch.nn.Parameter(torch.zeros(3))
    opt = build_optimizer([param], cfg)
    assert isinstance(opt, torch.optim.SGD)
    sched = build_scheduler(opt, cfg, steps_per_epoch=5, total_steps=30)
    lrs = []
    for _ in range(30):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 1.0 and lrs[9] == 1.0 and lrs[10] == 0.5 and lrs[20] == 0.25


def test_bad_optim_config_names_the_field() -> None:
    with pytest.raises(ConfigError, match="optim.lr"):
        OptimConfig(lr=0.0)
    with pytest.raises(ConfigError, match="warmup_epochs"):
        OptimConfig(warmup_epochs=-1)


def test_checkpoint_manager_keeps_newest_and_round_trips(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path / "ckpt", keep=2)
    assert manager.latest() is None
    for step in (5, 10, 15):
        manager.save({"step": step, "w": torch.full((2,), float(step))}, step)
    assert [s for s, _ in manager.list()] == [10, 15]
    state = manager.load(manager.latest())  # type: ignore[arg-type]
    assert state["step"] == 15 and torch.equal(state["w"], torch.full((2,), 15.0))
    assert not list((tmp_path / "ckpt").glob("*.tmp"))


def test_corrupt_checkpoint_names_file(tmp_path: Path) -> None:
    bad = tmp_path / "step_00000001.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="step_00000001.pt"):
        CheckpointManager.load(bad)


def test_rng_state_restores_python_and_torch(tmp_path: Path) -> None:
    state = get_rng_state()
    manager = CheckpointManager(tmp_path)
    path = manager.save({"rng": state}, 1)
    expected = (random.random(), torch.rand(3))
    set_rng_state(manager.load(path)["rng"])  # through a weights-only load
    assert random.random() == expected[0]
    assert torch.equal(torch.rand(3), expected[1])


def _adam_steps(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], steps: int = 3) -> None:
    for step in range(steps):
        for i, p in enumerate(params):
            p.grad = torch.sin(p.detach() * (step + 1) + i)
        opt.step()


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_cpu_adam_is_torchs_default(name: str) -> None:
    """On the CPU nothing is fused: the steps equal torch's default optimiser bit for bit."""
    cfg = OptimConfig(name=name, lr=0.01)  # type: ignore[arg-type]
    ours = [torch.nn.Parameter(torch.linspace(-1, 1, 6).reshape(2, 3)), torch.nn.Parameter(torch.ones(4))]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt = build_optimizer(ours, cfg)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    _adam_steps(opt, ours)
    _adam_steps(cls(theirs, lr=0.01, betas=cfg.betas, weight_decay=cfg.weight_decay), theirs)
    assert all(g["fused"] is None and g["foreach"] is None for g in opt.param_groups)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_a_state_saved_fused_runs_unfused_on_the_cpu() -> None:
    """A checkpoint written on a GPU (``fused: True``) resumes on the CPU with the default again."""
    param = torch.nn.Parameter(torch.ones(3))
    opt = build_optimizer([param], OptimConfig())
    state = opt.state_dict()
    state["param_groups"][0]["fused"] = True
    opt.load_state_dict(state)
    assert not fuse_on_cuda(opt) and opt.param_groups[0]["fused"] is None
    assert not fuse_on_cuda(build_optimizer([param], OptimConfig(name="sgd")))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_adam_is_fused_also_after_a_cpu_state() -> None:
    """On CUDA the optimiser is fused, also one built and stepped on the CPU then moved (a resume)."""
    param, ref = (torch.nn.Parameter(torch.linspace(-1, 1, 6)) for _ in range(2))
    cfg = OptimConfig(lr=0.01)
    opt, ref_opt = build_optimizer([param], cfg), build_optimizer([ref], cfg)
    _adam_steps(opt, [param], 2)
    param.data = param.data.cuda()  # what placing the model and the optimiser on the GPU does
    for key in ("exp_avg", "exp_avg_sq"):
        opt.state[param][key] = opt.state[param][key].cuda()
    assert fuse_on_cuda(opt) and opt.param_groups[0]["fused"] is True
    _adam_steps(opt, [param], 2)
    _adam_steps(ref_opt, [ref], 2)
    _adam_steps(ref_opt, [ref], 2)
    assert torch.allclose(param.detach().cpu(), ref.detach(), atol=1e-6)
    on_gpu = torch.nn.Parameter(torch.ones(2, device="cuda"))
    assert build_optimizer([on_gpu], OptimConfig()).param_groups[0]["fused"] is True
