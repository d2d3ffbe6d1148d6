from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avlearn.objectives.infonce import InfoNCELoss, infonce_loss

from . import _reference as ref


def _unit(*shape: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=gen, dtype=torch.float64), dim=-1)


@pytest.mark.parametrize("b,d,temperature", [(2, 3, 0.07), (5, 8, 0.1), (9, 4, 0.5), (16, 32, 1.0)])
def test_infonce_equals_reference(b: int, d: int, temperature: float) -> None:
    video, audio = _unit(b, d, seed=b), _unit(b, d, seed=b + 100)
    value, logs = infonce_loss(video, audio, temperature)
    assert value.item() == pytest.approx(ref.infonce(video, audio, temperature), rel=1e-9)
    sim = video @ audio.T
    assert logs["pos_sim"].item() == pytest.approx(sim.diag().mean().item(), rel=1e-6)
    off = sim[~torch.eye(b, dtype=torch.bool)]
    assert logs["neg_sim"].item() == pytest.approx(off.mean().item(), rel=1e-6)
    assert logs["acc_v2a"].item() == pytest.approx((sim.argmax(1) == torch.arange(b)).double().mean().item())


def test_infonce_decreases_with_linear_heads() -> None:
    torch.manual_seed(0)
    x = torch.randn(32, 10)
    head_v, head_a = torch.nn.Linear(10, 8), torch.nn.Linear(10, 8)
    crit = InfoNCELoss(temperature=0.2)
    opt = torch.optim.SGD([*head_v.parameters(), *head_a.parameters()], lr=0.5)
    losses = []
    for _ in range(25):
        value, _ = crit(F.normalize(head_v(x), dim=1), F.normalize(head_a(x), dim=1))
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(value.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_bad_arguments_raise_naming_them() -> None:
    video, audio = _unit(4, 3, seed=0), _unit(4, 3, seed=1)
    for bad in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            infonce_loss(video, audio, bad)
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(temperature=-1.0)
    with pytest.raises(ValueError, match="audio_emb"):
        infonce_loss(video, audio[:3])
    with pytest.raises(ValueError, match="video_emb"):
        infonce_loss(video[0], audio)
    with pytest.raises(ValueError, match="video_emb"):
        infonce_loss(video * 3, audio)
    with pytest.raises(ValueError, match="at least 2"):
        infonce_loss(video[:1], audio[:1])


def test_shifted_audio_adds_the_batch_shifted_windows_to_the_video_negatives() -> None:
    b, d, temperature = 6, 5, 0.2
    video, audio, shifted = _unit(b, d, seed=1), _unit(b, d, seed=2), _unit(b, d, seed=3)
    value, logs = infonce_loss(video, audio, temperature, audio_shifted_emb=shifted)
    target = torch.arange(b)
    v2a = F.cross_entropy(torch.cat([video @ audio.T, video @ shifted.T], 1) / temperature, target)
    a2v = F.cross_entropy(audio @ video.T / temperature, target)  # the audio direction is unchanged
    assert value.item() == pytest.approx(((v2a + a2v) / 2).item(), rel=1e-9)
    own, shift = (video * audio).sum(1), (video * shifted).sum(1)
    assert logs["shift_acc"].item() == pytest.approx((own > shift).double().mean().item())
    assert logs["shift_sim"].item() == pytest.approx(shift.mean().item(), rel=1e-6)
    plain, plain_logs = infonce_loss(video, audio, temperature)
    assert value.item() > plain.item() and "shift_acc" not in plain_logs  # more negatives, higher loss
    assert logs["acc_v2a"] == plain_logs["acc_v2a"]  # retrieval accuracy over the true audio only
    with pytest.raises(ValueError, match="audio_shifted_emb"):
        infonce_loss(video, audio, temperature, audio_shifted_emb=shifted * 2)


def _hcl_reference(sim: torch.Tensor, temperature: float, beta: float) -> float:
    """HCL's hard estimator (tau_plus = 0, no clamp) by its formula, one anchor at a time:
    ``-log(pos / (pos + N * sum_j imp_j neg_j / sum_j imp_j))``, ``neg_j = exp(s_j / t)``,
    ``imp_j = neg_j ** beta``."""
    losses = []
    for i in range(sim.shape[0]):
        pos = torch.exp(sim[i, i] / temperature)
        neg = torch.exp(torch.cat([sim[i, :i], sim[i, i + 1 :]]) / temperature)
        imp = neg**beta
        ng = len(neg) * (imp * neg).sum() / imp.sum()
        losses.append(-torch.log(pos / (pos + ng)))
    return float(torch.stack(losses).mean())


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_hard_negatives_equal_hcl_in_both_directions(beta: float) -> None:
    video, audio = _unit(6, 8, seed=3), _unit(6, 8, seed=4)
    t = 0.2
    value, _ = infonce_loss(video, audio, t, hard_negative_beta=beta)
    sim = video @ audio.T
    expected = (_hcl_reference(sim, t, beta) + _hcl_reference(sim.T, t, beta)) / 2
    assert value.item() == pytest.approx(expected, rel=1e-9)
    if beta == 0:
        assert value.item() == pytest.approx(ref.infonce(video, audio, t), rel=1e-9)


def test_hard_negatives_push_hardest_negatives_hardest() -> None:
    # the closest negative takes a larger share of the gradient on the negatives with beta > 0
    video, audio = _unit(8, 16, seed=5), _unit(8, 16, seed=6)
    from avlearn.objectives.infonce import hard_negative_logits

    ratios = []
    for beta in (0.0, 1.0):
        sim = (video @ audio.T).requires_grad_(True)
        targets = torch.arange(8)
        F.cross_entropy(hard_negative_logits(sim, targets, 0.2, beta), targets).backward()
        assert sim.grad is not None
        g, s = sim.grad[0], sim.detach()[0].clone()
        s[0] = float("nan")
        hard = int(torch.nan_to_num(s, nan=-2).argmax())
        ratios.append(float(g[hard] / g[1:].abs().sum()))  # the hardest negative's share of the push
    assert ratios[1] > ratios[0] > 0
    with pytest.raises(Exception, match="hard_negative_beta"):
        from avlearn.objectives.infonce import InfoNCEConfig

        InfoNCEConfig(hard_negative_beta=-1.0)
