"""No import circles in protocol/, storage/, mesh/, sim/ (STYLE.md rule 5; issue 15, Must show 2).

The graph is read from the source by ast, not from ``sys.modules``: every ``import`` and
``from ... import`` statement counts, at module level *and inside functions*, because an import
moved into a function to dodge a circle is still a dependency; it only hides the circle from the
interpreter. Two kinds of import are left out, on purpose:

- imports under ``if TYPE_CHECKING:``: they never run, and exist so that type hints can name a
  class without a runtime dependency, which is the sanctioned way to type across a boundary;
- the implicit import of a parent package (``import protocol.node`` runs
  ``protocol/__init__.py``): our ``__init__`` files hold only a docstring, and counting the
  parent would make every package that re-exported a submodule a circle by construction.

``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("protocol", "storage", "mesh", "sim")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement in the tree, at any depth, except under ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name a (possibly relative) ``from`` import refers to."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    """Module -> the modules of the same packages it imports."""
    files = {
        module_name(root, path): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in _import_nodes(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _absolute(name, is_package, node)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base
                    for alias in node.names
                ]
            for target in targets:
                # `import a.b.c` names a.b.c; walk up to the nearest module we own.
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected component of more than one module, as one circle through it.

    Tarjan's algorithm finds the components; for each, a shortest path back to its first member
    names a concrete circle (``a -> b -> a``), which is what a reader needs to break it.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth is bounded by the module count (~100)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_a_circle_through(graph, component) for component in sorted(components)]


def _a_circle_through(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    start, members = component[0], set(component)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if w not in came_from:
                    came_from[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{component} is not strongly connected")  # pragma: no cover


def describe(found: list[list[str]]) -> str:
    return "; ".join(" -> ".join(circle) for circle in found)


# Circles known and being broken (issue 15), each to be removed by the commit that breaks it.
# An entry that no longer matches a circle fails the test too, so this list cannot go stale.
KNOWN_CIRCLES: dict[frozenset[str], str] = {}


def test_no_import_circles() -> None:
    found = circles(import_graph(ROOT, PACKAGES))
    new = [c for c in found if frozenset(c) not in KNOWN_CIRCLES]
    assert not new, f"import circles: {describe(new)}"
    gone = set(KNOWN_CIRCLES) - {frozenset(c) for c in found}
    assert not gone, f"no longer circles, drop them from KNOWN_CIRCLES: {sorted(map(sorted, gone))}"


def test_the_finder_fails_on_a_planted_circle(tmp_path: Path) -> None:
    """Two temporary modules that import each other, one of them lazily, inside a function."""
    package = tmp_path / "planted"
    package.mkdir()
    (package / "__init__.py").write_text('"""A planted package."""\n')
    (package / "world.py").write_text("from planted.faults import cut\n")
    (package / "faults.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from planted import world as _hint  # not counted: never runs\n"
        "def cut():\n"
        "    from . import world  # counted: a lazy import is still a dependency\n"
        "    return world\n"
    )
    (package / "alone.py").write_text("import planted.faults\n")
    graph = import_graph(tmp_path, ["planted"])
    assert graph["planted.alone"] == {"planted.faults"}
    found = circles(graph)
    assert found == [["planted.faults", "planted.world", "planted.faults"]]
    assert describe(found) == "planted.faults -> planted.world -> planted.faults"

    # With the lazy import gone, only the TYPE_CHECKING one is left: no circle.
    (package / "faults.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from planted import world\n"
        "def cut():\n"
        "    return None\n"
    )
    assert circles(import_graph(tmp_path, ["planted"])) == []
