"""Small pictures and a markdown report for runs: line plots drawn with Pillow (no plotting stack).

``plot_lines({"train loss": [(step, value), ...]}, "loss.png", title="InfoNCE loss")`` draws
one or more series on shared axes with ticks, a legend and a title.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

__all__ = ["metric_series", "plot_lines"]

_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``[lo, hi]``."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 5, 10):
        if raw <= mult * step:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"


def plot_lines(
    series: Mapping[str, Sequence[tuple[float, float]]],
    path: str | Path,
    title: str = "",
    xlabel: str = "step",
    size: tuple[int, int] = (640, 360),
) -> Path:
    """Draw each series ``name -> [(x, y), ...]`` as a line; returns the PNG path."""
    width, height = size
    left, right, top, bottom = 60, 20, 30, 45
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    points = [p for pts in series.values() for p in pts if math.isfinite(p[1])]
    if not points:
        draw.text((width // 2 - 30, height // 2), "no data", fill="black", font=font)
    else:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
        pad = 0.05 * (max(ys) - min(ys) or 1.0)
        y0, y1 = min(ys) - pad, max(ys) + pad

        def to_px(x: float, y: float) -> tuple[float, float]:
            px = left + (x - x0) / (x1 - x0) * (width - left - right)
            py = height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)
            return px, py

        draw.rectangle([left, top, width - right, height - bottom], outline=(120, 120, 120))
        for t in _ticks(y0, y1):
            _, py = to_px(x0, t)
            draw.line([left, py, width - right, py], fill=(230, 230, 230))
            draw.text((4, py - 6), _fmt(t), fill="black", font=font)
        for t in _ticks(x0, x1):
            px, _ = to_px(t, y0)
            draw.text((px - 10, height - bottom + 6), _fmt(t), fill="black", font=font)
        for i, (name, pts) in enumerate(series.items()):
            colour = _COLOURS[i % len(_COLOURS)]
            line = [to_px(x, y) for x, y in pts if math.isfinite(y)]
            if len(line) > 1:
                draw.line(line, fill=colour, width=2)
            elif line:
                px, py = line[0]
                draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
            ly = top + 12 + 14 * i
            draw.line([left + 10, ly, left + 28, ly], fill=colour, width=2)
            draw.text((left + 34, ly - 6), name, fill=colour, font=font)
    draw.text((left, 8), title, fill="black", font=font)
    draw.text((width // 2 - 15, height - 18), xlabel, fill="black", font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def metric_series(metrics_jsonl: str | Path, key: str) -> list[tuple[float, float]]:
    """``(step, value)`` pairs of ``key`` from a run's ``metrics.jsonl``."""
    out: list[tuple[float, float]] = []
    for line in Path(metrics_jsonl).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if key in row and isinstance(row[key], (int, float)):
                out.append((float(row.get("step", len(out))), float(row[key])))
    return out
