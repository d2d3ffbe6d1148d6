"""Self-supervised objectives: pure functions on embeddings plus thin modules, each ``-> (loss, logs)``.

* :mod:`.avid` -- AVID cross-modal (and joint) instance discrimination against memory banks.
* :mod:`.cma` -- AVID-CMA: cross-modal-agreement positive sets over the same banks.
* :mod:`.infonce` -- in-batch symmetric cross-modal InfoNCE with negatives from all processes.
* :mod:`.vicreg` -- cross-modal VICReg (no negatives: invariance, variance, covariance).
* :mod:`.cav_mae` -- CAV-MAE: masked reconstruction of both modalities plus a contrastive term; it
  drives the forward (token masks before the ViT encoders, the model's shared blocks, its decoder).
* :mod:`.memory_bank` -- the per-modality memory bank and negative sampling.
* :mod:`.localization` -- EZ-VSL's max-over-locations contrast of a localizer's maps; added to any
  of them by :class:`avlearn.localization.objective.WithLocalizer`.
* :mod:`.base` -- the :class:`Objective` interface the training engine calls.

Adding an objective: one file with its config dataclass and an :class:`Objective` subclass, and one
line in :data:`OBJECTIVES` (or ``OBJECTIVES.register(name, cls)`` from outside the package).
"""

from __future__ import annotations

from avlearn.registry import Registry

from .avid import AVIDConfig, AVIDLoss, avid_loss, estimate_partition, memory_discrimination_loss
from .base import Objective, ObjectiveContext, RunFacts
from .cav_mae import CAVMAEConfig, CAVMAELoss
from .cma import CMAConfig, CMALoss, cma_loss, compute_positive_sets
from .infonce import InfoNCEConfig, InfoNCELoss, infonce_loss
from .memory_bank import MemoryBank, sample_excluding
from .vicreg import VICRegConfig, VICRegLoss, vicreg_loss

__all__ = [
    "OBJECTIVES",
    "AVIDConfig",
    "AVIDLoss",
    "CAVMAEConfig",
    "CAVMAELoss",
    "CMAConfig",
    "CMALoss",
    "InfoNCEConfig",
    "InfoNCELoss",
    "MemoryBank",
    "Objective",
    "ObjectiveContext",
    "RunFacts",
    "VICRegConfig",
    "VICRegLoss",
    "avid_loss",
    "cma_loss",
    "compute_positive_sets",
    "estimate_partition",
    "infonce_loss",
    "memory_discrimination_loss",
    "sample_excluding",
    "vicreg_loss",
]

#: The registry: objectives by config name (``objective.name``); each class brings its config section.
#: An unknown name fails with the valid ones; registering a taken name is an error.
OBJECTIVES: Registry[type[Objective]] = Registry("objective", {
    "avid": AVIDLoss,
    "cav_mae": CAVMAELoss,
    "cma": CMALoss,
    "infonce": InfoNCELoss,
    "vicreg": VICRegLoss,
})
