"""A learned localizer: what it is built from (:class:`LocalizerSpec`), what it reads of the model's
output (a video grid, an audio vector) and the maps it makes.

A learned localizer reads the video encoder's last grid, one stage's finer grid, or a hypercolumn of
several stages (:func:`localizer_grid`), and the audio encoder's feature or the audio embedding
(:func:`localizer_audio`). Training it with the encoders: :mod:`avlearn.localization.objective`;
its file: :mod:`avlearn.localization.export`; the floor of its maps:
:mod:`avlearn.localization.calibration`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from avlearn.localization.module import AVLocalizer
from avlearn.models.av import AVModel, AVOutput

__all__ = [
    "AudioInput",
    "Learned",
    "LocalizerSpec",
    "localization_maps",
    "localizer_audio",
    "localizer_grid",
    "needs_stages",
    "stage_channels",
    "stage_names",
]

AudioInput = Literal["feat", "emb"]


@dataclasses.dataclass(frozen=True)
class LocalizerSpec:
    """What builds a learned localizer and what it reads.

    Attributes:
        grid_dim: channels ``C`` of the video grid ``(B, C, T', H', W')``.
        audio_dim: size of the audio vector it reads.
        embed_dim: size of its joint space.
        audio_input: ``feat`` (``AVOutput.audio_feat``) or ``emb`` (``AVOutput.audio_emb``).
        grid_stage: ``""``: the video encoder's last grid (``AVOutput.video_grid``); a stage name
            (e.g. ``layer3``, stride 8 in R(2+1)D): that stage's output, a finer grid whose cells
            see less of the frame; stages joined by ``+`` (``layer2+layer3``): the finest stage's
            grid with the coarser stages' channels resized onto it (:func:`localizer_grid`).
        floor: ``None``: maps are cosine similarities; a number: maps are ``max(cosine - floor, 0)``,
            zero wherever a location matches the sound no better than another clip's sound matches
            the best location of a clip (:func:`~avlearn.localization.calibration.calibrate_floor`).
    """

    grid_dim: int
    audio_dim: int
    embed_dim: int
    audio_input: AudioInput = "feat"
    grid_stage: str = ""
    floor: float | None = None

    def __post_init__(self) -> None:
        if self.audio_input not in ("feat", "emb"):
            raise ValueError(f"audio_input must be 'feat' or 'emb', got {self.audio_input!r}")

    @classmethod
    def for_model(cls, model: AVModel, embed_dim: int, audio_input: AudioInput = "feat",
                  grid_stage: str = "") -> LocalizerSpec:
        """The spec that fits ``model``'s grid (or ``grid_stage``'s) and audio sizes."""
        grid_dim = (stage_channels(model, grid_stage) if grid_stage
                    else int(getattr(model.video_encoder, "grid_dim", 0)))
        audio_feat_dim = int(getattr(model.audio_encoder, "out_dim", 0))
        audio_dim = audio_feat_dim if audio_input == "feat" else model.embed_dim
        if grid_dim < 1:
            raise ValueError("the model's video encoder has no grid_dim; build the localizer by hand")
        if audio_dim < 1:
            raise ValueError("the model's audio head has no out_dim; use audio_input='feat'")
        return cls(grid_dim, audio_dim, embed_dim, audio_input, grid_stage)

    def build(self) -> AVLocalizer:
        return AVLocalizer.learned(self.grid_dim, self.audio_dim, self.embed_dim)


Learned = tuple[AVLocalizer, LocalizerSpec]


def stage_names(grid_stage: str) -> list[str]:
    """The stages of a ``grid_stage``: ``"layer3"`` -> ``["layer3"]``, ``"layer2+layer3"`` -> both."""
    return [name.strip() for name in grid_stage.split("+")] if grid_stage else []


def stage_channels(model: AVModel, stage: str) -> int:
    """Channels of the video encoder's stage ``stage``, as its contract states them
    (:mod:`avlearn.models.contract`); for several stages joined by ``+``, the sum of their widths."""
    if "+" in stage:
        return sum(stage_channels(model, name) for name in stage_names(stage))
    stages = {s.name: s for s in getattr(model.video_encoder, "stages", ())}
    if stage not in stages:
        raise ValueError(f"localization.grid_stage: the video encoder has no stage {stage!r}; "
                         f"valid: {', '.join(stages) or 'none'}, several joined by '+' "
                         f"(e.g. layer2+layer3), or '' for the last grid")
    return int(stages[stage].channels)


def localizer_grid(out: AVOutput, grid_stage: str = "") -> Tensor:
    """The grid a learned localizer reads: ``out.video_grid``, ``out.video_stages[grid_stage]``, or
    for ``grid_stage = "a+b"`` a hypercolumn grid: each stage resized (trilinear, half-pixel
    centres) to the finest stage's ``(T', H', W')`` and the channels concatenated, so every cell
    of the fine grid also sees its coarser stages' wider context.

    Shape: ``(B, C, T', H', W')``; a hypercolumn's ``C`` is the sum of its stages' channels.
    """
    if not grid_stage:
        return out.video_grid
    names = stage_names(grid_stage)
    missing = [name for name in names if name not in out.video_stages]
    if missing:
        raise ValueError(f"the localizer reads video stage {missing[0]!r}: call the model with "
                         "video_stages=True (see needs_stages)")
    grids = [out.video_stages[name] for name in names]
    if len(grids) == 1:
        return grids[0]
    size = max((tuple(g.shape[-3:]) for g in grids), key=lambda s: s[0] * s[1] * s[2])
    resized = [g if tuple(g.shape[-3:]) == size else
               F.interpolate(g, size=size, mode="trilinear", align_corners=False) for g in grids]
    return torch.cat(resized, dim=1)


def needs_stages(learned: Learned | None) -> bool:
    """Whether the model must return its video stages for ``learned`` (a finer-grid localizer)."""
    return learned is not None and bool(learned[1].grid_stage)


def localizer_audio(out: AVOutput, audio_input: AudioInput) -> Tensor:
    """The audio vector a learned localizer reads: ``(B, D_a)`` feature or ``(B, d)`` embedding."""
    return out.audio_feat if audio_input == "feat" else out.audio_emb


def localization_maps(model: AVModel, out: AVOutput, learned: Learned | None = None) -> Tensor:
    """Cosine maps of a batch: the learned localizer's, or post hoc with the model's video head.

    Shape: ``out.video_grid (B, C, T', H', W') -> (B, T', H', W')`` (a localizer with a
    ``grid_stage`` reads that stage's grid: ``out`` must come from ``model(..., video_stages=True)``,
    see :func:`needs_stages`). Put ``model`` (and the localizer) in ``eval()`` mode first.
    """
    if learned is None:
        return AVLocalizer.posthoc(model)(out.video_grid, out.audio_emb)  # type: ignore[no-any-return]
    localizer, spec = learned
    grid = localizer_grid(out, spec.grid_stage)
    maps: Tensor = localizer(grid, localizer_audio(out, spec.audio_input))
    return maps if spec.floor is None else (maps - spec.floor).clamp_min(0)
