"""Parameters and forward FLOPs of the ViT encoders at CAV-MAE's inputs, and of the CAV-MAE model
beside the reference's (``YuanGongND/cav-mae``, ``src/models/cav_mae.py``).

FLOPs come from ``torch.utils.flop_counter`` on the meta device (a multiply-add counts 2; the
attention's two matrix products are counted through ``F.scaled_dot_product_attention``), so nothing
is allocated. Inputs: a frame ViT sees one 224² image (CAV-MAE's visual branch), a tubelet ViT
16 frames at 224² (2x16x16 tubelets: 8 x 14 x 14 tokens), an audio ViT 128 Kaldi bins x 1024
frames (8 x 64 tokens). The CAV-MAE rows are the converted architecture (``vit_*_base11`` + one
shared block): encoding both modalities alone (the retrieval feature), the joint pass, and the
decoder on a masked pretraining step (25 % of the tokens kept).

The reference's parameter count is ours plus what it stores and we do not: its four fixed sin-cos
tables (encoder and decoder, per modality) and the per-modality LayerNorms its modality-specific
and decoder blocks carry but never use (``norm1_a`` ... ``norm2_v``). The converter's test checks
the same count from the released key shapes (``tests/models/test_convert_cav_mae.py``).

    python -m benchmarks.vit_cost       # writes benchmarks/results/vit_cost.{json,md}
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from avlearn.models.registry import AUDIO_ENCODERS, VIDEO_ENCODERS, ModelConfig, build_av_model
from avlearn.models.vit import PatchViT
from avlearn.objectives.cav_mae import CAVMAEConfig, CAVMAELoss
from benchmarks import harness

NAME = "vit_cost"
FRAME = (1, 3, 1, 224, 224)
TUBELETS = (1, 3, 16, 224, 224)
AUDIO = (1, 1, 128, 1024)
CAV_MAE = ModelConfig(video_arch="vit_frame_base11", audio_arch="vit_audio_base11", head="identity",
                      video_pool="avg", audio_pool="avg", fusion_depth=1)


def params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def gflop(fn: Any, *args: Any) -> float:
    """Forward GFLOP of ``fn(*args)`` (meta tensors)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args)
    return float(counter.get_total_flops()) / 1e9


def meta(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.empty(shape, device="meta")


def encoders() -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for registry, kind in ((VIDEO_ENCODERS, "video"), (AUDIO_ENCODERS, "audio")):
        for name, build in registry.items():
            if not name.startswith("vit_"):
                continue
            with torch.device("meta"):
                model = build().eval()
            shape = AUDIO if kind == "audio" else FRAME if name.startswith("vit_frame") else TUBELETS
            out = model(meta(shape))
            rows[name] = {"params": params(model), "input": list(shape[1:]),
                          "tokens": int(out.grid[0, 0].numel()), "gflop": gflop(model, meta(shape))}
    return rows


def cav_mae() -> dict[str, Any]:
    """The converted CAV-MAE base model and its decoder: parameters, FLOPs per pass."""
    with torch.device("meta"):
        model = build_av_model(CAV_MAE).eval()
        cfg = CAVMAEConfig()
        enc_a, enc_v = model.audio_encoder, model.video_encoder
    assert isinstance(enc_a, PatchViT) and isinstance(enc_v, PatchViT)
    # the objective's own decoder for this model; it puts the kept tokens back by their masks
    # (data-dependent), so it is built on the CPU, outside the meta device
    objective = CAVMAELoss(cfg)
    objective.network(model)
    decoder = objective.decoder
    assert decoder is not None
    decoder.eval()
    fusion = model.fusion
    assert fusion is not None
    audio, frame = meta(AUDIO), meta(FRAME)
    n_a, n_v = 512, 196
    kept_a, kept_v = int(n_a * (1 - cfg.mask_ratio_audio)), int(n_v * (1 - cfg.mask_ratio_video))
    keep_a, keep_v = torch.arange(n_a)[None] < kept_a, torch.arange(n_v)[None] < kept_v
    width = enc_v.out_dim
    joint = torch.zeros(1, kept_a + kept_v, width)

    def pretrain_encoders() -> None:  # the kept tokens through both encoders, three shared passes
        a = meta((1, kept_a, width))
        v = meta((1, kept_v, width))
        for block in enc_a.blocks:
            a = block(a)
        for block in enc_v.blocks:
            v = block(v)
        fusion.joint(a, v)
        fusion.single(a, "a", enc_a.norm)
        fusion.single(v, "v", enc_v.norm)

    stored_ours = params(model) + params(decoder)
    # what the reference stores besides: fixed tables (encoder and decoder, both modalities) and
    # the unused per-modality norms of its 22 modality-specific and 8 decoder blocks (4 norms each)
    tables = (n_a + n_v) * (width + cfg.decoder_width)
    unused_norms = 22 * 4 * 2 * width + cfg.decoder_depth * 4 * 2 * cfg.decoder_width
    return {
        "encoders_and_shared_block_params": params(model),
        "decoder_params": params(decoder),
        "ours_total_params": stored_ours,
        "reference_fixed_tables": tables,
        "reference_unused_norms": unused_norms,
        "reference_total_params": stored_ours + tables + unused_norms,
        "gflop_audio_alone": gflop(fusion.encode, enc_a, audio, "a"),
        "gflop_frame_alone": gflop(fusion.encode, enc_v, frame, "v"),
        "gflop_pretrain_encoders_masked": gflop(pretrain_encoders),
        "gflop_decoder": gflop(decoder, joint[:, :kept_a], joint[:, kept_a:], keep_a, keep_v,
                               (8, 64), (1, 14, 14)),
        "tokens": {"audio": n_a, "frame": n_v, "kept_audio": kept_a, "kept_frame": kept_v},
    }


def headline(record: dict[str, Any]) -> str:
    c = record["cav_mae"]
    return (f"CAV-MAE base: {c['ours_total_params'] / 1e6:.2f} M parameters stored (reference "
            f"{c['reference_total_params'] / 1e6:.2f} M with its fixed tables and unused norms)")


def markdown(res: dict[str, Any]) -> str:
    lines = ["# ViT cost at CAV-MAE's inputs (`python -m benchmarks.vit_cost`)", "",
             f"Command: `{res['command']}`", "",
             "| encoder | input | tokens | parameters | GFLOP |", "|---|---|---|---|---|"]
    for name, e in res["encoders"].items():
        shape = "x".join(map(str, e["input"]))
        lines.append(f"| `{name}` | {shape} | {e['tokens']} | {e['params'] / 1e6:.2f} M | {e['gflop']:.1f} |")
    c = res["cav_mae"]
    lines += ["", "CAV-MAE base (`vit_audio_base11` + `vit_frame_base11` + 1 shared block, decoder 512 x 8):",
              "",
              "| | ours | reference |", "|---|---|---|",
              f"| encoders + shared block | {c['encoders_and_shared_block_params']:,} | the same |",
              f"| decoder | {c['decoder_params']:,} | same |",
              f"| fixed sin-cos tables (stored) | 0 | {c['reference_fixed_tables']:,} |",
              f"| unused per-modality LayerNorms | 0 | {c['reference_unused_norms']:,} |",
              f"| **total stored** | **{c['ours_total_params']:,}** | **{c['reference_total_params']:,}** |",
              "", "Forward GFLOP, batch 1: "
              f"audio alone (retrieval feature) {c['gflop_audio_alone']:.1f}, frame alone "
              f"{c['gflop_frame_alone']:.1f}; a pretraining step's encoders on the kept tokens "
              f"({c['tokens']['kept_audio']} + {c['tokens']['kept_frame']}) with the three shared passes "
              f"{c['gflop_pretrain_encoders_masked']:.1f}, its decoder over all "
              f"{c['tokens']['audio'] + c['tokens']['frame']} tokens {c['gflop_decoder']:.1f}. The same "
              "layers as the reference compute the same products, so its FLOPs are these."]
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    return harness.parser(__doc__, NAME)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    return {"encoders": encoders(), "cav_mae": cav_mae()}


def main(argv: list[str] | None = None) -> int:
    return harness.run(NAME, argv, parser(), measure, markdown)


if __name__ == "__main__":
    raise SystemExit(main())
