"""The localization benchmarks' released layouts: VGG-SS and Flickr-SoundNet, with SLAVC's negatives.

Layouts read (as released, and as the LVS and SLAVC evaluation code reads them)::

    ROOT/frames/<id>.jpg            the test frame
    ROOT/audio/<id>.wav             its sound
    vggss.json                      VGG-SS: [{"file": "<id>", "class": "...",
                                              "bbox": [[x0, y0, x1, y1], ...]}, ...]
                                    boxes normalised to [0, 1], one annotator, union of boxes
    Annotations/<id>.xml            Flickr-SoundNet: one file per image; every child of the root holds
                                    <bbox> elements whose first child is not a coordinate and the next
                                    four are xmin, ymin, xmax, ymax in pixels of the 256x256 image,
                                    several annotators (a pixel two agree on counts 1, one 0.5)
    <name>_test.csv                 the test ids, first column, no header (LVS's vggss_test.csv,
                                    flickr_test.csv)
    <name>_test_plus_silent.csv     SLAVC's extended list: "video,audio,label" with a header; rows
                                    labelled non-sounding pair a test frame with another clip's sound

Each format is one reader in :data:`BENCHMARK_FORMATS` (registered with
``@BENCHMARK_FORMATS.add("name")``): from the annotations it gives every test id's ground truth; an
unknown format is an error naming the valid ones. Ground truth maps are ``224 x 224``
(:func:`~avlearn.localization.metrics.gt_from_boxes_vggss`,
:func:`~avlearn.localization.metrics.gt_from_boxes_flickr`). A malformed annotation stops with
the file and the entry; a test id without its frame or sound is counted as missing and left out
(as SLAVC, which keeps the ids whose files exist).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from avlearn.localization.metrics import gt_from_boxes_flickr, gt_from_boxes_vggss
from avlearn.registry import Registry

__all__ = ["BENCHMARK_FORMATS", "GT_SIZE", "AnnotationError", "BenchmarkItem", "Kind", "benchmark_items",
           "read_extended_list", "read_flickr_annotation", "read_test_list", "read_vggss_annotations"]

GT_SIZE = 224  # the benchmarks' ground-truth maps are 224 x 224
Kind = Literal["positive", "non-sounding", "silent"]
Box = list[float]
GroundTruth = Callable[[str], np.ndarray]  # test id -> its (224, 224) ground-truth map
# a format: (annotations, test list) -> GroundTruth; the test list only names itself in errors
BENCHMARK_FORMATS: Registry[Callable[[str | Path, str | Path], GroundTruth]] = Registry(
    "localization benchmark format")


class AnnotationError(ValueError):
    """A malformed annotation; the message names the file and the entry."""


@dataclasses.dataclass(frozen=True)
class BenchmarkItem:
    """One test item: a frame, the sound played with it (``None``: silence) and its ground truth.

    ``gt`` is the ``(224, 224)`` map for a positive, ``None`` for a negative.
    """

    name: str
    frame: Path
    audio: Path | None
    gt: np.ndarray | None
    kind: Kind


def _box(value: Any, where: str) -> Box:
    if not isinstance(value, list) or len(value) != 4 or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise AnnotationError(f"{where}: a box is [x0, y0, x1, y1] of numbers, got {value!r}")
    return [float(v) for v in value]


def read_vggss_annotations(path: str | Path) -> dict[str, list[Box]]:
    """``{file id: normalised boxes}`` of VGG-SS's ``vggss.json`` (a list of ``file``/``bbox`` entries)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise AnnotationError(f"{path}: cannot read the VGG-SS annotations ({err})") from None
    if not isinstance(doc, list):
        raise AnnotationError(f"{path}: VGG-SS annotations are a JSON list of entries, "
                              f"got {type(doc).__name__}")
    out: dict[str, list[Box]] = {}
    for i, entry in enumerate(doc):
        name = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not isinstance(entry.get("bbox"), list):
            raise AnnotationError(f"{path}: entry {i} needs a 'file' name and a 'bbox' list, got {entry!r}")
        out[name] = [_box(b, f"{path}: entry {i} ({name}), bbox {j}") for j, b in enumerate(entry["bbox"])]
    return out


def read_flickr_annotation(path: str | Path) -> list[Box]:
    """Every annotator's boxes (pixels of the 256x256 image) in one Flickr-SoundNet XML file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as err:
        raise AnnotationError(f"{path}: cannot read the Flickr-SoundNet annotation ({err})") from None
    boxes: list[Box] = []
    for k, group in enumerate(root):
        for j, element in enumerate(group):
            where = f"{path}: <{group.tag}> {k}, <{element.tag}> {j}"
            if element.tag != "bbox":
                raise AnnotationError(f"{where}: expected a <bbox> element")
            fields = list(element)[1:5]
            try:
                values = [int((f.text or "").strip()) for f in fields]
            except ValueError:
                values = []
            if len(values) != 4:
                raise AnnotationError(f"{where}: a <bbox> holds a label then four integer pixel "
                                      f"coordinates xmin, ymin, xmax, ymax; got "
                                      f"{[(f.tag, f.text) for f in element]}")
            boxes.append([float(v) for v in values])
    if not boxes:
        raise AnnotationError(f"{path}: no <bbox> in the annotation")
    return boxes


def read_test_list(path: str | Path) -> list[str]:
    """Test ids: the first column of every non-empty row (no header)."""
    with open(path, newline="") as f:
        return [row[0].strip() for row in csv.reader(f) if row and row[0].strip()]


def read_extended_list(path: str | Path) -> list[tuple[str, str]]:
    """``(frame id, audio id)`` of every ``non-sounding`` row of SLAVC's ``*_test_plus_silent.csv``."""
    pairs = []
    with open(path, newline="") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if not row or row == ["video", "audio", "label"]:
                continue
            if len(row) < 3 or not row[0].strip() or not row[1].strip():
                raise AnnotationError(f"{path}:{line}: expected 'video,audio,label', got {row!r}")
            if row[2].strip() == "non-sounding":
                pairs.append((row[0].strip(), row[1].strip()))
    return pairs


@BENCHMARK_FORMATS.add("vggss")
def _vggss(annotations: str | Path, test_list: str | Path) -> GroundTruth:
    """``annotations``: VGG-SS's ``vggss.json``, read at once."""
    boxes = read_vggss_annotations(annotations)

    def gt(name: str) -> np.ndarray:
        if name not in boxes:
            raise AnnotationError(f"{annotations}: no entry for test id {name} of {test_list}")
        return gt_from_boxes_vggss(boxes[name], GT_SIZE, GT_SIZE)
    return gt


@BENCHMARK_FORMATS.add("flickr")
def _flickr(annotations: str | Path, test_list: str | Path) -> GroundTruth:
    """``annotations``: the folder of Flickr-SoundNet's ``<id>.xml`` files, read one by one."""
    def gt(name: str) -> np.ndarray:
        boxes = read_flickr_annotation(Path(annotations) / f"{name}.xml")
        return gt_from_boxes_flickr(boxes, GT_SIZE, GT_SIZE, box_size=(256, 256))
    return gt


def benchmark_items(fmt: str, root: str | Path, annotations: str | Path,
                    test_list: str | Path, extended: str | Path | None = None,
                    silent: bool = False) -> tuple[list[BenchmarkItem], dict[str, int]]:
    """The test items of a benchmark and the counts of ids left out (``missing_files``).

    Args:
        fmt: a key of :data:`BENCHMARK_FORMATS`: ``vggss`` (``annotations`` = ``vggss.json``) or
            ``flickr`` (``annotations`` = the folder of ``<id>.xml`` files).
        root: the folder with ``frames/`` and ``audio/``.
        test_list: the ids of the positives (first column).
        extended: SLAVC's extended list: its non-sounding rows become negatives.
        silent: add every positive's frame with silence, as its own category.
    """
    ground_truth = BENCHMARK_FORMATS[fmt](annotations, test_list)  # an unknown format stops here
    frames, sounds = Path(root) / "frames", Path(root) / "audio"
    missing = 0
    items: list[BenchmarkItem] = []
    for name in read_test_list(test_list):
        frame, audio = frames / f"{name}.jpg", sounds / f"{name}.wav"
        if not (frame.is_file() and audio.is_file()):
            missing += 1
            continue
        items.append(BenchmarkItem(name, frame, audio, ground_truth(name), "positive"))
    for video, audio_id in read_extended_list(extended) if extended else []:
        frame, audio = frames / f"{video}.jpg", sounds / f"{audio_id}.wav"
        if not (frame.is_file() and audio.is_file()):
            missing += 1
            continue
        items.append(BenchmarkItem(f"{video}+{audio_id}", frame, audio, None, "non-sounding"))
    if silent:
        items += [BenchmarkItem(f"{it.name}+silence", it.frame, None, None, "silent")
                  for it in items if it.kind == "positive"]
    return items, {"missing_files": missing}
