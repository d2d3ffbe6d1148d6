from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from avlearn.config import (
    BASE_KEY,
    ConfigError,
    InvalidValue,
    from_dict,
    load_config,
    parse_overrides,
    resolve_config_file,
    to_dict,
)
from avlearn.data.config import DataConfig
from avlearn.data.transforms import VideoAugConfig
from avlearn.train.config import PretrainConfig
from avlearn.train.pretrain import main as pretrain_main


@dataclasses.dataclass(frozen=True)
class Optim:
    lr: float = 0.1
    name: Literal["adam", "sgd"] = "adam"


@dataclasses.dataclass(frozen=True)
class Top:
    epochs: int = 1
    optim: Optim = dataclasses.field(default_factory=Optim)
    tags: list[str] = dataclasses.field(default_factory=list)
    note: str | None = None


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\noptim:\n  lr: 0.01\n")
    cfg = load_config(Top, path, ["optim.name=sgd", "tags=[a, b]", "optim.lr=1e-3"])
    assert cfg == Top(epochs=3, optim=Optim(lr=1e-3, name="sgd"), tags=["a", "b"])
    assert isinstance(cfg.optim.lr, float)


def test_unknown_key_names_key_and_valid_ones(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lrr: 0.01\n")
    with pytest.raises(ConfigError) as err:
        load_config(Top, path)
    msg = str(err.value)
    assert "optim.lrr" in msg and "Did you mean 'lr'" in msg and "name" in msg and str(path) in msg


def test_unknown_override_key():
    with pytest.raises(ConfigError, match="epoch"):
        load_config(Top, None, ["epoch=2"])


@pytest.mark.parametrize(
    ("data", "fragment"),
    [({"epochs": "three"}, "epochs"), ({"epochs": True}, "epochs"), ({"optim": {"name": "lamb"}}, "lamb"),
     ({"optim": 3}, "optim"), ({"tags": "x"}, "tags")],
)
def test_wrong_types_rejected(data, fragment):
    with pytest.raises(ConfigError, match=fragment):
        from_dict(Top, data)


def test_override_syntax_error():
    with pytest.raises(ConfigError, match="dotted.key=value"):
        parse_overrides(["epochs"])


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config(Top, "/nonexistent/c.yaml")


# ----------------------------------------------------------------------------- base files

ROOT = Path(__file__).resolve().parents[1]
PAPER_CONFIGS = ["avid_audioset", "avid_cma_audioset", "avid_cma_kinetics400", "avid_kinetics400"]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_base_chain_deep_merges_and_replaces(tmp_path: Path) -> None:
    write(tmp_path / "c.yaml", "epochs: 1\noptim: {lr: 0.5, name: sgd}\ntags: [c1, c2]\n")
    write(tmp_path / "b.yaml", "base: c.yaml\noptim: {lr: 0.25}\n")
    top = write(tmp_path / "a.yaml", "base: b.yaml\nepochs: 3\ntags: [a]\n")
    resolved = resolve_config_file(top)
    assert resolved == {"epochs": 3, "optim": {"lr": 0.25, "name": "sgd"}, "tags": ["a"]}
    assert load_config(Top, top) == Top(epochs=3, optim=Optim(lr=0.25, name="sgd"), tags=["a"])


def test_list_of_bases_later_wins_own_keys_win_over_all(tmp_path: Path) -> None:
    write(tmp_path / "one.yaml", "epochs: 1\nnote: one\noptim: {name: sgd}\n")
    write(tmp_path / "two.yaml", "epochs: 2\noptim: {lr: 0.5}\n")
    top = write(tmp_path / "top.yaml", "base: [one.yaml, two.yaml]\nnote: top\n")
    assert load_config(Top, top) == Top(epochs=2, optim=Optim(lr=0.5, name="sgd"), note="top")


def test_bases_resolve_relative_to_the_file_that_names_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "shared/optim/fast.yaml", "lr: 0.5\n")
    write(tmp_path / "shared/common.yaml", "optim: {base: optim/fast.yaml, name: sgd}\n")
    top = write(tmp_path / "runs/deep/top.yaml", "base: ../../shared/common.yaml\nepochs: 4\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_config(Top, top) == Top(epochs=4, optim=Optim(lr=0.5, name="sgd"))


def test_section_base_extends_only_that_section(tmp_path: Path) -> None:
    write(tmp_path / "optim.yaml", "lr: 0.5\nname: sgd\n")
    top = write(tmp_path / "top.yaml", "epochs: 2\noptim:\n  base: optim.yaml\n  lr: 0.125\n")
    assert load_config(Top, top) == Top(epochs=2, optim=Optim(lr=0.125, name="sgd"))


def test_overrides_win_over_the_file_and_its_bases(tmp_path: Path) -> None:
    write(tmp_path / "b.yaml", "epochs: 1\noptim: {lr: 0.5, name: sgd}\n")
    top = write(tmp_path / "a.yaml", "base: b.yaml\noptim: {lr: 0.25}\n")
    cfg = load_config(Top, top, ["optim.lr=0.125", "epochs=7"])
    assert cfg == Top(epochs=7, optim=Optim(lr=0.125, name="sgd"))


@pytest.mark.parametrize("self_cycle", [False, True])
def test_cycle_is_reported_with_its_chain(tmp_path: Path, self_cycle: bool) -> None:
    if self_cycle:
        top = write(tmp_path / "a.yaml", "optim: {base: a.yaml}\n")
        chain = f"{top} -> {top}"
    else:
        top = write(tmp_path / "a.yaml", "base: b.yaml\n")
        write(tmp_path / "b.yaml", "base: sub/../a.yaml\n")
        chain = f"{top} -> {tmp_path / 'b.yaml'} -> {top}"
    with pytest.raises(ConfigError, match="cycle") as err:
        load_config(Top, top)
    assert chain in str(err.value)


def test_missing_base_names_the_file_that_asked(tmp_path: Path) -> None:
    write(tmp_path / "b.yaml", "optim: {base: nowhere.yaml}\n")
    top = write(tmp_path / "a.yaml", "base: b.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_config(Top, top)
    msg = str(err.value)
    assert "not found" in msg and str(tmp_path / "nowhere.yaml") in msg
    assert f"optim.base in {tmp_path / 'b.yaml'}" in msg


@pytest.mark.parametrize("value", ["3", "[a.yaml, 4]", "''"])
def test_base_must_name_files(tmp_path: Path, value: str) -> None:
    top = write(tmp_path / "a.yaml", f"base: {value}\n")
    with pytest.raises(ConfigError, match=r"base=.* is invalid: must be a YAML file path") as err:
        load_config(Top, top)
    assert str(top) in str(err.value)


def test_unknown_key_in_a_base_names_the_base_file(tmp_path: Path) -> None:
    base = write(tmp_path / "sub/b.yaml", "epochs: 2\noptim: {lrr: 0.5}\n")
    top = write(tmp_path / "a.yaml", "base: sub/b.yaml\nepochs: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(Top, top)
    msg = str(err.value)
    assert "unknown config key 'optim.lrr'" in msg and "Did you mean 'lr'" in msg
    assert msg.endswith(f"(in {base})")


def test_bad_value_names_the_file_or_override_that_set_it(tmp_path: Path) -> None:
    base = write(tmp_path / "b.yaml", "optim: {name: lamb}\n")
    top = write(tmp_path / "a.yaml", "base: b.yaml\nepochs: 2\n")
    with pytest.raises(ConfigError, match=rf"optim.name: 'lamb' is not one of .*\(in {base}\)"):
        load_config(Top, top)
    with pytest.raises(ConfigError, match=r"^epochs: expected an integer, got 'x' \(set by override epochs="):
        load_config(Top, top, ["optim.name=sgd", "epochs=x"])


def test_resolved_config_saves_without_base_and_reloads_equal(tmp_path: Path) -> None:
    cfg = load_config(PretrainConfig, ROOT / "avlearn/configs/pretrain/avid_kinetics400.yaml")
    text = yaml.safe_dump(json.loads(json.dumps(to_dict(cfg))), sort_keys=False)  # as runs write it
    saved = write(tmp_path / "config.yaml", text)
    assert BASE_KEY not in yaml.safe_load(saved.read_text())
    assert BASE_KEY not in yaml.safe_load(saved.read_text())["data"]
    assert load_config(PretrainConfig, saved) == cfg


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_configs_resolve_to_their_former_flat_files(name: str) -> None:
    """tests/fixtures/configs_flat/ holds the presets as they were before they shared base files."""
    flat = ROOT / "tests/fixtures/configs_flat" / f"{name}.yaml"
    preset = ROOT / "avlearn/configs/pretrain" / f"{name}.yaml"
    assert BASE_KEY in yaml.safe_load(preset.read_text())  # the preset does extend a base
    assert resolve_config_file(preset) == yaml.safe_load(flat.read_text())
    assert load_config(PretrainConfig, preset) == load_config(PretrainConfig, flat)


@pytest.mark.parametrize(
    ("cls", "folder"), [(PretrainConfig, "avlearn/configs/pretrain"), (DataConfig, "avlearn/configs/data")]
)
def test_every_shipped_config_loads(cls: type[Any], folder: str) -> None:
    paths = sorted((ROOT / folder).glob("*.yaml"))
    assert paths
    for path in paths:
        load_config(cls, path)


# ---------------------------------------------------------------- nested errors, dotted keys

SYNTH = ROOT / "avlearn/configs/pretrain/synth_cpu.yaml"


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("data.video_aug.hue=0.7", ["data.video_aug.hue=0.7 is invalid", "[0, 0.5]"]),
        ("optim.lr=-1", ["optim.lr=-1.0 is invalid", "must be > 0"]),
        ("model.video_arch=nope", ["model.video_arch='nope' is invalid",
                                   "r2plus1d_18, r2plus1d_18_avid, r2plus1d_small, r2plus1d_tiny"]),
        ("model.head=mpl", ["model.head='mpl' is invalid", "Did you mean 'mlp'"]),
        ("data.spec.n_fft=1", ["data.spec.n_fft=1 is invalid", "integer >= 2"]),
        ("data.audio_aug.volume=[2, 1]", ["data.audio_aug.volume=(2.0, 1.0) is invalid", "min <= max"]),
        ("data.decode_size=8", ["data.decode_size=8 is invalid", "video_aug.size (48)"]),
        ("data.fps=0", ["data.fps=0.0 is invalid", "> 0"]),
    ],
)
def test_nested_refusals_name_dotted_key_value_and_rule(override: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, SYNTH, [override])
    msg = str(err.value)
    assert all(f in msg for f in fragments), msg
    assert msg.endswith(f"(set by override {override})")
    assert err.value.key == override.split("=")[0]


def test_nested_refusal_from_a_file_names_the_file(tmp_path: Path) -> None:
    write(tmp_path / "data.yaml", "video_aug: {size: 112, flip_p: 1.5}\n")
    top = write(tmp_path / "run.yaml", f"base: {SYNTH}\ndata: {{base: data.yaml, decode_size: 128}}\n")
    with pytest.raises(ConfigError, match=r"data\.video_aug\.flip_p=1\.5 is invalid: must be a prob") as err:
        load_config(PretrainConfig, top)
    assert str(err.value).endswith(f"(in {tmp_path / 'data.yaml'})")


@dataclasses.dataclass(frozen=True)
class Strict:
    n: int = 1

    def __post_init__(self) -> None:
        if self.n > 3:
            raise ValueError(f"n is {self.n}, at most 3 please")


@dataclasses.dataclass(frozen=True)
class Holder:
    inner: Strict = dataclasses.field(default_factory=Strict)


def test_plain_value_error_of_a_nested_class_becomes_config_error_under_its_key() -> None:
    with pytest.raises(ConfigError, match=r"^inner: n is 5, at most 3 please$") as err:
        from_dict(Holder, {"inner": {"n": 5}})
    assert err.value.key == "inner"


def test_invalid_value_outside_a_config_keeps_the_class_name() -> None:
    with pytest.raises(InvalidValue, match=r"^VideoAugConfig\.hue=0\.7 is invalid"):
        VideoAugConfig(hue=0.7)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["data.video_aug.hue=0.7"], "data.video_aug.hue=0.7 is invalid: must be in [0, 0.5]"),
        (["model.video_arch=nope"], "Valid video encoder names: r2plus1d_18"),
        (["--config", "/nonexistent.yaml"], "config file not found: /nonexistent.yaml"),
    ],
)
def test_pretrain_cli_prints_one_line_without_traceback(
    capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    argv = args if args[0] == "--config" else ["--config", str(SYNTH), *args]
    assert pretrain_main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("avlearn pretrain: ")


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("epochs: 3\noptim:\n  lr: [0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(Top, path)
    msg = str(err.value)
    assert f"{path}:4:1: not valid YAML" in msg and "<unicode string>" not in msg
    assert "fix the syntax" in msg


def test_yaml_syntax_error_in_a_base_names_the_base(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("optim:\n  lr: 0.1\n   name: sgd\n")
    top = tmp_path / "top.yaml"
    top.write_text("base: base.yaml\nepochs: 2\n")
    with pytest.raises(ConfigError, match=r"base\.yaml:3:\d+: not valid YAML"):
        load_config(Top, top)


def test_empty_config_file_is_refused_not_run_with_every_default(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"empty\.yaml: the config file is empty.*pretrain/synth_cpu\.yaml"):
        load_config(Top, path, ["epochs=2"])


def test_pretrain_cli_with_empty_yaml_and_manifest_override_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert pretrain_main(["--config", str(path), f"data.manifest={tmp_path / 'm.csv'}",
                          f"run_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "config file is empty" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("rows", ["", "path,video_id,status\n"])
def test_pretrain_on_a_missing_or_empty_manifest_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: str
) -> None:
    manifest = tmp_path / "manifest.csv"
    if rows:
        manifest.write_text(rows)
    run_dir = tmp_path / "run"
    assert pretrain_main(["--config", str(SYNTH), f"data.manifest={manifest}", f"run_dir={run_dir}"]) == 2
    err = capsys.readouterr().err
    expected = "no usable video" if rows else "no such file"
    assert f"data.manifest={manifest}: {expected}" in err and "prepare index" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_pretrain_on_fewer_clips_than_a_batch_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from avlearn.media import write_av

    frames, silence = np.full((20, 48, 64, 3), 90, np.uint8), np.zeros(16000, np.float32)
    write_av(tmp_path / "a.mp4", frames, 25, silence, 16000)
    manifest = tmp_path / "hand.csv"
    manifest.write_text("path,status\na.mp4,ok\n")  # a hand-written manifest: every row kept
    assert pretrain_main(["--config", str(SYNTH), f"data.manifest={manifest}", f"run_dir={tmp_path / 'run'}",
                          "train.progress=false", "train.tensorboard=false"]) == 2
    err = capsys.readouterr().err
    assert "avlearn pretrain: 1 clips cannot fill one batch of 16" in err and "data.batch_size" in err
    assert "Traceback" not in err
