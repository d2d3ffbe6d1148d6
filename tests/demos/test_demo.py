from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from avlearn.cli import main as cli_main


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    args = [
        "demo",
        "--out",
        str(out),
        "--num-videos",
        "12",
        "--duration",
        "2",
        "--workers",
        "1",
        "--clips",
        "8",
        "--stages",
        "data",
    ]
    assert cli_main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["collection"]["videos"] == 12
    assert summary["index"]["status"] == {"ok": 12}
    for backend in ("pyav", "decord"):
        assert summary["decode"][backend]["clips_per_s"] > 0
    assert summary["decode"]["agreement"]["audio_max_abs_diff"] < 1e-4  # audio always comes via PyAV
    assert summary["batch"]["video"][1:] == [3, 8, 112, 112]
    png = out / "contact_sheet.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "contact_sheet.png" in capsys.readouterr().out
    # A second run resumes the collection instead of regenerating it.
    mtime = (out / "synth" / "annotations.json").stat().st_mtime_ns
    video = next((out / "synth" / "videos").rglob("*.mp4"))
    before = video.stat().st_mtime_ns
    assert cli_main(args) == 0
    assert video.stat().st_mtime_ns == before
    assert mtime > 0


def _unit(x: float) -> bool:
    return 0.0 <= x <= 1.0


def test_demo_model_stages_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """pretrain (AVID -> CMA + localizer), downstream, localize and report on a tiny collection."""
    import av

    from avlearn.data.decode import ClipSpec, decode_clip

    out = tmp_path / "demo"
    args = [
        "demo",
        "--out",
        str(out),
        "--num-videos",
        "36",
        "--duration",
        "2",
        "--workers",
        "1",
        "--stages",
        "pretrain",
        "downstream",
        "localize",
        "report",
        "--pretrain-epochs",
        "2",
        "--finetune-epochs",
        "1",
        "--test-clips",
        "1",
        "--overlays",
        "1",
    ]
    assert cli_main(args) == 0
    summary = json.loads((out / "summary.json").read_text())

    pre = summary["pretrain"]
    assert {"v2a_r1", "a2v_r1"} <= set(pre["retrieval_before"]) and {"v2a_r1", "a2v_r1"} <= set(
        pre["retrieval_after"]
    )
    assert pre["chance_r1"] == 1 / 12  # 12 test-split videos
    assert pre["cma_start_epoch"] == 1 and pre["steps"] == 2 * pre["steps_per_epoch"]
    events = [json.loads(line) for line in (out / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in events if e.get("event") == "positive_sets"] == [1]  # CMA after 1 AVID epoch
    assert (out / "pretrain" / "encoders.safetensors").is_file()
    for png in pre["plots"]:
        assert Path(png).read_bytes()[:4] == b"\x89PNG"

    down = summary["downstream"]
    for r in down["retrieval"].values():
        assert _unit(r["v2a_r1"]) and r["v2a_r1"] <= r["v2a_r5"] <= r["v2a_r10"] <= 1.0
    accuracies = [
        down["linear_probe"][label][init]["video_top1"]
        for label in ("action", "object")
        for init in ("av", "random")
    ]
    accuracies += [down["finetune"]["action"][init]["video_top1"] for init in ("av", "random")]
    assert all(_unit(a) for a in accuracies) and len(accuracies) == 6
    assert down["chance"]["action"] == 1 / 6 and down["test_videos"] == 12

    cka = summary["cka"]
    assert cka["clips"] == 36 and next(iter(cka["same_block"])) == "video.stem"
    for block in cka["same_block"].values():
        assert 0.0 <= block["linear"] <= 1.0 + 1e-9
    assert Path(cka["figure"]).read_bytes()[:4] == b"\x89PNG"
    tuned = cka["finetuned"]  # video blocks only: the fine-tuned model has no audio encoder
    assert list(tuned["same_block"]) == [b for b in cka["same_block"] if b.startswith("video.")]
    assert all(0.0 <= v["linear"] <= 1.0 + 1e-9 for v in tuned["same_block"].values())
    assert Path(tuned["figure"]).read_bytes()[:4] == b"\x89PNG"

    loc = summary["localization"]
    assert set(loc["methods"]) == {
        "trained, learned localizer",
        "trained, post hoc",
        "random init, post hoc",
        "centre box",
        "oracle (gt box)",
    }
    for m in loc["methods"].values():
        assert (
            all(_unit(m[k]) for k in ("ciou50", "auc", "pointing", "mean_ciou"))
            and m["n"] == loc["test_frames"]
        )
    assert loc["methods"]["oracle (gt box)"]["ciou50"] == 1.0 and loc["test_frames"] > 0
    assert [o["sound"] == "own" for o in loc["overlays"]] == [True, False]  # one own, one swapped sound
    assert loc["overlays"][0]["video"] == loc["overlays"][1]["video"]  # the swap example, both sounds
    sel, hits = loc["overlay_selection"], loc["methods"]["trained, learned localizer"]["per_video"]
    assert sel["swap_example_meets_rule"] == (sel["videos_peak_on_object_and_moved_by_swap"] > 0)
    if sel["swap_example_meets_rule"]:
        assert hits[loc["overlays"][1]["video"]] == {"own": True, "swap": True}
    assert sel["rule"] in (out / "report.md").read_text()
    for overlay in loc["overlays"]:
        with av.open(overlay["mp4"]) as container:
            assert container.streams.video and container.streams.audio
        clip = decode_clip(
            overlay["mp4"],
            0.0,
            ClipSpec(num_frames=4, fps=8, size=None, audio_seconds=1.0, sample_rate=16000),
        )
        assert clip.video.shape[:2] == (3, 4) and float(clip.audio.abs().max()) > 0.01

    report = (out / "report.md").read_text()
    assert "| evaluation | AV-pretrained | random init / scratch | chance |" in report
    assert "| method | cIoU50 | AUC | pointing |" in report and "| v2a R@1 |" in report
    assert "| block | linear CKA | minibatch CKA |" in report and "cka/cka.png" in report
    assert "| video block | linear CKA vs fine-tuned |" in report and "cka_finetuned/cka.png" in report
    links = re.findall(r"!?\[[^\]]*\]\(([^)]+)\)", report)
    images = [link for link in links if link.endswith(".png")]
    assert len(images) >= 5 and any(link.endswith(".mp4") for link in links)
    for link in links:
        assert (out / link).is_file(), link
    assert set(summary["seconds"]) >= {"pretrain", "downstream", "cka", "localize", "report"}
    assert all(v >= 0 for v in summary["seconds"].values())
    assert "localization pointing" in capsys.readouterr().out


def test_demo_stage_without_its_inputs_says_which_stage_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "demo",
        "--out",
        str(tmp_path / "demo"),
        "--num-videos",
        "12",
        "--duration",
        "2",
        "--workers",
        "1",
    ]
    assert cli_main([*args, "--stages", "localize"]) == 1
    assert "run the pretrain stage first" in capsys.readouterr().err


def test_comparison_reading_counts_test_videos() -> None:
    from demos.demo_report import comparison_lines, read_comparison

    # 36 test videos: one video is 2.8 points; chance 1/6
    assert read_comparison(0.1944, 0.1667, 1 / 6, 36).startswith("both at chance")
    assert read_comparison(0.50, 0.4722, 1 / 6, 36).startswith("no difference beyond one test video")
    ahead = read_comparison(0.8056, 0.5278, 0.25, 36)
    assert ahead == "AV-pretrained ahead by 27.8 points (10 of 36 test videos)"
    assert read_comparison(0.30, 0.50, 0.25, 36).startswith("random init / scratch ahead by 20.0 points")
    summary = {"downstream": {"test_videos": 36, "chance": {"action": 1 / 6, "object": 0.25},
                              "linear_probe": {"object": {"av": {"video_top1": 0.8056},
                                                          "random": {"video_top1": 0.5278}}},
                              "finetune": {"action": {"av": {"video_top1": 0.1667},
                                                      "random": {"video_top1": 0.1667}}}}}
    lines = comparison_lines(summary)
    assert lines[0].startswith("linear probe, object: AV-pretrained ahead")
    assert lines[1].startswith("fine-tune, action: both at chance")


def test_accuracy_bars_are_as_tall_as_their_values(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from demos.demo_report import plot_bars

    groups = {"a": {"x": 0.8}, "b": {"x": 0.2, "y": 0.5}}
    png = plot_bars(groups, tmp_path / "bars.png", "title", chance={"a": 0.25}, size=(400, 300))
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert img.shape == (300, 400, 3)
    is_x = np.abs(img - np.array([31, 119, 180])).sum(axis=2) < 6  # series x: matplotlib's C0
    is_x[:40] = False  # the legend's patch, above the axes
    columns = np.flatnonzero(is_x.sum(axis=0) > 10)
    runs = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
    assert len(runs) == 2  # one bar of x per group
    tall, short = (int(is_x[:, run].sum(axis=0).max()) for run in runs)
    assert abs(tall / short - 0.8 / 0.2) < 0.2


def _entry(vid: str, cls: str, distractor: str | None) -> dict[str, Any]:
    box = [0, 0, 4, 4]
    return {"video_id": vid, "file": f"videos/{vid}.mp4", "class": cls, "num_frames": 4, "split": "test",
            "distractors": [] if distractor is None else [{"class": distractor, "bbox": [box] * 4}]}


def test_overlay_rule_prefers_a_video_whose_peak_follows_the_sound() -> None:
    from demos.demo_stages import pick_overlays

    tests = [_entry("a", "star", "cross"), _entry("b", "cross", "star"), _entry("c", "star", None),
             _entry("d", "cross", "star")]
    videos = [*tests, _entry("e", "cross", None)]
    hits = {"a": {"own": True, "swap": False}, "b": {"own": False, "swap": True},
            "c": {"own": True, "swap": None}, "d": {"own": True, "swap": True}}
    swap, own, sel = pick_overlays(tests, videos, hits)
    assert swap is not None and swap[0]["video_id"] == "d" and swap[1]["class"] == "star"
    assert [v["video_id"] for v in own] == ["d", "a", "c", "b"]  # the example, peaks on object, others
    assert sel["swap_example_meets_rule"] and sel["videos_peak_on_object_and_moved_by_swap"] == 1
    hits["d"]["swap"] = False  # nobody meets both: the first video with a swap sound, and it says so
    swap, own, sel = pick_overlays(tests, videos, hits)
    assert swap is not None and swap[0]["video_id"] == "a" and not sel["swap_example_meets_rule"]


def test_demo_probes_and_fine_tunes_at_one_of_the_pretraining_rates() -> None:
    """The downstream clips must be clips the encoder was pretrained on: same frames, a drawn rate."""
    from avlearn.config import load_config
    from avlearn.train.config import PretrainConfig
    from avlearn.train.finetune import FinetuneConfig
    from avlearn.train.linear_probe import ProbeConfig
    from demos.demo_stages import CONFIGS

    pre = load_config(PretrainConfig, CONFIGS / "pretrain.yaml").data
    rates = pre.fps_choices or [pre.fps]
    for cls, name in ((ProbeConfig, "probe"), (FinetuneConfig, "finetune")):
        data = load_config(cls, CONFIGS / f"{name}.yaml").data
        assert data.num_frames == pre.num_frames and data.fps in rates, name
