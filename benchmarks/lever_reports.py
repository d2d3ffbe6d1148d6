"""What the lever benchmarks (``downstream_levers``, ``finetune_levers``, ``localization_levers``) share:
their options, starting from earlier reports (``--merge``) and the merged runs."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks import harness


def previous_reports(merge: list[str] | None, out: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The reports named by ``--merge`` (``[]``: ``OUT.json``; ``None``: none) and the commands they
    came from, earliest first, so a merged report names every run that made its rows."""
    if merge is None:
        return [], []
    reports = [json.loads(Path(path).read_text()) for path in merge or [str(out.with_suffix(".json"))]]
    commands = [c for r in reports for c in [*r.get("merged", []), r["command"]]]
    return commands, reports


def lever_parser(doc: str | None, name: str, levers: Iterable[str], what: str) -> argparse.ArgumentParser:
    """The options every lever benchmark takes: ``--levers``, ``--seeds``, ``--threads``, ``--out`` and
    ``--merge`` (``what``: the runs a merge replaces, e.g. "runs probed now")."""
    p = harness.parser(doc, name)
    p.add_argument("--levers", nargs="+", choices=sorted(levers), default=list(levers))
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="only these of each lever's seeds (e.g. one seed per process, side by side)")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads")
    p.add_argument("--merge", nargs="*", default=None, metavar="JSON",
                   help="start from these reports' rows (default with no file: OUT.json) and replace only "
                        f"the {what}, e.g. to add one lever or one seed")
    return p


def merged_levers(previous: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The earlier reports' runs per lever and seed, a later report's run replacing an earlier one's."""
    levers: dict[str, dict[str, Any]] = {}
    for earlier in previous:
        for slug, runs in earlier["levers"].items():
            levers.setdefault(slug, {}).update(runs)
    return levers


def wanted(seed: int, seeds: list[int] | None) -> bool:
    """Whether ``--seeds`` (``None``: all) asks for ``seed``."""
    return seeds is None or seed in seeds
