"""``avlearn analyze cka``: how similar are the blocks of two models, on the same clips (linear CKA).

Usage::

    avlearn analyze cka outputs/pretrain/run scratch --manifest heldout.csv --out cka/
    avlearn analyze cka run_a/encoders.safetensors run_b --manifest M --out DIR [--config C] [key=value ...]

``A`` and ``B`` are pretraining run dirs, encoder exports or run checkpoints
(:mod:`avlearn.models.weights`); either may be ``scratch``: the other's architecture, randomly
initialised from ``seed`` (the initialisation a run with that seed starts from). Either may also be
a fine-tuning run (``avlearn finetune``'s run dir or ``checkpoints/step_N.pt``): its video encoder
only (a fine-tuned model has no audio encoder), so that side lists video blocks only; its
architecture is the one of the weights it was fine-tuned from. Both models see
the same centre clip of every video of ``--manifest`` (unaugmented); every block of both encoders
(:func:`~avlearn.analysis.blocks.model_blocks`) is read with hooks and averaged over its positions
(``--pool flatten`` keeps them). ``A == B`` compares a model with itself, e.g. its video blocks
with its audio blocks.

Written to ``--out``: ``cka.json`` (block names and three ``A x B`` matrices: ``linear`` =
Kornblith et al. 2019 on the whole set, ``unbiased`` = the unbiased-HSIC estimator on the whole
set, ``minibatch`` = Nguyen et al. 2021 over minibatches of ``--cka-batch`` clips) and
``cka.png`` (heatmaps of ``linear`` and ``minibatch``). Decoding settings come from ``--config``,
else from the run config stored with A's (else B's) weights, else the defaults; dotted overrides
of ``seed`` and ``data`` apply on top.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, get_args

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from avlearn.analysis.blocks import Pool, block_features
from avlearn.analysis.cka import cka_matrix, minibatch_cka_matrix
from avlearn.analysis.plot import plot_cka
from avlearn.config import ConfigError, from_dict, load_config, parse_overrides
from avlearn.data.config import DataConfig, build_dataset
from avlearn.data.dataset import av_collate
from avlearn.models.av import AVModel
from avlearn.models.checkpoint import CheckpointError, load_state_into
from avlearn.models.registry import build_av_model
from avlearn.models.weights import Weights, WeightsError, load_model, load_weights

__all__ = ["CkaInputs", "analyze", "is_finetuned", "main"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CkaInputs:
    """What the analysis reads of a run config (its other sections are left alone).

    Attributes:
        seed: seeds the random init of ``scratch``.
        data: how clips are decoded and turned into spectrograms.
    """

    seed: int = 0
    data: DataConfig = dataclasses.field(default_factory=DataConfig)


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merged(out[key], value) if both else value
    return out


def _inputs(config: str | None, stored: dict[str, Any], overrides: list[str]) -> CkaInputs:
    """``--config`` (+ overrides), else the stored run config's ``seed`` and ``data`` (+ overrides)."""
    if config:
        return load_config(CkaInputs, config, overrides, partial=True)
    base = {k: stored[k] for k in ("seed", "data") if isinstance(stored.get(k), int | dict)}
    return from_dict(CkaInputs, _merged(base, parse_overrides(overrides)))


def _weights(a: str, b: str) -> tuple[Weights, Weights]:
    """Both models' weights; ``scratch`` takes the other's architecture."""
    if a == "scratch" and b == "scratch":
        raise WeightsError("A and B are both scratch: name at least one run dir, export or checkpoint")
    named = {what: load_weights(path, what=what) for what, path in (("A", a), ("B", b)) if path != "scratch"}
    model = next(iter(named.values())).model
    wa = named.get("A") or load_weights("scratch", scratch=model, what="A")
    wb = named.get("B") or load_weights("scratch", scratch=model, what="B")
    return wa, wb


def _build(weights: Weights, seed: int) -> AVModel:
    torch.manual_seed(seed)  # scratch: the initialisation a run with this seed starts from
    if is_finetuned(weights):
        return _finetuned_model(weights)
    return load_model(weights)


def is_finetuned(weights: Weights) -> bool:
    """Whether ``weights`` come from a fine-tuning run: a video encoder (``encoder.*``) and a
    ``classifier``, not an audio-visual pair."""
    keys = weights.state or {}
    return any(k.startswith("classifier.") for k in keys) and any(k.startswith("encoder.") for k in keys)


def _finetuned_model(weights: Weights) -> AVModel:
    """An AV model whose video encoder is the fine-tuned one (the rest random, and not compared).

    The architecture is the one of the weights the run was fine-tuned from (its checkpoint's
    ``init``), else the run config's ``model``.
    """
    if weights.state is None:
        raise ValueError(f"{weights.source}: no weights to load")
    payload = torch.load(weights.source, map_location="cpu", weights_only=True)
    init = payload.get("init") if isinstance(payload, dict) else None
    arch = weights.model
    if isinstance(init, str) and init != "scratch" and Path(init).exists():
        arch = load_weights(init, what="the fine-tuning run's init").model
    model = build_av_model(arch)
    load_state_into(model.video_encoder, weights.state, "encoder.", weights.source)
    return model


def _listed(matrix: Tensor) -> list[list[float | None]]:
    """Rows of a matrix for JSON, ``nan`` as ``null``."""
    return [[v if math.isfinite(v) else None for v in row] for row in matrix.tolist()]


def analyze(a: str, b: str, manifest: str, out: str | Path, config: str | None = None,
            overrides: list[str] | None = None, pool: Pool = "mean", batch_size: int = 16,
            cka_batch: int = 256, progress: bool = False) -> dict[str, Any]:
    """CKA of every block of A against every block of B on the clips of ``manifest`` (see the module
    doc); writes ``out/cka.json`` and ``out/cka.png`` and returns what the JSON holds."""
    if not Path(manifest).is_file():
        raise FileNotFoundError(f"--manifest {manifest}: no such file (see `avlearn prepare index`)")
    wa, wb = _weights(a, b)
    cfg = _inputs(config, wa.config or wb.config, overrides or [])
    same = a == b
    models = {"a": _build(wa, cfg.seed)} if same else {"a": _build(wa, cfg.seed), "b": _build(wb, cfg.seed)}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    models = {k: m.to(device) for k, m in models.items()}
    dataset = build_dataset(dataclasses.replace(cfg.data, clips_per_video=1), train=False, manifest=manifest)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=cfg.data.num_workers,
                        collate_fn=av_collate)
    feats = block_features(models, loader, device, pool, progress)
    fa, fb = (_compared(feats[k], w) for k, w in (("a", wa), ("a" if same else "b", wb)))
    n = next(iter(fa.values())).shape[0]
    matrices = {"linear": cka_matrix(fa, fb), "unbiased": cka_matrix(fa, fb, unbiased=True),
                "minibatch": minibatch_cka_matrix(fa, fb, min(cka_batch, n), cfg.seed)}
    folder = Path(out)
    png = plot_cka({f"linear CKA (full set, {n} clips)": matrices["linear"],
                    f"minibatch CKA (unbiased, batches of {min(cka_batch, n)})": matrices["minibatch"]},
                   list(fa), list(fb), folder / "cka.png", f"A: {_short(wa.source)}",
                   f"B: {_short(wb.source)}")
    result: dict[str, Any] = {
        "a": wa.source, "b": wb.source, "manifest": str(manifest), "clips": n, "pool": pool,
        "cka_batch": min(cka_batch, n), "seed": cfg.seed, "blocks_a": list(fa), "blocks_b": list(fb),
        **{name: _listed(m) for name, m in matrices.items()}, "figure": str(png),
    }
    (folder / "cka.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _compared(features: dict[str, Tensor], weights: Weights) -> dict[str, Tensor]:
    """The blocks a model is compared on: a fine-tuned model's video blocks, else all."""
    if not is_finetuned(weights):
        return features
    return {name: f for name, f in features.items() if name.startswith("video.")}


def _short(source: str) -> str:
    path = Path(source)
    return source if source == "scratch" else "/".join(path.parts[-2:])


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 done, 2 bad model path, config or manifest)."""
    p = argparse.ArgumentParser(prog="avlearn analyze cka", description=__doc__.split("\n\n")[0])
    models = "run dir, encoders export, run checkpoint, fine-tuning run (video blocks) or scratch"
    p.add_argument("a", metavar="A", help=models)
    p.add_argument("b", metavar="B", help=models)
    p.add_argument("--manifest", required=True, help="the clips (a manifest of `avlearn prepare index`)")
    p.add_argument("--out", required=True, help="folder for cka.json and cka.png")
    p.add_argument("--config", help="run config for the decoding settings (default: the one stored with A)")
    p.add_argument("--pool", choices=get_args(Pool), default="mean",
                   help="a block's output per clip: mean over positions, or flattened (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="clips per forward pass")
    p.add_argument("--cka-batch", type=int, default=256,
                   help="clips per minibatch of the minibatch estimator (default: %(default)s)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides of seed and data")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = analyze(args.a, args.b, args.manifest, args.out, args.config, args.overrides, args.pool,
                         args.batch_size, args.cka_batch, progress=True)
    except (CheckpointError, ConfigError, FileNotFoundError, ValueError) as err:
        print(f"avlearn analyze cka: {err}", file=sys.stderr)
        return 2
    print(_summary(result))
    return 0


def _summary(result: dict[str, Any]) -> str:
    """The diagonal of the linear and minibatch matrices where A and B have the same blocks."""
    shape = f"{len(result['blocks_a'])} x {len(result['blocks_b'])}"
    lines = [f"CKA of {shape} blocks on {result['clips']} clips"]
    for i, name in enumerate(result["blocks_a"]):
        if name in result["blocks_b"]:
            j = result["blocks_b"].index(name)
            lin, mb = result["linear"][i][j], result["minibatch"][i][j]
            lines.append(f"  {name:<16} linear {_fmt(lin)}  minibatch {_fmt(mb)}")
    lines.append(f"written to {result['figure']} and {Path(result['figure']).with_name('cka.json')}")
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "  -  " if v is None else f"{v:.3f}"


if __name__ == "__main__":
    sys.exit(main())
