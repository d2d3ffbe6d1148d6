"""``prepare audio-stats``: per-frequency mean/std of the raw spectrogram over a real tiny collection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avlearn.config import ConfigError
from avlearn.data.audio import SpecConfig, Spectrogram, load_spec_stats
from avlearn.data.decode import read_audio
from avlearn.data.manifest import read_manifest
from avlearn.media import write_av
from data_prep.audio_stats import main
from data_prep.index import index_collection
from tests.data_prep.odd_media import frames

SR = 24000
PAPER = SpecConfig(kind="avid_db", sample_rate=SR, n_fft=1024, hop_seconds=0.01)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stats_collection")
    t = np.arange(int(2.5 * SR)) / SR
    for i, freq in enumerate((300.0, 1200.0, 4000.0)):
        wav = (0.2 * np.sin(2 * np.pi * freq * t) + 0.01 * np.random.default_rng(i).standard_normal(t.size))
        write_av(root / f"v{i}.mp4", frames(20, 32, 32), 8, wav.astype(np.float32), SR)
    write_av(root / "silent_video.mp4", frames(20, 32, 32), 8)  # no audio track: skipped
    out = root / "manifest.csv"
    index_collection(root, out, workers=1, progress=False)
    return out


def test_stats_equal_a_direct_computation(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "stats.npz"
    args = [str(manifest), "--out", str(out), "--workers", "1", "--quiet", "--clips-per-video", "2"]
    assert main(args) == 0
    rows = [r for r in read_manifest(manifest) if r.has_audio]
    assert len(rows) == 3
    spec = Spectrogram(PAPER)
    columns = []
    for row in rows:
        last = row.duration - 2.0
        for start in (last * 0.25, last * 0.75):  # two evenly spaced windows
            columns.append(spec(read_audio(row.path, start, 2.0, SR))[0].double().numpy())
    direct = np.concatenate(columns, axis=1)  # (F, frames)
    with np.load(out) as data:
        assert int(data["count"]) == direct.shape[1] == 3 * 2 * 200
        assert int(data["files"]) == 3
        np.testing.assert_allclose(data["mean"], direct.mean(axis=1), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(data["std"], direct.std(axis=1, ddof=1), rtol=1e-4, atol=1e-4)
    mean, std = load_spec_stats(out, SpecConfig(kind="avid_db", sample_rate=SR, n_fft=1024,
                                                normalize="frequency", stats=str(out)))
    assert mean.shape == std.shape == (257,)
    normed = Spectrogram(SpecConfig(kind="avid_db", sample_rate=SR, n_fft=1024, normalize="frequency",
                                    stats=str(out)))(torch.from_numpy(np.zeros(SR, np.float32)))
    assert torch.isfinite(normed).all()


def test_a_config_with_another_stft_refuses_the_file(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "stats.npz"
    assert main([str(manifest), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    other = SpecConfig(kind="avid_db", sample_rate=SR, n_fft=1024, hop_seconds=0.02, normalize="frequency",
                       stats=str(out))
    with pytest.raises(ConfigError, match=r"another front end \(hop_length: file 240 vs config 480"):
        Spectrogram(other)


def test_bad_override_is_a_clear_error(
    manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(manifest), "--out", str(tmp_path / "s.npz"), "--quiet", "n_fft=1022"]) == 2
    assert "data.spec.n_fft" in capsys.readouterr().err
