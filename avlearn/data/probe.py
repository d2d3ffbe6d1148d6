"""Probe video files: container and stream metadata, problems classified, one manifest row each.

A probe reads container/stream metadata, demuxes every packet without decoding (cheap: it is
mostly I/O) and decodes only the first video frame and the first audio frame. The demux pass
gives the exact frame count, detects truncation (packets end well before the declared
duration, or fewer frames than declared) and variable frame rate (irregular packet
timestamps); the decoded frame gives the display rotation and proves the codec works.

Status policy (one file may collect several reasons, joined by "; "):

* ``bad``: cannot feed any training: missing, empty, unreadable, not a media file,
  truncated/corrupt, no video track, video that does not decode, a single frame.
* ``warn``: usable, but odd: **no audio track** (kept as ``warn`` with ``has_audio=False``
  because video-only fine-tuning can still use it; audio-visual datasets filter on
  ``VideoInfo.usable_av``), audio that does not decode, audio and video tracks of different
  lengths (clips past the audio's end get padded silence; the dataset counts those clips),
  a silent audio track (RMS below ``SILENCE_DBFS``: every packet's audio is decoded for it,
  a few ms per minute of AAC; ``check_silence=False`` skips it), variable frame rate, audio
  below 16 kHz, more than 2 audio channels, display rotation, frames larger than 1920x1080.
* ``ok``: none of the above.

Each reason starts with a short category before ":" (e.g. ``variable frame rate: ...``);
``avlearn prepare index`` (``data_prep/index.py``) counts those categories. :func:`probe_many`
probes in a process pool (:func:`avlearn.data.executor.parallel_map`) that survives a worker killed
by a crashing file.
"""

from __future__ import annotations

import functools
import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from avlearn.data.executor import parallel_map
from avlearn.data.manifest import VideoInfo
from avlearn.data.pool import error_text

if TYPE_CHECKING:
    import av

__all__ = ["failed_row", "probe", "probe_many"]

MIN_SAMPLE_RATE = 16000  # the models' audio rate; lower means missing high frequencies
MAX_PIXELS = 1920 * 1080  # above full HD, decoding dominates training time
VFR_TOLERANCE = 0.25  # a frame interval this far (relative) from the median is irregular
VFR_MIN_FRACTION = 0.02  # ... and VFR needs this share of irregular intervals (one dropped frame is not VFR)
TRUNCATION_SLACK_S = 0.25  # packets may end this much (plus 5 %) before the declared duration
MISMATCH_SLACK_S = 0.5  # audio and video may start or end this far apart (plus 5 % of the video)
SILENCE_DBFS = -60.0  # a whole track quieter than this (RMS, dB re full scale) is silent

# Magic bytes of containers FFmpeg reads: a file that has one but will not open is
# truncated or corrupt rather than "not a video".
_SIGNATURES: dict[str, Callable[[bytes], bool]] = {
    "MP4/MOV": lambda b: b[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"),
    "Matroska/WebM": lambda b: b[:4] == b"\x1a\x45\xdf\xa3",
    "AVI": lambda b: b[:4] == b"RIFF",
    "FLV": lambda b: b[:3] == b"FLV",
    "MPEG-PS": lambda b: b[:4] == b"\x00\x00\x01\xba",
    "MPEG-TS": lambda b: b[:1] == b"\x47" and b[188:189] == b"\x47",
}


def _open_failure(path: Path, err: BaseException) -> str:
    with path.open("rb") as fh:
        head = fh.read(256)
    for name, matches in _SIGNATURES.items():
        if matches(head):
            return (f"truncated or corrupt: {name} header present but FFmpeg cannot open it "
                    f"({error_text(err)})")
    return f"not a media file: FFmpeg cannot open it ({error_text(err)})"


def _vfr_reason(pts: list[int], time_base: float) -> str:
    """Reason text if the sorted packet timestamps are irregular, else ''."""
    deltas = [b - a for a, b in itertools.pairwise(pts) if b > a]
    if len(deltas) < 3:
        return ""
    median = statistics.median(deltas)
    # Timestamps are integers: allow 1 tick of rounding (29.97 fps in 1/1000 is 33, 34, 33 ...).
    tol = max(1.0, VFR_TOLERANCE * median)
    irregular = sum(abs(d - median) > tol for d in deltas)
    if irregular <= max(1, VFR_MIN_FRACTION * len(deltas)):
        return ""
    lo, hi = min(deltas) * time_base * 1000, max(deltas) * time_base * 1000
    return f"variable frame rate: frame intervals {lo:.0f}-{hi:.0f} ms ({irregular}/{len(deltas)} irregular)"


def probe(path: str | Path, check_silence: bool = True) -> VideoInfo:
    """Probe one file; a bad file becomes ``status='bad'`` with the reason (a missing PyAV raises).

    ``check_silence``: decode the whole audio track to warn of a silent one (see the module doc).
    """
    import av  # noqa: F401  # here, not at import: a missing PyAV is an error, not a bad row per file

    path = Path(path)
    try:
        return _probe(path) if check_silence else _probe(path, check_silence=False)
    except Exception as err:  # one broken file must not stop a 1M-file index
        return failed_row(path, error_text(err))


class _Span:
    """First and last presentation time (s) of one track's packets."""

    def __init__(self) -> None:
        self.start, self.end = math.inf, 0.0

    def add(self, start: float, end: float) -> None:
        self.start, self.end = min(self.start, start), max(self.end, end)

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start) if math.isfinite(self.start) else 0.0


class _Loudness:
    """Running sum of squares of decoded audio samples (all channels)."""

    def __init__(self) -> None:
        self.sum_sq, self.count = 0.0, 0

    def add(self, frame: av.AudioFrame) -> None:
        raw: np.ndarray = frame.to_ndarray()
        samples = raw.astype(np.float64)
        if raw.dtype.kind in "iu":  # integer PCM: scale to [-1, 1]
            samples /= float(2 ** (8 * raw.dtype.itemsize - 1))
        self.sum_sq += float(np.square(samples).sum())
        self.count += samples.size

    @property
    def dbfs(self) -> float:
        if self.count == 0:
            return math.nan
        rms = math.sqrt(self.sum_sq / self.count)
        return 20 * math.log10(rms) if rms > 0 else -math.inf


def _mismatch_reason(video: _Span, audio: _Span) -> str:
    """Reason text when the audio track starts or ends far from the video track, else ''."""
    slack = MISMATCH_SLACK_S + 0.05 * video.seconds
    if video.seconds == 0 or audio.seconds == 0:
        return ""
    if abs(audio.end - video.end) <= slack and abs(audio.start - video.start) <= slack:
        return ""
    effect = (f"clips past {audio.end:.2f} s get padded silence" if audio.end < video.end
              else f"audio after {video.end:.2f} s is unused")
    return (f"audio/video duration mismatch: audio {audio.seconds:.2f} s ({audio.start:.2f}-"
            f"{audio.end:.2f} s), video {video.seconds:.2f} s ({video.start:.2f}-{video.end:.2f} s) "
            f"- {effect}")


def _probe(path: Path, check_silence: bool = True) -> VideoInfo:
    import av  # imported when probing: training from memory needs no PyAV (benchmarks/gpu)

    info = VideoInfo(path=str(path), video_id=path.stem)
    bad: list[str] = []
    warn: list[str] = []

    def done() -> VideoInfo:
        info.status = "bad" if bad else "warn" if warn else "ok"
        info.reason = "; ".join(bad + warn)
        return info

    if not path.is_file():
        bad.append("missing: file not found")
        return done()
    if path.stat().st_size == 0:
        bad.append("empty file: 0 bytes")
        return done()
    try:
        container = av.open(str(path))
    except Exception as err:  # any FFmpeg failure is a per-file verdict
        bad.append(_open_failure(path, err))
        return done()

    with container:
        vstream = container.streams.video[0] if container.streams.video else None
        astream = container.streams.audio[0] if container.streams.audio else None
        info.has_video, info.has_audio = vstream is not None, astream is not None
        if container.duration is not None:
            info.duration = container.duration / av.time_base
        if vstream is not None:
            cc = vstream.codec_context
            info.video_codec, info.width, info.height = cc.name, cc.width, cc.height
            rate = vstream.average_rate or vstream.guessed_rate
            info.fps = float(rate) if rate else 0.0
        if astream is not None:
            info.audio_codec = astream.codec_context.name
            info.audio_sample_rate = astream.sample_rate or 0
            info.audio_channels = astream.channels or 0

        # One demux pass over all packets; decode only until the first frame of each track.
        video_pts: list[int] = []
        stream_end = 0.0
        spans = {"video": _Span(), "audio": _Span()}
        loudness = _Loudness()
        first_video: av.VideoFrame | None = None
        first_audio: av.AudioFrame | None = None
        video_error = audio_error = demux_error = ""
        try:
            for packet in container.demux():
                if packet.pts is None or packet.size == 0:
                    continue  # flush / empty packets carry no media
                tb = packet.time_base
                end = float((packet.pts + (packet.duration or 0)) * tb)
                stream_end = max(stream_end, end)
                if packet.stream is vstream or packet.stream is astream:
                    span = spans["video" if packet.stream is vstream else "audio"]
                    span.add(max(0.0, float(packet.pts * tb)), end)  # AAC priming starts below 0
                if packet.stream is vstream:
                    video_pts.append(packet.pts)
                    if first_video is None and not video_error:
                        try:
                            first_video = next((f for f in packet.decode()
                                                if isinstance(f, av.VideoFrame)), None)
                        except Exception as err:
                            video_error = error_text(err)
                elif packet.stream is astream and (first_audio is None or check_silence) and not audio_error:
                    try:
                        for frame in packet.decode():
                            if isinstance(frame, av.AudioFrame):
                                first_audio = frame if first_audio is None else first_audio
                                loudness.add(frame)
                    except Exception as err:
                        audio_error = error_text(err)
        except Exception as err:
            demux_error = error_text(err)
        if vstream is not None and first_video is None and not video_error:
            try:  # decoders with delay (e.g. a one-frame file) only emit on flush
                first_video = next(iter(vstream.codec_context.decode(None)), None)
            except Exception as err:
                video_error = error_text(err)

    info.num_frames = len(video_pts)
    if first_video is not None:
        info.rotation = round(first_video.rotation) % 360

    if vstream is None:
        bad.append("no video track: " + ("audio only" if astream is not None else "no media streams"))
    if demux_error:
        bad.append(f"corrupt: reading packets failed after {stream_end:.2f} s ({demux_error})")
    declared_frames = vstream.frames if vstream is not None else 0
    if info.duration > 0 and stream_end < info.duration * 0.95 - TRUNCATION_SLACK_S:
        bad.append(f"truncated: data ends at {stream_end:.2f} s of {info.duration:.2f} s declared")
    elif declared_frames > 0 and info.num_frames < 0.95 * declared_frames:
        bad.append(f"truncated: {info.num_frames} of {declared_frames} declared video frames present")
    if vstream is not None:
        if video_error or first_video is None:
            bad.append(f"video does not decode: {video_error or 'no frame decoded'}")
        if info.num_frames == 1:
            bad.append("single video frame: a still image, not a video")
        elif info.num_frames == 0:
            bad.append("no video frames: the video track is empty")
    if bad:
        return done()

    if astream is None:
        warn.append("no audio track: unusable for audio-visual pretraining, fine for video-only fine-tuning")
    elif audio_error or first_audio is None:
        info.has_audio = False  # so usable_av excludes it
        warn.append(f"audio does not decode: {audio_error or 'no frame decoded'}")
    if astream is not None and info.has_audio:
        mismatch = _mismatch_reason(spans["video"], spans["audio"])
        if mismatch:
            warn.append(mismatch)
        if check_silence and loudness.dbfs < SILENCE_DBFS:
            warn.append(f"silent audio: the whole track is at {loudness.dbfs:.0f} dBFS RMS (below "
                        f"{SILENCE_DBFS:.0f}): nothing for audio-visual training to learn from")
    vfr = ""
    if vstream is not None and vstream.time_base is not None:
        vfr = _vfr_reason(sorted(video_pts), float(vstream.time_base))
    if vfr:
        warn.append(vfr)
    if astream is not None and 0 < info.audio_sample_rate < MIN_SAMPLE_RATE:
        warn.append(f"low audio sample rate: {info.audio_sample_rate} Hz < {MIN_SAMPLE_RATE} Hz")
    if astream is not None and info.audio_channels > 2:
        warn.append(f"multichannel audio: {info.audio_channels} channels ({astream.layout.name}), "
                    "downmixed to mono when loaded")
    if info.rotation:
        warn.append(f"rotated: display matrix turns frames {info.rotation} degrees counter-clockwise "
                    "- decoders that ignore it give sideways frames, `prepare reencode` fixes it")
    if info.width * info.height > MAX_PIXELS:
        warn.append(f"large frames: {info.width}x{info.height} is slow to decode "
                    "- `prepare reencode` to a short side of ~128")
    return done()


def failed_row(path: Path, message: str) -> VideoInfo:
    """The ``bad`` row of a file whose probe failed with ``message``."""
    return VideoInfo(path=str(path), video_id=path.stem, status="bad", reason=f"probe failed: {message}")


def probe_many(paths: Sequence[Path], workers: int, progress: bool, desc: str = "probe",
               check_silence: bool = True, engine: str = "local", address: str | None = None
               ) -> list[VideoInfo]:
    """Probe in a process pool (``workers <= 1``: in this process) or on Ray; order is kept.

    A file that kills its worker process (an FFmpeg crash, the OOM killer) becomes a ``bad``
    row (see :func:`parallel_map`); the run goes on.
    """
    fn = probe if check_silence else functools.partial(probe, check_silence=False)
    return parallel_map(fn, paths, workers, failed_row, progress, desc, engine=engine, address=address)
