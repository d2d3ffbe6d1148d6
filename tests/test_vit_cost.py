"""The ViT cost benchmark's CAV-MAE parameter count agrees with the released checkpoints' shapes."""

from __future__ import annotations

import torch

from benchmarks import vit_cost


def test_reference_count_is_ours_plus_its_fixed_tables_and_unused_norms() -> None:
    torch.set_num_threads(1)
    c = vit_cost.cav_mae()
    # 191,036,160: the pretrained release's tensors, counted from its key shapes in
    # tests/models/test_convert_cav_mae.py; here from our modules plus what only the reference stores
    assert c["reference_total_params"] == 191_036_160
    assert c["ours_total_params"] == c["encoders_and_shared_block_params"] + c["decoder_params"]
    # a masked step's encoders see a quarter of the tokens: far less than encoding everything
    assert 0 < c["gflop_pretrain_encoders_masked"] < c["gflop_audio_alone"] + c["gflop_frame_alone"]
