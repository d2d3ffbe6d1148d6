"""The one interface every pretraining objective implements, and what it is built from.

The training engine only ever calls these methods; it never asks which objective it holds:

* :meth:`Objective.network` -- the module trained with the model's parameters, under DDP: the
  model itself, or the model with parts the objective trains with it (a localizer);
* :meth:`Objective.forward_loss` -- runs that network on a batch and returns ``(loss, logs, out)``;
  by default one forward of the model, then :meth:`Objective.compute`. An objective that must
  shape the forward itself (mask tokens before the encoders, run a joint layer) overrides it;
* :meth:`Objective.compute` -- ``(loss, logs)`` of a batch's model outputs (no state change);
* :meth:`Objective.after_finite_step` -- state updates once the loss is known finite (memory
  banks: per micro-batch, after every process agreed the loss is finite);
* :meth:`Objective.on_epoch_start` -- per-epoch work (CMA recomputes its positive sets);
* :meth:`Objective.checkpoint_state` / :meth:`Objective.load_checkpoint_state` -- its entries of
  run checkpoints: ``"objective"`` (its ``state_dict``, restored by
  :meth:`Objective.load_objective_state`), and those of the parts a wrapper adds;
* :meth:`Objective.export` -- files beside the exported encoders (a localizer's);
* ``parameters()`` -- its own trainable parts (an expander head); those not in
  :meth:`Objective.network` are optimised outside DDP, after the network's, and checkpointed by
  the engine with the model's.

Each objective owns a typed config section (:attr:`Objective.config_cls`, a frozen dataclass),
chosen by ``objective.name`` through the registry :data:`avlearn.objectives.OBJECTIVES`, and
checks what it needs of the rest of the run itself (:meth:`Objective.check_run`). A wrapper such
as :class:`avlearn.localization.objective.WithLocalizer` holds another objective and is an
objective itself: it overrides :meth:`Objective.network`, :meth:`Objective.forward_loss` and the
checkpoint and export hooks, and passes the rest on.

The contract of :meth:`Objective.forward_loss`: call ``net`` exactly once per batch (DDP
synchronises gradients per forward), as ``net(video, audio, audio_shifted=..., normalize=...)``
or with more keywords the objective's own :meth:`Objective.network` takes; return the model's
:class:`~avlearn.models.av.AVOutput` as ``out`` (the engine checks its embeddings are finite and
hands it to :meth:`Objective.after_finite_step`), and ``logs["loss"]``, the loss it returns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

if TYPE_CHECKING:
    from avlearn.models.av import AVModel, AVOutput
    from avlearn.models.registry import ModelConfig

__all__ = ["Objective", "ObjectiveContext", "RunFacts"]


@dataclasses.dataclass(frozen=True)
class ObjectiveContext:
    """What an objective is built from, besides its config section.

    Attributes:
        num_items: N, training videos (memory-bank rows; ``index`` values lie in ``[0, N)``).
        embed_dim: d, size of the model's joint embedding.
        seed: the run's seed (bank initialisation, identical on every process).
    """

    num_items: int
    embed_dim: int
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class RunFacts:
    """The parts of a run config an objective may need to check (:meth:`Objective.check_run`).

    Attributes:
        epochs: epochs of the run.
        shifted_audio: ``data.shifted_audio`` (fraction of clips with time-shifted same-video audio).
        model: the ``model:`` section (a :class:`~avlearn.models.registry.ModelConfig`; ``None``
            when unknown), for objectives that need particular encoders.
        localizer: whether ``localization.weight > 0`` wraps the objective with a localizer.
    """

    epochs: int
    shifted_audio: float = 0.0
    model: ModelConfig | None = None
    localizer: bool = False


class Objective(nn.Module):
    """Base class of the objectives; subclasses set :attr:`config_cls` and implement :meth:`build`
    and :meth:`compute`.

    Class attributes:
        config_cls: the frozen dataclass of the objective's config section.
        normalize_embeddings: whether the model's projected embeddings are L2-normalised for it.
        uses_shifted_audio: whether it scores ``AVOutput.audio_shifted_emb`` (``data.shifted_audio``).
    """

    config_cls: ClassVar[type[Any]]
    normalize_embeddings: ClassVar[bool] = True
    uses_shifted_audio: ClassVar[bool] = False

    @classmethod
    def build(cls, cfg: Any, ctx: ObjectiveContext) -> Objective:
        """The objective described by its config section ``cfg`` (an instance of ``config_cls``)."""
        raise NotImplementedError

    @classmethod
    def check_run(cls, cfg: Any, run: RunFacts) -> None:
        """Raise ``ValueError`` naming the keys when the run asks what this objective cannot do."""
        if run.shifted_audio > 0 and not cls.uses_shifted_audio:
            raise ValueError(
                f"data.shifted_audio={run.shifted_audio} (shifted same-video audio as negatives) is used by "
                f"in-batch objectives only, not {cls.__name__}; set data.shifted_audio=0 or "
                "objective.name=infonce"
            )

    def network(self, model: AVModel) -> nn.Module:
        """The module the engine trains with the model under DDP and :meth:`forward_loss` runs:
        ``model`` itself by default. Its parameters come first in the optimiser, in its order."""
        return model

    def forward_loss(self, net: Callable[..., Any], batch: Mapping[str, Tensor]
                     ) -> tuple[Tensor, dict[str, Tensor], AVOutput]:
        """Run ``net`` (:meth:`network`'s module, DDP-wrapped, or the view a wrapper objective
        passes) on one batch and score it: ``(loss, logs, out)``; no state changes.

        Shape: ``batch["video"] (B, C, T, H, W)``, ``batch["audio"] (B, 1, F, T)``,
        ``batch["index"] (B,)``, optionally ``batch["audio_shifted"] (B, 1, F, T)``; the batch is
        on the device already. ``out`` is the model's :class:`~avlearn.models.av.AVOutput`.
        """
        out: AVOutput = net(batch["video"], batch["audio"], audio_shifted=batch.get("audio_shifted"),
                            normalize=self.normalize_embeddings)
        loss, logs = self.compute(out, batch["index"])
        return loss, logs, out

    def compute(self, out: AVOutput, index: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss and logs of one batch; no state changes.

        Shape: ``out.video_emb, out.audio_emb (B, d)``, ``index (B,)`` dataset indices -> scalar.
        """
        raise NotImplementedError

    def after_finite_step(self, out: AVOutput, index: Tensor) -> None:
        """Called per micro-batch once every process's loss is known finite (default: nothing)."""

    def on_epoch_start(self, epoch: int, first_batch: bool = True) -> str | None:
        """Called when an epoch's batches start (``first_batch``: at its first batch, not a mid-epoch
        resume); returns an event name to log, or None."""
        return None

    def load_objective_state(self, state: Mapping[str, Any], *, partial: bool = False) -> None:
        """Restore a checkpoint's ``state_dict``; ``partial``: only what the state holds (``init_from``)."""
        self.load_state_dict(state, strict=not partial)

    def checkpoint_state(self) -> dict[str, Any]:
        """Its entries of a run checkpoint, beside the engine's and the model's."""
        return {"objective": self.state_dict()}

    def load_checkpoint_state(self, state: Mapping[str, Any], where: str, *, partial: bool = False) -> None:
        """Restore its entries of the run checkpoint ``state`` (read from ``where``, for messages).

        ``partial`` (``objective.init_from``): only what the checkpoint holds, e.g. the banks of an
        AVID run for CMA; otherwise (resuming) every entry must be there.
        """
        if not partial or "objective" in state:
            self.load_objective_state(state["objective"], partial=partial)

    def export(self, model: AVModel, encoders: Path) -> None:
        """Write what it trained besides the model next to the exported ``encoders`` file
        (default: nothing; a localizer wrapper writes its localizer)."""
