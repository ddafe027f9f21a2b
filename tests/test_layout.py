"""The package's shape (issue 13): no import cycle among benchmark's modules, counting the
imports inside functions too, and no private name imported from another module."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "benchmark"


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text())
    return out


def _imports(tree: ast.Module, known: set[str]) -> list[tuple[str, str | None]]:
    """(imported project module, imported name or None) for every import in the tree."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.append((sub, None) if sub in known else (node.module, a.name))
    out = []
    for module, name in found:
        while module and module not in known:
            module = module.rpartition(".")[0]
        if module:
            out.append((module, name))
    return out


def test_no_import_cycle_among_the_packages_modules():
    modules = _modules()
    graph = {
        m: {t for t, _ in _imports(tree, set(modules)) if t != m} for m, tree in modules.items()
    }
    cycles, path, done = [], [], set()

    def visit(m: str) -> None:
        if m in path:
            cycles.append(path[path.index(m) :] + [m])
            return
        if m in done:
            return
        path.append(m)
        for t in sorted(graph[m]):
            visit(t)
        path.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)
    assert cycles == []


def test_no_private_name_is_imported_from_another_module():
    modules = _modules()
    leaks = [
        f"{m} imports {name} from {target}"
        for m, tree in modules.items()
        for target, name in _imports(tree, set(modules))
        if name is not None and name.startswith("_") and target != m
    ]
    assert leaks == []
