"""The package structure of ``exchange``, read from the source with ``ast``: every
``import`` and ``from … import`` counts, at any indentation (inside functions and
``TYPE_CHECKING`` blocks too), so an import cannot hide from these checks.

* Only the HTTP layer (``exchange/api``), the composition root (``exchange/app.py``)
  and the server's commands (``exchange/cli``) import ``exchange.api``.
* The units of ``exchange`` (each subpackage and each top-level module:
  ``exchange.log``, ``exchange.anchoring``, ``exchange.auth``, ``exchange.records``,
  …) import each other one way only: their import graph has no cycle.
* Nothing is wired by ``setup.py`` files: ``exchange/app.py`` builds everything.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "exchange"

MAY_IMPORT_API = ("exchange.api", "exchange.app", "exchange.cli")
"""Units that may import the HTTP layer: itself, the composition root, the commands."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> Iterator[str]:
    """The ``exchange`` modules ``path`` imports, wherever the import statement is."""
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            yield source
            if source == "exchange":  # ``from exchange import records``: the module
                yield from (f"{source}.{alias.name}" for alias in node.names)


def _unit(module: str) -> str | None:
    """The unit a module belongs to: ``exchange.<first part>``, or None outside exchange."""
    parts = module.split(".")
    if parts[0] != "exchange" or len(parts) < 2:
        return None
    return ".".join(parts[:2])


def _units() -> set[str]:
    return {
        f"exchange.{p.stem}" if p.is_file() else f"exchange.{p.name}"
        for p in PACKAGE.iterdir()
        if (p.is_file() and p.suffix == ".py" and p.stem != "__init__")
        or (p.is_dir() and (p / "__init__.py").exists())
    }


def import_edges() -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) → the imports behind that arrow,
    ``"<module> -> <imported module>"``; imports within one unit are left out."""
    units = _units()
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        source = _unit(module)
        for imported in _imports(path):
            target = _unit(imported)
            if source is None or target is None or target == source or target not in units:
                continue
            edges.setdefault((source, target), []).append(f"{module} -> {imported}")
    return edges


def _cycles(edges: dict[tuple[str, str], list[str]]) -> list[list[str]]:
    """The strongly connected components with more than one unit (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for source, target in edges:
        graph.setdefault(source, set()).add(target)
        graph.setdefault(target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_graph_sees_imports_inside_functions() -> None:
    # exchange.app starts the auto-acceptor: the graph must know it uses exchange.orders
    # however the import is written.
    assert ("exchange.app", "exchange.orders") in import_edges()


def test_only_the_http_layer_the_composition_root_and_the_commands_import_the_api() -> None:
    offenders = [
        line
        for (source, target), lines in sorted(import_edges().items())
        if target == "exchange.api" and source not in MAY_IMPORT_API
        for line in lines
    ]
    assert offenders == []


def test_the_units_of_exchange_import_each_other_one_way_only() -> None:
    edges = import_edges()
    cycles = [
        {
            "units": component,
            "imports": [
                line
                for (source, target), lines in sorted(edges.items())
                if source in component and target in component
                for line in lines
            ],
        }
        for component in _cycles(edges)
    ]
    assert cycles == []


def test_there_are_no_setup_files_the_composition_root_wires_everything() -> None:
    assert sorted(str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("setup.py")) == []
