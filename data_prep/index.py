"""``avlearn prepare index``: probe every file of a collection, write a manifest, print the counts.

``avlearn prepare index DIR_OR_LIST --out manifest.csv`` scans a folder (recursively), a text
file listing paths, or explicit paths; probes each file in a process pool
(:func:`avlearn.data.probe.probe_many`, where the status policy is documented); writes one
:class:`~avlearn.data.manifest.VideoInfo` row per file and prints counts per status and reason.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from avlearn.data.cluster import add_engine_arguments
from avlearn.data.manifest import VideoInfo, write_manifest
from avlearn.data.probe import probe_many

__all__ = ["VIDEO_EXTENSIONS", "collect_paths", "index_collection", "main", "skipped_summary", "summarize"]

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".flv", ".mpg", ".mpeg", ".ts", ".mts",
    ".3gp", ".wmv", ".ogv",
)
LIST_SUFFIXES = (".txt", ".lst", ".list")
SILENT_WARNINGS = ("audio/video duration mismatch", "silent audio")  # listed by name in the summary


def _list_file(path: Path) -> list[Path]:
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line).expanduser()
            out.append(p if p.is_absolute() else path.parent / p)  # relative to the list's folder
    return out


def _scan(folder: Path, extensions: Sequence[str], skipped: list[Path] | None = None) -> list[Path]:
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        # Hidden files are macOS "._x.mp4" junk or in-progress temp files.
        visible = [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
        found += [p for p in visible if p.suffix.lower() in exts]
        if skipped is not None:
            skipped += [p for p in visible if p.suffix.lower() not in exts]
    return found


def collect_paths(inputs: str | Path | Iterable[str | Path],
                  extensions: Sequence[str] = VIDEO_EXTENSIONS,
                  skipped: list[Path] | None = None) -> list[Path]:
    """Resolve a folder (scanned recursively), a list file (one path a line), or paths.

    Returns absolute paths without duplicates, in a deterministic order. A missing input raises
    :class:`FileNotFoundError` (a typo should not index nothing); a missing file named inside a
    list becomes a ``bad`` row when probed. ``skipped``: a list that receives the (visible) files
    of scanned folders whose suffix is not in ``extensions`` (e.g. audio-only ``.m4a``).
    """
    items = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    paths: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"input not found: {item} (give a folder, a .txt list or videos)")
        if p.is_dir():
            paths += _scan(p, extensions, skipped)
        elif p.is_file() and (p.suffix.lower() in LIST_SUFFIXES):
            paths += _list_file(p)
        else:
            paths.append(p)
    return list(dict.fromkeys(q.resolve() for q in paths))


def _relative_id(path: Path, root: Path, keep_suffix: bool) -> str:
    rel = path.relative_to(root)
    return (rel if keep_suffix else rel.with_suffix("")).as_posix()


def _assign_ids(paths: Sequence[Path]) -> list[str]:
    """File stems, made unique by the path relative to the common folder where they clash."""
    if not paths:
        return []
    root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    ids = [p.stem for p in paths]
    for keep_suffix in (False, True):
        counts = Counter(ids)
        ids = [_relative_id(p, root, keep_suffix) if counts[i] > 1 else i
               for i, p in zip(ids, paths, strict=True)]
    return ids


def _manifest_path(path: Path, manifest_dir: Path) -> str:
    # Relative when under the manifest's folder, so the collection can move with it.
    try:
        return path.relative_to(manifest_dir).as_posix()
    except ValueError:
        return str(path)


def summarize(rows: Sequence[VideoInfo]) -> str:
    """Counts per status and per reason category, then every bad file with its reason, and every
    file whose sound is silent or ends early."""
    statuses = Counter(r.status for r in rows)
    reasons = Counter(part.split(":", 1)[0] for r in rows for part in r.reason.split("; ") if part)
    lines = [f"{len(rows)} files: " + ", ".join(f"{statuses[s]} {s}" for s in ("ok", "warn", "bad"))]
    lines += [f"  {n:6d}  {reason}" for reason, n in reasons.most_common()]
    bad = [r for r in rows if r.status == "bad"]
    if bad:
        lines.append(f"bad files ({len(bad)}):")
        lines += [f"  {r.path}: {r.reason}" for r in bad]
    quiet = [r for r in rows if r.status == "warn" and any(w in r.reason for w in SILENT_WARNINGS)]
    if quiet:  # usable, but would train on silence: name them
        lines.append(f"files with missing or silent sound ({len(quiet)}):")
        lines += [f"  {r.path}: {r.reason}" for r in quiet]
    return "\n".join(lines)


def skipped_summary(skipped: Sequence[Path], limit: int = 20) -> str:
    """Lines naming the files a folder scan left out by suffix, counted per suffix ('' if none)."""
    if not skipped:
        return ""
    by_suffix = Counter(p.suffix.lower() or "(no suffix)" for p in skipped)
    counts = ", ".join(f"{n} {suffix}" for suffix, n in by_suffix.most_common())
    lines = [f"skipped {len(skipped)} file(s) whose suffix is not a video's ({counts}); "
             "add a suffix with --extensions to index them (audio-only files such as .m4a have no "
             "video track and would be marked bad):"]
    lines += [f"  {p}" for p in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more")
    return "\n".join(lines)


def index_collection(
    inputs: str | Path | Iterable[str | Path],
    out: str | Path,
    workers: int | None = None,
    progress: bool = True,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    check_silence: bool = True,
    engine: str = "local",
    address: str | None = None,
) -> list[VideoInfo]:
    """Probe every video under ``inputs`` and write the manifest ``out`` (.csv or .jsonl).

    Args:
        inputs: a folder (scanned recursively for ``extensions``), a ``.txt``/``.lst`` file
            listing paths (relative ones are relative to it), or a list of paths.
        out: manifest to write; paths in it are relative to its folder where possible.
        workers: probe processes (default: all CPU cores; 1 probes in this process).
        progress: show a progress bar and print the summary.
        extensions: file suffixes taken from folders.
        check_silence: decode every audio track to warn of silent ones (see :mod:`avlearn.data.probe`).
        engine, address: ``local`` processes or Ray tasks (:mod:`avlearn.data.cluster`).

    Returns:
        The rows written, in path order.
    """
    out = Path(out)
    if out.suffix not in (".csv", ".jsonl"):
        raise ValueError(f"--out {out}: the manifest must end in .csv or .jsonl")
    skipped: list[Path] = []
    paths = collect_paths(inputs, extensions, skipped)
    if not paths:
        raise ValueError(f"no video file found in {_names(inputs)} (suffixes: {' '.join(extensions)}); "
                         "nothing indexed, no manifest written"
                         + (f"\n{skipped_summary(skipped)}" if skipped else ""))
    if skipped:
        logger.warning(skipped_summary(skipped))
    rows = probe_many(paths, workers or os.cpu_count() or 1, progress, check_silence=check_silence,
                      engine=engine, address=address)
    manifest_dir = out.parent.resolve()
    for row, path, vid in zip(rows, paths, _assign_ids(paths), strict=True):
        row.path = _manifest_path(path, manifest_dir)
        row.video_id = vid
    write_manifest(rows, out)
    if progress:
        print(summarize(rows))
        print(f"manifest: {out}")
    return rows


def _names(inputs: str | Path | Iterable[str | Path]) -> str:
    return str(inputs) if isinstance(inputs, str | Path) else ", ".join(str(i) for i in inputs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avlearn prepare index",
        description="Probe every video of a collection and write a manifest (one row per file: duration, "
        "fps, frames, size, rotation, audio rate/channels, codecs, status ok|warn|bad and the reason). "
        "Broken files are reported, never fatal.",
    )
    parser.add_argument("inputs", nargs="+", metavar="DIR_OR_LIST",
                        help="a folder scanned recursively, a .txt/.lst file with one path per line "
                        "(relative to the list file), or video files")
    parser.add_argument("--out", required=True, type=Path,
                        help="manifest to write: .csv or .jsonl (paths under its folder are stored relative)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="parallel probe processes (default: number of CPU cores; 1 = no pool)")
    parser.add_argument("--extensions", nargs="+", default=list(VIDEO_EXTENSIONS), metavar="EXT",
                        help="file suffixes to take from folders (default: %(default)s)")
    parser.add_argument("--no-silence-check", action="store_true",
                        help="do not decode the audio tracks to warn of silent ones (a few ms per minute "
                        "of audio; audio/video duration mismatches are still reported)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    add_engine_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry: ``avlearn prepare index``. Returns 0 (bad files are reported, not errors)."""
    args = build_parser().parse_args(argv)
    try:
        index_collection(args.inputs, args.out, args.workers, not args.quiet, args.extensions,
                         check_silence=not args.no_silence_check, engine=args.engine, address=args.address)
    except (ValueError, OSError, ModuleNotFoundError) as err:  # no ray: how to install it
        print(f"{build_parser().prog}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
