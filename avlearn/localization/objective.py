"""A learned localizer trained with the encoders, around any objective (:class:`WithLocalizer`).

A pretraining run with ``localization.weight > 0`` (:class:`LocalizationConfig`) wraps its
objective: the model and an :meth:`AVLocalizer.learned
<avlearn.localization.module.AVLocalizer.learned>` localizer train as one module
(:class:`AVModelWithLocalizer`, what DDP wraps), and the loss of a batch is the objective's plus
``weight *`` :func:`~avlearn.objectives.localization.localization_loss` of the localizer's
projections of the same forward (logged as ``loc/*``; ``objective_loss`` is the objective's own).
The run checkpoint holds the localizer under ``"localizer"`` beside ``"model"`` and the wrapped
objective's ``"objective"``; the localizer is exported next to the encoders
(:func:`~avlearn.localization.export.localizer_path`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from torch import Tensor, nn

from avlearn.config import ConfigError
from avlearn.localization.calibration import calibrate_floor
from avlearn.localization.export import localizer_path, save_localizer
from avlearn.localization.learned import AudioInput, LocalizerSpec, localizer_audio, localizer_grid
from avlearn.localization.module import AVLocalizer
from avlearn.models.av import AVModel, AVOutput
from avlearn.objectives.base import Objective
from avlearn.objectives.localization import check_top_fraction, localization_loss

__all__ = ["AVModelWithLocalizer", "LocalizationConfig", "LocalizedOutput", "WithLocalizer"]

logger = logging.getLogger(__name__)

#: Clips to measure a localizer's map floor on (``None``: export without a floor), made on demand.
FloorClips = Callable[[], Iterable[dict[str, Tensor]] | None]


@dataclasses.dataclass(frozen=True)
class LocalizationConfig:
    """A sound localizer trained with the encoders (off while ``weight`` is 0): the
    ``localization:`` section of a pretraining config.

    When on, :meth:`wrap` puts the objective in a :class:`WithLocalizer`, which adds ``weight *``
    :func:`avlearn.objectives.localization.localization_loss` (EZ-VSL's max-over-locations
    contrast) of an :meth:`AVLocalizer.learned <avlearn.localization.module.AVLocalizer.learned>`
    localizer to the objective's loss; the localizer is checkpointed with the model and exported
    next to the encoders (see :func:`avlearn.localization.export.localizer_path`).

    Attributes:
        weight: factor on the localization loss (0: no localizer, the run is unchanged).
        temperature: softmax temperature of the localization loss (EZ-VSL: 0.03).
        embed_dim: size of the localizer's joint space.
        audio_input: what the localizer's audio projection reads: ``feat`` (the audio encoder's
            pooled feature ``AVOutput.audio_feat``) or ``emb`` (the projected ``audio_emb``).
        grid_stage: the video grid it maps: ``""`` the encoder's last grid (stride 16 in
            R(2+1)D), a stage name such as ``layer3`` (stride 8: a 2x finer map whose cells
            see less of the frame), or stages joined by ``+`` such as ``layer2+layer3`` (a
            hypercolumn: layer2's 4x finer grid, each cell with layer3's wider view too).
        top_fraction: how a clip's locations score a sound in the loss: 0 their max (EZ-VSL),
            ``f`` in (0, 1] the mean of the best ``f`` of them (the whole object is pulled
            towards its sound; see :func:`~avlearn.objectives.localization.mil_scores`).
        floor: ``none``: the exported localizer's maps are cosines; ``wrong_sound``: after
            training, the mean cosine another clip's sound reaches at a clip's best location is
            measured on centre crops of the training clips and stored with the localizer, whose
            maps are then ``max(cosine - floor, 0)``: zero where a location matches the sound no
            better than a wrong sound (see :func:`~avlearn.localization.calibration.calibrate_floor`).
    """

    weight: float = 0.0
    temperature: float = 0.03
    embed_dim: int = 64
    audio_input: Literal["feat", "emb"] = "feat"
    grid_stage: str = ""
    top_fraction: float = 0.0
    floor: Literal["none", "wrong_sound"] = "none"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ConfigError(f"localization.weight must be >= 0 (0 = off), got {self.weight}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"localization.temperature must be > 0, got {self.temperature}")
        if self.embed_dim < 1:
            raise ConfigError(f"localization.embed_dim must be >= 1, got {self.embed_dim}")
        if not (math.isfinite(self.top_fraction) and 0 <= self.top_fraction <= 1):
            raise ConfigError(f"localization.top_fraction must be in [0, 1] (0: the max), "
                              f"got {self.top_fraction}")
        if self.audio_input not in ("feat", "emb"):
            raise ConfigError(f"localization.audio_input must be 'feat' or 'emb', got {self.audio_input!r}")
        if self.floor not in ("none", "wrong_sound"):
            raise ConfigError(f"localization.floor must be 'none' or 'wrong_sound', got {self.floor!r}")

    @property
    def enabled(self) -> bool:
        return self.weight > 0

    def wrap(self, objective: Objective, model: AVModel, floor_clips: FloorClips | None = None) -> Objective:
        """``objective`` with a new learned localizer for ``model`` (:class:`WithLocalizer`), or
        ``objective`` itself while ``weight`` is 0. ``floor_clips``: what ``floor=wrong_sound``
        is measured on at export. Raises :class:`~avlearn.config.ConfigError` on a bad ``grid_stage``.
        """
        if not self.enabled:
            return objective
        try:
            spec = LocalizerSpec.for_model(model, self.embed_dim, self.audio_input, self.grid_stage)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        return WithLocalizer(objective, spec.build(), spec, weight=self.weight, temperature=self.temperature,
                             top_fraction=self.top_fraction,
                             floor_clips=floor_clips if self.floor == "wrong_sound" else None)


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
    """A model and a learned :class:`AVLocalizer` as one module (for Accelerate/DDP).

    ``model``: an :class:`AVModel` or a module called like one, returning its :class:`AVOutput`.

    Shape:
        ``forward(video (B, C, T, H, W), audio (B, 1, F, T)) ->`` :class:`LocalizedOutput`.
    """

    def __init__(self, model: nn.Module, localizer: AVLocalizer, audio_input: AudioInput = "feat",
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


class WithLocalizer(Objective):
    """``objective``'s loss plus ``weight *`` the localization loss of ``localizer`` on the same forward.

    Args:
        objective: the objective it wraps; it drives the forward (:meth:`Objective.forward_loss`)
            and keeps its checkpoint entries, logs and state updates.
        localizer: the learned localizer (:meth:`LocalizerSpec.build`), trained in
            :meth:`network` with the model.
        spec: what ``localizer`` was built from and reads (grid stage, audio input).
        weight, temperature, top_fraction: of :func:`~avlearn.objectives.localization.localization_loss`.
        floor_clips: clips to measure the exported maps' floor on (:func:`calibrate_floor`);
            ``None``: export the localizer without a floor.

    Logs: the objective's, with ``loss`` the total and ``objective_loss`` the objective's own, and
    the localization loss's as ``loc/<key>``.
    """

    config_cls: ClassVar[type[Any]] = LocalizationConfig

    def __init__(self, objective: Objective, localizer: AVLocalizer, spec: LocalizerSpec, *,
                 weight: float = 1.0, temperature: float = 0.03, top_fraction: float = 0.0,
                 floor_clips: FloorClips | None = None) -> None:
        super().__init__()
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"WithLocalizer: weight must be >= 0, got {weight}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"WithLocalizer: temperature must be > 0, got {temperature}")
        check_top_fraction(top_fraction)
        self.inner = objective
        self.localizer = localizer  # trained in network(): outside this objective's own parameters
        self.spec = spec
        self.weight, self.temperature, self.top_fraction = weight, temperature, top_fraction
        self.floor_clips = floor_clips

    def network(self, model: AVModel) -> nn.Module:
        return AVModelWithLocalizer(self.inner.network(model), self.localizer, self.spec.audio_input,
                                    self.spec.grid_stage)

    def forward_loss(self, net: Callable[..., Any], batch: Mapping[str, Tensor]
                     ) -> tuple[Tensor, dict[str, Tensor], AVOutput]:
        """The wrapped objective runs ``net`` (an :class:`AVModelWithLocalizer`) and sees the model's
        output; the localizer's projections of that same forward add the localization loss."""
        seen: list[LocalizedOutput] = []

        def model_view(*args: Any, **kwargs: Any) -> AVOutput:
            seen.append(net(*args, **kwargs))
            return seen[-1].av

        loss, logs, out = self.inner.forward_loss(model_view, batch)
        if len(seen) != 1:
            raise RuntimeError(f"{type(self.inner).__name__}.forward_loss ran the network {len(seen)} "
                               "times; it must run it once per batch")
        loc_loss, loc_logs = localization_loss(seen[0].grid_emb, seen[0].audio_emb, self.temperature,
                                               self.top_fraction)
        logs = {**logs, "objective_loss": logs["loss"], **{f"loc/{k}": v for k, v in loc_logs.items()}}
        loss = loss + self.weight * loc_loss
        logs["loss"] = loss.detach()
        return loss, logs, out

    def compute(self, out: AVOutput, index: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError("WithLocalizer scores the localizer's projections of the forward: "
                                  "call forward_loss")

    def after_finite_step(self, out: AVOutput, index: Tensor) -> None:
        self.inner.after_finite_step(out, index)

    def on_epoch_start(self, epoch: int, first_batch: bool = True) -> str | None:
        return self.inner.on_epoch_start(epoch, first_batch)

    def load_objective_state(self, state: Mapping[str, Any], *, partial: bool = False) -> None:
        self.inner.load_objective_state(state, partial=partial)

    def checkpoint_state(self) -> dict[str, Any]:
        return {"localizer": self.localizer.state_dict(), **self.inner.checkpoint_state()}

    def load_checkpoint_state(self, state: Mapping[str, Any], where: str, *, partial: bool = False) -> None:
        if "localizer" in state:
            self.localizer.load_state_dict(state["localizer"])
        elif not partial:
            raise ValueError(
                f"{where} was saved without a localizer but localization.weight={self.weight}; keep the "
                "run's setting, start a new run_dir, or pass --fresh with objective.init_from to start "
                "from its weights"
            )
        self.inner.load_checkpoint_state(state, where, partial=partial)

    def export(self, model: AVModel, encoders: Path) -> None:
        """The wrapped objective's files, then the localizer's next to ``encoders``, with the floor of
        its maps measured on ``floor_clips`` when given."""
        self.inner.export(model, encoders)
        spec = self.spec
        clips = self.floor_clips() if self.floor_clips is not None else None
        if clips is not None:
            floor = calibrate_floor(model, (self.localizer, spec), clips)
            logger.info("localizer map floor (mean cosine of a wrong sound at a clip's best location): %.4f",
                        floor)
            spec = dataclasses.replace(spec, floor=floor)
        save_localizer(self.localizer, spec, localizer_path(encoders))
