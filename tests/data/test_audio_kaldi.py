"""The ``kaldi_fbank`` spectrogram kind: CAV-MAE's audio front end, against torchaudio's Kaldi filterbank
computed as the reference's dataloader calls it."""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio

from avlearn.data.audio import SpecConfig, build_spectrogram

SR = 16000
CAV_MAE = {"kind": "kaldi_fbank", "n_mels": 128, "normalize": "dataset", "mean": -5.081, "std": 4.4849}


def _waveform(seconds: float = 1.0, seed: int = 0) -> torch.Tensor:
    """A 440 Hz tone with noise and a DC offset, in [-1, 1] as torchaudio.load gives it."""
    t = torch.arange(round(seconds * SR), dtype=torch.float64) / SR
    noise = torch.randn(t.shape[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (0.4 * torch.sin(2 * math.pi * 440 * t) + 0.05 * noise + 0.1).float()


def _reference(wav: torch.Tensor, frames: int) -> torch.Tensor:
    """cav-mae ``_wav2fbank`` and ``__getitem__`` (no augmentation): ``(frames, 128)`` normalised."""
    wav = wav[None] - wav.mean()
    fbank = torchaudio.compliance.kaldi.fbank(wav, htk_compat=True, sample_frequency=SR, use_energy=False,
                                              window_type="hanning", num_mel_bins=128, dither=0.0,
                                              frame_shift=10)
    p = frames - fbank.shape[0]
    fbank = torch.nn.ZeroPad2d((0, 0, 0, p))(fbank) if p > 0 else fbank[:frames]
    return (fbank - -5.081) / 4.4849


@pytest.mark.parametrize("frames", [128, 64])  # 1 s gives 98 frames: padded, then cut
def test_equals_the_reference_s_filterbank(frames: int) -> None:
    wav = _waveform()
    spec = build_spectrogram(SpecConfig(**CAV_MAE, frames=frames))  # type: ignore[arg-type]
    out = spec(wav)
    assert out.shape == (1, 128, frames) and spec.num_frames(wav.shape[0]) == frames
    torch.testing.assert_close(out[0], _reference(wav, frames).T, rtol=0, atol=1e-5)
    if frames > 98:  # padded frames are zeros before the normalisation, as the reference's
        torch.testing.assert_close(out[0, :, 98:], torch.full((128, frames - 98), 5.081 / 4.4849))


def test_a_batch_is_its_items() -> None:
    spec = build_spectrogram(SpecConfig(**CAV_MAE, frames=100))  # type: ignore[arg-type]
    batch = torch.stack([_waveform(seed=0), _waveform(seed=1)])
    out = spec(batch)
    assert out.shape == (2, 1, 128, 100)
    torch.testing.assert_close(out[1], spec(batch[1]))


def test_frames_go_with_the_kind() -> None:
    with pytest.raises(ValueError, match=r"SpecConfig\.frames=0 .*kaldi_fbank"):
        SpecConfig(kind="kaldi_fbank")
    with pytest.raises(ValueError, match=r"SpecConfig\.frames=10"):
        SpecConfig(kind="logmel", frames=10)
