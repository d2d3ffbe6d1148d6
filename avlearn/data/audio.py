"""Spectrogram front-ends: waveform ``(S,)`` / ``(B, S)`` -> spectrogram ``(1, F, T)`` / ``(B, 1, F, T)``.

Four kinds, computed with :mod:`torchaudio` (CPU in DataLoader workers or on GPU batches):

``"avid_db"`` (AVID-CMA's audio input, as in facebookresearch/AVID-CMA ``LogSpectrogram``)
    Power of an ``n_fft``-point STFT (1024 at 24 kHz) with an ``n_fft``-sample periodic Hann
    window and reflect padding at the edges (librosa's default before 0.10), a 10 ms hop (240
    samples); the ``n_fft // 2 + 1`` bins are reduced to ``n_fft // 4 + 1`` (257) by keeping DC
    and averaging neighbouring pairs; then ``10 log10(max(power, 1e-10))`` dB, clamped from below
    at ``max - top_db`` (the maximum over the clip), and normalised per frequency with dataset
    statistics (``normalize: frequency``, ``stats:`` a file from ``avlearn prepare audio-stats``
    or the reference's ``audio-spectDB-24k-513-norm-stats.npz``): ``(x - mean_f) / (std_f + 1e-5)``.
    The reference lays the result out time x frequency; here it is frequency x time like every
    kind (:mod:`avlearn.models.convert_avid` transposes released kernels accordingly).
``"avid_linear"`` (ours, lighter; not AVID-CMA's front end)
    Log-power linear-frequency spectrogram: ``ln(|STFT|^2 + eps)`` with ``n_fft = 512``
    (``F = 257`` bins), a 20 ms Hann window, zero padding and a 10 ms hop. It differs from
    ``avid_db`` by 4-5 dB in the median, so weights trained on one do not transfer to the other.
``"logmel"``
    Log-power mel spectrogram: 25 ms window, 10 ms hop, ``n_mels`` HTK-scale triangular filters
    between ``f_min`` and ``f_max``.
``"kaldi_fbank"`` (CAV-MAE's audio input, as YuanGongND/cav-mae ``src/dataloader.py`` computes it)
    The waveform less its mean, then Kaldi's log mel filterbank
    (``torchaudio.compliance.kaldi.fbank`` with ``htk_compat=True, use_energy=False,
    window_type='hanning', dither=0``: ``n_mels`` bins, ``win_seconds`` (25 ms) frames every
    ``hop_seconds`` (10 ms), pre-emphasis 0.97, a 512-point FFT, filters from 20 Hz), zero-padded
    or cut at the end to ``frames`` frames (CAV-MAE: 128 bins x 1024 frames), then normalised
    (CAV-MAE: ``normalize: dataset, mean: -5.081, std: 4.4849``, AudioSet's statistics, after the
    padding as the reference). Kaldi's frames are not centred: ``1 + (S - win) // hop`` of them
    before the padding. Computed one waveform at a time (a batch is a loop).

Frames: the STFT is centred (the waveform is zero-padded by ``n_fft // 2`` on both sides) and
then cropped to ``T = max(1, S // hop)`` frames, so frame ``t`` is centred on sample
``t * hop``. Two seconds at 16 kHz give exactly ``T = 200`` (the centred STFT alone gives 201).

Normalisation (``normalize``): ``"none"``; ``"instance"`` subtracts each spectrogram's own mean
and divides by its std (over ``F`` and ``T``); ``"dataset"`` uses the fixed ``mean`` and ``std``
from the config; ``"frequency"`` one mean and std per frequency bin, read from the ``.npz`` file
``stats`` (arrays ``mean`` and ``std`` of ``F`` entries; see :func:`load_spec_stats`).

Example::

    spec = build_spectrogram(SpecConfig(kind="avid_linear", sample_rate=16000))
    spec(torch.randn(32000)).shape     # (1, 257, 200)
    spec(torch.randn(8, 32000)).shape  # (8, 1, 257, 200)
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path
from typing import Literal

import einops
import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from einops import rearrange
from torch import Tensor, nn

from avlearn.config import ConfigError, InvalidValue

__all__ = [
    "NORMALIZATIONS", "SPEC_KINDS", "STATS_FIELDS", "SpecConfig", "Spectrogram", "build_spectrogram",
    "load_spec_stats",
]

SpecKind = Literal["logmel", "avid_linear", "avid_db", "kaldi_fbank"]
Normalization = Literal["none", "instance", "dataset", "frequency"]

SPEC_KINDS: tuple[str, ...] = ("logmel", "avid_linear", "avid_db", "kaldi_fbank")
NORMALIZATIONS: tuple[str, ...] = ("none", "instance", "dataset", "frequency")
# The fields a statistics file records and a config using it must share (see load_spec_stats).
STATS_FIELDS: tuple[str, ...] = ("kind", "sample_rate", "n_fft", "win_length", "hop_length", "top_db", "eps")
_FREQ_STD_EPS = 1e-5  # added to the per-frequency std, as in AVID-CMA

# Window length in seconds when ``win_seconds`` is left as None.
_DEFAULT_WIN_SECONDS = {"avid_linear": 0.020, "logmel": 0.025, "kaldi_fbank": 0.025}


@dataclasses.dataclass(frozen=True)
class SpecConfig:
    """How to turn a waveform into a spectrogram; validated on construction.

    Attributes:
        kind: ``"avid_db"`` (AVID-CMA's dB spectrogram, ``n_fft // 4 + 1`` bins), ``"avid_linear"``
            (our log-power linear STFT, ``n_fft // 2 + 1`` bins) or ``"logmel"``.
        sample_rate: waveform sample rate in Hz.
        n_fft: FFT size; ``avid_linear`` has ``n_fft // 2 + 1`` frequency bins (257 for 512).
        win_seconds: window length; None means 20 ms (``avid_linear``), 25 ms (``logmel``) or
            ``n_fft`` samples (``avid_db``).
            The window in samples is ``round(win_seconds * sample_rate)``, capped at ``n_fft``.
        hop_seconds: hop between frames; in samples ``round(hop_seconds * sample_rate)``.
        n_mels: mel filters (``logmel`` and ``kaldi_fbank``).
        f_min: lowest mel filter edge in Hz (``logmel`` only).
        f_max: highest mel filter edge in Hz, None for ``sample_rate / 2`` (``logmel`` only).
        eps: added to the power before the log, so silence gives ``log(eps)``, not ``-inf``
            (``avid_db`` floors the power at 1e-10 instead, as librosa's ``power_to_db``).
        top_db: ``avid_db`` only: values below ``max - top_db`` dB are raised to it.
        normalize: ``"none"``, ``"instance"`` (per-spectrogram mean/std), ``"dataset"`` (``mean``,
            ``std``) or ``"frequency"`` (per-bin statistics from ``stats``).
        mean: subtracted when ``normalize == "dataset"``.
        std: divides when ``normalize == "dataset"``; must be positive.
        stats: ``.npz`` file of per-frequency ``mean`` / ``std`` (``normalize == "frequency"`` only);
            a relative path is taken from the working directory.
        frames: ``kaldi_fbank`` only (and required there): frames ``T`` of every spectrogram, zero
            frames added at the end or the last ones cut (CAV-MAE: 1024 for 10 s); 0 for the others.
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
    top_db: float = 100.0
    stats: str | None = None
    frames: int = 0

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
        if self.kind == "avid_db" and self.n_fft % 4:
            raise bad("n_fft", "must be a multiple of 4 for avid_db (bins are averaged in pairs)")
        if not self.top_db > 0:
            raise bad("top_db", "must be positive (dB below the maximum kept)")
        if (self.kind == "kaldi_fbank") != (self.frames > 0):
            raise bad("frames", "give the frames to pad or cut to (> 0) exactly when kind is 'kaldi_fbank' "
                      "(CAV-MAE: 1024)")
        if (self.normalize == "frequency") != (self.stats is not None):
            raise bad("stats", "give a statistics file exactly when normalize is 'frequency' "
                      "(make one with `avlearn prepare audio-stats`)")

    @property
    def win_length(self) -> int:
        """Window length in samples: ``round(win_seconds * sample_rate)`` capped at ``n_fft``."""
        if self.win_seconds is None and self.kind == "avid_db":
            return self.n_fft
        seconds = self.win_seconds if self.win_seconds is not None else _DEFAULT_WIN_SECONDS[self.kind]
        return max(1, min(self.n_fft, round(seconds * self.sample_rate)))

    @property
    def hop_length(self) -> int:
        """Hop between frames in samples: ``round(hop_seconds * sample_rate)``."""
        return round(self.hop_seconds * self.sample_rate)

    @property
    def num_bins(self) -> int:
        """Frequency bins ``F``: ``n_fft // 2 + 1`` (``avid_linear``), ``n_fft // 4 + 1`` (``avid_db``)
        or ``n_mels`` (``logmel``)."""
        bins = {"avid_linear": self.n_fft // 2 + 1, "avid_db": self.n_fft // 4 + 1}
        return bins.get(self.kind, self.n_mels)

    def stats_fields(self) -> dict[str, object]:
        """What a statistics file made with this front end records (:data:`STATS_FIELDS`)."""
        values = {"win_length": self.win_length, "hop_length": self.hop_length}
        return {f: values.get(f, getattr(self, f, None)) for f in STATS_FIELDS}

    def num_frames(self, num_samples: int) -> int:
        """Frames ``T`` for a waveform of ``num_samples`` samples: ``max(1, num_samples // hop)``
        (``frames`` for ``kaldi_fbank``)."""
        return self.frames or max(1, num_samples // self.hop_length)


class Spectrogram(nn.Module):
    """Log-power spectrogram of a mono waveform, as configured by :class:`SpecConfig`.

    Holds its window (and mel filterbank) as buffers, so ``.to(device)`` moves them; it has no
    parameters and no randomness, so it can run in DataLoader workers or on a GPU batch.

    Shape:
        ``wav (S,) -> (1, F, T)``; ``wav (B, S) -> (B, 1, F, T)``, with ``F = cfg.num_bins`` and
        ``T = cfg.num_frames(S)``. Each item of a batch equals the item computed alone.
    """

    freq_mean: Tensor
    freq_std: Tensor

    def __init__(self, cfg: SpecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stft: nn.Module
        if cfg.kind == "kaldi_fbank":
            self.stft = nn.Identity()  # computed by torchaudio.compliance.kaldi in forward
        elif cfg.kind in ("avid_linear", "avid_db"):
            self.stft = torchaudio.transforms.Spectrogram(
                n_fft=cfg.n_fft,
                win_length=cfg.win_length,
                hop_length=cfg.hop_length,
                power=2.0,
                center=True,
                pad_mode="reflect" if cfg.kind == "avid_db" else "constant",
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
        if cfg.normalize == "frequency" and cfg.stats is not None:
            mean, std = load_spec_stats(cfg.stats, cfg)
            self.register_buffer("freq_mean", rearrange(mean, "f -> f 1"))
            self.register_buffer("freq_std", rearrange(std, "f -> f 1"))

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
        if self.cfg.kind == "kaldi_fbank":
            spec = self._kaldi(wav)
        else:
            power = self.stft(wav)  # (..., n_fft // 2 + 1, T + 1)
            power = power[..., : self.num_frames(wav.shape[-1])]
            spec = self._decibels(power) if self.cfg.kind == "avid_db" else torch.log(power + self.cfg.eps)
        if self.cfg.normalize == "frequency":
            spec = (spec - self.freq_mean) / (self.freq_std + _FREQ_STD_EPS)
        elif self.cfg.normalize == "instance":
            mean = spec.mean(dim=(-2, -1), keepdim=True)
            std = spec.std(dim=(-2, -1), keepdim=True)
            spec = (spec - mean) / (std + 1e-5)
        elif self.cfg.normalize == "dataset":
            spec = (spec - self.cfg.mean) / self.cfg.std
        if wav.ndim == 1:
            return rearrange(spec, "f t -> 1 f t")
        return rearrange(spec, "b f t -> b 1 f t")

    def _kaldi(self, wav: Tensor) -> Tensor:
        """CAV-MAE's filterbank (module doc), one waveform at a time: ``(..., S) -> (..., F, frames)``."""
        c = self.cfg
        rows = [torchaudio.compliance.kaldi.fbank(
            (w - w.mean())[None], htk_compat=True, sample_frequency=c.sample_rate, use_energy=False,
            window_type="hanning", num_mel_bins=c.n_mels, dither=0.0, frame_shift=c.hop_seconds * 1000,
            frame_length=(c.win_seconds or _DEFAULT_WIN_SECONDS[c.kind]) * 1000)
            for w in wav.reshape(-1, wav.shape[-1])]
        fixed = [F.pad(r[: c.frames], (0, 0, 0, max(0, c.frames - r.shape[0]))) for r in rows]
        spec = rearrange(torch.stack(fixed), "n t f -> n f t")
        return spec.reshape(*wav.shape[:-1], c.n_mels, c.frames)

    def _decibels(self, power: Tensor) -> Tensor:
        """AVID-CMA's reduction and dB scale: ``(..., 2F' - 1, T) -> (..., F', T)``.

        DC is kept, the other bins are averaged in neighbouring pairs; then
        ``10 log10(max(p, 1e-10))``, raised to at least ``max - top_db`` (max over ``F`` and ``T``).
        """
        pairs = einops.reduce(power[..., 1:, :], "... (f two) t -> ... f t", "mean", two=2)
        reduced = torch.cat([power[..., :1, :], pairs], dim=-2)
        db = 10.0 * torch.log10(reduced.clamp_min(1e-10))
        floor = db.amax(dim=(-2, -1), keepdim=True) - self.cfg.top_db
        return torch.maximum(db, floor)

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


def load_spec_stats(path: str | Path, cfg: SpecConfig) -> tuple[Tensor, Tensor]:
    """Per-frequency ``(mean (F,), std (F,))`` float32 from a ``.npz`` statistics file.

    The file holds arrays ``mean`` and ``std`` of ``cfg.num_bins`` entries (what ``avlearn prepare
    audio-stats`` writes, and the layout of AVID-CMA's ``audio-spectDB-*-norm-stats.npz``). When it
    also records the front end it was made with (``spec``, JSON), that must match ``cfg`` in
    :data:`STATS_FIELDS`. Raises :class:`~avlearn.config.ConfigError` naming the file, the key
    ``spec.stats`` and the fix.
    """
    where = f"spec.stats: {path}"
    remake = "make it with `avlearn prepare audio-stats` using this spec config"
    if not Path(path).is_file():
        raise ConfigError(f"{where}: no such file; {remake}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ConfigError(
            f"{where}: not a readable .npz file ({err}); it is truncated or corrupt: {remake}"
        ) from None
    missing = [k for k in ("mean", "std") if k not in arrays]
    if missing:
        raise ConfigError(f"{where}: no array {missing} (found {sorted(arrays)}); {remake}")
    for key in ("mean", "std"):
        if arrays[key].shape != (cfg.num_bins,):
            raise ConfigError(
                f"{where}: '{key}' has shape {arrays[key].shape} but this spectrogram has {cfg.num_bins} "
                f"frequency bins (kind {cfg.kind!r}, n_fft {cfg.n_fft}); {remake}"
            )
    if "spec" in arrays:
        made_with = json.loads(str(arrays["spec"]))
        differ = {k: (made_with.get(k), v) for k, v in cfg.stats_fields().items() if made_with.get(k) != v}
        if differ:
            shown = ", ".join(f"{k}: file {a!r} vs config {b!r}" for k, (a, b) in differ.items())
            raise ConfigError(f"{where}: made with another front end ({shown}); {remake}")
    mean, std = (torch.from_numpy(arrays[k].astype(np.float32)) for k in ("mean", "std"))
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std >= 0).all()):
        raise ConfigError(f"{where}: 'mean' / 'std' hold non-finite or negative values; {remake}")
    return mean, std
