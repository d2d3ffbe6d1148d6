"""mkdocs hook: the repository's ``benchmarks/results/*.md`` become pages at the same path in the site.

The results stay where the benchmarks write them (outside ``docs/``); with this hook a page links
``benchmarks/results/NAME.md`` as the repository root does, and ``mkdocs build --strict`` fails on a
link to a result that does not exist.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

RESULTS = "benchmarks/results"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add every Markdown file of ``benchmarks/results/`` at ``benchmarks/results/`` in the site."""
    root = Path(config.config_file_path).parent
    for path in sorted((root / RESULTS).glob("*.md")):
        files.append(File.generated(config, f"{RESULTS}/{path.name}", abs_src_path=str(path)))
    return files
