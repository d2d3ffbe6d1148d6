"""Re-encode a video collection to a training-friendly form: small, upright, short GOP, 16 kHz mono.

``avlearn prepare reencode MANIFEST_OR_DIR --out DIR`` decodes every video with PyAV and writes
``DIR/<same relative path>.mp4``: H.264 (yuv420p) with the short side resized to
``--short-side`` (aspect kept, even sizes), display rotation applied so frames are upright,
constant ``--fps`` (default: the source's average rate), a keyframe every ``--gop`` frames (a
random-access clip decodes at most ``gop`` frames), and AAC at ``--sample-rate`` (mono unless
``--no-mono``). Videos without audio stay without audio. Decoding a 128-px, short-GOP file is
several times cheaper than decoding the 720p-4K original, which is what bounds training speed.

Every file streams frame by frame (memory does not grow with the video's length). Outputs are
written to a hidden temporary file and renamed when complete, so a second run skips what exists
(resume after an interruption); an existing output is probed first, and one the probe marks
``bad`` (truncated, e.g. by a copy or a full disk) is encoded again. A file that fails is
reported and counted, never fatal. At the end the outputs are probed (as ``prepare index``
does) into ``--manifest-out``; when the input is a manifest its ``video_id`` and ``label``
columns carry over and its ``bad`` rows are skipped.

Alignment: output time 0 is the source's first video frame. Each audio frame is placed by its
timestamp relative to that frame (leading silence is padded, audio before it is cut), so the
audio stays where it was against the video.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np

from avlearn.data.cluster import add_engine_arguments
from avlearn.data.executor import parallel_map
from avlearn.data.manifest import VideoInfo, read_manifest, write_manifest
from avlearn.data.pool import error_text
from avlearn.data.probe import probe, probe_many
from data_prep.index import VIDEO_EXTENSIONS, _assign_ids, _manifest_path, collect_paths

__all__ = ["EncodeOptions", "Job", "Result", "main", "output_size", "reencode_collection", "reencode_file"]

MANIFEST_SUFFIXES = (".csv", ".jsonl")
TRUNCATION_SLACK_S = 0.25  # decoded video may end this much (plus 10 %) before the declared duration


@dataclasses.dataclass(frozen=True)
class EncodeOptions:
    """What the outputs look like (see ``--help`` for each)."""

    short_side: int | None = 128
    fps: float | None = None
    gop: int = 16
    sample_rate: int = 16000
    mono: bool = True
    crf: int = 23
    preset: str = "veryfast"
    audio_bitrate: int = 64_000
    threads: int = 1
    # x264 without its assembly (asm=0): the same source gives the same bytes in any process, so
    # resumed runs, local processes and Ray tasks agree (avlearn.media.write_av measured 2-50 %
    # of repeated encodes differing at some sizes with it on); about 50 % more encoding time
    reproducible: bool = True

    def __post_init__(self) -> None:
        if self.short_side is not None and self.short_side < 2:
            raise ValueError(f"--short-side must be >= 2 (or 0 to keep the size), got {self.short_side}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"--fps must be > 0, got {self.fps}")
        if self.gop < 1 or self.sample_rate <= 0 or not 0 <= self.crf <= 51:
            raise ValueError(f"need --gop >= 1, --sample-rate > 0, 0 <= --crf <= 51; got "
                             f"{self.gop}, {self.sample_rate}, {self.crf}")


@dataclasses.dataclass(frozen=True)
class Job:
    """One file to convert."""

    src: Path
    dst: Path


@dataclasses.dataclass
class Result:
    """Outcome of one job: ``done`` (written now), ``skipped`` (an intact output existed) or ``failed``.

    ``reason``: why it failed, or for ``done`` why an existing output was replaced."""

    src: str
    dst: str
    status: Literal["done", "skipped", "failed"]
    reason: str = ""
    seconds: float = 0.0


def output_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(W, H) with the short side at ``short_side`` (``None``: unchanged), aspect kept, both even."""
    if short_side is None:
        return max(2, width - width % 2), max(2, height - height % 2)
    scale = short_side / min(width, height)

    def even(x: float) -> int:
        return max(2, 2 * round(x / 2))

    return even(width * scale), even(height * scale)


def _rotation_turns(frame: av.VideoFrame) -> int:
    """Quarter turns counter-clockwise (``np.rot90``'s ``k``) that make the frame upright."""
    degrees = frame.rotation
    turns = round(degrees / 90)
    if abs(degrees - 90 * turns) > 1:
        return 0  # not a multiple of 90 degrees: left as stored
    return turns % 4


class _AudioTrack:
    """Resamples decoded audio and encodes it at the right place on the output clock."""

    def __init__(self, container: Any, src: Any, opts: EncodeOptions) -> None:
        channels = src.codec_context.channels or 1
        layout = "mono" if opts.mono or channels == 1 else "stereo"
        self.rate = opts.sample_rate
        self.stream = container.add_stream("aac", rate=self.rate, layout=layout)
        self.stream.bit_rate = opts.audio_bitrate
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=self.rate)
        self.layout = layout
        self.container = container
        self.written = 0  # samples encoded so far (= pts of the next frame)
        self.start: int | None = None  # output sample where the first source sample goes

    def add(self, frame: av.AudioFrame | None, video_t0: float) -> None:
        """Feed one decoded frame (``None`` flushes); ``video_t0`` is the source time of output 0."""
        if frame is not None and self.start is None:
            t = float(frame.time) if frame.time is not None else video_t0
            self.start = round((t - video_t0) * self.rate)
        if frame is not None:
            frame.pts = None  # the resampler counts samples itself; placement is self.start
        for out in self.resampler.resample(frame):
            self._encode(out.to_ndarray())

    def _encode(self, wav: np.ndarray) -> None:
        assert self.start is not None
        if self.written == 0 and self.start > 0:  # audio starts after the first video frame: pad
            wav = np.concatenate([np.zeros((wav.shape[0], self.start), np.float32), wav], axis=1)
        elif self.start < 0:  # audio before the first video frame: cut it
            cut = min(-self.start, wav.shape[1])
            wav, self.start = wav[:, cut:], self.start + cut
        if wav.shape[1] == 0:
            return
        wav = np.ascontiguousarray(wav, np.float32)
        out = av.AudioFrame.from_ndarray(wav, format="fltp", layout=self.layout)
        out.sample_rate, out.pts, out.time_base = self.rate, self.written, Fraction(1, self.rate)
        self.written += wav.shape[1]
        self.container.mux(self.stream.encode(out))

    def close(self) -> None:
        if self.start is not None:
            self.add(None, 0.0)
        self.container.mux(self.stream.encode(None))


def reencode_file(job: Job, opts: EncodeOptions) -> Result:
    """Convert one file (skipped when ``job.dst`` exists); never raises: failures are results."""
    t_start = time.perf_counter()
    redone = ""
    if job.dst.exists():
        existing = probe(job.dst, check_silence=False)
        if existing.status != "bad":
            return Result(str(job.src), str(job.dst), "skipped", "output exists")
        redone = f"the existing output was damaged ({existing.reason}): encoded again"
    tmp = job.dst.with_name(f".{job.dst.stem}.tmp{job.dst.suffix}")  # hidden: `prepare index` skips it
    try:
        job.dst.parent.mkdir(parents=True, exist_ok=True)
        _encode(job.src, tmp, opts)
        os.replace(tmp, job.dst)
    except Exception as err:  # one broken file must not stop the collection
        tmp.unlink(missing_ok=True)
        return Result(str(job.src), str(job.dst), "failed", _failure_reason(err),
                      time.perf_counter() - t_start)
    return Result(str(job.src), str(job.dst), "done", redone, time.perf_counter() - t_start)


class _Unusable(Exception):
    """The source cannot give a useful output; the message says why."""


def _failure_reason(err: Exception) -> str:
    if isinstance(err, _Unusable):
        return str(err)
    if isinstance(err, av.FFmpegError):
        return f"decode/encode failed: {error_text(err)}"
    return f"failed: {error_text(err)}"


def _encode(src: Path, dst: Path, opts: EncodeOptions) -> None:
    if not src.is_file():
        raise _Unusable("missing: file not found")
    if src.stat().st_size == 0:
        raise _Unusable("empty file: 0 bytes")
    try:
        source = av.open(str(src))
    except av.FFmpegError as err:
        raise _Unusable(f"unreadable: FFmpeg cannot open it ({error_text(err)})") from None
    with source:
        if not source.streams.video:
            raise _Unusable("no video track")
        vin = source.streams.video[0]
        ain = source.streams.audio[0] if source.streams.audio else None
        vin.thread_type = "AUTO"
        vin.codec_context.thread_count = opts.threads
        src_rate = float(vin.average_rate or vin.guessed_rate or 25)
        rate = Fraction(opts.fps if opts.fps is not None else src_rate).limit_denominator(1001)
        declared = source.duration / av.time_base if source.duration else 0.0
        with av.open(str(dst), mode="w", format="mp4") as out:
            vout: Any = None
            audio: _AudioTrack | None = None
            t0: float | None = None
            pending_audio: list[av.AudioFrame] = []
            k = 0  # next output frame index
            n_src = 0  # source frames decoded
            prev: tuple[np.ndarray, float] | None = None
            size: tuple[int, int] = (0, 0)
            turns = 0

            def emit(img: np.ndarray, until: float) -> None:
                nonlocal k
                assert t0 is not None
                while t0 + k / rate < until - 1e-6:
                    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                    frame.pts, frame.time_base = k, 1 / rate
                    out.mux(vout.encode(frame))
                    k += 1

            streams = [vin] if ain is None else [vin, ain]
            for packet in source.demux(*streams):
                for decoded in packet.decode():
                    if isinstance(decoded, av.AudioFrame):
                        if audio is None:
                            pending_audio.append(decoded)  # before the first video frame: wait for t0
                        else:
                            assert t0 is not None
                            audio.add(decoded, t0)
                        continue
                    if not isinstance(decoded, av.VideoFrame):
                        continue
                    t = float(decoded.time) if decoded.time is not None else (
                        prev[1] + 1 / src_rate if prev is not None else 0.0)
                    n_src += 1
                    if vout is None:  # first frame: now the output's geometry and clock are known
                        t0, turns = t, _rotation_turns(decoded)
                        w, h = decoded.width, decoded.height
                        upright_w, upright_h = (h, w) if turns % 2 else (w, h)
                        out_w, out_h = output_size(upright_w, upright_h, opts.short_side)
                        size = (out_h, out_w) if turns % 2 else (out_w, out_h)  # scale before rotating
                        vout = _add_video_stream(out, out_w, out_h, rate, opts)
                        if ain is not None:
                            audio = _AudioTrack(out, ain, opts)
                            for a in pending_audio:
                                audio.add(a, t)
                            pending_audio.clear()
                    img: np.ndarray = decoded.to_ndarray(width=size[0], height=size[1], format="rgb24",
                                             interpolation="AREA")
                    if turns:
                        img = np.ascontiguousarray(np.rot90(img, k=turns))
                    if prev is not None:
                        emit(prev[0], (prev[1] + t) / 2)  # nearest-timestamp frame choice
                    prev = (img, t)
            if prev is None or vout is None or t0 is None:
                raise _Unusable("video does not decode: no frame")
            emit(prev[0], prev[1] + 0.5 / src_rate)
            out.mux(vout.encode(None))
            if audio is not None:
                audio.close()
            if n_src < 2:
                raise _Unusable("single video frame: a still image, not a video")
            end = prev[1] + 1 / src_rate
            if declared > 0 and end < declared * 0.9 - TRUNCATION_SLACK_S:
                raise _Unusable(f"truncated: frames end at {end:.2f} s of {declared:.2f} s declared")


def _add_video_stream(out: Any, width: int, height: int, rate: Fraction, opts: EncodeOptions) -> Any:
    stream = out.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.gop_size = opts.gop
    stream.codec_context.thread_count = opts.threads
    stream.options = {"crf": str(opts.crf), "preset": opts.preset, "tune": "fastdecode",
                      "x264-params": f"keyint={opts.gop}:min-keyint={opts.gop}:scenecut=0"
                      + (":asm=0" if opts.reproducible else "")}
    return stream


def _failed(job: Job, message: str) -> Result:
    return Result(str(job.src), str(job.dst), "failed", f"failed: {message}")


def plan_jobs(
    inputs: Sequence[str | Path], out: Path, extensions: Sequence[str] = VIDEO_EXTENSIONS
) -> tuple[list[Job], list[VideoInfo], list[Result]]:
    """Jobs for a manifest or folders/lists/files; outputs keep the path relative to the input root.

    Returns ``(jobs, source rows, skipped)``: the source row of each job (with its ``video_id`` and
    ``label`` when the input is a manifest) and a ``failed`` result for each ``bad`` manifest row.
    """
    skipped: list[Result] = []
    if len(inputs) == 1 and Path(inputs[0]).suffix in MANIFEST_SUFFIXES:
        rows = read_manifest(inputs[0])
        for r in rows:
            if r.status == "bad":
                skipped.append(Result(r.path, "", "failed", f"bad in manifest: {r.reason}"))
        rows = [r for r in rows if r.status != "bad"]
        paths = [Path(r.path) for r in rows]
        root = Path(inputs[0]).resolve().parent
    else:
        paths = collect_paths(inputs, extensions)
        ids = _assign_ids(paths)
        rows = [VideoInfo(path=str(p), video_id=vid) for p, vid in zip(paths, ids, strict=True)]
        dirs = [Path(i).resolve() for i in inputs if Path(i).is_dir()]
        parents = [str(p.parent) for p in paths] or ["/"]
        root = dirs[0] if len(dirs) == 1 else Path(os.path.commonpath(parents))
    if paths and not all(p.is_relative_to(root) for p in paths):
        root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    jobs = [Job(p, out / p.relative_to(root).with_suffix(".mp4")) for p in paths]
    clashes = [d for d, n in Counter(j.dst for j in jobs).items() if n > 1]
    if clashes:
        raise ValueError(f"{len(clashes)} outputs would clash (e.g. {clashes[0]}: same name, different "
                         "extensions); rename the sources")
    return jobs, rows, skipped


def reencode_collection(
    inputs: str | Path | Sequence[str | Path],
    out: str | Path,
    opts: EncodeOptions | None = None,
    workers: int | None = None,
    manifest_out: str | Path | None = None,
    progress: bool = True,
    engine: str = "local",
    address: str | None = None,
) -> tuple[list[Result], list[VideoInfo]]:
    """Re-encode every video of ``inputs`` under ``out`` and write a manifest of the outputs.

    Args:
        inputs: a manifest (``.csv``/``.jsonl``; its ``bad`` rows are skipped), or folders,
            list files and videos as for ``prepare index``.
        out: output folder; each output keeps its path relative to the input folder.
        opts: encoding options (default :class:`EncodeOptions`).
        workers: processes (default: all cores).
        manifest_out: manifest of the outputs (default ``out/manifest.csv``).
        progress: progress bars and the printed summary.
        engine, address: ``local`` processes or Ray tasks (:mod:`avlearn.data.cluster`); with Ray
            the outputs are written by the cluster's nodes, so ``out`` must be on a filesystem
            they share.

    Returns:
        ``(results, rows)``: one result per input (the ``bad`` manifest rows first), and the
        probed manifest rows of the outputs that exist.
    """
    opts = opts or EncodeOptions()
    out = Path(out).resolve()
    items = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    manifest = Path(manifest_out) if manifest_out is not None else out / "manifest.csv"
    if manifest.suffix not in MANIFEST_SUFFIXES:
        raise ValueError(f"--manifest-out {manifest}: the manifest must end in .csv or .jsonl")
    jobs, sources, skipped = plan_jobs(items, out)
    workers = workers or os.cpu_count() or 1
    results = parallel_map(partial(reencode_file, opts=opts), jobs, workers, _failed, progress, "reencode",
                           engine=engine, address=address)
    written = [(j, s) for j, s, r in zip(jobs, sources, results, strict=True) if r.status != "failed"]
    rows = probe_many([j.dst for j, _ in written], workers, progress, "probe outputs", engine=engine,
                      address=address)
    manifest_dir = manifest.parent.resolve()
    for row, (job, src) in zip(rows, written, strict=True):
        row.path = _manifest_path(job.dst, manifest_dir)
        row.video_id, row.label = src.video_id or job.dst.stem, src.label
    write_manifest(rows, manifest)
    results = skipped + results
    if progress:
        print(summarize(results, rows))
        print(f"manifest: {manifest}")
    return results, rows


def summarize(results: Sequence[Result], rows: Sequence[VideoInfo] = ()) -> str:
    """Counts per outcome, the time spent, every failure with its reason, every damaged output
    encoded again, and every output the probe marks ``bad``."""
    counts = Counter(r.status for r in results)
    spent = sum(r.seconds for r in results)
    lines = [f"{len(results)} files: {counts['done']} encoded, {counts['skipped']} already done, "
             f"{counts['failed']} failed ({spent:.1f} s of encoding)"]
    statuses = Counter(r.status for r in rows)
    if rows:
        lines.append(f"outputs: {statuses['ok']} ok, {statuses['warn']} warn, {statuses['bad']} bad")
    failed = [r for r in results if r.status == "failed"]
    if failed:
        lines.append(f"failed ({len(failed)}):")
        lines += [f"  {r.src}: {r.reason}" for r in failed]
    redone = [r for r in results if r.status == "done" and r.reason]
    if redone:
        lines.append(f"encoded again ({len(redone)}):")
        lines += [f"  {r.dst}: {r.reason}" for r in redone]
    bad = [r for r in rows if r.status == "bad"]
    if bad:
        lines.append(f"bad outputs ({len(bad)}; delete them and run again, or check their sources):")
        lines += [f"  {r.path}: {r.reason}" for r in bad]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avlearn prepare reencode",
        description="Re-encode a collection for fast decoding: H.264 with a small short side, upright, "
        "constant frame rate, short keyframe interval; AAC 16 kHz mono. Keeps the folder structure, "
        "resumes (existing outputs are skipped), reports failures without stopping, and writes a "
        "manifest of the outputs.",
    )
    parser.add_argument("inputs", nargs="+", metavar="MANIFEST_OR_DIR",
                        help="a manifest from `prepare index` (.csv/.jsonl; 'bad' rows are skipped), or "
                        "folders / .txt lists / video files")
    parser.add_argument("--out", required=True, type=Path,
                        help="output folder; outputs keep their path relative to the input folder, as .mp4")
    parser.add_argument("--short-side", type=int, default=128,
                        help="resize so the shorter side has this many pixels, keeping the aspect ratio "
                        "(0 keeps the size; default: %(default)s)")
    parser.add_argument("--fps", type=float, default=None,
                        help="output frame rate (default: the source's average rate; variable frame rate "
                        "becomes constant either way)")
    parser.add_argument("--gop", type=int, default=16,
                        help="keyframe interval in frames: a clip read from any point decodes at most this "
                        "many extra frames (default: %(default)s)")
    parser.add_argument("--sample-rate", type=int, default=16000,
                        help="audio sample rate in Hz (default: %(default)s)")
    parser.add_argument("--mono", action=argparse.BooleanOptionalAction, default=True,
                        help="downmix audio to mono (default: on; --no-mono keeps mono/stereo, >2 channels "
                        "become stereo)")
    parser.add_argument("--crf", type=int, default=23,
                        help="x264 constant rate factor, 0-51, lower is better quality "
                        "(default: %(default)s)")
    parser.add_argument("--preset", default="veryfast",
                        help="x264 speed preset, e.g. ultrafast, veryfast, medium (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="parallel processes, one file each (default: number of CPU cores)")
    parser.add_argument("--reproducible", action=argparse.BooleanOptionalAction, default=True,
                        help="x264 without its assembly, so the same source always gives the same bytes "
                        "(default: on; --no-reproducible encodes ~1/3 faster)")
    parser.add_argument("--manifest-out", type=Path, default=None,
                        help="manifest of the outputs, .csv or .jsonl (default: OUT/manifest.csv)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars and no summary")
    add_engine_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry: ``avlearn prepare reencode``. Returns 0 (failed files are reported, not errors)."""
    args = build_parser().parse_args(argv)
    try:
        opts = EncodeOptions(short_side=args.short_side or None, fps=args.fps, gop=args.gop,
                             sample_rate=args.sample_rate, mono=args.mono, crf=args.crf, preset=args.preset,
                             reproducible=args.reproducible)
        reencode_collection(args.inputs, args.out, opts, args.workers, args.manifest_out, not args.quiet,
                            engine=args.engine, address=args.address)
    except (ValueError, OSError, ModuleNotFoundError) as err:  # no ray: how to install it
        print(f"{build_parser().prog}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
