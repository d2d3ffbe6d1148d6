"""2-process gloo run of the localization loss vs the single-process loss on the whole batch.

Each rank's loss is the mean over its local anchors (so the mean over ranks equals the
single-process loss) and its local gradients are ``world_size`` times the single-process ones.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.torchrun import run_ranks

from . import _dist_worker

WORLD = 2


def test_two_process_loss_and_gradients_match_single_process(tmp_path: Path) -> None:
    ranks = run_ranks(Path(_dist_worker.__file__), tmp_path, WORLD)
    single = _dist_worker.run()
    assert [r["world_size"] for r in ranks] == [WORLD] * WORLD and single["world_size"] == 1
    torch.testing.assert_close(torch.stack([r["loss"] for r in ranks]).mean(), single["loss"])
    for key in ("grad_grid", "grad_audio"):
        for r, expected in zip(ranks, single[key].chunk(WORLD), strict=True):
            torch.testing.assert_close(r[key], WORLD * expected)
