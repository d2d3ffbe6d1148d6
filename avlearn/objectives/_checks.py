"""Argument checks shared by the objectives: errors name the argument and the fix."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def check_temperature(temperature: float) -> None:
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be > 0, got {temperature}")


def check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")


def check_pair(video_emb: Tensor, audio_emb: Tensor) -> None:
    """Both embeddings ``(B, D)`` with the same shape."""
    for name, emb in (("video_emb", video_emb), ("audio_emb", audio_emb)):
        if emb.dim() != 2:
            raise ValueError(f"{name} must be (B, D), got shape {tuple(emb.shape)}")
    if video_emb.shape != audio_emb.shape:
        raise ValueError(
            f"video_emb {tuple(video_emb.shape)} and audio_emb {tuple(audio_emb.shape)} "
            "must have the same shape"
        )
    if video_emb.shape[0] == 0:
        raise ValueError("video_emb and audio_emb are empty (B = 0); pass at least one row")


def require(ok: Tensor, what: str, error: Callable[[], Exception]) -> None:
    """Raise ``error()`` unless the boolean scalar ``ok`` holds, without reading it back on a GPU.

    ``torch._assert_async`` checks on the device: on the CPU at once (then ``error()``, which may
    read values, builds the message), on CUDA without stopping the queue -- a failure ends the
    process at the next synchronisation as a device-side assert naming ``what``. A training step
    calls about ten checks; a read-back each (``int(t)``, ``bool(t)``) would stall the GPU ten times.
    """
    if ok.device.type != "cpu":
        torch._assert_async(ok, what)
        return
    try:
        torch._assert_async(ok)
    except RuntimeError:
        raise error() from None


def check_normalized(name: str, emb: Tensor, atol: float = 1e-2) -> None:
    """Rows of ``emb`` must be unit L2 norm (call ``F.normalize(emb, dim=-1)`` first).

    Non-finite rows pass (``NaN > atol`` is false): the engine skips those steps itself.
    """
    with torch.no_grad():
        err = (emb.detach().float().norm(dim=-1) - 1).abs().max()
    require(~(err > atol), f"{name} rows must be L2-normalised", lambda: ValueError(
        f"{name} rows must be L2-normalised (max |norm-1| = {float(err):.3g}); "
        "apply torch.nn.functional.normalize(emb, dim=-1)"
    ))


def check_index(index: Tensor, batch_size: int, num_items: int, name: str = "index") -> None:
    """``index`` is ``(B,)`` integer with values in ``[0, num_items)``."""
    if index.dim() != 1 or index.shape[0] != batch_size:
        raise ValueError(f"{name} must be ({batch_size},), got shape {tuple(index.shape)}")
    if index.dtype.is_floating_point or index.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {index.dtype}")
    lo, hi = torch.aminmax(index)
    require((lo >= 0) & (hi < num_items), f"{name} values must lie in [0, {num_items})", lambda: IndexError(
        f"{name} values must lie in [0, {num_items}), got range [{int(lo)}, {int(hi)}]"
    ))


def check_weight(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def check_memory(name: str, memory: Tensor, dim: int) -> None:
    """A memory bank tensor ``(N, D)`` matching the embedding size ``dim``."""
    if memory.dim() != 2 or memory.shape[1] != dim:
        raise ValueError(f"{name} must be (N, {dim}), got shape {tuple(memory.shape)}")


def upcast(x: Tensor) -> Tensor:
    """Half-precision tensors to float32 for the loss arithmetic; float32/float64 unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
