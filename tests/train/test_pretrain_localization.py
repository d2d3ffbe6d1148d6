"""Pretraining with the localization objective: trains, checkpoints, resumes exactly, exports a
localizer that ``avlearn evaluate localization`` and ``avlearn localize`` pick up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avlearn.config import ConfigError, load_config
from avlearn.localization.evaluate import main as evaluate_main
from avlearn.localization.export import find_localizer, load_localizer, localizer_path
from avlearn.models.weights import load_av_model
from avlearn.train.checkpoint import CheckpointManager
from avlearn.train.config import PretrainConfig
from avlearn.train.loop import pretrain
from avlearn.train.pretrain import main
from tests.train.pretrain_helpers import ROOT, SYNTH_CPU, fast_overrides, read_metrics

LOC = {"localization.weight": 0.5, "localization.embed_dim": 16}


def _run(manifest: Path, run_dir: Path, *args: str, **extra: object) -> int:
    return main(["--config", str(SYNTH_CPU), *args, *fast_overrides(manifest, run_dir, **extra)])


def _latest(run: Path) -> dict[str, object]:
    path = CheckpointManager(run / "checkpoints").latest()
    assert path is not None
    return CheckpointManager.load(path)


def test_localization_run_resumes_exactly_and_exports_a_usable_localizer(
    synth_train: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = {"epochs": 2, "train.ckpt_every_steps": 100, **LOC}
    assert _run(synth_train, straight, max_steps=4, **common) == 0
    assert _run(synth_train, split, max_steps=2, **common) == 0
    first = _latest(split)
    assert _run(synth_train, split, "--resume", max_steps=4, **common) == 0

    records = read_metrics(split)
    assert [r["step"] for r in records if r.get("event") == "resume"] == [2]
    logged = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
    for r in logged:  # total = objective + weight * localization
        total = r["train/objective_loss"] + 0.5 * r["train/loc/loss"]
        assert r["train/loss"] == pytest.approx(total, rel=1e-4)
        assert 0 <= r["train/loc/acc_v2a"] <= 1

    a, b = _latest(straight), _latest(split)
    assert a["step"] == b["step"] == 4
    for part in ("model", "localizer", "objective"):
        for key in a[part]:  # type: ignore[attr-defined]
            torch.testing.assert_close(a[part][key], b[part][key], rtol=1e-5, atol=1e-6,  # type: ignore[index]
                                       msg=f"{part}.{key}")
    loc_a, loc_first = a["localizer"], first["localizer"]
    assert isinstance(loc_a, dict) and isinstance(loc_first, dict)
    moved = [k for k in loc_a if not torch.equal(loc_a[k], loc_first[k])]
    assert moved, "the localizer did not train"

    # export: the encoders file is unchanged in form, the localizer sits next to it
    export = split / "encoders.safetensors"
    load_av_model(export)
    assert find_localizer(export) == localizer_path(export) == split / "encoders.localizer.safetensors"
    localizer, spec = load_localizer(localizer_path(export))
    assert (spec.embed_dim, spec.audio_input) == (16, "feat")
    for key, value in localizer.state_dict().items():
        torch.testing.assert_close(value, b["localizer"][key])  # type: ignore[index]

    out = tmp_path / "loc.json"
    synth = synth_train.parent  # the collection's annotations.json (36 videos: no test split)
    assert evaluate_main(["--checkpoint", str(export), "--synth", str(synth), "--split", "train",
                          "--limit", "3", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["localizer"] == "learned" and report["model"]["n"] >= 1
    capsys.readouterr()
    assert evaluate_main(["--checkpoint", str(export), "--synth", str(synth), "--split", "train",
                          "--limit", "2", "--localizer", "posthoc"]) == 0
    assert json.loads(capsys.readouterr().out)["localizer"] == "posthoc"


def test_runs_without_localization_are_unchanged_and_mismatched_resume_is_named(
    synth_train: Path, tmp_path: Path
) -> None:
    run = tmp_path / "plain"
    assert _run(synth_train, run, max_steps=1, **{"train.ckpt_every_steps": 100}) == 0
    assert "localizer" not in _latest(run)
    assert find_localizer(run / "encoders.safetensors") is None
    assert not any(k.startswith("train/loc/") for r in read_metrics(run) for k in r)

    cfg = load_config(PretrainConfig, SYNTH_CPU, fast_overrides(synth_train, run, max_steps=2, **LOC))
    # the config check on resume names the change before the checkpoint is loaded (issue 19)
    with pytest.raises(ValueError, match=r"localization.weight: 0.0 -> 0.5(.|\n)*--fresh"):
        pretrain(cfg, resume=True)


def test_localization_config_is_validated() -> None:
    for override, field in (("localization.weight=-1", "localization.weight"),
                            ("localization.temperature=0", "localization.temperature"),
                            ("localization.audio_input=grid", "audio_input"),
                            ("localization.wieght=1", "wieght")):
        with pytest.raises(ConfigError, match=field):
            load_config(PretrainConfig, SYNTH_CPU, [override])
    cfg = load_config(PretrainConfig, ROOT / "avlearn" / "configs" / "pretrain" / "synth_cpu_loc.yaml")
    assert cfg.localization.enabled and not load_config(PretrainConfig, SYNTH_CPU).localization.enabled


@pytest.mark.parametrize(("stage", "finer"), [("layer3", 2), ("layer2+layer3", 4)])
def test_a_localizer_on_a_finer_stage_trains_exports_and_maps_at_that_stage(
    synth_train: Path, tmp_path: Path, stage: str, finer: int
) -> None:
    from avlearn.localization.inputs import load_for_localization
    from avlearn.localization.learned import stage_channels
    from avlearn.localization.sound_checks import heatmaps, middle_windows, model_grid

    run = tmp_path / "finer"
    assert _run(synth_train, run, max_steps=2, **LOC, **{"localization.grid_stage": stage}) == 0
    export = run / "encoders.safetensors"
    _, spec = load_localizer(localizer_path(export))
    assert spec.grid_stage == stage
    model, inp, learned = load_for_localization(export, "auto")
    assert learned is not None
    # a hypercolumn reads both stages' channels
    assert spec.grid_dim == sum(stage_channels(model, s) for s in stage.split("+"))
    last = model_grid(model, inp)  # 32 px crops: 2x2 at stride 16, 4x4 at stride 8, 8x8 at stride 4
    assert model_grid(model, inp, learned) == (finer * last[0], finer * last[1])
    synth = synth_train.parent
    entries = json.loads((synth / "annotations.json").read_text())["videos"][:2]
    items = middle_windows(synth, entries, None, inp, progress=False)
    maps = heatmaps(model.eval(), inp, learned, [it.video for it in items], [it.frame for it in items],
                    [it.audio for it in items])
    assert maps[0].shape == (finer * last[0], finer * last[1])

    with pytest.raises(ConfigError, match=r"no stage 'layer9'(.|\n)*layer3"):
        bad = {**LOC, "localization.grid_stage": "layer9"}
        cfg = load_config(PretrainConfig, SYNTH_CPU, fast_overrides(synth_train, tmp_path / "bad", **bad))
        pretrain(cfg, resume=False)


def test_wrong_sound_floor_is_measured_at_export_and_floors_the_maps(
    synth_train: Path, tmp_path: Path
) -> None:
    import dataclasses

    from torch.utils.data import DataLoader

    from avlearn.data.config import build_dataset
    from avlearn.data.dataset import av_collate
    from avlearn.localization.calibration import calibrate_floor
    from avlearn.localization.learned import localization_maps

    run = tmp_path / "floor"
    assert _run(synth_train, run, max_steps=2, **LOC, **{"localization.floor": "wrong_sound"}) == 0
    export = run / "encoders.safetensors"
    localizer, spec = load_localizer(localizer_path(export))
    assert spec.floor is not None and -1 < spec.floor < 1
    cfg = load_config(PretrainConfig, run / "config.yaml")
    model = load_av_model(export)[0].eval()
    loader = DataLoader(build_dataset(dataclasses.replace(cfg.data, clips_per_video=1), train=False),
                        batch_size=32, collate_fn=av_collate)
    raw = (localizer, dataclasses.replace(spec, floor=None))
    assert calibrate_floor(model, raw, loader) == pytest.approx(spec.floor, rel=1e-5)

    # by hand: every clip against every other clip's sound, best location, mean
    batch = next(iter(loader))
    with torch.no_grad():
        out = model(batch["video"], batch["audio"])
        grid_emb, audio_emb = localizer.eval().project(out.video_grid, out.audio_feat)
        best = torch.einsum("bdthw,nd->bnthw", grid_emb, audio_emb).flatten(2).max(-1).values
        n = best.shape[0]
        by_hand = float((best.sum() - best.diagonal().sum()) / (n * (n - 1)))
        assert calibrate_floor(model, raw, [batch]) == pytest.approx(by_hand, rel=1e-5)

        floored = localization_maps(model, out, (localizer, spec))
        cosine = localization_maps(model, out, raw)
    torch.testing.assert_close(floored, (cosine - spec.floor).clamp_min(0))
    assert (floored == 0).any() and (floored > 0).any()
