"""Cross-modal VICReg: against a naive reference, its anti-collapse term, its config and module."""

from __future__ import annotations

import itertools

import pytest
import torch

from avlearn.config import ConfigError
from avlearn.models.av import AVOutput
from avlearn.objectives import OBJECTIVES, ObjectiveContext, VICRegConfig, VICRegLoss, vicreg_loss


def _naive(zv: torch.Tensor, za: torch.Tensor, wi: float, wv: float, wc: float, gamma: float,
           eps: float) -> torch.Tensor:
    """Element by element, as the paper writes it."""
    n, d = zv.shape
    inv = sum((zv[i, k] - za[i, k]) ** 2 for i in range(n) for k in range(d)) / (n * d)

    def var_term(z: torch.Tensor) -> torch.Tensor:
        total = torch.zeros((), dtype=z.dtype)
        for k in range(d):
            mean = sum(z[i, k] for i in range(n)) / n
            var = sum((z[i, k] - mean) ** 2 for i in range(n)) / (n - 1)
            total = total + torch.clamp(gamma - torch.sqrt(var + eps), min=0)
        return total / d

    def cov_term(z: torch.Tensor) -> torch.Tensor:
        means = [sum(z[i, k] for i in range(n)) / n for k in range(d)]
        total = torch.zeros((), dtype=z.dtype)
        for a, b in itertools.permutations(range(d), 2):
            c = sum((z[i, a] - means[a]) * (z[i, b] - means[b]) for i in range(n)) / (n - 1)
            total = total + c**2
        return total / d

    return wi * inv + wv * (var_term(zv) + var_term(za)) / 2 + wc * (cov_term(zv) + cov_term(za))


@pytest.mark.parametrize(("n", "d", "weights"), [(2, 3, (25.0, 25.0, 1.0)), (5, 4, (1.0, 2.0, 0.5)),
                                                 (7, 2, (0.0, 1.0, 3.0))])
def test_equals_naive_reference(n: int, d: int, weights: tuple[float, float, float]) -> None:
    gen = torch.Generator().manual_seed(n * d)
    zv = torch.randn(n, d, generator=gen, dtype=torch.float64) * 0.7
    za = torch.randn(n, d, generator=gen, dtype=torch.float64) * 1.3
    loss, logs = vicreg_loss(zv, za, *weights, gamma=1.0, eps=1e-4)
    expected = _naive(zv, za, *weights, gamma=1.0, eps=1e-4)
    torch.testing.assert_close(loss, expected)
    assert float(logs["loss"]) == pytest.approx(float(expected))


def _spread_after(steps: int, variance_weight: float) -> tuple[float, float]:
    """SGD on nearly collapsed embeddings (spread 1e-3 around one vector); their std before/after."""
    gen = torch.Generator().manual_seed(0)
    centre = torch.randn(1, 8, generator=gen)
    zv = torch.nn.Parameter(centre + 1e-3 * torch.randn(32, 8, generator=gen))
    za = torch.nn.Parameter(centre + 1e-3 * torch.randn(32, 8, generator=gen))
    before = float(zv.detach().std(0).mean())
    opt = torch.optim.SGD([zv, za], lr=0.5)
    for _ in range(steps):
        loss, _ = vicreg_loss(zv, za, 25.0, variance_weight, 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, float(zv.detach().std(0).mean())


def test_variance_term_undoes_collapse() -> None:
    before, with_var = _spread_after(20, variance_weight=25.0)
    _, without_var = _spread_after(20, variance_weight=0.0)
    assert before < 0.01
    assert with_var > 0.3, with_var  # 300x the start: pushed towards the hinge at 1
    assert without_var < 0.01, without_var  # invariance + covariance alone leave it collapsed


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        vicreg_loss(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="same shape"):
        vicreg_loss(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="variance_weight"):
        vicreg_loss(torch.randn(3, 4), torch.randn(3, 4), variance_weight=-1.0)
    with pytest.raises(ConfigError, match="objective.expander_dims"):
        VICRegConfig(expander_dims=(8, 0))
    with pytest.raises(ConfigError, match="all 0"):
        VICRegConfig(invariance_weight=0, variance_weight=0, covariance_weight=0)


def test_module_reads_unnormalised_embeddings_through_its_expanders() -> None:
    cfg = VICRegConfig(expander_dims=(16, 12))
    objective = OBJECTIVES["vicreg"].build(cfg, ObjectiveContext(num_items=10, embed_dim=6))
    assert isinstance(objective, VICRegLoss) and not objective.normalize_embeddings
    params = dict(objective.named_parameters())
    assert params["video_expander.0.weight"].shape == (16, 6)
    assert params["audio_expander.3.weight"].shape == (12, 16)
    emb = torch.randn(4, 6, requires_grad=True)
    out = AVOutput(video_emb=emb, audio_emb=torch.randn(4, 6), video_feat=emb, audio_feat=emb,
                   video_grid=torch.zeros(4, 1, 1, 1, 1), audio_grid=torch.zeros(4, 1, 1, 1))
    loss, logs = objective.compute(out, torch.arange(4))
    loss.backward()
    assert emb.grad is not None and float(emb.grad.abs().sum()) > 0
    assert params["video_expander.0.weight"].grad is not None
    assert {"invariance", "variance", "covariance", "std_video", "std_audio"} <= set(logs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_module_takes_half_precision_embeddings_of_an_autocast_forward(dtype: torch.dtype) -> None:
    """Under ``train.mixed_precision`` the model's embeddings are bf16/fp16, the expanders float32."""
    objective = OBJECTIVES["vicreg"].build(VICRegConfig(expander_dims=(16, 12)),
                                           ObjectiveContext(num_items=10, embed_dim=6))
    emb = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    grids = {"video_grid": torch.zeros(4, 1, 1, 1, 1), "audio_grid": torch.zeros(4, 1, 1, 1)}
    half = AVOutput(video_emb=emb.to(dtype), audio_emb=emb.flip(0).to(dtype), video_feat=emb, audio_feat=emb,
                    **grids)
    full = AVOutput(video_emb=emb.to(dtype).float(), audio_emb=emb.flip(0).to(dtype).float(), video_feat=emb,
                    audio_feat=emb, **grids)
    loss, _ = objective.compute(half, torch.arange(4))
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, objective.compute(full, torch.arange(4))[0])
