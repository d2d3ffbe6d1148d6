"""Save and load model weights without executing pickled code.

Two formats, chosen by the file suffix:

* ``.safetensors``: the safetensors layout, written and read here in pure Python (the
  ``safetensors`` package is not required): 8-byte little-endian header length, a JSON header
  ``{name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}``, then the raw bytes.
  The model config is stored as JSON in ``__metadata__["avlearn_config"]``.
* anything else (``.pt``): ``torch.save({"format": ..., "config": dict, "state_dict": ...})``,
  read back with ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.

Keys are those of :class:`AVModel`'s state dict (``video_encoder.*``, ``audio_encoder.*``,
``video_head.*``, ``audio_head.*``), so one encoder can be loaded alone for fine-tuning.
Which file a run dir or ``--init`` names, and building a model from it: :mod:`avlearn.models.weights`.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from avlearn.models.av import AVModel
from avlearn.models.registry import ModelConfig

__all__ = [
    "CheckpointError",
    "load_checkpoint",
    "load_state_into",
    "read_safetensors",
    "save_encoders",
    "write_safetensors",
]

FORMAT = "avlearn-encoders-v1"
_CONFIG_KEY = "avlearn_config"
_MAX_HEADER = 100 * 1024 * 1024

_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_DTYPE_NAMES = {v: k for k, v in _DTYPES.items()}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file."""


# --------------------------------------------------------------------------- safetensors format


def write_safetensors(
    tensors: Mapping[str, Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    """Write ``tensors`` (any shapes, dtypes in ``_DTYPES``) to ``path`` in safetensors format."""
    header: dict[str, Any] = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("safetensors metadata must map str to str")
        header["__metadata__"] = dict(metadata)
    blobs: list[bytes] = []
    offset = 0
    # widest dtypes first, as the reference writer does, so every tensor starts aligned
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    for name in order:
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _DTYPE_NAMES:
            raise TypeError(f"tensor '{name}' has dtype {t.dtype}, which safetensors here does not support")
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {
            "dtype": _DTYPE_NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # pad so the data starts 8-byte aligned
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)
    tmp.replace(path)


def read_safetensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a safetensors file; returns ``(tensors, metadata)``. Raises :class:`CheckpointError`."""
    path = Path(path)
    buf = path.read_bytes()
    if len(buf) < 8:
        raise CheckpointError(f"{path}: too short to be a safetensors file ({len(buf)} bytes)")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > _MAX_HEADER or 8 + n > len(buf):
        raise CheckpointError(f"{path}: corrupt safetensors header (length {n}, file {len(buf)} bytes)")
    try:
        header = json.loads(buf[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: corrupt safetensors header ({err})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    data = buf[8 + n :]
    flat = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
    tensors: dict[str, Tensor] = {}
    for name, info in header.items():
        try:
            dtype = _DTYPES[info["dtype"]]
            shape = [int(s) for s in info["shape"]]
            start, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: bad header entry for '{name}': {info!r} ({err})") from None
        nbytes = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
        if not 0 <= start <= end <= len(data) or end - start != nbytes:
            raise CheckpointError(
                f"{path}: tensor '{name}' needs {nbytes} bytes at [{start}, {end}) but the data section "
                f"holds {len(data)} bytes; the file is truncated or corrupt"
            )
        # copy first: a view across element sizes needs an aligned storage offset
        tensors[name] = flat[start:end].clone().view(dtype).reshape(shape)
    return tensors, {str(k): str(v) for k, v in metadata.items()}


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
