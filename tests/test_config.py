from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from avlearn.config import ConfigError, from_dict, load_config, parse_overrides


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
