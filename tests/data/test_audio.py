from __future__ import annotations

import math

import pytest
import torch
import torchaudio

from avlearn.data.audio import SpecConfig, Spectrogram, build_spectrogram

SR = 16000


def tone(freq: float, seconds: float = 2.0, sr: int = SR) -> torch.Tensor:
    t = torch.arange(round(seconds * sr), dtype=torch.float64) / sr
    return (0.5 * torch.sin(2 * math.pi * freq * t)).float()


@pytest.mark.parametrize(("kind", "bins"), [("avid_linear", 257), ("logmel", 64)])
def test_shapes_for_both_ranks(kind: str, bins: int) -> None:
    spec = build_spectrogram(SpecConfig(kind=kind, sample_rate=SR))  # type: ignore[arg-type]
    assert spec.num_bins == bins
    assert spec.num_frames(32000) == 200
    assert spec(torch.randn(32000)).shape == (1, bins, 200)
    assert spec(torch.randn(3, 32000)).shape == (3, 1, bins, 200)
    assert spec(torch.randn(3, 16050)).shape == (3, 1, bins, 100)


def test_avid_linear_window_and_hop_scale_with_sample_rate() -> None:
    cfg = SpecConfig(kind="avid_linear", sample_rate=24000)
    assert (cfg.win_length, cfg.hop_length, cfg.num_bins) == (480, 240, 257)
    assert Spectrogram(cfg)(torch.randn(48000)).shape == (1, 257, 200)
    assert SpecConfig(kind="logmel", sample_rate=SR).win_length == 400
    assert SpecConfig(kind="avid_linear", sample_rate=48000).win_length == 512  # capped at n_fft


@pytest.mark.parametrize("freq", [500.0, 1000.0, 3000.0, 6250.0])
def test_linear_tone_peaks_in_its_bin(freq: float) -> None:
    cfg = SpecConfig(kind="avid_linear", sample_rate=SR)
    out = Spectrogram(cfg)(tone(freq))[0]  # (F, T)
    peak_bins = out[:, 5:-5].argmax(dim=0)  # away from the zero-padded edges
    assert torch.all(peak_bins == round(freq / SR * cfg.n_fft))


@pytest.mark.parametrize("mel_bin", [10, 30, 50])
def test_logmel_tone_peaks_in_nearest_centre(mel_bin: int) -> None:
    cfg = SpecConfig(kind="logmel", sample_rate=SR, n_mels=64)
    # HTK mel centres: n_mels + 2 points equally spaced in mel between f_min and f_max
    mel_max = 2595 * math.log10(1 + (SR / 2) / 700)
    mels = torch.linspace(0, mel_max, cfg.n_mels + 2, dtype=torch.float64)
    centres = 700 * (10 ** (mels / 2595) - 1)
    freq = float(centres[mel_bin + 1])  # centre of filter `mel_bin`
    out = Spectrogram(cfg)(tone(freq))[0]
    assert torch.all(out[:, 5:-5].argmax(dim=0) == mel_bin)


def test_linear_matches_torchaudio_log_power() -> None:
    wav = torch.randn(8000)
    cfg = SpecConfig(kind="avid_linear", sample_rate=SR, eps=1e-6)
    ref = torchaudio.transforms.Spectrogram(
        n_fft=512, win_length=320, hop_length=160, power=2.0, pad_mode="constant"
    )(wav)
    torch.testing.assert_close(Spectrogram(cfg)(wav)[0], torch.log(ref[:, :50] + 1e-6))


@pytest.mark.parametrize("kind", ["avid_linear", "logmel"])
@pytest.mark.parametrize("normalize", ["none", "instance", "dataset"])
def test_silence_is_finite(kind: str, normalize: str) -> None:
    cfg = SpecConfig(kind=kind, normalize=normalize, mean=-5.0, std=2.0)  # type: ignore[arg-type]
    out = Spectrogram(cfg)(torch.zeros(2, 16000))
    assert torch.isfinite(out).all()
    if normalize == "none":
        torch.testing.assert_close(out, torch.full_like(out, math.log(cfg.eps)))


@pytest.mark.parametrize("kind", ["avid_linear", "logmel"])
def test_instance_norm_is_zero_mean_unit_std(kind: str) -> None:
    cfg = SpecConfig(kind=kind, normalize="instance")  # type: ignore[arg-type]
    out = Spectrogram(cfg)(torch.randn(3, 16000) * torch.tensor([[0.01], [1.0], [10.0]]))
    mean = out.mean(dim=(-2, -1))
    std = out.std(dim=(-2, -1))
    torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-4, rtol=0)
    torch.testing.assert_close(std, torch.ones_like(std), atol=1e-3, rtol=0)


def test_dataset_norm_uses_config_statistics() -> None:
    wav = torch.randn(16000)
    plain = Spectrogram(SpecConfig())(wav)
    normed = Spectrogram(SpecConfig(normalize="dataset", mean=-3.0, std=4.0))(wav)
    torch.testing.assert_close(normed, (plain + 3.0) / 4.0)


@pytest.mark.parametrize("kind", ["avid_linear", "logmel"])
@pytest.mark.parametrize("normalize", ["none", "instance"])
def test_batch_equals_per_item(kind: str, normalize: str) -> None:
    spec = Spectrogram(SpecConfig(kind=kind, normalize=normalize))  # type: ignore[arg-type]
    wav = torch.randn(4, 20000)
    batch = spec(wav)
    for i in range(4):
        torch.testing.assert_close(batch[i], spec(wav[i]), atol=1e-4, rtol=1e-4)


def test_integer_waveform_is_accepted() -> None:
    out = Spectrogram(SpecConfig())((torch.randn(4000) * 1000).to(torch.int16))
    assert out.dtype == torch.float32 and out.shape == (1, 257, 25)


def test_bad_rank_raises() -> None:
    with pytest.raises(ValueError, match=r"\(B, S\)"):
        Spectrogram(SpecConfig())(torch.randn(2, 1, 16000))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "mfcc"}, "kind"),
        ({"normalize": "batch"}, "normalize"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"n_fft": 1}, "n_fft"),
        ({"hop_seconds": 0.0}, "hop_seconds"),
        ({"win_seconds": -0.02}, "win_seconds"),
        ({"n_mels": 0}, "n_mels"),
        ({"f_min": 9000.0}, "f_min"),
        ({"f_max": 9000.0}, "f_max"),
        ({"eps": 0.0}, "eps"),
        ({"std": 0.0}, "std"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=rf"SpecConfig\.{field}="):
        SpecConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_choice_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="avid_linear"):
        SpecConfig(kind="mfcc")  # type: ignore[arg-type]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu() -> None:
    spec = Spectrogram(SpecConfig(kind="logmel"))
    wav = torch.randn(2, 16000)
    torch.testing.assert_close(spec.cuda()(wav.cuda()).cpu(), spec.cpu()(wav), atol=1e-3, rtol=1e-3)
