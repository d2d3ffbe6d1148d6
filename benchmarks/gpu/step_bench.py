"""One pretraining step of an audio-visual model, timed in parts, counted in FLOP, on one device.

A step is what :class:`~avlearn.train.loop.PretrainTask` does on the engine, written out so each
part can be timed: **data** (a batch held in pinned host memory copied to the device), **forward**
(both encoders and heads under bf16 autocast), **objective** (AVID's loss against its memory banks
plus the bank update, with ``num_negatives`` sampled negatives), **backward**, **optimiser** (the
config's default Adam step and ``zero_grad``). The split runs synchronise the device after every
part; throughput (clips/s, MFU) comes from further steps with no synchronisation inside them.

FLOP are counted with ``torch.utils.flop_counter.FlopCounterMode`` over one eager step (forward,
objective and backward: convolutions and matrix products; element-wise work is not counted), so
MFU = counted FLOP per step / step time / the device's bf16 peak (:mod:`benchmarks.gpu.peaks`).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from avlearn.models.av import AVModel
from avlearn.models.registry import ModelConfig, build_av_model
from avlearn.objectives import OBJECTIVES, Objective, ObjectiveContext
from avlearn.train.optim import OptimConfig, build_optimizer

__all__ = ["PARTS", "Setup", "StepRig", "measure", "spectrogram_shape"]

PARTS = ("data", "forward", "objective", "backward", "optimizer")


@dataclasses.dataclass(frozen=True)
class Setup:
    """What one measurement runs.

    Attributes:
        video_arch / audio_arch: registry names of the encoders.
        frames, crop: clip of ``frames x crop x crop`` RGB frames.
        spec: spectrogram ``(F, T)`` of the clip's audio.
        batch: clips per step.
        compile: run the model through ``torch.compile``.
        channels_last: ``channels_last_3d`` video encoder and clips, ``channels_last`` audio encoder.
        compile_mode: ``torch.compile``'s mode (``reduce-overhead``: the forward as CUDA graphs).
    """

    video_arch: str
    audio_arch: str
    frames: int
    crop: int
    spec: tuple[int, int]
    batch: int
    compile: bool = False
    channels_last: bool = False
    compile_mode: str = "default"

    @property
    def layout(self) -> str:
        mode = f" {self.compile_mode}" if self.compile and self.compile_mode != "default" else ""
        layout = " + channels_last" if self.channels_last else ""
        return ("compile" if self.compile else "eager") + mode + layout

    def key(self) -> tuple[str, str, int, int, int]:
        """What the FLOP count depends on (not compile or memory layout)."""
        return (self.video_arch, self.audio_arch, self.frames, self.crop, self.batch)


def spectrogram_shape(seconds: float) -> tuple[int, int]:
    """``(F, T)`` of ``seconds`` of audio under the default data config's spectrogram."""
    from avlearn.data.audio import build_spectrogram
    from avlearn.data.config import DataConfig

    cfg = DataConfig().spec
    spec = build_spectrogram(cfg)
    return spec.num_bins, spec.num_frames(round(seconds * cfg.sample_rate))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepRig:
    """Model, AVID objective with its banks, optimiser and a pinned host batch for one :class:`Setup`.

    Args:
        setup: what to run.
        device: where.
        bank_items: memory-bank rows (training videos; Kinetics-400 has about 240 k).
        compile_backend: ``torch.compile`` backend (``inductor``; ``eager`` only traces, for dry runs).
    """

    def __init__(self, setup: Setup, device: torch.device, bank_items: int, compile_backend: str) -> None:
        self.setup, self.device = setup, device
        torch.manual_seed(0)
        self.model: AVModel = build_av_model(ModelConfig(video_arch=setup.video_arch,
                                                         audio_arch=setup.audio_arch)).to(device)
        if setup.channels_last:
            self.model.video_encoder.to(memory_format=torch.channels_last_3d)
            self.model.audio_encoder.to(memory_format=torch.channels_last)
        avid = OBJECTIVES["avid"]
        ctx = ObjectiveContext(num_items=bank_items, embed_dim=self.model.embed_dim, seed=0)
        self.objective: Objective = avid.build(avid.config_cls(), ctx).to(device)
        self.net: Callable[..., Any] = self.model
        if setup.compile:
            torch._dynamo.reset()  # a fresh cache: earlier setups' graphs count towards its size limit
            inductor = compile_backend == "inductor"  # another backend takes no mode
            mode = setup.compile_mode if inductor and setup.compile_mode != "default" else None
            self.net = torch.compile(self.model, backend=compile_backend, dynamic=False, mode=mode)
        params = [*self.model.parameters(), *self.objective.parameters()]
        self.optimizer = build_optimizer(params, OptimConfig())
        pin = device.type == "cuda"
        gen = torch.Generator().manual_seed(0)
        b, f, t = setup.batch, *setup.spec
        self.host = {
            "video": torch.randn(b, 3, setup.frames, setup.crop, setup.crop, generator=gen),
            "audio": torch.randn(b, 1, f, t, generator=gen),
            "index": torch.randint(0, bank_items, (b,), generator=gen),
        }
        if pin:
            self.host = {k: v.pin_memory() for k, v in self.host.items()}

    def _data(self) -> tuple[Tensor, Tensor, Tensor]:
        """The host batch on the device (in the setup's memory layout)."""
        video = self.host["video"].to(self.device, non_blocking=True)
        audio = self.host["audio"].to(self.device, non_blocking=True)
        index = self.host["index"].to(self.device, non_blocking=True)
        if self.setup.channels_last:
            video = video.contiguous(memory_format=torch.channels_last_3d)
            audio = audio.contiguous(memory_format=torch.channels_last)
        return video, audio, index

    def step(self, mark: Callable[[], None] = lambda: None, net: Callable[..., Any] | None = None) -> None:
        """One training step; ``mark()`` is called after each of :data:`PARTS`."""
        video, audio, index = self._data()
        mark()
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            out = (net or self.net)(video, audio, normalize=self.objective.normalize_embeddings)
        mark()
        loss, _ = self.objective.compute(out, index)
        with torch.no_grad():
            self.objective.after_finite_step(out, index)
        mark()
        loss.backward()  # type: ignore[no-untyped-call]
        mark()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        mark()

    def split(self, steps: int) -> dict[str, float]:
        """Mean seconds of each part over ``steps`` steps, the device synchronised between parts."""
        totals = dict.fromkeys(PARTS, 0.0)
        for _ in range(steps):
            _sync(self.device)
            marks = [time.perf_counter()]

            def mark(marks: list[float] = marks) -> None:
                _sync(self.device)
                marks.append(time.perf_counter())

            self.step(mark)
            for name, (t0, t1) in zip(PARTS, itertools.pairwise(marks), strict=True):
                totals[name] += (t1 - t0) / steps
        return totals

    def throughput(self, steps: int) -> float:
        """Seconds per step over ``steps`` steps with no synchronisation inside them."""
        _sync(self.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        _sync(self.device)
        return (time.perf_counter() - t0) / steps

    def count_flops(self) -> float:
        """FLOP of one eager step's forward, objective and backward (the optimiser's are not counted)."""
        with FlopCounterMode(display=False) as counter:
            video, audio, index = self._data()
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                out = self.model(video, audio, normalize=self.objective.normalize_embeddings)
            loss, _ = self.objective.compute(out, index)
            loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.zero_grad(set_to_none=True)
        return float(counter.get_total_flops())


def _peak_memory_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


def measure(setup: Setup, device: torch.device, *, warmup: int, split_steps: int, steps: int,
            bank_items: int, compile_backend: str, peak_flops: float,
            flops: float | None = None) -> dict[str, Any]:
    """Time ``setup``: warm-up (compiles), split steps, unsynchronised steps; FLOP (unless given).

    Returns the setup's fields plus ``compile_s`` (warm-up seconds), ``parts_s`` (mean seconds
    per part), ``objective_share`` (objective part / split step), ``step_s``, ``clips_per_s``,
    ``flops_per_step``, ``gflop_per_clip``, ``mfu`` (fraction of ``peak_flops``) and
    ``peak_memory_gib`` (cuda only).
    """
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    rig = StepRig(setup, device, bank_items, compile_backend)
    t0 = time.perf_counter()
    for _ in range(warmup):
        rig.step()
    _sync(device)
    compile_s = time.perf_counter() - t0
    parts = rig.split(split_steps)
    step_s = rig.throughput(steps)
    memory = _peak_memory_gib(device)
    if flops is None:
        flops = rig.count_flops()
    del rig
    split_total = sum(parts.values())
    return {
        **dataclasses.asdict(setup),
        "layout": setup.layout,
        "compile_s": round(compile_s, 2),
        "parts_s": {k: round(v, 5) for k, v in parts.items()},
        "objective_share": round(parts["objective"] / split_total, 4),
        "step_s": round(step_s, 5),
        "clips_per_s": round(setup.batch / step_s, 1),
        "flops_per_step": flops,
        "gflop_per_clip": round(flops / setup.batch / 1e9, 2),
        "mfu": round(flops / step_s / peak_flops, 4),
        "peak_memory_gib": memory,
    }

