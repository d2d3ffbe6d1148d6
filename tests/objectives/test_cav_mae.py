"""CAV-MAE (:mod:`avlearn.objectives.cav_mae`): the loss against a re-implementation of the reference's
forward on the same weights, inputs and masks; its pieces (masks, patches, norm_pix, the NCE's
direction); the parameter count at base size against the reference's; what it refuses; and that the
loss goes down on the synthetic collection through ``avlearn pretrain`` with the CPU preset."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avlearn.config import ConfigError, load_config
from avlearn.models import AudioViT, AVModel, IdentityHead, SharedFusion, VideoViT, build_av_model
from avlearn.models.registry import ModelConfig
from avlearn.objectives import OBJECTIVES, RunFacts
from avlearn.objectives.cav_mae import (
    CAVMAEConfig,
    CAVMAEDecoder,
    CAVMAEForward,
    CAVMAELoss,
    cav_mae_nce,
    masked_patch_mse,
    patchify,
    random_keep,
)
from avlearn.train.config import PretrainConfig
from avlearn.train.optim import lr_factor
from avlearn.train.pretrain import main as pretrain
from tests.objectives._cav_mae_reference import RefCAVMAE, sincos_table
from tests.train.pretrain_helpers import make_collection

TINY = CAVMAEConfig(decoder_width=64, decoder_depth=2, decoder_heads=4)
CONFIGS = Path(__file__).resolve().parents[2] / "avlearn" / "configs" / "pretrain"


# --------------------------------------------------------------------------- the reference, ported


def _ours(shared: int = 1) -> tuple[AVModel, CAVMAELoss, nn.Module]:
    """Our model at the reference's test sizes: 8 px patches, 4 blocks of 128, ``shared`` more."""
    video, audio = VideoViT("tiny", (1, 8, 8)), AudioViT("tiny", (8, 8))
    model = AVModel(video, audio, IdentityHead(128), IdentityHead(128), fusion=SharedFusion(128, 4, shared))
    objective = CAVMAELoss(TINY)
    return model, objective, objective.network(model)


def _from_reference(ref: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The reference's state on our names (the table of avlearn.models.fusion): model, decoder."""
    renames = {"patch_embed_a.proj.": "audio_encoder.patch_embed.",
               "patch_embed_v.proj.": "video_encoder.patch_embed.", "modality_": "fusion.modality_",
               "blocks_a.": "audio_encoder.blocks.", "blocks_v.": "video_encoder.blocks.",
               "blocks_u.": "fusion.blocks.", "norm_a.": "audio_encoder.norm.",
               "norm_v.": "video_encoder.norm.", "norm.": "fusion.norm."}
    model, decoder = {}, {}
    for key, value in ref.items():
        modality_norm = "norm1_" in key or "norm2_" in key
        unused = key.startswith(("blocks_a.", "blocks_v.", "decoder_blocks.")) and modality_norm
        if "pos_embed" in key or unused:
            continue  # fixed positions are recomputed; the specific blocks' modality norms are never used
        if key.startswith(("decoder_", "mask_token")):
            decoder[key] = value
            continue
        old = next(k for k in renames if key.startswith(k))
        value = value[:, :, None] if key == "patch_embed_v.proj.weight" else value  # one-frame tubelets
        model[renames[old] + key[len(old):]] = value
    return model, decoder


def _keep(noise: Tensor, ratio: float) -> Tensor:
    n_keep = int(noise.shape[1] * (1 - ratio))
    return torch.zeros_like(noise, dtype=torch.bool).scatter_(1, noise.argsort(1)[:, :n_keep], True)


def _cross_check(shared: int = 1) -> tuple[dict[str, Tensor], dict[str, Tensor], RefCAVMAE, AVModel, Tensor,
                                           Tensor]:
    """Both models on the same weights, inputs and masks: ``(our logs, the reference's outputs, the
    reference, our model, audio (B, 1, F, T), video (B, 3, 1, H, W))``."""
    torch.manual_seed(0)
    ref = RefCAVMAE(shared=shared)
    ref.init_weights()
    model, objective, net = _ours(shared)
    model_state, decoder_state = _from_reference(ref.state_dict())
    model.load_state_dict(model_state, strict=True)
    assert objective.decoder is not None
    objective.decoder.load_state_dict(decoder_state, strict=True)
    g = torch.Generator().manual_seed(1)
    audio_ref, imgs = torch.randn(6, 64, 32, generator=g), torch.randn(6, 3, 32, 32, generator=g)
    noise_a, noise_v = torch.rand(6, 32, generator=g), torch.rand(6, 16, generator=g)
    audio, video = audio_ref.transpose(1, 2)[:, None], imgs[:, :, None]  # (B, 1, F, T), (B, 3, 1, H, W)
    keep_a, keep_v = _keep(noise_a, 0.75), _keep(noise_v, 0.75)
    with torch.no_grad():
        expected = ref(audio_ref, imgs, noise_a, noise_v)
        out: CAVMAEForward = net(video, audio, keep_video=keep_v, keep_audio=keep_a)
        _, logs = objective.score(out, patchify(audio, (8, 8)), patchify(video, (1, 8, 8)), keep_a, keep_v)
    assert torch.equal(~keep_a, expected["mask_a"].bool()) and torch.equal(~keep_v, expected["mask_v"].bool())
    return logs, expected, ref, model, audio, video


def test_the_loss_equals_the_reference_s() -> None:
    logs, expected, *_ = _cross_check()
    keys = ("loss", "mae_audio", "mae_video", "nce", "nce_acc")
    diffs = {k: abs(float(logs[k]) - float(expected[k])) for k in keys}
    print(f"max |ours - reference| over the loss terms: {max(diffs.values()):.2e} {diffs}")
    assert max(diffs.values()) <= 1e-5, diffs


def test_the_embedding_is_the_reference_s_retrieval_feature() -> None:
    _, _, ref, model, audio, video = _cross_check()
    with torch.no_grad():
        feat_a, feat_v = ref.forward_feat(audio[:, 0].transpose(1, 2), video[:, :, 0])
        out = model.eval()(video, audio, normalize=False)
    torch.testing.assert_close(out.audio_emb, feat_a.mean(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.video_emb, feat_v.mean(1), atol=1e-5, rtol=0)


def test_two_shared_blocks_chain_as_forward_feat_not_as_the_pretraining_loop() -> None:
    """The reference's single-modality loop keeps only its last shared block's output; we chain them
    (as its forward_feat and its fine-tuning model do): the MAE terms agree, the NCE does not."""
    logs, expected, ref, model, audio, video = _cross_check(shared=2)
    assert abs(float(logs["mae_audio"]) - float(expected["mae_audio"])) <= 1e-5
    assert abs(float(logs["nce"]) - float(expected["nce"])) > 1e-3
    with torch.no_grad():
        feat_a, _ = ref.forward_feat(audio[:, 0].transpose(1, 2), video[:, :, 0])
        torch.testing.assert_close(model.eval()(video, audio, normalize=False).audio_emb, feat_a.mean(1),
                                   atol=1e-5, rtol=0)


@pytest.mark.parametrize(("rows", "cols"), [(8, 64), (4, 8), (14, 14)])
def test_the_reference_s_reshaped_positions_are_the_row_major_table(rows: int, cols: int) -> None:
    """pos_embed.py reshapes its (2, rows, cols) grid to (2, 1, cols, rows): a reshape keeps the flat
    order, so the table is MAE's row-major one of the (rows, cols) grid, the first half encoding the
    column (time for audio). Our encoders' sin-cos positions are that table."""
    from avlearn.models.vit import sincos_2d

    table = torch.from_numpy(sincos_table(64, rows, cols))
    torch.testing.assert_close(table, sincos_2d(64, rows, cols), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- pieces


def test_random_keep_is_the_reference_s_draw_and_keeps_a_fixed_count() -> None:
    torch.manual_seed(3)
    keep = random_keep(5, 512, 0.75)
    torch.manual_seed(3)
    x = torch.zeros(5, 512, 1)
    _, mask, _ = RefCAVMAE.mask(x, 0.75, torch.rand(5, 512))
    assert torch.equal(keep, mask == 0)
    assert keep.sum(1).tolist() == [128] * 5 and len({tuple(row.tolist()) for row in keep}) == 5
    assert random_keep(2, 196, 0.75).sum(1).tolist() == [49, 49]  # int(196 * 0.25)
    with pytest.raises(ValueError, match="keeps 0"):
        random_keep(2, 3, 0.75)


def test_patchify_orders_each_patch_as_the_reference() -> None:
    torch.manual_seed(0)
    ref, imgs = RefCAVMAE(p=8), torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(patchify(imgs[:, :, None], (1, 8, 8)), ref.patchify(imgs, 3), rtol=0, atol=0)
    clip = torch.randn(1, 3, 4, 16, 16)
    patches = patchify(clip, (2, 8, 8))
    assert patches.shape == (1, 2 * 2 * 2, 2 * 8 * 8 * 3)
    torch.testing.assert_close(patches[0, 3], clip[0, :, 0:2, 8:16, 8:16].permute(1, 2, 3, 0).flatten())
    with pytest.raises(ValueError, match="must divide"):
        patchify(torch.randn(1, 1, 20, 16), (16, 16))


def test_norm_pix_normalises_each_patch_and_scores_masked_patches_only() -> None:
    torch.manual_seed(0)
    target, pred = torch.randn(2, 4, 12) * 3 + 1, torch.randn(2, 4, 12)
    keep = torch.tensor([[True, False, True, False], [False, True, True, False]])
    norm = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    expected = ((pred - norm) ** 2).mean(-1)[~keep].mean()
    torch.testing.assert_close(masked_patch_mse(pred, target, keep), expected)
    plain = ((pred - target) ** 2).mean(-1)[~keep].mean()
    torch.testing.assert_close(masked_patch_mse(pred, target, keep, norm_pix=False), plain)
    pred_kept_wrong = torch.where(keep[..., None], pred + 100, pred)
    torch.testing.assert_close(masked_patch_mse(pred_kept_wrong, target, keep), expected)


def test_the_nce_is_one_direction_video_to_audio() -> None:
    """Each video against the batch's audios: two audios equal to one another confuse the videos that
    pick among them; adding a far video to the batch changes nothing for the other rows' targets."""
    torch.manual_seed(0)
    audio, video = F.normalize(torch.randn(4, 8), dim=-1), F.normalize(torch.randn(4, 8), dim=-1)
    loss, _ = cav_mae_nce(audio, video, 0.05)
    logits = video @ audio.T / 0.05
    torch.testing.assert_close(loss, F.cross_entropy(logits, torch.arange(4)))
    ref, _ = RefCAVMAE.forward_contrastive(audio, video)
    torch.testing.assert_close(loss, ref)
    other_direction = F.cross_entropy(logits.T, torch.arange(4))
    assert abs(float(loss - other_direction)) > 1e-3


def test_the_decoder_puts_the_mask_token_where_tokens_were_dropped() -> None:
    torch.manual_seed(0)
    decoder = CAVMAEDecoder(16, (4, 4), (1, 4, 4), decoder_width=8, depth=1, heads=2)
    keep = torch.tensor([[True, False, False, True]])
    placed = decoder._unmasked(torch.ones(1, 2, 8), keep)
    torch.testing.assert_close(placed[0, 1], decoder.mask_token[0, 0])
    torch.testing.assert_close(placed[0, 3], torch.ones(8))


def _tiny_step(autocast: bool = False) -> tuple[Tensor, dict[str, Tensor], Any, nn.Module]:
    torch.manual_seed(0)
    cfg = {"video_arch": "vit_video_p8_tiny", "audio_arch": "vit_audio_tiny", "head": "identity",
           "video_pool": "avg", "audio_pool": "avg", "fusion_depth": 1}
    objective = CAVMAELoss(TINY)
    net = objective.network(build_av_model(cfg))
    batch = {"video": torch.randn(4, 3, 4, 32, 32), "audio": torch.randn(4, 1, 64, 96),
             "index": torch.arange(4)}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss, logs, out = objective.forward_loss(net, batch)
    loss.backward()
    return loss, logs, out, net


def test_every_parameter_gets_a_gradient_in_one_forward() -> None:
    """DDP (no find_unused_parameters) needs every trained weight used: the encoders' final norms are
    the single-modality passes' norm_a / norm_v, the shared block's six norms all run, so does the decoder."""
    loss, logs, out, net = _tiny_step()
    assert torch.equal(loss.detach(), logs["loss"]) and out.video_emb.shape == (4, 128)
    assert not [name for name, p in net.named_parameters() if p.grad is None]


def test_bf16_autocast_gives_a_float32_loss() -> None:
    loss, _, out, _ = _tiny_step(autocast=True)
    assert loss.dtype == torch.float32 and math.isfinite(float(loss.detach()))
    assert out.video_emb.isfinite().all()


# --------------------------------------------------------------------------- parameter counts


def test_base_parameters_against_the_reference_s() -> None:
    """Ours at base (vit_*_base11 + 1 shared block + the 512 x 8 decoder) has the reference's trainable
    parameters; the reference stores besides its four sin-cos tables (requires_grad False) and the
    never-used per-modality norms of its 11 + 11 specific and 8 decoder blocks."""
    cfg = {"video_arch": "vit_frame_base11", "audio_arch": "vit_audio_base11", "head": "identity",
           "video_pool": "avg", "audio_pool": "avg", "fusion_depth": 1}
    with torch.device("meta"):
        model = build_av_model(cfg)
        decoder = CAVMAEDecoder(768, (16, 16), (1, 16, 16))
        ref = RefCAVMAE(bins=128, frames=1024, img=224, p=16, dim=768, specific=11, shared=1, heads=12,
                        dec_dim=512, dec_depth=8, dec_heads=16)
    count = sum(p.numel() for p in model.parameters()) + sum(p.numel() for p in decoder.parameters())
    ref_all = sum(p.numel() for p in ref.parameters())
    tables = (512 + 196) * (768 + 512)
    unused = (11 * 2 * 4 * 2 * 768) + (8 * 4 * 2 * 512)
    encoder = sum(p.numel() for p in model.parameters())
    print(f"ours {count:,} (encoders + shared {encoder:,}, decoder {count - encoder:,}); "
          f"reference {ref_all:,} stored, less {tables:,} table and {unused:,} unused norm values")
    assert count == ref_all - tables - unused


# --------------------------------------------------------------------------- refusals and the presets


@pytest.mark.parametrize(("change", "key"), [
    ({"video_arch": "r2plus1d_tiny"}, "model.video_arch=r2plus1d_tiny"),
    ({"audio_arch": "avid_spec_cnn9_tiny"}, "model.audio_arch=avid_spec_cnn9_tiny"),
    ({"fusion_depth": 0}, "model.fusion_depth"),
    ({"head": "mlp"}, "model.head"),
    ({"video_pool": "max"}, "model.video_pool"),
])
def test_models_it_cannot_train_are_refused_naming_the_key(change: dict[str, Any], key: str) -> None:
    base = {"video_arch": "vit_video_p8_tiny", "audio_arch": "vit_audio_tiny", "head": "identity",
            "video_pool": "avg", "audio_pool": "avg", "fusion_depth": 1}
    model = ModelConfig(**{**base, **change})
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        OBJECTIVES["cav_mae"].check_run(CAVMAEConfig(), RunFacts(epochs=1, model=model))
    OBJECTIVES["cav_mae"].check_run(CAVMAEConfig(), RunFacts(epochs=1, model=ModelConfig(**base)))
    with pytest.raises(ValueError, match="localization.weight"):
        OBJECTIVES["cav_mae"].check_run(CAVMAEConfig(), RunFacts(epochs=1, localizer=True))


@pytest.mark.parametrize(("key", "value"), [("mask_ratio_audio", 1.0), ("mask_ratio_video", 0.0),
                                            ("temperature", 0.0), ("contrastive_weight", -1.0),
                                            ("decoder_heads", 3)])
def test_bad_settings_name_the_key(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"objective\.(\w+ \(\d+\) must be a multiple of )?{key}"):
        CAVMAEConfig(**{key: value})


def test_the_paper_preset_loads_with_its_settings() -> None:
    cfg = load_config(PretrainConfig, CONFIGS / "cav_mae_audioset.yaml")
    o, m, spec = cfg.objective.params, cfg.model, cfg.data.spec
    assert cfg.objective.name == "cav_mae" and (o.mask_ratio_audio, o.mask_ratio_video) == (0.75, 0.75)
    assert (o.mae_weight, o.contrastive_weight, o.temperature, o.norm_pix_loss) == (1.0, 0.01, 0.05, True)
    assert (o.decoder_width, o.decoder_depth, o.decoder_heads) == (512, 8, 16)
    assert (m.video_arch, m.audio_arch, m.fusion_depth) == ("vit_frame_base11", "vit_audio_base11", 1)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.betas) == (
        "adam", 5e-5, 5e-7, (0.95, 0.999))
    assert cfg.optim.schedule == "step" and cfg.optim.milestones == [10, 15, 20] and cfg.optim.gamma == 0.5
    # the reference's MultiStepLR(range(10, 1000, 5), 0.5) stepped after each of its 25 epochs
    factors = [lr_factor(epoch * 100, 100, 2500, cfg.optim) for epoch in range(25)]
    assert factors == [1.0] * 10 + [0.5] * 5 + [0.25] * 5 + [0.125] * 5
    assert (cfg.epochs, cfg.data.batch_size, cfg.train.mixed_precision) == (25, 12, "fp16")  # 4 x 12 = 48
    assert (spec.kind, spec.n_mels, spec.frames) == ("kaldi_fbank", 128, 1024)
    assert (spec.normalize, spec.mean, spec.std) == ("dataset", -5.081, 4.4849)
    assert (cfg.data.num_frames, cfg.data.video_aug.size) == (1, 224)


def _losses(run: Path) -> list[float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r["train/loss"] for r in records if "train/loss" in r]


def test_the_cpu_preset_trains_and_its_loss_goes_down(tmp_path: Path) -> None:
    """``avlearn pretrain`` with synth_cpu_cav_mae.yaml on 16 synthetic videos: the loss of the last
    steps is below the first steps'; the export loads back with its shared blocks; the run resumes."""
    from avlearn.models.weights import load_av_model

    manifest = make_collection(tmp_path / "synth", num_videos=16, seed=0)
    run = tmp_path / "run"
    code = pretrain(["--config", "pretrain/synth_cpu_cav_mae.yaml", f"run_dir={run}",
                     f"data.manifest={manifest}", "data.num_workers=0", "data.batch_size=8", "max_steps=16",
                     "train.log_every=1", "train.progress=false", "train.tensorboard=false"])
    assert code == 0
    losses = _losses(run)
    assert len(losses) == 16 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.05, losses
    model, cfg = load_av_model(run)
    assert cfg.fusion_depth == 1 and isinstance(model.fusion, SharedFusion)
    again = pretrain(["--config", "pretrain/synth_cpu_cav_mae.yaml", "--resume", f"run_dir={run}",
                      f"data.manifest={manifest}", "data.num_workers=0", "data.batch_size=8", "max_steps=18",
                      "train.log_every=1", "train.progress=false", "train.tensorboard=false"])
    assert again == 0 and len(_losses(run)) == 18  # resumed with the decoder from the checkpoint
