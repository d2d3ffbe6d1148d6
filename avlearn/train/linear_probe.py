"""``avlearn linear-probe``: a linear classifier on frozen encoder features, cached once to disk.

Usage::

    avlearn linear-probe --config configs/probe/synth_cpu.yaml --init outputs/pretrain/synth_cpu
    avlearn linear-probe --config configs/probe/esc50_audio.yaml --init RUN --modality audio

Features: every clip (``features.train_clips`` / ``features.test_clips`` uniformly spaced,
centre-cropped, unaugmented clips per video) goes through the frozen encoder with
``return_stages=True``; each stage in ``features.stages`` is pooled (``max``/``avg`` over all
positions, or ``avg_space``: averaged over space / frequency only, keeping the time axis so the
order of motion survives) and the stages are concatenated. Train and test features are saved to
``run_dir/features_{train,test}.pt`` with a key of everything that determines them (init file,
modality, stages, pooling, clip settings, split items); a later run with the same key loads
them instead of decoding again. A linear classifier (multinomial logistic regression, L-BFGS
or Adam, L2 weight decay, features standardised with the train statistics) is fitted on the
cached train features and evaluated on the test clips and videos (clip probabilities averaged),
written to ``run_dir/results.{json,md}`` and ``run_dir/confusion.png``.

``--modality audio`` probes the audio encoder on audio files or the audio track of videos
(ESC-50: ``dataset.format=esc50``), ``features.test_clips`` windows of ``data.audio_seconds``.

``--modality audio_visual`` probes both encoders together (late feature fusion): every clip's video
goes through the video encoder and its sound (the audio window of the clip, ``data.audio_seconds``)
through the audio encoder; each encoder's stages are pooled as above and the two feature vectors
concatenated before the standardisation and the classifier, which thereby weighs the modalities.
Stages are named ``video.<stage>`` / ``audio.<stage>``; the default is each encoder's last.

A multi-label split (``dataset.format=audioset``, or the synthetic ``dataset.label=visible_objects``)
fits one logistic regression per class (binary cross-entropy) and reports the mean average precision
of the test clips and videos (:mod:`avlearn.eval.multilabel`) beside the chance level.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import einops
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from avlearn.config import ConfigError, InvalidValue, load_config, to_dict
from avlearn.data.clips import AudioClips
from avlearn.data.config import DataConfig, clip_spec
from avlearn.data.dataset import FileSource
from avlearn.data.manifest import VideoInfo
from avlearn.data.splits import DatasetConfig, LabelledSplit, load_split
from avlearn.data.transforms import build_audio_transform
from avlearn.eval.classification import ClassificationReport, topk_accuracy
from avlearn.eval.inference import run_inference
from avlearn.eval.linear_classifier import ClassifierConfig, fit_linear
from avlearn.eval.multilabel import MultiLabelReport, mean_average_precision
from avlearn.eval.results import headline, write_report
from avlearn.models.checkpoint import CheckpointError
from avlearn.models.contract import encoder_stages
from avlearn.models.registry import ModelConfig
from avlearn.models.weights import Weights, load_encoder, load_weights

__all__ = ["AudioClipDataset", "ProbeConfig", "encode_stages", "extract_features", "fit_linear",
           "last_stages", "linear_probe", "main", "pool_stages"]

logger = logging.getLogger(__name__)

Pool = Literal["max", "avg", "avg_space"]
Modality = Literal["video", "audio", "audio_visual"]


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Which frozen features, from how many clips.

    Attributes:
        stages: encoder stages to pool and concatenate, as the encoder states them
            (:mod:`avlearn.models.contract`). Video: ``stem``, ``layer1`` .. ``layer4``; audio: ``stem``,
            ``block1`` .. ``block4``; ``audio_visual``: either encoder's, prefixed ``video.`` or
            ``audio.``. Empty (the default): the encoder's last stage, the grid it pools into its
            embedding (``layer4``, ``block4``; both for ``audio_visual``).
        pool: ``max`` / ``avg`` over every position, or ``avg_space`` (keep the time axis).
        train_clips, test_clips: uniformly spaced clips per video (AVID evaluates 10).
        batch_size: extraction batch size.
        cache_dir: where ``features_{train,test}.pt`` live (default ``run_dir``); features do
            not depend on the labels, so probes of another label of the same clips can share it.
        test_shards: the test split's shard index (``avlearn prepare shard`` of its manifest; a path or
            an fsspec URL); empty: the split's files. The train split reads ``data.shards`` when
            ``data.source: shards``. Video only; labels must be among the split's classes.
    """

    stages: list[str] = dataclasses.field(default_factory=list)
    pool: Pool = "avg"
    train_clips: int = 3
    test_clips: int = 10
    batch_size: int = 32
    cache_dir: str = ""
    test_shards: str = ""

    def __post_init__(self) -> None:
        for field in ("train_clips", "test_clips", "batch_size"):
            if getattr(self, field) < 1:
                raise InvalidValue(field, getattr(self, field), "must be >= 1", "features")


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """A linear-probe run (``model`` is used with ``--init scratch`` only)."""

    run_dir: str = "outputs/probe/run"
    seed: int = 0
    modality: Modality = "video"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    dataset: DatasetConfig = dataclasses.field(default_factory=DatasetConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    features: FeatureConfig = dataclasses.field(default_factory=FeatureConfig)
    classifier: ClassifierConfig = dataclasses.field(default_factory=ClassifierConfig)

    def __post_init__(self) -> None:
        if self.data.fps_choices:
            raise ConfigError(f"data.fps_choices={self.data.fps_choices} is for pretraining; the probe's "
                              "clips are taken at data.fps: remove the key", key="data.fps_choices")


# ------------------------------------------------------------------------------------- data


class AudioClipDataset(FileSource):
    """``num_clips`` uniformly spaced audio windows of every file of a split, as spectrograms: a file
    source of :class:`~avlearn.data.clips.AudioClips`.

    Sample: ``audio`` ``(1, F, T)`` (the eval audio transform of ``data``), ``label`` int,
    ``video_index`` (file position), ``clip_index``. Files: audio (``.wav``) or videos with audio.
    A file that cannot be read is an error naming it (no replacement: every file is evaluated).
    """

    clips: AudioClips

    def __init__(self, split: LabelledSplit, data: DataConfig, num_clips: int) -> None:
        root = Path(split.root)
        self.videos = [VideoInfo(path=str(p if Path(p).is_absolute() else root / p), label=split.classes[y])
                       for p, y in split.items]
        self.clips = AudioClips(
            clip_spec(data), data.backend, num_clips=num_clips, seed=data.seed, max_retries=0,
            audio_transform=build_audio_transform(data.audio_aug, data.spec, False), require_audio=False,
            class_to_idx=split.class_to_idx, name="AudioClipDataset", log=logger)

    @property
    def clips_per_item(self) -> int:
        return self.clips.num_clips

    def locate(self, index: int) -> tuple[int, int]:
        """``(file, window)`` of sample ``index``."""
        file, window = divmod(index, self.clips.num_clips)
        return file, window


def _clip_dataset(cfg: ProbeConfig, split: LabelledSplit, num_clips: int) -> Dataset[dict[str, Any]]:
    if cfg.modality == "audio":
        return AudioClipDataset(split, cfg.data, num_clips)
    from avlearn.data.labelled import LabelledClipDataset
    from avlearn.data.splits import to_manifest_rows
    from avlearn.data.transforms import build_video_transform

    sound = ({"with_audio": True, "audio_transform": build_audio_transform(cfg.data.audio_aug, cfg.data.spec,
                                                                           False)}
             if cfg.modality == "audio_visual" else {})
    return LabelledClipDataset(to_manifest_rows(split), clip_spec(cfg.data), cfg.data.backend,
                               class_to_idx=split.class_to_idx, train=False, num_clips=num_clips,
                               video_transform=build_video_transform(cfg.data.video_aug, False),
                               seed=cfg.data.seed, **sound)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- features


def pool_stages(stages: dict[str, Tensor], names: Sequence[str], pool: Pool) -> Tensor:
    """Pool and concatenate encoder stages into one feature vector per clip.

    Shape: video stages ``(B, C_i, T_i, H_i, W_i)`` or audio stages ``(B, C_i, F_i, T_i)`` ->
    ``(B, sum_i C_i)`` (``max`` / ``avg``) or ``(B, sum_i C_i * T_i)`` (``avg_space``).
    """
    missing = [n for n in names if n not in stages]
    if missing:
        raise ConfigError(f"features.stages: unknown stage(s) {missing}; valid: {sorted(stages)}")
    out = []
    for name in names:
        x = stages[name]
        if x.ndim == 5:  # video (B, C, T, H, W)
            out.append(einops.reduce(x, "b c t h w -> b (c t)", "mean") if pool == "avg_space"
                       else einops.reduce(x, "b c t h w -> b c", "max" if pool == "max" else "mean"))
        else:  # audio (B, C, F, T): frequency plays the part of space
            out.append(einops.reduce(x, "b c f t -> b (c t)", "mean") if pool == "avg_space"
                       else einops.reduce(x, "b c f t -> b c", "max" if pool == "max" else "mean"))
    return torch.cat(out, dim=1)


def encode_stages(encoder: nn.Module, batch: Mapping[str, Any], modality: str,
                  device: torch.device) -> dict[str, Tensor]:
    """The stages of ``batch[modality]``; for ``audio_visual`` (``encoder`` a ``ModuleDict`` of a
    ``video`` and an ``audio`` encoder) both encoders' stages, named ``video.<stage>`` / ``audio.<stage>``."""
    if modality != "audio_visual":
        return encoder(batch[modality].to(device), return_stages=True).stages  # type: ignore[no-any-return]
    assert isinstance(encoder, nn.ModuleDict)
    return {f"{m}.{name}": x for m in ("video", "audio")
            for name, x in encoder[m](batch[m].to(device), return_stages=True).stages.items()}


def last_stages(encoder: nn.Module, modality: str) -> list[str]:
    """The stage an encoder pools into its embedding: its last (each encoder's for ``audio_visual``)."""
    if modality != "audio_visual":
        return [list(encoder_stages(encoder))[-1]]
    assert isinstance(encoder, nn.ModuleDict)
    return [f"{m}.{list(encoder_stages(encoder[m]))[-1]}" for m in ("video", "audio")]


def extract_features(encoder: nn.Module, dataset: Dataset[dict[str, Any]], modality: str,
                     stages: Sequence[str], pool: Pool, batch_size: int,
                     num_workers: int = 0, progress: bool = False) -> dict[str, Tensor]:
    """Frozen features of every clip of ``dataset`` (``progress``: a bar per batch).

    ``modality``: ``video``, ``audio``, or ``audio_visual`` (``encoder``: a ``ModuleDict`` with both).
    Returns ``features (N, D)`` float32, ``labels (N,)``, ``video_index (N,)``, ``clip_index (N,)``.
    """
    from avlearn.data.dataset import av_collate

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    encoder = encoder.to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=av_collate)

    def step(batch: Mapping[str, Any]) -> dict[str, Tensor]:
        feats = pool_stages(encode_stages(encoder, batch, modality, device), stages, pool)
        return {"features": feats.float(), "labels": batch["label"],
                "video_index": batch["video_index"], "clip_index": batch["clip_index"]}

    return run_inference(encoder, loader, step, progress, desc=f"{modality} features")


def _init_fingerprint(init: Weights, cfg: ProbeConfig) -> dict[str, Any]:
    if init.state is None:
        return {"init": "scratch", "model": to_dict(init.model), "seed": cfg.seed}
    stat = Path(init.source).stat()
    return {"init": str(Path(init.source).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _shard_source(cfg: ProbeConfig, which: str) -> tuple[str, str]:
    """``(config key, shard index)`` the ``which`` split's clips come from; ``("", "")``: its files."""
    key, index = (("data.shards", cfg.data.shards) if which == "train" and cfg.data.source == "shards"
                  else ("features.test_shards", cfg.features.test_shards) if which == "test" else ("", ""))
    if index and cfg.modality != "video":
        raise ConfigError(f"{key}={index}: shards are probed with modality=video only; remove {key} "
                          f"(and data.source=shards) for modality={cfg.modality}", key=key)
    if which == "train" and cfg.data.source == "shards" and not index:
        raise ConfigError("data.source=shards but data.shards is empty: write shards of the train split "
                          "with `avlearn prepare shard MANIFEST --out DIR`, set data.shards=DIR/index.json",
                          key="data.shards")
    return key, index


def _shard_features(cfg: ProbeConfig, init: Weights, split: LabelledSplit, which: str, num_clips: int,
                    run_dir: Path, encoder: Callable[[], nn.Module]) -> tuple[dict[str, Tensor], bool, int]:
    """Features (and their labels) of the ``which`` split's shards; ``(features, reused, videos)``."""
    from avlearn.data.shard_eval import build_shard_eval_dataset

    key, index = _shard_source(cfg, which)
    dataset = build_shard_eval_dataset(cfg.data, index, key, split.class_to_idx, num_clips,
                                       expected_videos=len(split))
    d = cfg.data
    what = {
        "version": 1, "init": _init_fingerprint(init, cfg), "modality": cfg.modality,
        "stages": list(cfg.features.stages), "pool": cfg.features.pool, "num_clips": num_clips,
        "clip": [d.num_frames, d.fps, d.decode_size, d.video_aug.size, d.backend],
        "shards": [index, dataset.reader.index.manifest_sha256, sorted(dataset.class_to_idx.items())],
    }

    def compute() -> dict[str, Tensor]:
        logger.info("extracting %s features of %d shard samples x %d clips", which, dataset.num_videos,
                    num_clips)
        return extract_features(encoder(), dataset, cfg.modality, cfg.features.stages, cfg.features.pool,
                                cfg.features.batch_size, cfg.data.num_workers, progress=True)

    cache = Path(cfg.features.cache_dir or run_dir) / f"features_{which}.pt"
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()
    feats, reused = cached_features(cache, digest, compute)  # labels: the shards', keyed by the classes
    return feats, reused, dataset.num_videos


def _cache_key(cfg: ProbeConfig, init: Weights, split: LabelledSplit, num_clips: int) -> str:
    d = cfg.data
    video = [d.num_frames, d.fps, d.decode_size, d.video_aug.size, d.backend]
    audio = [d.audio_seconds, d.sample_rate, to_dict(d.spec)]
    what = {
        "version": 1, "init": _init_fingerprint(init, cfg), "modality": cfg.modality,
        "stages": list(cfg.features.stages), "pool": cfg.features.pool, "num_clips": num_clips,
        "clip": video if cfg.modality == "video" else audio if cfg.modality == "audio"
        else [*video, d.audio_align, *audio],
        "files": [split.root, [path for path, _ in split.items]],  # not the labels: see relabel
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def cached_features(path: Path, key: str, compute: Any) -> tuple[dict[str, Tensor], bool]:
    """Load ``path`` when its key is ``key``, else ``compute()`` and save; returns ``(features, reused)``."""
    if path.is_file():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated by a killed run, or not a feature file: recompute
            logger.warning("cached features %s cannot be read (%s: %s; truncated or corrupt): recomputing "
                           "and overwriting it", path, type(err).__name__, err)
            stored = {}
        if not isinstance(stored, dict):
            stored = {}
        if stored.get("key") == key:
            logger.info("reusing cached features %s", path)
            return {k: v for k, v in stored.items() if k != "key"}, True
        if stored:
            logger.info("cached features %s were made with other settings: recomputing", path)
    feats: dict[str, Tensor] = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pt.tmp")
    torch.save({**feats, "key": key}, tmp)
    tmp.replace(path)
    return feats, False


# ------------------------------------------------------------------------------------- classifier


def _existing(split: LabelledSplit) -> LabelledSplit:
    root = Path(split.root)
    kept = [(p, y) for p, y in split.items if (Path(p) if Path(p).is_absolute() else root / p).is_file()]
    if len(kept) < len(split.items):
        logger.warning("%s: %d of %d files missing, left out", split.name, len(split.items) - len(kept),
                       len(split.items))
    return split.with_items(kept)


def _with_stages(cfg: ProbeConfig, stages: list[str]) -> ProbeConfig:
    """``cfg`` probing ``stages``."""
    return dataclasses.replace(cfg, features=dataclasses.replace(cfg.features, stages=stages))


def linear_probe(cfg: ProbeConfig, init: str) -> dict[str, Any]:
    """Extract (or load) features, fit the classifier, evaluate; returns ``results.json``'s content."""
    t0 = time.perf_counter()
    run_dir = Path(cfg.run_dir)
    source = load_weights(init, cfg.model, what="--init")
    train_split, test_split = load_split(cfg.dataset, "train"), load_split(cfg.dataset, "test")
    encoder: nn.Module | None = None

    def load() -> nn.Module:
        nonlocal encoder
        if encoder is None:
            torch.manual_seed(cfg.seed)  # the random init of --init scratch
            encoder = (nn.ModuleDict({m: load_encoder(source, m) for m in ("video", "audio")})
                       if cfg.modality == "audio_visual" else load_encoder(source, cfg.modality))
        return encoder

    if not cfg.features.stages:  # the last stage the encoder states; named in the cache key and results
        cfg = _with_stages(cfg, last_stages(load(), cfg.modality))
    if train_split.multi_label and (cfg.data.source == "shards" or cfg.features.test_shards):
        raise ConfigError(f"{train_split.name} is multi-label, shards carry one label per video: probe its "
                          "files (remove data.source=shards and features.test_shards)", key="data.source")

    def features(split: LabelledSplit, which: str, num_clips: int) -> tuple[dict[str, Tensor], bool, int]:
        if _shard_source(cfg, which)[1]:
            return _shard_features(cfg, source, split, which, num_clips, run_dir, load)
        listed = len(split)
        split = _existing(split)  # so that video_index is the position in split.items
        def compute() -> dict[str, Tensor]:
            logger.info("extracting %s features of %d items x %d clips", which, len(split), num_clips)
            return extract_features(load(), _clip_dataset(cfg, split, num_clips), cfg.modality,
                                    cfg.features.stages, cfg.features.pool, cfg.features.batch_size,
                                    cfg.data.num_workers, progress=True)

        key = _cache_key(cfg, source, split, num_clips)
        cache = Path(cfg.features.cache_dir or run_dir) / f"features_{which}.pt"
        feats, reused = cached_features(cache, key, compute)
        # labels follow the split (features are keyed by files only): clip -> its video's label
        feats["labels"] = torch.tensor([y for _, y in split.items], dtype=torch.long)[feats["video_index"]]
        if split.multi_label:
            feats["targets"] = torch.from_numpy(split.targets())[feats["video_index"]]
        return feats, reused, listed

    train, train_reused, train_videos = features(train_split, "train", cfg.features.train_clips)
    test, test_reused, test_videos = features(test_split, "test", cfg.features.test_clips)
    t_feat = time.perf_counter() - t0

    x_train, x_test = train["features"].double(), test["features"].double()
    if cfg.classifier.standardize:
        mean, std = x_train.mean(0), x_train.std(0, unbiased=False).clamp(min=1e-6)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    classes = train_split.classes
    multi = train_split.multi_label
    y_train = train["targets"] if multi else train["labels"].long()
    clf = fit_linear(x_train.float(), y_train, len(classes), cfg.classifier, cfg.seed)
    with torch.no_grad():
        train_logits, test_logits = clf(x_train.float()), clf(x_test.float())
    videos = test["video_index"]
    report = (MultiLabelReport.from_outputs(test_logits, test["targets"], videos, classes) if multi
              else ClassificationReport.from_outputs(test_logits, test["labels"].long(), videos, classes))
    train_score = ({"train_clip_map": mean_average_precision(train_logits, y_train)} if multi
                   else {"train_clip_top1": topk_accuracy(train_logits, y_train, (1,))["top1"]})
    extra = {
        "init": source.source, "modality": cfg.modality, "stages": list(cfg.features.stages),
        "pool": cfg.features.pool, "feature_dim": int(x_train.shape[1]),
        "label_fraction": cfg.dataset.label_fraction,
        "train_videos": train_videos, "test_videos": test_videos, **train_score,
        "cache_reused": {"train": train_reused, "test": test_reused},
        "feature_seconds": round(t_feat, 1), "seconds": round(time.perf_counter() - t0, 1),
    }
    results = write_report(run_dir, report, cfg, extra, f"Linear probe {run_dir.name}")
    logger.info("linear probe %s: %s", run_dir, headline(results))
    return results



# ------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avlearn linear-probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True,
                   help="a YAML file, or a shipped config such as probe/synth_cpu.yaml")
    p.add_argument("--init", required=True,
                   help="pretraining run dir, encoders export, checkpoints/step_N.pt, or 'scratch'")
    p.add_argument("--modality", choices=("video", "audio", "audio_visual"),
                   help="overrides the config's modality")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 done, 2 bad config or --init)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = list(args.overrides) + ([f"modality={args.modality}"] if args.modality else [])
    try:
        cfg = load_config(ProbeConfig, args.config, overrides)
        results = linear_probe(cfg, args.init)
    except (CheckpointError, ConfigError, FileNotFoundError) as err:
        print(f"avlearn linear-probe: {err}", file=sys.stderr)
        return 2
    print(f"avlearn linear-probe: {headline(results)}; results in {cfg.run_dir}/results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
