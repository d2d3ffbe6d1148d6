"""What the two lever benchmarks (``downstream_levers.py``, ``localization_levers.py``) share: starting
from earlier reports (``--merge``) and writing a report as JSON and markdown."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable
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


def add_lever_arguments(p: argparse.ArgumentParser, levers: Iterable[str], out: Path, what: str) -> None:
    """The options every lever script takes: ``--levers``, ``--seeds``, ``--threads``, ``--out`` and
    ``--merge`` (``what``: the runs a merge replaces, e.g. "runs probed now")."""
    p.add_argument("--levers", nargs="+", choices=sorted(levers), default=list(levers))
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="only these of each lever's seeds (e.g. one seed per process, side by side)")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads")
    p.add_argument("--out", default=str(out))
    p.add_argument("--merge", nargs="*", default=None, metavar="JSON",
                   help="start from these reports' rows (default with no file: OUT.json) and replace only "
                        f"the {what}, e.g. to add one lever or one seed")


def merged_levers(previous: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The earlier reports' runs per lever and seed, a later report's run replacing an earlier one's."""
    levers: dict[str, dict[str, Any]] = {}
    for earlier in previous:
        for slug, runs in earlier["levers"].items():
            levers.setdefault(slug, {}).update(runs)
    return levers
