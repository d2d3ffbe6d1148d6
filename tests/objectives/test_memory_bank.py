from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from avlearn.objectives.memory_bank import MemoryBank, sample_excluding


def test_init_rows_unit_norm_and_seeded() -> None:
    a, b, c = MemoryBank(50, 8, seed=3), MemoryBank(50, 8, seed=3), MemoryBank(50, 8, seed=4)
    assert torch.allclose(a.weight.norm(dim=1), torch.ones(50), atol=1e-5)
    assert torch.equal(a.weight, b.weight)
    assert not torch.equal(a.weight, c.weight)


def test_bank_is_registered_buffer_in_state_dict() -> None:
    bank = MemoryBank(10, 4)
    assert "weight" in bank.state_dict()
    assert not list(bank.parameters())
    other = MemoryBank(10, 4, seed=9)
    other.load_state_dict(bank.state_dict())
    assert torch.equal(other.weight, bank.weight)


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9])
def test_momentum_update_equals_reference(momentum: float) -> None:
    bank = MemoryBank(12, 5, momentum=momentum, seed=1)
    before = bank.weight.clone()
    index = torch.tensor([3, 0, 11])
    emb = F.normalize(torch.randn(3, 5, generator=torch.Generator().manual_seed(0)), dim=1)
    bank.update(index, emb)
    for row in range(12):
        if row in index.tolist():
            e = emb[index.tolist().index(row)].tolist()
            mixed = [momentum * o + (1 - momentum) * x for o, x in zip(before[row].tolist(), e, strict=True)]
            norm = math.sqrt(sum(x * x for x in mixed))
            expected = torch.tensor([x / norm for x in mixed])
            assert torch.allclose(bank.weight[row], expected, atol=1e-6), row
        else:
            assert torch.equal(bank.weight[row], before[row]), row


def test_half_precision_storage_halves_bytes_per_entry() -> None:
    full, half = MemoryBank(1000, 128), MemoryBank(1000, 128, dtype=torch.float16)
    assert full.bytes_per_entry == 512
    assert half.bytes_per_entry == 256
    assert half.lookup(torch.tensor([1, 2])).dtype == torch.float32
    half.update(torch.tensor([1]), F.normalize(torch.randn(1, 128), dim=1))
    assert half.weight.dtype == torch.float16


@pytest.mark.parametrize("num_items,m", [(5, 1), (7, 3), (1000, 8)])
def test_sample_excluding_never_returns_excluded_and_covers_rest(num_items: int, m: int) -> None:
    gen = torch.Generator().manual_seed(0)
    exclude = torch.stack([torch.randperm(num_items, generator=gen)[:m] for _ in range(6)])
    draws = sample_excluding(num_items, exclude, 4000, generator=gen)
    assert draws.shape == (6, 4000)
    for row, excl in zip(draws, exclude, strict=True):
        seen = set(row.tolist())
        assert not seen & set(excl.tolist())
        assert all(0 <= x < num_items for x in seen)
        if num_items < 50:
            assert seen == set(range(num_items)) - set(excl.tolist())


def test_sample_negatives_excludes_anchor_and_extra() -> None:
    bank = MemoryBank(6, 3)
    index = torch.tensor([0, 5, 2, 2])
    extra = torch.tensor([[1], [4], [3], [0]])
    neg = bank.sample_negatives(index, 500, torch.Generator().manual_seed(1), exclude=extra)
    for i, row in enumerate(neg.tolist()):
        assert index[i].item() not in row
        assert extra[i, 0].item() not in row


def test_all_except() -> None:
    bank = MemoryBank(5, 2)
    assert bank.all_except(torch.tensor([0, 3])).tolist() == [[1, 2, 3, 4], [0, 1, 2, 4]]


def test_bad_arguments_raise_naming_them() -> None:
    with pytest.raises(ValueError, match="num_items"):
        MemoryBank(1, 4)
    with pytest.raises(ValueError, match="momentum"):
        MemoryBank(4, 4, momentum=1.0)
    with pytest.raises(ValueError, match="dtype"):
        MemoryBank(4, 4, dtype=torch.int64)
    bank = MemoryBank(4, 3)
    with pytest.raises(ValueError, match="negatives k"):
        bank.sample_negatives(torch.tensor([0]), 0)
    with pytest.raises(ValueError, match="no eligible"):
        sample_excluding(3, torch.tensor([[0, 1, 2]]), 2)
    with pytest.raises(IndexError, match="index"):
        bank.sample_negatives(torch.tensor([4]), 1)
    with pytest.raises(ValueError, match="emb"):
        bank.update(torch.tensor([0]), torch.randn(1, 5))
    with pytest.raises(ValueError, match="distinct"):
        sample_excluding(10, torch.tensor([[1, 1]]), 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_bank_on_the_gpu_updates_and_reads_like_on_the_cpu(dtype: torch.dtype) -> None:
    cpu = MemoryBank(64, 8, momentum=0.5, dtype=dtype, seed=3)
    gpu = MemoryBank(64, 8, momentum=0.5, dtype=dtype, seed=3).cuda()
    torch.testing.assert_close(gpu.weight.cpu(), cpu.weight)  # the seeded rows do not depend on the device
    index = torch.tensor([5, 0, 63, 17])
    emb = F.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    cpu.update(index, emb)
    gpu.update(index.cuda(), emb.cuda().to(torch.bfloat16))  # what an autocast forward hands it
    tol = {"atol": 1e-2, "rtol": 1e-2}  # the bf16 embedding's rounding
    torch.testing.assert_close(gpu.weight.cpu().float(), cpu.weight.float(), **tol)
    torch.testing.assert_close(gpu.lookup(index.cuda()).cpu(), cpu.lookup(index), **tol)
    assert gpu.lookup(index.cuda()).dtype == torch.float32
