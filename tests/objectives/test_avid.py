from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avlearn.objectives.avid import AVIDLoss, avid_loss, memory_discrimination_loss
from avlearn.objectives.memory_bank import MemoryBank

from . import _reference as ref


def _unit(*shape: int, seed: int) -> torch.Tensor:
    return F.normalize(
        torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=-1
    )


def _setup(b: int, d: int, n: int, k: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    video, audio = _unit(b, d, seed=seed + 1), _unit(b, d, seed=seed + 2)
    video_mem, audio_mem = _unit(n, d, seed=seed + 3), _unit(n, d, seed=seed + 4)
    index = torch.randperm(n, generator=gen)[:b]
    negatives = MemoryBank(n, 2).sample_negatives(index, k, gen)
    return video, audio, video_mem, audio_mem, index, negatives


def _reference_avid(
    video: torch.Tensor,
    audio: torch.Tensor,
    video_mem: torch.Tensor,
    audio_mem: torch.Tensor,
    index: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float,
    loss: str,
    xmodal_weight: float,
    within_weight: float,
    partition: dict[str, float] | None = None,
) -> tuple[float, dict[str, float]]:
    vm, am = ref.rows(video_mem), ref.rows(audio_mem)
    idx, neg = index.tolist(), negatives.tolist()
    own = {"v": [[vm[i]] for i in idx], "a": [[am[i]] for i in idx]}
    negs = {"v": [[vm[j] for j in row] for row in neg], "a": [[am[j] for j in row] for row in neg]}
    anchors = {"v": ref.rows(video), "a": ref.rows(audio)}
    total, zs = 0.0, {}
    for direction, weight in (
        ("v2a", xmodal_weight),
        ("a2v", xmodal_weight),
        ("v2v", within_weight),
        ("a2a", within_weight),
    ):
        if weight == 0:
            continue
        src, mem = direction[0], direction[2]
        z = None if partition is None else partition.get(direction)
        value, zs[direction] = ref.discrimination(
            anchors[src], own[mem], negs[mem], temperature, loss, len(vm), z
        )
        total += weight * value / 2
    return total, zs


@pytest.mark.parametrize("loss", ["nce", "softmax"])
@pytest.mark.parametrize(
    "b,d,n,k,temperature,weights",
    [
        (1, 3, 5, 2, 0.07, (1.0, 0.0)),
        (4, 8, 20, 6, 0.1, (1.0, 1.0)),
        (6, 5, 9, 16, 0.5, (0.5, 2.0)),
        (3, 4, 7, 3, 1.0, (0.0, 1.0)),
    ],
)
def test_avid_equals_reference(
    loss: str, b: int, d: int, n: int, k: int, temperature: float, weights: tuple[float, float]
) -> None:
    video, audio, video_mem, audio_mem, index, negatives = _setup(b, d, n, k)
    value, logs = avid_loss(
        video,
        audio,
        video_mem,
        audio_mem,
        index,
        negatives,
        temperature=temperature,
        loss=loss,
        xmodal_weight=weights[0],
        within_weight=weights[1],
    )
    expected, zs = _reference_avid(
        video, audio, video_mem, audio_mem, index, negatives, temperature, loss, *weights
    )
    assert value.item() == pytest.approx(expected, rel=1e-9)
    if loss == "nce":
        for direction, z in zs.items():
            assert logs[f"{direction}/partition"].item() == pytest.approx(z, rel=1e-9)
    first = "v2a" if weights[0] > 0 else "v2v"
    mem = audio_mem if first == "v2a" else video_mem
    assert logs[f"{first}/pos_sim"].item() == pytest.approx(
        (video * mem[index]).sum(1).mean().item(), rel=1e-6
    )
    assert logs["pos_sim"].shape == () and "neg_sim" in logs and f"{first}/acc" in logs


def test_fixed_partition_is_used() -> None:
    video, audio, video_mem, audio_mem, index, negatives = _setup(3, 4, 10, 5)
    fixed = {"v2a": 7.0, "a2v": 30.0}
    value, logs = avid_loss(
        video, audio, video_mem, audio_mem, index, negatives, temperature=0.2, partition=fixed
    )
    expected, _ = _reference_avid(
        video, audio, video_mem, audio_mem, index, negatives, 0.2, "nce", 1.0, 0.0, fixed
    )
    assert value.item() == pytest.approx(expected, rel=1e-9)
    assert logs["a2v/partition"].item() == pytest.approx(30.0)


def test_module_estimates_partition_once_and_updates_banks() -> None:
    torch.manual_seed(0)
    crit = AVIDLoss(16, 8, num_negatives=5, momentum=0.5, within_weight=1.0)
    assert set(crit.state_dict()) == {"video_bank.weight", "audio_bank.weight", "partition"}
    assert (crit.partition < 0).all()
    video, audio = _unit(4, 8, seed=1).float(), _unit(4, 8, seed=2).float()
    index = torch.tensor([1, 7, 3, 15])
    v_before, a_before = crit.video_bank.weight.clone(), crit.audio_bank.weight.clone()
    _, logs = crit(video, audio, index)
    z = crit.partition.clone()
    assert (z > 0).all()
    assert z[0].item() == pytest.approx(logs["v2a/partition"].item())
    expected_v = F.normalize(0.5 * v_before[index] + 0.5 * video, dim=1)
    assert torch.allclose(crit.video_bank.weight[index], expected_v, atol=1e-6)
    assert torch.allclose(
        crit.audio_bank.weight[index], F.normalize(0.5 * a_before[index] + 0.5 * audio, dim=1)
    )
    untouched = torch.ones(16, dtype=torch.bool)
    untouched[index] = False
    assert torch.equal(crit.video_bank.weight[untouched], v_before[untouched])
    crit(video, audio, index)
    assert torch.equal(crit.partition, z)  # fixed after the first batch
    weights = crit.video_bank.weight.clone()
    crit(video, audio, index, update_memory=False)
    assert torch.equal(crit.video_bank.weight, weights)


def test_module_negatives_never_positive() -> None:
    crit = AVIDLoss(6, 4, num_negatives=64)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        index = torch.randperm(6, generator=gen)[:3]
        neg = crit.video_bank.sample_negatives(index, crit.num_negatives, gen)
        assert not (neg == index.unsqueeze(1)).any()


@pytest.mark.parametrize("loss", ["nce", "softmax"])
def test_loss_decreases_under_optimisation(loss: str) -> None:
    torch.manual_seed(0)
    n, d = 32, 16
    crit = AVIDLoss(n, d, num_negatives=16, loss=loss, temperature=0.1)
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
    assert losses[-1] < 0.7 * losses[0], losses


def test_bad_arguments_raise_naming_them() -> None:
    video, audio, video_mem, audio_mem, index, negatives = _setup(3, 4, 10, 5)
    with pytest.raises(ValueError, match="temperature"):
        avid_loss(video, audio, video_mem, audio_mem, index, negatives, temperature=0.0)
    with pytest.raises(ValueError, match="loss"):
        avid_loss(video, audio, video_mem, audio_mem, index, negatives, loss="infonce")
    with pytest.raises(ValueError, match="video_emb"):
        avid_loss(video * 2, audio, video_mem, audio_mem, index, negatives)
    with pytest.raises(ValueError, match="audio_emb"):
        avid_loss(video, audio[:2], video_mem, audio_mem, index, negatives)
    with pytest.raises(ValueError, match="audio_memory"):
        avid_loss(video, audio, video_mem, audio_mem[:, :3], index, negatives)
    with pytest.raises(IndexError, match="index"):
        avid_loss(video, audio, video_mem, audio_mem, index + 10, negatives)
    with pytest.raises(ValueError, match="negatives"):
        avid_loss(video, audio, video_mem, audio_mem, index, negatives[:2])
    with pytest.raises(ValueError, match="within_weight"):
        avid_loss(video, audio, video_mem, audio_mem, index, negatives, within_weight=-1.0)
    with pytest.raises(ValueError, match="num_items"):
        memory_discrimination_loss(
            video, video_mem[:3, None].expand(3, 1, 4), video_mem[:3, None], loss="nce"
        )
    with pytest.raises(ValueError, match="num_negatives"):
        AVIDLoss(10, 4, num_negatives=0)
    with pytest.raises(ValueError, match="loss"):
        AVIDLoss(10, 4, loss="NCE")
    with pytest.raises(ValueError, match="both 0"):
        AVIDLoss(10, 4, xmodal_weight=0.0)
