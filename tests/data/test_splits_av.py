"""The audio-visual classification formats (VGGSound, AudioSet) and the multi-label splits, on fixtures
written in the released layouts with tiny real clips."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from avlearn.config import ConfigError
from avlearn.data.splits import (
    DatasetConfig,
    SplitFormatError,
    audioset_split,
    label_matrix,
    load_split,
    read_audioset_classes,
    subsample_per_class,
    to_manifest_rows,
    vggsound_split,
)
from avlearn.media import write_av


def _clip(path: Path, shade: int = 90) -> Path:
    """A tiny real clip: 4 frames of 16 px, 0.5 s of a tone."""
    audio = (0.1 * np.sin(np.arange(4000) / 5)).astype(np.float32)
    return write_av(path, np.full((4, 16, 16, 3), shade, np.uint8), 8, audio, 8000)


# ------------------------------------------------------------------------------------- VGGSound

VGGSOUND_CSV = """---g-f_I2yQ,1,people marching,test
--0PQM4-hqg,30,waterfall burbling,train
-0BIyqJj9ZU,30,"people eating, chewing",train
-0Gj8-vB1q4,30,people marching,train
"""


def _vggsound(root: Path) -> Path:
    (root / "video").mkdir(parents=True)
    (root / "vggsound.csv").write_text(VGGSOUND_CSV)
    for name in ("---g-f_I2yQ_000001", "--0PQM4-hqg_000030", "-0BIyqJj9ZU_000030"):  # the last one missing
        _clip(root / "video" / f"{name}.mp4")
    return root


def test_vggsound_reads_the_released_csv_and_clip_names(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    root = _vggsound(tmp_path / "vggsound")
    train = load_split(DatasetConfig(format="vggsound", root=str(root)), "train")
    test = load_split(DatasetConfig(format="vggsound", root=str(root)), "test")
    classes = ["people eating, chewing", "people marching", "waterfall burbling"]  # sorted, of the whole file
    assert train.classes == test.classes == classes
    assert train.items == [("video/--0PQM4-hqg_000030.mp4", 2), ("video/-0BIyqJj9ZU_000030.mp4", 0),
                           ("video/-0Gj8-vB1q4_000030.mp4", 1)]
    assert test.items == [("video/---g-f_I2yQ_000001.mp4", 1)] and not train.multi_label
    with caplog.at_level(logging.WARNING):  # a missing clip: counted, named and left out, as for Kinetics
        rows = to_manifest_rows(train)
    assert [Path(r.path).name for r in rows] == ["--0PQM4-hqg_000030.mp4", "-0BIyqJj9ZU_000030.mp4"]
    assert "1 of 3 files missing" in caplog.text and "-0Gj8-vB1q4_000030.mp4" in caplog.text
    # clips at the top of video_root are found too
    flat = vggsound_split(root / "vggsound.csv", "test", video_root=root / "video")
    assert flat.items == [("---g-f_I2yQ_000001.mp4", 1)]


@pytest.mark.parametrize(("line", "message"), [
    ("abc,30,dog barking", r"vggsound.csv:5: 3 fields in 'abc,30,dog barking'"),
    ("abc,3.5,dog barking,train", r"vggsound.csv:5: start '3.5' is not a whole number"),
    ("abc,30,dog barking,val", r"vggsound.csv:5: split 'val'; expected 'train' or 'test'"),
    (",30,dog barking,train", r"vggsound.csv:5: empty YouTube id or label"),
])
def test_vggsound_malformed_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "vggsound.csv"
    path.write_text(VGGSOUND_CSV + line + "\n")
    with pytest.raises(SplitFormatError, match=message):
        vggsound_split(path, "train")


# ------------------------------------------------------------------------------------- AudioSet

CLASS_INDEX = '''index,mid,display_name
0,/m/09x0r,"Speech"
1,/m/05zppz,"Male speech, man speaking"
2,/m/0jbk,"Animal"
'''
HEADER = '''# Segments csv created Sun Mar  5 10:54:31 2017
# num_ytids=3, num_segs=3, num_unique_labels=3, num_positive_labels=5
# YTID, start_seconds, end_seconds, positive_labels
'''


def _audioset(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "class_labels_indices.csv").write_text(CLASS_INDEX)
    (root / "balanced_train_segments.csv").write_text(HEADER + '''\
--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/05zppz"
--ZhevVpy1s, 50.000, 60.000, "/m/0jbk"
--aE2O5G5WE, 0.000, 10.000, "/m/0jbk,/m/09x0r"
''')
    (root / "eval_segments.csv").write_text(HEADER + '''--4gqARaEJE, 0.000, 10.000, "/m/0jbk"
''')
    _clip(root / "balanced_train" / "--PJHxphWEs.mp4")
    _clip(root / "Y--ZhevVpy1s.mp4")  # PANNs' naming
    _clip(root / "--aE2O5G5WE_0.000_10.000.mp4")  # id and times
    _clip(root / "eval" / "--4gqARaEJE.mp4")
    return root


def test_audioset_segments_are_multi_label(tmp_path: Path) -> None:
    root = _audioset(tmp_path / "audioset")
    cfg = DatasetConfig(format="audioset", root=str(root), train_split="balanced_train", test_split="eval")
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    assert train.classes == ["Speech", "Male speech, man speaking", "Animal"] and train.multi_label
    assert train.items == [("balanced_train/--PJHxphWEs.mp4", 0), ("Y--ZhevVpy1s.mp4", 2),
                           ("--aE2O5G5WE_0.000_10.000.mp4", 0)]
    assert train.label_sets == [(0, 1), (2,), (0, 2)]
    assert test.items == [("eval/--4gqARaEJE.mp4", 2)] and test.label_sets == [(2,)]
    np.testing.assert_array_equal(train.targets(), [[1, 1, 0], [0, 0, 1], [1, 0, 1]])
    # the targets of a dataset's rows follow their paths, whatever the order
    rows = to_manifest_rows(train)
    np.testing.assert_array_equal(label_matrix(train, [rows[2].path, rows[0].path]), [[1, 0, 1], [1, 1, 0]])
    with pytest.raises(ValueError, match="not in audioset"):
        label_matrix(train, ["elsewhere.mp4"])
    # a subsample keeps each item's label set
    sub = subsample_per_class(train, 0.5, seed=0)
    assert sub.label_sets == [dict(zip(train.items, train.label_sets, strict=True))[i] for i in sub.items]


@pytest.mark.parametrize(("line", "message"), [
    ('abc, 30.000, 40.000, "/m/nope"',
     r"balanced_train_segments.csv:7: labels '/m/nope': \['/m/nope'\] not in class_labels_indices.csv"),
    ('abc, 30.000, 40.000', r"balanced_train_segments.csv:7: 3 fields"),
    ('abc, 40.000, 30.000, "/m/0jbk"',
     r"balanced_train_segments.csv:7: id 'abc', start '40.000', end '30.000'"),
    ('abc, x, 30.000, "/m/0jbk"', r"balanced_train_segments.csv:7: id 'abc', start 'x'"),
    ('abc, 30.000, 40.000, ""', r"balanced_train_segments.csv:7: labels '' empty"),
])
def test_audioset_malformed_segments_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    root = _audioset(tmp_path / "audioset")
    path = root / "balanced_train_segments.csv"
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(SplitFormatError, match=message):
        audioset_split(path, root / "class_labels_indices.csv")


@pytest.mark.parametrize(("text", "message"), [
    ("0,/m/09x0r,Speech\n", r"class_labels_indices.csv:1: no 'index,mid,display_name' header"),
    (CLASS_INDEX + "4,/m/x,X\n", r"class_labels_indices.csv:5: index 4 out of order"),
    (CLASS_INDEX + "3,/m/0jbk,Again\n", r"class_labels_indices.csv:5: mid /m/0jbk listed twice"),
    (CLASS_INDEX + "3\n", r"class_labels_indices.csv:5: cannot parse '3'"),
])
def test_audioset_malformed_class_index(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "class_labels_indices.csv"
    path.write_text(text)
    with pytest.raises(SplitFormatError, match=message):
        read_audioset_classes(path)


def test_an_audioset_layout_can_be_set(tmp_path: Path) -> None:
    root = _audioset(tmp_path / "audioset")
    cfg = DatasetConfig(format="audioset", root=str(root), test_split="eval", layout="clips/{ytid}.mkv")
    with pytest.raises(ConfigError, match=r"none of the 1 files .* exists .*clips/--4gqARaEJE.mkv"):
        load_split(cfg, "test")


# ------------------------------------------------------------------------------------- synthetic labels


def _synthetic(root: Path) -> Path:
    splits = root / "splits"
    splits.mkdir(parents=True)
    (splits / "classInd.txt").write_text("1 Bouncing\n2 Circling\n")
    (splits / "trainlist01.txt").write_text("Bouncing/a.mp4 1\nCircling/b.mp4 2\nBouncing/c.mp4 1\n")
    (splits / "testlist01.txt").write_text("Circling/b.mp4\n")
    videos = [  # a: red sounds, blue in view; b: blue sounds, green never in view; c: green alone
        {"file": "videos/Bouncing/a.mp4", "class_label": 0,
         "distractors": [{"class_label": 1, "bbox": [None, [0, 0, 2, 2]]}]},
        {"file": "videos/Circling/b.mp4", "class_label": 1,
         "distractors": [{"class_label": 2, "bbox": [None, None]}]},
        {"file": "videos/Bouncing/c.mp4", "class_label": 2, "distractors": []},
    ]
    classes = [{"name": n, "label": i} for i, n in enumerate(["red", "blue", "green"])]
    (root / "annotations.json").write_text(json.dumps({"classes": classes, "videos": videos}))
    for rel in ("Bouncing/a.mp4", "Circling/b.mp4", "Bouncing/c.mp4"):
        _clip(root / "videos" / rel)
    return root


def test_synthetic_multi_label_kinds(tmp_path: Path) -> None:
    root = _synthetic(tmp_path / "synth")
    visible = load_split(DatasetConfig(root=str(root), label="visible_objects"), "train")
    assert visible.classes == ["visible red", "visible blue", "visible green"]
    assert visible.label_sets == [(0, 1), (1,), (2,)] and [y for _, y in visible.items] == [0, 1, 2]
    both = load_split(DatasetConfig(root=str(root), label="visible_and_sounding"), "train")
    assert both.classes[3:] == ["sounding red", "sounding blue", "sounding green"]
    assert both.label_sets == [(0, 1, 3), (1, 4), (2, 5)]
    with pytest.raises(ConfigError, match="'visible_objects' exists only for format: synthetic"):
        DatasetConfig(format="vggsound", label="visible_objects")


def test_shuffled_training_labels_are_a_permutation(tmp_path: Path) -> None:
    root = _synthetic(tmp_path / "synth")
    cfg = DatasetConfig(root=str(root), label="visible_and_sounding", shuffle_train_labels=True)
    plain = load_split(DatasetConfig(root=str(root), label="visible_and_sounding"), "train")
    shuffled = load_split(cfg, "train")
    assert [p for p, _ in shuffled.items] == [p for p, _ in plain.items]
    assert shuffled.label_sets is not None and plain.label_sets is not None
    assert sorted(shuffled.label_sets) == sorted(plain.label_sets) and shuffled.label_sets != plain.label_sets
    assert [y for _, y in shuffled.items] == [s[0] for s in shuffled.label_sets]
    assert load_split(cfg, "test").label_sets == [(1, 4)]  # the test split is never shuffled
