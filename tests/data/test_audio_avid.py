"""The ``avid_db`` front end against a hand-written numpy version of AVID-CMA's ``LogSpectrogram``.

The reference (facebookresearch/AVID-CMA ``datasets/preprocessing.py``) computes, for
``n_fft=512`` at 24 kHz and 100 frames/s: ``|librosa.stft(sig, n_fft=1024, hop_length=240)|^2``
(window = n_fft, periodic Hann, centred with reflect padding in the librosa of its time),
keeps DC and averages the other 512 bins in pairs (257 bins), crops to ``int(duration * 100)``
frames, ``power_to_db(top_db=100)``, ``(x - mean_f) / (std_f + 1e-5)``, then transposes to
``(1, T, F)``. It is re-written here with numpy only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from avlearn.config import ConfigError
from avlearn.data.audio import SpecConfig, Spectrogram, load_spec_stats

SR = 24000
PAPER = SpecConfig(kind="avid_db", sample_rate=SR, n_fft=1024, hop_seconds=0.01)


def reference_log_spectrogram(sig: np.ndarray, mean: np.ndarray | None = None,
                              std: np.ndarray | None = None, duration: float = 2.0) -> np.ndarray:
    """``sig (S,)`` -> ``(1, T, F)`` as AVID-CMA's LogSpectrogram(24000, n_fft=512, hop 1/100)."""
    n_fft, hop = 1024, int(0.01 * SR)
    padded = np.pad(sig.astype(np.float64), n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    n_frames = 1 + (len(padded) - n_fft) // hop
    frames = np.stack([padded[i * hop : i * hop + n_fft] * window for i in range(n_frames)], axis=1)
    power = np.abs(np.fft.rfft(frames, axis=0)) ** 2  # (513, T)
    power = np.concatenate([power[:1], power[1:].reshape(256, 2, -1).mean(1)], 0)  # (257, T)
    power = power[:, : int(duration * 100)]
    db = 10.0 * np.log10(np.maximum(1e-10, power))
    db = np.maximum(db, db.max() - 100.0)
    if mean is not None and std is not None:
        db = (db - mean[:, None]) / (std[:, None] + 1e-5)
    out: np.ndarray = db.T[None]  # (1, T, F)
    return out


def tone(freq: float, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (0.3 * np.sin(2 * math.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("kind", ["tone440", "tone5000", "noise", "quiet_noise"])
def test_avid_db_equals_the_reference(kind: str) -> None:
    rng = np.random.default_rng(0)
    sig = {
        "tone440": tone(440.0),
        "tone5000": tone(5000.0),
        "noise": rng.standard_normal(2 * SR).astype(np.float32) * 0.1,
        "quiet_noise": rng.standard_normal(2 * SR).astype(np.float32) * 1e-6,  # hits the top_db clamp
    }[kind]
    expected = torch.from_numpy(reference_log_spectrogram(sig)).float()
    got = Spectrogram(PAPER)(torch.from_numpy(sig))  # (1, F, T)
    assert got.shape == (1, 257, 200)
    # float32 STFT vs the float64 reference: bins 100+ dB below a tone's peak differ by < 0.02 dB
    torch.testing.assert_close(got.transpose(-2, -1), expected, atol=2e-2, rtol=1e-4)
    assert (got.transpose(-2, -1) - expected).abs().median() < 1e-3


def test_avid_db_peak_sits_in_the_reduced_bin() -> None:
    got = Spectrogram(PAPER)(torch.from_numpy(tone(3000.0)))[0]
    # 1024-point bins are 23.4 Hz; pairs (2i-1, 2i) form reduced bin i: 3000 Hz -> bin 128 -> 64
    assert torch.all(got[:, 5:-5].argmax(dim=0) == 64)


def _write_stats(
    path: Path, bins: int = 257, spec: SpecConfig | None = PAPER
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    mean = rng.normal(-50, 10, bins).astype(np.float32)
    std = rng.uniform(15, 22, bins).astype(np.float32)
    if spec is None:
        np.savez(path, mean=mean, std=std)
    else:
        np.savez(path, mean=mean, std=std, spec=np.array(json.dumps(spec.stats_fields())))
    return mean, std


def test_frequency_normalisation_equals_the_reference(tmp_path: Path) -> None:
    stats = tmp_path / "stats.npz"
    mean, std = _write_stats(stats, spec=None)  # the reference's files hold only mean and std
    sig = np.random.default_rng(2).standard_normal(2 * SR).astype(np.float32) * 0.05
    cfg = SpecConfig(kind="avid_db", sample_rate=SR, n_fft=1024, normalize="frequency", stats=str(stats))
    got = Spectrogram(cfg)(torch.from_numpy(sig[None]))  # (1, 1, F, T)
    expected = torch.from_numpy(reference_log_spectrogram(sig, mean, std)).float()
    torch.testing.assert_close(got[0].transpose(-2, -1), expected, atol=2e-4, rtol=1e-4)


def test_batch_equals_items() -> None:
    spec = Spectrogram(PAPER)
    wav = torch.randn(3, SR) * torch.tensor([[1e-4], [0.1], [1.0]])
    out = spec(wav)
    for i in range(3):
        torch.testing.assert_close(out[i], spec(wav[i]), atol=1e-4, rtol=1e-4)


def test_stats_of_the_wrong_bin_count_are_refused(tmp_path: Path) -> None:
    stats = tmp_path / "s129.npz"
    _write_stats(stats, bins=129, spec=None)
    with pytest.raises(ConfigError, match=r"spec\.stats: .*s129\.npz: 'mean' has shape \(129,\) but .* 257"):
        load_spec_stats(stats, PAPER)


def test_stats_of_another_front_end_are_refused(tmp_path: Path) -> None:
    stats = tmp_path / "other.npz"
    _write_stats(stats, spec=SpecConfig(kind="avid_db", sample_rate=SR, n_fft=1024, hop_seconds=0.02))
    with pytest.raises(ConfigError, match=r"other\.npz: made with another front end \(hop_length: file 480"):
        load_spec_stats(stats, PAPER)


def test_truncated_or_missing_stats_are_refused(tmp_path: Path) -> None:
    stats = tmp_path / "cut.npz"
    _write_stats(stats)
    stats.write_bytes(stats.read_bytes()[:200])
    with pytest.raises(ConfigError, match=r"cut\.npz: not a readable \.npz file"):
        load_spec_stats(stats, PAPER)
    with pytest.raises(ConfigError, match=r"nope\.npz: no such file; make it with `avlearn prepare audio-st"):
        load_spec_stats(tmp_path / "nope.npz", PAPER)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"normalize": "frequency"}, "stats"), ({"stats": "x.npz"}, "stats"), ({"n_fft": 1022}, "n_fft"),
     ({"top_db": 0.0}, "top_db")],
)
def test_bad_avid_db_config_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=rf"SpecConfig\.{field}="):
        SpecConfig(**{"kind": "avid_db", "sample_rate": SR, "n_fft": 1024, **kwargs})  # type: ignore[arg-type]
