"""``avlearn convert cav-mae CKPT --out DIR``: the released CAV-MAE weights as an avlearn export.

The authors of CAV-MAE (Gong et al., ICLR 2023; YuanGongND/cav-mae) release pretrained models
(``CAVMAE``: CAV-MAE-Scale++, -Scale+, -Base and its ablations, with their decoder) and fine-tuned
ones (``CAVMAEFT``: AudioSet with 527 classes, VGGSound with 309; multimodal and audio-only), each the
``state_dict()`` of the model wrapped in ``torch.nn.DataParallel``, so every key starts with
``module.``. This reads one with ``torch.load(map_location="cpu", weights_only=True)`` (no pickled code
runs): a raw state dict, or one under ``"model"`` or ``"state_dict"``, with or without ``module.``.

**What it becomes**: CAV-MAE's model here, :data:`CAV_MAE_MODEL` (``vit_audio_base11`` and
``vit_frame_base11`` encoders, one shared block, ``model.fusion_depth: 1``; the key names in
:mod:`avlearn.models.fusion`), written with :func:`~avlearn.models.checkpoint.save_encoders` to
``DIR/encoders.safetensors``, which ``load_av_model``, ``--init`` and ``--checkpoint`` accept. Any
other layout is refused, naming the missing, unexpected or misshapen keys. Dropped on the way:

* the per-modality LayerNorms (``norm1_a`` ... ``norm2_v``) of the modality-specific blocks, which the
  reference's ``Block`` carries but only its shared blocks use;
* a pretrained model's decoder (``decoder_*``, ``mask_token``): the export holds the model only, and
  pretraining from it (``--init``) builds a new decoder (:mod:`avlearn.objectives.cav_mae`).

**Position embeddings** (``pos_embed_a``, ``pos_embed_v``, always in the checkpoint). A pretrained
model's are the fixed 2-D sin-cos tables; ``pos_embed.py`` reshapes its ``(2, rows, cols)`` grid to
``(2, 1, cols, rows)`` where a transpose may have been meant, but a reshape keeps the flat order, so
the audio table is the row-major table of the ``(8, 64)`` grid, in the order of the audio tokens, and
equals our encoders' own (checked here on every conversion, to 1e-6): nothing is stored
(``model.pos_embed: sincos``). A fine-tuned model learned its tables (``tr_pos=True``): they are
copied as they are, without reordering, into ``model.pos_embed: learned`` encoders for the
checkpoint's input sizes (one 224 px frame, 128 bins x 1024 frames), which refuse other sizes. The
rule is the tables, not the kind: tables that differ from sin-cos are always kept.

**Fine-tuned models** also write ``DIR/classifier.safetensors``: ``mlp_head`` (LayerNorm + Linear) as a
:class:`~avlearn.models.joint_classifier.JointClassifier`, whose default mode (``--mode``) is the
reference's ``multimodal`` (``audio_visual``); give ``--mode audio`` for its audio-only fine-tuned
models. :func:`~avlearn.models.joint_classifier.load_joint_classifier` reads the folder back.

**Input** (the ``data`` section stored beside the weights, :func:`paper_data`): one frame, 224 px,
ImageNet mean / std; 10 s of 16 kHz audio as ``spec.kind: kaldi_fbank`` (128 bins, padded or cut to
1024 frames, ``(x + 5.081) / 4.4849``: the authors' values for AudioSet and VGGSound). Audio as
``(B, 1, 128, 1024)``: frequency first, the reference's ``(B, 1024, 128)`` transposed, as it does itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from avlearn.config import ConfigError, from_dict
from avlearn.data.config import DataConfig
from avlearn.models.checkpoint import CheckpointError, read_release, save_encoders
from avlearn.models.joint_classifier import MODES, JointClassifier, Mode, save_joint_classifier
from avlearn.models.registry import ModelConfig, build_av_model
from avlearn.models.vit import sincos_2d, sincos_3d

__all__ = ["CAV_MAE_MODEL", "Converted", "convert_checkpoint", "convert_state_dict", "main", "paper_data",
           "read_reference_checkpoint", "to_reference_key"]

CAV_MAE_MODEL = ModelConfig(video_arch="vit_frame_base11", audio_arch="vit_audio_base11", head="identity",
                            video_pool="avg", audio_pool="avg", fusion_depth=1)
AUDIO_BINS = 128  # the reference's filterbanks: its audio grid has 128 / patch rows (8)
POSITION_ATOL = 1e-6  # a table this close to the sin-cos one is that table

_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(video|audio)_encoder\.patch_embed\.(.+)"), "patch_embed_{m}.proj.{1}"),
    (re.compile(r"(video|audio)_encoder\.pos_embed"), "pos_embed_{m}"),
    (re.compile(r"(video|audio)_encoder\.blocks\.(.+)"), "blocks_{m}.{1}"),
    (re.compile(r"(video|audio)_encoder\.norm\.(.+)"), "norm_{m}.{1}"),
    (re.compile(r"fusion\.(modality_[av])"), "{0}"),
    (re.compile(r"fusion\.blocks\.(.+)"), "blocks_u.{0}"),
    (re.compile(r"fusion\.norm\.(.+)"), "norm.{0}"),
    (re.compile(r"classifier\.head\.(.+)"), "mlp_head.{0}"),
]
_PARAM = r"\.(weight|bias)"
_UNUSED_NORMS = re.compile(rf"blocks_[av]\.\d+\.norm[12]_[av]{_PARAM}")
_DECODER = re.compile(rf"mask_token|decoder_(modality|pos_embed)_[av]|decoder_(embed|norm|pred_[av]){_PARAM}"
                      rf"|decoder_blocks\.\d+\.(norm[12](_[av])?|attn\.(qkv|proj)|mlp\.fc[12]){_PARAM}")


def to_reference_key(key: str) -> str:
    """The reference's name (without ``module.``) of one key of our model (``classifier.head.*``: the
    :class:`JointClassifier`'s head, the reference's ``mlp_head``)."""
    for pattern, name in _RULES:
        if m := pattern.fullmatch(key):
            groups = m.groups()
            if key.startswith(("video_encoder.", "audio_encoder.")):
                return name.format(*groups, m=groups[0][0])
            return name.format(*groups)
    raise KeyError(f"no CAV-MAE name for '{key}'")


@dataclasses.dataclass(frozen=True)
class Converted:
    """A checkpoint mapped onto our model.

    Attributes:
        model: the architecture (:data:`CAV_MAE_MODEL`'s, or the one given, with its positions).
        state: the :class:`~avlearn.models.av.AVModel` state dict.
        head: the fine-tuned ``mlp_head`` as the :class:`JointClassifier`'s ``head.*``; ``None`` for a
            pretrained model.
        dropped: the reference keys read and not kept (decoder, unused norms, sin-cos tables).
    """

    model: ModelConfig
    state: dict[str, Tensor]
    head: dict[str, Tensor] | None
    dropped: list[str]

    @property
    def num_classes(self) -> int | None:
        """Outputs of the fine-tuned head (527 AudioSet, 309 VGGSound); ``None`` when pretrained."""
        return None if self.head is None else int(self.head["1.weight"].shape[0])


def _input_sizes(given: Mapping[str, Tensor], audio_size: tuple[int, int] | None,
                 video_size: tuple[int, int, int] | None) -> tuple[tuple[int, int], tuple[int, int, int]]:
    """The input sizes the checkpoint's tables are for: the reference's (128 bins, one square frame)
    unless given, from the token counts and the patch."""
    patch = int(given["patch_embed_a.proj.weight"].shape[-1]) if "patch_embed_a.proj.weight" in given else 16
    if audio_size is None:
        tokens = int(given["pos_embed_a"].shape[1]) if "pos_embed_a" in given else 512
        audio_size = (AUDIO_BINS, tokens // (AUDIO_BINS // patch) * patch)
    if video_size is None:
        side = math.isqrt(int(given["pos_embed_v"].shape[1])) if "pos_embed_v" in given else 14
        video_size = (1, side * patch, side * patch)
    return audio_size, video_size


def _is_sincos(table: Tensor | None, grid: tuple[int, ...]) -> bool:
    """Whether ``table (1, N, D)`` is the fixed sin-cos table of ``grid`` (to :data:`POSITION_ATOL`)."""
    if table is None or table.ndim != 3 or table.shape[1] != math.prod(grid) or table.is_meta:
        return False
    fixed = sincos_3d(table.shape[-1], *grid) if len(grid) == 3 else sincos_2d(table.shape[-1], *grid)
    return bool((table[0].double() - fixed).abs().max() <= POSITION_ATOL)


def _with_positions(base: ModelConfig, given: Mapping[str, Tensor], audio_size: tuple[int, int],
                    video_size: tuple[int, int, int]) -> ModelConfig:
    """``base`` with fixed positions when both tables are the sin-cos ones, else learned ones."""
    patches = {m: tuple(given[f"patch_embed_{m}.proj.weight"].shape[2:]) if f"patch_embed_{m}.proj.weight"
               in given else (16, 16) for m in "av"}
    grid_a = tuple(-(-s // p) for s, p in zip(audio_size, patches["a"], strict=True))
    grid_v = (video_size[0], *(-(-s // p) for s, p in zip(video_size[1:], patches["v"], strict=True)))
    if _is_sincos(given.get("pos_embed_a"), grid_a) and _is_sincos(given.get("pos_embed_v"), grid_v):
        return dataclasses.replace(base, pos_embed="sincos", video_input_size=None, audio_input_size=None)
    return dataclasses.replace(base, pos_embed="learned", video_input_size=video_size,
                               audio_input_size=audio_size)


def _expected_shapes(cfg: ModelConfig, num_classes: int | None) -> dict[str, tuple[int, ...]]:
    """Our keys and shapes for ``cfg`` (built on the meta device: no memory, no initialisation cost),
    with the classifier's ``classifier.head.*`` when ``num_classes`` is given."""
    with torch.device("meta"):
        model = build_av_model(cfg)
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if num_classes is not None:
            head = JointClassifier(model, num_classes).head
            shapes |= {f"classifier.head.{k}": tuple(v.shape) for k, v in head.state_dict().items()}
    return shapes


def _num_classes(given: Mapping[str, Tensor]) -> int:
    """The fine-tuned head's outputs, from its Linear (1 when that is missing: named as missing later)."""
    linear = given.get("mlp_head.1.weight")
    return int(linear.shape[0]) if linear is not None and linear.ndim == 2 else 1


def _summary(keys: list[str], limit: int = 6) -> str:
    return ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def strip_prefix(reference: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    """The state dict without ``DataParallel``'s ``module.`` (when every key has it), and the prefix."""
    prefix = "module." if reference and all(k.startswith("module.") for k in reference) else ""
    return {k[len(prefix):]: v for k, v in reference.items()}, prefix


def convert_state_dict(reference: Mapping[str, Tensor], base: ModelConfig = CAV_MAE_MODEL,
                       audio_size: tuple[int, int] | None = None,
                       video_size: tuple[int, int, int] | None = None,
                       source: str = "checkpoint") -> Converted:
    """Map a ``CAVMAE`` or ``CAVMAEFT`` state dict (``module.``-prefixed or not) onto ``base``.

    Args:
        reference: the state dict.
        base: our architecture (ViT encoders with one width and ``fusion_depth`` shared blocks);
            its positions are set from the tables (module doc).
        audio_size, video_size: ``(F, T)`` and ``(T, H, W)`` of the inputs the tables are for; ``None``:
            the reference's (128 bins, frames and frame size from the token counts).
        source: what to name in errors.

    Raises :class:`CheckpointError` naming ``source`` and the missing, unexpected or misshapen keys.
    """
    given, prefix = strip_prefix(reference)
    fine_tuned = any(k.startswith("mlp_head.") for k in given)
    audio_size, video_size = _input_sizes(given, audio_size, video_size)
    cfg = _with_positions(base, given, audio_size, video_size)
    ours = _expected_shapes(cfg, _num_classes(given) if fine_tuned else None)
    names = {to_reference_key(k): k for k in ours}
    state: dict[str, Tensor] = {}
    wrong: list[str] = []
    for ref_key, key in names.items():
        if ref_key in given:
            t = given[ref_key]
            if ref_key == "patch_embed_v.proj.weight" and t.ndim == 4:
                t = t.unsqueeze(2)  # a Conv2d kernel as a one-frame tubelet's
            if tuple(t.shape) != ours[key]:
                wrong.append(f"{prefix}{ref_key} {tuple(given[ref_key].shape)}")
            state[key] = t.detach().to("cpu", torch.float32)
    dropped = sorted(k for k in given if k not in names and (
        _UNUSED_NORMS.fullmatch(k) or (not fine_tuned and _DECODER.fullmatch(k))
        or (cfg.pos_embed == "sincos" and k in ("pos_embed_a", "pos_embed_v"))))
    missing = sorted(prefix + r for r in set(names) - set(given))
    unexpected = sorted(prefix + k for k in set(given) - set(names) - set(dropped))
    if missing or unexpected or wrong:
        found = (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong))
        raise CheckpointError(
            f"{source}: not a CAV-MAE checkpoint (CAVMAE or CAVMAEFT) of {base.audio_arch} + "
            f"{base.video_arch} with {base.fusion_depth} shared block(s); " + "; ".join(
                f"{what}: {_summary(keys)}" for what, keys in found if keys))
    model_state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    head_state = {k.removeprefix("classifier.head."): v for k, v in state.items()
                  if k.startswith("classifier.")}
    return Converted(cfg, model_state, head_state or None, dropped)


def read_reference_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The state dict in a CAV-MAE checkpoint file: the file's dict itself, or its ``"model"`` or
    ``"state_dict"`` entry. Raises :class:`CheckpointError` naming the file and what it holds."""
    payload = read_release(path, "a .pth of the CAV-MAE release")
    if isinstance(payload, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(payload.get(key), Mapping):
                payload = payload[key]
                break
    if not isinstance(payload, Mapping) or not payload or not all(
            isinstance(v, Tensor) for v in payload.values()):
        found = sorted(map(str, payload))[:8] if isinstance(payload, Mapping) else type(payload).__name__
        raise CheckpointError(f"{path}: expected a state dict of tensors (the file itself, or under 'model' "
                              f"or 'state_dict'), found {found}")
    return dict(payload)


def paper_data(frames: int = 1024, size: int = 224) -> dict[str, Any]:
    """The ``data`` section of the input the released weights take (a valid :class:`DataConfig`):
    one ``size`` px frame, ImageNet mean / std; 10 s of 16 kHz audio, the reference's filterbank of
    ``frames`` frames (the preset ``configs/pretrain/cav_mae_audioset.yaml``'s settings)."""
    data = {
        "num_frames": 1, "fps": 1.0, "decode_size": 256 * size // 224, "audio_seconds": 10.0,
        "sample_rate": 16000, "audio_align": "center",
        "video_aug": {"size": size, "crop_scale": [1.0, 1.0], "crop_ratio": [1.0, 1.0], "flip_p": 0.0,
                      "color_jitter_p": 0.0, "grayscale_p": 0.0, "mean": [0.485, 0.456, 0.406],
                      "std": [0.229, 0.224, 0.225]},
        "spec": {"kind": "kaldi_fbank", "sample_rate": 16000, "n_mels": AUDIO_BINS, "hop_seconds": 0.01,
                 "frames": frames, "normalize": "dataset", "mean": -5.081, "std": 4.4849},
    }
    from_dict(DataConfig, data, prefix="data.")  # a bad edit here fails at once, not in a user's run
    return data


def convert_checkpoint(path: str | Path, out_dir: str | Path, mode: Mode = "audio_visual",
                       base: ModelConfig | None = None) -> list[Path]:
    """Convert a released CAV-MAE checkpoint into ``out_dir``; returns the files written:
    ``encoders.safetensors``, and ``classifier.safetensors`` for a fine-tuned model (its default ``mode``).
    ``base``: our architecture (default :data:`CAV_MAE_MODEL`)."""
    converted = convert_state_dict(read_reference_checkpoint(path), base or CAV_MAE_MODEL, source=str(path))
    model = build_av_model(converted.model)
    model.load_state_dict(converted.state, strict=True)
    origin = {"file": Path(path).name, "format": "CAV-MAE " + ("CAVMAEFT" if converted.head else "CAVMAE"),
              "dropped_keys": len(converted.dropped)}
    frames = converted.model.audio_input_size[1] if converted.model.audio_input_size else 1024
    config = {"model": dataclasses.asdict(converted.model), "data": paper_data(frames),
              "converted_from": origin}
    written = [save_encoders(model, Path(out_dir) / "encoders.safetensors", config)]
    if converted.head is not None:
        classifier = JointClassifier(model, int(converted.num_classes or 0), mode)
        classifier.head.load_state_dict(converted.head, strict=True)
        written.append(save_joint_classifier(classifier, Path(out_dir) / "classifier.safetensors",
                                             {"converted_from": origin}))
    return written


def main(argv: list[str] | None = None) -> int:
    """``avlearn convert cav-mae CKPT --out DIR``."""
    parser = argparse.ArgumentParser(prog="avlearn convert cav-mae", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a CAV-MAE checkpoint (.pth) of the authors' release, pretrained "
                        "or fine-tuned")
    parser.add_argument("--out", required=True, help="folder to write encoders.safetensors (and, fine-tuned, "
                        "classifier.safetensors) into")
    parser.add_argument("--mode", choices=MODES, default="audio_visual",
                        help="a fine-tuned model's default mode: audio_visual (the reference's multimodal) "
                        "or audio / video (its audioonly / videoonly fine-tuned models)")
    args = parser.parse_args(argv)
    try:
        written = convert_checkpoint(args.checkpoint, args.out, args.mode)
    except (CheckpointError, ConfigError) as err:
        parser.exit(2, f"avlearn convert cav-mae: {err}\n")
    for file in written:
        print(f"wrote {file}")
    if len(written) == 1:
        print("note: a pretrained model: its decoder is not converted (pretraining from it builds a new one)")
    print(f"use it with --init {Path(args.out)} / --checkpoint {Path(args.out)}")
    return 0
