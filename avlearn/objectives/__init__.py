"""Self-supervised objectives: pure functions on embeddings plus thin modules, each ``-> (loss, logs)``.

* :mod:`.avid` -- AVID cross-modal (and joint) instance discrimination against memory banks.
* :mod:`.cma` -- AVID-CMA: cross-modal-agreement positive sets over the same banks.
* :mod:`.infonce` -- in-batch symmetric cross-modal InfoNCE with negatives from all processes.
* :mod:`.memory_bank` -- the per-modality memory bank and negative sampling.
"""

from __future__ import annotations

from torch import nn

from .avid import AVIDLoss, avid_loss, estimate_partition, memory_discrimination_loss
from .cma import CMALoss, cma_loss, compute_positive_sets
from .infonce import InfoNCELoss, infonce_loss
from .memory_bank import MemoryBank, sample_excluding

__all__ = [
    "OBJECTIVES",
    "AVIDLoss",
    "CMALoss",
    "InfoNCELoss",
    "MemoryBank",
    "avid_loss",
    "cma_loss",
    "compute_positive_sets",
    "estimate_partition",
    "infonce_loss",
    "memory_discrimination_loss",
    "sample_excluding",
]

#: Objective modules by config name (a factory looks names up here and lists the keys on error).
OBJECTIVES: dict[str, type[nn.Module]] = {"avid": AVIDLoss, "cma": CMALoss, "infonce": InfoNCELoss}
