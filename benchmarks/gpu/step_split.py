"""The ``step`` stage: the pretraining step against its convolutions, and what each lever gives.

One setup (8x112², batch 64, bf16 autocast, cuDNN autotuned: the stage turns
``torch.backends.cudnn.benchmark`` on) of AVID's step (:class:`~benchmarks.gpu.step_bench.StepRig`:
data, forward, objective + memory-bank update, backward, optimiser) is measured under each lever of
:data:`LEVERS` -- eager, ``torch.compile``, ``torch.compile(mode="reduce-overhead")`` (the forward
as CUDA graphs), all ``channels_last`` -- with the objective's share of the synchronised step and
clips/s / MFU from unsynchronised steps. Against them the **convolution-bound limit**: every
convolution of the video and the audio encoder timed alone (forward + backward, bf16,
:func:`~benchmarks.gpu.layer_bench.layer_table`) in the same run, summed. Goals: objective + bank
<= 5 % of the step, the step within 1.25x of the convolutions' time. The optimiser alone, Adam over
the model's parameters with torch's default (``foreach``) and ``fused``, gives the fused lever.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch

from avlearn.models.registry import ModelConfig, build_av_model
from benchmarks.gpu import layer_bench, step_bench

__all__ = ["LEVERS", "conv_bound", "optimizer_lever", "summarize"]

#: name -> (compile, compile mode); every lever runs channels_last
LEVERS: dict[str, tuple[bool, str]] = {
    "eager": (False, "default"),
    "compile": (True, "default"),
    "cuda graphs": (True, "reduce-overhead"),
}
OBJECTIVE_GOAL, CONV_GOAL = 0.05, 1.25


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def conv_bound(setup: step_bench.Setup, device: torch.device, *, reps: int, warmup: int) -> dict[str, Any]:
    """Milliseconds of the video and the audio encoder's convolutions, each timed alone, summed.

    Shapes: the encoders see ``(B, 3, T, S, S)`` clips and ``(B, 1, F, T_a)`` spectrograms of ``setup``.
    """
    torch.manual_seed(0)
    model = build_av_model(ModelConfig(video_arch=setup.video_arch, audio_arch=setup.audio_arch)).to(device)
    b, f, t = setup.batch, *setup.spec
    inputs = {"video": (model.video_encoder, torch.empty(b, 3, setup.frames, setup.crop, setup.crop)),
              "audio": (model.audio_encoder, torch.empty(b, 1, f, t))}
    out: dict[str, Any] = {}
    for name, (encoder, x) in inputs.items():
        rows = layer_bench.layer_table(encoder, x.to(device), device, channels_last=setup.channels_last,
                                       peak_flops=1.0, peak_bytes_per_s=None, reps=reps, warmup=warmup)
        out[f"{name}_ms"] = round(sum(r["ms"] for r in rows), 3)
        out[f"{name}_convolutions"] = len(rows)
    out["total_ms"] = round(out["video_ms"] + out["audio_ms"], 3)
    return out


def optimizer_lever(setup: step_bench.Setup, device: torch.device, reps: int) -> dict[str, Any]:
    """Milliseconds of one Adam step over the model's parameters: torch's default and ``fused``."""
    torch.manual_seed(0)
    model = build_av_model(ModelConfig(video_arch=setup.video_arch, audio_arch=setup.audio_arch)).to(device)
    out: dict[str, Any] = {"parameters": sum(p.numel() for p in model.parameters())}
    for name, kwargs in (("default_ms", {}), ("fused_ms", {"fused": True})):
        if kwargs and device.type != "cuda":
            out[name] = None  # fused Adam is what the CUDA path asks for; the CPU keeps the default
            continue
        params = [torch.nn.Parameter(p.detach().clone()) for p in model.parameters()]
        for p in params:
            p.grad = torch.randn_like(p)
        opt = torch.optim.Adam(params, lr=1e-4, **kwargs)  # type: ignore[arg-type]
        opt.step()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            opt.step()
        _sync(device)
        out[name] = round((time.perf_counter() - t0) / reps * 1e3, 3)
    return out


def summarize(row: dict[str, Any], conv_ms: float) -> dict[str, Any]:
    """A measured row's step against the goals: objective share and step / convolutions."""
    ratio = 1e3 * row["step_s"] / conv_ms if conv_ms > 0 else None
    share = row["objective_share"]
    return {"objective_share": share, "objective_goal_met": share <= OBJECTIVE_GOAL,
            "step_over_convolutions": None if ratio is None else round(ratio, 3),
            "convolution_goal_met": None if ratio is None else ratio <= CONV_GOAL}


def measure_levers(base: step_bench.Setup, device: torch.device, *, fits: Callable[[bool], bool],
                   measure: Callable[[step_bench.Setup], dict[str, Any]]) -> list[dict[str, Any]]:
    """``measure`` each lever of :data:`LEVERS` on ``base`` that ``fits(compiled)`` the time left."""
    rows: list[dict[str, Any]] = []
    for lever, (compiled, mode) in LEVERS.items():
        setup = dataclasses.replace(base, compile=compiled, compile_mode=mode, channels_last=True)
        if not fits(compiled):
            rows.append({"lever": lever, "status": "skipped", "message": "time budget spent"})
            continue
        try:
            rows.append({"lever": lever, "status": "ok", **measure(setup)})
        except Exception as err:  # one lever failing (e.g. CUDA graphs and the bank's indexing) is a finding
            message = f"{type(err).__name__}: {str(err)[:400]}"
            rows.append({"lever": lever, "status": "failed", "message": message})
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows
