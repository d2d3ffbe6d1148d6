"""A learned localizer trained with the encoders: the module that trains it, its file next to the encoders.

A pretraining run with ``localization.weight > 0`` trains an :meth:`AVLocalizer.learned` localizer
together with the :class:`AVModel` (:class:`AVModelWithLocalizer`, one module for Accelerate/DDP)
and exports it next to the encoders: ``encoders.safetensors`` -> ``encoders.localizer.safetensors``
(:func:`localizer_path`). The encoders file keeps only :class:`AVModel`'s keys, so every loader
of encoders reads it as before; ``avlearn localize`` and ``avlearn evaluate localization`` pick up
the localizer file when it exists (:func:`find_localizer`) and fall back to the post hoc mode.

The localizer file is safetensors (or a ``weights_only`` torch file for ``.pt``) with keys
``video_proj.*`` / ``audio_proj.*`` and metadata ``format``, ``grid_dim``, ``audio_dim``,
``embed_dim``, ``audio_input`` (``feat``: the localizer reads ``AVOutput.audio_feat``;
``emb``: ``AVOutput.audio_emb``) and ``grid_stage`` (empty: the encoder's last grid; a stage name
such as ``layer3``: that stage's finer grid, ``AVOutput.video_stages``; stages joined by ``+``,
e.g. ``layer2+layer3``: their hypercolumn grid, :func:`localizer_grid`; files without it read
the last grid) and ``floor`` (empty: the maps are cosines; a number ``f``: the maps are
``max(cosine - f, 0)``, see :func:`calibrate_floor`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avlearn.localization.module import AVLocalizer
from avlearn.models.av import AVModel, AVOutput
from avlearn.models.checkpoint import CheckpointError, load_state_into, read_safetensors, write_safetensors

__all__ = [
    "AVModelWithLocalizer",
    "AudioInput",
    "Learned",
    "LocalizedOutput",
    "LocalizerSpec",
    "calibrate_floor",
    "find_localizer",
    "load_localizer",
    "localization_maps",
    "localizer_audio",
    "localizer_grid",
    "localizer_path",
    "needs_stages",
    "resolve_localizer",
    "save_localizer",
    "stage_channels",
    "stage_names",
]

FORMAT = "avlearn-localizer-v1"
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
            the best location of a clip (:func:`calibrate_floor`).
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


@dataclasses.dataclass
class LocalizedOutput:
    """:class:`AVModelWithLocalizer`'s output.

    Attributes:
        av: the model's :class:`AVOutput`.
        grid_emb: projected, L2-normalised grid ``(B, D, T', H', W')``.
        audio_emb: projected, L2-normalised audio ``(B, D)``.
    """

    av: AVOutput
    grid_emb: Tensor
    audio_emb: Tensor


class AVModelWithLocalizer(nn.Module):
    """An :class:`AVModel` and a learned :class:`AVLocalizer` as one module (for Accelerate/DDP).

    Shape:
        ``forward(video (B, C, T, H, W), audio (B, 1, F, T)) ->`` :class:`LocalizedOutput`.
    """

    def __init__(self, model: AVModel, localizer: AVLocalizer, audio_input: AudioInput = "feat",
                 grid_stage: str = "") -> None:
        super().__init__()
        self.model = model
        self.localizer = localizer
        self.audio_input: AudioInput = audio_input
        self.grid_stage = grid_stage

    def forward(self, video: Tensor, audio: Tensor, audio_shifted: Tensor | None = None,
                normalize: bool = True) -> LocalizedOutput:
        out: AVOutput = self.model(video, audio, normalize=normalize, audio_shifted=audio_shifted,
                                   video_stages=bool(self.grid_stage))
        grid = localizer_grid(out, self.grid_stage)
        grid_emb, audio_emb = self.localizer.project(grid, localizer_audio(out, self.audio_input))
        return LocalizedOutput(out, grid_emb, audio_emb)


def localizer_path(encoders: str | Path) -> Path:
    """Where the localizer of an encoders file lives: ``x.safetensors`` -> ``x.localizer.safetensors``."""
    p = Path(encoders)
    return p.with_name(f"{p.stem}.localizer{p.suffix or '.pt'}")


def find_localizer(encoders: str | Path) -> Path | None:
    """The localizer file exported with ``encoders``, or ``None`` (then use the post hoc mode)."""
    path = localizer_path(encoders)
    return path if path.is_file() else None


def save_localizer(localizer: AVLocalizer, spec: LocalizerSpec, path: str | Path) -> Path:
    """Write a learned localizer and its :class:`LocalizerSpec` (format by suffix, as the encoders)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in localizer.state_dict().items()}
    meta = {"format": FORMAT, **{k: str(v) for k, v in dataclasses.asdict(spec).items()}}
    if path.suffix == ".safetensors":
        write_safetensors(state, path, meta)
    else:
        spec_json = json.dumps(dataclasses.asdict(spec))
        torch.save({"format": FORMAT, "spec": spec_json, "state_dict": state}, path)
    return path


def load_localizer(path: str | Path) -> tuple[AVLocalizer, LocalizerSpec]:
    """Read a file written by :func:`save_localizer`. Raises :class:`CheckpointError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"localizer file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            state, meta = read_safetensors(path)
            if meta.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not an avlearn localizer (expected format '{FORMAT}')")
            floor = meta.get("floor", "None")
            spec = LocalizerSpec(int(meta["grid_dim"]), int(meta["audio_dim"]), int(meta["embed_dim"]),
                                 meta["audio_input"], meta.get("grid_stage", ""),  # type: ignore[arg-type]
                                 None if floor in ("", "None") else float(floor))
        else:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(payload, dict) or payload.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not an avlearn localizer (expected format '{FORMAT}')")
            spec = LocalizerSpec(**json.loads(payload["spec"]))
            state = dict(payload["state_dict"])
    except (KeyError, ValueError, TypeError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{path}: bad localizer metadata ({err}); re-export it") from None
    localizer = spec.build()
    load_state_into(localizer, state, "", str(path))
    return localizer, spec


Learned = tuple[AVLocalizer, LocalizerSpec]


def resolve_localizer(encoders: str | Path, choice: str = "auto") -> Learned | None:
    """The localizer to use with an encoders file: ``auto`` (its exported localizer when there is
    one, else post hoc), ``posthoc`` (``None``), or the path of a localizer file."""
    if choice == "posthoc":
        return None
    if choice == "auto":
        found = find_localizer(encoders)
        return None if found is None else load_localizer(found)
    return load_localizer(choice)


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
    from avlearn.objectives.localization import mil_scores

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
