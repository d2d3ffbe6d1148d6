"""A logistic regression on fixed features (multinomial, or one per class for multi-label targets): the
linear probe's classifier (``avlearn linear-probe``) and the start of LP-FT fine-tuning
(``avlearn finetune head_init=probe``)."""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avlearn.config import InvalidValue

__all__ = ["ClassifierConfig", "fit_linear"]


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """The linear classifier: ``lbfgs`` (full batch, ``steps`` iterations) or ``adam`` (``steps`` epochs)."""

    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    lr: float = 1.0
    weight_decay: float = 1e-3
    steps: int = 200
    batch_size: int = 256
    standardize: bool = True

    def __post_init__(self) -> None:
        allowed = {
            "lr": (self.lr > 0, "must be > 0"),
            "weight_decay": (self.weight_decay >= 0, "must be >= 0"),
            "steps": (self.steps >= 1, "must be >= 1"),
            "batch_size": (self.batch_size >= 1, "must be >= 1"),
        }
        for field, (ok, rule) in allowed.items():
            if not ok:
                raise InvalidValue(field, getattr(self, field), rule, "classifier")


def fit_linear(x: Tensor, y: Tensor, num_classes: int, cfg: ClassifierConfig, seed: int = 0) -> nn.Linear:
    """Logistic regression ``x (N, D) -> (N, C)`` with L2 weight decay on the weights.

    ``y (N,)`` class ids: multinomial (softmax cross-entropy). ``y (N, C)`` multi-hot: one binary
    logistic regression per class (sigmoid cross-entropy summed over the classes, mean over rows).
    """
    torch.manual_seed(seed)
    model = nn.Linear(x.shape[1], num_classes)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)

    def data_loss(logits: Tensor, yb: Tensor) -> Tensor:
        if yb.dim() == 2:
            return F.binary_cross_entropy_with_logits(logits, yb.float(), reduction="sum") / len(yb)
        return F.cross_entropy(logits, yb)

    def objective(xb: Tensor, yb: Tensor) -> Tensor:
        return data_loss(model(xb), yb) + 0.5 * cfg.weight_decay * model.weight.pow(2).sum()

    if cfg.optimizer == "lbfgs":
        opt = torch.optim.LBFGS(model.parameters(), lr=cfg.lr, max_iter=cfg.steps, history_size=20,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

        def closure() -> Tensor:
            opt.zero_grad()
            loss = objective(x, y)
            loss.backward()  # type: ignore[no-untyped-call]
            return loss

        opt.step(closure)  # type: ignore[no-untyped-call]
    else:
        adam = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        g = torch.Generator().manual_seed(seed)
        for _ in range(cfg.steps):
            for idx in torch.randperm(len(y), generator=g).split(cfg.batch_size):  # type: ignore[no-untyped-call]
                adam.zero_grad()
                objective(x[idx], y[idx]).backward()  # type: ignore[no-untyped-call]
                adam.step()
    return model
