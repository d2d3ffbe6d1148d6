"""Record a demo run's figures as ``benchmarks/results/demo.json`` (the README quotes them from there).

    python -m avlearn demo --out outputs/demo                 # or: make demo
    python benchmarks/record_demo.py outputs/demo/summary.json
    python benchmarks/readme_table.py --write                 # the README's demo paragraph and table row

Paths inside the summary are written relative to the repository when they lie under it, and
relative to the run's folder otherwise, so the results file holds no machine's absolute paths.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "demo.json"


def relative_paths(x: Any, run_dir: Path) -> Any:
    """``x`` with every absolute path string made relative (to the repository, else to ``run_dir``)."""
    if isinstance(x, dict):
        return {k: relative_paths(v, run_dir) for k, v in x.items()}
    if isinstance(x, list):
        return [relative_paths(v, run_dir) for v in x]
    if isinstance(x, str) and x.startswith("/"):
        path = Path(x)
        for base, prefix in ((ROOT, ""), (run_dir, "<demo out>/")):
            if path.is_relative_to(base):
                return prefix + path.relative_to(base).as_posix()
        return path.name
    if isinstance(x, str) and x.startswith("avlearn demo --out /"):  # the command line
        return "python -m avlearn demo --out <demo out>"
    return x


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("summary", type=Path, help="a demo run's summary.json")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    summary = json.loads(args.summary.read_text())
    if "downstream" not in summary or "localization" not in summary:
        print(f"{args.summary}: not the summary of a full demo run (stages downstream and localize missing)")
        return 2
    args.out.write_text(json.dumps(relative_paths(summary, args.summary.resolve().parent), indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
