"""Import-graph numbers for the architecture note: function-local imports and import cycles.

    python tools/import_stats.py [package_dir]

Function-local imports are `import` statements inside a def (found with ast), split into imports
of edgespec's own modules and of other packages. Cycles are the strongly connected components of
edgespec's module graph (every import, function-local ones included, as grimp sees them), counted
between modules and between the top-level units (edgespec.api, edgespec.runtimes, ...).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import grimp


def local_imports(package_dir: Path) -> tuple[list[str], list[str]]:
    own, other = [], []
    for path in sorted(package_dir.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = ["." * node.level + (node.module or "")]
                else:
                    continue
                where = f"{path.relative_to(package_dir.parent)}:{node.lineno} {', '.join(names)}"
                (own if names[0].startswith(".") or names[0].startswith("edgespec") else other).append(where)
    return own, other


def cycles(graph, nodes: set[str], unit) -> list[list[str]]:
    """Strongly connected components (size > 1) of the graph collapsed onto unit(module) (Tarjan)."""
    edges: dict[str, set[str]] = {}
    for module in nodes:
        for imported in graph.find_modules_directly_imported_by(module):
            if imported in nodes and unit(module) != unit(imported):
                edges.setdefault(unit(module), set()).add(unit(imported))
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted({unit(m) for m in nodes}):
        if v not in index:
            visit(v)
    return out


def main() -> None:
    package_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "edgespec").resolve()
    sys.path.insert(0, str(package_dir.parent))
    graph = grimp.build_graph(package_dir.name, cache_dir=None)
    nodes = set(graph.modules)
    own, other = local_imports(package_dir)
    module_cycles = cycles(graph, nodes, lambda m: m)
    top = lambda m: ".".join(m.split(".")[:2])  # noqa: E731
    unit_cycles = cycles(graph, nodes, top)
    print(f"function-local imports: {len(own) + len(other)} ({len(own)} of edgespec modules, {len(other)} of other packages)")
    print(f"module-level import cycles (strongly connected components): {len(module_cycles)}, "
          f"modules in them: {sum(map(len, module_cycles))}")
    for c in module_cycles:
        print("   ", " <-> ".join(c))
    print(f"top-level unit cycles: {len(unit_cycles)}")
    for c in unit_cycles:
        print("   ", " <-> ".join(c))
    if "-v" in sys.argv:
        print("\n".join(own + other))


if __name__ == "__main__":
    main()
