"""Classification metrics on hand-checkable examples and against naive references."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avlearn.eval.classification import (
    ClassificationReport,
    confusion_matrix,
    per_class_accuracy,
    save_confusion_png,
    topk_accuracy,
    video_level,
)


def _two_videos() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """2 videos x 3 clips (interleaved), 3 classes; logits = log(probabilities) so softmax is exact.

    Video 0 (label 0): clips (0.4, 0.6, 0), (0.4, 0.6, 0), (1, 0, 0) -> mean (0.6, 0.4, 0): right,
    although two of its three clips predict class 1.
    Video 1 (label 2): (0.2, 0.3, 0.5), (0.1, 0.1, 0.8), (0.5, 0.2, 0.3) -> mean (0.8, 0.6, 1.6) / 3.
    """
    probs = torch.tensor([
        [0.2, 0.3, 0.5],  # video 1
        [0.4, 0.6, 0.0],  # video 0
        [0.1, 0.1, 0.8],  # video 1
        [0.4, 0.6, 0.0],  # video 0
        [1.0, 0.0, 0.0],  # video 0
        [0.5, 0.2, 0.3],  # video 1
    ], dtype=torch.float64)
    video_index = torch.tensor([1, 0, 1, 0, 0, 1])
    labels = torch.tensor([2, 0, 2, 0, 0, 2])
    return probs.log(), video_index, labels


def test_video_level_averages_softmax_probabilities() -> None:
    logits, video_index, labels = _two_videos()
    vprobs, vlabels = video_level(logits, video_index, labels)
    expected = torch.tensor([[0.6, 0.4, 0.0], [0.8 / 3, 0.6 / 3, 1.6 / 3]])
    torch.testing.assert_close(vprobs, expected, atol=1e-6, rtol=0)
    assert vlabels.tolist() == [0, 2]
    assert topk_accuracy(logits, labels, ks=(1,))["top1"] == pytest.approx(0.5)  # clips: 3 of 6
    assert topk_accuracy(vprobs, vlabels, ks=(1,))["top1"] == 1.0  # videos: both right


def test_video_level_sparse_indices_and_label_clash() -> None:
    logits = torch.zeros(3, 2)
    vprobs, vlabels = video_level(logits, torch.tensor([7, 3, 7]), torch.tensor([1, 0, 1]))
    assert vprobs.shape == (2, 2) and vlabels.tolist() == [0, 1]  # ordered by video index (3, 7)
    with pytest.raises(ValueError, match="video 7 have different labels"):
        video_level(logits, torch.tensor([7, 3, 7]), torch.tensor([1, 0, 0]))


def test_topk_hand_example_and_ties() -> None:
    logits = torch.tensor([
        [0.1, 0.5, 0.2, 0.0],  # label 1: rank 0
        [0.9, 0.5, 0.2, 0.0],  # label 2: rank 2
        [0.0, 0.0, 0.0, 0.0],  # label 2, all tied: classes 0 and 1 come first (argmax picks 0) -> rank 2
        [1.0, 2.0, 3.0, 4.0],  # label 0: rank 3
    ])
    labels = torch.tensor([1, 2, 2, 0])
    acc = topk_accuracy(logits, labels, ks=(1, 2, 3, 4, 5))
    assert acc == {"top1": 0.25, "top2": 0.25, "top3": 0.75, "top4": 1.0, "top5": 1.0}
    assert acc["top1"] == float((logits.argmax(1) == labels).float().mean())


@pytest.mark.parametrize("n,c", [(1, 2), (17, 5), (64, 10)])
def test_topk_matches_naive_reference(n: int, c: int) -> None:
    g = torch.Generator().manual_seed(n * c)
    logits = torch.randn(n, c, generator=g)
    labels = torch.randint(c, (n,), generator=g)
    for k in (1, 3, 5):
        top = logits.topk(min(k, c), dim=1).indices
        ref = sum(int(labels[i]) in top[i].tolist() for i in range(n)) / n
        assert topk_accuracy(logits, labels, ks=(k,))[f"top{k}"] == pytest.approx(ref)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        topk_accuracy(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="class ids"):
        topk_accuracy(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="k must be >= 1"):
        topk_accuracy(torch.zeros(2, 3), torch.tensor([0, 1]), ks=(0,))
    with pytest.raises(ValueError, match="class ids"):
        confusion_matrix(torch.tensor([0, 5]), torch.tensor([0, 1]), 3)


def test_per_class_and_confusion() -> None:
    preds = torch.tensor([0, 0, 1, 1, 2])
    labels = torch.tensor([0, 1, 1, 1, 0])
    conf = confusion_matrix(preds, labels, 4)
    assert conf.dtype == torch.long
    assert conf.tolist() == [[1, 0, 1, 0], [1, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    acc = per_class_accuracy(preds, labels, 4)
    assert acc[0] == 0.5 and acc[1] == pytest.approx(2 / 3)
    assert math.isnan(acc[2]) and math.isnan(acc[3])
    logits = torch.nn.functional.one_hot(preds, 4).float()  # scores work as well as ids
    assert torch.equal(confusion_matrix(logits, labels, 4), conf)


def test_report_dict_and_markdown() -> None:
    logits, video_index, labels = _two_videos()
    report = ClassificationReport.from_outputs(logits, labels, video_index, ["a", "b", "c"])
    assert report.clip_top1 == pytest.approx(0.5) and report.video_top1 == 1.0 and report.video_top5 == 1.0
    assert report.num_clips == 6 and report.num_videos == 2
    assert report.confusion.tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 1]]
    assert report.per_class[0] == 1.0 and math.isnan(report.per_class[1])
    d = json.loads(json.dumps(report.to_dict()))  # JSON-ready (NaN -> null)
    assert d["per_class"] == {"a": 1.0, "b": None, "c": 1.0} and d["video_top1"] == 1.0
    text = report.markdown()
    assert "| clip | 50.00 | 100.00 | 6 |" in text and "| video | 100.00 | 100.00 | 2 |" in text
    assert "| b | n/a | 0 |" in text
    with pytest.raises(ValueError, match="2 class names"):
        ClassificationReport.from_outputs(logits, labels, video_index, ["a", "b"])


@pytest.mark.parametrize("num_classes", [3, 120])
def test_confusion_png(tmp_path: Path, num_classes: int) -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(num_classes).repeat(4)
    preds = torch.where(torch.rand(labels.shape, generator=g) < 0.7, labels,
                        torch.randint(num_classes, labels.shape, generator=g))
    conf = confusion_matrix(preds, labels, num_classes)
    names = [f"Class{i}_{'x' * (i % 7)}" for i in range(num_classes)]
    path = save_confusion_png(conf, names, tmp_path / "sub" / "confusion.png")
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG" and img.width > num_classes and img.height > num_classes
    with pytest.raises(ValueError, match="class names"):
        save_confusion_png(conf, names[:-1], tmp_path / "x.png")


def _full_cells(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the pixels in the colour of a fraction of 1 (matplotlib's Blues at 1.0)."""
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.int64)
    rows, cols = np.nonzero((np.abs(rgb - np.array([8, 48, 107])) <= 2).all(axis=-1))
    return rows, cols


def test_confusion_png_rows_are_true_classes(tmp_path: Path) -> None:
    names = ["a", "b", "c", "d"]
    diagonal = save_confusion_png(5 * torch.eye(4, dtype=torch.long), names, tmp_path / "diag.png")
    all_a = torch.zeros(4, 4, dtype=torch.long)
    all_a[:, 0] = 5  # every true class predicted as "a": the first column is full
    column = save_confusion_png(all_a, names, tmp_path / "col.png")

    def spread(v: np.ndarray) -> float:
        return float(np.percentile(v, 95) - np.percentile(v, 5))

    d_rows, d_cols = _full_cells(diagonal)
    c_rows, c_cols = _full_cells(column)
    assert len(d_rows) > 4 * 500 and len(c_rows) > 4 * 500  # four full cells each, not a blank image
    assert spread(d_cols) > 0.7 * spread(d_rows)  # the diagonal spans rows and columns alike
    assert spread(c_cols) < 0.4 * spread(c_rows)  # one column, all rows
    assert c_cols.mean() < d_cols.mean()  # and it is the first column, on the left
