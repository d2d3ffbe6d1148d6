from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.train.pretrain_helpers import make_collection


@pytest.fixture(scope="session")
def synth_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 synthetic training videos (3 s, 64 px); returns the manifest path."""
    return make_collection(tmp_path_factory.mktemp("synth_train"), num_videos=36, seed=0)


@pytest.fixture(scope="session")
def synth_heldout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 other synthetic videos (a different collection seed) for held-out retrieval."""
    return make_collection(tmp_path_factory.mktemp("synth_heldout"), num_videos=48, seed=1)


@pytest.fixture(scope="session")
def synth_learn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 training videos: with fewer, in-batch InfoNCE memorises instances before it learns classes."""
    return make_collection(tmp_path_factory.mktemp("synth_learn"), num_videos=120, seed=2)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread for the test, restored after it: CPU kernels split their sums by thread, so
    a test comparing runs to the last bits holds at one count whatever pytest was started with."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
