"""Registries of encoders and heads, the model config, and the factory that turns one into a model.

Only :func:`build_av_model` (and the ``build_*`` helpers) turn names into modules; the modules
themselves take built parts. An unknown name stops with an error listing the valid ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from torch import nn

from avlearn.config import ConfigError, InvalidValue, from_dict
from avlearn.models.audio import SpecCNN, avid_spec_cnn9, avid_spec_cnn9_small, avid_spec_cnn9_tiny
from avlearn.models.av import AVModel
from avlearn.models.heads import AVIDHead, IdentityHead, LinearHead, MLPHead
from avlearn.models.video import VideoBackbone, r2plus1d_18, r2plus1d_small, r2plus1d_tiny
from avlearn.models.video_avid import r2plus1d_18_avid

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
]

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """A read-mostly name -> builder mapping whose lookups fail with the list of valid names."""

    def __init__(self, kind: str, entries: dict[str, T] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = dict(entries or {})

    def register(self, name: str, value: T) -> T:
        """Add ``name``; registering a taken name is an error (no silent overrides)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = value
        return value

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} '{name}'.{self.choices(name)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def choices(self, name: str) -> str:
        """`` Did you mean 'x'? Valid <kind> names: a, b, c`` for a name that is not registered."""
        valid = sorted(self._entries)
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        return f"{hint} Valid {self.kind} names: {', '.join(valid)}"

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"


VIDEO_ENCODERS: Registry[Callable[..., VideoBackbone]] = Registry(
    "video encoder",
    {
        "r2plus1d_18": r2plus1d_18,  # torchvision's layout (31.3 M parameters)
        "r2plus1d_18_avid": r2plus1d_18_avid,  # AVID-CMA's (15.4 M), see avlearn.models.video_avid
        "r2plus1d_small": r2plus1d_small,
        "r2plus1d_tiny": r2plus1d_tiny,
    },
)
AUDIO_ENCODERS: Registry[Callable[..., SpecCNN]] = Registry(
    "audio encoder",
    {
        "avid_spec_cnn9": avid_spec_cnn9,
        "avid_spec_cnn9_small": avid_spec_cnn9_small,
        "avid_spec_cnn9_tiny": avid_spec_cnn9_tiny,
    },
)
HEADS: Registry[Callable[..., nn.Module]] = Registry(
    "head", {"mlp": MLPHead, "avid_mlp": AVIDHead, "linear": LinearHead, "identity": IdentityHead}
)


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
        zero_init_residual: zero the last BN gamma of each residual block of the video encoder.
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


def build_video_encoder(cfg: ModelConfig) -> VideoBackbone:
    """The video encoder named by ``cfg.video_arch``."""
    return VIDEO_ENCODERS[cfg.video_arch](
        in_channels=cfg.video_in_channels, pool=cfg.video_pool, zero_init_residual=cfg.zero_init_residual
    )


def build_audio_encoder(cfg: ModelConfig) -> SpecCNN:
    """The audio encoder named by ``cfg.audio_arch``."""
    return AUDIO_ENCODERS[cfg.audio_arch](in_channels=cfg.audio_in_channels, pool=cfg.audio_pool)


def build_head(cfg: ModelConfig, in_dim: int) -> nn.Module:
    """The projection head named by ``cfg.head`` for ``in_dim``-d encoder embeddings."""
    return HEADS[cfg.head](in_dim, cfg.embed_dim, cfg.proj_hidden)


def build_av_model(cfg: ModelConfig | Mapping[str, Any] | None = None) -> AVModel:
    """Build :class:`AVModel` from a :class:`ModelConfig` (or a mapping of its fields)."""
    cfg = as_model_config(cfg)
    video = build_video_encoder(cfg)
    audio = build_audio_encoder(cfg)
    return AVModel(video, audio, build_head(cfg, video.out_dim), build_head(cfg, audio.out_dim))


def as_model_config(cfg: ModelConfig | Mapping[str, Any] | None) -> ModelConfig:
    """Accept a :class:`ModelConfig`, a mapping of its fields, or ``None`` (defaults)."""
    if cfg is None:
        return ModelConfig()
    if isinstance(cfg, ModelConfig):
        return cfg
    return from_dict(ModelConfig, dict(cfg))
