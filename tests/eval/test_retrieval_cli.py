"""``avlearn evaluate retrieval`` on a tiny synthetic collection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avlearn.eval.retrieval_cli import main
from avlearn.models.checkpoint import save_encoders
from avlearn.models.registry import ModelConfig, build_av_model
from tests.train.downstream_helpers import small_collection

ROOT = Path(__file__).resolve().parents[2]


def test_retrieval_cli_writes_recall_at_1_5_10(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from avlearn.data.manifest import write_manifest
    from avlearn.data.splits import synthetic_split, to_manifest_rows

    root = small_collection(tmp_path_factory)
    rows = to_manifest_rows(synthetic_split(root, "test"), probe=True)
    manifest = write_manifest(rows, tmp_path / "test.csv")
    cfg = ModelConfig(video_arch="r2plus1d_tiny", audio_arch="avid_spec_cnn9_tiny", embed_dim=16,
                      proj_hidden=32)
    export = save_encoders(build_av_model(cfg), tmp_path / "run" / "encoders.safetensors", cfg)
    out = tmp_path / "r.json"
    code = main(["--init", str(export), "--manifest", str(manifest), "--out", str(out),
                 "--config", str(ROOT / "avlearn/configs/pretrain/synth_cpu.yaml"), "data.decode_size=20",
                 "data.video_aug.size=16", "data.num_frames=4", "data.num_workers=0"])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["n"] == 12
    for key in ("v2a_r1", "v2a_r5", "v2a_r10", "a2v_r1", "a2v_r5", "a2v_r10"):
        assert 0.0 <= result[key] <= 1.0
    assert result["v2a_r1"] <= result["v2a_r5"] <= result["v2a_r10"]
    assert "R@10" in capsys.readouterr().out


def test_retrieval_cli_names_a_bad_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("path\n")
    assert main(["--init", str(tmp_path / "missing_run"), "--manifest", str(manifest)]) == 2
    assert "missing_run" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["", "path,video_id,status\n"])
def test_retrieval_cli_on_an_empty_manifest_is_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    cfg = ModelConfig(video_arch="r2plus1d_tiny", audio_arch="avid_spec_cnn9_tiny", embed_dim=16,
                      proj_hidden=32)
    export = save_encoders(build_av_model(cfg), tmp_path / "run" / "encoders.safetensors", cfg)
    manifest = tmp_path / "held_out.csv"
    manifest.write_text(text)
    assert main(["--init", str(export), "--manifest", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert f"--manifest={manifest}: no usable video" in err and "Traceback" not in err


def test_retrieval_over_shards_equals_the_manifest(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from avlearn.data.manifest import write_manifest
    from avlearn.data.splits import synthetic_split, to_manifest_rows
    from data_prep.shard import ShardOptions, write_shards

    root = small_collection(tmp_path_factory)
    rows = to_manifest_rows(synthetic_split(root, "test"), probe=True)
    manifest = write_manifest(rows, tmp_path / "test.csv")
    write_shards(manifest, tmp_path / "shards", ShardOptions(samples_per_shard=5), progress=False)
    cfg = ModelConfig(video_arch="r2plus1d_tiny", audio_arch="avid_spec_cnn9_tiny", embed_dim=16,
                      proj_hidden=32)
    export = save_encoders(build_av_model(cfg), tmp_path / "run" / "encoders.safetensors", cfg)
    common = ["--init", str(export), "--config", str(ROOT / "avlearn/configs/pretrain/synth_cpu.yaml"),
              "--batch-size", "4"]
    settings = ["data.decode_size=20", "data.video_aug.size=16", "data.num_frames=4"]
    index = str(tmp_path / "shards" / "index.json")
    results = []
    for name, args in (("files", ["--manifest", str(manifest)]), ("shards", ["--shards", index])):
        workers = "data.num_workers=2" if name == "shards" else "data.num_workers=0"
        assert main([*common, *args, "--out", str(tmp_path / f"{name}.json"), *settings, workers]) == 0
        results.append(json.loads((tmp_path / f"{name}.json").read_text()))
    files, shards = ({k: v for k, v in r.items() if k not in ("manifest", "shards")} for r in results)
    assert files["n"] == 12 and shards == files
    assert main([*common, "--shards", str(tmp_path / "missing" / "index.json")]) == 2
    assert "--shards" in capsys.readouterr().err
    # the clips themselves are the manifest's, bit for bit (any order)
    from torch.utils.data import DataLoader

    from avlearn.config import load_config
    from avlearn.data.config import build_dataset
    from avlearn.data.dataset import av_collate
    from avlearn.eval.retrieval_cli import RetrievalInputs, _shard_batches

    data = load_config(RetrievalInputs, ROOT / "avlearn/configs/pretrain/synth_cpu.yaml",
                       [*settings, "data.num_workers=2"], partial=True).data
    ref = {int(i): (b["video"][j], b["audio"][j]) for b in DataLoader(
        build_dataset(data, train=False, manifest=manifest), batch_size=5, collate_fn=av_collate)
        for j, i in enumerate(b["index"])}
    got = {int(i): (b["video"][j], b["audio"][j]) for b in _shard_batches(data, index, 5)
           for j, i in enumerate(b["index"])}
    assert sorted(got) == sorted(ref) == list(range(12))
    assert all(torch.equal(got[i][0], ref[i][0]) and torch.equal(got[i][1], ref[i][1]) for i in ref)
