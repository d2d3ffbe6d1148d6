"""Spectrogram front-ends: waveform ``(S,)`` / ``(B, S)`` -> spectrogram ``(1, F, T)`` / ``(B, 1, F, T)``.

Two kinds, both computed with :mod:`torchaudio` (CPU in DataLoader workers or on GPU batches):

``"avid_linear"`` (AVID-CMA's audio input)
    Log-power linear-frequency spectrogram: ``log(|STFT|^2 + eps)`` with ``n_fft = 512``
    (``F = 257`` bins), a 20 ms Hann window and a 10 ms hop. AVID-CMA fed its audio network 2 s
    of audio this way (it used 24 kHz audio; the window and hop scale with ``sample_rate``).
``"logmel"``
    Log-power mel spectrogram: 25 ms window, 10 ms hop, ``n_mels`` HTK-scale triangular filters
    between ``f_min`` and ``f_max``.

Frames: the STFT is centred (the waveform is zero-padded by ``n_fft // 2`` on both sides) and
then cropped to ``T = max(1, S // hop)`` frames, so frame ``t`` is centred on sample
``t * hop``. Two seconds at 16 kHz give exactly ``T = 200`` (the centred STFT alone gives 201).

Normalisation (``normalize``): ``"none"``; ``"instance"`` subtracts each spectrogram's own mean
and divides by its std (over ``F`` and ``T``); ``"dataset"`` uses the fixed ``mean`` and ``std``
from the config.

Example::

    spec = build_spectrogram(SpecConfig(kind="avid_linear", sample_rate=16000))
    spec(torch.randn(32000)).shape     # (1, 257, 200)
    spec(torch.randn(8, 32000)).shape  # (8, 1, 257, 200)
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torchaudio
from einops import rearrange
from torch import Tensor, nn

from avlearn.config import InvalidValue

__all__ = ["NORMALIZATIONS", "SPEC_KINDS", "SpecConfig", "Spectrogram", "build_spectrogram"]

SpecKind = Literal["logmel", "avid_linear"]
Normalization = Literal["none", "instance", "dataset"]

SPEC_KINDS: tuple[str, ...] = ("logmel", "avid_linear")
NORMALIZATIONS: tuple[str, ...] = ("none", "instance", "dataset")

# Window length in seconds when ``win_seconds`` is left as None.
_DEFAULT_WIN_SECONDS = {"avid_linear": 0.020, "logmel": 0.025}


@dataclasses.dataclass(frozen=True)
class SpecConfig:
    """How to turn a waveform into a spectrogram; validated on construction.

    Attributes:
        kind: ``"avid_linear"`` (log-power linear STFT, ``n_fft // 2 + 1`` bins) or ``"logmel"``.
        sample_rate: waveform sample rate in Hz.
        n_fft: FFT size; ``avid_linear`` has ``n_fft // 2 + 1`` frequency bins (257 for 512).
        win_seconds: window length; None means 20 ms (``avid_linear``) or 25 ms (``logmel``).
            The window in samples is ``round(win_seconds * sample_rate)``, capped at ``n_fft``.
        hop_seconds: hop between frames; in samples ``round(hop_seconds * sample_rate)``.
        n_mels: mel filters (``logmel`` only).
        f_min: lowest mel filter edge in Hz (``logmel`` only).
        f_max: highest mel filter edge in Hz, None for ``sample_rate / 2`` (``logmel`` only).
        eps: added to the power before the log, so silence gives ``log(eps)``, not ``-inf``.
        normalize: ``"none"``, ``"instance"`` (per-spectrogram mean/std) or ``"dataset"``.
        mean: subtracted when ``normalize == "dataset"``.
        std: divides when ``normalize == "dataset"``; must be positive.
    """

    kind: SpecKind = "avid_linear"
    sample_rate: int = 16000
    n_fft: int = 512
    win_seconds: float | None = None
    hop_seconds: float = 0.010
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float | None = None
    eps: float = 1e-6
    normalize: Normalization = "none"
    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> InvalidValue:
            return InvalidValue(field, getattr(self, field), why, "SpecConfig")

        if self.kind not in SPEC_KINDS:
            raise bad("kind", f"choose one of {list(SPEC_KINDS)}")
        if self.normalize not in NORMALIZATIONS:
            raise bad("normalize", f"choose one of {list(NORMALIZATIONS)}")
        if not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
            raise bad("sample_rate", "must be a positive integer (Hz)")
        if not isinstance(self.n_fft, int) or self.n_fft < 2:
            raise bad("n_fft", "must be an integer >= 2")
        if self.win_seconds is not None and self.win_seconds <= 0:
            raise bad("win_seconds", "must be positive, or None for the kind's default")
        if self.win_seconds is not None and round(self.win_seconds * self.sample_rate) < 1:
            raise bad("win_seconds", "gives a window shorter than one sample")
        if self.hop_seconds <= 0 or round(self.hop_seconds * self.sample_rate) < 1:
            raise bad("hop_seconds", "must give a hop of at least one sample")
        if not isinstance(self.n_mels, int) or self.n_mels < 1:
            raise bad("n_mels", "must be a positive integer")
        nyquist = self.sample_rate / 2
        if not 0 <= self.f_min < nyquist:
            raise bad("f_min", f"must be in [0, {nyquist}) Hz (half the sample rate)")
        if self.f_max is not None and not self.f_min < self.f_max <= nyquist:
            raise bad("f_max", f"must be in (f_min={self.f_min}, {nyquist}] Hz, or None for {nyquist}")
        if self.eps <= 0:
            raise bad("eps", "must be positive (it keeps log(power) finite on silence)")
        if self.std <= 0:
            raise bad("std", "must be positive (it divides the spectrogram)")

    @property
    def win_length(self) -> int:
        """Window length in samples: ``round(win_seconds * sample_rate)`` capped at ``n_fft``."""
        seconds = self.win_seconds if self.win_seconds is not None else _DEFAULT_WIN_SECONDS[self.kind]
        return max(1, min(self.n_fft, round(seconds * self.sample_rate)))

    @property
    def hop_length(self) -> int:
        """Hop between frames in samples: ``round(hop_seconds * sample_rate)``."""
        return round(self.hop_seconds * self.sample_rate)

    @property
    def num_bins(self) -> int:
        """Frequency bins ``F``: ``n_fft // 2 + 1`` (``avid_linear``) or ``n_mels`` (``logmel``)."""
        return self.n_fft // 2 + 1 if self.kind == "avid_linear" else self.n_mels

    def num_frames(self, num_samples: int) -> int:
        """Frames ``T`` for a waveform of ``num_samples`` samples: ``max(1, num_samples // hop)``."""
        return max(1, num_samples // self.hop_length)


class Spectrogram(nn.Module):
    """Log-power spectrogram of a mono waveform, as configured by :class:`SpecConfig`.

    Holds its window (and mel filterbank) as buffers, so ``.to(device)`` moves them; it has no
    parameters and no randomness, so it can run in DataLoader workers or on a GPU batch.

    Shape:
        ``wav (S,) -> (1, F, T)``; ``wav (B, S) -> (B, 1, F, T)``, with ``F = cfg.num_bins`` and
        ``T = cfg.num_frames(S)``. Each item of a batch equals the item computed alone.
    """

    def __init__(self, cfg: SpecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stft: nn.Module
        if cfg.kind == "avid_linear":
            self.stft = torchaudio.transforms.Spectrogram(
                n_fft=cfg.n_fft,
                win_length=cfg.win_length,
                hop_length=cfg.hop_length,
                power=2.0,
                center=True,
                pad_mode="constant",
            )
        else:
            self.stft = torchaudio.transforms.MelSpectrogram(
                sample_rate=cfg.sample_rate,
                n_fft=cfg.n_fft,
                win_length=cfg.win_length,
                hop_length=cfg.hop_length,
                f_min=cfg.f_min,
                f_max=cfg.f_max,
                n_mels=cfg.n_mels,
                power=2.0,
                center=True,
                pad_mode="constant",
                mel_scale="htk",
            )

    @property
    def num_bins(self) -> int:
        """Frequency bins ``F`` of the output."""
        return self.cfg.num_bins

    def num_frames(self, num_samples: int) -> int:
        """Time frames ``T`` of the output for a waveform of ``num_samples`` samples."""
        return self.cfg.num_frames(num_samples)

    def forward(self, wav: Tensor) -> Tensor:
        """Spectrogram of one waveform or a batch.

        Args:
            wav: waveform ``(S,)`` or ``(B, S)``; integer dtypes are converted to float32.

        Shape:
            ``(S,) -> (1, F, T)``; ``(B, S) -> (B, 1, F, T)``.
        """
        if wav.ndim not in (1, 2):
            raise ValueError(
                f"Spectrogram expects a mono waveform (S,) or a batch (B, S), got shape {tuple(wav.shape)}"
            )
        if not wav.is_floating_point():
            wav = wav.float()
        power = self.stft(wav)  # (..., F, T + 1)
        power = power[..., : self.num_frames(wav.shape[-1])]
        spec = torch.log(power + self.cfg.eps)
        if self.cfg.normalize == "instance":
            mean = spec.mean(dim=(-2, -1), keepdim=True)
            std = spec.std(dim=(-2, -1), keepdim=True)
            spec = (spec - mean) / (std + 1e-5)
        elif self.cfg.normalize == "dataset":
            spec = (spec - self.cfg.mean) / self.cfg.std
        if wav.ndim == 1:
            return rearrange(spec, "f t -> 1 f t")
        return rearrange(spec, "b f t -> b 1 f t")

    def extra_repr(self) -> str:
        c = self.cfg
        return (
            f"kind={c.kind!r}, sample_rate={c.sample_rate}, n_fft={c.n_fft}, win={c.win_length}, "
            f"hop={c.hop_length}, bins={c.num_bins}, normalize={c.normalize!r}"
        )


def build_spectrogram(cfg: SpecConfig) -> Spectrogram:
    """The spectrogram front-end a :class:`SpecConfig` describes.

    Shape:
        ``(S,) -> (1, F, T)`` or ``(B, S) -> (B, 1, F, T)``; see :class:`Spectrogram`.
    """
    return Spectrogram(cfg)
