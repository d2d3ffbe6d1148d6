"""A learned localizer's file, next to the encoders it was trained with.

A pretraining run with ``localization.weight > 0`` exports its localizer next to the encoders:
``encoders.safetensors`` -> ``encoders.localizer.safetensors`` (:func:`localizer_path`). The
encoders file keeps only :class:`~avlearn.models.av.AVModel`'s keys, so every loader of encoders
reads it as before; ``avlearn localize`` and ``avlearn evaluate localization`` pick up the
localizer file when it exists (:func:`find_localizer`) and fall back to the post hoc mode.

The localizer file is safetensors (or a ``weights_only`` torch file for ``.pt``) with keys
``video_proj.*`` / ``audio_proj.*`` and metadata ``format``, ``grid_dim``, ``audio_dim``,
``embed_dim``, ``audio_input`` (``feat``: the localizer reads ``AVOutput.audio_feat``;
``emb``: ``AVOutput.audio_emb``) and ``grid_stage`` (empty: the encoder's last grid; a stage name
such as ``layer3``: that stage's finer grid, ``AVOutput.video_stages``; stages joined by ``+``,
e.g. ``layer2+layer3``: their hypercolumn grid,
:func:`~avlearn.localization.learned.localizer_grid`; files without it read the last grid) and
``floor`` (empty: the maps are cosines; a number ``f``: the maps are ``max(cosine - f, 0)``, see
:func:`~avlearn.localization.calibration.calibrate_floor`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from avlearn.localization.learned import Learned, LocalizerSpec
from avlearn.localization.module import AVLocalizer
from avlearn.models.checkpoint import CheckpointError, load_state_into, read_safetensors, write_safetensors

__all__ = ["FORMAT", "find_localizer", "load_localizer", "localizer_path", "resolve_localizer",
           "save_localizer"]

FORMAT = "avlearn-localizer-v1"


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


def _spec_from_metadata(meta: dict[str, str]) -> LocalizerSpec:
    """A safetensors file's :class:`LocalizerSpec` (its metadata holds every field as a string)."""
    floor = meta.get("floor", "None")
    return LocalizerSpec(int(meta["grid_dim"]), int(meta["audio_dim"]), int(meta["embed_dim"]),
                         meta["audio_input"], meta.get("grid_stage", ""),  # type: ignore[arg-type]
                         None if floor in ("", "None") else float(floor))


def load_localizer(path: str | Path) -> Learned:
    """Read a file written by :func:`save_localizer`. Raises :class:`CheckpointError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"localizer file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            state, meta = read_safetensors(path)
            if meta.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not an avlearn localizer (expected format '{FORMAT}')")
            spec = _spec_from_metadata(meta)
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


def resolve_localizer(encoders: str | Path, choice: str = "auto") -> Learned | None:
    """The localizer to use with an encoders file: ``auto`` (its exported localizer when there is
    one, else post hoc), ``posthoc`` (``None``), or the path of a localizer file."""
    if choice == "posthoc":
        return None
    if choice == "auto":
        found = find_localizer(encoders)
        return None if found is None else load_localizer(found)
    return load_localizer(choice)
