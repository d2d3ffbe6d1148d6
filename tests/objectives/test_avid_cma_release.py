"""AVID-CMA's released loss structure (paper presets) against a hand-written version of the reference.

facebookresearch/AVID-CMA ``criterions/avid_cma.py`` + ``criterions/nce.py``, as released
(``InstX-N1024-PosW-N64-Top32``): cross-modal instance terms (own entry of the other bank as the
positive, K negatives), within-modal positive-set terms (every member of the set, the first 64 of
the K negatives), one NCE partition ``Z = mean(exp(s_neg))`` estimated on the first term's
negatives and shared, each loss ``(a + b) / 2`` times its coefficient over the sum of coefficients.
Written here with explicit loops over floats.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from avlearn.config import ConfigError, from_dict
from avlearn.objectives.avid import AVIDConfig, AVIDLoss, avid_loss
from avlearn.objectives.cma import CMAConfig, CMALoss, cma_loss

from . import _reference as ref

Rows = list[list[float]]


def _unit(*shape: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=gen, dtype=torch.float64), dim=-1)


def _batch(b: int, d: int, n: int) -> tuple[torch.Tensor, ...]:
    """Anchors ``video, audio (b, d)`` and banks ``(n, d)``, unit norm."""
    return _unit(b, d, seed=1), _unit(b, d, seed=2), _unit(n, d, seed=3), _unit(n, d, seed=4)


def _nce(anchor: list[float], pos: list[list[float]], neg: list[list[float]], t: float, avg: float) -> float:
    """The reference's NCECriterion for one anchor: -mean_p log Pmt - sum_n log Pon."""
    k = len(neg)
    ep = [math.exp(ref.dot(anchor, p) / t) for p in pos]
    en = [math.exp(ref.dot(anchor, n) / t) for n in neg]
    return (-sum(math.log(e / (e + k * avg)) for e in ep) / len(ep)
            - sum(math.log(k * avg / (e + k * avg)) for e in en))


def reference_avid_cma(video: torch.Tensor, audio: torch.Tensor, vmem: torch.Tensor, amem: torch.Tensor,
                       index: list[int], pos_sets: list[list[int]], negatives: list[list[int]],
                       t: float, k_within: int, x_coeff: float, w_coeff: float) -> float:
    v, a, vm, am = ref.rows(video), ref.rows(audio), ref.rows(vmem), ref.rows(amem)
    b = len(v)
    # Z from the first term's (inst-v2a) negatives on this, the first, batch
    scores = [math.exp(ref.dot(v[i], am[j]) / t) for i in range(b) for j in negatives[i]]
    avg = sum(scores) / len(scores)
    def own(mem: Rows) -> list[Rows]:
        return [[mem[index[i]]] for i in range(b)]

    def pick(mem: Rows, rows: list[list[int]], limit: int | None = None) -> list[Rows]:
        return [[mem[j] for j in row[:limit]] for row in rows]

    terms: dict[str, float] = {}
    for name, anchors, positives, negs in (
        ("inst-v2a", v, own(am), pick(am, negatives)),
        ("inst-a2v", a, own(vm), pick(vm, negatives)),
        ("pos-v2v", v, pick(vm, pos_sets), pick(vm, negatives, k_within)),
        ("pos-a2a", a, pick(am, pos_sets), pick(am, negatives, k_within)),
    ):
        terms[name] = sum(_nce(anchors[i], positives[i], negs[i], t, avg) for i in range(b)) / b
    x_loss = (terms["inst-v2a"] + terms["inst-a2v"]) / 2
    w_loss = (terms["pos-v2v"] + terms["pos-a2a"]) / 2
    return x_coeff / (x_coeff + w_coeff) * x_loss + w_coeff / (x_coeff + w_coeff) * w_loss


@pytest.mark.parametrize(("b", "d", "n", "k_set", "k", "k_within", "coeffs"),
                         [(3, 4, 30, 4, 12, 5, (1.0, 1.0)), (5, 6, 40, 6, 16, 16, (1.0, 3.0)),
                          (2, 3, 25, 2, 9, 1, (0.5, 1.0))])
def test_release_structure_equals_the_reference(
    b: int, d: int, n: int, k_set: int, k: int, k_within: int, coeffs: tuple[float, float]
) -> None:
    gen = torch.Generator().manual_seed(b)
    video, audio, vmem, amem = _batch(b, d, n)
    index = torch.randperm(n, generator=gen)[:b]
    pos_sets = torch.randint(0, n, (b, k_set), generator=gen)
    negatives = torch.randint(0, n, (b, k), generator=gen)
    value, logs = cma_loss(video, audio, vmem, amem, index, pos_sets, negatives, temperature=0.1,
                           xmodal_weight=coeffs[0], within_weight=coeffs[1], xmodal_positives=False,
                           num_negatives_within=k_within, normalize_weights=True, shared_partition=True)
    expected = reference_avid_cma(video, audio, vmem, amem, index.tolist(), pos_sets.tolist(),
                                  negatives.tolist(), 0.1, k_within, *coeffs)
    assert value.item() == pytest.approx(expected, rel=1e-9)
    zs = {logs[f"{d_}/partition"].item() for d_ in ("v2a", "a2v", "v2v", "a2a")}
    assert len(zs) == 1  # one partition function for every term


def test_our_structure_differs_from_the_release() -> None:
    """The default (ours) is a different loss: positives in the cross-modal terms, all K within, 2x."""
    gen = torch.Generator().manual_seed(0)
    video, audio, vmem, amem = _batch(4, 5, 30)
    index, pos = torch.arange(4), torch.randint(4, 30, (4, 3), generator=gen)
    neg = torch.randint(4, 30, (4, 10), generator=gen)
    ours, _ = cma_loss(video, audio, vmem, amem, index, pos, neg)
    paper, _ = cma_loss(video, audio, vmem, amem, index, pos, neg, xmodal_positives=False,
                        num_negatives_within=4, normalize_weights=True, shared_partition=True)
    assert ours.item() != pytest.approx(paper.item(), rel=1e-3)


def test_normalised_weights_halve_the_joint_loss_and_leave_avid_xmodal_alone() -> None:
    gen = torch.Generator().manual_seed(0)
    video, audio, vmem, amem = _batch(4, 5, 30)
    index, neg = torch.arange(4), torch.randint(4, 30, (4, 10), generator=gen)
    joint, _ = avid_loss(video, audio, vmem, amem, index, neg, within_weight=1.0)
    joint_norm, _ = avid_loss(video, audio, vmem, amem, index, neg, within_weight=1.0, normalize_weights=True)
    assert joint_norm.item() == pytest.approx(joint.item() / 2, rel=1e-12)
    weighted, _ = avid_loss(video, audio, vmem, amem, index, neg, xmodal_weight=3.0, within_weight=1.0,
                            normalize_weights=True)
    parts, _ = avid_loss(video, audio, vmem, amem, index, neg, xmodal_weight=3.0, within_weight=1.0)
    assert weighted.item() == pytest.approx(parts.item() / 4, rel=1e-12)
    xmodal, _ = avid_loss(video, audio, vmem, amem, index, neg)
    xmodal_norm, _ = avid_loss(video, audio, vmem, amem, index, neg, normalize_weights=True)
    assert xmodal_norm.item() == pytest.approx(xmodal.item(), rel=1e-12)


def test_shared_partition_is_estimated_once_from_v2a_and_kept() -> None:
    crit = AVIDLoss(40, 6, num_negatives=8, within_weight=1.0, shared_partition=True, normalize_weights=True)
    video, audio = _unit(4, 6, seed=1).float(), _unit(4, 6, seed=2).float()
    gen = torch.Generator().manual_seed(0)
    neg = crit.video_bank.sample_negatives(torch.arange(4), 8, gen)
    audio_bank = crit.audio_bank.weight.detach().clone()
    _, logs = crit(video, audio, torch.arange(4), negatives=neg)
    scores = torch.einsum("bd,bkd->bk", video, audio_bank[neg]) / 0.07  # the v2a negatives
    z = logs["v2a/partition"].item()
    assert z == pytest.approx(40 * scores.exp().mean().item(), rel=1e-5)
    assert all(logs[f"{d}/partition"].item() == z for d in ("a2v", "v2v", "a2a"))
    assert torch.allclose(crit.partition, torch.full((4,), z))
    _, logs2 = crit(video, audio, torch.arange(4, 8))
    assert logs2["a2a/partition"].item() == z


def test_release_keys_through_the_config_and_module() -> None:
    cfg = from_dict(CMAConfig, {"positives": "all", "xmodal_positives": False, "num_negatives_within": 4,
                                "normalize_weights": True, "partition": "shared", "num_negatives": 16,
                                "positive_set_size": 3})
    assert cfg.bank_kwargs()["shared_partition"] and cfg.bank_kwargs()["normalize_weights"]
    crit = CMALoss(30, 5, positive_set_size=3, num_negatives=16, all_positives=True, xmodal_positives=False,
                   num_negatives_within=4, **{k: v for k, v in cfg.bank_kwargs().items()
                                              if k in ("normalize_weights", "shared_partition")})
    crit.update_positive_sets()
    index = torch.tensor([0, 7, 12])
    assert torch.equal(crit.sample_positives(index), crit.positive_sets[index].long())  # the whole set
    value, logs = crit(_unit(3, 5, seed=5).float(), _unit(3, 5, seed=6).float(), index)
    assert value.isfinite() and logs["v2v/partition"] == logs["v2a/partition"]
    assert AVIDConfig().partition == "per_direction" and not AVIDConfig().normalize_weights  # ours by default


def test_bad_release_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"num_negatives_within must be in \[0, num_negatives=8\]"):
        CMAConfig(num_negatives=8, num_negatives_within=9)
    with pytest.raises(ConfigError, match="partition"):
        from_dict(AVIDConfig, {"partition": "global"}, prefix="objective.")
    with pytest.raises(ValueError, match="num_negatives_within"):
        cma_loss(_unit(1, 3, seed=0), _unit(1, 3, seed=1), _unit(5, 3, seed=2), _unit(5, 3, seed=3),
                 torch.tensor([0]), torch.tensor([[1]]), torch.tensor([[2, 3]]), num_negatives_within=3)
