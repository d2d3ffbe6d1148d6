"""Sound-localization metrics as computed by the published evaluation code.

Reproduces the evaluation of "Localizing Visual Sounds the Hard Way" (Chen et al., CVPR 2021;
``test.py`` / ``utils.py`` of hche11/Localizing-Visual-Sounds-the-Hard-Way), which VGG-SS and
Flickr-SoundNet results are reported with:

1. The heatmap is resized to the ground-truth frame bilinearly (``cv2.resize`` ``INTER_LINEAR``,
   i.e. half-pixel centres) and min-max normalised: ``p = 1 - minmax(-heatmap)``.
2. Threshold: the element at index ``N // 2`` of the ascending sorted ``p`` (``N = H * W``; the
   upper median, not ``np.median``). Prediction: ``p > threshold``, plus the pixels where
   ``p == 1`` (the reference sets ``p > thr`` to 1 and only ``p < 1`` to 0). With all values
   distinct that is ``N / 2 - 1`` pixels; ties at the threshold are *not* predicted, so a binary
   map predicts exactly its positive pixels.
3. ``cIoU = sum(pred * gt) / (sum(gt) + sum(pred * [gt == 0]))`` per image.
4. ``cIoU50`` (reported as "cIoU"): fraction of images with ``cIoU >= 0.5``.
   ``AUC``: trapezoid rule (``sklearn.metrics.auc``) over ``x = 0.05 * i``, ``i = 0 .. 20``, of
   ``y = fraction of images with cIoU >= x``.

A flat heatmap has no min-max normalisation in the reference (``vmax == vmin`` leaves it as it
is); here it predicts the whole frame (what the reference does for a non-negative flat map).

Ground truth: VGG-SS (normalised boxes, union), Flickr-SoundNet (several annotators' boxes
summed, halved, capped at 1: a pixel two annotators agree on counts 1, one annotator 0.5), and
the synthetic collection's pixel boxes. Pointing game: the heatmap's peak (first maximum in
raster order, after resizing) lies on a positive ground-truth pixel.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "AUC_THRESHOLDS",
    "LocalizationResult",
    "auc",
    "center_box_map",
    "ciou",
    "ciou_curve",
    "evaluate_maps",
    "gt_from_boxes_flickr",
    "gt_from_boxes_vggss",
    "gt_from_synth",
    "median_prediction",
    "oracle_map",
    "pointing_hit",
    "resize_heatmap",
]

# the reference's thresholds, computed the same way (0.05 * i, so 0.15000000000000002 etc.)
AUC_THRESHOLDS: tuple[float, ...] = tuple(0.05 * i for i in range(21))

Box = Sequence[float]


def _as_map(name: str, x: Any) -> np.ndarray:
    arr = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty (H, W) map, got shape {arr.shape}")
    return arr


def resize_heatmap(heatmap: Any, height: int, width: int) -> np.ndarray:
    """Bilinear, half-pixel-centred resize (as ``cv2.resize`` ``INTER_LINEAR``, no antialiasing).

    Shape: ``(h, w) -> (height, width)`` float64.
    """
    arr = _as_map("heatmap", heatmap)
    if arr.shape == (height, width):
        return arr
    t = torch.from_numpy(arr)[None, None]
    out = F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)
    resized: np.ndarray = out[0, 0].numpy()
    return resized


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(), x.max()
    out: np.ndarray = x if hi - lo == 0 else (x - lo) / (hi - lo)
    return out


def median_prediction(heatmap: Any, height: int | None = None, width: int | None = None) -> np.ndarray:
    """Binary prediction of the reference evaluation: the upper half of the normalised map.

    Shape: ``(h, w) -> (height, width)`` (default ``(h, w)``) of 0/1 float64.
    """
    arr = _as_map("heatmap", heatmap)
    height = arr.shape[0] if height is None else height
    width = arr.shape[1] if width is None else width
    if arr.max() == arr.min():  # checked before resizing, whose rounding would add noise
        return np.ones((height, width))
    resized = resize_heatmap(arr, height, width)
    p = 1 - _minmax(-resized)
    threshold = np.sort(p.ravel())[p.size // 2]
    pred: np.ndarray = ((p > threshold) | (p >= 1)).astype(np.float64)
    return pred


def ciou(pred: Any, gt: Any) -> float:
    """``sum(pred * gt) / (sum(gt) + sum(pred * [gt == 0]))`` for a binary ``pred`` and a gt map.

    Shape: ``pred, gt (H, W)``. Raises on an empty ground truth with an empty prediction (0 / 0).
    """
    p, g = _as_map("pred", pred), _as_map("gt", gt)
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and gt {g.shape} must have the same shape")
    union = float(np.sum(g) + np.sum(p * (g == 0)))
    if union == 0:
        raise ValueError("cIoU is undefined: the ground truth and the prediction are both empty")
    return float(np.sum(p * g)) / union


def pointing_hit(heatmap: Any, gt: Any) -> bool:
    """True when the peak of ``heatmap`` (resized to ``gt``) falls on a positive gt pixel."""
    g = _as_map("gt", gt)
    resized = resize_heatmap(heatmap, *g.shape)
    y, x = np.unravel_index(int(np.argmax(resized)), resized.shape)
    return bool(g[y, x] > 0)


def ciou_curve(cious: Sequence[float]) -> np.ndarray:
    """Fraction of cIoUs ``>= t`` for every ``t`` in :data:`AUC_THRESHOLDS`; shape ``(21,)``."""
    values = np.asarray(cious, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no cIoU values")
    return np.array([np.sum(values >= t) / values.size for t in AUC_THRESHOLDS])


def auc(cious: Sequence[float]) -> float:
    """Area under :func:`ciou_curve` over :data:`AUC_THRESHOLDS` (trapezoid rule, as sklearn)."""
    y = ciou_curve(cious)
    x = np.asarray(AUC_THRESHOLDS)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


@dataclasses.dataclass(frozen=True)
class LocalizationResult:
    """Summary over a test set.

    Attributes:
        ciou50: fraction of images with ``cIoU >= 0.5`` (the papers' "cIoU").
        auc: area under the success curve over thresholds ``0, 0.05, ..., 1``.
        pointing: fraction of images whose heatmap peak is on the ground truth.
        n: number of images.
        mean_ciou: the plain mean cIoU (for reference; not a published number).
    """

    ciou50: float
    auc: float
    pointing: float
    n: int
    mean_ciou: float

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


def evaluate_maps(heatmaps: Sequence[Any], gts: Sequence[Any]) -> LocalizationResult:
    """Evaluate one heatmap per image against its gt map (heatmaps are resized to the gt size).

    Shape: ``heatmaps[k] (h_k, w_k)``, ``gts[k] (H_k, W_k)``. An empty gt is an error (naming it).
    """
    if len(heatmaps) != len(gts):
        raise ValueError(f"got {len(heatmaps)} heatmaps and {len(gts)} ground-truth maps")
    if not gts:
        raise ValueError("nothing to evaluate: no heatmaps given")
    cious: list[float] = []
    hits = 0
    for k, (heatmap, gt) in enumerate(zip(heatmaps, gts, strict=True)):
        g = _as_map(f"gts[{k}]", gt)
        if not np.any(g > 0):
            raise ValueError(f"gts[{k}] is empty (no positive pixel); leave images without a box out")
        cious.append(ciou(median_prediction(heatmap, *g.shape), g))
        hits += pointing_hit(heatmap, g)
    values = np.asarray(cious)
    return LocalizationResult(
        ciou50=float(np.sum(values >= 0.5) / values.size),
        auc=auc(cious),
        pointing=hits / values.size,
        n=int(values.size),
        mean_ciou=float(values.mean()),
    )


# ------------------------------------------------------------------------------ ground truth


def _check_box(box: Box, where: str) -> tuple[float, float, float, float]:
    if len(box) != 4 or not all(math.isfinite(float(v)) for v in box):
        raise ValueError(f"{where}: a box is [x0, y0, x1, y1], got {list(box)}")
    x0, y0, x1, y1 = (float(v) for v in box)
    return x0, y0, x1, y1


def gt_from_boxes_vggss(boxes: Sequence[Box], height: int = 224, width: int = 224) -> np.ndarray:
    """VGG-SS ground truth: union of boxes given as *normalised* ``[x0, y0, x1, y1]`` in [0, 1].

    As the reference: coordinates are clamped below at 0 and truncated, ``int(W * max(x, 0))``.
    Shape: ``(height, width)`` of 0/1.
    """
    gt = np.zeros((height, width))
    for box in boxes:
        x0, y0, x1, y1 = _check_box(box, "gt_from_boxes_vggss")
        c0, c1 = int(width * max(x0, 0)), int(width * max(x1, 0))
        r0, r1 = int(height * max(y0, 0)), int(height * max(y1, 0))
        gt[r0:r1, c0:c1] = 1
    return gt


def gt_from_boxes_flickr(
    boxes: Sequence[Box],
    height: int = 224,
    width: int = 224,
    box_size: tuple[int, int] = (256, 256),
) -> np.ndarray:
    """Flickr-SoundNet ground truth from every annotator's boxes (pixels of a ``box_size`` image).

    Each box is scaled as the reference does, ``int(W * int(x) / box_w)``, boxes are summed, the sum
    is halved and capped at 1. Shape: ``(height, width)`` with values in ``{0, 0.5, 1}``.
    """
    box_h, box_w = box_size
    gt = np.zeros((height, width))
    for box in boxes:
        x0, y0, x1, y1 = _check_box(box, "gt_from_boxes_flickr")
        c0, c1 = (int(width * int(v) / box_w) for v in (x0, x1))
        r0, r1 = (int(height * int(v) / box_h) for v in (y0, y1))
        temp = np.zeros((height, width))
        temp[r0:r1, c0:c1] = 1
        gt += temp
    gt /= 2
    gt[gt > 1] = 1
    return gt


def gt_from_synth(annotation: Mapping[str, Any], frame_index: int) -> np.ndarray | None:
    """Ground truth of one frame of a synthetic video (an ``annotations.json`` ``videos`` entry).

    Boxes are pixels with exclusive ``x1, y1``. Returns ``(height, width)`` 0/1, or ``None`` when
    the sounding object is out of view on that frame.
    """
    try:
        height, width = int(annotation["height"]), int(annotation["width"])
        boxes = annotation["bbox"]
    except KeyError as err:
        raise ValueError(f"synthetic annotation lacks {err}; pass an annotations.json video entry") from None
    if not 0 <= frame_index < len(boxes):
        raise IndexError(f"frame {frame_index} outside the video's {len(boxes)} annotated frames")
    box = boxes[frame_index]
    if box is None:
        return None
    x0, y0, x1, y1 = (int(v) for v in _check_box(box, f"bbox[{frame_index}]"))
    gt = np.zeros((height, width))
    gt[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = 1
    return gt


# ------------------------------------------------------------------------------ baselines


def center_box_map(height: int, width: int, frac: float = 0.5) -> np.ndarray:
    """Baseline heatmap: 1 in a centred box of ``frac`` of each side, 0 elsewhere; ``(H, W)``."""
    if not 0 < frac <= 1:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    bh, bw = max(1, round(height * frac)), max(1, round(width * frac))
    top, left = (height - bh) // 2, (width - bw) // 2
    out = np.zeros((height, width))
    out[top : top + bh, left : left + bw] = 1
    return out


def oracle_map(gt: Any) -> np.ndarray:
    """The ground truth itself as a heatmap (the best a map can do); ``(H, W)``."""
    return _as_map("gt", gt).copy()
