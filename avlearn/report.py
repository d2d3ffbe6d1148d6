"""Pictures for runs, drawn with matplotlib on its Agg canvas (no display, no pyplot state).

``plot_lines({"train loss": [(step, value), ...]}, "loss.png", title="InfoNCE loss")`` draws
one or more series on shared axes with a title, axis labels and a legend.
:func:`new_figure` and :func:`save_figure` are the two steps every chart here shares: a figure
of a given pixel size, then an RGB PNG of exactly that size.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

__all__ = ["metric_series", "new_figure", "plot_lines", "save_figure"]

DPI = 100


def new_figure(size: tuple[int, int]) -> Figure:
    """An empty figure of ``size = (width, height)`` pixels, laid out to fit its labels."""
    return Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout="constrained")


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Render ``fig`` with Agg and write it as an RGB PNG (its folder is created); returns the path."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # type: ignore[no-untyped-call]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rgba = np.asarray(canvas.buffer_rgba())  # type: ignore[no-untyped-call]
    Image.fromarray(rgba[..., :3]).save(path, format="PNG")
    return path


def plot_lines(
    series: Mapping[str, Sequence[tuple[float, float]]],
    path: str | Path,
    title: str = "",
    xlabel: str = "step",
    size: tuple[int, int] = (640, 360),
    ylabel: str = "",
) -> Path:
    """Draw each series ``name -> [(x, y), ...]`` as a line (non-finite values left out); returns the path.

    A series of one point is drawn as a marker; the legend names every series.
    """
    fig = new_figure(size)
    ax = fig.add_subplot()
    drawn = 0
    for name, pts in series.items():
        finite = [(x, y) for x, y in pts if math.isfinite(y)]
        if finite:
            xs, ys = zip(*finite, strict=True)
            ax.plot(xs, ys, label=name, linewidth=2, marker="o" if len(finite) == 1 else None)
            drawn += 1
    if drawn:
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return save_figure(fig, path)


def metric_series(metrics_jsonl: str | Path, key: str) -> list[tuple[float, float]]:
    """``(step, value)`` pairs of ``key`` from a run's ``metrics.jsonl``."""
    out: list[tuple[float, float]] = []
    for line in Path(metrics_jsonl).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if key in row and isinstance(row[key], (int, float)):
                out.append((float(row.get("step", len(out))), float(row[key])))
    return out
