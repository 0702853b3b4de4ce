"""The package's import graph: no circles, and the layering of design.md.

Every `import` / `from ... import` anywhere in a module (also inside functions) is an edge, so a lazy import
that only hides a circle still counts. `from pkg import name` is an edge to `pkg.name` when that is a module
(Python or C extension) and to `pkg` otherwise. Importing a submodule also runs its package's `__init__`; that
implicit step is not an edge, or every package would be a circle with its own `__init__`.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "jpegnet"

# Which top-level parts of the package each part must never import (design.md: codec <- dct <- data;
# layers <- models; engine uses data and models; cli uses engine). Missing keys may import anything.
FORBIDDEN = {
    "codec": {"dct", "data", "layers", "models", "engine", "serve", "cli"},
    "dct": {"data", "layers", "models", "engine", "serve", "cli"},
    "data": {"layers", "models", "engine", "serve", "cli"},
    "layers": {"codec", "dct", "data", "models", "engine", "serve", "cli"},
    "models": {"codec", "dct", "data", "engine", "serve", "cli"},
    "engine": {"serve", "cli"},
    "serve": {"cli"},
}
# Allowed across the layers: the converted model's exact entry (entry="pixels") rebuilds pixels with
# jpegnet.dct.rebuild, pure torch tensor ops that import nothing from the codec or the data pipeline.
ALLOWED = {("jpegnet.models.converted", "jpegnet.dct.rebuild")}


def _module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*"):
        if path.suffix not in (".py", ".c") or "__pycache__" in path.parts:
            continue
        parts = ("jpegnet",) + path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _edges(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                found.add(candidate if candidate in modules else source)
    return {target for target in found if target in modules and target != name}


def import_graph() -> dict[str, set[str]]:
    modules = _module_names()
    return {name: _edges(name, path, modules) for name, path in modules.items() if path.suffix == ".py"}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_cycle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    # jpegnet/__init__.py imports create_model from the models package; the reader imports its C extension.
    assert "jpegnet.models" in graph["jpegnet"]
    assert "jpegnet.codec._reader" in graph["jpegnet.codec.reader"]


def test_no_import_circles():
    assert _cycles(import_graph()) == []


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_layering(part):
    wrong = sorted(f"{source} -> {target}" for source, targets in import_graph().items() if _part(source) == part
                   for target in targets if _part(target) in FORBIDDEN[part] and (source, target) not in ALLOWED)
    assert wrong == []
