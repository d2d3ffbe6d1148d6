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
