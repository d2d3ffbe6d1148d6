"""Pieces shared by the downstream commands (``finetune``, ``linear-probe``, ``evaluate retrieval``).

* :class:`DatasetConfig` (the ``dataset:`` section) and :func:`load_split`: which labelled split
  of which dataset, with the label-efficiency subsample (``label_fraction``) of the train split.
* :func:`resolve_init` / :func:`load_encoder`: ``--init RUN_DIR | CKPT | scratch`` -> an encoder.
* :func:`write_report`: ``results.json``, ``results.md`` and ``confusion.png`` of a run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from avlearn.config import ConfigError, InvalidValue, to_dict
from avlearn.data.splits import (
    LabelledSplit,
    esc50_split,
    folder_split,
    hmdb51_split,
    kinetics_split,
    subsample_per_class,
    synthetic_split,
    ucf101_split,
)
from avlearn.eval.classification import ClassificationReport, save_confusion_png
from avlearn.models.checkpoint import CheckpointError, load_checkpoint, load_state_into
from avlearn.models.registry import ModelConfig, as_model_config, build_audio_encoder, build_video_encoder

__all__ = [
    "DatasetConfig", "InitError", "ResolvedInit", "load_encoder", "load_split", "resolve_init",
    "write_report",
]

logger = logging.getLogger(__name__)

DatasetFormat = Literal["synthetic", "ucf101", "hmdb51", "kinetics", "folder", "esc50"]


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """A labelled dataset and its train/test splits.

    Attributes:
        format: ``synthetic`` (``data_prep.synth`` collection), ``ucf101``, ``hmdb51``,
            ``kinetics``, ``folder`` or ``esc50``.
        root: the dataset folder. ``synthetic``: the collection folder; ``ucf101``: holds
            ``ucfTrainTestlist/`` and ``UCF-101/``; ``hmdb51``: holds ``testTrainMulti_7030_splits/``
            and ``hmdb51/``; ``kinetics``: holds ``<split>.csv`` and the videos;
            ``folder``: holds ``<train_split>/<class>/*`` and ``<test_split>/<class>/*``;
            ``esc50``: the ESC-50 folder (``meta/esc50.csv``, ``audio/``).
        splits_dir, video_root: override the default sub-folders of ``ucf101`` / ``hmdb51``.
        fold: official fold (UCF-101 / HMDB-51: 1-3, ESC-50: 1-5).
        train_split, test_split: split names (``train``/``val``/``test`` for ``synthetic``).
        label: ``synthetic`` only: ``action`` (the sounding object's motion, the split files'
            label) or ``object`` (its class, from ``annotations.json``).
        label_fraction: keep this fraction of every class of the train split (label efficiency).
        fraction_seed: seed of that subsample (nested: 1 % is inside 10 % for one seed).
    """

    format: DatasetFormat = "synthetic"
    root: str = ""
    splits_dir: str = ""
    video_root: str = ""
    fold: int = 1
    train_split: str = "train"
    test_split: str = "test"
    label: Literal["action", "object"] = "action"
    label_fraction: float = 1.0
    fraction_seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.label_fraction <= 1:
            raise InvalidValue("label_fraction", self.label_fraction, "must be in (0, 1]", "dataset")
        if self.label == "object" and self.format != "synthetic":
            raise InvalidValue("label", self.label, f"'object' exists only for format: synthetic, not "
                               f"{self.format!r}; use label: action", "dataset")


def _object_split(split: LabelledSplit, root: Path) -> LabelledSplit:
    """Relabel a synthetic split by the sounding object's class (``annotations.json``)."""
    path = root / "annotations.json"
    if not path.is_file():
        raise FileNotFoundError(f"dataset.label=object needs {path}; regenerate the collection")
    ann = json.loads(path.read_text())
    classes = [c["name"] for c in sorted(ann["classes"], key=lambda c: c["label"])]
    by_file = {Path(v["file"]).relative_to("videos").as_posix(): int(v["class_label"]) for v in ann["videos"]}
    items = []
    for rel, _ in split.items:
        if rel not in by_file:
            raise ValueError(f"{rel} of {split.name} is not in {path}")
        items.append((rel, by_file[rel]))
    return LabelledSplit(classes, items, split.root, split.name + " (object labels)")


def load_split(cfg: DatasetConfig, which: Literal["train", "test"]) -> LabelledSplit:
    """The train or test split of ``cfg``; the train split is subsampled to ``label_fraction``."""
    if not cfg.root:
        raise ConfigError("dataset.root is empty: set it to the dataset folder, e.g. dataset.root=data/synth")
    root = Path(cfg.root)
    name = cfg.train_split if which == "train" else cfg.test_split
    split: LabelledSplit
    if cfg.format == "synthetic":
        split = synthetic_split(root, name)  # type: ignore[arg-type]
        if cfg.label == "object":
            split = _object_split(split, root)
    elif cfg.format == "ucf101":
        split = ucf101_split(cfg.splits_dir or root / "ucfTrainTestlist", cfg.fold, name,  # type: ignore[arg-type]
                             cfg.video_root or root / "UCF-101")
    elif cfg.format == "hmdb51":
        split = hmdb51_split(cfg.splits_dir or root / "testTrainMulti_7030_splits", cfg.fold, name,  # type: ignore[arg-type]
                             cfg.video_root or root / "hmdb51")
    elif cfg.format == "kinetics":
        classes = kinetics_split(root / f"{cfg.train_split}.csv", cfg.video_root or root).classes
        split = kinetics_split(root / f"{name}.csv", cfg.video_root or root, classes=classes)
    elif cfg.format == "folder":
        split = folder_split(root / name)
        if which == "test":  # class ids must agree with the train folder's
            train_classes = folder_split(root / cfg.train_split).classes
            index = {c: i for i, c in enumerate(train_classes)}
            unknown = sorted(set(split.classes) - set(index))
            if unknown:
                raise ValueError(f"{root / name} has classes not in {root / cfg.train_split}: {unknown}")
            split = LabelledSplit(train_classes, [(p, index[split.classes[y]]) for p, y in split.items],
                                  split.root, split.name)
    else:
        split = esc50_split(root, cfg.fold, train=which == "train")
    if which == "train" and cfg.label_fraction < 1:
        full = len(split)
        split = subsample_per_class(split, cfg.label_fraction, cfg.fraction_seed)
        logger.info("label_fraction %.3g: %d of %d training items", cfg.label_fraction, len(split), full)
    return split


# --------------------------------------------------------------------------------------- init


class InitError(ValueError):
    """``--init`` names nothing usable; the message names the path and what was expected."""


@dataclasses.dataclass(frozen=True)
class ResolvedInit:
    """What ``--init`` pointed at: ``state`` is an :class:`AVModel` state dict (None for scratch)."""

    state: dict[str, Tensor] | None
    model: ModelConfig
    source: str


def resolve_init(init: str, scratch_model: ModelConfig) -> ResolvedInit:
    """Resolve ``--init``: ``scratch``, a pretraining run dir, an encoder export or a run checkpoint.

    A run dir gives its ``encoders.safetensors`` (or ``encoders.pt``), else its newest
    ``checkpoints/step_*.pt``. ``scratch`` uses ``scratch_model`` with random weights.
    """
    if init == "scratch":
        return ResolvedInit(None, scratch_model, "scratch")
    path = Path(init)
    expected = ("a pretraining run dir (with encoders.safetensors or checkpoints/), an encoder export "
                "(.safetensors / .pt), a run checkpoint (checkpoints/step_N.pt) or 'scratch'")
    if not path.exists():
        raise InitError(f"--init {init}: no such file or folder; expected {expected}")
    if path.is_dir():
        found = [p for p in (path / "encoders.safetensors", path / "encoders.pt") if p.is_file()]
        if not found:
            from avlearn.train.checkpoint import CheckpointManager

            latest = CheckpointManager(path / "checkpoints").latest()
            if latest is None:
                raise InitError(f"--init {init}: the folder has no encoders.safetensors, encoders.pt or "
                                f"checkpoints/step_*.pt; expected {expected}")
            found = [latest]
        path = found[0]
    try:
        state, cfg = load_checkpoint(path)
    except CheckpointError as err:  # maybe a run checkpoint (model + config) rather than an export
        payload = _load_run_checkpoint(path)
        if payload is None:
            raise InitError(f"--init {init}: {err}") from None
        state, cfg = payload
    inner = cfg.get("model", cfg)
    try:
        model = as_model_config(inner)
    except ConfigError as err:
        raise InitError(f"--init {init}: stored config does not describe a model: {err}") from None
    logger.info("init from %s (%s + %s)", path, model.video_arch, model.audio_arch)
    return ResolvedInit(state, model, str(path))


def _load_run_checkpoint(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    if path.suffix != ".pt":
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not loadable: the caller reports the export loader's message
        return None
    if isinstance(payload, dict) and isinstance(payload.get("model"), dict) and isinstance(
            payload.get("config"), dict):
        return dict(payload["model"]), dict(payload["config"])
    return None


def load_encoder(init: ResolvedInit, modality: Literal["video", "audio"]) -> nn.Module:
    """The video (``R2Plus1D``) or audio (``SpecCNN``) encoder of ``init``, weights loaded."""
    encoder: nn.Module = (build_video_encoder(init.model) if modality == "video"
                          else build_audio_encoder(init.model))
    if init.state is not None:
        load_state_into(encoder, init.state, f"{modality}_encoder.", init.source)
    return encoder


# --------------------------------------------------------------------------------------- results


def write_report(run_dir: Path, report: ClassificationReport, config: Any, extra: dict[str, Any],
                 title: str) -> dict[str, Any]:
    """Write ``results.json`` (metrics + ``extra`` + config), ``results.md`` and ``confusion.png``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    results = {**report.to_dict(), **extra, "config": to_dict(config)}
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    lines = [f"# {title}", ""] + [f"- {k}: {v}" for k, v in extra.items()] + ["", report.markdown()]
    (run_dir / "results.md").write_text("\n".join(lines))
    save_confusion_png(report.confusion, report.class_names, run_dir / "confusion.png")
    return results
