"""WithLocalizer: a learned localizer trained around any objective, behind the Objective interface."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from avlearn.config import ConfigError
from avlearn.localization.export import load_localizer, localizer_path
from avlearn.localization.learned import localizer_audio, localizer_grid
from avlearn.localization.objective import LocalizationConfig, WithLocalizer
from avlearn.models.av import AVModel
from avlearn.models.registry import ModelConfig, build_av_model
from avlearn.objectives import OBJECTIVES, AVIDConfig, AVIDLoss, Objective, ObjectiveContext, VICRegConfig
from avlearn.objectives.localization import localization_loss

TINY = ModelConfig(video_arch="r2plus1d_tiny", audio_arch="avid_spec_cnn9_tiny", embed_dim=16, proj_hidden=32)
INNER: dict[str, Any] = {"avid": AVIDConfig(num_negatives=8), "vicreg": VICRegConfig(expander_dims=(24,))}


def _parts(name: str, **loc: Any) -> tuple[AVModel, Objective, WithLocalizer]:
    torch.manual_seed(0)
    model = build_av_model(TINY)
    inner = OBJECTIVES[name].build(INNER[name], ObjectiveContext(num_items=20, embed_dim=16, seed=0))
    wrapped = LocalizationConfig(**{"weight": 0.5, "embed_dim": 8, **loc}).wrap(inner, model)
    assert isinstance(wrapped, WithLocalizer)
    return model, inner, wrapped


def _batch(b: int = 4, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"video": torch.randn(b, 3, 4, 32, 32, generator=gen),
            "audio": torch.randn(b, 1, 40, 100, generator=gen), "index": torch.arange(b) * 3}


@pytest.mark.parametrize("name", ["avid", "vicreg"])
def test_loss_is_the_objectives_plus_weight_times_the_localization_loss(name: str) -> None:
    model, inner, wrapped = _parts(name, temperature=0.1, top_fraction=0.5)
    net, batch = wrapped.network(model), _batch()
    assert [*net.parameters()] == [*model.parameters(), *wrapped.localizer.parameters()]  # optimiser order
    torch.manual_seed(5)  # AVID samples its negatives
    loss, logs, out = wrapped.forward_loss(net, batch)

    torch.manual_seed(5)  # by hand, on the same forward
    ref = model(batch["video"], batch["audio"], normalize=inner.normalize_embeddings)
    inner_loss, inner_logs = inner.compute(ref, batch["index"])
    grid_emb, audio_emb = wrapped.localizer.project(localizer_grid(ref), localizer_audio(ref, "feat"))
    loc_loss, loc_logs = localization_loss(grid_emb, audio_emb, 0.1, 0.5)
    torch.testing.assert_close(out.video_emb, ref.video_emb)
    torch.testing.assert_close(loss, inner_loss + 0.5 * loc_loss)
    assert set(logs) == {*inner_logs, "objective_loss", *(f"loc/{k}" for k in loc_logs)}
    torch.testing.assert_close(logs["objective_loss"], inner_logs["loss"])
    torch.testing.assert_close(logs["loss"], loss.detach())

    loss.backward()  # the localizer and the encoders both learn from the total
    assert all(p.grad is not None for p in wrapped.localizer.parameters())
    assert model.video_encoder.parameters().__next__().grad is not None


@pytest.mark.parametrize("name", ["avid", "vicreg"])
def test_checkpoint_entries_keep_the_objectives_and_add_the_localizers(name: str) -> None:
    model, inner, wrapped = _parts(name)
    state = wrapped.checkpoint_state()
    assert set(state) == {"localizer", "objective"} and set(state["objective"]) == set(inner.state_dict())
    own = {id(p) for p in wrapped.parameters()} - {id(p) for p in wrapped.network(model).parameters()}
    assert own == {id(p) for p in inner.parameters()}  # trained outside the network: the objective's own

    _, _, other = _parts(name)
    with torch.no_grad():
        for p in other.localizer.parameters():
            p.add_(1.0)
    other.load_checkpoint_state(state, "run.pt")
    for key, value in wrapped.localizer.state_dict().items():
        torch.testing.assert_close(other.localizer.state_dict()[key], value)
    with pytest.raises(ValueError, match=r"run.pt was saved without a localizer(.|\n)*weight=0.5"):
        other.load_checkpoint_state({"objective": state["objective"]}, "run.pt")
    other.load_checkpoint_state({"objective": state["objective"]}, "init.pt", partial=True)  # init_from


def test_export_writes_the_localizer_beside_the_encoders_with_its_floor(tmp_path: Path) -> None:
    model, _, wrapped = _parts("vicreg", grid_stage="layer3")
    wrapped.floor_clips = lambda: [_batch(3)]
    encoders = tmp_path / "encoders.safetensors"
    wrapped.export(model, encoders)
    localizer, spec = load_localizer(localizer_path(encoders))
    assert (spec.grid_stage, spec.embed_dim) == ("layer3", 8) and spec.floor is not None
    for key, value in wrapped.localizer.state_dict().items():
        torch.testing.assert_close(localizer.state_dict()[key], value)


def test_off_leaves_the_objective_alone_and_bad_settings_raise() -> None:
    model = build_av_model(TINY)
    inner = OBJECTIVES["infonce"].build(OBJECTIVES["infonce"].config_cls(), ObjectiveContext(4, 16))
    assert LocalizationConfig().wrap(inner, model) is inner
    with pytest.raises(ConfigError, match="no stage 'layer9'"):
        LocalizationConfig(weight=1.0, grid_stage="layer9").wrap(inner, model)
    wrapped = _parts("avid")[2]
    localizer, spec = wrapped.localizer, wrapped.spec
    for bad, match in (({"weight": -1.0}, "weight"), ({"temperature": 0.0}, "temperature"),
                       ({"top_fraction": 1.5}, "top_fraction")):
        with pytest.raises(ValueError, match=match):
            WithLocalizer(inner, localizer, spec, **bad)
    with pytest.raises(NotImplementedError, match="forward_loss"):
        WithLocalizer(inner, localizer, spec).compute(model(*list(_batch().values())[:2]), torch.arange(4))


class _RunsTwice(AVIDLoss):
    def forward_loss(self, net: Any, batch: Any) -> Any:
        net(batch["video"], batch["audio"])
        return super().forward_loss(net, batch)


def test_the_wrapped_objective_must_run_the_network_once() -> None:
    model, _, wrapped = _parts("avid")
    twice = _RunsTwice.build(INNER["avid"], ObjectiveContext(num_items=20, embed_dim=16))
    with pytest.raises(RuntimeError, match="once per batch"):
        WithLocalizer(twice, wrapped.localizer, wrapped.spec).forward_loss(wrapped.network(model), _batch())
