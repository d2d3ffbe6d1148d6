"""``run_inference``: eval mode and no gradient inside, outputs concatenated, the mode restored."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from avlearn.eval.inference import run_inference


def _batches(n: int, size: int = 3) -> list[dict[str, Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [{"x": torch.randn(size, 4, generator=g), "label": torch.arange(size) + 10 * i} for i in range(n)]


def test_outputs_are_concatenated_without_gradient_in_eval_mode() -> None:
    model = nn.Sequential(nn.Linear(4, 2), nn.Dropout(0.9))  # dropout would change outputs in train mode
    modes = []

    def step(batch: Mapping[str, Any]) -> dict[str, Tensor]:
        modes.append((model.training, torch.is_grad_enabled()))
        return {"out": model(batch["x"]), "label": batch["label"]}

    batches = _batches(3)
    out = run_inference(model, batches, step, desc="test")
    assert modes == [(False, False)] * 3 and model.training
    x = torch.cat([b["x"] for b in batches])
    torch.testing.assert_close(out["out"], model[0](x).detach())
    assert out["label"].tolist() == [0, 1, 2, 10, 11, 12, 20, 21, 22]
    assert not out["out"].requires_grad


def test_mode_is_restored_when_a_step_fails_and_an_empty_loader_is_named() -> None:
    model = nn.Linear(4, 2)

    def fail(batch: Mapping[str, Any]) -> dict[str, Tensor]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_inference(model, _batches(1), fail)
    assert model.training
    model.eval()
    with pytest.raises(ValueError, match="embed clips: the loader gave no batches"):
        run_inference(model, [], fail, desc="embed clips")
    assert not model.training
