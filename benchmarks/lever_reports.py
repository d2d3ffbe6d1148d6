"""What the two lever benchmarks (``downstream_levers.py``, ``localization_levers.py``) share: starting
from earlier reports (``--merge``) and writing a report as JSON and markdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def previous_reports(merge: list[str] | None, out: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The reports named by ``--merge`` (``[]``: ``OUT.json``; ``None``: none) and the commands they
    came from, earliest first, so a merged report names every run that made its rows."""
    if merge is None:
        return [], []
    reports = [json.loads(Path(path).read_text()) for path in merge or [str(out.with_suffix(".json"))]]
    commands = [c for r in reports for c in [*r.get("merged", []), r["command"]]]
    return commands, reports


def write_report(out: Path, report: dict[str, Any], text: str) -> None:
    """``OUT.json`` (the figures) and ``OUT.md`` (``text``, also printed)."""
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(text)
    print(text)
