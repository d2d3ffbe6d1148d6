from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from avlearn.objectives.localization import localization_loss, mil_scores


def _inputs(b: int, d: int, t: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    grid = F.normalize(torch.randn(b, d, t, h, w, generator=gen, dtype=torch.float64), dim=1)
    audio = F.normalize(torch.randn(b, d, generator=gen, dtype=torch.float64), dim=1)
    return grid, audio


def _reference(grid: torch.Tensor, audio: torch.Tensor, temperature: float, top: int = 1) -> float:
    """Plain loops: s[i][j] = mean of the ``top`` largest <grid_i(loc), audio_j> (1: the max);
    mean of both CEs."""
    b, d, t, h, w = grid.shape

    def score(i: int, j: int) -> float:
        dots = sorted((sum(float(grid[i, k, tt, y, x]) * float(audio[j, k]) for k in range(d))
                       for tt in range(t) for y in range(h) for x in range(w)), reverse=True)
        return sum(dots[:top]) / top

    s = [[score(i, j) for j in range(b)] for i in range(b)]

    def ce(row: list[float], target: int) -> float:
        logits = [v / temperature for v in row]
        top = max(logits)
        return -(logits[target] - top - math.log(sum(math.exp(v - top) for v in logits)))

    v2a = sum(ce(s[i], i) for i in range(b)) / b
    a2v = sum(ce([s[j][i] for j in range(b)], i) for i in range(b)) / b
    return (v2a + a2v) / 2


@pytest.mark.parametrize(
    ("b", "d", "shape", "temperature"),
    [(2, 3, (1, 2, 2), 0.1), (3, 4, (2, 1, 3), 0.03), (5, 2, (1, 3, 3), 1.0)],
)
def test_equals_naive_reference(b: int, d: int, shape: tuple[int, int, int], temperature: float) -> None:
    grid, audio = _inputs(b, d, *shape, seed=b)
    loss, logs = localization_loss(grid, audio, temperature)
    assert loss.item() == pytest.approx(_reference(grid, audio, temperature), rel=1e-9)
    assert set(logs) >= {"loss", "loss_v2a", "loss_a2v", "pos_sim", "neg_sim", "acc_v2a", "acc_a2v"}
    scores = mil_scores(grid, audio)
    assert scores.shape == (b, b)


@pytest.mark.parametrize(("fraction", "top"), [(0.25, 2), (0.4, 3), (1.0, 6)])
def test_top_fraction_means_the_best_locations(fraction: float, top: int) -> None:
    grid, audio = _inputs(4, 3, 1, 2, 3, seed=7)  # 6 locations: ceil(fraction * 6) of them
    loss, _ = localization_loss(grid, audio, 0.1, top_fraction=fraction)
    assert loss.item() == pytest.approx(_reference(grid, audio, 0.1, top), rel=1e-9)
    assert loss.item() != pytest.approx(_reference(grid, audio, 0.1, 1), rel=1e-6)
    with pytest.raises(ValueError, match="top_fraction"):
        localization_loss(grid, audio, 0.1, top_fraction=1.5)


def test_decreases_under_optimisation() -> None:
    grid, audio = _inputs(4, 8, 1, 3, 3, seed=0)
    grid = grid.float().requires_grad_(True)
    audio = audio.float().requires_grad_(True)
    opt = torch.optim.SGD([grid, audio], lr=0.5)
    losses = []
    for _ in range(10):
        loss, _ = localization_loss(F.normalize(grid, dim=1), F.normalize(audio, dim=1), 0.1)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.8 * losses[0]


def test_bad_arguments_raise() -> None:
    grid, audio = _inputs(3, 4, 1, 2, 2, seed=4)
    with pytest.raises(ValueError, match="grid_emb"):
        localization_loss(grid[:, :, 0], audio)
    with pytest.raises(ValueError, match="audio_emb"):
        localization_loss(grid, audio[:, None])
    with pytest.raises(ValueError, match="agree"):
        localization_loss(grid, audio[:2])
    with pytest.raises(ValueError, match="normalised"):
        localization_loss(grid * 2, audio)
    with pytest.raises(ValueError, match="at least 2"):
        localization_loss(grid[:1], audio[:1])
    with pytest.raises(ValueError, match="temperature"):
        localization_loss(grid, audio, 0.0)
