"""Peak bf16 matrix rates and memory bandwidths of accelerators, and a matrix-product measurement.

Model FLOP utilisation (MFU) is the model's counted FLOP per second over the device's peak. The
peak is the one of :data:`PEAKS` whose key the device name contains (longest key first), else
the bf16 matrix product this run measures (:func:`measure_matmul`). Sources, per row:

* ``measured here``: an 8192 x 8192 x 8192 bf16 product through PyTorch on this workplace's
  H200 machines, 788 TFLOP/s (2026-10-28) and 769-798 (2026-11-04), mean of ten products after
  three warm-ups (``/work/.library/device/KINDS.md``); its copy rate was about 4.3 TB/s.
* ``datasheet``: the vendor's dense (no sparsity) bf16 Tensor Core rate and memory bandwidth
  (NVIDIA H100 / H200 / A100 datasheets); a datasheet peak is above what a product reaches.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

__all__ = ["PEAKS", "Peak", "lookup_peak", "measure_matmul"]


@dataclass(frozen=True)
class Peak:
    """A device's ceilings: dense bf16 matrix FLOP/s and memory bytes/s, and where they come from."""

    bf16_flops: float
    mem_bytes_per_s: float
    source: str

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


#: Device-name substring -> ceilings; the longest matching key wins ("H100 PCIe" before "H100").
PEAKS: dict[str, Peak] = {
    "H200": Peak(790e12, 4.3e12, "measured here: 8192^3 bf16 matmul 769-798 TFLOP/s, copy ~4.3 TB/s "
                 "(KINDS.md, 2026-10/11); datasheet 989 TFLOP/s dense, 4.8 TB/s"),
    "H100 PCIe": Peak(756e12, 2.0e12, "datasheet: H100 PCIe dense bf16, 2.0 TB/s"),
    "H100": Peak(989e12, 3.35e12, "datasheet: H100 SXM dense bf16, 3.35 TB/s"),
    "A100": Peak(312e12, 2.0e12, "datasheet: A100 dense bf16, ~2.0 TB/s (80 GB SXM)"),
}


def lookup_peak(device_name: str) -> Peak | None:
    """The :data:`PEAKS` row for ``device_name`` (e.g. ``"NVIDIA H200"``), or None."""
    for key in sorted(PEAKS, key=len, reverse=True):
        if key.lower() in device_name.lower():
            return PEAKS[key]
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul(device: torch.device, n: int = 8192, repeats: int = 10, warmup: int = 3) -> float:
    """FLOP/s of an ``n x n x n`` bf16 matrix product on random data (mean of ``repeats`` after
    ``warmup``), as KINDS.md measured the H200's rate."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=gen)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=gen)
    for _ in range(warmup):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0)
