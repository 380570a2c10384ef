"""The layers, enforced: the library imports no front-end framework, front ends go through the one
door (`bot.api`), front ends never import each other, and nothing imports in a cycle.

Read from the source with `ast`, so a lazy import inside a function counts as much as one at the
top of a module. README's "Where things go" section describes the same rules in words.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "handlers", "container")
FRONT_ENDS = ("handlers", "bot.cli", "bot.notebook")
FRAMEWORKS = ("click", "rich", "tqdm", "slack_bolt", "slack_sdk", "waitress", "ipywidgets", "IPython")
ENGINE_INTERNALS = ("bot.engine", "bot.ledger", "bot.db")
# The CLI starts the Slack app (`cyto serve`), asks it to check its own token (`cyto doctor`) and
# moves its tables with the rest of a ledger (`cyto ledger migrate`).
ALLOWED_FRONT_END_IMPORTS = {("bot.cli.service", "handlers.serve"), ("bot.cli.service", "handlers.slack_check"),
                             ("bot.cli.ledger", "handlers.slack_schema")}


@dataclass(frozen=True)
class Import:
    module: str
    target: str
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources(*tops: str) -> Iterator[tuple[str, Path]]:
    for top in tops:
        for path in sorted((ROOT / top).rglob("*.py")):
            yield _module_name(path), path


MODULES = dict(_sources(*PACKAGES))


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path) -> list[Import]:
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, path, node)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.append(Import(module, submodule if submodule in MODULES else source, node.lineno))
        elif isinstance(node, ast.Call) and _dynamic_import(node) and node.args:
            name = node.args[0]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                found.append(Import(module, name.value, node.lineno))
    return found


def _dynamic_import(call: ast.Call) -> bool:
    """`__import__("x")` or `importlib.import_module("x")`: imports all the same."""
    func = call.func
    return (isinstance(func, ast.Name) and func.id in ("__import__", "import_module")) or (
        isinstance(func, ast.Attribute) and func.attr == "import_module")


def _all_imports(*tops: str) -> list[Import]:
    return [imp for module, path in _sources(*tops) for imp in imports_of(module, path)]


def is_library(module: str) -> bool:
    return _within(module, "bot") and not any(_within(module, front) for front in FRONT_ENDS)


def front_end_of(module: str) -> str | None:
    return next((front for front in FRONT_ENDS if _within(module, front)), None)


def _where(imp: Import) -> str:
    return f"{imp.module}:{imp.line} imports {imp.target}"


def test_the_library_imports_no_front_end_framework() -> None:
    bad = [_where(imp) for imp in _all_imports("bot") if is_library(imp.module)
           and any(_within(imp.target, framework) for framework in FRAMEWORKS)]
    assert not bad, "the library imports a front-end framework:\n" + "\n".join(bad)


def test_the_library_and_the_job_never_import_a_front_end() -> None:
    bad = [_where(imp) for imp in _all_imports("bot", "container")
           if front_end_of(imp.module) is None and front_end_of(imp.target) is not None]
    assert not bad, "\n".join(bad)


def test_front_ends_never_import_each_other() -> None:
    bad = []
    for imp in _all_imports(*PACKAGES):
        mine, theirs = front_end_of(imp.module), front_end_of(imp.target)
        if mine and theirs and mine != theirs and (imp.module, imp.target) not in ALLOWED_FRONT_END_IMPORTS:
            bad.append(_where(imp))
    assert not bad, "\n".join(bad)


def test_front_ends_and_benches_use_the_one_door() -> None:
    """Outside the library nothing imports the engine or the ledger, nor reads an `.engine` or
    `.db` attribute: front ends and benches call `bot.api.Cyto`."""
    outside = [(module, path) for module, path in _sources(*PACKAGES, "bench") if not is_library(module)
               and not _within(module, "container")]
    bad = []
    for module, path in outside:
        bad += [_where(imp) for imp in imports_of(module, path)
                if any(_within(imp.target, internal) for internal in ENGINE_INTERNALS)]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in ("engine", "db"):
                bad.append(f"{module}:{node.lineno} reads .{node.attr}")
    assert not bad, "\n".join(bad)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: every group of modules that import each other, directly or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [group for group in groups if len(group) > 1]


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for imp in _all_imports(*PACKAGES):
        if imp.target in MODULES and imp.target != imp.module:
            graph[imp.module].add(imp.target)
    return graph


def test_no_import_cycles() -> None:
    cycles = strongly_connected(import_graph())
    assert not cycles, "modules that import each other:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checks_see_every_kind_of_import(tmp_path: Path) -> None:
    """The rules above are only as good as the import reader and the cycle finder: lazy, relative
    and aliased imports count, and a cycle through three modules is found."""
    path = tmp_path / "bot" / "probe.py"
    path.parent.mkdir()
    path.write_text("import os\n\ndef f():\n    from . import api\n    import slack_sdk as s\n"
                    "    from bot.store import local\n    __import__('handlers.serve')\n"
                    "    importlib.import_module('rich')\n")
    found = {imp.target for imp in imports_of("bot.probe", path)}
    assert {"os", "bot.api", "slack_sdk", "bot.store.local", "handlers.serve", "rich"} <= found, found
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
