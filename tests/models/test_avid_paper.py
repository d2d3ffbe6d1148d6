"""AVID-CMA's networks as published: the video network, the head, and released-checkpoint conversion.

Each is checked against a hand-written re-implementation of the reference's definition
(``tests/models/_avid_reference.py``) on identical inputs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from avlearn.cli import main as cli_main
from avlearn.config import ConfigError, from_dict
from avlearn.data.audio import Spectrogram
from avlearn.data.config import DataConfig
from avlearn.models import (
    HEADS,
    VIDEO_ENCODERS,
    AVIDHead,
    CheckpointError,
    ModelConfig,
    build_av_model,
    load_av_model,
    load_video_encoder,
    load_weights,
)
from avlearn.models.convert_avid import PAPER_MODEL, convert_checkpoint, convert_state_dict
from tests.models._avid_reference import ReferenceAVWrapper, RefHead, RefR2Plus1D, randomise


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _gflop(model: torch.nn.Module, shape: tuple[int, ...]) -> float:
    """Forward FLOPs (a multiply-add = 2) on the meta device: no memory, no compute."""
    with torch.device("meta"):
        x = torch.empty(shape)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return float(counter.get_total_flops()) / 1e9


# ----------------------------------------------------------------- (a) the video network


def test_paper_video_network_has_the_papers_size_and_cost() -> None:
    with torch.device("meta"):
        ours = VIDEO_ENCODERS["r2plus1d_18_avid"]().eval()
        ref = RefR2Plus1D()
        torchvision_layout = VIDEO_ENCODERS["r2plus1d_18"]().eval()
    assert _params(ours) == _params(ref)
    assert round(_params(ours) / 1e6, 1) == 15.4  # the paper's 15.4 M
    assert round(_gflop(ours, (1, 3, 8, 112, 112)), 1) == 6.2
    assert round(_gflop(ours, (1, 3, 8, 224, 224)), 1) == 24.3
    assert round(_params(torchvision_layout) / 1e6, 1) == 31.3  # the other one stays available
    assert round(_gflop(torchvision_layout, (1, 3, 8, 112, 112)), 1) == 40.5


@pytest.mark.parametrize(("t", "hw", "grid"), [(8, 112, (1, 4, 4)), (8, 224, (1, 7, 7)), (4, 64, (1, 2, 2))])
def test_paper_video_grid(t: int, hw: int, grid: tuple[int, int, int]) -> None:
    cls = type(VIDEO_ENCODERS["r2plus1d_18_avid"]())
    assert cls.grid_size(t, hw, hw) == grid
    with torch.device("meta"):
        out = VIDEO_ENCODERS["r2plus1d_18_avid"]()(torch.empty(1, 3, t, hw, hw))
    assert tuple(out.grid.shape) == (1, 512, *grid)


@pytest.mark.parametrize("train", [False, True])
def test_paper_video_network_equals_the_reference(train: bool) -> None:
    ref = randomise(ReferenceAVWrapper(), seed=1)
    model = build_av_model(PAPER_MODEL)
    model.load_state_dict(convert_state_dict(ref.state_dict()))
    ref.train(train)
    model.train(train)
    video = torch.randn(2, 3, 8, 48, 48)
    with torch.no_grad():
        expected = ref.video_model(video).flatten(1)
        got = model.video_encoder(video).emb
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_paper_video_convs_pad_explicitly_for_cpu_bf16() -> None:
    from avlearn.models.explicit_padding import ExplicitPadConv3d

    with torch.device("meta"):
        model = VIDEO_ENCODERS["r2plus1d_18_avid"]()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    assert len(convs) == 1 + 8 * 4 + 3 and all(isinstance(m, ExplicitPadConv3d) for m in convs)


def test_paper_video_refuses_zero_init_residual() -> None:
    with pytest.raises(ConfigError, match="zero_init_residual"):
        build_av_model(dataclasses.replace(PAPER_MODEL, zero_init_residual=True))


# ----------------------------------------------------------------- (b) the head


def test_paper_head_layers_and_output_equal_the_reference() -> None:
    head = HEADS["avid_mlp"](512, 128, 512)
    assert isinstance(head, AVIDHead)
    kinds = [type(m).__name__ for m in head.net]
    assert kinds == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]  # no BatchNorm
    ref = randomise(RefHead(512), seed=2)
    head.net.load_state_dict(ref.projection.state_dict())
    x = torch.randn(5, 512)
    torch.testing.assert_close(head(x, normalize=False), ref(x))
    torch.testing.assert_close(head(x), F.normalize(ref(x), dim=-1))


# ----------------------------------------------------------------- (d) released checkpoints


def _write_reference_checkpoint(path: Path, seed: int = 3) -> ReferenceAVWrapper:
    """The released layout: DDP-prefixed model state, optimizer and criterion state, legacy format."""
    ref = randomise(ReferenceAVWrapper(), seed=seed).eval()
    params = list(ref.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-4)
    payload = {
        "epoch": 30,
        "model": {f"module.{k}": v for k, v in ref.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "train_criterion": {
            "nce_average.view1_mem": F.normalize(torch.randn(16, 128), dim=1),
            "nce_average.view2_mem": F.normalize(torch.randn(16, 128), dim=1),
            "criterion.avg_exp_score": torch.tensor(3.5),
        },
    }
    torch.save(payload, path, _use_new_zipfile_serialization=False)  # PyTorch 1.4's format
    return ref


def test_converted_checkpoint_gives_the_reference_embeddings(tmp_path: Path) -> None:
    ckpt = tmp_path / "AVID_Kinetics_Cross-N1024_checkpoint.pth.tar"
    ref = _write_reference_checkpoint(ckpt)
    stats = tmp_path / "audio-spectDB-24k-513-norm-stats.npz"  # the reference's layout: mean, std only
    np.savez(stats, mean=np.full(257, -50.0, np.float32), std=np.full(257, 20.0, np.float32))
    out = str(tmp_path / "conv")
    assert cli_main(["convert", "avid-cma", str(ckpt), "--out", out, "--stats", str(stats)]) == 0
    stored = load_weights(tmp_path / "conv").config
    data = from_dict(DataConfig, stored["data"], prefix="data.")  # what `avlearn localize` reads
    assert (data.spec.kind, data.spec.normalize, data.spec.num_bins, data.sample_rate) == (
        "avid_db", "frequency", 257, 24000)
    assert Spectrogram(data.spec)(torch.zeros(48000)).shape == (1, 257, 200)
    model = load_av_model(tmp_path / "conv")[0].eval()
    video = torch.randn(2, 3, 8, 48, 48)
    spec_ft = torch.randn(2, 1, 65, 40)  # ours: (B, 1, F, T)
    with torch.no_grad():
        v_ref, a_ref = ref(video, spec_ft.transpose(-2, -1))  # the reference: (B, 1, T, F)
        out = model(video, spec_ft)
    torch.testing.assert_close(out.video_emb, F.normalize(v_ref, dim=-1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.audio_emb, F.normalize(a_ref, dim=-1), rtol=1e-4, atol=1e-5)
    encoder, cfg = load_video_encoder(tmp_path / "conv")  # what --init reads
    assert cfg == PAPER_MODEL
    with torch.no_grad():
        torch.testing.assert_close(encoder.eval()(video).emb, ref.video_model(video).flatten(1),
                                   rtol=1e-4, atol=1e-5)


def test_converter_refuses_another_layout(tmp_path: Path) -> None:
    ckpt = tmp_path / "other.pth.tar"
    other = build_av_model(ModelConfig(video_arch="r2plus1d_18", head="mlp"))
    torch.save({"epoch": 1, "model": {f"module.{k}": v for k, v in other.state_dict().items()}}, ckpt)
    with pytest.raises(CheckpointError) as err:
        convert_checkpoint(ckpt, tmp_path / "out")
    message = str(err.value)
    assert str(ckpt) in message
    assert "missing keys: module.audio_model.block1.bn1.bias" in message
    assert "unexpected keys: module.audio_encoder" in message


def test_converter_names_a_wrong_shape(tmp_path: Path) -> None:
    state = {f"module.{k}": v for k, v in ReferenceAVWrapper().state_dict().items()}
    state["module.video_proj.projection.4.weight"] = torch.zeros(64, 512)
    wrong = r"wrong shapes: module\.video_proj\.projection\.4\.weight \(64, 512\)"
    with pytest.raises(CheckpointError, match=wrong):
        convert_state_dict(state, "x.pth.tar")


def test_converter_refuses_stats_of_the_wrong_bin_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = tmp_path / "ok.pth.tar"
    _write_reference_checkpoint(ckpt)
    stats = tmp_path / "audio-spectDB-24k-257-norm-stats.npz"  # the reference's other file: 129 bins
    np.savez(stats, mean=np.zeros(129, np.float32), std=np.ones(129, np.float32))
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["convert", "avid-cma", str(ckpt), "--out", str(tmp_path / "o"), "--stats", str(stats)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "257-norm-stats.npz: 'mean' has shape (129,) but this spectrogram has 257" in err


def test_converter_refuses_a_truncated_file(tmp_path: Path) -> None:
    ckpt = tmp_path / "cut.pth.tar"
    _write_reference_checkpoint(ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"cut\.pth\.tar: cannot be read .* truncated"):
        convert_checkpoint(ckpt, tmp_path / "out")


def test_converter_cli_exits_2_with_the_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "notdict.pth.tar"
    torch.save([1, 2, 3], ckpt)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["convert", "avid-cma", str(ckpt), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "expected AVID-CMA's checkpoint dict" in capsys.readouterr().err


# ----------------------------------------------------------------- (f) the paper presets

PAPER_PRESETS = ["avid_kinetics400", "avid_audioset", "avid_cma_kinetics400", "avid_cma_audioset"]


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_paper_presets_use_the_papers_pieces(name: str) -> None:
    from avlearn.config import load_config
    from avlearn.objectives.cma import CMAConfig
    from avlearn.train.config import PretrainConfig

    cfg = load_config(PretrainConfig, f"pretrain/{name}.yaml")
    assert cfg.model == PAPER_MODEL
    spec = cfg.data.spec
    assert (spec.kind, spec.sample_rate, spec.n_fft, spec.hop_length, spec.num_bins, spec.normalize) == (
        "avid_db", 24000, 1024, 240, 257, "frequency")
    params = cfg.objective.params
    assert params.normalize_weights and params.partition == "shared" and params.temperature == 0.07
    if isinstance(params, CMAConfig):
        assert (params.positives, params.xmodal_positives, params.num_negatives_within) == ("all", False, 64)
        assert (params.xmodal_weight, params.within_weight, params.positive_set_size) == (1.0, 1.0, 32)


def test_our_own_configs_keep_their_defaults() -> None:
    from avlearn.config import load_config
    from avlearn.train.config import PretrainConfig

    cfg = load_config(PretrainConfig, "pretrain/synth_cpu.yaml")
    assert (cfg.model.head, cfg.data.spec.kind, cfg.data.spec.normalize) == ("mlp", "avid_linear", "instance")
