"""``load_weights``: what a run dir, an export, a run checkpoint or ``scratch`` names, and its errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from avlearn.models import AVModel
from avlearn.models.checkpoint import save_encoders
from avlearn.models.registry import ModelConfig, build_av_model
from avlearn.models.weights import (
    WeightsError,
    load_av_model,
    load_encoder,
    load_model,
    load_weights,
    run_checkpoints,
    weights_file,
)

TINY = ModelConfig(video_arch="r2plus1d_tiny", audio_arch="avid_spec_cnn9_tiny", embed_dim=16, proj_hidden=32)


def _model(seed: int) -> AVModel:
    torch.manual_seed(seed)
    return build_av_model(TINY)


def _run_checkpoint(run: Path, step: int, model: AVModel) -> Path:
    """What the pretraining loop writes: model state and the whole run config, among other state."""
    path = run / "checkpoints" / f"step_{step:08d}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {"model": dataclasses.asdict(TINY), "data": {"fps": 8.0}, "seed": 3}
    torch.save({"model": model.state_dict(), "config": config, "step": step, "optimizer": {}}, path)
    return path


def _same(a: AVModel, b: AVModel) -> bool:
    return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_run_dir_gives_its_export_else_its_newest_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    old, new, exported = _model(0), _model(1), _model(2)
    _run_checkpoint(run, 2, old)
    newest = _run_checkpoint(run, 10, new)
    assert [step for step, _ in run_checkpoints(run / "checkpoints")] == [2, 10]

    weights = load_weights(run)
    assert weights.source == str(newest) and weights.model == TINY
    assert weights.config["data"] == {"fps": 8.0}  # the run config comes along (localization reads it)
    assert _same(load_model(weights), new)

    export = save_encoders(exported, run / "encoders.safetensors", {"model": dataclasses.asdict(TINY)})
    assert load_weights(run).source == str(export)  # the export wins over checkpoints
    assert _same(load_av_model(run)[0], exported)
    assert weights_file(run, export=False) == newest  # model + optimiser state: the checkpoint


def test_files_and_scratch(tmp_path: Path) -> None:
    model = _model(0)
    checkpoint = _run_checkpoint(tmp_path / "run", 5, model)
    export = save_encoders(model, tmp_path / "enc.pt", TINY)
    for path in (checkpoint, export):
        weights = load_weights(path)
        assert weights.source == str(path)
        video = load_encoder(weights, "video")
        assert all(torch.equal(v, model.video_encoder.state_dict()[k]) for k, v in video.state_dict().items())
    other = dataclasses.replace(TINY, embed_dim=8)
    scratch = load_weights("scratch", other)
    assert (scratch.state, scratch.model, scratch.source) == (None, other, "scratch")
    assert load_model(scratch).embed_dim == 8


def test_errors_name_the_path_and_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"--init .*missing: no such file or folder; expected .*'scratch'"):
        load_weights(tmp_path / "missing", TINY, what="--init")
    with pytest.raises(WeightsError, match=r"--checkpoint scratch: random weights are not accepted here"):
        load_weights("scratch", what="--checkpoint")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match=r"empty: the folder has no encoders.safetensors, encoders.pt"):
        load_weights(tmp_path / "empty")
    with pytest.raises(WeightsError, match=r"empty: the folder has no checkpoints/step_\*\.pt"):
        weights_file(tmp_path / "empty", "objective.init_from", export=False)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(WeightsError, match=r"checkpoint: .*foreign\.pt: not an avlearn encoder checkpoint"):
        load_av_model(foreign)
    odd = tmp_path / "odd.pt"
    torch.save({"model": {}, "config": {"model": {"video_arch": "no_such_arch"}}}, odd)
    with pytest.raises(WeightsError, match=r"odd\.pt: the stored config does not describe a model"):
        load_weights(odd)
