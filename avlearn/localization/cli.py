"""``avlearn localize`` (heatmap video of where the sound is) and ``avlearn evaluate localization``.

Usage::

    avlearn localize VIDEO --checkpoint CKPT --out out.mp4 [--audio OTHER] [--start S --seconds D]
    avlearn evaluate localization --checkpoint CKPT --synth DIR [--split test] [--json out.json]

``localize`` decodes the video at the model's frame rate and size (the settings stored with the
checkpoint's run config, or the AVID defaults: 8 frames at 16 fps, short side 112, 2 s of
16 kHz audio), slides non-overlapping windows of ``num_frames`` frames over it, scores every
grid location of each window against the audio of the matching audio window (of the video
itself or of ``--audio``) and draws the maps over the *original* frames at the original
frame rate and size. The maps come from the localizer trained with the encoders when the
checkpoint has one (``x.localizer.safetensors`` next to ``x.safetensors``, written by a run with
``localization.weight > 0``), else post hoc from the model's own projection heads (see
:meth:`AVLocalizer.posthoc`); ``--localizer posthoc`` or ``--localizer FILE`` chooses. The MP4
carries the sound that was localized (mono); a PNG strip of key
frames is written next to it (``--out x.png`` writes only the strip).

``evaluate localization`` scores the middle frame of every video of a split of the synthetic
collection (``avlearn synth``) against its box with the published cIoU / AUC protocol
(:mod:`avlearn.localization.metrics`), next to a centre-box baseline.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
import torch
from torch import Tensor

from avlearn.config import ConfigError, from_dict
from avlearn.data.audio import SpecConfig, build_spectrogram
from avlearn.data.config import DataConfig
from avlearn.data.decode import ClipSpec, DecodeError, decode_clip, probe_duration, read_audio
from avlearn.data.transforms import KINETICS_MEAN, KINETICS_STD
from avlearn.localization.export import Learned, localization_maps, resolve_localizer
from avlearn.localization.metrics import center_box_map, evaluate_maps, gt_from_synth
from avlearn.localization.module import upsample_map
from avlearn.localization.overlay import normalize_maps, write_overlay_video, write_strip_png
from avlearn.models.av import AVModel
from avlearn.models.checkpoint import CheckpointError, load_av_model, load_checkpoint

__all__ = [
    "ModelInput",
    "evaluate_main",
    "load_for_localization",
    "localize_frames",
    "main",
    "model_input_from_checkpoint",
    "normalize_video",
    "synth_heatmap",
    "synth_heatmaps",
]


@dataclasses.dataclass(frozen=True)
class ModelInput:
    """What the model was trained on: how to decode and normalise its clips.

    Attributes:
        num_frames, fps, size: frames per window, their rate, short side in pixels.
        audio_seconds, sample_rate, audio_align: the audio window of a clip.
        spec: the spectrogram front-end.
        mean, std: per-channel video normalisation, or ``None`` for none.
    """

    num_frames: int = 8
    fps: float = 16.0
    size: int = 112
    audio_seconds: float = 2.0
    sample_rate: int = 16000
    audio_align: Literal["start", "center"] = "center"
    spec: SpecConfig = dataclasses.field(default_factory=SpecConfig)
    mean: tuple[float, ...] | None = KINETICS_MEAN
    std: tuple[float, ...] | None = KINETICS_STD

    def audio_start(self, clip_start: float) -> float:
        """Start (s) of the audio window of a clip starting at ``clip_start``."""
        if self.audio_align == "center":
            return clip_start + self.num_frames / self.fps / 2 - self.audio_seconds / 2
        return clip_start

    def clip_spec(self) -> ClipSpec:
        """The decoder request for one window of the model's clips."""
        return ClipSpec(num_frames=self.num_frames, fps=self.fps, size=self.size,
                        audio_seconds=self.audio_seconds, sample_rate=self.sample_rate,
                        audio_align=self.audio_align)

    def middle_window(self, t_mid: float) -> tuple[float, int]:
        """``(start, frame)``: the window centred on time ``t_mid`` (s; clamped at 0) and the
        index of ``t_mid``'s frame in it."""
        start = max(0.0, t_mid - self.num_frames / self.fps / 2)
        return start, min(max(round((t_mid - start) * self.fps), 0), self.num_frames - 1)


def model_input_from_checkpoint(stored: Mapping[str, Any]) -> ModelInput:
    """Read the data settings from a checkpoint's stored run config (defaults when it has none)."""
    data = stored.get("data")
    if not isinstance(data, Mapping):
        return ModelInput()
    try:
        cfg = from_dict(DataConfig, dict(data), prefix="data.")
    except (ConfigError, TypeError, ValueError) as err:
        print(f"avlearn localize: ignoring the checkpoint's data settings ({err}); using defaults",
              file=sys.stderr)
        return ModelInput()
    aug = cfg.video_aug
    return ModelInput(
        num_frames=cfg.num_frames, fps=cfg.fps, size=aug.size, audio_seconds=cfg.audio_seconds,
        sample_rate=cfg.sample_rate, audio_align=cfg.audio_align, spec=cfg.spec,
        mean=tuple(aug.mean) if aug.normalize else None, std=tuple(aug.std) if aug.normalize else None,
    )


def normalize_video(video: Tensor, inp: ModelInput) -> Tensor:
    """``(C, T, H, W)`` in [0, 1] -> normalised as in training."""
    if inp.mean is None or inp.std is None:
        return video
    mean = torch.tensor(inp.mean, dtype=video.dtype).view(-1, 1, 1, 1)
    std = torch.tensor(inp.std, dtype=video.dtype).view(-1, 1, 1, 1)
    return (video - mean) / std


AudioSource = Callable[[float], Tensor]
_CHUNK = 32  # frames decoded at a time


@torch.no_grad()
def localize_frames(
    model: AVModel,
    video: Tensor,
    audio_at: AudioSource,
    inp: ModelInput,
    start: float = 0.0,
    batch_size: int = 4,
    learned: Learned | None = None,
) -> Tensor:
    """Per-frame cosine maps of a decoded video against the audio of each window.

    Args:
        model: the pretrained pair (put in ``eval()`` mode by the caller).
        video: ``(C, M, H, W)`` frames at ``inp.fps``, already normalised.
        audio_at: ``t -> (S,)`` waveform of the audio window of a clip starting at ``t`` seconds.
        start: time (s) of frame 0.
        learned: a learned localizer and its spec (:func:`resolve_localizer`); ``None``: post hoc.

    Shape:
        ``-> (M, H', W')`` maps at grid resolution, one per input frame.
    """
    length = inp.num_frames
    total = video.shape[1]
    if total < length:  # too short for one window: repeat the last frame
        video = torch.cat([video, video[:, -1:].expand(-1, length - total, -1, -1)], dim=1)
    starts = list(range(0, max(total - length, 0) + 1, length))
    if starts[-1] + length < total:
        starts.append(total - length)  # last window overlaps the previous one
    spectrogram = build_spectrogram(inp.spec)
    maps: Tensor | None = None
    for b0 in range(0, len(starts), batch_size):
        chunk = starts[b0 : b0 + batch_size]
        clips = torch.stack([video[:, s : s + length] for s in chunk])
        wavs = torch.stack([audio_at(start + s / inp.fps) for s in chunk])
        out = model(clips, spectrogram(wavs))
        grid_maps = localization_maps(model, out, learned)  # (b, T', H', W')
        window_maps = upsample_map(grid_maps, (length, *grid_maps.shape[-2:]))
        if maps is None:
            maps = torch.zeros(max(total, length), *window_maps.shape[-2:])
        for s, m in zip(chunk, window_maps, strict=True):
            maps[s : s + length] = m
    assert maps is not None
    return maps[:total]


def load_for_localization(
    checkpoint: str | Path, localizer: str = "auto"
) -> tuple[AVModel, ModelInput, Learned | None]:
    """Model (``eval()``), its input settings and its learned localizer (``None``: post hoc).

    ``localizer``: ``auto``, ``posthoc`` or a localizer file (see :func:`resolve_localizer`).
    """
    _, stored = load_checkpoint(checkpoint)
    model, _ = load_av_model(checkpoint)
    model.eval()
    learned = resolve_localizer(checkpoint, localizer)
    if learned is not None:
        learned[0].eval()
    return model, model_input_from_checkpoint(stored), learned


def _override(inp: ModelInput, args: argparse.Namespace) -> ModelInput:
    changes = {k: getattr(args, k) for k in ("fps", "size", "num_frames", "audio_seconds")
               if getattr(args, k) is not None}
    return dataclasses.replace(inp, **changes)


def _file_rates(path: str) -> tuple[float, int | None]:
    """(video frame rate, audio sample rate or None) of a file."""
    try:
        with av.open(path) as container:
            vrate = 0.0
            if container.streams.video:
                stream = container.streams.video[0]
                vrate = float(stream.average_rate or stream.guessed_rate or 25)
            sr = None
            if container.streams.audio:
                sr = int(container.streams.audio[0].codec_context.sample_rate or 0) or None
            return vrate, sr
    except (av.FFmpegError, OSError) as err:
        raise DecodeError(path, f"not a readable media file ({err})") from None


_LOCALIZER_HELP = ("auto (the checkpoint's learned localizer when it has one, else post hoc), posthoc, "
                   "or a localizer file")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avlearn localize", description=__doc__.split("\n\n")[0])
    p.add_argument("video", help="any video file with a sound track")
    p.add_argument("--checkpoint", required=True, help="model checkpoint (.safetensors or .pt)")
    p.add_argument("--localizer", default="auto", help=_LOCALIZER_HELP)
    p.add_argument("--out", required=True, help="output .mp4 (plus a .png strip next to it) or .png")
    p.add_argument("--audio", help="localize this file's sound instead of the video's own")
    p.add_argument("--start", type=float, default=0.0, help="start time in seconds")
    p.add_argument("--seconds", type=float, help="length to process (default: to the end)")
    p.add_argument("--fps", type=float, help="model frame rate (default: the checkpoint's)")
    p.add_argument("--size", type=int, help="model short side in pixels (default: the checkpoint's)")
    p.add_argument("--num-frames", type=int, help="frames per window (default: the checkpoint's)")
    p.add_argument("--audio-seconds", type=float, help="audio per window (default: the checkpoint's)")
    p.add_argument("--strip-frames", type=int, default=6, help="key frames in the PNG strip")
    p.add_argument("--per-frame", action="store_true", help="normalise each frame's map on its own")
    p.add_argument("--cmap", default="jet", choices=["jet", "inferno"])
    p.add_argument("--batch-size", type=int, default=4)
    return p


def main(argv: list[str] | None = None) -> int:
    """``avlearn localize``; returns the exit code."""
    args = _parser().parse_args(argv)
    out = Path(args.out)
    if out.suffix.lower() not in (".mp4", ".mkv", ".mov", ".png"):
        print(f"avlearn localize: --out must end in .mp4, .mkv, .mov or .png, got {out}", file=sys.stderr)
        return 2
    try:
        model, inp, learned = load_for_localization(args.checkpoint, args.localizer)
        inp = _override(inp, args)
        duration = probe_duration(args.video)
        seconds = duration - args.start if args.seconds is None else min(args.seconds, duration - args.start)
        if not math.isfinite(seconds) or seconds <= 0:
            raise DecodeError(args.video,
                              f"nothing to process from {args.start} s (duration {duration:.3f} s)",
                              hint="pass a --start below the duration")
        vrate, _ = _file_rates(args.video)
        sound = args.audio or args.video
        _, sound_sr = _file_rates(sound)
        if sound_sr is None:
            raise DecodeError(sound, "has no audio track", hint="pass --audio with a file that has sound")

        def decode(fps: float, size: int | None) -> Tensor:
            """``(T, H, W, 3)`` uint8, decoded in chunks (float frames of a long HD video are large)."""
            n = max(1, math.floor(seconds * fps + 1e-6))
            parts = []
            for k in range(0, n, _CHUNK):
                spec = ClipSpec(num_frames=min(_CHUNK, n - k), fps=fps, size=size, audio_seconds=0.0)
                clip = decode_clip(args.video, args.start + k / fps, spec).video
                parts.append((clip * 255).round_().to(torch.uint8).permute(1, 2, 3, 0))
            return torch.cat(parts)

        def audio_at(t: float) -> Tensor:
            return read_audio(sound, inp.audio_start(t), inp.audio_seconds, inp.sample_rate)

        video = normalize_video(decode(inp.fps, inp.size).permute(3, 0, 1, 2).float() / 255, inp)
        maps = localize_frames(model, video, audio_at, inp, args.start, args.batch_size, learned)
        frames = decode(vrate, None).numpy()
        # original frame i (time i / vrate) takes the map of the nearest model frame
        idx = np.round(np.arange(frames.shape[0]) / vrate * inp.fps).astype(np.int64)
        idx = np.clip(idx, 0, len(maps) - 1)
        heat = normalize_maps(maps.numpy()[idx], per_frame=args.per_frame)
        strip = out if out.suffix.lower() == ".png" else out.with_suffix(".png")
        if out.suffix.lower() != ".png":
            wav = read_audio(sound, args.start, frames.shape[0] / vrate, sound_sr).numpy()
            write_overlay_video(frames, heat, vrate, wav, sound_sr, out, cmap=args.cmap)
            print(f"wrote {out} ({frames.shape[0]} frames at {vrate:g} fps)")
        write_strip_png(frames, heat, strip, n=args.strip_frames, cmap=args.cmap)
        print(f"wrote {strip}")
    except (CheckpointError, DecodeError, ValueError) as err:
        print(f"avlearn localize: {err}", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------------ evaluate localization


def _eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avlearn evaluate localization",
                                description="cIoU / AUC / pointing game on the synthetic collection")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--localizer", default="auto", help=_LOCALIZER_HELP)
    p.add_argument("--synth", required=True, help="directory written by `avlearn synth`")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--limit", type=int, help="evaluate at most this many videos")
    p.add_argument("--json", help="also write the results to this JSON file")
    return p


@torch.no_grad()
def synth_heatmap(
    model: AVModel,
    inp: ModelInput,
    path: Path,
    t_mid: float,
    learned: Learned | None = None,
    audio_path: Path | None = None,
) -> np.ndarray:
    """Grid-resolution map ``(H', W')`` of the frame at ``t_mid`` from a window centred on it.

    The sound is the video's own, or that of ``audio_path`` over the same window.
    """
    start, j = inp.middle_window(t_mid)
    clip = decode_clip(path, start, inp.clip_spec())
    audio = clip.audio if audio_path is None else read_audio(
        audio_path, inp.audio_start(start), inp.audio_seconds, inp.sample_rate)
    video = normalize_video(clip.video, inp)[None]
    out = model(video, build_spectrogram(inp.spec)(audio[None]))
    maps = upsample_map(localization_maps(model, out, learned),
                        (inp.num_frames, *out.video_grid.shape[-2:]))
    heat: np.ndarray = maps[0, j].numpy()
    return heat


def synth_heatmaps(
    model: AVModel,
    inp: ModelInput,
    root: Path,
    videos: list[dict[str, Any]],
    learned: Learned | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, int]]:
    """Heatmaps ``(H', W')`` and gt maps ``(H, W)`` of the middle frame of synthetic videos.

    ``videos``: ``annotations.json`` entries of a collection in ``root``. Videos without a box on
    that frame or that fail to decode are left out and counted in the returned ``skipped``.
    """
    heatmaps: list[np.ndarray] = []
    gts: list[np.ndarray] = []
    skipped: dict[str, int] = {"no_box": 0, "decode_error": 0}
    for entry in videos:
        mid = int(entry["num_frames"]) // 2
        gt = gt_from_synth(entry, mid)
        if gt is None:
            skipped["no_box"] += 1
            continue
        try:
            t_mid = mid / float(entry["fps"])
            heatmaps.append(synth_heatmap(model, inp, root / entry["file"], t_mid, learned))
        except DecodeError as err:
            print(f"skipping: {err}", file=sys.stderr)
            skipped["decode_error"] += 1
            continue
        gts.append(gt)
    return heatmaps, gts, skipped


def evaluate_main(argv: list[str] | None = None) -> int:
    """``avlearn evaluate localization``; prints (and optionally writes) the metrics as JSON."""
    args = _eval_parser().parse_args(argv)
    root = Path(args.synth)
    ann_path = root / "annotations.json"
    try:
        annotations = json.loads(ann_path.read_text())
        model, inp, learned = load_for_localization(args.checkpoint, args.localizer)
    except (OSError, json.JSONDecodeError) as err:
        print(f"avlearn evaluate localization: cannot read {ann_path} ({err}); "
              "generate the collection with `avlearn synth --out DIR`", file=sys.stderr)
        return 1
    except CheckpointError as err:
        print(f"avlearn evaluate localization: {err}", file=sys.stderr)
        return 1
    videos = [v for v in annotations.get("videos", []) if v.get("split") == args.split][: args.limit]
    heatmaps, gts, skipped = synth_heatmaps(model, inp, root, videos, learned)
    if not gts:
        print(f"avlearn evaluate localization: no usable '{args.split}' videos in {root}", file=sys.stderr)
        return 1
    result = evaluate_maps(heatmaps, gts)
    baseline = evaluate_maps([center_box_map(*g.shape) for g in gts], gts)
    report = {"split": args.split, "checkpoint": str(args.checkpoint),
              "localizer": "posthoc" if learned is None else "learned", "model": result.to_dict(),
              "center_box_baseline": baseline.to_dict(), "skipped": skipped}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return 0
