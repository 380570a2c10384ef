"""The project's import graph, for checking its layers: every import counts, at module level or inside
a function, and `__import__("x")` / `importlib.import_module("x")` with a literal name.

    python tests/import_graph.py        # prints the cycles and the library's front-end imports

A submodule's implicit import of its own parent package is not an edge (the parent is always
initialised first), so a package whose __init__ re-exports its submodules is not a cycle.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "handlers", "container")
FRONT_END_FRAMEWORKS = ("click", "rich", "tqdm", "slack_bolt", "slack_sdk", "waitress", "ipywidgets", "handlers")
FRONT_ENDS = ("bot.cli", "bot.notebook")  # the library is bot/ but for these


def modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported_names(module: str, path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) and \
                isinstance(node.args[0].value, str) and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")):
            yield node.args[0].value


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    found = modules(root)

    def resolve(name: str) -> str | None:
        while name and name not in found:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in found}
    for module, path in found.items():
        for name in imported_names(module, path):
            target = resolve(name)
            if target is None or target == module:
                continue
            edges[module].add(target)
            parts = target.split(".")  # importing a.b.c initialises a and a.b first
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if parent in found and parent != module and not module.startswith(parent + "."):
                    edges[module].add(parent)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
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
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def front_end_imports(root: Path = ROOT) -> list[tuple[str, str]]:
    """(library module, front-end framework or the Slack app it imports)."""
    found = []
    for module, path in sorted(modules(root).items()):
        if not module.startswith("bot") or module.startswith(FRONT_ENDS):
            continue
        for name in imported_names(module, path):
            if name.split(".")[0] in FRONT_END_FRAMEWORKS:
                found.append((module, name))
    return sorted(set(found))


if __name__ == "__main__":
    edges = graph()
    for component in cycles(edges):
        print("cycle:", ", ".join(f"{a} -> {b}" for a in component for b in sorted(edges[a] & set(component))))
    for module, name in front_end_imports():
        print(f"front-end import: {module} -> {name}")
