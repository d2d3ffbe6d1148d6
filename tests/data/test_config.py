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


def test_missing_unreadable_or_unusable_manifest_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(ConfigError, match=rf"data\.manifest={missing}: no such file.*prepare index") as err:
        build_dataset(DataConfig(manifest=str(missing)), train=True)
    assert err.value.key == "data.manifest"
    bad = tmp_path / "bad.csv"
    bad.write_text("path,colour\nv.mp4,red\n")
    with pytest.raises(ConfigError, match=r"data\.manifest=.*bad\.csv:2: manifest has unknown column"):
        build_dataset(DataConfig(manifest=str(bad)), train=True)
    empty = tmp_path / "empty.csv"
    empty.write_text("path,status\n")
    with pytest.raises(ConfigError, match=r"--manifest=.*empty\.csv: no usable video .*0 rows"):
        build_dataset(DataConfig(), train=False, manifest=empty, key="--manifest")


def test_manifest_with_only_path_and_status_keeps_its_videos(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frames = torch.full((20, 48, 64, 3), 90, dtype=torch.uint8).numpy()
    audio = 0.1 * torch.ones(16000).numpy()
    write_av(tmp_path / "a.mp4", frames, 25, audio, 16000)
    write_av(tmp_path / "b.mp4", frames, 25, audio, 16000)
    manifest = tmp_path / "hand.csv"
    manifest.write_text("path,status\na.mp4,ok\nb.mp4,ok\n")
    cfg = load_config(DataConfig, None, [f"manifest={manifest}", "decode_size=48", "video_aug.size=32",
                                         "num_frames=4", "num_workers=0"])
    with caplog.at_level("WARNING"):
        ds = build_dataset(cfg, train=False)
    assert ds.num_videos == 2  # not "dropped 2 without a video track"
    assert "has no has_video or has_audio column" in caplog.text
    assert ds[1]["video"].shape[1] == 4


def test_fps_choices_are_for_pretraining_only() -> None:
    from avlearn.train.finetune import FinetuneConfig
    from avlearn.train.linear_probe import ProbeConfig

    with pytest.raises(ConfigError, match="fps_choices"):
        DataConfig(fps_choices=[4.0, -1.0])
    assert DataConfig(fps_choices=[4.0, 16.0]).fps_choices == [4.0, 16.0]
    for cls in (FinetuneConfig, ProbeConfig):
        with pytest.raises(ConfigError, match="data.fps_choices.*pretraining") as err:
            load_config(cls, None, ["data.fps_choices=[4, 16]"])
        assert err.value.key == "data.fps_choices"
