"""The ``frames`` stage: what a clip of JPEG frames + 16-bit PCM costs to decode, on a core and on the GPU.

The shard layout of :data:`MODULE` stores each video's frames as JPEG at the decode size and its audio
as 16-bit PCM, so a DataLoader worker reads bytes and the frames can be decoded in batches on the GPU
(``torchvision.io.decode_jpeg(..., device="cuda")``, nvJPEG). Measured here per clip of ``T`` frames,
for each crop's decode size (short side = crop x 8 / 7: 128 px for 112² crops, 256 px for 224²):

* CPU ms per clip: the layout's decoder on one thread (the cost per core of a worker);
* GPU ms per clip: ``batch`` clips' frames decoded in one call on the device;
* cores per GPU: :data:`STEP_CLIPS_PER_S` x CPU seconds per clip (frame decoding only);
* bytes per clip and per second of video (every frame stored, at :data:`SOURCE_FPS`, plus PCM);
* the CPU and GPU decodes' largest difference (nvJPEG and libjpeg round differently) and the JPEG
  loss against the frames written (PSNR).

Frames are synthetic (smooth random images), so JPEG sizes are indicative; H.264 shards cannot be
written here without PyAV (their bytes are measured by the writer's own benchmark). NVDEC (torchcodec's
CUDA decoder over H.264) is timed when torchcodec imports and an H.264 file is at hand, else reported
as not measurable.
"""

from __future__ import annotations

import functools
import importlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["MODULE", "SOURCE_FPS", "STEP_CLIPS_PER_S", "decode_size", "frame_module", "jpeg_clip", "measure",
           "nvdec"]

MODULE = "avlearn.data.frame_shards"  # the JPEG + PCM shard layout (another part of issue 30)
SOURCE_FPS = 25.0
#: clips/s of AVID-CMA's step on an H200 (bf16, compile + channels_last; batch 64 at 224², 256 at 112²),
#: benchmarks/results/gpu_nvidia_h200*.md: the rate a GPU's loader cores must feed
STEP_CLIPS_PER_S = {112: 3798.0, 224: 1136.0}
Decode = Callable[[list[Tensor], str], Any]


def frame_module() -> ModuleType | None:
    """The layout's module, or None when this tree does not have it (a missing dependency raises)."""
    try:
        return importlib.import_module(MODULE)
    except ModuleNotFoundError as err:
        if err.name != MODULE:
            raise
        return None


def layout_decoder(module: ModuleType) -> Decode:
    """The layout's batch decoder ``decode_jpegs(jpegs, device)``, else torchvision's ``decode_jpeg``."""
    decode: Decode | None = getattr(module, "decode_jpegs", None)
    if decode is not None:
        return decode
    from torchvision.io import decode_jpeg

    return lambda jpegs, device: decode_jpeg(jpegs, device=device)


def decode_size(crop: int) -> int:
    """Decode short side for ``crop``: the data config's 128 px for 112² crops, scaled."""
    return round(crop * 8 / 7)


def jpeg_clip(frames: int, height: int, width: int, quality: int = 90,
              seed: int = 0) -> tuple[Tensor, list[Tensor]]:
    """``frames`` smooth random RGB frames and their JPEGs.

    Shape: frames ``(T, 3, H, W)`` uint8; JPEGs: ``T`` 1-d uint8 tensors.
    """
    from torchvision.io import encode_jpeg

    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(frames, 3, max(2, height // 16), max(2, width // 16), generator=gen)
    smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    noise = 0.03 * torch.randn(frames, 3, height, width, generator=gen)
    images = ((smooth + noise).clamp(0, 1) * 255).round().to(torch.uint8)
    return images, [encode_jpeg(img, quality=quality) for img in images]


def _stack(decoded: Any) -> Tensor:
    """A decoder's frames as ``(T, 3, H, W)`` (from a list of ``(3, H, W)`` or a ``(T, H, W, 3)`` tensor)."""
    frames = decoded if isinstance(decoded, Tensor) else torch.stack(list(decoded))
    return frames.permute(0, 3, 1, 2) if frames.shape[-1] == 3 and frames.shape[1] != 3 else frames


def _psnr(a: Tensor, b: Tensor) -> float:
    mse = (a.float() - b.float()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(255**2 / mse)


def _seconds(fn: Callable[[], Any], device: torch.device, reps: int) -> float:
    fn()  # warm-up (nvJPEG handles, allocations)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / reps


def measure(decode: Decode, device: torch.device, *, frames: int, crops: Sequence[int], batch: int,
            audio_seconds: float, sample_rate: int = 16000, reps: int = 5,
            quality: int = 90) -> list[dict[str, Any]]:
    """One row per crop: CPU ms per clip on one thread, GPU ms per clip in batches (None off CUDA),
    bytes, CPU/GPU difference and JPEG PSNR."""
    rows = []
    threads = torch.get_num_threads()
    for crop in crops:
        size = decode_size(crop)
        images, jpegs = jpeg_clip(frames, size, round(size * 4 / 3), quality)
        torch.set_num_threads(1)  # the cost per core of a worker
        try:
            cpu_s = _seconds(functools.partial(decode, jpegs, "cpu"), torch.device("cpu"), reps)
        finally:
            torch.set_num_threads(threads)
        on_cpu = _stack(decode(jpegs, "cpu"))
        frame_bytes = sum(j.numel() for j in jpegs) / frames
        row: dict[str, Any] = {
            "crop": crop, "decode_size": size, "frames": frames, "quality": quality,
            "cpu_ms_per_clip": round(cpu_s * 1e3, 3), "cpu_clips_per_s_per_core": round(1 / cpu_s, 1),
            "cores_per_gpu": round(STEP_CLIPS_PER_S[crop] * cpu_s, 2) if crop in STEP_CLIPS_PER_S else None,
            "bytes_per_clip": round(frames * frame_bytes + 2 * sample_rate * audio_seconds),
            "bytes_per_video_second": round(SOURCE_FPS * frame_bytes + 2 * sample_rate),
            "jpeg_psnr_db": round(_psnr(on_cpu, images), 2), "gpu_ms_per_clip": None,
            "cpu_gpu_max_diff": None,
        }
        if device.type == "cuda":
            many = jpegs * batch
            gpu_s = _seconds(functools.partial(decode, many, "cuda"), device, reps)
            row["gpu_ms_per_clip"] = round(gpu_s * 1e3 / batch, 4)
            row["gpu_batch"] = batch
            on_gpu = _stack(decode(jpegs, "cuda")).cpu()
            row["cpu_gpu_max_diff"] = int((on_gpu.int() - on_cpu.int()).abs().max())
        rows.append(row)
    return rows


def nvdec(device: torch.device, video: Path, frames: int = 64) -> dict[str, Any]:
    """torchcodec's CUDA decoder over ``video`` (H.264): ms per frame; else why it cannot be measured."""
    try:
        from torchcodec.decoders import VideoDecoder
    except ImportError:
        return {"status": "not measurable", "message": "torchcodec is not installed on this machine"}
    if device.type != "cuda":
        return {"status": "not measurable", "message": "no CUDA device"}
    if not video.is_file():
        return {"status": "not measurable", "message": f"no H.264 file at {video}"}
    decoder = VideoDecoder(str(video), device="cuda")
    count = min(frames, len(decoder))
    seconds = _seconds(lambda: decoder.get_frames_in_range(0, count), device, 2)
    return {"status": "ok", "frames": count, "ms_per_frame": round(seconds * 1e3 / count, 4),
            "file": str(video)}
