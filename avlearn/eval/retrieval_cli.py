"""``avlearn evaluate retrieval``: video->audio and audio->video recall@1/5/10 on held-out clips.

Usage::

    avlearn evaluate retrieval --init outputs/pretrain/synth_cpu --manifest heldout.csv [--out r.json]
    avlearn evaluate retrieval --init model.safetensors --manifest M --config configs/pretrain/synth_cpu.yaml
    avlearn evaluate retrieval --init outputs/pretrain/synth_cpu --shards heldout_shards/index.json

One centre clip per video of ``--manifest`` is embedded by both encoders (unaugmented), and
every clip's video embedding ranks all clips' audio embeddings (and back) by cosine similarity.
Decoding settings (frames, fps, crop, audio window, spectrogram) come from the ``data`` section
of ``--config``, else of the run's ``config.yaml`` next to the init, else the defaults; dotted
overrides of ``seed``, ``model`` and ``data`` apply on top (e.g. ``data.backend=decord``). The
metrics are printed and written as JSON to ``--out`` (default: ``retrieval.json`` next to the
init, or the working directory for scratch). ``--shards INDEX`` reads the held-out clips from the
shards of ``avlearn prepare shard`` instead (a path or an fsspec URL): the same clips, bit for bit,
as ``--manifest`` over the manifest the shards were written from, so the same metrics.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from avlearn.config import ConfigError, load_config
from avlearn.data.config import DataConfig, build_dataset, build_shard_dataset
from avlearn.data.dataset import av_collate
from avlearn.eval.retrieval import embed_clips, retrieval_metrics
from avlearn.models.checkpoint import CheckpointError
from avlearn.models.registry import ModelConfig
from avlearn.models.weights import load_model, load_weights

__all__ = ["RetrievalInputs", "evaluate", "main"]

logger = logging.getLogger(__name__)


def _run_config(init: str, config: str | None) -> Path | None:
    if config:
        return Path(config)
    if init == "scratch":
        return None
    path = Path(init)
    for folder in (path, path.parent, path.parent.parent):  # run dir, export's dir, checkpoint's run dir
        if (folder / "config.yaml").is_file():
            return folder / "config.yaml"
    return None


@dataclasses.dataclass(frozen=True)
class RetrievalInputs:
    """What retrieval reads of a pretraining config (its other sections are left alone).

    Attributes:
        seed: seeds the random init of ``--init scratch``.
        model: the architecture of ``--init scratch`` (a checkpoint brings its own).
        data: how clips are decoded and turned into spectrograms.
    """

    seed: int = 0
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)


def _rebatch(batches: Iterable[Mapping[str, Any]], size: int) -> Iterator[dict[str, Any]]:
    """Batches of ``size`` clips (``video``, ``audio``, ``index``) joined from smaller collated batches."""
    chunk: list[Mapping[str, Any]] = []
    for batch in batches:
        chunk.append(batch)
        if sum(len(b["video"]) for b in chunk) >= size:
            yield {k: torch.cat([b[k] for b in chunk]) for k in ("video", "audio", "index")}
            chunk = []
    if chunk:
        yield {k: torch.cat([b[k] for b in chunk]) for k in ("video", "audio", "index")}


def _shard_batches(data: DataConfig, shards: str, batch_size: int) -> Iterator[dict[str, Any]]:
    """Every held-out clip of ``shards`` once: a :class:`~avlearn.data.shards.ShardDataset` read in
    batches of one (so no remainder is dropped), joined into batches of ``batch_size``."""
    from avlearn.data.shards import shard_loader

    workers = data.num_workers
    data = dataclasses.replace(data, source="shards", shards=shards, shuffle_buffer=0,
                               shard_streams=max(workers, 1))
    try:
        dataset = build_shard_dataset(data, train=False)
    except ConfigError as err:
        raise ConfigError(str(err).replace("data.shards=", "--shards ", 1), key="--shards") from None
    loader, epochs = shard_loader(dataset, 1, num_workers=workers)
    epochs.set_epoch(0)
    return _rebatch(loader, batch_size)


def evaluate(init: str, manifest: str, config: str | None = None, overrides: list[str] | None = None,
             batch_size: int = 32, ks: tuple[int, ...] = (1, 5, 10),
             progress: bool = False, shards: str = "") -> dict[str, Any]:
    """Retrieval metrics of the model of ``init`` on the clips of ``manifest`` (or of the shard index
    ``shards`` when given; see the module doc)."""
    if shards:
        return _evaluate(init, "", shards, config, overrides, batch_size, ks, progress)
    if not Path(manifest).is_file():
        raise FileNotFoundError(f"--manifest {manifest}: no such file (see `avlearn prepare index`)")
    return _evaluate(init, manifest, "", config, overrides, batch_size, ks, progress)


def _evaluate(init: str, manifest: str, shards: str, config: str | None, overrides: list[str] | None,
              batch_size: int, ks: tuple[int, ...], progress: bool) -> dict[str, Any]:
    cfg_path = _run_config(init, config)
    cfg = load_config(RetrievalInputs, cfg_path, overrides, partial=True)
    source = load_weights(init, cfg.model, what="--init")
    torch.manual_seed(cfg.seed)
    model = load_model(source)
    data = dataclasses.replace(cfg.data, clips_per_video=1)
    loader: Iterable[Mapping[str, Any]]
    if shards:
        loader = _shard_batches(data, shards, batch_size)
    else:
        dataset = build_dataset(data, train=False, manifest=manifest, key="--manifest")
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=cfg.data.num_workers,
                            collate_fn=av_collate)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    video_emb, audio_emb = embed_clips(model.to(device), loader, device, progress)
    metrics = retrieval_metrics(video_emb, audio_emb, ks=ks)
    where = {"shards": shards} if shards else {"manifest": str(manifest)}
    return {**metrics, "init": source.source, **where,
            "config": str(cfg_path) if cfg_path else "defaults"}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 done, 2 bad config, --init or --manifest)."""
    p = argparse.ArgumentParser(prog="avlearn evaluate retrieval", description=__doc__.split("\n\n")[0])
    p.add_argument("--init", required=True,
                   help="pretraining run dir, encoders export, run checkpoint or scratch")
    held_out = p.add_mutually_exclusive_group(required=True)
    held_out.add_argument("--manifest", help="held-out clips (a manifest of `avlearn prepare index`)")
    held_out.add_argument("--shards", help="held-out clips as shards: index.json of `avlearn prepare shard`")
    p.add_argument("--config", help="pretraining config for the decoding settings (default: the run's)")
    p.add_argument("--out", help="JSON file to write (default: retrieval.json next to the init)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides of the config")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = evaluate(args.init, args.manifest or "", args.config, args.overrides, args.batch_size,
                          progress=True, shards=args.shards or "")
    except (CheckpointError, ConfigError, FileNotFoundError) as err:
        print(f"avlearn evaluate retrieval: {err}", file=sys.stderr)
        return 2
    if args.out:
        out = Path(args.out)
    elif args.init == "scratch":
        out = Path("retrieval.json")
    else:
        init = Path(args.init)
        out = (init if init.is_dir() else init.parent) / "retrieval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    n = int(result["n"])
    print(f"retrieval on {n} clips (chance R@1 {100 / n:.2f} %):")
    for name in ("v2a", "a2v"):
        print(f"  {name}: " + ", ".join(f"R@{k} {100 * result[f'{name}_r{k}']:.2f} %" for k in (1, 5, 10)))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
