from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import pytest
import torch

from avlearn.config import ConfigError
from avlearn.train.checkpoint import CheckpointManager, get_rng_state, set_rng_state
from avlearn.train.optim import OptimConfig, build_optimizer, build_scheduler, lr_factor


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
