from __future__ import annotations

import json
from pathlib import Path

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


def test_demo_pretrain_stage_writes_curves_and_retrieval(tmp_path: Path) -> None:
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
        "--pretrain-epochs",
        "1",
    ]
    assert cli_main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    pre = summary["pretrain"]
    assert set(pre["retrieval_before"]) == {"v2a", "a2v"} and set(pre["retrieval_after"]) == {"v2a", "a2v"}
    assert pre["chance_r1"] == 1 / 12  # 12 test-split videos
    assert (out / "pretrain" / "encoders.safetensors").is_file()
    for png in pre["plots"]:
        assert Path(png).read_bytes()[:4] == b"\x89PNG"
