"""The package's modules import each other without circles, lazy imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import paracache

PACKAGE = Path(paracache.__file__).parent


def _module_name(path: Path) -> str:
    parts = ["paracache", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, from every ``import``/``from`` statement
    anywhere in it (module level, functions, ``if`` blocks: lazy imports count)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from . import admin` imports the module paracache.admin
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (as a path that ends where it started), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_walker_sees_lazy_and_relative_imports() -> None:
    graph = import_graph()
    assert "paracache.index" in graph["paracache"]  # module level, relative
    assert "paracache.observability" in graph["paracache.index"]  # inside a method
    assert "paracache.admin" in graph["paracache.cli"]  # `from . import admin`, in a function
    assert "paracache.values" in graph["paracache.llama_index.llm"]  # `from ..values import`
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circles() -> None:
    assert find_cycle(import_graph()) is None


def test_embedded_exports_the_server_and_the_cluster() -> None:
    from paracache import embedded

    assert {"EmbeddedRedis", "EmbeddedCluster"} <= set(embedded.__all__)
    assert embedded.EmbeddedCluster.__module__ == "paracache.embedded.cluster"
    assert "paracache.embedded.server" in import_graph()["paracache.embedded.cluster"]
