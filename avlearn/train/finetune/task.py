"""The fine-tuning task on the engine: cross-entropy of a classifier (binary cross-entropy for multi-label
targets), and its optimiser groups."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avlearn.models.classifier import AVClassifier, VideoClassifier
from avlearn.train.engine import StepOutput, Task
from avlearn.train.finetune.config import FinetuneConfig

__all__ = ["FinetuneTask", "param_groups"]

logger = logging.getLogger(__name__)


class FinetuneTask(Task):
    """Cross-entropy of a :class:`~avlearn.models.classifier.VideoClassifier` or
    :class:`~avlearn.models.classifier.AVClassifier` on labelled clips; the encoders frozen (eval mode)
    during the first ``warmup_classifier_epochs``. With ``targets`` (multi-label) the loss is the binary
    cross-entropy of every class (mean over clips and classes, as AST and CAV-MAE train on AudioSet).

    Shape of a batch (on ``device``, placed by the engine): ``video (B, C, T, H, W)``, ``label (B,)``,
    ``video_index (B,)``, with an ``AVClassifier`` ``audio (B, 1, F, T)``; ``targets (V, C)``: multi-hot
    targets of the training videos, indexed by ``video_index``.
    """

    def __init__(self, cfg: FinetuneConfig, model: VideoClassifier | AVClassifier, init: str,
                 targets: Tensor | None = None) -> None:
        self.cfg, self.model, self.init, self.net, self.targets = cfg, model, init, model, targets
        self.norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def step(self, batch: dict[str, Any], device: torch.device, epoch: int) -> StepOutput:
        label = batch["label"]
        frozen = epoch < self.cfg.warmup_classifier_epochs
        if self.cfg.freeze_bn:  # every step: the engine may switch the whole net back to train mode
            for norm in self.norms:
                norm.eval()
        logits = self.net(*(batch[k] for k in self.model.inputs), freeze_encoder=frozen)
        if self.targets is None:
            loss = F.cross_entropy(logits.float(), label)
            top1 = {"top1": (logits.detach().argmax(1) == label).float().mean()}
        else:
            target = self.targets.to(device)[batch["video_index"]]
            loss, top1 = F.binary_cross_entropy_with_logits(logits.float(), target), {}
        logs = {"loss": loss.detach(), **top1, "frozen": torch.tensor(float(frozen), device=device)}
        return StepOutput(loss, logs, torch.ones((), dtype=torch.bool, device=device), len(label))

    def checkpoint_state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "init": self.init}

    def outputs(self) -> list[str]:
        return ["results.json", "results.md", "confusion.png"]

    def load_checkpoint(self, state: dict[str, Any], path: Path) -> None:
        old = str(state.get("init", self.init))
        if not same_init(old, self.init):  # a warning: a run dir's newest checkpoint moves on
            logger.warning("resuming %s, fine-tuned from --init %s: --init %s is not used (pass --fresh "
                           "to start over from it)", path, old, self.init)
        self.model.load_state_dict(state["model"])


def param_groups(model: VideoClassifier | AVClassifier, lr: float,
                 encoder_lr_scale: float) -> list[dict[str, Any]]:
    """The optimiser's groups: the encoders at ``lr * encoder_lr_scale``, the classifier at ``lr`` (one
    group at scale 1, so that runs made before the option train as they did)."""
    if encoder_lr_scale == 1:
        return [{"params": list(model.parameters()), "lr": lr}]
    encoders = [p for n, p in model.named_parameters() if not n.startswith("classifier.")]
    return [{"params": encoders, "lr": lr * encoder_lr_scale},
            {"params": list(model.classifier.parameters()), "lr": lr}]


def same_init(a: str, b: str) -> bool:
    """Whether two ``--init`` sources name the same file (``scratch`` only equals itself)."""
    if "scratch" in (a, b):
        return a == b
    return Path(a).resolve() == Path(b).resolve()
