"""Sound localization: similarity maps of audio with video feature grids, their training objective,
the published cIoU / AUC evaluation, and heatmap overlays."""

from avlearn.localization.metrics import LocalizationResult, evaluate_maps
from avlearn.localization.module import AVLocalizer, similarity_map, upsample_map
from avlearn.objectives.localization import LocalizationLoss, LocalizationObjectiveConfig, localization_loss

__all__ = [
    "AVLocalizer",
    "LocalizationLoss",
    "LocalizationObjectiveConfig",
    "LocalizationResult",
    "evaluate_maps",
    "localization_loss",
    "similarity_map",
    "upsample_map",
]
