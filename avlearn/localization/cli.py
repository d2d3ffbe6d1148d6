"""``avlearn localize``: heatmap video of where the sound is.

Usage::

    avlearn localize VIDEO --checkpoint CKPT --out out.mp4 [--audio OTHER] [--start S --seconds D]

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

Memory does not grow with the video's length (see :mod:`avlearn.localization.video`, which does
the work; ``avlearn serve`` shows the same maps). Progress bars show both passes (``--quiet``
hides them).

Scoring on the synthetic collection is ``avlearn evaluate localization``
(:mod:`avlearn.localization.evaluate`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from avlearn.data.decode import DecodeError
from avlearn.localization.inputs import CHECKPOINT_HELP, LOCALIZER_HELP, ModelInput, load_for_localization
from avlearn.localization.video import OverlayOptions, localize_video
from avlearn.models.checkpoint import CheckpointError

__all__ = ["main"]


def _override(inp: ModelInput, args: argparse.Namespace) -> ModelInput:
    changes = {k: getattr(args, k) for k in ("fps", "size", "num_frames", "audio_seconds")
               if getattr(args, k) is not None}
    return dataclasses.replace(inp, **changes)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avlearn localize", description=__doc__.split("\n\n")[0])
    p.add_argument("video", help="any video file with a sound track")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--localizer", default="auto", help=LOCALIZER_HELP)
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
    p.add_argument("--batch-size", type=int, default=4, help="windows run through the model at a time")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _localize(args: argparse.Namespace, out: Path) -> None:
    model, inp, learned = load_for_localization(args.checkpoint, args.localizer)
    opts = OverlayOptions(args.per_frame, args.cmap, args.strip_frames, args.batch_size, not args.quiet)
    localize_video(args.video, out, (model, _override(inp, args), learned), args.audio, args.start,
                   args.seconds, opts)


def main(argv: list[str] | None = None) -> int:
    """``avlearn localize``; returns the exit code."""
    args = _parser().parse_args(argv)
    out = Path(args.out)
    if out.suffix.lower() not in (".mp4", ".mkv", ".mov", ".png"):
        print(f"avlearn localize: --out must end in .mp4, .mkv, .mov or .png, got {out}", file=sys.stderr)
        return 2
    try:
        _localize(args, out)
    except CheckpointError as err:  # --checkpoint or --localizer names no usable file: usage
        print(f"avlearn localize: {err}", file=sys.stderr)
        return 2
    except (DecodeError, ValueError) as err:
        print(f"avlearn localize: {err}", file=sys.stderr)
        return 1
    return 0
