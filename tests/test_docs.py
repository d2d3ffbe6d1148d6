"""The documentation site builds with ``mkdocs build --strict``, offline, and the README's links hold.

The build runs in a subprocess whose sockets cannot connect (and with an unreachable proxy set), so
a theme or plugin that fetches anything at build time fails it; a broken link, a missing anchor or a
page named in the nav but absent fails it too (``mkdocs.yml``'s ``validation``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="the docs tools are in the dev extras: pip install -e '.[dev]'")
pytest.importorskip("mkdocstrings_handlers.python")

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 150
API_PACKAGES = ("models", "objectives", "data", "localization", "train", "eval", "analysis")

# Runs mkdocs with every socket connection and name lookup refused: offline by construction,
# not by the luck of an unreachable network.
_OFFLINE_MKDOCS = """
import socket, sys
def _refuse(*args, **kwargs):
    raise OSError(f"the docs build tried to reach the network: {args!r}")
socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.getaddrinfo = _refuse
socket.create_connection = _refuse
from mkdocs.__main__ import cli
sys.exit(cli(sys.argv[1:]))
"""


def _build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of ``root/mkdocs.yml`` into ``site``, with no network."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "HTTP_PROXY": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    cmd = [sys.executable, "-c", _OFFLINE_MKDOCS, "build", "--strict", "--config-file",
           str(root / "mkdocs.yml"), "--site-dir", str(site)]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def _nav_pages() -> list[str]:
    """The ``.md`` files that ``mkdocs.yml``'s nav names."""
    return re.findall(r"([\w/]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), flags=re.MULTILINE)


def test_site_builds_strictly_offline_with_every_page(tmp_path: Path) -> None:
    assert (ROOT / "docs" / "benchmarks.md").is_file(), (
        "docs/benchmarks.md is missing: benchmarks/readme_table.py --write generates it")
    site = tmp_path / "site"
    proc = _build(ROOT, site)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    pages = _nav_pages()
    assert {"index.md", "quickstart.md", "benchmarks.md", "troubleshooting.md"} <= set(pages)
    for page in pages:
        stem = page.removesuffix(".md")  # a.md -> a/index.html; x/index.md -> x/index.html
        built = site / (stem.removesuffix("index") if stem.split("/")[-1] == "index" else stem) / "index.html"
        assert built.is_file(), f"{page} in the nav was not built ({built})"
    for name in API_PACKAGES:  # the reference is rendered from the docstrings, not left as `::: ...`
        html = (site / "api" / name / "index.html").read_text()
        assert f'id="avlearn.{name}"' in html and "::: avlearn" not in html, name
    # a benchmark result is a page, so the docs link results where the repository keeps them
    assert (site / "benchmarks" / "results" / "scaling_cpu" / "index.html").is_file()
    front = (site / "index.html").read_text()
    assert "fonts.googleapis.com" not in front and "fonts.gstatic.com" not in front


def _copy_without_api(tmp_path: Path) -> Path:
    """The repository's config, pages and results in ``tmp_path``, minus the (slow) API reference."""
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", root / "docs")
    shutil.copytree(ROOT / "benchmarks" / "results", root / "benchmarks" / "results")
    shutil.copy(ROOT / "mkdocs.yml", root / "mkdocs.yml")
    benchmarks = root / "docs" / "benchmarks.md"  # generated; its presence is the test above's concern
    if not benchmarks.exists():
        benchmarks.write_text("# Benchmarks\n")
    for page in (root / "docs" / "api").glob("*.md"):
        page.write_text(re.sub(r"^::: .*$", "(reference left out)", page.read_text(), flags=re.MULTILINE))
    return root


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    root = _copy_without_api(tmp_path)
    ok = _build(root, tmp_path / "site_ok")
    assert ok.returncode == 0, f"{ok.stdout}\n{ok.stderr}"

    page = root / "docs" / "quickstart.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no_such_page.md).\n")
    broken = _build(root, tmp_path / "site_broken")
    assert broken.returncode != 0
    assert "no_such_page.md" in broken.stdout + broken.stderr


def test_a_fetch_at_build_time_fails_the_build(tmp_path: Path) -> None:
    # a remote inventory is what a well-meant edit would add first; the build must refuse it
    root = _copy_without_api(tmp_path)
    config = root / "mkdocs.yml"
    text = config.read_text()
    assert "          paths: [.]" in text
    config.write_text(text.replace("          paths: [.]", "          inventories: ['https://docs.python.org/3/objects.inv']\n"
                                   "          paths: [.]", 1))
    proc = _build(root, tmp_path / "site")
    assert proc.returncode != 0
    assert "objects.inv" in proc.stdout + proc.stderr


def test_readme_is_a_short_front_page_whose_links_exist() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    for command in ("make demo", "make test", "avlearn pretrain", "avlearn finetune", "avlearn localize",
                    "avlearn serve"):
        assert command in text, command
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert "docs/contact_sheet.png" in local
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
