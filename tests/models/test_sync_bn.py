"""GlobalBatchNorm: 2 gloo processes on halves of a batch compute what one process computes on all of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from avlearn.models.sync_bn import GlobalBatchNorm, convert_global_batchnorm
from tests.torchrun import run_ranks

from . import _sync_bn_worker

WORLD = 2


def test_two_processes_match_one_process_on_the_global_batch(tmp_path: Path) -> None:
    ranks = run_ranks(Path(_sync_bn_worker.__file__), tmp_path, WORLD)
    single = _sync_bn_worker.run()  # no process group: plain BatchNorm behaviour
    _assert_match(ranks, single)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_two_processes_on_one_gpu_match_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ranks on the one GPU over gloo (NCCL refuses two ranks on one device): the non-CPU
    statistics branch, compared with plain BatchNorm on the CPU."""
    monkeypatch.setenv("AVLEARN_SYNC_BN_DEVICE", "cuda")
    ranks = run_ranks(Path(_sync_bn_worker.__file__), tmp_path, WORLD)
    monkeypatch.setenv("AVLEARN_SYNC_BN_DEVICE", "cpu")
    single = _sync_bn_worker.run()
    assert [r["device"] for r in ranks] == ["cuda"] * WORLD
    _assert_match(ranks, single)


def _assert_match(ranks: list[dict[str, Any]], single: dict[str, Any]) -> None:
    assert [r["world_size"] for r in ranks] == [WORLD] * WORLD and single["world_size"] == 1
    assert ranks[0]["bn_type"] == "GlobalBatchNorm"
    torch.testing.assert_close(torch.cat([r["out"] for r in ranks]), single["out"])
    # local loss = mean over local samples, so local input grads are WORLD x the single-process ones
    torch.testing.assert_close(torch.cat([r["grad_input"] for r in ranks]), WORLD * single["grad_input"])
    for name, expected in single["grads"].items():
        for r in ranks:
            torch.testing.assert_close(r["grads"][name], expected, msg=name)
    for key in ("running_mean", "running_var"):
        for r in ranks:
            torch.testing.assert_close(r[key], single[key])


def test_conversion_keeps_weights_and_single_process_behaviour() -> None:
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.running_mean.uniform_(-1, 1)
    net = nn.Sequential(nn.Conv2d(3, 4, 1), bn)
    ref = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    ref.load_state_dict(net.state_dict())
    convert_global_batchnorm(net)
    assert isinstance(net[1], GlobalBatchNorm)
    assert net.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(5, 3, 4, 4)
    torch.testing.assert_close(net(x), ref(x))  # training mode, no process group
    net.eval(), ref.eval()
    torch.testing.assert_close(net(x), ref(x))
