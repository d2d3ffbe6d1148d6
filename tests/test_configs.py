"""The shipped configs (``avlearn/configs``): found by name from any folder, each loads typed."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from avlearn.config import ConfigError, load_config
from avlearn.configs import resolve_config, shipped_configs, shipped_root

ROOT = Path(__file__).resolve().parents[1]

# first folder of a shipped config's name (or the demo's file stem) -> "module:ConfigClass"
CONFIG_CLASSES = {
    "data": "avlearn.data.config:DataConfig",
    "pretrain": "avlearn.train.config:PretrainConfig",
    "finetune": "avlearn.train.finetune:FinetuneConfig",
    "probe": "avlearn.train.linear_probe:ProbeConfig",
}


def config_class(kind: str) -> Any:
    module, name = CONFIG_CLASSES[kind].split(":")
    return getattr(importlib.import_module(module), name)


def test_shipped_configs_are_the_checkout_files() -> None:
    assert shipped_root() == ROOT / "avlearn" / "configs"
    on_disk = sorted(p.relative_to(shipped_root()).as_posix() for p in shipped_root().rglob("*.yaml"))
    assert shipped_configs() == on_disk and "pretrain/synth_cpu.yaml" in on_disk


@pytest.mark.parametrize("name", shipped_configs())
def test_every_shipped_config_loads_by_name_from_another_folder(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cls = config_class(name.split("/")[0])
    for spelling in (name, f"configs/{name}", f"avlearn/configs/{name}"):
        assert resolve_config(spelling) == shipped_root() / name
        assert load_config(cls, spelling) == load_config(cls, shipped_root() / name)


@pytest.mark.parametrize("name", ["finetune.yaml", "pretrain.yaml", "probe.yaml"])
def test_demo_configs_load(name: str) -> None:
    from demos.demo_stages import CONFIGS

    load_config(config_class(name.removesuffix(".yaml")), CONFIGS / name)


def test_an_existing_file_wins_over_a_shipped_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from avlearn.data.config import DataConfig

    local = tmp_path / "configs" / "data" / "synth.yaml"
    local.parent.mkdir(parents=True)
    local.write_text("batch_size: 3\n")
    monkeypatch.chdir(tmp_path)
    assert resolve_config("configs/data/synth.yaml") == Path("configs/data/synth.yaml")
    assert load_config(DataConfig, "configs/data/synth.yaml").batch_size == 3
    assert load_config(DataConfig, "data/synth.yaml").batch_size != 3  # the shipped one


@pytest.mark.parametrize("name", ["configs/pretrain/nope.yaml", "/abs/pretrain/synth_cpu.yaml",
                                  "../configs/pretrain/synth_cpu.yaml", "configs"])
def test_unknown_name_names_itself_and_the_shipped_configs(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from avlearn.data.config import DataConfig

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="config file not found") as err:
        load_config(DataConfig, name)
    assert name in str(err.value) and "pretrain/synth_cpu.yaml" in str(err.value)


def test_the_library_imports_no_demo() -> None:
    code = ("import sys, avlearn, avlearn.cli, avlearn.config, avlearn.configs; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'demos'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
