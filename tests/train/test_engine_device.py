"""The engine moves a batch to the device once: every tensor, also in nested dicts, in the
channels-last layout of its rank when asked; ids and failure lists stay as they are."""

from __future__ import annotations

import torch

from avlearn.train.engine import to_device


def _batch() -> dict[str, object]:
    return {"video": torch.rand(2, 3, 4, 8, 8), "audio": torch.rand(2, 1, 16, 10),
            "index": torch.tensor([3, 5]),
            "frames": torch.zeros(2, 3, 4, 8, 8, dtype=torch.uint8),
            "audio_aug": {"gain": torch.ones(2), "time_keep": torch.ones(2, 10, dtype=torch.bool)},
            "video_id": ["a", "b"], "failures": [("x.mp4", "file is empty")]}


def test_every_tensor_goes_to_the_device_and_other_values_stay() -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = _batch()
    out = to_device(batch, device)
    tensors = [out["video"], out["index"], out["audio_aug"]["gain"], out["audio_aug"]["time_keep"]]
    assert {t.device.type for t in tensors} == {device.type}
    assert out["video_id"] is batch["video_id"] and out["failures"] is batch["failures"]
    assert torch.equal(out["video"].cpu(), batch["video"])  # type: ignore[arg-type]
    assert out["video"].is_contiguous()


def test_channels_last_for_floating_clips_only() -> None:
    out = to_device(_batch(), torch.device("cpu"), channels_last=True)
    assert out["video"].is_contiguous(memory_format=torch.channels_last_3d)
    assert out["audio"].is_contiguous(memory_format=torch.channels_last)
    assert out["frames"].is_contiguous()  # uint8 frames: the device augmentation crops them first
    plain = to_device(_batch(), torch.device("cpu"))
    assert not plain["video"].is_contiguous(memory_format=torch.channels_last_3d)
