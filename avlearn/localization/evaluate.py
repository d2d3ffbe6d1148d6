"""``avlearn evaluate localization``: cIoU / AUC / pointing game of a checkpoint on a synthetic collection.

Usage::

    avlearn evaluate localization --checkpoint CKPT --synth DIR [--split test] [--json out.json]

Scores the middle frame of every video of a split of the synthetic collection (``avlearn
synth``) against its box with the published cIoU / AUC protocol
(:mod:`avlearn.localization.metrics`), next to a centre-box baseline. The maps and scores come
from :func:`avlearn.localization.sound_checks.score_windows`, as in
``benchmarks/localization_synth.py`` and the demo.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from avlearn.localization.inputs import CHECKPOINT_HELP, LOCALIZER_HELP, load_for_localization
from avlearn.localization.metrics import center_box_map, evaluate_maps, gt_from_synth
from avlearn.localization.sound_checks import middle_windows, score_windows
from avlearn.models.checkpoint import CheckpointError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avlearn evaluate localization",
                                description="cIoU / AUC / pointing game on the synthetic collection")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--localizer", default="auto", help=LOCALIZER_HELP)
    p.add_argument("--synth", required=True, help="directory written by `avlearn synth`")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--limit", type=int, help="evaluate at most this many videos")
    p.add_argument("--json", help="also write the results to this JSON file")
    return p


def _skipped(videos: list[dict[str, Any]], scored: int) -> dict[str, int]:
    """Videos left out: without a box on the middle frame, or unreadable (the rest of those not scored)."""
    no_box = sum(gt_from_synth(v, int(v["num_frames"]) // 2) is None for v in videos)
    return {"no_box": no_box, "decode_error": len(videos) - no_box - scored}


def main(argv: list[str] | None = None) -> int:
    """``avlearn evaluate localization``; prints (and optionally writes) the metrics as JSON."""
    args = _parser().parse_args(argv)
    root = Path(args.synth)
    ann_path = root / "annotations.json"
    try:
        annotations = json.loads(ann_path.read_text())
        model, inp, learned = load_for_localization(args.checkpoint, args.localizer)
    except (OSError, json.JSONDecodeError) as err:
        print(f"avlearn evaluate localization: cannot read {ann_path} ({err}); "
              "generate the collection with `avlearn synth --out DIR`", file=sys.stderr)
        return 1
    except CheckpointError as err:  # --checkpoint or --localizer names no usable file: usage
        print(f"avlearn evaluate localization: {err}", file=sys.stderr)
        return 2
    videos = [v for v in annotations.get("videos", []) if v.get("split") == args.split][: args.limit]
    windows = middle_windows(root, videos, None, inp, progress=True)
    if not windows:
        print(f"avlearn evaluate localization: no usable '{args.split}' videos in {root}", file=sys.stderr)
        return 1
    result, _ = score_windows(model, inp, learned, windows)
    gts = [w.gt for w in windows]
    baseline = evaluate_maps([center_box_map(*g.shape) for g in gts], gts)
    report = {"split": args.split, "checkpoint": str(args.checkpoint),
              "localizer": "posthoc" if learned is None else "learned", "model": result.to_dict(),
              "center_box_baseline": baseline.to_dict(), "skipped": _skipped(videos, len(windows))}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
