"""The manifest of a video collection: one row per file with its probed properties.

Written by ``avlearn prepare index`` (``data_prep.index``), read by datasets. CSV or JSONL,
chosen by the file's suffix. ``status`` is ``ok`` (usable), ``warn`` (usable but odd:
variable frame rate, 8 kHz or multichannel audio, rotated, 4K, ...) or ``bad`` (cannot be used:
zero bytes, truncated, not a video, no video track, ...); ``reason`` says why in words.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

__all__ = ["ManifestError", "VideoInfo", "read_manifest", "write_manifest"]

Status = Literal["ok", "warn", "bad"]

logger = logging.getLogger(__name__)


class ManifestError(ValueError):
    """A manifest that cannot be read; the message names the file (and line) and the fix."""


@dataclasses.dataclass
class VideoInfo:
    """Probed properties of one media file (times in seconds; 0 / "" where unknown)."""

    path: str
    video_id: str = ""
    status: Status = "ok"
    reason: str = ""
    duration: float = 0.0
    fps: float = 0.0
    num_frames: int = 0
    width: int = 0
    height: int = 0
    rotation: int = 0
    has_video: bool = False
    has_audio: bool = False
    audio_sample_rate: int = 0
    audio_channels: int = 0
    video_codec: str = ""
    audio_codec: str = ""
    label: str = ""

    @property
    def usable_av(self) -> bool:
        """True when the file can feed audio-visual training (decodable video and audio)."""
        return self.status != "bad" and self.has_video and self.has_audio


_FIELDS = [f.name for f in dataclasses.fields(VideoInfo)]
_TYPES = {f.name: f.type for f in dataclasses.fields(VideoInfo)}
TRACK_COLUMNS = ("has_video", "has_audio")
"""Columns a hand-written manifest may leave out: a file is then assumed to have the track, and a
missing one shows up as a counted decode failure (rather than every row dropped as trackless)."""


def _parse(row: dict[str, str | int | float | bool]) -> VideoInfo:
    unknown = set(row) - set(_FIELDS)
    if unknown:
        raise ValueError(f"manifest has unknown column(s) {sorted(unknown)}; valid: {_FIELDS}")
    if "path" not in row or not str(row["path"]).strip():
        raise ValueError("the row has no path (every row needs the 'path' column)")
    values: dict[str, object] = {key: True for key in TRACK_COLUMNS if key not in row}
    for key, raw in row.items():
        tp = _TYPES[key]
        if tp == "bool":
            values[key] = raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")
        elif tp == "int":
            values[key] = int(float(raw)) if raw != "" else 0
        elif tp == "float":
            values[key] = float(raw) if raw != "" else 0.0
        else:
            values[key] = str(raw)
    return VideoInfo(**values)  # type: ignore[arg-type]


def write_manifest(rows: Iterable[VideoInfo], path: str | Path) -> Path:
    """Write rows as CSV (``.csv``) or JSON lines (``.jsonl``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    if path.suffix == ".jsonl":
        with path.open("w") as fh:
            for row in rows:
                fh.write(json.dumps(dataclasses.asdict(row)) + "\n")
    elif path.suffix == ".csv":
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=_FIELDS)
            writer.writeheader()
            for row in rows:
                writer.writerow(dataclasses.asdict(row))
    else:
        raise ValueError(f"manifest {path}: suffix must be .csv or .jsonl")
    return path


def _columns(path: Path) -> set[str]:
    if path.suffix == ".csv":
        with path.open(newline="") as fh:
            return set(next(csv.reader(fh), []))
    with path.open() as fh:
        first = next((line for line in fh if line.strip()), "{}")
    return set(json.loads(first))


def _note_assumed_tracks(path: Path) -> None:
    """Warn when the manifest does not say which files have video and audio tracks."""
    absent = [c for c in TRACK_COLUMNS if c not in _columns(path)]
    if absent:
        logger.warning("manifest %s has no %s column: every file is assumed to have that track (a file "
                       "without it becomes a counted decode failure); `avlearn prepare index` writes "
                       "a full manifest", path, " or ".join(absent))


def read_manifest(path: str | Path) -> list[VideoInfo]:
    """Read a manifest written by :func:`write_manifest`; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path} (create one with `avlearn prepare index`)")
    rows: list[VideoInfo] = []
    if path.suffix == ".jsonl":
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(_parse(json.loads(line)))
            except (ValueError, TypeError) as err:
                raise ManifestError(f"{path}:{lineno}: {err}") from None
    elif path.suffix == ".csv":
        with path.open(newline="") as fh:
            for lineno, row in enumerate(csv.DictReader(fh), 2):
                try:
                    rows.append(_parse(row))
                except (ValueError, TypeError) as err:
                    raise ManifestError(f"{path}:{lineno}: {err}") from None
    else:
        raise ManifestError(f"manifest {path}: suffix must be .csv or .jsonl")
    if rows:
        _note_assumed_tracks(path)
    # Relative paths are relative to the manifest's folder, so a collection can be moved.
    for info in rows:
        if info.path and not Path(info.path).is_absolute():
            info.path = str((path.parent / info.path).resolve())
    return rows
