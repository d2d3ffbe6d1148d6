"""Metrics against hand-computed values (the protocol of hche11/Localizing-Visual-Sounds-the-Hard-Way)."""

from __future__ import annotations

import numpy as np
import pytest

from avlearn.localization.metrics import (
    AUC_THRESHOLDS,
    auc,
    center_box_map,
    ciou,
    ciou_curve,
    evaluate_maps,
    gt_from_boxes_flickr,
    gt_from_boxes_vggss,
    gt_from_synth,
    median_prediction,
    oracle_map,
    pointing_hit,
)


def _box(h: int, w: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros((h, w))
    m[r0:r1, c0:c1] = 1
    return m


def _eval_one(heat: np.ndarray, gt: np.ndarray) -> float:
    return ciou(median_prediction(heat, *gt.shape), gt)


def test_perfect_map_scores_one() -> None:
    gt = _box(8, 8, 2, 6, 0, 4)
    assert _eval_one(oracle_map(gt), gt) == 1.0
    assert pointing_hit(oracle_map(gt), gt)


def test_flat_map_predicts_the_whole_frame() -> None:
    gt = _box(8, 8, 0, 4, 0, 4)  # 16 of 64 pixels
    assert median_prediction(np.full((3, 3), 0.7), 8, 8).sum() == 64
    assert _eval_one(np.zeros((8, 8)), gt) == pytest.approx(16 / 64)


def test_half_overlap() -> None:
    gt = _box(8, 8, 2, 6, 0, 4)  # 16 pixels
    heat = _box(8, 8, 2, 6, 2, 6)  # 8 inside gt, 8 outside
    assert _eval_one(heat, gt) == pytest.approx(8 / (16 + 8))
    assert not pointing_hit(_box(8, 8, 0, 1, 7, 8), gt)


def test_median_threshold_takes_strictly_greater_upper_half() -> None:
    heat = np.arange(64, dtype=float).reshape(8, 8)  # all distinct
    pred = median_prediction(heat)
    # threshold = sorted[32] = 32; predicted: values 33..63
    assert pred.sum() == 31
    assert pred.ravel()[33:].all() and not pred.ravel()[:33].any()


def test_small_box_ceiling_is_about_twice_its_area() -> None:
    # a < 1/4 of the frame, continuous map peaked on the box: the median threshold keeps
    # N/2 - 1 pixels, so even a perfect ranking gets cIoU = A / (N/2 - 1) ~ 2a < 0.5.
    n, side = 16, 4
    gt = _box(n, n, 6, 6 + side, 6, 6 + side)
    heat = np.arange(n * n, dtype=float).reshape(n, n) + 1000 * gt
    area = side * side
    assert _eval_one(heat, gt) == pytest.approx(area / (n * n / 2 - 1))
    assert _eval_one(heat, gt) < 0.5
    # a binary oracle has ties at the threshold, which are not predicted: cIoU 1
    assert _eval_one(oracle_map(gt), gt) == 1.0


def test_flickr_ground_truth_from_several_annotators() -> None:
    gt = gt_from_boxes_flickr([[0, 0, 4, 4], [2, 0, 6, 4]], 8, 8, box_size=(8, 8))
    expected = np.zeros((8, 8))
    expected[0:4, 0:6] = 0.5
    expected[0:4, 2:4] = 1.0
    np.testing.assert_array_equal(gt, expected)
    three = gt_from_boxes_flickr([[0, 0, 2, 2]] * 3, 4, 4, box_size=(4, 4))
    assert three.max() == 1.0  # 3 / 2 capped
    heat = _box(8, 8, 0, 4, 2, 4)
    assert _eval_one(heat, gt) == pytest.approx(8 / 16)  # sum(gt) = 16
    # scaling from the 256 x 256 annotation frame: int(224 * 128 / 256) = 112
    scaled = gt_from_boxes_flickr([[0, 0, 128, 128]])
    assert scaled.shape == (224, 224) and scaled[:112, :112].min() == 0.5 and scaled[112:].max() == 0


def test_vggss_ground_truth_is_union_of_normalised_boxes() -> None:
    gt = gt_from_boxes_vggss([[0.25, 0.25, 0.5, 0.5], [-0.1, 0.0, 0.25, 0.25]], 8, 8)
    expected = np.zeros((8, 8))
    expected[2:4, 2:4] = 1
    expected[0:2, 0:2] = 1
    np.testing.assert_array_equal(gt, expected)
    # truncation: int(10 * 0.39) = 3
    assert gt_from_boxes_vggss([[0.0, 0.0, 0.39, 1.0]], 10, 10)[0].sum() == 3


def test_synth_ground_truth() -> None:
    ann = {"width": 6, "height": 4, "bbox": [[1, 0, 3, 2], None]}
    gt = gt_from_synth(ann, 0)
    assert gt is not None and gt.shape == (4, 6)
    np.testing.assert_array_equal(gt, _box(4, 6, 0, 2, 1, 3))
    assert gt_from_synth(ann, 1) is None
    with pytest.raises(IndexError):
        gt_from_synth(ann, 2)


def test_auc_of_known_cious() -> None:
    values = [0.0, 0.5, 1.0]
    curve = ciou_curve(values)
    assert curve[0] == 1.0
    assert curve[1:11] == pytest.approx([2 / 3] * 10) and curve[11:] == pytest.approx([1 / 3] * 10)
    expected = 0.05 * ((1 + 2 / 3) / 2 + 9 * 2 / 3 + (2 / 3 + 1 / 3) / 2 + 9 / 3)
    assert auc(values) == pytest.approx(expected, abs=1e-12)
    assert auc([1.0]) == pytest.approx(1.0)
    assert auc([0.0]) == pytest.approx(0.025)  # the reference counts cIoU >= 0 at t = 0
    assert AUC_THRESHOLDS[3] > 0.15 and ciou_curve([0.15])[3] == 0.0  # 0.05 * 3 as the reference


def test_evaluate_maps_summary() -> None:
    gt = _box(8, 8, 2, 6, 0, 4)
    heats = [oracle_map(gt), _box(8, 8, 2, 6, 2, 6), np.zeros((2, 2))]
    result = evaluate_maps(heats, [gt, gt, gt])
    assert result.n == 3
    assert result.ciou50 == pytest.approx(1 / 3)
    assert result.mean_ciou == pytest.approx((1 + 1 / 3 + 16 / 64) / 3)
    assert result.auc == pytest.approx(auc([1.0, 1 / 3, 0.25]))
    assert result.pointing == pytest.approx(2 / 3)  # flat map: first pixel (0, 0) is outside
    with pytest.raises(ValueError, match="empty"):
        evaluate_maps([gt], [np.zeros((8, 8))])
    with pytest.raises(ValueError, match="heatmaps"):
        evaluate_maps([gt], [])


def test_low_resolution_map_is_resized_to_the_gt() -> None:
    gt = _box(16, 16, 0, 8, 0, 8)
    heat = np.array([[1.0, 0.0], [0.0, 0.0]])
    assert pointing_hit(heat, gt)
    assert _eval_one(heat, gt) > 0.5


def test_center_box_baseline() -> None:
    np.testing.assert_array_equal(center_box_map(8, 8, 0.5), _box(8, 8, 2, 6, 2, 6))
    with pytest.raises(ValueError):
        center_box_map(8, 8, 0.0)
