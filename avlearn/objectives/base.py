"""The one interface every pretraining objective implements, and what it is built from.

The training engine only ever calls these methods; it never asks which objective it holds:

* :meth:`Objective.compute` -- ``(loss, logs)`` of a batch's model outputs (no state change);
* :meth:`Objective.after_finite_step` -- state updates once the loss is known finite (memory
  banks: per micro-batch, after every process agreed the loss is finite);
* :meth:`Objective.on_epoch_start` -- per-epoch work (CMA recomputes its positive sets);
* ``state_dict`` / :meth:`Objective.load_objective_state` -- its state in run checkpoints;
* ``parameters()`` -- its own trainable parts (an expander head), optimised and checkpointed
  by the engine with the model's.

Each objective owns a typed config section (:attr:`Objective.config_cls`, a frozen dataclass),
chosen by ``objective.name`` through the registry :data:`avlearn.objectives.OBJECTIVES`, and
checks what it needs of the rest of the run itself (:meth:`Objective.check_run`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

if TYPE_CHECKING:
    from avlearn.models.av import AVOutput

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
    """

    epochs: int
    shifted_audio: float = 0.0


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
