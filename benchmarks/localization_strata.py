"""Where a localization map beats the priors: per-frame scores, metrics by box area and by distance
from the frame centre, and how much of a cIoU50 is one test set's luck.

Used by :mod:`benchmarks.localization_synth`: each method's maps are kept as a per-frame table
(:func:`frame_table`) in the seed's record, so that strata can be pooled over seeds afterwards
(:func:`stratify`) and the spread of cIoU50 read against its sampling error (:func:`threshold_noise`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from avlearn.localization.metrics import auc, ciou, median_prediction, pointing_hit

# Cut points of the strata: the terciles of the development seeds' (0-2) 144 test boxes, fixed so
# that every seed and method is cut at the same place. Area: fraction of the frame; offset: distance
# of the box centre from the frame centre, as a fraction of the frame side.
AREA_CUTS = (0.31, 0.35)
OFFSET_CUTS = (0.07, 0.13)
# frames whose cIoU lies this close to 0.5 may flip side with a few pixels of box or map
NEAR = 0.05


def box_geometry(gt: np.ndarray) -> tuple[float, float]:
    """``(area, offset)`` of a ``(H, W)`` 0/1 box: its fraction of the frame, and the distance of its
    centre from the frame centre as a fraction of the frame side (hypot of the x and y offsets)."""
    height, width = gt.shape
    ys, xs = np.nonzero(gt > 0)
    dx = (xs.mean() + 0.5) / width - 0.5
    dy = (ys.mean() + 0.5) / height - 0.5
    return float(gt.mean()), float(np.hypot(dx, dy))


def frame_table(maps: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> dict[str, list[float]]:
    """One row per frame, as columns: the box's ``area`` and ``offset``, the map's ``ciou`` (the
    protocol's upper half of the map against the box), ``hit`` (peak on the box, 0/1) and
    ``pred_area`` (the fraction of the frame the protocol predicts). Shapes: ``maps[k] (h, w)``,
    ``gts[k] (H, W)``."""
    cols: dict[str, list[float]] = {k: [] for k in ("area", "offset", "ciou", "hit", "pred_area")}
    for heat, gt in zip(maps, gts, strict=True):
        pred = median_prediction(heat, *gt.shape)
        area, offset = box_geometry(gt)
        for key, value in (("area", area), ("offset", offset), ("ciou", ciou(pred, gt)),
                           ("hit", float(pointing_hit(heat, gt))), ("pred_area", float(pred.mean()))):
            cols[key].append(round(value, 4))
    return cols


def concat(tables: Sequence[dict[str, list[float]]]) -> dict[str, list[float]]:
    """Several frame tables (e.g. one method on several seeds) as one."""
    return {key: [v for t in tables for v in t[key]] for key in tables[0]} if tables else {}


def scores(table: dict[str, list[float]], rows: np.ndarray | None = None) -> dict[str, Any]:
    """cIoU50, AUC, pointing, mean cIoU and mean predicted area of the frames ``rows`` (all: None)."""
    cious = np.asarray(table["ciou"], dtype=float)
    keep = np.ones(cious.size, bool) if rows is None else rows
    if not keep.any():
        return {"n": 0}
    c = cious[keep]
    return {"n": int(c.size), "ciou50": float((c >= 0.5).mean()), "auc": auc(list(c)),
            "pointing": float(np.asarray(table["hit"])[keep].mean()), "mean_ciou": float(c.mean()),
            "pred_area": float(np.asarray(table["pred_area"])[keep].mean())}


def bins(cuts: tuple[float, ...]) -> list[tuple[float, float]]:
    """``(lo, hi)`` intervals cut at ``cuts``, the last one open above."""
    edges = [0.0, *cuts, float("inf")]
    return list(itertools.pairwise(edges))


def stratify(tables: dict[str, dict[str, list[float]]]) -> dict[str, list[dict[str, Any]]]:
    """Each method's scores by box area and by centre offset: ``{"area": [stratum, ...], "offset":
    [...]}``, a stratum ``{"lo", "hi", "methods": {method: scores}}`` (each method on its own frames)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for column, cuts in (("area", AREA_CUTS), ("offset", OFFSET_CUTS)):
        out[column] = []
        for lo, hi in bins(cuts):
            methods = {}
            for name, table in tables.items():
                x = np.asarray(table[column], dtype=float)
                methods[name] = scores(table, (x >= lo) & (x < hi))
            out[column].append({"lo": lo, "hi": hi, "methods": methods})
    return out


def threshold_noise(table: dict[str, list[float]]) -> dict[str, float]:
    """How much of a cIoU50 is the test set's luck: the fraction of frames within :data:`NEAR` of the
    0.5 threshold, and the binomial standard error ``sqrt(p (1 - p) / n)`` of the cIoU50 ``p``."""
    c = np.asarray(table["ciou"], dtype=float)
    p = float((c >= 0.5).mean())
    return {"near_threshold": float((np.abs(c - 0.5) < NEAR).mean()),
            "ciou50_se": float(np.sqrt(p * (1 - p) / c.size))}


def paired_gap(a: dict[str, list[float]], b: dict[str, list[float]]) -> dict[str, float]:
    """cIoU50 of ``a`` minus that of ``b`` on the same frames, with the standard error of the mean of
    the paired differences (frames both pass or both fail add nothing to it)."""
    d = (np.asarray(a["ciou"]) >= 0.5).astype(float) - (np.asarray(b["ciou"]) >= 0.5).astype(float)
    return {"gap": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0}


def box_stats(table: dict[str, list[float]]) -> dict[str, float]:
    """Mean box area, mean centre offset and the fraction of boxes in each area / offset stratum."""
    area, offset = np.asarray(table["area"]), np.asarray(table["offset"])
    out = {"mean_area": float(area.mean()), "mean_offset": float(offset.mean())}
    for column, x, cuts in (("area", area, AREA_CUTS), ("offset", offset, OFFSET_CUTS)):
        for lo, hi in bins(cuts):
            out[f"{column}_{_range(lo, hi)}"] = float(((x >= lo) & (x < hi)).mean())
    return out


def _range(lo: float, hi: float) -> str:
    return f"<{hi:g}" if lo == 0 else (f">={lo:g}" if hi == float("inf") else f"{lo:g}-{hi:g}")


def strata_markdown(strata: dict[str, list[dict[str, Any]]], labels: dict[str, str],
                    metrics: tuple[str, ...] = ("ciou50", "auc", "pointing", "pred_area")) -> list[str]:
    """Two tables (by area, by offset): a row per method, a cell per stratum ``metric, ...  (n)``."""
    lines: list[str] = []
    titles = {"area": "box area (fraction of the frame)",
              "offset": "distance of the box centre from the frame centre (fraction of the side)"}
    for column, strata_list in strata.items():
        head = [_range(s["lo"], s["hi"]) for s in strata_list]
        first = next(iter(labels))  # the frames of the first method (another may score fewer)
        n = [s["methods"].get(first, {}).get("n", 0) for s in strata_list]
        lines += [f"By {titles[column]}; each cell: {' / '.join(metrics)}.", "",
                  "| method | " + " | ".join(f"{h} ({k} frames)" for h, k in zip(head, n, strict=True))
                  + " |",
                  "|---|" + "---|" * len(head)]
        for key, label in labels.items():
            cells = []
            for s in strata_list:
                m = s["methods"].get(key)
                if m is None:
                    break
                cells.append("-" if not m.get("n") else " / ".join(f"{m[k]:.2f}" for k in metrics))
            if len(cells) == len(strata_list):
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines
