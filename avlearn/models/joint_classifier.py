"""CAV-MAE's fine-tuned classifier: both modalities through their blocks and the shared ones, one head.

The authors' fine-tuned model (``CAVMAEFT`` in YuanGongND/cav-mae ``src/models/cav_mae.py``) classifies
a clip from its audio and one frame together (its ``multimodal`` mode): each modality through its own
blocks (with its position and modality embeddings), the audio tokens then the video tokens through the
shared blocks with their joint norms, the joint ``norm``, the mean over *all* tokens, and ``mlp_head``
(a LayerNorm and a Linear). :class:`JointClassifier` is that head on an :class:`~avlearn.models.av.AVModel`
with shared blocks (:class:`~avlearn.models.fusion.SharedFusion`, ``model.fusion_depth``):

=================  ==========================  ==============================================
``mode``           the reference's mode        the pooled feature the head reads
=================  ==========================  ==============================================
``audio_visual``   ``multimodal``              ``fusion.joint(specific(a), specific(v))``, mean
``audio``          ``audioonly``               the audio embedding (:meth:`SharedFusion.encode`)
``video``          ``videoonly``               the video embedding
=================  ==========================  ==============================================

A model fine-tuned in one mode classifies well in that mode only (the authors release multimodal and
audio-only fine-tuned models). Its files, in one folder: the model's export ``encoders.safetensors``
(:func:`~avlearn.models.checkpoint.save_encoders`) and ``classifier.safetensors``, the head's weights
with its config (``num_classes``, ``mode``) in the metadata. :func:`load_joint_classifier` reads both.

Shape: ``video (B, 3, T, H, W)``, ``audio (B, 1, F, T)`` -> logits ``(B, num_classes)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, cast, get_args

import einops
from torch import Tensor, nn

from avlearn.models.av import AVModel
from avlearn.models.checkpoint import CheckpointError, load_state_into, read_safetensors, write_safetensors
from avlearn.models.fusion import SharedFusion
from avlearn.models.vit import PatchViT
from avlearn.models.weights import load_av_model

__all__ = ["CLASSIFIER_FILE", "JointClassifier", "Mode", "load_joint_classifier", "save_joint_classifier"]

Mode = Literal["audio_visual", "audio", "video"]
MODES: tuple[str, ...] = get_args(Mode)
CLASSIFIER_FILE = "classifier.safetensors"
FORMAT = "avlearn-joint-classifier-v1"
_CONFIG_KEY = "avlearn_classifier"


class JointClassifier(nn.Module):
    """A LayerNorm + Linear head on an :class:`AVModel` with shared blocks, in three modes (module doc).

    Args:
        model: the audio-visual model; its ``fusion`` must be set and its encoders ViTs.
        num_classes: the head's outputs (the authors': 527 for AudioSet, 309 for VGGSound).
        mode: the default mode of :meth:`forward`.

    Shape:
        ``video (B, 3, T, H, W)``, ``audio (B, 1, F, T)`` -> ``(B, num_classes)``
    """

    def __init__(self, model: AVModel, num_classes: int, mode: Mode = "audio_visual") -> None:
        super().__init__()
        if not isinstance(model.fusion, SharedFusion):
            raise ValueError("a JointClassifier needs a model with shared blocks (model.fusion_depth >= 1)")
        _check_mode(mode)
        self.model, self.num_classes, self.mode = model, num_classes, mode
        width = model.fusion.norm.normalized_shape[0]
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, num_classes))

    def features(self, video: Tensor | None, audio: Tensor | None, mode: Mode | None = None) -> Tensor:
        """The pooled feature ``(B, D)`` the head reads in ``mode`` (default: ``self.mode``); the
        modality a mode does not read may be ``None``."""
        mode = mode or self.mode
        _check_mode(mode)
        fusion = cast(SharedFusion, self.model.fusion)
        video_encoder, audio_encoder = cast(PatchViT, self.model.video_encoder), cast(PatchViT,
                                                                                      self.model.audio_encoder)
        if mode == "audio":
            return fusion.encode(audio_encoder, _given(audio, "audio", mode), "a").emb
        if mode == "video":
            return fusion.encode(video_encoder, _given(video, "video", mode), "v").emb
        a, _ = fusion.specific(audio_encoder, _given(audio, "audio", mode), "a")
        v, _ = fusion.specific(video_encoder, _given(video, "video", mode), "v")
        pooled: Tensor = einops.reduce(fusion.joint(a, v), "b n d -> b d", "mean")
        return pooled

    def forward(self, video: Tensor | None, audio: Tensor | None, mode: Mode | None = None) -> Tensor:
        """Logits ``(B, num_classes)`` of ``video (B, 3, T, H, W)`` and ``audio (B, 1, F, T)`` in ``mode``."""
        logits: Tensor = self.head(self.features(video, audio, mode))
        return logits


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


def _given(x: Tensor | None, name: str, mode: str) -> Tensor:
    if x is None:
        raise ValueError(f"mode {mode!r} reads the {name}: give it")
    return x


def save_joint_classifier(classifier: JointClassifier, path: str | Path,
                          extra: dict[str, Any] | None = None) -> Path:
    """Write the head's weights and config (``num_classes``, ``mode``, and ``extra``) to ``path``
    (``classifier.safetensors``; the model is saved apart, with :func:`save_encoders`)."""
    config = {"num_classes": classifier.num_classes, "mode": classifier.mode, **(extra or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"head.{k}": v for k, v in classifier.head.state_dict().items()}
    write_safetensors(state, path, {"format": FORMAT, _CONFIG_KEY: json.dumps(config)})
    return path


def load_joint_classifier(folder: str | Path) -> tuple[JointClassifier, dict[str, Any]]:
    """The classifier in ``folder`` (its ``encoders.safetensors`` and ``classifier.safetensors``) and
    the head's stored config. Raises :class:`CheckpointError` naming a missing or foreign file."""
    folder = Path(folder)
    file = folder / CLASSIFIER_FILE
    if not file.is_file():
        raise CheckpointError(f"{folder}: no {CLASSIFIER_FILE}; expected the folder that "
                              "avlearn convert cav-mae wrote from a fine-tuned checkpoint")
    state, meta = read_safetensors(file)
    if meta.get("format") != FORMAT or _CONFIG_KEY not in meta:
        raise CheckpointError(f"{file}: not a joint classifier (expected format '{FORMAT}')")
    config: dict[str, Any] = json.loads(meta[_CONFIG_KEY])
    model, _ = load_av_model(folder)
    classifier = JointClassifier(model, int(config["num_classes"]), config["mode"])
    load_state_into(classifier.head, state, "head.", str(file))
    return classifier.eval(), config
