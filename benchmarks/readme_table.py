"""The benchmark table of ``docs/benchmarks.md`` and the README's demo paragraph, rendered from
``benchmarks/results/*.json`` (never typed by hand).

One row per results file: the file, its headline, the machine and the command that reruns it.
The headline comes from the benchmark that wrote the file (the record's ``benchmark`` key, else
the module its ``command`` ran): its ``headline(record)`` function. A file whose benchmark is
unknown, or whose shape its headline no longer reads, gets a generic row from its top-level
numbers, so adding a benchmark never breaks the table.

    python -m benchmarks.readme_table            # print the table
    python -m benchmarks.readme_table --write    # renew the table and the demo paragraph
    python -m benchmarks.readme_table --check    # exit 1 if either is out of date

The table sits in ``docs/benchmarks.md`` between ``<!-- benchmarks:start -->`` and
``<!-- benchmarks:end -->``; the paragraph on what ``make demo`` measured sits in ``README.md``
between ``<!-- demo:start -->`` and ``<!-- demo:end -->``, rendered from
``benchmarks/results/demo.json`` (written by :mod:`benchmarks.record_demo`). A benchmark's section of
another page (:data:`SECTIONS`) sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``, rendered
by the benchmark's ``docs_block(results)``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks import harness
from benchmarks.harness import RESULTS, ROOT
from benchmarks.record_demo import demo_paragraph

__all__ = ["demo_paragraph", "main", "render", "rows_for", "writer"]

README = ROOT / "README.md"
DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
DEMO_START, DEMO_END = "<!-- demo:start -->", "<!-- demo:end -->"
HEADER = "| results | headline | machine | command |\n|---|---|---|---|"
# commands of results files that name no module of benchmarks/: the module that wrote them
WRITERS = {"benchmarks/gpu/run.sh": "gpu.suite", "avlearn demo": "record_demo"}
# pages under docs/ with a generated section: the benchmark module whose docs_block(results) renders it
SECTIONS = {"cav_mae.md": "cav_mae_synth"}
SCRIPT = re.compile(r"(?:python -m benchmarks\.|python benchmarks/)([\w.]+?)(?:\.py)?(?=\s|$)")


def writer(record: dict[str, Any]) -> ModuleType | None:
    """The benchmark module that wrote ``record``, or ``None`` when no module of ours did."""
    name = record.get("benchmark")
    command = str(record.get("command") or "")
    if not name:
        name = next((module for head, module in WRITERS.items() if head in command), None)
    if not name and (found := SCRIPT.search(command)):
        name = found.group(1)
    if not name:
        return None
    try:
        module = importlib.import_module(f"benchmarks.{name}")
    except ImportError:
        return None
    return module if callable(getattr(module, "headline", None)) else None


def command_now(command: str) -> str:
    """A results file's command as it runs today (``python benchmarks/x.py`` became ``python -m``)."""
    return re.sub(r"python benchmarks/(\w+)\.py", r"python -m benchmarks.\1", command)


def generic(d: Any) -> str:
    """A headline for any JSON: its top-level numbers (at most six), or its top-level keys."""
    if not isinstance(d, dict):
        return f"{type(d).__name__} of results (no benchmark states its headline)"
    numbers = [f"{k} {harness.num(v)}" for k, v in d.items()
               if isinstance(v, int | float) and not isinstance(v, bool)]
    if numbers:
        return "; ".join(numbers[:6])
    keys = ", ".join(str(k) for k in list(d)[:8] if k not in ("command", "machine", "benchmark"))
    return f"see the file (keys: {keys or 'none'})"


def headline(path: Path, data: Any) -> str:
    """The headline of one results file: its benchmark's, else the generic one."""
    module = writer(data) if isinstance(data, dict) else None
    if module is None:
        return generic(data)
    try:
        return str(module.headline(data))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError) as err:
        print(f"readme_table: {path.name} no longer has the shape {module.__name__}.headline reads "
              f"({err!r}); using the generic row", file=sys.stderr)
        return generic(data)


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split()) or "-"


def rows_for(path: Path) -> list[str]:
    """The table row of one results file (a list, for the callers that join rows)."""
    try:
        data: Any = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return [f"| `{path.name}` | {_cell(f'unreadable: {err}')} | - | - |"]
    machine = harness.machine_text(data) if isinstance(data, dict) else "-"
    command = data.get("command") if isinstance(data, dict) else None
    command = f"`{command_now(command).strip()}`" if command else "-"
    return [f"| `{path.name}` | {_cell(headline(path, data))} | {_cell(machine)} | {_cell(command)} |"]


def render(results: Path = RESULTS) -> str:
    """The whole table for every ``*.json`` under ``results``, in file-name order."""
    lines = [HEADER]
    for path in sorted(results.glob("*.json")):
        lines += rows_for(path)
    return "\n".join(lines)


def replace_block(text: str, block: str, start: str = START, end: str = END) -> str:
    """``text`` with the lines between the markers replaced by ``block``."""
    if start not in text or end not in text or text.index(start) > text.index(end):
        raise ValueError(f"no '{start}' ... '{end}' block; add the markers where it goes")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{block}\n{end}{tail}"


def section_markers(name: str) -> tuple[str, str]:
    """The markers around benchmark ``name``'s generated section of a page."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def sections(pages: Path, results: Path) -> dict[Path, tuple[str, str]]:
    """Each page of :data:`SECTIONS` under ``pages``: (current text, text with its section renewed)."""
    out = {}
    for page, name in SECTIONS.items():
        text = (pages / page).read_text()
        block = importlib.import_module(f"benchmarks.{name}").docs_block(results)
        out[pages / page] = (text, replace_block(text, block, *section_markers(name)))
    return out


def renewed(readme: Path, docs: Path, results: Path,
            pages: Path | None = None) -> dict[Path, tuple[str, str]]:
    """Each target file's (current text, text with its block renewed); ``pages``: where the pages of
    :data:`SECTIONS` are (``None``: the repository's ``docs/``)."""
    table_text, readme_text = docs.read_text(), readme.read_text()
    new_readme, demo = readme_text, results / "demo.json"
    if demo.is_file():
        new_readme = replace_block(readme_text, demo_paragraph(json.loads(demo.read_text())), DEMO_START,
                                   DEMO_END)
    return {docs: (table_text, replace_block(table_text, render(results))), readme: (readme_text, new_readme),
            **sections(DOCS.parent if pages is None else pages, results)}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.readme_table", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="renew the table and the demo paragraph")
    mode.add_argument("--check", action="store_true", help="exit 1 if the table or the paragraph is stale")
    p.add_argument("--readme", type=Path, default=README, help="holds the demo paragraph")
    p.add_argument("--docs", type=Path, default=DOCS, help="holds the benchmark table")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--pages", type=Path, default=None,
                   help="the folder of the pages with a generated section (default: the repository's docs/)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not (args.write or args.check):
        print(render(args.results))
        return 0
    try:
        texts = renewed(args.readme, args.docs, args.results, args.pages)
    except ValueError as err:
        print(f"readme_table: {err} (the table in {args.docs}, the demo paragraph in {args.readme})",
              file=sys.stderr)
        return 2
    stale = [path for path, (old, new) in texts.items() if old != new]
    if args.check:
        for path in stale:
            print(f"{path}: out of date; run python -m benchmarks.readme_table --write", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(texts[path][1])
        print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
