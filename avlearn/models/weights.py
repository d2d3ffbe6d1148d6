"""From a path to model weights: the one resolver behind every ``--init`` and ``--checkpoint``.

==================================  ==========================================================
the path names                      the weights
==================================  ==========================================================
a pretraining run dir               its export ``encoders.safetensors`` (or ``encoders.pt``),
                                    else its newest ``checkpoints/step_N.pt``
an export (``.safetensors``/``.pt``)  what :func:`~avlearn.models.checkpoint.save_encoders` wrote
a run checkpoint                    its ``model`` state and its run ``config``
(``checkpoints/step_N.pt``)
``scratch`` (where allowed)         no weights: the caller's :class:`ModelConfig`, random init
==================================  ==========================================================

:func:`load_weights` resolves and reads (a :class:`Weights`); :func:`load_model` and
:func:`load_encoder` build what the weights describe and load them strictly; :func:`load_av_model`
does both for a path. Files are read
without unpickling arbitrary objects (safetensors, or ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from avlearn.config import ConfigError
from avlearn.models.av import AVModel
from avlearn.models.checkpoint import CheckpointError, load_checkpoint, load_state_into
from avlearn.models.registry import (
    ModelConfig,
    as_model_config,
    build_audio_encoder,
    build_av_model,
    build_video_encoder,
)

__all__ = [
    "EXPORT_NAMES",
    "Weights",
    "WeightsError",
    "load_audio_encoder",
    "load_av_model",
    "load_encoder",
    "load_model",
    "load_video_encoder",
    "load_weights",
    "run_checkpoints",
    "weights_file",
]

logger = logging.getLogger(__name__)

EXPORT_NAMES = ("encoders.safetensors", "encoders.pt")  # a run dir's export, in order of preference
_RUN_CHECKPOINT = re.compile(r"^step_(\d+)\.pt$")


class WeightsError(CheckpointError):
    """A path that names no usable weights; the message names it and what was expected."""


@dataclasses.dataclass(frozen=True)
class Weights:
    """What a path named.

    Attributes:
        state: an :class:`AVModel` state dict (``video_encoder.*``, ``audio_encoder.*``, heads);
            ``None`` for ``scratch``.
        model: the architecture the state belongs to (the stored one; for scratch, the caller's).
        source: the file read, or ``"scratch"``.
        config: the stored config (the whole run config when the file has it; ``{}`` for scratch).
    """

    state: dict[str, Tensor] | None
    model: ModelConfig
    source: str
    config: dict[str, Any] = dataclasses.field(default_factory=dict)


def run_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step_N.pt`` in ``directory``, oldest first (``[]`` when absent)."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _RUN_CHECKPOINT.match(p.name)))


def _expected(scratch: bool, export: bool = True) -> str:
    if not export:
        return "a run checkpoint (checkpoints/step_N.pt) or a run dir that has checkpoints/"
    return ("a pretraining run dir (with encoders.safetensors or checkpoints/), an encoder export "
            "(.safetensors / .pt), a run checkpoint (checkpoints/step_N.pt)"
            + (" or 'scratch'" if scratch else ""))


def weights_file(path: str | Path, what: str = "weights", export: bool = True) -> Path:
    """The file ``path`` names: itself, or for a run dir its export, else its newest run checkpoint.

    ``export=False``: a run dir gives its newest run checkpoint only (model, optimiser and
    objective state, e.g. to continue from it). ``what`` names the option in errors.
    Raises :class:`WeightsError` naming the path and what was expected.
    """
    return _find_file(path, what, export, scratch=False)


def _find_file(path: str | Path, what: str, export: bool, scratch: bool) -> Path:
    folder = Path(path)
    if not folder.exists():
        raise WeightsError(f"{what} {path}: no such file or folder; expected {_expected(scratch, export)}")
    if folder.is_file():
        return folder
    exports = [folder / name for name in EXPORT_NAMES if export and (folder / name).is_file()]
    found = exports or [p for _, p in run_checkpoints(folder / "checkpoints")[-1:]]
    if not found:
        names = ", ".join([*EXPORT_NAMES, "checkpoints/step_*.pt"] if export else ["checkpoints/step_*.pt"])
        raise WeightsError(f"{what} {path}: the folder has no {names}; expected {_expected(scratch, export)}")
    return found[0]


def _read_run_checkpoint(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """``(model state, run config)`` of a run checkpoint, or ``None`` when ``path`` is not one."""
    if path.suffix != ".pt":
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not loadable: the caller reports the export reader's message
        return None
    if isinstance(payload, dict) and isinstance(payload.get("model"), dict) and isinstance(
            payload.get("config"), dict):
        return dict(payload["model"]), dict(payload["config"])
    return None


def load_weights(path: str | Path, scratch: ModelConfig | None = None, what: str = "weights") -> Weights:
    """Resolve ``path`` (see the module doc) and read its weights and stored config.

    Args:
        path: a run dir, an export, a run checkpoint, or ``"scratch"`` when ``scratch`` is given.
        scratch: the architecture of ``"scratch"`` (random weights); ``None`` refuses ``"scratch"``.
        what: the option or argument that gave ``path`` (``--init``, ``--checkpoint``), for errors.

    Raises :class:`WeightsError` naming the path and what was expected.
    """
    if str(path) == "scratch":
        if scratch is None:
            raise WeightsError(f"{what} scratch: random weights are not accepted here; "
                               f"expected {_expected(False)}")
        return Weights(None, scratch, "scratch")
    file = _find_file(path, what, export=True, scratch=scratch is not None)
    try:
        state, stored = load_checkpoint(file)
    except CheckpointError as err:  # maybe a run checkpoint (model + config) rather than an export
        run = _read_run_checkpoint(file)
        if run is None:  # the reader's message names the file
            named = f"{what}: " if file == Path(path) else f"{what} {path}: "
            raise WeightsError(f"{named}{err}") from None
        state, stored = run
    inner = stored.get("model")  # a run config holds the model's under "model"
    try:
        model = as_model_config(inner if isinstance(inner, Mapping) else stored)
    except ConfigError as err:
        raise WeightsError(f"{what} {file}: the stored config does not describe a model: {err}") from None
    logger.info("weights from %s (%s + %s)", file, model.video_arch, model.audio_arch)
    return Weights(state, model, str(file), stored)


def load_model(weights: Weights, config: ModelConfig | Mapping[str, Any] | None = None) -> AVModel:
    """The full model of ``weights``, built from ``config`` when given, else from ``weights.model``;
    loaded strictly, randomly initialised for scratch."""
    model = build_av_model(as_model_config(config) if config is not None else weights.model)
    if weights.state is not None:
        load_state_into(model, weights.state, "", weights.source)
    return model


def load_av_model(
    path: str | Path, config: ModelConfig | Mapping[str, Any] | None = None
) -> tuple[AVModel, ModelConfig]:
    """The full model of ``path`` (any path :func:`load_weights` takes but ``scratch``) and its config;
    built from ``config`` when given, else from the stored config."""
    weights = load_weights(path, what="checkpoint")
    cfg = as_model_config(config) if config is not None else weights.model
    return load_model(weights, cfg), cfg


def load_encoder(weights: Weights, modality: Literal["video", "audio"]) -> nn.Module:
    """The video or audio encoder of ``weights`` (no heads; see :mod:`avlearn.models.contract`),
    loaded strictly; randomly initialised for scratch."""
    encoder: nn.Module = (build_video_encoder(weights.model) if modality == "video"
                          else build_audio_encoder(weights.model))
    if weights.state is not None:
        load_state_into(encoder, weights.state, f"{modality}_encoder.", weights.source)
    return encoder


def load_video_encoder(path: str | Path) -> tuple[nn.Module, ModelConfig]:
    """The video encoder alone (no heads), e.g. for fine-tuning; returns ``(encoder, config)``."""
    weights = load_weights(path, what="checkpoint")
    return load_encoder(weights, "video"), weights.model


def load_audio_encoder(path: str | Path) -> tuple[nn.Module, ModelConfig]:
    """The audio encoder alone (no heads); returns ``(encoder, config)``."""
    weights = load_weights(path, what="checkpoint")
    return load_encoder(weights, "audio"), weights.model
