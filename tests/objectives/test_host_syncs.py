"""The objectives' training step reads no tensor value back to Python (a host sync on a GPU).

On CUDA every ``.item()``, ``.tolist()``, ``int(t)``, ``float(t)`` or ``bool(t)`` waits for the queued
kernels; on the CPU these calls are free but the same code runs, so counting them here counts the
syncs the step would make on a GPU. Checks that must look at values use ``torch._assert_async``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from avlearn.models.av import AVOutput
from avlearn.objectives import OBJECTIVES, AVIDConfig, AVIDLoss, CMAConfig, Objective, ObjectiveContext
from avlearn.objectives._checks import check_index, check_normalized
from avlearn.objectives.avid import memory_discrimination_loss
from avlearn.objectives.cma import CMALoss

_READS = ("item", "tolist", "__int__", "__float__", "__bool__", "__index__", "numpy", "cpu")
N, B, D = 64, 8, 16


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[collections.Counter[str]]:
    """Counts the Python-level reads of tensor values, by method name."""
    counts: collections.Counter[str] = collections.Counter()

    def counted(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def read(self: Tensor, *args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return original(self, *args, **kwargs)
        return read

    for name in _READS:
        monkeypatch.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
    yield counts


def _objective(name: str, within_weight: float = 0.0, loss: Literal["nce", "softmax"] = "nce") -> Objective:
    ctx = ObjectiveContext(num_items=N, embed_dim=D, seed=0)
    if name == "avid":
        cfg = AVIDConfig(num_negatives=16, within_weight=within_weight, loss=loss)
        return OBJECTIVES[name].build(cfg, ctx)
    if name == "cma":
        obj = OBJECTIVES[name].build(CMAConfig(num_negatives=16, positive_set_size=4, num_positives=2), ctx)
        assert isinstance(obj, CMALoss)
        obj.update_positive_sets()
        return obj
    return OBJECTIVES[name].build(OBJECTIVES[name].config_cls(), ctx)


def _batch(step: int) -> tuple[AVOutput, Tensor]:
    gen = torch.Generator().manual_seed(step)
    video, audio = (F.normalize(torch.randn(B, D, generator=gen), dim=1) for _ in range(2))
    zeros = torch.zeros(B, 1)
    out = AVOutput(video, audio, zeros, zeros, zeros, zeros)
    return out, torch.randperm(N, generator=gen)[:B]


def _step(objective: Objective, step: int) -> None:
    out, index = _batch(step)
    objective.compute(out, index)
    objective.after_finite_step(out, index)


CASES = [("avid", 0.0, "nce"), ("avid", 1.0, "nce"), ("avid", 0.0, "softmax"), ("cma", 1.0, "nce"),
         ("infonce", 0.0, "nce"), ("vicreg", 0.0, "nce")]


@pytest.mark.parametrize(("name", "within", "loss"), CASES)
def test_steady_step_reads_no_value(reads: collections.Counter[str], name: str, within: float,
                                    loss: Literal["nce", "softmax"]) -> None:
    """After the first two steps (the NCE partition functions are estimated, then known on the
    host) a step reads nothing back."""
    objective = _objective(name, within, loss)
    for step in range(2):
        _step(objective, step)
    reads.clear()
    for step in range(2, 5):
        _step(objective, step)
    assert dict(reads) == {}


def test_first_steps_read_the_partition_twice_each(reads: collections.Counter[str]) -> None:
    """Until every ``Z`` is known the buffer is read when the step starts and when it stores them."""
    objective = _objective("avid")
    _step(objective, 0)
    assert dict(reads) == {"tolist": 2}


def test_a_loaded_state_is_read_again(reads: collections.Counter[str]) -> None:
    """The host's copy of which ``Z`` are known follows ``load_state_dict`` (a resumed run)."""
    trained, fresh = _objective("avid"), _objective("avid")
    assert isinstance(trained, AVIDLoss)
    for step in range(2):
        _step(trained, step)
    z = {d: value.clone() for d, value in trained.partitions().items()}  # views of the buffer
    trained.load_state_dict(fresh.state_dict())
    assert trained.partitions() == {}
    trained.load_state_dict({**fresh.state_dict(), "partition": torch.tensor([z["v2a"], z["a2v"], -1, -1])})
    assert set(trained.partitions()) == {"v2a", "a2v"}


def test_cma_positive_sets_follow_a_load(reads: collections.Counter[str]) -> None:
    cma = _objective("cma")
    assert isinstance(cma, CMALoss) and cma.has_positive_sets
    cma.load_state_dict({**cma.state_dict(), "positive_sets": torch.full_like(cma.positive_sets, -1)})
    assert not cma.has_positive_sets


def test_checks_still_raise_their_messages_on_the_cpu() -> None:
    """The device-side checks keep the errors (type and message, values included) on the CPU."""
    with pytest.raises(IndexError, match=r"index values must lie in \[0, 4\), got range \[-1, 2\]"):
        check_index(torch.tensor([2, -1]), 2, 4)
    with pytest.raises(ValueError, match=r"max \|norm-1\| = 1"):
        check_normalized("video_emb", torch.full((2, 4), 1.0))
    check_normalized("video_emb", torch.full((2, 4), float("nan")))  # non-finite: the engine skips it
    one = torch.ones(1, 4) / 2
    with pytest.raises(ValueError, match="partition must be > 0, got -2"):
        memory_discrimination_loss(one, one[None], one[None], num_items=8, partition=-2.0)
