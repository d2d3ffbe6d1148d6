"""The floor of a learned localizer's maps: how well a wrong sound matches a clip, measured on clips."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from avlearn.localization.learned import Learned, localizer_audio, localizer_grid
from avlearn.models.av import AVModel
from avlearn.objectives.localization import mil_scores

__all__ = ["calibrate_floor"]


@torch.no_grad()
def calibrate_floor(model: AVModel, learned: Learned, batches: Iterable[dict[str, Tensor]],
                    max_clips: int = 256) -> float:
    """The cosine another clip's sound reaches at a clip's best location, averaged over pairs.

    For each batch of ``video (B, C, T, H, W)`` and ``audio (B, 1, F, T)`` clips (unlabelled,
    e.g. the training set, centre-cropped), every clip is scored with every *other* clip's sound
    by its best location (the max of its map, :func:`~avlearn.objectives.localization.mil_scores`);
    the floor is the mean of those ``B (B - 1)`` scores over up to ``max_clips`` clips. A location
    below it matches this sound no better than a wrong sound typically matches anything, so a
    floored map is zero there: it marks the source's extent instead of half the frame (the cIoU
    protocol predicts the pixels above the map's median, or its non-zero pixels when more than
    half of the map is zero). Runs ``model`` and the localizer in ``eval()`` mode.
    """
    localizer, spec = learned
    was = model.training, localizer.training
    model.eval()
    localizer.eval()
    total, count, seen = 0.0, 0, 0
    try:
        device = next(model.parameters()).device
        for batch in batches:
            video, audio = batch["video"].to(device), batch["audio"].to(device)
            if video.shape[0] < 2:
                continue
            out = model(video, audio, video_stages=bool(spec.grid_stage))
            grid_emb, audio_emb = localizer.project(localizer_grid(out, spec.grid_stage),
                                                    localizer_audio(out, spec.audio_input))
            scores = mil_scores(grid_emb, audio_emb).float()  # (B, B): clip i, sound j
            wrong = ~torch.eye(scores.shape[0], dtype=torch.bool, device=scores.device)
            total += float(scores[wrong].sum())
            count += int(wrong.sum())
            seen += video.shape[0]
            if seen >= max_clips:
                break
    finally:
        model.train(was[0])
        localizer.train(was[1])
    if count == 0:
        raise ValueError("calibrate_floor needs batches of at least 2 clips")
    return total / count
