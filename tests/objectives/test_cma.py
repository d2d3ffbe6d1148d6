from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avlearn.objectives.cma import MODES, CMALoss, cma_loss, compute_positive_sets

from . import _reference as ref


def _unit(*shape: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=gen, dtype=torch.float64), dim=-1)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n,d,k", [(6, 3, 1), (13, 4, 5), (40, 8, 7)])
def test_positive_sets_equal_brute_force(mode: str, n: int, d: int, k: int) -> None:
    video, audio = _unit(n, d, seed=n), _unit(n, d, seed=n + 1)
    expected = ref.positive_sets(video, audio, k, mode)
    full = compute_positive_sets(video, audio, k, mode, chunk_size=n)
    assert full.shape == (n, k) and full.dtype == torch.long
    assert [set(row) for row in full.tolist()] == expected
    for chunk in (1, 3, 7):
        assert torch.equal(compute_positive_sets(video, audio, k, mode, chunk_size=chunk), full)
    part = compute_positive_sets(video, audio, k, mode, chunk_size=4, rows=(2, 5))
    assert torch.equal(part, full[2:5])


def test_positive_sets_ordered_by_agreement() -> None:
    video, audio = _unit(30, 5, seed=0), _unit(30, 5, seed=1)
    sets = compute_positive_sets(video, audio, 6, "consensus", chunk_size=4)
    score = torch.minimum(video @ video.T, audio @ audio.T)
    ordered = score.gather(1, sets)
    assert (ordered[:, :-1] >= ordered[:, 1:]).all()
    assert not (sets == torch.arange(30).unsqueeze(1)).any()


def _reference_cma(
    video: torch.Tensor,
    audio: torch.Tensor,
    video_mem: torch.Tensor,
    audio_mem: torch.Tensor,
    index: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float,
    loss: str,
    xmodal_weight: float,
    within_weight: float,
) -> float:
    mems = {"v": ref.rows(video_mem), "a": ref.rows(audio_mem)}
    anchors = {"v": ref.rows(video), "a": ref.rows(audio)}
    total = 0.0
    for direction, weight in (
        ("v2a", xmodal_weight),
        ("a2v", xmodal_weight),
        ("v2v", within_weight),
        ("a2a", within_weight),
    ):
        if weight == 0:
            continue
        mem = mems[direction[2]]
        pos = []
        for i, row in zip(index.tolist(), positives.tolist(), strict=True):
            own = [mem[i]] if direction in ("v2a", "a2v") else []
            pos.append(own + [mem[j] for j in row])
        neg = [[mem[j] for j in row] for row in negatives.tolist()]
        value, _ = ref.discrimination(anchors[direction[0]], pos, neg, temperature, loss, len(mem), None)
        total += weight * value / 2
    return total


@pytest.mark.parametrize("loss", ["nce", "softmax"])
@pytest.mark.parametrize(
    "b,d,n,p,k,temperature,weights",
    [(1, 3, 8, 1, 2, 0.07, (1.0, 1.0)), (4, 6, 20, 3, 5, 0.1, (1.0, 0.5)), (5, 4, 12, 2, 9, 0.7, (0.0, 1.0))],
)
def test_cma_loss_equals_reference(
    loss: str, b: int, d: int, n: int, p: int, k: int, temperature: float, weights: tuple[float, float]
) -> None:
    gen = torch.Generator().manual_seed(0)
    video, audio = _unit(b, d, seed=1), _unit(b, d, seed=2)
    video_mem, audio_mem = _unit(n, d, seed=3), _unit(n, d, seed=4)
    index = torch.randperm(n, generator=gen)[:b]
    positives = torch.randint(0, n, (b, p), generator=gen)
    negatives = torch.randint(0, n, (b, k), generator=gen)
    value, logs = cma_loss(
        video,
        audio,
        video_mem,
        audio_mem,
        index,
        positives,
        negatives,
        temperature=temperature,
        loss=loss,
        xmodal_weight=weights[0],
        within_weight=weights[1],
    )
    expected = _reference_cma(
        video, audio, video_mem, audio_mem, index, positives, negatives, temperature, loss, *weights
    )
    assert value.item() == pytest.approx(expected, rel=1e-9)
    assert "pos_sim" in logs and "neg_sim" in logs


def test_module_positive_sets_sampling_and_exclusion() -> None:
    crit = CMALoss(20, 6, positive_set_size=4, num_positives=3, num_negatives=200)
    assert "positive_sets" in crit.state_dict()
    video, audio = _unit(5, 6, seed=1).float(), _unit(5, 6, seed=2).float()
    index = torch.tensor([0, 4, 9, 13, 19])
    with pytest.raises(RuntimeError, match="update_positive_sets"):
        crit(video, audio, index)
    crit.update_positive_sets()
    expected = compute_positive_sets(crit.video_bank.weight, crit.audio_bank.weight, 4, "consensus")
    assert torch.equal(crit.positive_sets.long(), expected)
    gen = torch.Generator().manual_seed(0)
    positives = crit.sample_positives(index, gen)
    sets = crit.positive_sets[index].long()
    assert positives.shape == (5, 3)
    assert all(set(p) <= set(s) for p, s in zip(positives.tolist(), sets.tolist(), strict=True))
    negatives = crit.video_bank.sample_negatives(index, 200, gen, sets)
    for i, row in enumerate(negatives.tolist()):
        assert not set(row) & ({index[i].item()} | set(sets[i].tolist()))
    before = crit.video_bank.weight.clone()
    value, logs = crit(video, audio, index, generator=gen)
    assert value.isfinite() and (crit.partition > 0).all() and "v2v/pos_sim" in logs
    assert not torch.equal(crit.video_bank.weight[index], before[index])


@pytest.mark.parametrize("loss", ["nce", "softmax"])
def test_loss_decreases_under_optimisation(loss: str) -> None:
    torch.manual_seed(0)
    n, d = 32, 16
    crit = CMALoss(n, d, positive_set_size=3, num_positives=2, num_negatives=16, loss=loss, temperature=0.1)
    crit.update_positive_sets()
    video = torch.nn.Parameter(torch.randn(n, d))
    audio = torch.nn.Parameter(torch.randn(n, d))
    opt = torch.optim.Adam([video, audio], lr=0.05)
    gen = torch.Generator().manual_seed(1)
    index = torch.arange(n)
    losses = []
    for _ in range(30):
        value, _ = crit(F.normalize(video, dim=1), F.normalize(audio, dim=1), index, generator=gen)
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(value.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_bad_arguments_raise_naming_them() -> None:
    video, audio = _unit(6, 3, seed=0), _unit(6, 3, seed=1)
    with pytest.raises(ValueError, match="mode"):
        compute_positive_sets(video, audio, 2, "intersection")
    with pytest.raises(ValueError, match="k="):
        compute_positive_sets(video, audio, 6)
    with pytest.raises(ValueError, match="chunk_size"):
        compute_positive_sets(video, audio, 2, chunk_size=0)
    with pytest.raises(ValueError, match="audio_bank"):
        compute_positive_sets(video, audio[:5], 2)
    with pytest.raises(ValueError, match="mode"):
        CMALoss(10, 3, mode="both")
    with pytest.raises(ValueError, match="positive_set_size"):
        CMALoss(10, 3, positive_set_size=10)
    index, negatives = torch.tensor([0, 1]), torch.tensor([[2], [3]])
    with pytest.raises(ValueError, match="positives"):
        cma_loss(video[:2], audio[:2], video, audio, index, torch.zeros(2, 0, dtype=torch.long), negatives)
    with pytest.raises(IndexError, match="positives"):
        cma_loss(video[:2], audio[:2], video, audio, index, torch.tensor([[6], [0]]), negatives)
    with pytest.raises(ValueError, match="temperature"):
        cma_loss(video[:2], audio[:2], video, audio, index, negatives, negatives, temperature=-1.0)
