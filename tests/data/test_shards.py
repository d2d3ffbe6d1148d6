"""ShardDataset in one process: samples equal the file dataset's, every sample once per epoch with the
stated remainder, epoch-seeded order, exact mid-epoch resume, corrupt members counted, HTTP shards."""

from __future__ import annotations

import collections
import dataclasses
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from avlearn.config import ConfigError
from avlearn.data.config import DataConfig, build_train_dataset
from avlearn.data.dataset import AVClipDataset, FailureTracker
from avlearn.data.decode import DecodeError, MediaBytes, decode_clip
from avlearn.data.manifest import read_manifest
from avlearn.data.shards import (
    EpochLayout,
    ShardDataset,
    ShardError,
    buffered_shuffle,
    shard_loader,
    shard_order,
)
from avlearn.data.transforms import VideoAugConfig
from data_prep.shard import ShardOptions, write_shards
from tests.data.shard_helpers import SPEC, epoch_batches, make_collection

N = 13  # shards of 5, 5, 3 samples


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shards")
    manifest = make_collection(root / "videos", N)
    write_shards(manifest, root / "clean", ShardOptions(samples_per_shard=5), progress=False)
    # the same collection with member 3's bytes cut short (the indexer saw the intact file)
    video = next(p for p in sorted((root / "videos").glob("*.mp4")) if p.name.endswith("v03.mp4"))
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 3])
    write_shards(manifest, root / "corrupt", ShardOptions(samples_per_shard=5), progress=False)
    video.write_bytes(data)
    return {"manifest": manifest, "clean": root / "clean" / "index.json",
            "corrupt": root / "corrupt" / "index.json"}


def _indices(batches: list[dict[str, Any]]) -> list[int]:
    return [int(i) for b in batches for i in b["index"]]


# ------------------------------------------------------------------------------- pure layout


def test_layout_deals_disjoint_ranges_and_drops_the_remainder() -> None:
    layout = EpochLayout.make(total=26, batch_size=2, world=2, streams=2)
    assert layout.batches == 6  # 26 // 4; remainder 2 positions
    assert layout.ranges == ((0, 6), (6, 6), (12, 6), (18, 6))
    uneven = EpochLayout.make(total=13, batch_size=2, world=2, streams=2)
    assert uneven.batches == 3 and uneven.ranges == ((0, 4), (4, 2), (6, 4), (10, 2))  # 1 position dropped


def test_buffered_shuffle_is_a_bounded_permutation() -> None:
    items = list(range(50))
    out = [x for x, waiting in buffered_shuffle(items, 8, np.random.default_rng(0)) if len(waiting) <= 8]
    assert sorted(out) == items and out != items
    assert all(pos >= x - 8 for pos, x in enumerate(out))  # bounded: nothing leaves more than 8 early
    assert [x for x, _ in buffered_shuffle(items, 1, np.random.default_rng(0))] == items
    assert shard_order(5, 0, 0) == shard_order(5, 0, 0) != shard_order(5, 0, 1)


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_decoders_read_bytes_as_files(shards: dict[str, Path], backend: str) -> None:
    path = read_manifest(shards["manifest"])[4].path
    spec = dataclasses.replace(SPEC, size=24)  # decord 0.6 fails on these 48x32 files at their own size
    from_file = decode_clip(path, 0.3, spec, backend)
    from_bytes = decode_clip(MediaBytes("in-memory.mp4", Path(path).read_bytes()), 0.3, spec, backend)
    torch.testing.assert_close(from_bytes.video, from_file.video, rtol=0, atol=0)
    torch.testing.assert_close(from_bytes.audio, from_file.audio, rtol=0, atol=0)
    with pytest.raises(DecodeError, match="cannot decode broken.mp4: not a readable media file"):
        decode_clip(MediaBytes("broken.mp4", b"not a video" * 10), 0.0, SPEC, backend)


# ------------------------------------------------------------------------ samples and epochs


def test_samples_equal_the_file_datasets(shards: dict[str, Path]) -> None:
    files = AVClipDataset(shards["manifest"], SPEC, clips_per_video=2, max_av_offset=0.2, seed=3)
    files.set_epoch(1)
    batches = epoch_batches(shards["clean"], epoch=1, batch_size=1, num_workers=0, clips_per_video=2,
                            max_av_offset=0.2, seed=3, shuffle_buffer=4)
    assert len(batches) == 2 * N
    for batch in batches[:6]:
        g = int(batch["index"][0])
        i = next(i for i in (g, g + N) if files[i]["start"] == float(batch["start"][0]))
        ref = files[i]
        assert batch["video_id"] == [ref["video_id"]] and int(batch["label"][0]) == ref["label"]
        torch.testing.assert_close(batch["video"][0], ref["video"], rtol=0, atol=0)
        torch.testing.assert_close(batch["audio"][0], ref["audio"], rtol=0, atol=0)
        assert float(batch["av_offset"][0]) == ref["av_offset"]


def test_every_sample_once_per_epoch_with_the_remainder_dropped(shards: dict[str, Path]) -> None:
    """13 clips in batches of 4 (2 workers): 3 batches, 12 clips; the epoch's last stream position dropped."""
    seen: dict[int, list[int]] = {}
    for epoch in (0, 1):
        batches = epoch_batches(shards["clean"], epoch=epoch, batch_size=4, num_workers=2, shuffle_buffer=3)
        got = _indices(batches)
        assert len(batches) == 3 and len(got) == len(set(got)) == 12
        order = shard_order(3, 0, epoch)
        stream = [g for k in order for g in range(5 * k, min(5 * k + 5, N))]
        assert set(got) == set(stream[:12])  # the dropped one: the last of this epoch's stream
        seen[epoch] = got
    assert seen[0] != seen[1]


def test_mid_epoch_resume_gives_the_rest_of_the_epoch(shards: dict[str, Path]) -> None:
    kwargs: dict[str, Any] = {"epoch": 2, "batch_size": 2, "num_workers": 2, "clips_per_video": 2,
                              "shuffle_buffer": 5, "max_av_offset": 0.3}
    whole = epoch_batches(shards["clean"], **kwargs)
    assert len(whole) == 13 and len(set(zip(_indices(whole), [float(s) for b in whole for s in b["start"]],
                                            strict=True))) == 26
    for skip in (1, 4, 12):
        rest = epoch_batches(shards["clean"], skip=skip, **kwargs)
        assert len(rest) == 13 - skip
        for a, b in zip(whole[skip:], rest, strict=True):
            assert a["video_id"] == b["video_id"]
            torch.testing.assert_close(a["video"], b["video"], rtol=0, atol=0)
            torch.testing.assert_close(a["audio"], b["audio"], rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_resume_with_other_worker_counts(shards: dict[str, Path]) -> None:
    """The order depends on the streams (4), not on the DataLoader workers that share them."""
    kwargs: dict[str, Any] = {"epoch": 0, "batch_size": 2, "shuffle_buffer": 3, "streams": 4}
    whole = epoch_batches(shards["clean"], num_workers=2, **kwargs)
    for workers, skip in ((0, 2), (4, 3), (1, 0)):
        rest = epoch_batches(shards["clean"], num_workers=workers, skip=skip, **kwargs)
        assert _indices(rest) == _indices(whole[skip:])
        torch.testing.assert_close(rest[0]["video"], whole[skip]["video"], rtol=0, atol=0)
    with pytest.raises(ValueError, match="data.shard_streams"):
        epoch_batches(shards["clean"], num_workers=3, **kwargs)


def test_corrupt_member_is_counted_and_named(shards: dict[str, Path],
                                             caplog: pytest.LogCaptureFixture) -> None:
    batches = epoch_batches(shards["corrupt"], epoch=0, batch_size=1, num_workers=0, shuffle_buffer=4)
    tracker = FailureTracker()
    for batch in batches:
        tracker.update(batch)
    assert tracker.clips == N and tracker.failures == tracker.replaced == 1
    g = [Path(r.path).stem for r in read_manifest(shards["manifest"])].index("c0_v03")  # global index
    member = f"shard-{g // 5:06d}.tar:{g:09d}.mp4"
    [(name, _reason)] = list(tracker.files)
    assert name.endswith(member) and member in tracker.report(0)
    assert g not in _indices(batches) and max(collections.Counter(_indices(batches)).values()) == 2
    assert "ShardDataset: skipping" in caplog.text


def test_config_selects_shards(shards: dict[str, Path]) -> None:
    cfg = DataConfig(source="shards", shards=str(shards["clean"]), num_frames=4, fps=8, decode_size=112,
                     audio_seconds=0.5, batch_size=2)
    ds = build_train_dataset(cfg)
    assert isinstance(ds, ShardDataset) and ds.num_videos == N
    with pytest.raises(ConfigError, match="data.shards"):
        build_train_dataset(DataConfig(source="shards", shards=str(shards["clean"].parent / "missing.json")))
    with pytest.raises(ValueError, match=r"label\(s\) \['c2'\] are not among the classes"):
        ShardDataset(shards["clean"], SPEC, class_to_idx={"c0": 0, "c1": 1})
    with pytest.raises(ConfigError, match="data.source"):
        DataConfig(source="tapes")  # type: ignore[arg-type]


def test_truncated_shard_is_an_error_naming_it(shards: dict[str, Path], tmp_path: Path) -> None:
    for path in shards["clean"].parent.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    tar = tmp_path / "shard-000001.tar"
    tar.write_bytes(tar.read_bytes()[:5000])
    with pytest.raises(ShardError, match="shard-000001.tar"):
        epoch_batches(tmp_path / "index.json", epoch=0, batch_size=13, num_workers=0)


# ------------------------------------------------------------------------------------- HTTP


@pytest.fixture
def http_root(shards: dict[str, Path]) -> Iterator[str]:
    """The clean shards served by http.server on 127.0.0.1 (a thread, stopped after the test)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(shards["clean"].parent))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_shards_equal_local_ones(shards: dict[str, Path], http_root: str) -> None:
    kwargs: dict[str, Any] = {"epoch": 0, "batch_size": 3, "num_workers": 2, "shuffle_buffer": 4}
    local = epoch_batches(shards["clean"], **kwargs)
    remote = epoch_batches(f"{http_root}/index.json", **kwargs)
    assert _indices(remote) == _indices(local) and len(local) == 4
    for a, b in zip(local, remote, strict=True):
        torch.testing.assert_close(a["video"], b["video"], rtol=0, atol=0)
    assert remote[0]["failures"] == [] and "http://127.0.0.1" not in str(remote[0]["video_id"])


def test_device_augmentation_reads_shards_as_files(shards: dict[str, Path]) -> None:
    """augment_on=device with shards: the workers only draw, as over files, and draw the same."""
    common: dict[str, Any] = {"num_frames": 4, "fps": 8, "decode_size": 32, "audio_seconds": 0.5,
                              "batch_size": 1, "augment_on": "device", "seed": 3,
                              "video_aug": VideoAugConfig(size=24)}
    files = build_train_dataset(DataConfig(manifest=str(shards["manifest"]), **common))
    streamed = build_train_dataset(DataConfig(source="shards", shards=str(shards["clean"]), **common))
    assert isinstance(streamed, ShardDataset)
    loader, batches = shard_loader(streamed, 1, rank=0, world=1, num_workers=0)
    batches.set_epoch(0, 0)
    batch = next(iter(loader))
    assert batch["video"].dtype == torch.uint8 and "video_aug" in batch  # pixels left to the device
    ref = files[int(batch["index"][0])]
    assert ref["start"] == float(batch["start"][0])
    torch.testing.assert_close(batch["video"][0], ref["video"], rtol=0, atol=0)
    torch.testing.assert_close(batch["video_aug"][0], ref["video_aug"], rtol=0, atol=0)
