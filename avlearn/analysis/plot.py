"""Heatmaps of CKA matrices (matplotlib, via :mod:`avlearn.report`'s figure helpers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from torch import Tensor

from avlearn.report import new_figure, save_figure

__all__ = ["plot_cka"]


def _modality_edges(names: Sequence[str]) -> list[float]:
    """Positions between blocks where the modality prefix (``video.``/``audio.``) changes."""
    prefix = [n.split(".", 1)[0] for n in names]
    return [i - 0.5 for i in range(1, len(prefix)) if prefix[i] != prefix[i - 1]]


def plot_cka(
    panels: Mapping[str, Tensor],
    rows: Sequence[str],
    cols: Sequence[str],
    path: str | Path,
    row_label: str = "model A",
    col_label: str = "model B",
    title: str = "",
) -> Path:
    """One heatmap per panel (``title -> (len(rows), len(cols))`` CKA in [0, 1]), side by side.

    Rows are blocks of model A (input at the top), columns blocks of model B; white lines
    separate the video and audio encoders; undefined (nan) cells are grey. Returns the path.
    """
    cell = 0.32 * 100  # pixels per block
    width = int(len(panels) * (len(cols) * cell + 200) + 80)
    height = int(len(rows) * cell + 230)
    fig = new_figure((max(width, 480), max(height, 360)))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    image = None
    cmap = colormaps["magma"].with_extremes(bad="0.6")
    for ax, (name, matrix) in zip(axes, panels.items(), strict=True):
        values = np.ma.masked_invalid(matrix.detach().double().cpu().numpy())
        image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap=cmap, aspect="equal")
        ax.set_xticks(range(len(cols)), list(cols), rotation=90, fontsize=7)
        ax.set_yticks(range(len(rows)), list(rows), fontsize=7)
        for x in _modality_edges(cols):
            ax.axvline(x, color="white", linewidth=1.5)
        for y in _modality_edges(rows):
            ax.axhline(y, color="white", linewidth=1.5)
        ax.set_xlabel(col_label, fontsize=8)
        ax.set_ylabel(row_label, fontsize=8)
        ax.set_title(name, fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8, label="CKA")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
