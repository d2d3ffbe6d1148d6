"""The results files of a downstream run (fine-tuning, linear probe): JSON, Markdown, confusion matrix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from avlearn.config import to_dict
from avlearn.eval.classification import ClassificationReport, save_confusion_png
from avlearn.eval.multilabel import MultiLabelReport

__all__ = ["headline", "write_report"]


def headline(results: dict[str, Any]) -> str:
    """A downstream run's main figures: mAP (with its chance level) for a multi-label run, else top-1."""
    if "video_map" in results:
        return (f"video mAP {100 * results['video_map']:.2f} %, clip mAP {100 * results['clip_map']:.2f} % "
                f"(chance {100 * results['chance_map']:.2f} %)")
    return f"video top-1 {100 * results['video_top1']:.2f} %, clip top-1 {100 * results['clip_top1']:.2f} %"


def write_report(run_dir: Path, report: ClassificationReport | MultiLabelReport, config: Any,
                 extra: dict[str, Any], title: str) -> dict[str, Any]:
    """Write ``results.json`` (metrics + ``extra`` + config), ``results.md`` and, for a single-label
    report, ``confusion.png``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    results = {**report.to_dict(), **extra, "config": to_dict(config)}
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    lines = [f"# {title}", ""] + [f"- {k}: {v}" for k, v in extra.items()] + ["", report.markdown()]
    (run_dir / "results.md").write_text("\n".join(lines))
    if isinstance(report, ClassificationReport):  # a multi-label report has no confusion matrix
        save_confusion_png(report.confusion, report.class_names, run_dir / "confusion.png")
    return results
