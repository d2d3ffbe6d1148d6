"""Save and load model weights without executing pickled code.

Two formats, chosen by the file suffix:

* ``.safetensors``: written and read with the ``safetensors`` package (loadable by
  ``safetensors.torch.load_file``); the model config is stored as JSON in the file's
  metadata under ``"avlearn_config"``.
* anything else (``.pt``): ``torch.save({"format": ..., "config": dict, "state_dict": ...})``,
  read back with ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.

Keys are those of :class:`AVModel`'s state dict (``video_encoder.*``, ``audio_encoder.*``,
``video_head.*``, ``audio_head.*``), so one encoder can be loaded alone for fine-tuning.
Which file a run dir or ``--init`` names, and building a model from it: :mod:`avlearn.models.weights`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from avlearn.models.av import AVModel
from avlearn.models.registry import ModelConfig

__all__ = [
    "CheckpointError",
    "load_checkpoint",
    "load_state_into",
    "read_release",
    "read_safetensors",
    "save_encoders",
    "write_safetensors",
]

FORMAT = "avlearn-encoders-v1"
_CONFIG_KEY = "avlearn_config"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file."""


# --------------------------------------------------------------------------- safetensors files


def write_safetensors(
    tensors: Mapping[str, Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    """Write ``tensors`` (any shapes, strides and devices) to ``path`` with the ``safetensors`` package.

    The file appears whole or not at all (written beside it, then renamed). Entries that share
    memory (tied weights, views) are written as separate copies, as ``torch.save`` would keep them
    apart on load; ``safetensors`` itself refuses them.
    """
    packed: dict[str, Tensor] = {}
    storages: set[int] = set()
    for name, tensor in tensors.items():
        t = tensor.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        packed[name] = t.clone() if t.numel() and ptr in storages else t
        storages.add(ptr)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(packed, tmp, metadata=metadata)
    tmp.replace(path)


def read_safetensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a safetensors file; returns ``(tensors, metadata)``. Raises :class:`CheckpointError`.

    The tensors own their memory (``pread``): with the default ``mmap`` they would change if the
    file were later overwritten in place.
    """
    path = Path(path)
    try:
        with safe_open(path, framework="pt", backend="pread") as f:
            metadata: dict[str, str] = f.metadata() or {}
            tensors: dict[str, Tensor] = f.get_tensors()
    except SafetensorError as err:
        raise CheckpointError(
            f"{path}: corrupt safetensors header or data ({err}); the file is truncated or corrupt, or "
            "not a safetensors file: save or export it again"
        ) from None
    return tensors, metadata


# --------------------------------------------------------------------------- save / load


def _config_dict(config: ModelConfig | Mapping[str, Any]) -> dict[str, Any]:
    return asdict(config) if isinstance(config, ModelConfig) else dict(config)


def save_encoders(model: AVModel, path: str | Path, config: ModelConfig | Mapping[str, Any]) -> Path:
    """Save ``model``'s weights and the config that builds it.

    ``config`` is a :class:`ModelConfig`, a mapping of its fields, or a whole run config whose
    ``"model"`` entry holds them; it must be JSON-serialisable. The format follows the suffix:
    ``.safetensors`` or (anything else) a ``weights_only``-loadable torch file.
    """
    path = Path(path)
    cfg = _config_dict(config)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        write_safetensors(state, path, {"format": FORMAT, _CONFIG_KEY: json.dumps(cfg)})
    else:
        json.dumps(cfg)  # same restriction in both formats
        torch.save({"format": FORMAT, "config": cfg, "state_dict": state}, path)
    return path


def load_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_encoders`; returns ``(state_dict, config_dict)``.

    Never unpickles arbitrary objects: torch files are opened with ``weights_only=True``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        state, meta = read_safetensors(path)
        if _CONFIG_KEY not in meta:
            raise CheckpointError(
                f"{path}: no '{_CONFIG_KEY}' in the safetensors metadata; not an avlearn checkpoint"
            )
        try:
            cfg = json.loads(meta[_CONFIG_KEY])
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{path}: stored config is not valid JSON ({err})") from None
        return state, cfg
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise CheckpointError(
            f"{path}: cannot be loaded safely with torch.load(weights_only=True): "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}. It is corrupt or holds "
            "pickled objects other than tensors and plain containers; re-save it with save_encoders."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an avlearn encoder checkpoint (expected format '{FORMAT}')")
    return dict(payload["state_dict"]), dict(payload["config"])


def read_release(path: str | Path, what: str) -> Any:
    """What a ``torch.save``\\ d file of an authors' release holds, read on the CPU with
    ``weights_only=True`` (no pickled code runs; tensors and plain containers only).

    Raises :class:`CheckpointError` naming the file when it is missing (``what``: the file to give) or
    cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; give {what}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        first = str(err).splitlines()[0] if str(err) else ""
        raise CheckpointError(
            f"{path}: cannot be read as a PyTorch checkpoint ({type(err).__name__}: {first}); "
            "the file is truncated or corrupt: download it again"
        ) from None


def _summarise(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_into(
    module: nn.Module, state: Mapping[str, Tensor], prefix: str = "", source: str = ""
) -> None:
    """Load the entries of ``state`` under ``prefix`` into ``module`` strictly.

    Raises :class:`CheckpointError` naming missing keys, unexpected keys and shape mismatches.
    """
    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(sub))
    unexpected = sorted(set(sub) - set(expected))
    wrong = sorted(
        f"{k} (checkpoint {tuple(sub[k].shape)}, model {tuple(expected[k].shape)})"
        for k in set(sub) & set(expected)
        if sub[k].shape != expected[k].shape
    )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys: {_summarise(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_summarise(unexpected)}")
        if wrong:
            parts.append(f"shape mismatches: {_summarise(wrong)}")
        where = f"{source}: " if source else ""
        raise CheckpointError(
            f"{where}weights under '{prefix or '<root>'}' do not fit {type(module).__name__}; "
            + "; ".join(parts)
            + ". Check that the config's architecture matches the one the checkpoint was saved with."
        )
    module.load_state_dict(sub, strict=True)
