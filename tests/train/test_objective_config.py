"""Per-objective config sections, the old flat layout of run directories, and the engine's blindness
to which objective it trains."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest
import yaml

from avlearn.config import ConfigError, load_config, to_dict
from avlearn.objectives import OBJECTIVES, AVIDConfig, CMAConfig, InfoNCEConfig, VICRegConfig
from avlearn.objectives.base import Objective
from avlearn.train.config import PretrainConfig
from tests.train.pretrain_helpers import ROOT, SYNTH_CPU

# A config.yaml as runs wrote it before the per-objective sections: every objective's keys.
FLAT = {"name": "infonce", "num_negatives": 256, "temperature": 0.05, "momentum": 0.5, "loss": "nce",
        "xmodal_weight": 1.0, "within_weight": 0.0, "bank_dtype": "float32", "positive_set_size": 32,
        "num_positives": 8, "mode": "consensus", "cma_start_epoch": 0, "cma_every_epochs": 5, "init_from": ""}


@pytest.mark.parametrize(("name", "cls"), [("avid", AVIDConfig), ("cma", CMAConfig),
                                           ("infonce", InfoNCEConfig), ("vicreg", VICRegConfig)])
def test_each_objective_gets_its_own_typed_section(name: str, cls: type) -> None:
    cfg = load_config(PretrainConfig, SYNTH_CPU, [f"objective.name={name}"])
    assert type(cfg.objective.params) is cls
    assert OBJECTIVES[name].config_cls is cls


def test_a_key_of_another_objective_is_refused_with_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, SYNTH_CPU, ["objective.num_negatives=64"])  # synth_cpu: infonce
    message = str(err.value)
    assert "objective.num_negatives" in message and "of objective 'infonce': " in message
    assert "temperature" in message.split("of objective 'infonce': ")[1]
    with pytest.raises(ConfigError, match="objective.expander_dims"):
        load_config(PretrainConfig, SYNTH_CPU, ["objective.name=avid", "objective.expander_dims=[8]"])


def test_objective_keys_typed_and_checked() -> None:
    cfg = load_config(PretrainConfig, SYNTH_CPU, ["objective.name=vicreg", "objective.expander_dims=[32, 16]",
                                                  "objective.covariance_weight=2"])
    assert cfg.objective.params == VICRegConfig(covariance_weight=2.0, expander_dims=(32, 16))
    with pytest.raises(ConfigError, match="objective.loss"):
        load_config(PretrainConfig, SYNTH_CPU, ["objective.name=avid", "objective.loss=hinge"])
    with pytest.raises(ConfigError, match="shifted_audio"):  # the objective's own cross-check
        load_config(PretrainConfig, SYNTH_CPU, ["objective.name=avid", "data.shifted_audio=0.5"])
    load_config(PretrainConfig, SYNTH_CPU, ["objective.name=infonce", "data.shifted_audio=0.5"])


def test_saved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(PretrainConfig, ROOT / "demos" / "configs" / "pretrain.yaml")
    saved = to_dict(cfg)
    assert saved["objective"]["name"] == "cma" and saved["objective"]["cma_start_epoch"] == 24
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(saved, sort_keys=False))
    assert load_config(PretrainConfig, path) == cfg


def test_run_dir_in_the_flat_layout_still_loads_with_a_note(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    data = yaml.safe_load(SYNTH_CPU.read_text())
    data["objective"] = FLAT
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    with caplog.at_level(logging.WARNING):
        cfg = load_config(PretrainConfig, path)
    assert cfg.objective.name == "infonce" and cfg.objective.params == InfoNCEConfig(temperature=0.05)
    notes = [r.getMessage() for r in caplog.records if "flat layout" in r.getMessage()]
    assert len(notes) == 1 and "keep only: name, init_from, temperature" in notes[0]
    # a hand-written config with a stray key is not mistaken for the old layout
    data["objective"] = {"name": "infonce", "temperature": 0.05, "num_negatives": 256}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="objective.num_negatives"):
        load_config(PretrainConfig, path)


def test_training_code_never_asks_which_objective_it_holds() -> None:
    names = set(OBJECTIVES) | {cls.__name__ for cls in OBJECTIVES.values()}
    for path in sorted((ROOT / "avlearn" / "train").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance":
                assert not (set(ast.unparse(node).replace("(", " ").replace(",", " ").split()) & names), (
                    f"{path.name}:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.Compare) and any(
                    isinstance(c, ast.Constant) and c.value in OBJECTIVES for c in node.comparators):
                raise AssertionError(f"{path.name}:{node.lineno}: {ast.unparse(node)}")


# the objectives that keep the default forward (CAV-MAE drives its own: tests/objectives/test_cav_mae.py)
DEFAULT_FORWARD = sorted(n for n, c in OBJECTIVES.items() if c.forward_loss is Objective.forward_loss)


def test_most_objectives_keep_the_default_forward() -> None:
    assert {"avid", "cma", "infonce", "vicreg"} <= set(DEFAULT_FORWARD)


@pytest.mark.parametrize("name", DEFAULT_FORWARD)
def test_default_forward_loss_is_one_forward_then_compute(name: str) -> None:
    """The default :meth:`Objective.forward_loss`: the model once, on the batch, then ``compute``."""
    import torch

    from avlearn.models.registry import ModelConfig, build_av_model
    from avlearn.objectives import ObjectiveContext

    torch.manual_seed(0)
    model = build_av_model(ModelConfig(video_arch="r2plus1d_tiny", audio_arch="avid_spec_cnn9_tiny",
                                       embed_dim=16, proj_hidden=32))
    cls = OBJECTIVES[name]
    params = cls.config_cls(num_negatives=8) if name in ("avid", "cma") else cls.config_cls()
    objective = cls.build(params, ObjectiveContext(num_items=40, embed_dim=16))
    objective.on_epoch_start(0)  # CMA: its positive sets
    gen = torch.Generator().manual_seed(1)
    batch = {"video": torch.randn(4, 3, 4, 32, 32, generator=gen),
             "audio": torch.randn(4, 1, 40, 100, generator=gen), "index": torch.tensor([0, 3, 6, 9])}
    calls: list[dict[str, object]] = []

    def net(*args: torch.Tensor, **kwargs: object) -> object:
        calls.append(kwargs)
        return model(*args, **kwargs)

    torch.manual_seed(2)  # bank objectives sample negatives
    loss, logs, out = objective.forward_loss(net, batch)
    torch.manual_seed(2)
    ref_loss, ref_logs = objective.compute(model(batch["video"], batch["audio"],
                                                 normalize=cls.normalize_embeddings), batch["index"])
    assert calls == [{"audio_shifted": None, "normalize": cls.normalize_embeddings}]
    torch.testing.assert_close(loss, ref_loss)
    assert set(logs) == set(ref_logs) and out.video_emb.shape == (4, 16)
