"""``avlearn prepare audio-stats``: per-frequency spectrogram mean/std over a manifest.

``avlearn prepare audio-stats MANIFEST --out stats.npz [--config CONFIG] [key=value ...]`` reads
the spectrogram settings from ``CONFIG``'s ``data.spec`` (a pretraining or data config; default:
AVID-CMA's ``avid_db`` front end at 24 kHz) and the window length from ``data.audio_seconds``,
measures ``--clips-per-video`` evenly spaced windows of every usable file in ``--workers``
processes (with a progress bar; files that fail are counted and listed, never fatal), and
writes what ``data.spec.stats`` reads with ``data.spec.normalize: frequency``. At 2 s per
video it reads a few MB of audio per video, so Kinetics-400 (240k videos) takes tens of
minutes on 16 processes; there is no resume.

The released AVID-CMA weights were trained with the authors' AudioSet statistics
(``datasets/assets/audio-spectDB-24k-513-norm-stats.npz`` in facebookresearch/AVID-CMA, 257 bins,
CC-BY-NC): point ``data.spec.stats`` at that file to feed converted weights what they saw. Statistics
measured here on other data are the fallback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from avlearn.config import ConfigError, from_dict, parse_overrides, resolve_config_file
from avlearn.configs import resolve_config
from avlearn.data.audio import SpecConfig
from avlearn.data.audio_stats import compute_audio_stats, write_audio_stats
from avlearn.data.manifest import read_manifest

__all__ = ["main"]

DEFAULT_SPEC: dict[str, Any] = {"kind": "avid_db", "sample_rate": 24000, "n_fft": 1024, "hop_seconds": 0.01}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avlearn prepare audio-stats", description=__doc__.split("\n")[0])
    parser.add_argument("manifest", help="manifest (.csv / .jsonl) from `avlearn prepare index`")
    parser.add_argument("--out", required=True, help="statistics file to write (.npz)")
    parser.add_argument("--config", help="config whose data.spec and data.audio_seconds to use "
                        "(default: AVID-CMA's avid_db spectrogram of 2 s at 24 kHz)")
    parser.add_argument("--clips-per-video", type=int, default=1, help="windows per file (default 1)")
    parser.add_argument("--workers", type=int, default=4, help="processes (default 4)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", help="spec overrides, e.g. n_fft=1024 hop_seconds=0.01")
    return parser


def _spec_and_seconds(config: str | None, overrides: list[str]) -> tuple[SpecConfig, float]:
    spec: dict[str, Any] = dict(DEFAULT_SPEC)
    seconds = 2.0
    if config:
        data = resolve_config_file(resolve_config(config))
        section = data.get("data", data)
        spec = dict(section.get("spec", {}))
        seconds = float(section.get("audio_seconds", seconds))
        spec.setdefault("sample_rate", section.get("sample_rate", SpecConfig.sample_rate))
    spec.update(parse_overrides(overrides))
    spec.update({"normalize": "none", "stats": None})  # the statistics are of the raw spectrogram
    return from_dict(SpecConfig, spec, prefix="data.spec."), seconds


def main(argv: list[str] | None = None) -> int:
    """CLI entry: ``avlearn prepare audio-stats``. Returns 0, or 2 on a bad argument or no audio."""
    args = build_parser().parse_intermixed_args(argv)
    try:
        spec, seconds = _spec_and_seconds(args.config, args.overrides)
        rows = read_manifest(args.manifest)
        sums, failures = compute_audio_stats(rows, spec, seconds, args.clips_per_video, args.workers,
                                             not args.quiet)
        files = sum(1 for r in rows if r.status != "bad" and r.has_audio) - len(failures)
        written = write_audio_stats(args.out, sums, spec, files)
    except (ConfigError, ValueError, OSError) as err:
        print(f"avlearn prepare audio-stats: {err}", file=sys.stderr)
        return 2
    for path, message in failures[:20]:
        print(f"failed: {path}: {message}", file=sys.stderr)
    shown = {k: v for k, v in dataclasses.asdict(spec).items() if k in ("kind", "sample_rate", "n_fft")}
    print(f"wrote {written}: {spec.num_bins} bins over {sums.count} frames of {files} files "
          f"({len(failures)} failed); {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
