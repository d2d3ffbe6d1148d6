"""Encoders, projection heads, the audio-visual pair, their registries, checkpoints and weights.

Shapes: video ``(B, C, T, H, W)``, spectrogram ``(B, 1, F, T)``, embeddings ``(B, D)``,
video grid ``(B, C, T', H', W')``, audio grid ``(B, C, F', T')``.

Importing this package registers every encoder: each architecture file registers its builders
(:func:`register_video_encoder`), and a new one adds its import line below. What an encoder
promises (stages, widths, grids): :mod:`avlearn.models.contract`.
"""

from avlearn.models.audio import (
    AudioOutput,
    SpecCNN,
    avid_spec_cnn9,
    avid_spec_cnn9_small,
    avid_spec_cnn9_tiny,
)
from avlearn.models.av import AVModel, AVOutput
from avlearn.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_safetensors,
    save_encoders,
    write_safetensors,
)
from avlearn.models.contract import AudioEncoder, Stage, VideoEncoder, encoder_stages
from avlearn.models.fusion import SharedFusion
from avlearn.models.heads import AVIDHead, IdentityHead, LinearHead, MLPHead
from avlearn.models.joint_classifier import JointClassifier, load_joint_classifier
from avlearn.models.registry import (
    AUDIO_ENCODERS,
    HEADS,
    VIDEO_ENCODERS,
    ModelConfig,
    Registry,
    build_audio_encoder,
    build_av_model,
    build_head,
    build_video_encoder,
    register_audio_encoder,
    register_video_encoder,
)
from avlearn.models.video import (
    R2Plus1D,
    VideoBackbone,
    VideoOutput,
    r2plus1d_18,
    r2plus1d_small,
    r2plus1d_tiny,
)
from avlearn.models.video_avid import R2Plus1DAVID, r2plus1d_18_avid
from avlearn.models.vit_audio import AudioViT
from avlearn.models.vit_video import VideoViT
from avlearn.models.weight_init import init_weights, zero_init_residual_bn
from avlearn.models.weights import (
    Weights,
    WeightsError,
    load_audio_encoder,
    load_av_model,
    load_encoder,
    load_model,
    load_video_encoder,
    load_weights,
)

__all__ = [
    "AUDIO_ENCODERS",
    "HEADS",
    "VIDEO_ENCODERS",
    "AVIDHead",
    "AVModel",
    "AVOutput",
    "AudioEncoder",
    "AudioOutput",
    "AudioViT",
    "CheckpointError",
    "IdentityHead",
    "JointClassifier",
    "LinearHead",
    "MLPHead",
    "ModelConfig",
    "R2Plus1D",
    "R2Plus1DAVID",
    "Registry",
    "SharedFusion",
    "SpecCNN",
    "Stage",
    "VideoBackbone",
    "VideoEncoder",
    "VideoOutput",
    "VideoViT",
    "Weights",
    "WeightsError",
    "avid_spec_cnn9",
    "avid_spec_cnn9_small",
    "avid_spec_cnn9_tiny",
    "build_audio_encoder",
    "build_av_model",
    "build_head",
    "build_video_encoder",
    "encoder_stages",
    "init_weights",
    "load_audio_encoder",
    "load_av_model",
    "load_checkpoint",
    "load_encoder",
    "load_joint_classifier",
    "load_model",
    "load_video_encoder",
    "load_weights",
    "r2plus1d_18",
    "r2plus1d_18_avid",
    "r2plus1d_small",
    "r2plus1d_tiny",
    "read_safetensors",
    "register_audio_encoder",
    "register_video_encoder",
    "save_encoders",
    "write_safetensors",
    "zero_init_residual_bn",
]
