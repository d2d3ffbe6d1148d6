"""2-process gloo run vs the single-process computation on the concatenated batch.

Convention (see ``avlearn/objectives/infonce.py``): each rank's loss is the mean over its local
anchors, so the mean of the per-rank losses equals the single-process loss, and the gradient a
rank receives for its local embeddings is ``world_size`` times the single-process gradient
(``gather_with_grad`` sums every rank's gradient; DDP then averages parameter gradients).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from avlearn.objectives.avid import AVIDLoss
from tests.torchrun import run_ranks

from . import _dist_worker

WORLD = 2


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("dist")
    return run_ranks(Path(_dist_worker.__file__), out, WORLD)


@pytest.fixture(scope="module")
def single() -> dict[str, Any]:
    return _dist_worker.run()


def _halves(x: torch.Tensor) -> list[torch.Tensor]:
    return list(x.chunk(WORLD))


def _check_step(ranks: list[dict[str, Any]], single: dict[str, Any]) -> None:
    loss = torch.stack([r["loss"] for r in ranks]).mean()
    torch.testing.assert_close(loss, single["loss"])
    for key in ("grad_video", "grad_audio"):
        for r, expected in zip(ranks, _halves(single[key]), strict=True):
            torch.testing.assert_close(r[key], WORLD * expected)


def test_two_processes_really_ran(ranks: list[dict[str, Any]], single: dict[str, Any]) -> None:
    assert [(r["rank"], r["world_size"]) for r in ranks] == [(0, 2), (1, 2)]
    assert single["world_size"] == 1


@pytest.mark.parametrize("incoming", ["contiguous", "transposed"])
def test_gather_sums_every_ranks_gradient(ranks: list[dict[str, Any]], incoming: str) -> None:
    for r, result in enumerate(rank["gather"] for rank in ranks):
        x, weights = result["x"], result["weights"]
        mine = slice(r * len(x) // WORLD, (r + 1) * len(x) // WORLD)
        assert torch.equal(result[incoming]["gathered"], x)  # rank order, every row
        # d(sum over ranks s of loss_s)/d x_r = sum_s weights[s][rows of r]
        torch.testing.assert_close(result[incoming]["grad"], weights[:, mine].sum(0), rtol=0, atol=1e-12)


def test_infonce_loss_and_gradients_match_single_process(
    ranks: list[dict[str, Any]], single: dict[str, Any]
) -> None:
    _check_step([r["infonce"] for r in ranks], single["infonce"])


def test_vicreg_global_statistics_match_single_process(
    ranks: list[dict[str, Any]], single: dict[str, Any]
) -> None:
    _check_step([r["vicreg"] for r in ranks], single["vicreg"])


def test_avid_losses_gradients_and_banks_match(ranks: list[dict[str, Any]], single: dict[str, Any]) -> None:
    for step in range(_dist_worker.STEPS):
        _check_step([r["avid"][step] for r in ranks], single["avid"][step])
    state0, state1 = ranks[0]["avid_state"], ranks[1]["avid_state"]
    for key, value in state0.items():
        assert torch.equal(value, state1[key]), f"{key} differs between ranks"
        torch.testing.assert_close(value, single["avid_state"][key])
    initial = AVIDLoss(_dist_worker.NUM_ITEMS, _dist_worker.DIM, bank_dtype=torch.float64)
    assert not torch.equal(state0["video_bank.weight"], initial.video_bank.weight)  # updates happened


def test_positive_sets_identical_across_ranks(ranks: list[dict[str, Any]], single: dict[str, Any]) -> None:
    assert torch.equal(ranks[0]["positive_sets"], ranks[1]["positive_sets"])
    assert torch.equal(ranks[0]["positive_sets"], single["positive_sets"])
