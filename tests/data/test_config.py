from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avlearn.config import ConfigError, load_config
from avlearn.data.config import DataConfig, build_dataset, build_loader
from avlearn.media import write_av
from data_prep.index import index_collection

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_data_config_loads() -> None:
    cfg = load_config(DataConfig, ROOT / "avlearn/configs/data/synth.yaml")
    assert (
        cfg.spec.kind == "avid_linear"
        and cfg.video_aug.size == 112
        and cfg.video_aug.crop_scale == (0.2, 1.0)
    )


def test_misspelt_nested_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"video_aug\.sise.*Did you mean 'size'"):
        load_config(DataConfig, ROOT / "avlearn/configs/data/synth.yaml", ["video_aug.sise=96"])


def test_inconsistent_values_are_rejected() -> None:
    with pytest.raises(ConfigError, match="decode_size"):
        DataConfig(decode_size=64)
    with pytest.raises(ConfigError, match="backend"):
        load_config(DataConfig, None, ["backend=opencv"])
    with pytest.raises(ConfigError, match="data.manifest is empty"):
        build_dataset(DataConfig(), train=True)


def test_builders_give_augmented_batches(tmp_path: Path) -> None:
    rng = torch.Generator().manual_seed(0)
    for i in range(2):
        frames = (torch.rand(50, 72, 96, 3, generator=rng) * 255).to(torch.uint8).numpy()
        audio = (torch.rand(2 * 16000, generator=rng) - 0.5).numpy()
        write_av(tmp_path / f"v{i}.mp4", frames, 25, audio, 16000)
    index_collection([tmp_path], tmp_path / "m.csv", workers=1, progress=False)
    cfg = load_config(
        DataConfig,
        None,
        [
            f"manifest={tmp_path / 'm.csv'}",
            "num_workers=0",
            "batch_size=2",
            "decode_size=64",
            "video_aug.size=48",
            "num_frames=4",
        ],
    )
    batch = next(iter(build_loader(cfg, build_dataset(cfg, train=True), shuffle=False)))
    assert batch["video"].shape == (2, 3, 4, 48, 48)
    assert batch["audio"].shape == (2, 1, 257, 200)
    assert torch.isfinite(batch["audio"]).all()
