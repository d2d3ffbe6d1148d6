"""``OUT/report.md`` of ``avlearn demo`` and its terminal summary, from ``OUT/summary.json``.

:func:`write_report` writes markdown with relative links to the run's images (curves, bar chart of
the accuracies, contact sheet, localization overlays) and tables of every figure;
:func:`summary_table` is the plain-text table printed at the end of the demo. Only images that
exist are linked, so a report of a partial run (``--stages``) stays valid.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_bars", "summary_table", "write_report"]


def plot_bars(
    groups: Mapping[str, Mapping[str, float]],
    path: str | Path,
    title: str = "",
    chance: Mapping[str, float] | None = None,
    size: tuple[int, int] = (640, 320),
) -> Path:
    """Grouped bars of values in ``[0, 1]`` (``group -> {series: value}``), a dashed chance line per group.

    ``size`` is in pixels; a series missing from a group leaves its slot empty. Drawn with
    matplotlib's Agg canvas (no display needed).
    """
    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    fig = Figure(figsize=(size[0] / 100, size[1] / 100), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.7 / max(1, len(series))
    for si, name in enumerate(series):
        slots = [(gi, values[name]) for gi, values in enumerate(groups.values()) if name in values]
        xs = [gi - 0.35 + (si + 0.5) * width for gi, _ in slots]
        bars = ax.bar(xs, [v for _, v in slots], width * 0.95, color=f"C{si}", label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    chance_lines = [
        ax.hlines(chance[group], gi - 0.4, gi + 0.4, colors="0.35", linestyles="--", linewidth=1)
        for gi, group in enumerate(groups)
        if chance and group in chance
    ]
    ax.set_xticks(range(len(groups)), list(groups), fontsize=9)
    ax.set_ylim(0, 1.08)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.grid(axis="y", color="0.9")
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title, loc="left", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    if chance_lines:
        handles, labels = [*handles, chance_lines[0]], [*labels, "chance"]
    fig.legend(handles, labels, loc="outside upper right", ncols=len(labels), fontsize=8, frameon=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.1f}"


def _num(v: Any) -> str:
    return "-" if v is None else f"{float(v):.3f}"


def accuracy_rows(summary: Mapping[str, Any]) -> list[tuple[str, float | None, float | None, float]]:
    """``(evaluation, AV-pretrained, random init / scratch, chance)`` video-level top-1 rows."""
    down = summary.get("downstream") or {}
    chance = down.get("chance", {})
    rows: list[tuple[str, float | None, float | None, float]] = []
    for label in ("action", "object"):
        probe = down.get("linear_probe", {}).get(label, {})
        if probe:
            rows.append(
                (
                    f"linear probe, {label}",
                    probe.get("av", {}).get("video_top1"),
                    probe.get("random", {}).get("video_top1"),
                    chance.get(label, 0.0),
                )
            )
    recipes = (("action", "fine-tune, action"), ("action_avid_recipe", "fine-tune, action, AVID's recipe"))
    for key, name in recipes:
        tune = down.get("finetune", {}).get(key, {})
        if tune:
            rows.append(
                (
                    name,
                    tune.get("av", {}).get("video_top1"),
                    tune.get("random", {}).get("video_top1"),
                    chance.get("action", 0.0),
                )
            )
    return rows


def read_comparison(av: float, rnd: float, chance: float, videos: int) -> str:
    """One line that says what an AV-pretrained vs random-init accuracy pair shows on ``videos`` test videos.

    One test video is ``1 / videos`` of accuracy: gaps of at most one video are noise, and a pair
    no more than one video above chance learned nothing measurable.
    """
    one = 1.0 / max(1, videos)
    gap = round((av - rnd) / one)  # in test videos
    if max(av, rnd) <= chance + one + 1e-9:
        return ("both at chance (within one test video): this run is too short to learn it; "
                "`python -m benchmarks.downstream_synth` runs the longer comparison")
    if abs(gap) <= 1:
        return f"no difference beyond one test video ({_pct(av)} vs {_pct(rnd)} %)"
    who = "AV-pretrained" if gap > 0 else "random init / scratch"
    return f"{who} ahead by {_pct(abs(av - rnd))} points ({abs(gap)} of {videos} test videos)"


def comparison_lines(summary: Mapping[str, Any]) -> list[str]:
    """``"evaluation: reading"`` for every accuracy row with both figures."""
    n = int((summary.get("downstream") or {}).get("test_videos") or 0)
    return [f"{name}: {read_comparison(av, rnd, ch, n)}"
            for name, av, rnd, ch in accuracy_rows(summary) if av is not None and rnd is not None and n]


def _image(out: Path, path: str | Path, alt: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        return []
    return [f"![{alt}]({os.path.relpath(p.resolve(), out.resolve())})", ""]


def _link(out: Path, path: str | Path) -> str:
    return os.path.relpath(Path(path).resolve(), out.resolve())


def write_report(out: Path, summary: Mapping[str, Any]) -> Path:
    """Write ``out/report.md`` (and ``out/accuracy.png``) from the demo's summary; returns its path."""
    lines = ["# avlearn demo report", "", f"Command: `{summary.get('command', 'avlearn demo')}`  "]
    machine = summary.get("machine", {})
    if machine:
        lines.append(
            f"Machine: {machine.get('platform')}, {machine.get('cpu_count')} CPU cores, torch "
            f"{machine.get('torch')} ({machine.get('torch_threads')} threads); load average "
            f"(1/5/15 min) at the start {machine.get('load_start')}, at the end "
            f"{machine.get('load_end')} (the cores may be shared with other jobs)  "
        )
    seconds = summary.get("seconds", {})
    if summary.get("cpu_seconds") is not None:
        lines.append(
            f"This invocation: {summary.get('wall_seconds', 0):.0f} s wall clock, "
            f"{summary['cpu_seconds']:.0f} s of CPU time (all threads and child processes)  "
        )
    if seconds:
        total = sum(seconds.values())
        lines.append(
            f"Stage times (the latest run of each stage): {total:.0f} s in all ("
            + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
            + ")"
        )
    lines.append("")

    col = summary.get("collection")
    if col:
        lines += [
            "## Data",
            "",
            f"{col['videos']} synthetic videos ({col.get('settings', '')}); splits {col['splits']}.",
            "",
        ]
        sheet = _image(out, summary.get("contact_sheet", out / "contact_sheet.png"), "contact sheet")
        if sheet:
            lines += [
                "Contact sheet: one row per action, frames with the sounding object's box (green), "
                "then its spectrogram.",
                "",
                *sheet,
            ]

    pre = summary.get("pretrain")
    if pre:
        lines += [
            "## Pretraining",
            "",
            f"{pre.get('schedule', '')}: {pre.get('steps')} steps ({pre.get('steps_per_epoch')} per "
            f"epoch, {pre.get('train_videos')} unlabelled train + val videos), "
            f"`{Path(pre.get('config', '')).name}`. Held-out video->audio R@1 "
            f"{_pct(pre['retrieval_before'].get('v2a_r1'))} % at initialisation -> "
            f"{_pct(pre['retrieval_after'].get('v2a_r1'))} % after (chance {_pct(pre.get('chance_r1'))} %).",
            "",
        ]
        for png in pre.get("plots", []):
            lines += _image(out, png, Path(png).stem)

    down = summary.get("downstream")
    if down:
        n = down.get("test_videos")
        lines += [
            "## Held-out retrieval",
            "",
            f"One centre clip per test video ({n} videos; chance R@1 "
            f"{_pct(down['chance']['retrieval_r1'])} %), recall in %.",
            "",
            "| model | v2a R@1 | v2a R@5 | v2a R@10 | a2v R@1 | a2v R@5 | a2v R@10 |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, r in down.get("retrieval", {}).items():
            label = "AV-pretrained" if name == "av" else "random init"
            cells = [_pct(r.get(f"{d}_r{k}")) for d in ("v2a", "a2v") for k in (1, 5, 10)]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        rows = accuracy_rows(summary)
        lines += [
            "",
            "## Action recognition and object class",
            "",
            f"Video-level top-1 (%) on the {n} test videos ({down.get('test_clips_per_video')} clips "
            f"per video); linear probes on frozen layer3 + layer4 features, fine-tuning for "
            f"{down.get('finetune_epochs')} epochs with all action labels of the train split"
            + (f" ({down['finetune_recipe']}); clips of {down['clips']['finetune']}. *AVID's recipe*: "
               "the same steps, a random classifier trained alone for the first epoch, then the "
               "whole model at one learning rate" if "clips" in down else "") + ".",
            "",
            "| evaluation | AV-pretrained | random init / scratch | chance |",
            "|---|---:|---:|---:|",
        ]
        lines += [f"| {name} | {_pct(av)} | {_pct(rnd)} | {_pct(ch)} |" for name, av, rnd, ch in rows]
        lines.append("")
        reading = comparison_lines(summary)
        if reading:
            lines += ["Reading (computed from the table; one test video is "
                      f"{_pct(1 / max(1, n or 1))} points):", ""]
            lines += [f"- {line}" for line in reading] + [""]
        groups = {
            name: {k: v for k, v in (("AV-pretrained", av), ("random / scratch", rnd)) if v is not None}
            for name, av, rnd, _ in rows
        }
        if groups:
            png = plot_bars(
                groups,
                out / "accuracy.png",
                "video-level top-1 on the test split",
                {name: ch for name, _, _, ch in rows},
            )
            lines += _image(out, png, "accuracy")

    lines += _cka_lines(out, summary.get("cka"))

    loc = summary.get("localization")
    if loc:
        lines += [
            "## Sound localization",
            "",
            f"Middle frame of {loc['test_frames']} test videos, cIoU protocol ({loc['input']}, "
            f"{loc['grid']} grid). *Swap*: on the {loc['swap_frames']} frames with a silent "
            "distractor, the sound is replaced by that of a video whose sounding class is the "
            "distractor's; the fraction of map peaks that move onto the distractor. *Pair*: "
            f"{loc.get('pairs', 0)} pairs of test videos side by side, each one's sound played in turn; "
            "the fraction of peaks on the object whose sound plays (a map that ignores the sound: "
            "at most 0.5)."
            + (f" The learned localizer's maps are max(cosine - {loc['localizer_floor']:.3f}, 0): the floor "
               "is the mean cosine a wrong sound reaches at a clip's best location on the training clips "
               "(localization.floor), so a map is zero where no sound matches better than a wrong one."
               if loc.get("localizer_floor") is not None else ""),
            "",
            "| method | cIoU50 | AUC | pointing | mean cIoU | peak follows a swapped sound | pair |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, m in loc["methods"].items():
            lines.append(
                f"| {name} | {_num(m['ciou50'])} | {_num(m['auc'])} | {_num(m['pointing'])} | "
                f"{_num(m['mean_ciou'])} | {_num(m.get('swap_pointing'))} | {_num(m.get('pair_pointing'))} |"
            )
        sel = loc.get("overlay_selection")
        lines += [
            "",
            "Overlays (heatmap of the learned localizer over the frames; the MP4s carry the "
            "sound that was localized).",
            "",
        ]
        if sel:
            met = ("met" if sel["swap_example_meets_rule"] else
                   "**not met**: no test video's peak was on its object and moved with the swapped sound")
            lines += [sel["rule"], "",
                      f"Of the test videos, {sel['videos_peak_on_object']} have the peak on the sounding "
                      f"object, {sel['videos_with_swap_sound']} have a distractor whose sound can be "
                      f"swapped in, and {sel['videos_peak_on_object_and_moved_by_swap']} meet both "
                      f"conditions; the swapped-sound example's rule is {met}.", ""]
        for ov in loc.get("overlays", []):
            lines.append(
                f"- `{ov['video']}` ({ov['action']}, sounding object {ov['sounding']}), sound: "
                f"{ov['sound']}: [MP4]({_link(out, ov['mp4'])})"
            )
            lines.append("")
            lines += _image(out, ov["png"], f"{ov['video']} {ov['sound']}")

    if seconds:
        lines += ["## Stage times", "", "| stage | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in seconds.items()]
        lines += [f"| **total** | **{sum(seconds.values()):.1f}** |", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _cka_lines(out: Path, cka: Mapping[str, Any] | None) -> list[str]:
    """The CKA section: each block against the same block of the random init, and the heatmaps."""
    if not cka:
        return []
    lines = [
        "## Representation similarity (CKA)",
        "",
        f"Every block of the pretrained model vs every block of its random initialisation (same seed) "
        f"on the centre clip of {cka['clips']} videos, each block's output averaged over its "
        f"positions: linear CKA on the whole set, and the unbiased minibatch estimator (batches of "
        f"{cka['cka_batch']}). 1 = the same representation up to rotation and scale.",
        "",
        "| block | linear CKA | minibatch CKA |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {_num(v['linear'])} | {_num(v['minibatch'])} |"
              for name, v in cka["same_block"].items()]
    lines = [*lines, "", *_image(out, cka["figure"], "CKA pretrained vs random init")]
    tuned = cka.get("finetuned")
    if tuned:
        lines += [
            "", "Each video block of the pretrained model vs the same block of the model fine-tuned from "
            "it on the action labels: how far fine-tuning moved it (the figure: every block of the "
            "pretrained model vs every video block of the fine-tuned one, which has no audio encoder).", "",
            "| video block | linear CKA vs fine-tuned | minibatch CKA vs fine-tuned |", "|---|---:|---:|",
            *[f"| {name} | {_num(v['linear'])} | {_num(v['minibatch'])} |"
              for name, v in tuned["same_block"].items()],
            "", *_image(out, tuned["figure"], "CKA pretrained vs fine-tuned"),
        ]
    return lines


def summary_table(summary: Mapping[str, Any]) -> str:
    """Plain-text table of the headline figures, for the terminal."""
    rows: list[tuple[str, str, str]] = [("figure", "AV-pretrained", "random / scratch / baseline")]
    down = summary.get("downstream") or {}
    for name, r in [
        ("retrieval v2a R@1", "v2a_r1"),
        ("retrieval a2v R@1", "a2v_r1"),
        ("retrieval v2a R@10", "v2a_r10"),
    ]:
        ret = down.get("retrieval", {})
        if ret:
            rows.append((name + " %", _pct(ret.get("av", {}).get(r)), _pct(ret.get("random", {}).get(r))))
    for name, av, rnd, ch in accuracy_rows(summary):
        rows.append((f"{name} top-1 %", _pct(av), f"{_pct(rnd)} (chance {_pct(ch)})"))
    loc = (summary.get("localization") or {}).get("methods", {})
    if loc:
        trained, rand = loc["trained, learned localizer"], loc["random init, post hoc"]
        centre = loc["centre box"]
        for key in ("ciou50", "auc", "pointing"):
            rows.append(
                (
                    f"localization {key}",
                    _num(trained[key]),
                    f"{_num(rand[key])} (centre box {_num(centre[key])})",
                )
            )
    seconds = summary.get("seconds", {})
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    text = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    text.insert(1, "  ".join("-" * w for w in widths))
    reading = comparison_lines(summary)
    if reading:
        text += ["", *reading]
    if seconds:
        text.append("")
        text.append(
            "stage seconds: "
            + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
            + f"; total {sum(seconds.values()):.0f}"
        )
    return "\n".join(text)
