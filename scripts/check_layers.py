"""diffprof's package layering, checked from the source: `python scripts/check_layers.py`.

Every ``import`` / ``from ... import`` statement under src/diffprof is read from the AST, wherever
it stands: at module level, inside a function (the lazy imports that keep ``import diffprof`` cheap)
and under ``if TYPE_CHECKING``. Type-only imports count too: an annotation that names a type of a
higher layer means the lower layer's API is shaped by the one above it, which is the dependency
this check exists to keep out (a lower layer that needs such a type defines a Protocol of its own).
Imports through ``importlib.import_module("...")`` strings are not seen; diffprof uses them only
for registries inside one package (executors, lazy ``__init__`` exports).

A module belongs to its top-level package (``diffprof.engine.fast`` -> ``engine``,
``diffprof.config`` -> ``config``); packages sit in the layers of :data:`LAYERS`. An import may go
to the same or a lower layer, and the packages' import graph may have no cycle. The tests
(tests/test_layers.py) hold today's known exceptions; this script only reports. Standard library
only, so it runs before anything is installed; kept out of the package because users of diffprof
never need it.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "diffprof"
MAX_LINES = 400

#: Layer of each top-level package or module of diffprof (issue 20's target layering).
LAYERS: dict[str, int] = {
    # 0 foundation: no diffprof imports above it; ``diffprof`` itself is the package root
    # (__version__ and lazy exports through importlib); ``request`` is GenerationRequest, plain data
    # the config schema builds and the engine runs; ``interrupts`` is SIGINT/SIGTERM as one exception and
    # what an interrupted run kept (the runner raises it, the CLI prints it)
    "diffprof": 0, "errors": 0, "units": 0, "stats": 0, "fileio": 0, "clock": 0, "metrics": 0, "results": 0,
    "request": 0, "interrupts": 0,
    # 1
    "models": 1, "environment": 1, "profiler": 1, "analysis": 1,
    # 2: the config schema
    "config": 2,
    # 3
    "engine": 3, "flops": 3, "device": 3, "quality": 3,
    # 4
    "suites": 4, "estimate": 4, "store": 4,
    # 5
    "tune": 5, "report": 5,
    # 6 entry points
    "cli": 6, "seo": 6, "__main__": 6,
}


@dataclass(frozen=True)
class Import:
    """One diffprof-internal import: ``source`` imports ``target`` (dotted, without ``diffprof.``)."""

    source: str
    target: str
    path: Path
    line: int
    where: str  # "module", "function" or "type-checking"

    @property
    def source_package(self) -> str:
        return package_of(self.source)

    @property
    def target_package(self) -> str:
        return package_of(self.target)


def package_of(module: str) -> str:
    """``engine.fast`` -> ``engine``; the package root ``""`` -> ``diffprof``."""
    return module.split(".")[0] if module else "diffprof"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module under src/diffprof by dotted name (``""`` is the package root)."""
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """``diffprof.engine.fast`` -> ``engine.fast``; None for a module outside diffprof."""
    if name != "diffprof" and not name.startswith("diffprof."):
        return None
    name = name.removeprefix("diffprof").removeprefix(".")
    while name and name not in known:  # `from diffprof.engine.engine import Engine` is the module
        name = name.rpartition(".")[0]
    return name


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, where: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, where
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _walk(child, "function" if where == "module" else where)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), "type-checking")
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), where)
        else:
            yield from _walk(child, where)


def imports(root: Path = ROOT) -> list[Import]:
    """Every import of one diffprof module by another, with where it stands."""
    known = modules(root)
    found: list[Import] = []
    for source, path in known.items():
        is_package = path.name == "__init__.py"
        for node, where in _walk(ast.parse(path.read_text(encoding="utf-8"), str(path)), "module"):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                if node.level:  # relative: resolve against this module's package
                    base = ("diffprof." + source if source else "diffprof").split(".")
                    base = base[: len(base) - node.level + (1 if is_package else 0)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                # `from diffprof.engine import optimizations` imports the submodule itself
                names = [f"{stem}.{alias.name}" for alias in node.names] if stem else []
            for name in names:
                target = _resolve(name, known)
                if target is not None and target != source:
                    found.append(Import(source, target, path, node.lineno, where))
    return found


def upward(found: list[Import]) -> list[Import]:
    """Imports of a higher layer than the importer's (packages LAYERS lacks: see :func:`unmapped`)."""
    return [i for i in found if LAYERS.get(i.target_package, -1) > LAYERS.get(i.source_package, 99)]


def unmapped(root: Path = ROOT) -> set[str]:
    """Top-level packages or modules that LAYERS does not place."""
    return {package_of(m) for m in modules(root)} - set(LAYERS)


def package_cycles(found: list[Import]) -> list[tuple[str, ...]]:
    """Strongly connected groups of two or more packages in the package import graph (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for i in found:
        if i.source_package != i.target_package:
            graph.setdefault(i.source_package, set()).add(i.target_package)
            graph.setdefault(i.target_package, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[tuple[str, ...]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(tuple(sorted(group)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def long_modules(root: Path = ROOT, limit: int = MAX_LINES) -> dict[str, int]:
    """Modules over ``limit`` lines, by path relative to src/diffprof."""
    counts = {p.relative_to(root).as_posix(): len(p.read_text(encoding="utf-8").splitlines()) for p in root.rglob("*.py")}
    return {path: n for path, n in sorted(counts.items()) if n > limit}


def main() -> int:
    found = imports()
    problems = 0
    for name in sorted(unmapped()):
        print(f"not in LAYERS: {name}")
        problems += 1
    seen: set[tuple[str, str]] = set()
    for i in sorted(upward(found), key=lambda i: (i.source, i.target, i.line)):
        if (i.source, i.target) in seen:
            continue
        seen.add((i.source, i.target))
        print(f"upward ({i.where}): {i.source or 'diffprof'} (layer {LAYERS[i.source_package]}) -> {i.target} "
              f"(layer {LAYERS[i.target_package]})  {i.path.relative_to(ROOT.parents[1])}:{i.line}")
        problems += 1
    for group in package_cycles(found):
        print("cycle: " + " <-> ".join(group))
        problems += 1
    for path, n in long_modules().items():
        print(f"over {MAX_LINES} lines: {path} ({n})")
        problems += 1
    print(f"{problems} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
