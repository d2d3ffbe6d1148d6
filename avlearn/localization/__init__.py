"""Sound localization: similarity maps of audio with video feature grids, a learned localizer trained
with the encoders around any objective, its file, the published cIoU / AUC evaluation, and
heatmap overlays.

* :mod:`.module` -- :class:`AVLocalizer` (post hoc or learned projections) and the maps.
* :mod:`.learned` -- what a learned localizer is built from and reads (:class:`LocalizerSpec`).
* :mod:`.objective` -- :class:`WithLocalizer`, the objective wrapper that trains one, and its
  config section :class:`LocalizationConfig`.
* :mod:`.export` -- its file next to the encoders; :mod:`.calibration` -- the floor of its maps.
"""

from avlearn.localization.metrics import LocalizationResult, evaluate_maps
from avlearn.localization.module import AVLocalizer, similarity_map, upsample_map
from avlearn.localization.objective import LocalizationConfig, WithLocalizer
from avlearn.objectives.localization import localization_loss

__all__ = [
    "AVLocalizer",
    "LocalizationConfig",
    "LocalizationResult",
    "WithLocalizer",
    "evaluate_maps",
    "localization_loss",
    "similarity_map",
    "upsample_map",
]
