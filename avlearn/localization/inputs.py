"""What a localization model takes and how to load one: decoding and normalisation settings, weights.

:class:`ModelInput` holds how the model's clips were decoded and normalised (read from the run
config stored with the weights by :func:`model_input_from_checkpoint`); :func:`load_for_localization`
loads the model of any path :func:`~avlearn.models.weights.load_weights` takes, its input
settings and its learned localizer. Used by ``avlearn localize`` (:mod:`avlearn.localization.cli`)
and the synthetic-collection scoring (:mod:`avlearn.localization.sound_checks`).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from avlearn.config import ConfigError, from_dict
from avlearn.data.audio import SpecConfig
from avlearn.data.config import DataConfig
from avlearn.data.decode import ClipSpec
from avlearn.data.transforms import KINETICS_MEAN, KINETICS_STD
from avlearn.localization.export import resolve_localizer
from avlearn.localization.learned import Learned
from avlearn.models.av import AVModel
from avlearn.models.weights import load_model, load_weights

__all__ = ["CHECKPOINT_HELP", "LOCALIZER_HELP", "ModelInput", "load_for_localization",
           "model_input_from_checkpoint", "normalize_video"]

CHECKPOINT_HELP = "an encoders export (.safetensors or .pt), a run checkpoint (.pt) or a pretraining run dir"
LOCALIZER_HELP = ("auto (the checkpoint's learned localizer when it has one, else post hoc), posthoc, "
                  "or a localizer file")


@dataclasses.dataclass(frozen=True)
class ModelInput:
    """What the model was trained on: how to decode and normalise its clips.

    Attributes:
        num_frames, fps, size: frames per window, their rate, short side in pixels.
        audio_seconds, sample_rate, audio_align: the audio window of a clip.
        spec: the spectrogram front-end.
        mean, std: per-channel video normalisation, or ``None`` for none.
    """

    num_frames: int = 8
    fps: float = 16.0
    size: int = 112
    audio_seconds: float = 2.0
    sample_rate: int = 16000
    audio_align: Literal["start", "center"] = "center"
    spec: SpecConfig = dataclasses.field(default_factory=SpecConfig)
    mean: tuple[float, ...] | None = KINETICS_MEAN
    std: tuple[float, ...] | None = KINETICS_STD

    def audio_start(self, clip_start: float) -> float:
        """Start (s) of the audio window of a clip starting at ``clip_start``."""
        if self.audio_align == "center":
            return clip_start + self.num_frames / self.fps / 2 - self.audio_seconds / 2
        return clip_start

    def clip_spec(self) -> ClipSpec:
        """The decoder request for one window of the model's clips."""
        return ClipSpec(num_frames=self.num_frames, fps=self.fps, size=self.size,
                        audio_seconds=self.audio_seconds, sample_rate=self.sample_rate,
                        audio_align=self.audio_align)

    def middle_window(self, t_mid: float) -> tuple[float, int]:
        """``(start, frame)``: the window centred on time ``t_mid`` (s; clamped at 0) and the
        index of ``t_mid``'s frame in it."""
        start = max(0.0, t_mid - self.num_frames / self.fps / 2)
        return start, min(max(round((t_mid - start) * self.fps), 0), self.num_frames - 1)


def model_input_from_checkpoint(stored: Mapping[str, Any]) -> ModelInput:
    """Read the data settings from a checkpoint's stored run config (defaults when it has none)."""
    data = stored.get("data")
    if not isinstance(data, Mapping):
        return ModelInput()
    try:
        cfg = from_dict(DataConfig, dict(data), prefix="data.")
    except (ConfigError, TypeError, ValueError) as err:
        print(f"avlearn localize: ignoring the checkpoint's data settings ({err}); using defaults",
              file=sys.stderr)
        return ModelInput()
    aug = cfg.video_aug
    return ModelInput(
        num_frames=cfg.num_frames, fps=cfg.fps, size=aug.size, audio_seconds=cfg.audio_seconds,
        sample_rate=cfg.sample_rate, audio_align=cfg.audio_align, spec=cfg.spec,
        mean=tuple(aug.mean) if aug.normalize else None, std=tuple(aug.std) if aug.normalize else None,
    )


def normalize_video(video: Tensor, inp: ModelInput) -> Tensor:
    """``(C, T, H, W)`` in [0, 1] -> normalised as in training."""
    if inp.mean is None or inp.std is None:
        return video
    mean = torch.tensor(inp.mean, dtype=video.dtype).view(-1, 1, 1, 1)
    std = torch.tensor(inp.std, dtype=video.dtype).view(-1, 1, 1, 1)
    return (video - mean) / std


def load_for_localization(
    checkpoint: str | Path, localizer: str = "auto"
) -> tuple[AVModel, ModelInput, Learned | None]:
    """Model (``eval()``), its input settings and its learned localizer (``None``: post hoc).

    ``checkpoint``: an export, a run checkpoint or a run dir (:func:`load_weights`).
    ``localizer``: ``auto``, ``posthoc`` or a localizer file (see :func:`resolve_localizer`).
    Raises :class:`~avlearn.models.checkpoint.CheckpointError` naming an unusable file.
    """
    weights = load_weights(checkpoint, what="--checkpoint")
    model = load_model(weights).eval()
    learned = resolve_localizer(weights.source, localizer)
    if learned is not None:
        learned[0].eval()
    return model, model_input_from_checkpoint(weights.config), learned
