"""``avlearn prepare shard``: pack a manifest's videos into WebDataset tar shards plus a shard index.

``avlearn prepare shard MANIFEST --out DIR`` writes ``DIR/shard-000000.tar``, ... with the
``webdataset`` library's :class:`~webdataset.TarWriter`. Each sample is two members under the key
``{global index:09d}``: the media bytes (``.mp4``, or the source's own suffix; re-encoded first with
``--short-side``, as ``prepare reencode`` does) and ``.json``, its record::

    {"video_id": "a/b", "index": 12, "duration": 4.97, "fps": 25.0, "label": "dog",
     "has_audio": true, "media": "mp4", "source": "/data/a/b.mp4", "boxes": [...]}  # boxes: with --boxes

Global indices are dense (``0 .. N-1``, in manifest order over the files that were written): a
memory bank indexes them. A shard is closed after ``--samples-per-shard`` samples or
``--max-shard-mb`` megabytes, whichever comes first. ``DIR/index.json`` (the shard index) lists the
shards with their sample counts and global index ranges, the manifest's SHA-256 fingerprint, the
options, the class names and every file left out with the reason: a row the indexer marked ``bad``,
without a video (or, by default, audio) track, a file that cannot be read or re-encoded. Failures
are reported and never fatal.

Resume: each shard is written to a hidden temporary file and renamed when complete, and
``DIR/index.partial.json`` records the shards done so far and the next manifest row; running the
same command again continues from there. A different manifest (fingerprint) or different options
are refused (``--overwrite`` starts over).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import webdataset as wds
from tqdm import tqdm

from avlearn.data.cluster import add_engine_arguments
from avlearn.data.executor import parallel_map
from avlearn.data.manifest import VideoInfo, read_manifest
from avlearn.data.probe import probe

__all__ = ["INDEX_FORMAT", "MEDIA", "Loaded", "MapEngine", "Packing", "ShardOptions", "build_parser", "main",
           "manifest_fingerprint", "write_shards"]

logger = logging.getLogger(__name__)

INDEX_FORMAT = "avlearn-shards/1"
INDEX_NAME = "index.json"
PARTIAL_NAME = "index.partial.json"


@dataclasses.dataclass(frozen=True)
class ShardOptions:
    """How shards are cut and what goes in them (see ``--help``)."""

    samples_per_shard: int = 1000
    max_shard_mb: float = 1024.0
    short_side: int = 0  # > 0: re-encode (H.264, short GOP, 16 kHz mono AAC) to this short side first
    require_audio: bool = True

    def __post_init__(self) -> None:
        if self.samples_per_shard < 1 or self.max_shard_mb <= 0 or self.short_side < 0:
            raise ValueError(f"need --samples-per-shard >= 1, --max-shard-mb > 0, --short-side >= 0; got "
                             f"{self.samples_per_shard}, {self.max_shard_mb}, {self.short_side}")


@dataclasses.dataclass(frozen=True)
class MapEngine:
    """Where :func:`write_shards` reads and re-encodes files: ``workers`` local processes (1: this
    process) or Ray tasks (``name="ray"``, see :mod:`avlearn.data.cluster`), ``chunk`` files at a time."""

    name: str = "local"
    workers: int = 1
    address: str | None = None

    @property
    def chunk(self) -> int:
        return max(4 * self.workers, 16) if self.name == "local" else 256


def manifest_fingerprint(path: str | Path) -> str:
    """SHA-256 of the manifest file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def shard_name(k: int) -> str:
    return f"shard-{k:06d}.tar"


def _left_out(row: VideoInfo, require_audio: bool) -> str:
    """Why a manifest row cannot become a sample ('' when it can)."""
    if row.status == "bad":
        return f"marked 'bad' by the indexer ({row.reason})"
    if not row.has_video:
        return "no video track"
    if require_audio and not row.has_audio:
        return "no audio track (--no-require-audio keeps such files)"
    return ""


Loaded = tuple[dict[str, bytes], dict[str, Any], VideoInfo] | str
"""A file made ready for a shard: its members (suffix -> bytes), what its record adds, its row; or why
it is left out."""


def _load(job: tuple[VideoInfo, int]) -> Loaded:
    """:func:`_media` in a folder of its own: one task of the local pool or of Ray (module level,
    picklable; the bytes travel back to the one process that writes the shards, in row order)."""
    row, short_side = job
    with tempfile.TemporaryDirectory(prefix="avlearn-shard-") as tmp:
        data, suffix, row = _media(row, short_side, Path(tmp))
        return {suffix: data}, {"media": suffix}, row


def _load_failed(job: tuple[VideoInfo, Any], message: str) -> Loaded:
    return message


@dataclasses.dataclass(frozen=True)
class Packing:
    """A shard layout: the index's ``format``, the per-file ``task`` (module level: it runs in a pool or on
    Ray) with its second argument ``arg``, ``head``: what the index adds (and a resume must match), and
    ``describe(tar, records)``: what a closed shard's index entry adds."""

    format: str
    task: Callable[[tuple[VideoInfo, Any]], Loaded]
    arg: Any = None
    head: dict[str, Any] = dataclasses.field(default_factory=dict)
    describe: Callable[[Path, list[dict[str, Any]]], dict[str, Any]] | None = None


MEDIA = Packing(INDEX_FORMAT, _load)
"""The media files' own bytes (``arg``: ``--short-side``, set by :func:`write_shards`)."""


def _media(row: VideoInfo, short_side: int, tmp: Path) -> tuple[bytes, str, VideoInfo]:
    """The bytes to store, their suffix and the row describing them (re-probed when re-encoded)."""
    src = Path(row.path)
    if short_side <= 0:
        data = src.read_bytes()  # OSError: reported by the caller
        if not data:
            raise ValueError("file is empty (0 bytes)")
        return data, (src.suffix.lstrip(".").lower() or "mp4"), row
    from data_prep.reencode import EncodeOptions, Job, reencode_file  # PyAV encoders: only when asked

    dst = tmp / "reencoded.mp4"
    dst.unlink(missing_ok=True)
    result = reencode_file(Job(src, dst), EncodeOptions(short_side=short_side))
    if result.status == "failed":
        raise ValueError(f"re-encoding failed: {result.reason}")
    info = probe(dst, check_silence=False)
    if info.status == "bad":
        raise ValueError(f"re-encoded file is unusable: {info.reason}")
    new = dataclasses.replace(row, duration=info.duration, fps=info.fps, has_audio=info.has_audio)
    return dst.read_bytes(), "mp4", new


def _record(row: VideoInfo, index: int, extra: dict[str, Any], boxes: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "video_id": row.video_id or Path(row.path).stem, "index": index, "duration": row.duration,
        "fps": row.fps, "label": row.label, "has_audio": row.has_audio, **extra, "source": row.path,
    }
    if record["video_id"] in boxes:
        record["boxes"] = boxes[record["video_id"]]
    return record


class _Progress:
    """The shard index being built; written as ``index.partial.json`` after every shard."""

    def __init__(self, out: Path, head: dict[str, Any]) -> None:
        self.out = out
        self.state: dict[str, Any] = {**head, "num_samples": 0, "shards": [], "failures": [], "next_row": 0}

    @classmethod
    def load_or_start(cls, out: Path, head: dict[str, Any], overwrite: bool) -> _Progress:
        progress = cls(out, head)
        for name in (INDEX_NAME, PARTIAL_NAME):
            path = out / name
            if overwrite:  # now: an interrupted --overwrite run must not leave the old index behind
                path.unlink(missing_ok=True)
            if not path.is_file():
                continue
            old = json.loads(path.read_text())
            if {k: old.get(k) for k in head} != head:
                changed = sorted(k for k in head if old.get(k) != head[k])
                raise ValueError(f"{path} was written for a different manifest or options "
                                 f"({', '.join(changed)} differ); pass --overwrite to start over, or "
                                 "give another --out")
            progress.state = old
            break
        return progress

    @property
    def done(self) -> bool:
        return (self.out / INDEX_NAME).is_file() and self.state.get("complete", False)

    def add_shard(self, name: str, records: list[dict[str, Any]], nbytes: int, next_row: int,
                  extra: dict[str, Any] | None = None) -> None:
        first = self.state["num_samples"]
        self.state["shards"].append({"name": name, "num_samples": len(records), "first_index": first,
                                     "end_index": first + len(records), "bytes": nbytes, **(extra or {})})
        self.state["num_samples"] = first + len(records)
        self.state["next_row"] = next_row
        self._write(PARTIAL_NAME)

    def finish(self, next_row: int) -> dict[str, Any]:
        self.state["next_row"] = next_row
        self.state["complete"] = True
        self._write(INDEX_NAME)
        (self.out / PARTIAL_NAME).unlink(missing_ok=True)
        return self.state

    def _write(self, name: str) -> None:
        tmp = self.out / f".{name}.tmp"
        tmp.write_text(json.dumps(self.state, indent=1))
        os.replace(tmp, self.out / name)


class _ShardCutter:
    """Writes samples into the current shard; a shard becomes visible (renamed) when closed."""

    def __init__(self, out: Path, progress: _Progress, opts: ShardOptions, packing: Packing) -> None:
        self.out, self.progress, self.opts, self.packing = out, progress, opts, packing
        self.writer: wds.TarWriter | None = None
        self.records: list[dict[str, Any]] = []
        self.nbytes = 0

    def _tmp(self) -> Path:
        return self.out / f".{shard_name(len(self.progress.state['shards']))}.tmp"

    def add(self, key: str, members: dict[str, bytes], record: dict[str, Any], row_number: int) -> None:
        if self.writer is None:
            self.writer = wds.TarWriter(str(self._tmp()), mtime=0.0)  # fixed mtime: same bytes every run
        self.writer.write({"__key__": key, **members, "json": record})
        self.records.append(record)
        self.nbytes += sum(len(data) for data in members.values())
        if len(self.records) >= self.opts.samples_per_shard or self.nbytes >= self.opts.max_shard_mb * 2**20:
            self.close(row_number + 1)

    def close(self, next_row: int) -> None:
        if self.writer is None:
            return
        self.writer.close()
        name = shard_name(len(self.progress.state["shards"]))
        describe = self.packing.describe
        extra = describe(self._tmp(), self.records) if describe is not None else None
        os.replace(self._tmp(), self.out / name)
        self.progress.add_shard(name, self.records, self.nbytes, next_row, extra)
        self.writer, self.records, self.nbytes = None, [], 0


def write_shards(
    manifest: str | Path,
    out: str | Path,
    opts: ShardOptions = ShardOptions(),
    *,
    boxes: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    engine: MapEngine = MapEngine(),
    packing: Packing = MEDIA,
) -> dict[str, Any]:
    """Write the shards and ``out/index.json`` for ``manifest``; returns the shard index (a dict).

    Files that cannot be stored are left out and listed under ``"failures"`` (never fatal).
    ``engine``: where files are read and re-encoded (the shards do not depend on it).
    ``packing``: the layout (default: the media files; :mod:`data_prep.frame_shard`: decoded frames).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = read_manifest(manifest)
    if packing is MEDIA:
        packing = dataclasses.replace(MEDIA, arg=opts.short_side)
    head = {"format": packing.format, "manifest_sha256": manifest_fingerprint(manifest),
            "options": dataclasses.asdict(opts), "boxes_sha256": _boxes_digest(boxes or {}), **packing.head}
    state = _Progress.load_or_start(out, head, overwrite)
    if state.done:
        if progress:
            print(f"{out / INDEX_NAME}: up to date ({state.state['num_samples']} samples)")
        return state.state
    if overwrite or not state.state["shards"]:
        for stale in [*out.glob("shard-*.tar"), *out.glob(".shard-*.tmp")]:
            stale.unlink()
    labels = sorted({r.label for r in rows if r.label and not _left_out(r, opts.require_audio)})
    state.state["manifest"], state.state["classes"] = str(manifest), labels
    start = int(state.state["next_row"])
    cutter = _ShardCutter(out, state, opts, packing)
    failures: list[dict[str, str]] = state.state["failures"]
    del failures[_failures_before(failures, start):]  # rows after the last shard are redone
    _run(rows, start, cutter, failures, opts, boxes or {}, progress, engine)
    cutter.close(len(rows))
    index = state.finish(len(rows))
    if progress:
        print(summarize(index))
    return index


def _failures_before(failures: list[dict[str, Any]], row: int) -> int:
    return sum(1 for f in failures if int(f["row"]) < row)


def _run(rows: Sequence[VideoInfo], start: int, cutter: _ShardCutter, failures: list[dict[str, Any]],
         opts: ShardOptions, boxes: dict[str, Any], progress: bool, engine: MapEngine) -> None:
    """Read (or re-encode) the files from row ``start`` on, ``engine.chunk`` at a time in parallel,
    and add them to the shards in row order: the shards are the same for any engine or worker count."""
    fail: Callable[[int, VideoInfo, str], None] = lambda i, row, why: failures.append(  # noqa: E731
        {"row": i, "path": row.path, "video_id": row.video_id, "reason": why})
    bar = tqdm(total=len(rows), initial=start, unit="file", disable=not progress, dynamic_ncols=True)
    for first in range(start, len(rows), engine.chunk):
        numbers = range(first, min(first + engine.chunk, len(rows)))
        kept = [i for i in numbers if not _left_out(rows[i], opts.require_audio)]
        jobs = [(rows[i], cutter.packing.arg) for i in kept]
        results: list[Loaded] = parallel_map(cutter.packing.task, jobs, engine.workers, _load_failed, False,
                                             engine=engine.name, address=engine.address)
        loaded = dict(zip(kept, results, strict=True))
        for i in numbers:
            row = rows[i]
            bar.update(1)
            if i not in loaded:
                fail(i, row, _left_out(row, opts.require_audio))
                continue
            result = loaded[i]
            if isinstance(result, str):  # one unreadable file must not stop the collection
                fail(i, row, result)
                logger.warning("prepare shard: leaving out %s: %s", row.path, result)
                continue
            members, extra, row = result
            index = cutter.progress.state["num_samples"] + len(cutter.records)
            cutter.add(f"{index:09d}", members, _record(row, index, extra, boxes), i)
    bar.close()



def _boxes_digest(boxes: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(boxes, sort_keys=True).encode()).hexdigest() if boxes else ""


def summarize(index: dict[str, Any], limit: int = 20) -> str:
    """Counts of samples and shards, then every file left out with the reason."""
    sizes = [s["num_samples"] for s in index["shards"]]
    lines = [f"{index['num_samples']} samples in {len(sizes)} shard(s)"
             + (f" ({min(sizes)}-{max(sizes)} samples each)" if sizes else "")
             + f"; {len(index['failures'])} file(s) left out"]
    lines += [f"  {f['path']}: {f['reason']}" for f in index["failures"][:limit]]
    if len(index["failures"]) > limit:
        lines.append(f"  ... and {len(index['failures']) - limit} more (all listed in index.json)")
    return "\n".join(lines)


_FRAME_OPTIONS = (  # flag, type, default, help of the --format frames options
    ("--decode-size", int, 128, "short side of the stored frames, = data.decode_size"),
    ("--frame-rate", float, 0.0, "keep the frames nearest to this many per second (0: every frame)"),
    ("--jpeg-quality", int, 90, "JPEG quality"),
    ("--sample-rate", int, 16000, "the stored audio's rate, = data.sample_rate"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avlearn prepare shard",
        description="Pack a manifest's videos into WebDataset tar shards (media bytes + a JSON record per "
        "sample) and write DIR/index.json (samples per shard, global index ranges, the manifest's "
        "fingerprint). Files that cannot be stored are reported and left out; an interrupted run "
        "resumes when started again.",
    )
    parser.add_argument("manifest", type=Path, help="manifest from `avlearn prepare index` (.csv/.jsonl)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the shards and index.json")
    parser.add_argument("--samples-per-shard", type=int, default=1000,
                        help="close a shard after this many samples (default: %(default)s)")
    parser.add_argument("--max-shard-mb", type=float, default=1024.0,
                        help="... or once its media reach this many MiB (default: %(default)s)")
    parser.add_argument("--short-side", type=int, default=0,
                        help="re-encode each file first as `prepare reencode` does, to this short side "
                        "(default: 0, store the files' bytes as they are)")
    parser.add_argument("--require-audio", action=argparse.BooleanOptionalAction, default=True,
                        help="leave out files without an audio track (default: on, as training needs audio)")
    parser.add_argument("--boxes", type=Path, default=None,
                        help="JSON file mapping video_id -> boxes (any JSON), stored in the records")
    parser.add_argument("--format", choices=("media", "frames"), default="media",
                        help="media: the files' bytes (default); frames: each video decoded once into JPEG "
                        "frames at --decode-size and 16-bit PCM audio (avlearn.data.frame_shards; "
                        "data.source: frames)")
    for flag, kind, default, text in _FRAME_OPTIONS:
        parser.add_argument(flag, type=kind, default=default, help=f"frames: {text} (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="start over instead of resuming")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes reading / re-encoding files (default: number of CPU cores; one "
                        "process writes the shards, in manifest order)")
    add_engine_arguments(parser)
    return parser


def _packing(args: argparse.Namespace) -> Packing:
    if args.format == "media":
        return MEDIA
    if args.short_side:
        raise ValueError("--short-side re-encodes media; with --format frames give --decode-size")
    from data_prep import frame_shard  # torchvision's JPEG encoder: only when asked

    opts = frame_shard.FrameOptions(args.decode_size, args.frame_rate, args.jpeg_quality, args.sample_rate)
    return Packing(frame_shard.FRAMES_FORMAT, frame_shard.load_frames, opts, frame_shard.head(opts),
                   frame_shard.describe)


def main(argv: list[str] | None = None) -> int:
    """CLI entry: ``avlearn prepare shard``. Returns 0 (files left out are reported, not errors)."""
    args = build_parser().parse_args(argv)
    try:
        opts = ShardOptions(args.samples_per_shard, args.max_shard_mb, args.short_side, args.require_audio)
        boxes = json.loads(args.boxes.read_text()) if args.boxes else None
        write_shards(args.manifest, args.out, opts, boxes=boxes, overwrite=args.overwrite,
                     progress=not args.quiet, engine=MapEngine(args.engine, args.workers, args.address),
                     packing=_packing(args))
    except (ValueError, OSError, ModuleNotFoundError) as err:  # no ray: how to install it
        print(f"{build_parser().prog}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
