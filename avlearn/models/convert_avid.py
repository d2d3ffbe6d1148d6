"""``avlearn convert avid-cma CKPT --out DIR``: the released AVID / AVID-CMA weights as an avlearn export.

The authors of AVID-CMA (facebookresearch/AVID-CMA) released their Kinetics-400 and AudioSet
models as checkpoints of their ``av_wrapper`` model, written by their checkpoint manager: a
``torch.save``\\ d dict ``{"epoch", "model", "optimizer", "train_criterion"}`` whose ``model`` state
dict was taken from the DistributedDataParallel-wrapped model, so every key starts with
``module.`` (``module.video_model.conv2x.0.spt_conv1.weight``, ``module.audio_model.block1.bn1.
running_mean``, ``module.video_proj.projection.4.bias`` ...). They are in PyTorch 1.4's legacy
(non-zip) format with tensors on ``cuda:0``; this reads them on the CPU with
``torch.load(map_location="cpu", weights_only=True)`` (no pickled code runs).

The weights are mapped onto the paper architectures -- ``r2plus1d_18_avid``, ``avid_spec_cnn9``
and ``avid_mlp`` heads -- and written with :func:`~avlearn.models.checkpoint.save_encoders` to
``DIR/encoders.safetensors``, which ``load_av_model``, ``--init`` and ``--checkpoint``
accept. The audio network's 2D kernels are transposed, because the reference lays its
spectrogram out time x frequency and avlearn frequency x time (``(B, 1, F, T)``); with square
kernels and equal strides the converted network gives the same embedding on the transposed
input. The memory banks (``train_criterion``) and optimiser state are not converted.

Input the converted model expects (the ``data`` section stored beside the weights, which
``avlearn localize`` reads): 8 frames at 16 fps, 224 px, ImageNet mean/std, and 2 s of 24 kHz audio
as the ``avid_db`` spectrogram (1024-point STFT, hop 240, 257 bins, dB) normalised per frequency
with the statistics the authors trained with -- ``datasets/assets/audio-spectDB-24k-513-norm-
stats.npz`` in their repository (257 bins; CC-BY-NC, not shipped here). ``--stats FILE`` records
such a file (``spec.normalize: frequency``). That file was made with another STFT (a 512-point
one, hop 1/64 s, per the ``main()`` of ``datasets/preprocessing.py`` in an earlier revision of the
reference), so the reference's normalised input is not zero-mean; it is still what the weights saw,
so it is the file to use with them. Without ``--stats`` the stored spectrogram is un-normalised
and the audio encoder sees inputs of another scale, so give it. Statistics from ``avlearn prepare
audio-stats`` on your own data are the fallback; they shift the input the released audio network
saw, so expect some loss in audio accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from avlearn.config import ConfigError, from_dict
from avlearn.data.audio import load_spec_stats
from avlearn.data.config import DataConfig
from avlearn.models.checkpoint import CheckpointError, read_release, save_encoders
from avlearn.models.registry import ModelConfig, build_av_model

__all__ = [
    "PAPER_MODEL", "convert_checkpoint", "convert_state_dict", "main", "paper_data", "to_reference_key",
]

PAPER_MODEL = ModelConfig(
    video_arch="r2plus1d_18_avid", audio_arch="avid_spec_cnn9", embed_dim=128, head="avid_mlp",
    proj_hidden=512,
)
CHECKPOINT_KEYS = ("epoch", "model", "optimizer", "train_criterion")

_BLOCK = {"conv_s1": "spt_conv1", "bn_s1": "spt_bn1", "conv_t1": "tmp_conv1", "bn_t1": "tmp_bn1",
          "conv_s2": "spt_conv2", "bn_s2": "spt_bn2", "conv_t2": "tmp_conv2", "bn_out": "out_bn",
          "shortcut": "res_conv"}
_AUDIO_BLOCK = {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2"}
_RULES: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"video_encoder\.stem\.(.+)"), lambda m: f"video_model.conv1.{m[1]}"),
    (re.compile(r"video_encoder\.layer(\d)\.(\d+)\.(\w+)\.(.+)"),
     lambda m: f"video_model.conv{int(m[1]) + 1}x.{m[2]}.{_BLOCK[m[3]]}.{m[4]}"),
    (re.compile(r"audio_encoder\.stem\.(.+)"), lambda m: f"audio_model.conv1.{m[1]}"),
    (re.compile(r"audio_encoder\.block(\d)\.(\d)\.(.+)"),
     lambda m: f"audio_model.block{m[1]}.{_AUDIO_BLOCK[m[2]]}.{m[3]}"),
    (re.compile(r"(video|audio)_head\.net\.(\d)\.(.+)"), lambda m: f"{m[1]}_proj.projection.{m[2]}.{m[3]}"),
]


def paper_data(stats: str | None = None) -> dict[str, Any]:
    """The ``data`` section of the input the released weights were trained on (valid :class:`DataConfig`).

    ``stats``: the per-frequency statistics file (``spec.normalize: frequency``); ``None`` leaves
    the spectrogram un-normalised.
    """
    imagenet = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    spec: dict[str, Any] = {"kind": "avid_db", "sample_rate": 24000, "n_fft": 1024, "hop_seconds": 0.01}
    if stats is not None:
        spec.update(normalize="frequency", stats=stats)
    data = {"num_frames": 8, "fps": 16.0, "decode_size": 256, "audio_seconds": 2.0, "sample_rate": 24000,
            "audio_align": "center", "video_aug": {"size": 224, **imagenet}, "spec": spec}
    cfg = from_dict(DataConfig, data, prefix="data.")  # a bad edit here fails at once, not in a user's run
    if stats is not None:
        load_spec_stats(stats, cfg.spec)  # a missing file or a wrong bin count is named now
    return data


def to_reference_key(key: str) -> str:
    """The reference's name (without ``module.``) of one key of the paper :class:`AVModel`."""
    for pattern, rename in _RULES:
        if m := pattern.fullmatch(key):
            return str(rename(m))
    raise KeyError(f"no AVID-CMA name for '{key}'")


def _is_audio_kernel(key: str, t: Tensor) -> bool:
    return key.startswith("audio_encoder.") and t.ndim == 4


def _summary(keys: list[str], limit: int = 6) -> str:
    return ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def convert_state_dict(reference: Mapping[str, Tensor], source: str = "checkpoint") -> dict[str, Tensor]:
    """Map an ``av_wrapper`` state dict (``module.``-prefixed or not) onto the paper :class:`AVModel`.

    Raises :class:`CheckpointError` naming ``source`` and the missing, unexpected or misshapen keys.
    """
    prefix = "module." if reference and all(k.startswith("module.") for k in reference) else ""
    given = {k[len(prefix):]: v for k, v in reference.items()}
    ours = build_av_model(PAPER_MODEL).state_dict()
    names = {to_reference_key(k): k for k in ours}
    missing = sorted(prefix + r for r in set(names) - set(given))
    unexpected = sorted(prefix + r for r in set(given) - set(names))
    out: dict[str, Tensor] = {}
    wrong = []
    for ref_key, key in names.items():
        if ref_key not in given:
            continue
        t = given[ref_key]
        t = t.transpose(-2, -1).contiguous() if _is_audio_kernel(key, t) else t
        if t.shape != ours[key].shape:
            wrong.append(f"{prefix}{ref_key} {tuple(given[ref_key].shape)}")
        out[key] = t.detach().to("cpu", ours[key].dtype)
    if missing or unexpected or wrong:
        found = (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong))
        parts = [f"{what}: {_summary(keys)}" for what, keys in found if keys]
        raise CheckpointError(
            f"{source}: not an AVID-CMA av_wrapper checkpoint of R2Plus1D(depth=18) + Conv2D(depth=10) with "
            f"proj_dim [512, 512, 128]; " + "; ".join(parts)
        )
    return out


def read_reference_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], Any]:
    """``(model state dict, epoch)`` of a checkpoint written by AVID-CMA's checkpoint manager."""
    payload = read_release(path, "the .pth.tar the AVID-CMA release downloads")
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), Mapping):
        found = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path}: expected AVID-CMA's checkpoint dict with keys {list(CHECKPOINT_KEYS)} "
            f"and the model's state dict under 'model', found {found}"
        )
    return dict(payload["model"]), payload.get("epoch")


def convert_checkpoint(path: str | Path, out_dir: str | Path, stats: str | None = None) -> Path:
    """Convert a released AVID / AVID-CMA checkpoint; returns the written ``out_dir/encoders.safetensors``.

    ``stats``: the spectrogram statistics file to record with it (see the module doc).
    """
    state, epoch = read_reference_checkpoint(path)
    converted = convert_state_dict(state, str(path))
    model = build_av_model(PAPER_MODEL)
    model.load_state_dict(converted, strict=True)
    config = {
        "model": dataclasses.asdict(PAPER_MODEL),
        "data": paper_data(stats),
        "converted_from": {"file": Path(path).name, "epoch": epoch, "format": "AVID-CMA av_wrapper"},
    }
    return save_encoders(model, Path(out_dir) / "encoders.safetensors", config)


def main(argv: list[str] | None = None) -> int:
    """``avlearn convert avid-cma CKPT --out DIR``."""
    parser = argparse.ArgumentParser(prog="avlearn convert avid-cma", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="an AVID / AVID-CMA checkpoint (.pth.tar) of the authors' release")
    parser.add_argument("--out", required=True, help="folder to write encoders.safetensors into")
    parser.add_argument("--stats", help="per-frequency spectrogram statistics (.npz) to record with the "
                        "weights: the authors' audio-spectDB-24k-513-norm-stats.npz, or prepare audio-stats'")
    args = parser.parse_args(argv)
    if args.stats is not None:
        args.stats = str(Path(args.stats).resolve())
    try:
        written = convert_checkpoint(args.checkpoint, args.out, args.stats)
    except (CheckpointError, ConfigError) as err:
        parser.exit(2, f"avlearn convert avid-cma: {err}\n")
    if args.stats is None:
        print("note: no --stats given: the stored spectrogram settings are un-normalised; the audio "
              "encoder expects per-frequency normalisation (data.spec.normalize: frequency, data.spec.stats)")
    print(f"wrote {written} ({PAPER_MODEL.video_arch} + {PAPER_MODEL.audio_arch}, head {PAPER_MODEL.head}); "
          f"use it with --init {Path(args.out)}")
    return 0
