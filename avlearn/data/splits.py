"""Split files of labelled datasets -> ``(path, label)`` lists -> manifest rows.

Each parser reads the official split format of one dataset and returns a
:class:`LabelledSplit`: the class names (index = label id, 0-based), the ``(path, label)``
items of the requested split and fold, and the folder the relative paths are under. A line
that does not fit the format raises :class:`SplitFormatError` naming ``file:line``, what was
found and what was expected.

=====================  =====================================================================
format                 parser
=====================  =====================================================================
UCF-101                :func:`ucf101_split` (``classInd.txt``, ``trainlist0N.txt``,
                       ``testlist0N.txt``; folds 1-3)
synthetic collection   :func:`synthetic_split` (``data_prep.synth``: the UCF-101 format plus
                       ``vallist01.txt``)
HMDB-51                :func:`hmdb51_split` (``<class>_test_split{1,2,3}.txt``)
Kinetics CSV           :func:`kinetics_split` (``label,youtube_id,time_start,time_end,split``)
ESC-50                 :func:`esc50_split` (``meta/esc50.csv``; folds 1-5)
VGGSound               :func:`vggsound_split` (``vggsound.csv``: ``YouTubeID,start,label,train|test``)
AudioSet               :func:`audioset_split` (``*_segments.csv`` + ``class_labels_indices.csv``;
                       multi-label)
folder per class       :func:`folder_split` (``root/<class>/*.mp4``)
=====================  =====================================================================

A multi-label split (AudioSet, the synthetic collection's ``visible_objects`` labels) also carries
:attr:`LabelledSplit.label_sets`, every item's label ids; an item's single ``label`` is then the
first of them (what per-class subsampling goes by).

:class:`DatasetConfig` (the ``dataset:`` section of the downstream configs) names a format, its
folder and fold; :func:`load_split` reads its train or test split through the format's reader in
:data:`SPLIT_FORMATS`, the train split subsampled to ``label_fraction``. A new format is one
function ``(DatasetConfig, "train" | "test") -> LabelledSplit`` registered with
``@SPLIT_FORMATS.add("name")`` in this file; an unknown ``dataset.format`` is refused at load,
naming the valid ones.

Then :func:`to_manifest_rows` turns a split into :class:`~avlearn.data.manifest.VideoInfo`
rows (``label`` = class name) that the datasets read, and :func:`subsample_per_class` draws
the nested per-class subsets of label-efficiency experiments (1 % of the labels is a subset of
10 %, which is a subset of 100 %, for one seed).

Example::

    train = ucf101_split("ucfTrainTestlist", fold=1, split="train", video_root="UCF-101")
    rows = to_manifest_rows(subsample_per_class(train, 0.1, seed=0), probe=True, workers=8)
    write_manifest(rows, "ucf101_train01_10pct.csv")
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import zlib
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import numpy as np

from avlearn.config import ConfigError, InvalidValue
from avlearn.data.manifest import VideoInfo
from avlearn.data.probe import probe_many
from avlearn.registry import Registry

__all__ = [
    "AUDIOSET_LAYOUTS", "KINETICS_LAYOUTS", "SPLIT_FORMATS", "VGGSOUND_LAYOUTS", "DatasetConfig",
    "LabelledSplit", "SplitFormatError", "audioset_split", "esc50_split", "folder_split", "hmdb51_split",
    "kinetics_split", "label_matrix", "load_split", "read_audioset_classes", "read_class_index",
    "subsample_per_class", "synthetic_split", "to_manifest_rows", "ucf101_split", "vggsound_split",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

Item = tuple[str, int]
"""``(path, label)``: path relative to :attr:`LabelledSplit.root` (or absolute); 0-based label."""

_MEDIA_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".ogv",
                     ".wav", ".flac", ".ogg", ".mp3")


class SplitFormatError(ValueError):
    """A split file line that does not match its format; the message is ``file:line: problem; expected``."""

    def __init__(self, path: str | Path, line: int | None, problem: str, expected: str = "") -> None:
        self.path = str(path)
        self.line = line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}" + (f"; expected {expected}" if expected else ""))


@dataclasses.dataclass(frozen=True)
class LabelledSplit:
    """One split (and fold) of a labelled dataset.

    Attributes:
        classes: class names; ``classes[label]`` names label ``label`` (0-based).
        items: ``(path, label)`` pairs; relative paths are relative to ``root``.
        root: folder the relative paths are under (``""``: the caller's working directory).
        name: what was read, e.g. ``"ucf101 train fold 1"`` (for messages).
        label_sets: multi-label splits only: every item's label ids (sorted, at least one), indexed
            like ``items``; ``None`` for single-label splits.
    """

    classes: list[str]
    items: list[Item]
    root: str = ""
    name: str = ""
    label_sets: list[tuple[int, ...]] | None = None

    @property
    def multi_label(self) -> bool:
        """Whether items may have several labels (train with binary cross-entropy, score with mAP)."""
        return self.label_sets is not None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Class name -> label id (what :class:`~avlearn.data.labelled.LabelledClipDataset` takes)."""
        return {name: i for i, name in enumerate(self.classes)}

    def counts(self) -> list[int]:
        """Number of items per class, indexed by label."""
        out = [0] * len(self.classes)
        for _, label in self.items:
            out[label] += 1
        return out

    def with_items(self, items: Sequence[Item]) -> LabelledSplit:
        """The same split (classes, root) with other items, e.g. a per-class subsample; a
        multi-label split's label sets follow the items' paths."""
        if self.label_sets is None:
            return dataclasses.replace(self, items=list(items))
        by_path = dict(zip((p for p, _ in self.items), self.label_sets, strict=True))
        return dataclasses.replace(self, items=list(items), label_sets=[by_path[p] for p, _ in items])

    def targets(self) -> np.ndarray:
        """Multi-hot targets ``(N, C)`` float32 of the items (one-hot for a single-label split)."""
        sets = self.label_sets if self.label_sets is not None else [(y,) for _, y in self.items]
        out = np.zeros((len(sets), len(self.classes)), dtype=np.float32)
        for row, labels in enumerate(sets):
            out[row, list(labels)] = 1.0
        return out


def label_matrix(split: LabelledSplit, paths: Sequence[str]) -> np.ndarray:
    """Multi-hot targets ``(V, C)`` of the files ``paths`` (e.g. a dataset's rows after missing files
    were left out), looked up by path; relative item paths are taken under ``split.root``."""
    root = Path(split.root)
    rows = split.targets()
    index = {str(Path(p) if Path(p).is_absolute() else root / p): i for i, (p, _) in enumerate(split.items)}
    unknown = [p for p in paths if str(p) not in index]
    if unknown:
        raise ValueError(f"label_matrix: {len(unknown)} file(s) not in {split.name or 'the split'}, "
                         f"e.g. {unknown[:3]}")
    return rows[[index[str(p)] for p in paths]] if paths else rows[:0]


# ------------------------------------------------------------------------------------- helpers


def _lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, stripped text)`` of the non-empty lines of a text file."""
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")  # tolerate a BOM; splitlines also drops CR of CRLF files
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _check_fold(fold: int, valid: Sequence[int], dataset: str) -> None:
    if fold not in valid:
        raise ValueError(f"{dataset}: fold must be one of {list(valid)}, got {fold!r}")


def _check_split(split: str, valid: Sequence[str], dataset: str) -> None:
    if split not in valid:
        raise ValueError(f"{dataset}: split must be one of {list(valid)}, got {split!r}")


def _root(video_root: str | Path | None, default: Path) -> str:
    return str(Path(video_root) if video_root is not None else default)


# ------------------------------------------------------------------------------------- UCF-101


def read_class_index(path: str | Path) -> list[str]:
    """Class names of a UCF-101 style ``classInd.txt`` (``"1 ApplyEyeMakeup"``, ids 1..C in order)."""
    path = Path(path)
    classes: list[str] = []
    for lineno, line in _lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise SplitFormatError(path, lineno, f"cannot parse {line!r}",
                                   "'<id> <ClassName>', e.g. '1 ApplyEyeMakeup'")
        if int(parts[0]) != len(classes) + 1:
            raise SplitFormatError(path, lineno, f"class id {parts[0]} out of order",
                                   f"ids 1, 2, 3, ... in order (this line should have id {len(classes) + 1})")
        if parts[1] in classes:
            raise SplitFormatError(path, lineno, f"class {parts[1]!r} listed twice", "each class once")
        classes.append(parts[1])
    if not classes:
        raise SplitFormatError(path, None, "no class listed", "lines '<id> <ClassName>'")
    return classes


def _read_ucf_list(path: Path, classes: list[str]) -> list[Item]:
    """Lines ``"Class/v_Class_g08_c01.avi 1"`` (1-based label) or ``"Class/v_Class_g01_c01.avi"``
    (label from the folder name, as UCF-101's test lists)."""
    by_name = {name: i for i, name in enumerate(classes)}
    by_lower = {name.lower(): i for i, name in enumerate(classes)}
    expected = "'<Class>/<video> <label id>' or '<Class>/<video>'"
    items: list[Item] = []
    for lineno, line in _lines(path):
        parts = line.split()
        if len(parts) not in (1, 2):
            raise SplitFormatError(path, lineno, f"{len(parts)} fields in {line!r}", expected)
        rel = parts[0].replace("\\", "/")
        folder = rel.split("/")[0] if "/" in rel else ""
        from_folder = by_name.get(folder, by_lower.get(folder.lower()))
        if len(parts) == 2:
            if not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(classes):
                raise SplitFormatError(path, lineno, f"label {parts[1]!r} is not a class id",
                                       f"an integer in 1..{len(classes)} (classInd.txt)")
            label = int(parts[1]) - 1
            if from_folder is not None and from_folder != label:
                raise SplitFormatError(path, lineno,
                                       f"label {parts[1]} ({classes[label]}) differs from folder {folder!r}",
                                       "the id of the folder's class in classInd.txt")
        else:
            if from_folder is None:
                raise SplitFormatError(path, lineno,
                                       f"folder {folder!r} of {rel!r} is not a class of classInd.txt",
                                       f"{expected} with <Class> one of {classes[:5]}...")
            label = from_folder
        items.append((rel, label))
    return items


def ucf101_split(
    splits_dir: str | Path,
    fold: int = 1,
    split: Literal["train", "test"] = "train",
    video_root: str | Path | None = None,
) -> LabelledSplit:
    """UCF-101 split ``split`` of fold ``fold`` (1-3) from the official ``ucfTrainTestlist`` folder.

    Args:
        splits_dir: folder with ``classInd.txt``, ``trainlist0{1,2,3}.txt``, ``testlist0{1,2,3}.txt``.
        fold: 1, 2 or 3.
        split: ``"train"`` (labelled lines) or ``"test"`` (label from the folder name).
        video_root: folder holding ``<Class>/<video>.avi`` (default: ``splits_dir``'s parent / ``UCF-101``).
    """
    _check_fold(fold, (1, 2, 3), "ucf101_split")
    _check_split(split, ("train", "test"), "ucf101_split")
    splits_dir = Path(splits_dir)
    classes = read_class_index(splits_dir / "classInd.txt")
    items = _read_ucf_list(splits_dir / f"{split}list0{fold}.txt", classes)
    return LabelledSplit(classes, items, _root(video_root, splits_dir.parent / "UCF-101"),
                         f"ucf101 {split} fold {fold}")


def synthetic_split(root: str | Path, split: Literal["train", "val", "test"] = "train") -> LabelledSplit:
    """A split of the synthetic collection written by ``data_prep.synth`` (labels: the actions).

    ``root`` is the collection's folder (``root/splits/*list01.txt``, videos under ``root/videos``).
    """
    _check_split(split, ("train", "val", "test"), "synthetic_split")
    root = Path(root)
    classes = read_class_index(root / "splits" / "classInd.txt")
    items = _read_ucf_list(root / "splits" / f"{split}list01.txt", classes)
    return LabelledSplit(classes, items, str(root / "videos"), f"synthetic {split}")


# ------------------------------------------------------------------------------------- HMDB-51

_HMDB_CODES = {"train": 1, "test": 2}


def hmdb51_split(
    splits_dir: str | Path,
    fold: int = 1,
    split: Literal["train", "test"] = "train",
    video_root: str | Path | None = None,
) -> LabelledSplit:
    """HMDB-51 split from the official ``<class>_test_split{fold}.txt`` files.

    Each line is ``"<video>.avi <code>"`` with code 0 (unused), 1 (train) or 2 (test); the class
    is the file name's prefix; videos are under ``video_root/<class>/<video>``. Classes are sorted.

    Args:
        splits_dir: folder with the 51 x 3 ``*_test_split{1,2,3}.txt`` files.
        fold: 1, 2 or 3.
        split: ``"train"`` (code 1) or ``"test"`` (code 2).
        video_root: default ``splits_dir``'s parent / ``hmdb51``.
    """
    _check_fold(fold, (1, 2, 3), "hmdb51_split")
    _check_split(split, tuple(_HMDB_CODES), "hmdb51_split")
    splits_dir = Path(splits_dir)
    suffix = f"_test_split{fold}.txt"
    files = sorted(p for p in splits_dir.glob(f"*{suffix}") if p.is_file())
    if not files:
        raise FileNotFoundError(f"hmdb51_split: no '*{suffix}' file in {splits_dir}")
    classes = [p.name[: -len(suffix)] for p in files]
    want = _HMDB_CODES[split]
    items: list[Item] = []
    for label, path in enumerate(files):
        for lineno, line in _lines(path):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise SplitFormatError(path, lineno, f"cannot parse {line!r}",
                                       "'<video>.avi <code>' with code 0 (unused), 1 (train) or 2 (test)")
            if int(parts[1]) == want:
                items.append((f"{classes[label]}/{parts[0]}", label))
    return LabelledSplit(classes, items, _root(video_root, splits_dir.parent / "hmdb51"),
                         f"hmdb51 {split} fold {fold}")


# ------------------------------------------------------------------------------------- Kinetics

KINETICS_LAYOUTS = ("{split}/{label}/{name}", "{split}/{label_}/{name}", "{label}/{name}",
                    "{label_}/{name}", "{split}/{name}", "{name}")
"""Path templates :func:`kinetics_split` tries in order when asked to search."""

_KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")
_SPLIT_ALIASES = {"validate": "val", "validation": "val", "valid": "val"}


def kinetics_split(
    csv_path: str | Path,
    video_root: str | Path | None = None,
    split: str | None = None,
    layout: str | Sequence[str] = KINETICS_LAYOUTS,
    classes: Sequence[str] | None = None,
    extension: str = ".mp4",
) -> LabelledSplit:
    """Rows of a Kinetics-style CSV (``label,youtube_id,time_start,time_end[,split,...]``).

    A row's file is ``<youtube_id>_<time_start:06d>_<time_end:06d><extension>`` (``{name}``)
    placed by ``layout``, a path template with the fields ``{name}``, ``{youtube_id}``,
    ``{time_start}``, ``{time_end}`` (ints), ``{label}``, ``{label_}`` (spaces -> ``_``) and
    ``{split}``. Given several templates, each row takes the first whose file exists under
    ``video_root`` (the first template when none does, so missing files are reported later).

    Args:
        csv_path: the annotation CSV (e.g. ``kinetics400/train.csv``).
        video_root: folder the layout is relative to (default: the CSV's folder).
        split: keep rows whose ``split`` column is this (``validate`` counts as ``val``);
            ``None`` keeps all rows (and the column may be absent).
        layout: one template or several to search.
        classes: class order; default the sorted labels of the *whole* CSV (so splits filtered
            from one CSV share label ids). Pass the training CSV's classes to a validation CSV.
        extension: video file suffix.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"kinetics_split: CSV not found: {csv_path}")
    root = Path(video_root) if video_root is not None else csv_path.parent
    templates = [layout] if isinstance(layout, str) else list(layout)
    if not templates:
        raise ValueError("kinetics_split: layout needs at least one path template")
    want = _SPLIT_ALIASES.get(split, split) if split is not None else None
    rows: list[tuple[int, dict[str, Any]]] = []
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in _KINETICS_COLUMNS if c not in header]
        if missing or (want is not None and "split" not in header):
            need = list(_KINETICS_COLUMNS) + (["split"] if want is not None else [])
            raise SplitFormatError(csv_path, 1, f"header {header} lacks {missing or ['split']}",
                                   f"a header with the columns {need}")
        for lineno, rec in enumerate(reader, 2):
            if None in rec or any(rec.get(c) is None for c in header):
                raise SplitFormatError(csv_path, lineno, f"{len(header)} columns expected",
                                       f"values for {header}")
            try:
                t0, t1 = int(float(rec["time_start"])), int(float(rec["time_end"]))
            except ValueError:
                raise SplitFormatError(csv_path, lineno, f"time_start={rec['time_start']!r}, "
                                       f"time_end={rec['time_end']!r}", "numbers of seconds") from None
            if not rec["label"].strip() or not rec["youtube_id"].strip():
                raise SplitFormatError(csv_path, lineno, "empty label or youtube_id", "non-empty values")
            row_split = rec.get("split", "") or ""
            rows.append((lineno, {"label": rec["label"].strip(), "youtube_id": rec["youtube_id"].strip(),
                                  "time_start": t0, "time_end": t1,
                                  "split": _SPLIT_ALIASES.get(row_split, row_split)}))
    class_list = sorted({r["label"] for _, r in rows}) if classes is None else list(classes)
    index = {name: i for i, name in enumerate(class_list)}
    items: list[Item] = []
    for lineno, rec in rows:
        if want is not None and rec["split"] != want:
            continue
        if rec["label"] not in index:
            raise SplitFormatError(csv_path, lineno, f"label {rec['label']!r} not in the given classes",
                                   f"one of {class_list[:5]}...")
        name = f"{rec['youtube_id']}_{rec['time_start']:06d}_{rec['time_end']:06d}{extension}"
        fields = {**rec, "name": name, "label_": rec["label"].replace(" ", "_")}
        candidates = [t.format(**fields) for t in templates]
        rel = next((c for c in candidates if (root / c).is_file()), candidates[0]) if len(candidates) > 1 \
            else candidates[0]
        items.append((rel, index[rec["label"]]))
    name = f"kinetics {csv_path.name}" + (f" {want}" if want else "")
    return LabelledSplit(class_list, items, str(root), name)


# ------------------------------------------------------------------------------------- ESC-50

_ESC50_COLUMNS = ("filename", "fold", "target", "category")


def esc50_split(root: str | Path, fold: int, train: bool, esc10: bool = False) -> LabelledSplit:
    """ESC-50 fold ``fold`` (1-5) from ``root/meta/esc50.csv``; audio under ``root/audio``.

    ``train=False`` gives the clips of ``fold``, ``train=True`` those of the four other folds.
    Classes are the ``category`` names ordered by ``target`` (0..49). ``esc10=True`` keeps the
    ESC-10 subset (rows with ``esc10`` true), re-indexed 0..9 in ``target`` order.
    """
    _check_fold(fold, (1, 2, 3, 4, 5), "esc50_split")
    root = Path(root)
    path = root / "meta" / "esc50.csv"
    if not path.is_file():
        raise FileNotFoundError(f"esc50_split: {path} not found (root must be the ESC-50 folder)")
    target_names: dict[int, str] = {}
    rows: list[tuple[str, int, int]] = []  # filename, fold, target
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        need = list(_ESC50_COLUMNS) + (["esc10"] if esc10 else [])
        if any(c not in header for c in need):
            raise SplitFormatError(path, 1, f"header {header} lacks {[c for c in need if c not in header]}",
                                   f"the columns {need}")
        for lineno, rec in enumerate(reader, 2):
            if None in rec or any(rec.get(c) is None for c in header):
                raise SplitFormatError(path, lineno, f"{len(header)} columns expected",
                                       f"values for {header}")
            if not rec["fold"].strip().isdigit() or not rec["target"].strip().isdigit():
                raise SplitFormatError(path, lineno, f"fold={rec['fold']!r}, target={rec['target']!r}",
                                       "integer fold (1-5) and target (0-49)")
            row_fold, target, category = int(rec["fold"]), int(rec["target"]), rec["category"].strip()
            if not 1 <= row_fold <= 5:
                raise SplitFormatError(path, lineno, f"fold {row_fold}", "a fold in 1..5")
            if target_names.setdefault(target, category) != category:
                raise SplitFormatError(path, lineno, f"target {target} is {category!r} here but "
                                       f"{target_names[target]!r} above", "one category per target")
            if esc10 and rec["esc10"].strip().lower() not in ("true", "1"):
                continue
            rows.append((rec["filename"].strip(), row_fold, target))
    targets = sorted({t for _, _, t in rows})
    relabel = {t: i for i, t in enumerate(targets)}
    items = [(name, relabel[t]) for name, f, t in rows if (f != fold) == train]
    what = "esc10" if esc10 else "esc50"
    return LabelledSplit([target_names[t] for t in targets], items, str(root / "audio"),
                         f"{what} {'train' if train else 'test'} fold {fold}")


# ------------------------------------------------------------------------------------- VGGSound

VGGSOUND_LAYOUTS = ("video/{name}", "{name}", "{split}/{name}", "{label_}/{name}")
"""Path templates :func:`vggsound_split` tries in order: the extracted releases keep every clip in one
folder (``video/<ytid>_<start:06d>.mp4``, e.g. ``VGGSound_final/video``), some mirrors put them at the
top or under ``train``/``test``."""


def vggsound_split(
    csv_path: str | Path,
    split: Literal["train", "test"],
    video_root: str | Path | None = None,
    layout: str | Sequence[str] = VGGSOUND_LAYOUTS,
    extension: str = ".mp4",
) -> LabelledSplit:
    """The ``split`` rows of VGGSound's ``vggsound.csv`` (single label, top-1).

    Every line is ``YouTubeID,start_seconds,label,train|test`` without a header (a label with a comma
    is quoted, CSV style); classes are the sorted labels of the *whole* file, so both splits share ids.
    A row's file is ``<YouTubeID>_<start:06d><extension>`` (``{name}``) placed by ``layout``, templates
    with the fields ``{name}``, ``{youtube_id}``, ``{start}``, ``{label}``, ``{label_}`` (spaces -> ``_``)
    and ``{split}``; of several, each row takes the first whose file exists under ``video_root``
    (default: the CSV's folder), the first when none does, so a missing clip is reported later
    (:func:`to_manifest_rows`), as for the other formats.
    """
    _check_split(split, ("train", "test"), "vggsound_split")
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"vggsound_split: {csv_path} not found (dataset.root must hold vggsound.csv)")
    expected = "'YouTubeID,start_seconds,label,train|test', e.g. '---g-f_I2yQ,1,people marching,test'"
    rows: list[tuple[str, int, str, str]] = []
    for lineno, fields in _csv_rows(csv_path):
        if len(fields) != 4:
            raise SplitFormatError(csv_path, lineno, f"{len(fields)} fields in {','.join(fields)!r}",
                                   expected)
        ytid, start, label, which = (f.strip() for f in fields)
        if not ytid or not label:
            raise SplitFormatError(csv_path, lineno, "empty YouTube id or label", expected)
        if not start.isdigit():
            raise SplitFormatError(csv_path, lineno, f"start {start!r} is not a whole number of seconds",
                                   expected)
        if which not in ("train", "test"):
            raise SplitFormatError(csv_path, lineno, f"split {which!r}", "'train' or 'test' in the 4th field")
        rows.append((ytid, int(start), label, which))
    classes = sorted({label for _, _, label, _ in rows})
    index = {name: i for i, name in enumerate(classes)}
    root = Path(video_root) if video_root is not None else csv_path.parent
    items = [(_place(root, layout, {"name": f"{ytid}_{start:06d}{extension}", "youtube_id": ytid,
                                    "start": start, "label": label, "label_": label.replace(" ", "_"),
                                    "split": which}), index[label])
             for ytid, start, label, which in rows if which == split]
    return LabelledSplit(classes, items, str(root), f"vggsound {split}")


def _csv_rows(path: Path, comments: bool = False) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of the non-empty lines of a CSV (``comments``: skip ``#`` lines)."""
    out = []
    for lineno, line in _lines(path):
        if comments and line.startswith("#"):
            continue
        out.append((lineno, next(csv.reader([line], skipinitialspace=True))))
    return out


def _place(root: Path, layout: str | Sequence[str], fields: dict[str, Any]) -> str:
    """The first of ``layout``'s paths whose file exists under ``root`` (the first when none does)."""
    candidates = [t.format(**fields) for t in ([layout] if isinstance(layout, str) else layout)]
    if not candidates:
        raise ValueError("a layout needs at least one path template")
    return next((c for c in candidates if (root / c).is_file()), candidates[0]) if len(candidates) > 1 \
        else candidates[0]


# ------------------------------------------------------------------------------------- AudioSet

AUDIOSET_LAYOUTS = ("{subset}/{ytid}{ext}", "{ytid}{ext}", "{subset}/Y{ytid}{ext}", "Y{ytid}{ext}",
                    "{subset}/{ytid}_{start}_{end}{ext}", "{ytid}_{start}_{end}{ext}")
"""Path templates :func:`audioset_split` tries in order. AudioSet releases no media: downloaders name
a segment's clip by its id (``{ytid}``), PANNs' with a ``Y`` prefix (``Y{ytid}.wav``, since ids may
start with ``-``), others by id and times as the CSV writes them (``{ytid}_30.000_40.000``); ``{subset}``
is the CSV's name without ``_segments.csv`` (``balanced_train``, ``eval``, ``unbalanced_train``)."""

_AUDIOSET_HEADER = ("index", "mid", "display_name")


def read_audioset_classes(path: str | Path) -> tuple[list[str], list[str]]:
    """``(mids, display names)`` of AudioSet's ``class_labels_indices.csv`` (``index,mid,display_name``,
    indices 0, 1, 2, ... in order)."""
    path = Path(path)
    rows = _csv_rows(path)
    if not rows or tuple(f.strip() for f in rows[0][1]) != _AUDIOSET_HEADER:
        raise SplitFormatError(path, rows[0][0] if rows else None, "no 'index,mid,display_name' header",
                               "AudioSet's class_labels_indices.csv")
    mids: list[str] = []
    names: list[str] = []
    for lineno, fields in rows[1:]:
        if len(fields) != 3 or not fields[0].strip().isdigit() or not fields[1].strip():
            raise SplitFormatError(path, lineno, f"cannot parse {','.join(fields)!r}",
                                   "'<index>,<mid>,<display name>', e.g. '0,/m/09x0r,\"Speech\"'")
        if int(fields[0]) != len(mids):
            raise SplitFormatError(path, lineno, f"index {fields[0].strip()} out of order",
                                   f"indices 0, 1, 2, ... (this line should have {len(mids)})")
        if fields[1].strip() in mids:
            raise SplitFormatError(path, lineno, f"mid {fields[1].strip()} listed twice", "each mid once")
        mids.append(fields[1].strip())
        names.append(fields[2].strip())
    if not mids:
        raise SplitFormatError(path, None, "no class listed", "lines '<index>,<mid>,<display name>'")
    return mids, names


def audioset_split(
    segments_csv: str | Path,
    class_index_csv: str | Path,
    video_root: str | Path | None = None,
    layout: str | Sequence[str] = AUDIOSET_LAYOUTS,
    extension: str = ".mp4",
) -> LabelledSplit:
    """The segments of an AudioSet CSV (``balanced_train_segments.csv``, ``eval_segments.csv``,
    ``unbalanced_train_segments.csv``): multi-label, classes from ``class_labels_indices.csv``.

    The CSV's lines starting with ``#`` (its 3 header lines) are skipped; every other line is
    ``YTID, start_seconds, end_seconds, "positive_labels"``, the labels a quoted, comma-separated
    list of ``/m/...`` (or ``/t/...``) mids. Items' files are placed by ``layout`` (templates with the
    fields ``{ytid}``, ``{start}``, ``{end}`` as written in the CSV, ``{subset}`` and ``{ext}``), the
    first existing one of several, as in :func:`vggsound_split`.
    """
    segments_csv = Path(segments_csv)
    if not segments_csv.is_file():
        raise FileNotFoundError(f"audioset_split: {segments_csv} not found")
    mids, names = read_audioset_classes(class_index_csv)
    index = {mid: i for i, mid in enumerate(mids)}
    expected = "'YTID, start_seconds, end_seconds, \"/m/...,/m/...\"'"
    root = Path(video_root) if video_root is not None else segments_csv.parent
    subset = segments_csv.name.removesuffix(".csv").removesuffix("_segments")
    items: list[Item] = []
    label_sets: list[tuple[int, ...]] = []
    for lineno, fields in _csv_rows(segments_csv, comments=True):
        if len(fields) != 4:
            raise SplitFormatError(segments_csv, lineno, f"{len(fields)} fields", expected)
        ytid, start, end, labels = (f.strip() for f in fields)
        try:
            ok = bool(ytid) and 0 <= float(start) < float(end)
        except ValueError:
            ok = False
        if not ok:
            raise SplitFormatError(segments_csv, lineno, f"id {ytid!r}, start {start!r}, end {end!r}",
                                   "a YouTube id and start < end in seconds")
        wanted = [m.strip() for m in labels.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in index]
        if not wanted or unknown:
            raise SplitFormatError(segments_csv, lineno, f"labels {labels!r}" + (f": {unknown} not in "
                                   f"{Path(class_index_csv).name}" if unknown else " empty"),
                                   "a quoted, comma-separated list of the class index's mids")
        ids = tuple(sorted({index[m] for m in wanted}))
        rel = _place(root, layout, {"ytid": ytid, "start": start, "end": end, "subset": subset,
                                    "ext": extension})
        items.append((rel, ids[0]))
        label_sets.append(ids)
    return LabelledSplit(names, items, str(root), f"audioset {segments_csv.name}", label_sets)



# ------------------------------------------------------------------------------------- folders


def folder_split(root: str | Path, extensions: Sequence[str] = _MEDIA_EXTENSIONS) -> LabelledSplit:
    """``root/<class>/**/<file>``: one sub-folder per class (sorted names), media files found recursively."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"folder_split: {root} is not a folder")
    exts = {e.lower() for e in extensions}
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    items: list[Item] = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.is_file() and p.suffix.lower() in exts)
        items += [(p.relative_to(root).as_posix(), label) for p in files]
    if not items:
        raise ValueError(f"folder_split: no file with suffix {sorted(exts)} in a class folder of {root}")
    return LabelledSplit(classes, items, str(root), f"folders of {root}")


# ------------------------------------------------------------------------------------- manifest rows


def to_manifest_rows(
    split: LabelledSplit,
    root: str | Path | None = None,
    probe: bool = False,
    workers: int = 1,
    progress: bool = False,
    keep_missing: bool = False,
) -> list[VideoInfo]:
    """Manifest rows of a split, ``label`` set to the class name, ``video_id`` to the path sans suffix.

    Files that do not exist are counted and logged (a warning with examples), then left out, or
    kept as ``bad`` rows with ``keep_missing=True`` (datasets drop those and say so).

    Args:
        split: from one of the parsers.
        root: folder relative item paths are under (default ``split.root``).
        probe: probe every file with :func:`avlearn.data.probe.probe_many` (duration, tracks, status).
            Without probing, rows claim a video and an audio track and leave the duration 0
            (datasets probe it lazily; a missing track then shows up as a counted decode failure).
        workers: probe processes (1: in this process).
        progress: progress bar while probing.
        keep_missing: keep missing files as ``bad`` rows instead of leaving them out.
    """
    base = Path(root) if root is not None else Path(split.root)
    found: list[tuple[Path, str, str]] = []  # path, video_id, label name
    missing: list[tuple[Path, str, str]] = []
    for rel, label in split.items:
        path = Path(rel) if Path(rel).is_absolute() else base / rel
        vid = Path(rel).stem if Path(rel).is_absolute() else Path(rel).with_suffix("").as_posix()
        (found if path.is_file() else missing).append((path, vid, split.classes[label]))
    if missing:
        examples = ", ".join(str(p) for p, _, _ in missing[:3])
        logger.warning("to_manifest_rows(%s): %d of %d files missing under %s (e.g. %s); %s",
                       split.name or "split", len(missing), len(split.items), base, examples,
                       "kept as 'bad' rows" if keep_missing else "left out")
    if probe:
        rows = probe_many([p for p, _, _ in found], workers, progress, desc="probe split")
    else:
        rows = [VideoInfo(path=str(p), status="ok", reason="not probed", has_video=True, has_audio=True)
                for p, _, _ in found]
    for row, (path, vid, name) in zip(rows, found, strict=True):
        row.path, row.video_id, row.label = str(path), vid, name
    if keep_missing:
        rows += [VideoInfo(path=str(p), video_id=vid, status="bad", reason="missing: file not found",
                           label=name) for p, vid, name in missing]
    return rows


# ------------------------------------------------------------------------------------- label efficiency


def _default_label(item: Any) -> Hashable:
    if isinstance(item, VideoInfo):
        return item.label
    if isinstance(item, tuple) and len(item) == 2:
        return item[1]  # type: ignore[no-any-return]
    raise TypeError(f"subsample_per_class: cannot tell the label of {item!r}; pass label=lambda item: ...")


def _class_seed(label: Hashable) -> int:
    return zlib.crc32(repr(label).encode())  # stable across processes (hash() of str is not)


@overload
def subsample_per_class(items: LabelledSplit, fraction: float, seed: int,
                        label: Callable[[Any], Hashable] | None = None) -> LabelledSplit: ...
@overload
def subsample_per_class(items: Sequence[T], fraction: float, seed: int,
                        label: Callable[[T], Hashable] | None = None) -> list[T]: ...
def subsample_per_class(items: Any, fraction: float, seed: int, label: Any = None) -> Any:
    """Keep ``max(1, round(fraction * n_c))`` items of every class ``c`` (label-efficiency runs).

    Each class's items are permuted by a generator seeded by ``(seed, class)`` and a prefix
    is kept, so the same seed gives the same subset, and for one seed smaller fractions give
    subsets of larger ones (1 % ⊂ 10 % ⊂ 100 %). Kept items stay in their input order.

    Args:
        items: ``(path, label)`` items, :class:`VideoInfo` rows (by ``label``), or a
            :class:`LabelledSplit` (returns a split).
        fraction: in ``(0, 1]``.
        seed: subset seed.
        label: item -> class key (default: the tuple's second field or the row's ``label``).
    """
    if isinstance(items, LabelledSplit):
        return items.with_items(subsample_per_class(items.items, fraction, seed))
    if not (0 < fraction <= 1) or math.isnan(fraction):
        raise ValueError(f"subsample_per_class: fraction must be in (0, 1], got {fraction}")
    key = label if label is not None else _default_label
    by_class: dict[Hashable, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by_class[key(item)].append(i)
    keep: list[int] = []
    for cls, members in by_class.items():
        rng = np.random.default_rng([int(seed) & 0xFFFF_FFFF, _class_seed(cls)])
        order = rng.permutation(len(members))
        n = max(1, round(fraction * len(members)))
        keep += [members[int(j)] for j in order[:n]]
    return [items[i] for i in sorted(keep)]


# ------------------------------------------------------------------------------------- dataset config


Which = Literal["train", "test"]
SplitReader = Callable[["DatasetConfig", Which], "LabelledSplit"]
SPLIT_FORMATS: Registry[SplitReader] = Registry("split format")  # filled below, one reader per format


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """A labelled dataset and its train/test splits.

    Attributes:
        format: a key of :data:`SPLIT_FORMATS`: ``synthetic`` (``data_prep.synth`` collection),
            ``ucf101``, ``hmdb51``, ``kinetics``, ``folder``, ``esc50``, ``vggsound`` or ``audioset``.
        root: the dataset folder. ``synthetic``: the collection folder; ``ucf101``: holds
            ``ucfTrainTestlist/`` and ``UCF-101/``; ``hmdb51``: holds ``testTrainMulti_7030_splits/``
            and ``hmdb51/``; ``kinetics``: holds ``<split>.csv`` and the videos;
            ``folder``: holds ``<train_split>/<class>/*`` and ``<test_split>/<class>/*``;
            ``esc50``: the ESC-50 folder (``meta/esc50.csv``, ``audio/``); ``vggsound``: holds
            ``vggsound.csv`` (and the clips, see :data:`VGGSOUND_LAYOUTS`); ``audioset``: holds
            ``<split>_segments.csv`` and ``class_labels_indices.csv`` (clips: :data:`AUDIOSET_LAYOUTS`).
        splits_dir, video_root: override the default sub-folders of ``ucf101`` / ``hmdb51``, and the
            clips' folder of ``vggsound`` / ``audioset`` (default ``root``).
        fold: official fold (UCF-101 / HMDB-51: 1-3, ESC-50: 1-5).
        train_split, test_split: split names (``train``/``val``/``test`` for ``synthetic``;
            ``train``/``test`` for ``vggsound``; ``balanced_train``, ``unbalanced_train`` or ``eval``
            for ``audioset``).
        label: ``synthetic`` only: ``action`` (the sounding object's motion, the split files'
            label), ``object`` (its class, from ``annotations.json``), or the multi-label kinds
            ``visible_objects`` (the classes of every object in view, sounding or silent) and
            ``visible_and_sounding`` (``visible <class>`` for each object in view plus ``sounding
            <class>`` for the one that sounds: 2 x 8 labels, the second half needs the sound).
        layout: ``vggsound`` / ``audioset``: a path template of the clips (fields in
            :func:`vggsound_split`, :func:`audioset_split`); empty: search the release layouts.
        label_fraction: keep this fraction of every class of the train split (label efficiency).
        fraction_seed: seed of that subsample (nested: 1 % is inside 10 % for one seed).
        shuffle_train_labels: a control: permute the training items' labels (label sets) among them
            with ``fraction_seed``, so a probe can only learn label frequencies (its score is chance).
    """

    format: str = "synthetic"
    root: str = ""
    splits_dir: str = ""
    video_root: str = ""
    fold: int = 1
    train_split: str = "train"
    test_split: str = "test"
    label: Literal["action", "object", "visible_objects", "visible_and_sounding"] = "action"
    layout: str = ""
    label_fraction: float = 1.0
    fraction_seed: int = 0
    shuffle_train_labels: bool = False

    def __post_init__(self) -> None:
        if self.format not in SPLIT_FORMATS:
            valid = SPLIT_FORMATS.choices(self.format)
            raise InvalidValue("format", self.format, f"must name a split format.{valid}", "dataset")
        if not 0 < self.label_fraction <= 1:
            raise InvalidValue("label_fraction", self.label_fraction, "must be in (0, 1]", "dataset")
        if self.label != "action" and self.format != "synthetic":
            raise InvalidValue("label", self.label, f"{self.label!r} exists only for format: synthetic, not "
                               f"{self.format!r}; use label: action", "dataset")


def _split_name(cfg: DatasetConfig, which: Which) -> str:
    return cfg.train_split if which == "train" else cfg.test_split


@SPLIT_FORMATS.add("synthetic")
def _synthetic(cfg: DatasetConfig, which: Which) -> LabelledSplit:
    split = synthetic_split(cfg.root, _split_name(cfg, which))  # type: ignore[arg-type]
    return split if cfg.label == "action" else _object_split(split, Path(cfg.root), cfg.label)


@SPLIT_FORMATS.add("ucf101")
def _ucf101(cfg: DatasetConfig, which: Which) -> LabelledSplit:
    root = Path(cfg.root)
    return ucf101_split(cfg.splits_dir or root / "ucfTrainTestlist", cfg.fold, _split_name(cfg, which),  # type: ignore[arg-type]
                        cfg.video_root or root / "UCF-101")


@SPLIT_FORMATS.add("hmdb51")
def _hmdb51(cfg: DatasetConfig, which: Which) -> LabelledSplit:
    root = Path(cfg.root)
    return hmdb51_split(cfg.splits_dir or root / "testTrainMulti_7030_splits", cfg.fold,
                        _split_name(cfg, which), cfg.video_root or root / "hmdb51")  # type: ignore[arg-type]


@SPLIT_FORMATS.add("kinetics")
def _kinetics(cfg: DatasetConfig, which: Which) -> LabelledSplit:
    root = Path(cfg.root)
    classes = kinetics_split(root / f"{cfg.train_split}.csv", cfg.video_root or root).classes
    return kinetics_split(root / f"{_split_name(cfg, which)}.csv", cfg.video_root or root, classes=classes)


@SPLIT_FORMATS.add("folder")
def _folder(cfg: DatasetConfig, which: Which) -> LabelledSplit:
    root, name = Path(cfg.root), _split_name(cfg, which)
    split = folder_split(root / name)
    if which == "train":
        return split
    train_classes = folder_split(root / cfg.train_split).classes  # class ids follow the train folder's
    index = {c: i for i, c in enumerate(train_classes)}
    unknown = sorted(set(split.classes) - set(index))
    if unknown:
        raise ValueError(f"{root / name} has classes not in {root / cfg.train_split}: {unknown}")
    return LabelledSplit(train_classes, [(p, index[split.classes[y]]) for p, y in split.items], split.root,
                         split.name)


@SPLIT_FORMATS.add("esc50")
def _esc50(cfg: DatasetConfig, which: Which) -> LabelledSplit:
    return esc50_split(cfg.root, cfg.fold, train=which == "train")


@SPLIT_FORMATS.add("vggsound")
def _vggsound(cfg: DatasetConfig, which: Which) -> LabelledSplit:
    root = Path(cfg.root)
    return vggsound_split(root / "vggsound.csv", _split_name(cfg, which), cfg.video_root or root,  # type: ignore[arg-type]
                          cfg.layout or VGGSOUND_LAYOUTS)


@SPLIT_FORMATS.add("audioset")
def _audioset(cfg: DatasetConfig, which: Which) -> LabelledSplit:
    root = Path(cfg.root)
    return audioset_split(root / f"{_split_name(cfg, which)}_segments.csv", root / "class_labels_indices.csv",
                          cfg.video_root or root, cfg.layout or AUDIOSET_LAYOUTS)


def _object_split(split: LabelledSplit, root: Path, kind: str) -> LabelledSplit:
    """Relabel a synthetic split by its objects (``annotations.json``): ``object`` the sounding object's
    class; ``visible_objects`` / ``visible_and_sounding`` the multi-label kinds of :class:`DatasetConfig`."""
    path = root / "annotations.json"
    if not path.is_file():
        raise FileNotFoundError(f"dataset.label={kind} needs {path}; regenerate the collection")
    ann = json.loads(path.read_text())
    names = [c["name"] for c in sorted(ann["classes"], key=lambda c: c["label"])]
    by_file = {Path(v["file"]).relative_to("videos").as_posix(): v for v in ann["videos"]}
    labels = []
    for rel, _ in split.items:
        if rel not in by_file:
            raise ValueError(f"{rel} of {split.name} is not in {path}")
        labels.append(_object_labels(by_file[rel], kind, len(names)))
    items = [(rel, ids[0]) for (rel, _), ids in zip(split.items, labels, strict=True)]
    if kind == "object":
        return LabelledSplit(names, items, split.root, split.name + " (object labels)")
    classes = [f"visible {n}" for n in names] + ([f"sounding {n}" for n in names] if kind != "visible_objects"
                                                 else [])
    return LabelledSplit(classes, items, split.root, f"{split.name} ({kind} labels)", labels)


def _object_labels(video: dict[str, Any], kind: str, num_objects: int) -> tuple[int, ...]:
    """A synthetic video's label ids of the label kind ``kind`` (an object is in view when it has a box on
    some frame; the sounding object always is)."""
    sounding = int(video["class_label"])
    if kind == "object":
        return (sounding,)
    seen = {sounding} | {int(d["class_label"]) for d in video["distractors"]
                         if any(b is not None for b in d["bbox"])}
    extra = (num_objects + sounding,) if kind == "visible_and_sounding" else ()
    return (*sorted(seen), *extra)


def _shuffled(split: LabelledSplit, seed: int) -> LabelledSplit:
    """``split`` with its items' labels (and label sets) permuted among them: a chance-level control."""
    order = np.random.default_rng([int(seed) & 0xFFFF_FFFF, 0x5EED]).permutation(len(split.items))
    items = [(p, split.items[int(j)][1]) for (p, _), j in zip(split.items, order, strict=True)]
    sets = None if split.label_sets is None else [split.label_sets[int(j)] for j in order]
    return dataclasses.replace(split, items=items, label_sets=sets, name=split.name + " (labels shuffled)")


def _require_files(split: LabelledSplit, cfg: DatasetConfig, which: str) -> None:
    """Refuse a split that lists nothing, or none of whose files exist: a run would train first
    and only fail at the evaluation (or train on nothing)."""
    key = f"dataset.{which}_split"
    name = split.name or f"{which} split"
    if not split.items:
        raise ConfigError(f"{key}={getattr(cfg, key.split('.')[1])}: the split '{name}' of {cfg.root} lists "
                          "no file; fill its split file or choose another split", key=key)
    root = Path(split.root)
    if not any((Path(p) if Path(p).is_absolute() else root / p).is_file() for p, _ in split.items):
        raise ConfigError(f"{key}: none of the {len(split.items)} files of the split '{name}' exists under "
                          f"{root or Path.cwd()} (e.g. {split.items[0][0]}); check dataset.root or "
                          "dataset.video_root", key=key)


def load_split(cfg: DatasetConfig, which: Which) -> LabelledSplit:
    """The train or test split of ``cfg``; the train split is subsampled to ``label_fraction``.

    Raises :class:`ConfigError` when the split lists no file or none of its files exists."""
    if not cfg.root:
        raise ConfigError("dataset.root is empty: set it to the dataset folder, e.g. dataset.root=data/synth")
    split = SPLIT_FORMATS[cfg.format](cfg, which)
    _require_files(split, cfg, which)
    if which == "train" and cfg.label_fraction < 1:
        full = len(split)
        split = subsample_per_class(split, cfg.label_fraction, cfg.fraction_seed)
        logger.info("label_fraction %.3g: %d of %d training items", cfg.label_fraction, len(split), full)
    if which == "train" and cfg.shuffle_train_labels:
        split = _shuffled(split, cfg.fraction_seed)
        logger.warning("dataset.shuffle_train_labels: the training labels are permuted (a chance control)")
    return split
