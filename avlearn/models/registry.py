"""Registries of encoders and heads, the model config, and the factory that turns one into a model.

Only :func:`build_av_model` (and the ``build_*`` helpers) turn names into modules; the modules
themselves take built parts. An unknown name stops with an error listing the valid ones.

Encoders register themselves in their own files (:func:`register_video_encoder`,
:func:`register_audio_encoder`), so this module imports none of them: ``avlearn/models/__init__.py``
imports each architecture file, which fills the registries. What an encoder promises is written in
:mod:`avlearn.models.contract`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from torch import nn

from avlearn.config import InvalidValue, from_dict
from avlearn.models.av import AVModel
from avlearn.models.contract import AudioEncoder, VideoEncoder
from avlearn.models.fusion import build_fusion
from avlearn.models.heads import AVIDHead, IdentityHead, LinearHead, MLPHead
from avlearn.models.vit import PatchViT, PosEmbed, sincos_2d, sincos_3d
from avlearn.registry import Registry

__all__ = [
    "AUDIO_ENCODERS",
    "HEADS",
    "VIDEO_ENCODERS",
    "ModelConfig",
    "Registry",
    "build_audio_encoder",
    "build_av_model",
    "build_head",
    "build_video_encoder",
    "register_audio_encoder",
    "register_video_encoder",
]

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])


# filled by the architecture files (avlearn.models.video, .video_avid, .audio) as they are imported
VIDEO_ENCODERS: Registry[Callable[..., nn.Module]] = Registry("video encoder")
AUDIO_ENCODERS: Registry[Callable[..., nn.Module]] = Registry("audio encoder")
HEADS: Registry[Callable[..., nn.Module]] = Registry(
    "head", {"mlp": MLPHead, "avid_mlp": AVIDHead, "linear": LinearHead, "identity": IdentityHead}
)


def register_video_encoder(name: str) -> Callable[[Builder], Builder]:
    """Decorator: add a builder of a :class:`~avlearn.models.contract.VideoEncoder` as ``name``.

    The builder takes ``in_channels`` and ``pool`` and, when it names it, ``zero_init_residual``.
    """
    def add(builder: Builder) -> Builder:
        VIDEO_ENCODERS.register(name, builder)
        return builder
    return add


def register_audio_encoder(name: str) -> Callable[[Builder], Builder]:
    """Decorator: add a builder of an :class:`~avlearn.models.contract.AudioEncoder` (``in_channels``,
    ``pool``) as ``name``."""
    def add(builder: Builder) -> Builder:
        AUDIO_ENCODERS.register(name, builder)
        return builder
    return add


def _takes(builder: Callable[..., Any], option: str) -> bool:
    """Whether ``builder`` has a parameter named ``option`` (an encoder's own setting)."""
    return option in inspect.signature(builder).parameters


@dataclass(frozen=True)
class ModelConfig:
    """Which encoders and heads make up the model.

    The defaults are ours (torchvision's R(2+1)D-18 and the Linear-BN-ReLU-Linear head); AVID-CMA's
    networks are ``video_arch: r2plus1d_18_avid`` and ``head: avid_mlp`` (the ``avid_*`` presets,
    :data:`avlearn.models.convert_avid.PAPER_MODEL`).

    Attributes:
        video_arch: a key of ``VIDEO_ENCODERS`` (``r2plus1d_18_avid`` is AVID-CMA's network,
            ``r2plus1d_18`` torchvision's).
        audio_arch: a key of ``AUDIO_ENCODERS``.
        embed_dim: size ``d`` of the joint embedding (ignored by ``head="identity"``).
        head: a key of ``HEADS``: ``"mlp"`` (ours, Linear-BN-ReLU-Linear), ``"avid_mlp"`` (AVID-CMA's
            Linear-ReLU-Linear-ReLU-Linear), ``"linear"`` or ``"identity"``.
        proj_hidden: hidden width of the MLP head.
        video_pool / audio_pool: global pooling of each grid into the encoder embedding.
        video_in_channels / audio_in_channels: input channels (3 for RGB, 1 for mono spectrograms).
        zero_init_residual: zero the last BN gamma of each residual block of the video encoder
            (only for encoders whose builder takes it: the R(2+1)D in torchvision's layout).
        fusion_depth: blocks shared by both modalities after their own ViT blocks, with a LayerNorm
            pair per modality (CAV-MAE's, :class:`~avlearn.models.fusion.SharedFusion`: 1 after
            ``vit_*_base11``); 0: none, the model of every other objective.
        pos_embed: position embeddings of ViT encoders: ``"sincos"`` (fixed, any input size) or
            ``"learned"``: a parameter per token of the grid of ``video_input_size`` /
            ``audio_input_size``, started at the sin-cos values (other input sizes are refused);
            a converted fine-tuned CAV-MAE's (:mod:`avlearn.models.convert_cav_mae`).
        video_input_size / audio_input_size: ``(T, H, W)`` / ``(F, T)`` of the inputs, exactly
            when ``pos_embed`` is ``"learned"``; ``None`` otherwise.
    """

    video_arch: str = "r2plus1d_18"
    audio_arch: str = "avid_spec_cnn9"
    embed_dim: int = 128
    head: str = "mlp"
    proj_hidden: int = 512
    video_pool: Literal["max", "avg"] = "max"
    audio_pool: Literal["max", "avg"] = "max"
    video_in_channels: int = 3
    audio_in_channels: int = 1
    zero_init_residual: bool = False
    fusion_depth: int = 0
    pos_embed: PosEmbed = "sincos"
    video_input_size: tuple[int, ...] | None = None
    audio_input_size: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        # Name checks happen here so a bad config fails at load, not at build.
        registries: dict[str, Registry[Any]] = {
            "video_arch": VIDEO_ENCODERS, "audio_arch": AUDIO_ENCODERS, "head": HEADS
        }
        for field, registry in registries.items():
            name = getattr(self, field)
            if name not in registry:
                allowed = f"must name a {registry.kind}.{registry.choices(name)}"
                raise InvalidValue(field, name, allowed, "model")
        for field in ("embed_dim", "proj_hidden", "video_in_channels", "audio_in_channels"):
            if getattr(self, field) < 1:
                raise InvalidValue(field, getattr(self, field), "must be >= 1", "model")
        if self.fusion_depth < 0:
            raise InvalidValue("fusion_depth", self.fusion_depth, "must be >= 0 (0: none)", "model")
        self._check_positions()
        option = "zero_init_residual"
        if self.zero_init_residual and not _takes(VIDEO_ENCODERS[self.video_arch], option):
            able = sorted(name for name, build in VIDEO_ENCODERS.items() if _takes(build, option))
            raise InvalidValue("zero_init_residual", True, f"video_arch {self.video_arch} has no residual "
                               f"branch ending in a norm to zero (see its builder); encoders that take "
                               f"it: {', '.join(able)}; set model.zero_init_residual: false", "model")


    def _check_positions(self) -> None:
        """Input sizes exactly with learned positions: 3 sizes for the video, 2 for the audio, all > 0."""
        if self.pos_embed not in ("sincos", "learned"):
            raise InvalidValue("pos_embed", self.pos_embed, "must be 'sincos' or 'learned'", "model")
        for field, axes in (("video_input_size", "(T, H, W)"), ("audio_input_size", "(F, T)")):
            size = getattr(self, field)
            if self.pos_embed == "sincos" and size is not None:
                raise InvalidValue(field, list(size), "is only for pos_embed: learned; leave it out or "
                                   "set model.pos_embed: learned", "model")
            if self.pos_embed == "learned" and (size is None or len(size) != axes.count(",") + 1
                                                or min(size) < 1):
                raise InvalidValue(field, size and list(size), "pos_embed: learned needs the input's "
                                   f"{axes}, each >= 1", "model")


def _positions(encoder: nn.Module, cfg: ModelConfig, modality: str) -> nn.Module:
    """``encoder`` with a learned position table for ``cfg``'s input size when ``cfg.pos_embed`` asks for
    one (as :class:`~avlearn.models.vit.PatchViT` builds it with ``pos_embed="learned"``)."""
    if cfg.pos_embed == "sincos":
        return encoder
    if not isinstance(encoder, PatchViT):
        raise ValueError(f"model.pos_embed=learned needs ViT encoders; model.{modality}_arch builds a "
                         f"{type(encoder).__name__}: choose a vit_* architecture or pos_embed: sincos")
    size: tuple[int, ...] = getattr(cfg, f"{modality}_input_size")  # set: checked by ModelConfig
    grid = encoder.grid_size(*size)
    table = sincos_3d(encoder.out_dim, *grid) if len(grid) == 3 else sincos_2d(encoder.out_dim, *grid)
    encoder.pos_embed = nn.Parameter(table[None].float())
    return encoder


def build_video_encoder(cfg: ModelConfig) -> nn.Module:
    """The video encoder named by ``cfg.video_arch`` (a :class:`~avlearn.models.contract.VideoEncoder`)."""
    options = {"zero_init_residual": True} if cfg.zero_init_residual else {}  # only encoders that take it
    build = VIDEO_ENCODERS[cfg.video_arch]
    encoder = build(in_channels=cfg.video_in_channels, pool=cfg.video_pool, **options)
    return _positions(_checked(encoder, VideoEncoder, cfg.video_arch), cfg, "video")


def build_audio_encoder(cfg: ModelConfig) -> nn.Module:
    """The audio encoder named by ``cfg.audio_arch`` (an :class:`~avlearn.models.contract.AudioEncoder`)."""
    encoder = AUDIO_ENCODERS[cfg.audio_arch](in_channels=cfg.audio_in_channels, pool=cfg.audio_pool)
    return _positions(_checked(encoder, AudioEncoder, cfg.audio_arch), cfg, "audio")


def _checked(encoder: nn.Module, contract: type, name: str) -> nn.Module:
    """``encoder``, once it is seen to state what ``contract`` asks (stages, widths)."""
    if not isinstance(encoder, contract):
        raise TypeError(f"encoder {name!r} ({type(encoder).__name__}) does not keep the {contract.__name__} "
                        "contract of avlearn.models.contract (in_channels, out_dim, grid_dim, stages)")
    return encoder


def build_head(cfg: ModelConfig, in_dim: int) -> nn.Module:
    """The projection head named by ``cfg.head`` for ``in_dim``-d encoder embeddings."""
    return HEADS[cfg.head](in_dim, cfg.embed_dim, cfg.proj_hidden)


def build_av_model(cfg: ModelConfig | Mapping[str, Any] | None = None) -> AVModel:
    """Build :class:`AVModel` from a :class:`ModelConfig` (or a mapping of its fields)."""
    cfg = as_model_config(cfg)
    video = build_video_encoder(cfg)
    audio = build_audio_encoder(cfg)
    v_dim, a_dim = cast(VideoEncoder, video).out_dim, cast(AudioEncoder, audio).out_dim
    heads = build_head(cfg, v_dim), build_head(cfg, a_dim)
    if not cfg.fusion_depth:
        return AVModel(video, audio, *heads)
    return AVModel(video, audio, *heads, fusion=build_fusion(video, audio, cfg.fusion_depth))


def as_model_config(cfg: ModelConfig | Mapping[str, Any] | None) -> ModelConfig:
    """Accept a :class:`ModelConfig`, a mapping of its fields, or ``None`` (defaults)."""
    if cfg is None:
        return ModelConfig()
    if isinstance(cfg, ModelConfig):
        return cfg
    return from_dict(ModelConfig, dict(cfg))
