"""``avlearn evaluate localization``: cIoU / AUC / pointing, and AP / max-F1 with negatives.

Usage::

    avlearn evaluate localization --checkpoint CKPT --synth DIR [--split test] [--negatives] [--silent]
    avlearn evaluate localization --checkpoint CKPT --format vggss --root VGGSS \\
        --annotations vggss.json --test-list vggss_test.csv [--extended vggss_test_plus_silent.csv]
    avlearn evaluate localization --checkpoint CKPT --format flickr --root Flickr \\
        --annotations Flickr/Annotations --test-list flickr_test.csv [--extended ...] [--silent]

``--format synth`` (the default) scores the middle frame of every video of a split of the synthetic
collection (``avlearn synth``); every other choice is a format of
:data:`~avlearn.localization.benchmarks.BENCHMARK_FORMATS` (``vggss`` and ``flickr``: the
benchmarks' released layouts, ``ROOT/frames/<id>.jpg``, ``ROOT/audio/<id>.wav``, VGG-SS's JSON list
of normalised boxes, Flickr-SoundNet's per-image XML boxes of several annotators). The positives get
the published cIoU50 / AUC / pointing of LVS (:mod:`avlearn.localization.metrics`). Negatives:
``--extended`` (SLAVC's ``*_test_plus_silent.csv``) or, on the synthetic collection, ``--negatives``
(its ``splits/test_plus_silent.csv``) add frames played with another clip's sound; ``--silent`` adds
every positive frame with silence, as its own category. With negatives, every map's confidence gives
SLAVC's AP and max-F1 per category (:mod:`avlearn.localization.negatives`). A centre box (confidence
constant) is scored alongside.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from avlearn.data.decode import DecodeError
from avlearn.localization.benchmarks import BENCHMARK_FORMATS, AnnotationError, benchmark_items
from avlearn.localization.inputs import CHECKPOINT_HELP, LOCALIZER_HELP, ModelInput, load_for_localization
from avlearn.localization.learned import Learned
from avlearn.localization.metrics import center_box_map, gt_from_synth
from avlearn.localization.protocol import Trial, image_trial, score_maps, synth_trials, trial_maps
from avlearn.models.av import AVModel
from avlearn.models.checkpoint import CheckpointError

__all__ = ["main", "score_trials"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avlearn evaluate localization",
                                description="cIoU / AUC / pointing (and AP / max-F1 with negatives) on the "
                                            "synthetic collection, VGG-SS or Flickr-SoundNet",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--localizer", default="auto", help=LOCALIZER_HELP)
    formats = list(BENCHMARK_FORMATS)  # read when the parser is built: a format registered later is a choice
    p.add_argument("--format", choices=["synth", *formats], default="synth",
                   help=f"synth: a collection of `avlearn synth`; {' / '.join(formats)}: a benchmark's "
                        "layout (avlearn.localization.benchmarks.BENCHMARK_FORMATS)")
    p.add_argument("--synth", help="--format synth: directory written by `avlearn synth`")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="--format synth")
    p.add_argument("--negatives", action="store_true",
                   help="--format synth: add the collection's negatives (`avlearn synth --negatives`)")
    p.add_argument("--root", help="a benchmark: folder with frames/<id>.jpg and audio/<id>.wav")
    p.add_argument("--annotations", help="a benchmark: what its format reads (vggss: the vggss.json list; "
                                         "flickr: the folder of <id>.xml files)")
    p.add_argument("--test-list", help="a benchmark: CSV of test ids (first column)")
    p.add_argument("--extended", help="a benchmark: SLAVC's *_test_plus_silent.csv (non-sounding pairs)")
    p.add_argument("--silent", action="store_true", help="add every positive frame with silence")
    p.add_argument("--limit", type=int, help="--format synth: evaluate at most this many videos")
    p.add_argument("--json", help="also write the results to this JSON file")
    return p


def score_trials(model: AVModel, inp: ModelInput, learned: Learned | None,
                 trials: list[Trial]) -> dict[str, Any]:
    """``{"model": ..., "center_box_baseline": ...}``: the published metrics of the positives and,
    when there are negatives, ``{"negatives": {"model": ..., "center_box": ...}}`` (AP, max-F1)."""
    maps, kept = trial_maps(model, inp, learned, trials)
    boxes = [center_box_map(*t.size) for t in kept]  # confidence 1 for every trial
    ours, centre = score_maps(maps, kept), score_maps(boxes, kept)
    report: dict[str, Any] = {"model": ours.pop("positives"), "center_box_baseline": centre.pop("positives")}
    if any(t.kind != "positive" for t in kept):
        report["negatives"] = {"model": ours, "center_box": centre}
    report["trials"] = {kind: sum(t.kind == kind for t in kept) for kind in ("positive", "non-sounding",
                                                                              "silent")}
    return report


def _synth(args: argparse.Namespace, inp: ModelInput) -> tuple[list[Trial], dict[str, Any]]:
    if not args.synth:
        raise FileNotFoundError("--format synth needs --synth DIR (a collection of `avlearn synth`)")
    root = Path(args.synth)
    ann_path = root / "annotations.json"
    try:
        annotations = json.loads(ann_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise FileNotFoundError(f"cannot read {ann_path} ({err}); generate the collection with "
                                "`avlearn synth --out DIR`") from None
    videos = [v for v in annotations.get("videos", []) if v.get("split") == args.split][: args.limit]
    trials = synth_trials(root, videos, inp, args.negatives, args.silent, progress=True)
    scored = sum(t.kind == "positive" for t in trials)
    no_box = sum(gt_from_synth(v, int(v["num_frames"]) // 2) is None for v in videos)
    return trials, {"split": args.split,
                    "skipped": {"no_box": no_box, "decode_error": len(videos) - no_box - scored}}


def _benchmark(args: argparse.Namespace, inp: ModelInput) -> tuple[list[Trial], dict[str, Any]]:
    missing = [name for name in ("root", "annotations", "test_list") if not getattr(args, name)]
    if missing:
        raise FileNotFoundError(f"--format {args.format} needs " + ", ".join(
            f"--{m.replace('_', '-')}" for m in missing))
    items, counts = benchmark_items(args.format, args.root, args.annotations, args.test_list, args.extended,
                                    args.silent)
    return [image_trial(it, inp) for it in items], counts


def main(argv: list[str] | None = None) -> int:
    """``avlearn evaluate localization``; prints (and optionally writes) the metrics as JSON."""
    args = _parser().parse_args(argv)
    try:
        model, inp, learned = load_for_localization(args.checkpoint, args.localizer)
        trials, extra = _synth(args, inp) if args.format == "synth" else _benchmark(args, inp)
    except CheckpointError as err:  # --checkpoint or --localizer names no usable file: usage
        print(f"avlearn evaluate localization: {err}", file=sys.stderr)
        return 2
    except (AnnotationError, DecodeError, FileNotFoundError) as err:
        print(f"avlearn evaluate localization: {err}", file=sys.stderr)
        return 1
    if not any(t.kind == "positive" for t in trials):
        print(f"avlearn evaluate localization: no usable positive test items ({args.format})",
              file=sys.stderr)
        return 1
    report = {"format": args.format, "checkpoint": str(args.checkpoint),
              "localizer": "posthoc" if learned is None else "learned", **extra,
              **score_trials(model, inp, learned, trials)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
