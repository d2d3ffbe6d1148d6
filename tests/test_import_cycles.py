"""No import circles inside the library: module A never needs B while B needs A.

Every ``import`` of a module under ``avlearn/`` counts, also one inside a function (a lazy import
hides a circle, it does not remove it); only ``if TYPE_CHECKING:`` blocks do not, since they never
run. An import names the most specific module it reaches: ``from avlearn.models.av import AVModel``
is an edge to ``avlearn.models.av``, ``from avlearn.models import av`` one to ``avlearn.models.av``,
``from avlearn.models import AVModel`` one to the package ``avlearn.models`` (its ``__init__``).
A parent package's ``__init__`` that Python runs on the way is not counted, or every package that
re-exports its modules would be a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.test_layering import ROOT, module_name

# Circles that another part of issue 28 removes; each line goes once its branch is merged.
KNOWN: set[tuple[str, ...]] = set()  # circles tolerated for now (none): each needs a reason here


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from (n for child in node.orelse for n in (child, *_runtime_nodes(child)))
            continue
        yield node
        yield from _runtime_nodes(node)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_imports(path: Path, module: str) -> Iterator[str]:
    """Dotted names imported by ``path`` when it runs; ``from a import b`` gives ``a.b``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1 packages
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph(root: Path, package: str = "avlearn") -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` for every module under ``root/package``."""
    paths = {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        targets = set()
        for name in runtime_imports(path, module):
            while name and name not in paths:  # ``a.b.attr`` -> ``a.b``; outside the package -> ""
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected groups of more than one module (each one or more circles), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[tuple[str, ...]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the graph is a few hundred modules deep at most
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(tuple(sorted(group)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def circle(graph: dict[str, set[str]], group: tuple[str, ...]) -> str:
    """One circle through ``group``'s first module, ``a -> b -> a``, by a breadth-first search."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                return " -> ".join([*paths[node], start])
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return " <-> ".join(group)


def test_the_library_has_no_import_circle() -> None:
    graph = import_graph(ROOT)
    found = [group for group in cycles(graph) if group not in KNOWN]
    assert not found, "import circles (break them; a lazy import does not):\n" + "\n".join(
        circle(graph, group) for group in found)


def test_known_circles_still_exist() -> None:
    gone = KNOWN - set(cycles(import_graph(ROOT)))
    assert not gone, f"{sorted(gone)} form no circle now: remove them from KNOWN in {Path(__file__).name}"


def test_a_planted_circle_is_found(tmp_path: Path) -> None:
    pkg = tmp_path / "avlearn" / "pkg"
    pkg.mkdir(parents=True)
    (tmp_path / "avlearn" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from avlearn.pkg.a import f\n")
    (pkg / "a.py").write_text("from avlearn.pkg import b\n\ndef f():\n    pass\n")
    (pkg / "b.py").write_text("def g():\n    from .c import h\n")  # lazy: still an edge
    (pkg / "c.py").write_text("import avlearn.pkg.a\n")
    (pkg / "d.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    from avlearn.pkg import e\n")
    (pkg / "e.py").write_text("import avlearn.pkg.d\n")  # d -> e only for the type checker: no circle
    graph = import_graph(tmp_path)
    assert graph["avlearn.pkg"] == {"avlearn.pkg.a"} and graph["avlearn.pkg.d"] == set()
    assert cycles(graph) == [("avlearn.pkg.a", "avlearn.pkg.b", "avlearn.pkg.c")]
    names = ["a", "b", "c", "a"]
    assert circle(graph, cycles(graph)[0]) == " -> ".join(f"avlearn.pkg.{n}" for n in names)
