"""The package's modules import one another without a cycle.

Every module under sheetgpt/ is parsed with ``ast``; every import counts, at any depth: top-level,
inside a function (a lazy import) and inside ``if TYPE_CHECKING:`` (a cycle there still ties the
modules together for a reader), absolute or relative. ``from pkg import name`` counts as an import
of ``pkg.name`` when that is a module, else of ``pkg``. A package's ``__init__`` is a module of its
own (importing ``a.b`` runs ``a/__init__``, but that edge is not one the code wrote).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sheetgpt"


def module_names(root: Path | None = None) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the package (``root``, default PACKAGE)."""
    root = PACKAGE if root is None else root
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def imports_of(name: str, modules: dict[str, Path]) -> set[str]:
    """The package modules that module ``name`` imports, anywhere in its text."""
    tree = ast.parse(modules[name].read_text(encoding="utf-8"), str(modules[name]))
    here = name if _is_package(name, modules) else name.rpartition(".")[0]  # the package a relative import starts in
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - (node.level - 1)]
                pkg = ".".join(base + ([node.module] if node.module else []))
            else:
                pkg = node.module or ""
            targets = [f"{pkg}.{alias.name}" if f"{pkg}.{alias.name}" in modules else pkg for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` where only a.b is ours, or a name in a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path | None = None) -> dict[str, set[str]]:
    modules = module_names(root)
    return {name: imports_of(name, modules) for name in modules}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_the_graph_sees_relative_lazy_and_type_checking_imports():
    graph = import_graph()
    assert "sheetgpt.book.layout" in graph["sheetgpt.book.tabs.block"]  # from ..layout import ...
    assert "sheetgpt.a1" in graph["sheetgpt.book.tabs.block"]  # from ... import a1
    assert "sheetgpt.book.writer" in graph["sheetgpt.cli_book"]  # inside a function
    assert "sheetgpt.engine.book" in graph["sheetgpt.book.tabs.prompt"]  # under TYPE_CHECKING


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
