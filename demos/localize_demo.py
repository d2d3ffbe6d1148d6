"""Where is the sound? Heatmap overlays (MP4 with sound + PNG strip) from a pretrained checkpoint.

    python demos/localize_demo.py                    # after python -m benchmarks.localization_synth
    python demos/localize_demo.py --checkpoint RUN/encoders.safetensors --synth DIR --out outputs/loc_demo
    python demos/localize_demo.py --quick-train                    # no checkpoint yet: ~3 min run first

Writes, under ``--out``:

* ``synth_<video>.mp4`` / ``.png``: test videos of the synthetic collection with their own sound;
* ``synth_<video>_swapped.mp4`` / ``.png``: the same video with the sound of a video whose
  sounding object has the class of one of its silent distractors (the heat should move to it);
* ``bigbuckbunny.mp4`` / ``.png``: the real clip (``.cache/media/bigbuckbunny.mp4``, fetched by
  ``tests/real_media.py``) — out of domain for a model trained on the synthetic shapes.

The checkpoint's learned localizer is used when it has one (``x.localizer.safetensors``), else
post hoc maps (``--localizer posthoc`` forces them). Everything goes through ``avlearn localize``
(:func:`avlearn.localization.cli.main`); nothing is copied here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from avlearn.localization.cli import main as localize

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / ".cache" / "bench"
REAL = ROOT / ".cache" / "media" / "bigbuckbunny.mp4"


def _default_checkpoint() -> Path | None:
    """The newest localization run of benchmarks/localization_synth.py, if any."""
    runs = sorted(BENCH.glob("loc_synth_*_loc_e*/encoders.safetensors"), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def _synth_of(checkpoint: Path) -> Path | None:
    """The collection a benchmark run was trained on (its run dir is ``<collection>_loc_eN``)."""
    name = checkpoint.parent.name.rsplit("_loc_e", 1)[0]
    root = checkpoint.parent.parent / name
    return root if (root / "annotations.json").is_file() else None


def quick_train(out: Path) -> Path:
    """Generate a small collection and pretrain with the localization objective (a few minutes)."""
    from avlearn.config import load_config
    from avlearn.train.config import PretrainConfig
    from avlearn.train.loop import pretrain
    from data_prep.index import index_collection
    from data_prep.synth import SynthConfig, generate

    synth = out / "synth"
    generate(
        SynthConfig(
            out=synth,
            num_videos=96,
            size=64,
            fps=16.0,
            duration=3.0,
            workers=2,
            object_scale=0.6,
            max_distractors=2,
        ),
        progress=False,
    )
    index_collection([synth / "videos"], synth / "manifest.csv", workers=2, progress=False)
    overrides = [
        f"run_dir={out / 'run'}",
        f"data.manifest={synth / 'manifest.csv'}",
        "epochs=6",
        "data.num_frames=4",
        "data.fps=8",
        "data.num_workers=1",
        "train.progress=false",
    ]
    cfg = load_config(PretrainConfig, "pretrain/synth_cpu_loc.yaml", overrides)
    return Path(pretrain(cfg, resume=False)["export"])


def _pick(videos: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Test videos, those with a visible distractor in the middle frame first."""
    tests = [v for v in videos if v["split"] == "test"]
    mid = {v["file"]: int(v["num_frames"]) // 2 for v in tests}
    with_dis = [v for v in tests if any(d["bbox"][mid[v["file"]]] for d in v.get("distractors", []))]
    rest = [v for v in tests if v not in with_dis]
    return (with_dis + rest)[:n]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--checkpoint", type=Path, help="encoders file (default: the benchmark's localization run)"
    )
    p.add_argument(
        "--synth", type=Path, help="synthetic collection (default: the checkpoint's benchmark one)"
    )
    p.add_argument("--real", type=Path, default=REAL, help="a real video with sound")
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "localize_demo")
    p.add_argument("--num-synth", type=int, default=3)
    p.add_argument("--localizer", default="auto", help="auto, posthoc or a localizer file")
    p.add_argument(
        "--quick-train", action="store_true", help="train a small checkpoint first when none is given"
    )
    args = p.parse_args(argv)

    checkpoint = args.checkpoint or _default_checkpoint()
    if checkpoint is None and args.quick_train:
        checkpoint = quick_train(args.out / "quick")
        args.synth = args.synth or args.out / "quick" / "synth"
    if checkpoint is None:
        print(
            "no checkpoint: pass --checkpoint, run python -m benchmarks.localization_synth, or add "
            "--quick-train",
            file=sys.stderr,
        )
        return 2
    synth = args.synth or _synth_of(checkpoint)
    common = ["--checkpoint", str(checkpoint), "--localizer", args.localizer, "--strip-frames", "6"]
    args.out.mkdir(parents=True, exist_ok=True)
    failures = 0
    if synth is not None:
        videos = json.loads((synth / "annotations.json").read_text())["videos"]
        by_class: dict[str, list[dict[str, Any]]] = {}
        for v in videos:
            by_class.setdefault(v["class"], []).append(v)
        for entry in _pick(videos, args.num_synth):
            name = entry["video_id"]
            failures += localize(
                [str(synth / entry["file"]), *common, "--out", str(args.out / f"synth_{name}.mp4")]
            )
            mid = int(entry["num_frames"]) // 2
            shown = [d for d in entry.get("distractors", []) if d["bbox"][mid]]
            donors = by_class.get(shown[0]["class"], []) if shown else []
            if donors:
                print(f"{name}: sounding {entry['class']}; swapped in the sound of a {shown[0]['class']}")
                failures += localize(
                    [
                        str(synth / entry["file"]),
                        "--audio",
                        str(synth / donors[0]["file"]),
                        *common,
                        "--out",
                        str(args.out / f"synth_{name}_swapped.mp4"),
                    ]
                )
    else:
        print("no synthetic collection found (pass --synth): skipping the synthetic videos", file=sys.stderr)
    real = args.real
    if not real.is_file():
        sys.path.insert(0, str(ROOT))
        from tests.real_media import real_clip_path

        real = real_clip_path() or real
    if real.is_file():
        failures += localize(
            [str(real), *common, "--out", str(args.out / f"{real.stem}.mp4"), "--seconds", "5"]
        )
    else:
        print(f"{real} is missing and could not be fetched: skipping the real clip", file=sys.stderr)
    print(f"overlays in {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
