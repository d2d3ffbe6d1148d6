"""The CAV-MAE benchmark's report (``benchmarks/cav_mae_synth.py``): its table and reading come from the
record's figures, the docs section is generated from the results files, and the probes see each run's
architecture."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from benchmarks import cav_mae_synth, readme_table

ROOT = Path(__file__).resolve().parents[1]


def _objective(action: float, epochs: int) -> dict[str, Any]:
    top1 = {"video_top1": action}
    recall = {f"{d}_r{k}": 0.25 for d in ("v2a", "a2v") for k in (1, 5, 10)}
    return {"pretrain": {"epochs": epochs, "cpu_seconds": 123.4, "wall_seconds": 150.0},
            "linear_probe": {"av_action": top1, "random_action": {"video_top1": 0.3},
                             "av_object": {"video_top1": 0.9}, "random_object": {"video_top1": 0.5}},
            "multi_label": {"av": {"video_map": 0.8, "chance_map": 0.2}, "random": {"video_map": 0.4}},
            "finetune": {k: {"video_top1": 0.5} for k in ("av_10pct", "scratch_10pct", "av_100pct",
                                                         "scratch_100pct")},
            "retrieval": {"av": recall, "random": recall}}


def _record(cav_action: float) -> dict[str, Any]:
    return {"benchmark": "cav_mae_synth", "command": "python -m benchmarks.cav_mae_synth --quick",
            "machine": {"processor": "x86_64", "cpu_count": 2},
            "setup": {"seed": 0, "infonce_epochs": 12, "test_clips_per_video": 2, "finetune_epochs": 3,
                      "finetune_clips_per_video": 4, "vit_features": list(cav_mae_synth.VIT_FEATURES),
                      "cnn_features": ["features.stages=[layer3,layer4]", "features.pool=avg"]},
            "calibration": {"cpu_seconds_per_epoch": 20.5, "epochs": 6},
            "objectives": {"infonce": _objective(0.5, 12), "cav_mae": _objective(cav_action, 6)}}


@pytest.mark.parametrize(("action", "verdict"), [(0.65, "met"), (0.55, "NOT met")])
def test_table_and_reading_come_from_the_figures(action: float, verdict: str) -> None:
    record = _record(action)
    text = cav_mae_synth.markdown(record)
    assert f"| linear probe, action (video top-1) | 50.0 | 30.0 | {100 * action:.1f} | 30.0 |" in text
    assert "chance 20.0" in text and "| 80.0 | 40.0 |" in text  # mAP row with its chance level
    assert "measures little here" not in text  # random init's 40 % mAP: not saturated
    record["objectives"]["cav_mae"]["multi_label"]["random"]["video_map"] = 0.99
    assert "random-init features already reach 99.0 % mAP" in cav_mae_synth.markdown(record)
    assert "12 epochs, 123 CPU-s (150 s wall)" in text and "6 epochs" in text
    gap = 100 * action - 30
    assert f"tiny ViTs: action probe {gap:+.1f} points over random init (goal >= 30: {verdict})" in text
    headline = cav_mae_synth.headline(record)
    assert f"{100 * action:.0f} % vs 30 %" in headline and len(headline.split()) <= 45


def test_docs_block_reads_the_results_files(tmp_path: Path) -> None:
    assert "No results yet" in cav_mae_synth.docs_block(tmp_path)
    (tmp_path / "cav_mae_synth_quick.json").write_text(json.dumps(_record(0.7)))
    lever = {"overrides": ["objective.contrastive_weight=0.0"],
             "pretrain": {"epochs": 6, "cpu_seconds": 99.0},
             "linear_probe": {k: {"video_top1": 0.42} for k in ("av_action", "random_action", "av_object",
                                                                "random_object")}}
    base = {**lever, "overrides": [], "linear_probe": _objective(0.6, 6)["linear_probe"]}
    (tmp_path / "cav_mae_synth_quick_ablations.json").write_text(json.dumps({"base": base,
                                                                            "levers": {"nce0": lever}}))
    block = cav_mae_synth.docs_block(tmp_path)
    assert "(benchmarks/results/cav_mae_synth_quick.md)" in block and "70.0" in block
    assert "| nce0 | `objective.contrastive_weight=0.0` | 6 | 99 | 42.0 |" in block
    assert block.index("| base | - | 6 | 99 | 60.0 | 30.0 | 90.0 | 50.0 |") < block.index("| nce0 |")
    assert "full budget" not in block.lower()  # no full run in this folder


def test_readme_table_renews_the_docs_section(tmp_path: Path) -> None:
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copy(ROOT / "docs" / "benchmarks.md", tmp_path / "benchmarks.md")
    shutil.copy(ROOT / "docs" / "cav_mae.md", tmp_path / "cav_mae.md")
    args = ["--readme", str(tmp_path / "README.md"), "--docs", str(tmp_path / "benchmarks.md"),
            "--pages", str(tmp_path)]
    assert readme_table.main(["--check", *args]) == 0  # the repository's section is current
    start, end = readme_table.section_markers("cav_mae_synth")
    page = tmp_path / "cav_mae.md"
    page.write_text(page.read_text().replace(end, "| typed | by hand |\n" + end))
    assert readme_table.main(["--check", *args]) == 1
    assert readme_table.main(["--write", *args]) == 0
    assert page.read_text() == (ROOT / "docs" / "cav_mae.md").read_text()
    page.write_text(page.read_text().replace(start, ""))
    assert readme_table.main(["--check", *args]) == 2  # markers missing: said, not silently skipped


@pytest.mark.parametrize(("preset", "video", "features"), [
    ("synth_cpu_cav_mae.yaml", "vit_video_p8_tiny", cav_mae_synth.VIT_FEATURES),
    ("synth_cpu.yaml", "r2plus1d_tiny", ("features.stages=[layer3,layer4]", "features.pool=avg")),
])
def test_probes_take_the_runs_architecture(tmp_path: Path, preset: str, video: str,
                                           features: tuple[str, ...]) -> None:
    shutil.copy(ROOT / "avlearn" / "configs" / "pretrain" / preset, tmp_path / "config.yaml")
    like = cav_mae_synth.run_like(tmp_path, audio=True)
    assert f"model.video_arch={video}" in like and "data.num_frames=8" in like
    spec = json.loads(next(o for o in like if o.startswith("data.spec=")).split("=", 1)[1])
    assert spec["kind"] == ("kaldi_fbank" if "cav_mae" in preset else "avid_linear")
    assert cav_mae_synth.features_of(tmp_path) == features


def test_infonce_read_from_a_record_shows_where_and_no_av_probe(tmp_path: Path) -> None:
    record = _record(0.7)
    record["objectives"]["infonce"]["multi_label"] = None
    record["objectives"]["infonce"]["pretrain"]["record"] = "downstream_synth.json"
    text = cav_mae_synth.markdown(record)
    assert "| - | - | 80.0 | 40.0 |" in text and "`benchmarks/results/downstream_synth.json`" in text
    # a record of another setup is refused before anything trains
    (tmp_path / "other.json").write_text(json.dumps({"setup": {"seed": 1, "objective": "infonce"}}))
    args = cav_mae_synth.parser().parse_args(["--out", str(tmp_path), "--infonce-record", "other"])
    with pytest.raises(SystemExit, match="another setup"):
        cav_mae_synth.recorded_infonce(args)


def test_a_lever_at_another_budget_gets_its_own_row() -> None:
    parse = cav_mae_synth.parser().parse_args
    assert cav_mae_synth.lever_name(parse(["--ablation", "nce0"])) == "nce0"
    assert cav_mae_synth.lever_name(parse(["--ablation", "budget", "--cav-mae-epochs", "93"])) == "budget@93"


def test_stage_choice_report_names_its_run() -> None:
    record = {"command": "c", "seed": 0, "epochs": 186, "chosen": list(cav_mae_synth.VIT_FEATURES),
              "action_video_top1": {"grids.2+3, time kept": {"av_action": 0.5, "random_action": 0.25}}}
    text = cav_mae_synth.stages_markdown(record)
    assert "CAV-MAE run of 186 epochs; chosen: [grids.2,grids.3]" in text
    assert "| grids.2+3, time kept | 50.0 | 25.0 |" in text
    assert "time kept" in cav_mae_synth.headline(record)
