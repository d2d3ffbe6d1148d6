from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from avlearn.report import metric_series, plot_lines


def test_plot_lines_draws_each_series_in_its_colour(tmp_path: Path) -> None:
    path = plot_lines({"a": [(0, 1.0), (10, 0.5)], "b": [(0, 0.2), (10, 0.9)]}, tmp_path / "p.png", title="t")
    img = Image.open(path).convert("RGB")
    assert img.size == (640, 360)
    colours = {c for _, c in img.getcolors(maxcolors=1 << 16) or []}
    assert (31, 119, 180) in colours and (255, 127, 14) in colours  # both lines are drawn


def test_plot_lines_handles_empty_and_single_points(tmp_path: Path) -> None:
    assert plot_lines({}, tmp_path / "e.png").is_file()
    assert plot_lines({"one": [(3, 2.0)]}, tmp_path / "s.png").is_file()


def test_metric_series_reads_only_rows_with_the_key(tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    rows = [{"step": 1, "train/loss": 2.0}, {"event": "epoch_end", "step": 2}, {"step": 3, "train/loss": 1.5}]
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert metric_series(log, "train/loss") == [(1.0, 2.0), (3.0, 1.5)]
