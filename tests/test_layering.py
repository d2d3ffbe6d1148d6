"""The package's layering holds (README "Architecture"): what may import what, read from the source.

Every ``import`` of every module under ``avlearn/`` counts, also one inside a function: a lazy
import is still a dependency. The dispatcher names commands by module string
(``avlearn.cli.COMMANDS``), which is not an import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from avlearn.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]

APPLICATIONS = ("data_prep", "demos", "benchmarks")  # import the library, never the reverse
LIBRARY_COMMANDS = sorted({module for module, _ in COMMANDS.values() if module.startswith("avlearn.")})

# (importing package, package it must not import, why)
RULES: list[tuple[str, str, str]] = [
    *[("avlearn", app, "the library never needs an application") for app in APPLICATIONS],
    *[(low, high, "data and models are the bottom layer")
      for low in ("avlearn.data", "avlearn.models")
      for high in ("avlearn.objectives", "avlearn.localization", "avlearn.eval", "avlearn.analysis",
                   "avlearn.train")],
    *[("avlearn.objectives", high, "objectives sit below evaluation and training")
      for high in ("avlearn.eval", "avlearn.train")],
    ("avlearn.eval", "avlearn.train", "evaluation sits below training"),
    ("avlearn.analysis", "avlearn.train", "analysis sits below training"),
    ("avlearn.localization", "avlearn.train", "localization sits below training"),
    *[("avlearn", command, "commands are on top: the library imports none")
      for command in LIBRARY_COMMANDS],
]

# Modules that are leaving the library for demos/ (issue 13); remove each one here once it has moved.
LEAVING: set[str] = set()  # modules on their way out of the library, exempt until moved


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, module: str) -> Iterator[tuple[str, int]]:
    """``(dotted name, line)`` of every import in ``path``; ``from a import b`` gives ``a`` and ``a.b``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1 packages
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            yield base, node.lineno
            yield from ((f"{base}.{alias.name}", node.lineno) for alias in node.names)


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(root: Path, package: str = "avlearn", exempt: set[str] | None = None) -> list[str]:
    """Every import under ``root/package`` that breaks a rule, as ``file:line: ...`` lines."""
    found: dict[tuple[str, str], str] = {}  # one line per import statement and rule
    for path in sorted((root / package).rglob("*.py")):
        module = module_name(path, root)
        if module in (exempt or set()):
            continue
        for name, line in imported_names(path, module):
            for importer, forbidden, why in RULES:
                if _within(module, importer) and _within(name, forbidden) and not _within(module, forbidden):
                    where = f"{path.relative_to(root)}:{line}"
                    found.setdefault((where, forbidden), f"{where}: {module} imports {name} ({why})")
    return sorted(found.values())


def test_library_imports_follow_the_layers() -> None:
    problems = violations(ROOT, exempt=LEAVING)
    assert not problems, "imports across the layers (see README, Architecture):\n" + "\n".join(problems)


def test_leaving_modules_still_exist() -> None:
    gone = sorted(m for m in LEAVING if not (ROOT / Path(*m.split("."))).with_suffix(".py").is_file())
    assert not gone, f"{gone} moved out of the library: remove them from LEAVING in {Path(__file__).name}"


def test_a_planted_violation_is_found(tmp_path: Path) -> None:
    eval_dir = tmp_path / "avlearn" / "eval"
    eval_dir.mkdir(parents=True)
    (eval_dir / "__init__.py").write_text("")
    (eval_dir / "ok.py").write_text("from avlearn.models import weights\n")
    (eval_dir / "bad.py").write_text("def f():\n    from ..train import loop\n    import data_prep.index\n")
    (tmp_path / "avlearn" / "localization").mkdir()
    (tmp_path / "avlearn" / "localization" / "inputs.py").write_text(
        "from avlearn.localization import cli\n")
    found = violations(tmp_path)
    assert [line.split(": ", 1)[0] for line in found] == [
        "avlearn/eval/bad.py:2", "avlearn/eval/bad.py:3", "avlearn/localization/inputs.py:1"]
    assert "avlearn.eval.bad imports avlearn.train (evaluation sits below training)" in found[0]
    assert "imports data_prep.index (the library never needs an application)" in found[1]
    assert "imports avlearn.localization.cli (commands are on top" in found[2]


def test_training_imports_without_the_media_packages() -> None:
    """A GPU machine that trains from memory (``benchmarks/gpu``) has no PyAV, decord or webdataset:
    the engine, pretraining and fine-tuning import without them; decoding says what to install."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for m in ('av', 'decord', 'webdataset'): sys.modules[m] = None\n"
        "import avlearn.train.loop, avlearn.train.finetune, avlearn.data.dataset, avlearn.data.splits\n"
        "from avlearn.data.decoding import media\n"
        "try:\n"
        "    media.av_module()\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "decoding media needs PyAV" in proc.stdout and "pip install av" in proc.stdout
