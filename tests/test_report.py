from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from avlearn.report import metric_series, plot_lines


def test_plot_lines_draws_each_series_in_its_colour(tmp_path: Path) -> None:
    path = plot_lines({"a": [(0, 1.0), (10, 0.5)], "b": [(0, 0.2), (10, 0.9)]}, tmp_path / "p.png", title="t")
    img = Image.open(path).convert("RGB")
    assert img.size == (640, 360)
    colours = {c for _, c in img.getcolors(maxcolors=1 << 16) or []}
    assert (31, 119, 180) in colours and (255, 127, 14) in colours  # both lines are drawn


def _pixels_of(path: Path, colour: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.asarray(Image.open(path))
    rows, cols = np.nonzero((rgb == colour).all(axis=-1))
    return rows, cols


def test_plot_lines_draws_each_series_where_its_values_are(tmp_path: Path) -> None:
    series = {"down": [(0, 1.0), (5, float("nan")), (10, 0.0)], "up": [(0, 0.0), (10, 1.0)]}
    path = plot_lines(series, tmp_path / "p.png", title="loss", xlabel="step", ylabel="value")
    with Image.open(path) as img:
        assert img.mode == "RGB" and img.size == (640, 360)
    for colour, direction in (((31, 119, 180), 1), ((255, 127, 14), -1)):  # first, second series
        rows, cols = _pixels_of(path, colour)
        assert len(cols) > 300, f"series in {colour} is not drawn"
        slope = np.polyfit(cols, rows, 1)[0]  # image rows grow downwards: a falling value rises in rows
        assert direction * slope > 0.2, f"series in {colour} has slope {slope:.2f} in pixels"
    untitled = plot_lines(series, tmp_path / "u.png", title="", xlabel="step", ylabel="value")
    top = slice(0, 20)  # the title's strip
    assert not np.array_equal(np.asarray(Image.open(path))[top], np.asarray(Image.open(untitled))[top])


def test_plot_lines_handles_empty_and_single_points(tmp_path: Path) -> None:
    assert plot_lines({}, tmp_path / "e.png").is_file()
    assert plot_lines({"one": [(3, 2.0)]}, tmp_path / "s.png").is_file()


def test_metric_series_reads_only_rows_with_the_key(tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    rows = [{"step": 1, "train/loss": 2.0}, {"event": "epoch_end", "step": 2}, {"step": 3, "train/loss": 1.5}]
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert metric_series(log, "train/loss") == [(1.0, 2.0), (3.0, 1.5)]
