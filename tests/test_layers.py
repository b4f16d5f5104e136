"""Imports point down: the import graph, read from the package's source, has layers and no cycle.

Every module of ``tenancy`` is placed in one layer of :data:`LAYERS`, lowest
first. A module may import modules of its own layer or of a lower one, never of
a higher one, and no chain of imports may come back to where it started. Every
import counts: module level, inside a function, and under ``TYPE_CHECKING``.
An import names a module (``from .models import Tenant`` is an edge to
``tenancy.models``; ``from . import signals`` to ``tenancy.signals``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tenancy

PACKAGE = "tenancy"

# Lowest first. A new module goes into the layer of what it is for; docs/architecture.md
# shows the same table. Reserved names (cache, storage, rls, db, otel, contrib.celery,
# contrib.channels, pytest_plugin, testing) are placed ahead of the modules.
LAYERS: list[tuple[str, list[str]]] = [
    # outage: the guard every cache call goes through, and the database outage error.
    ("plumbing", ["conf", "exceptions", "signals", "outage", "memo"]),
    ("ids", ["ids"]),
    # The one ContextVar, and the counters every switch bumps: plain Python, no database.
    ("context", ["current", "stats", "stats.counters"]),
    # What a tenant is, in the database and in the caches of its state.
    ("tenant state", ["models.tenants", "state", "overlay"]),
    ("registry", ["registry", "context", "membership"]),
    (
        "scoped data",
        [
            "guards",
            "related",
            "managers",
            "models",
            "cache",
            "storage",
            "rls",
            "db",
            "db.*",
        ],
    ),
    (
        "statistics",
        ["stats.upsert", "stats.shared", "stats.rollup", "stats.flush", "stats.report"],
    ),
    (
        "services",
        [
            "runtime",
            "memory",
            "log",
            "otel",
            "propagation",
            "contrib",
            "contrib.requests",
            "contrib.httpx",
        ],
    ),
    (
        "request path",
        ["resolvers", "request", "binding", "middleware", "decorators", "permissions"],
    ),
    (
        "admin and commands",
        [
            "admin",
            "admin.*",
            "management",
            "management.run",
            "management.commands",
            "management.commands.*",
            "checks",
            "receivers",
            "apps",
            "contrib.celery",
            "contrib.channels",
            "pytest_plugin",
            "testing",
            "migrations",
            "migrations.*",
        ],
    ),
    # The package root re-exports the public API (lazily for what needs the registry).
    ("public API", [""]),
]


def module_name(root: Path, path: Path) -> str:
    """Return the dotted name of *path* relative to the package directory *root* ("" for root)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(root: Path, name: str) -> bool:
    return (root.joinpath(*name.split(".")) / "__init__.py").is_file() if name else True


def import_graph(root: Path) -> dict[str, set[str]]:
    """Return ``{module: modules it imports}`` for the package in *root*, within the package."""
    modules = {module_name(root, p): p for p in root.rglob("*.py")}
    package = root.name
    graph: dict[str, set[str]] = {}

    def resolve(name: str) -> str | None:
        # The longest prefix of *name* that is a module of the package.
        parts = name.split(".")
        while parts:
            candidate = ".".join(parts)
            if candidate in modules:
                return candidate
            parts.pop()
        return "" if name == "" else None

    for name, path in modules.items():
        edges: set[str] = set()
        this_package = name if is_package(root, name) else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == package or alias.name.startswith(package + "."):
                        targets.append(alias.name[len(package) + 1 :])
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = this_package.split(".") if this_package else []
                    if node.level > 1:
                        base = base[: len(base) - (node.level - 1)]
                    if node.module:
                        base = [*base, *node.module.split(".")]
                    origin = ".".join(base)
                elif node.module == package or (node.module or "").startswith(package + "."):
                    origin = node.module[len(package) + 1 :]  # type: ignore[index]
                else:
                    continue
                for alias in node.names:
                    # ``from . import signals`` imports the module tenancy.signals.
                    sub = f"{origin}.{alias.name}" if origin else alias.name
                    targets.append(sub if sub in modules else origin)
            for target in targets:
                resolved = resolve(target)
                if resolved is not None and resolved != name:
                    edges.add(resolved)
        graph[name] = edges
    return graph


def layer_of(name: str) -> int | None:
    for index, (_title, members) in enumerate(LAYERS):
        for member in members:
            if member == name or (member.endswith(".*") and name.startswith(member[:-1])):
                return index
    return None


def label(name: str) -> str:
    return f"{PACKAGE}.{name}" if name else PACKAGE


def problems(graph: dict[str, set[str]]) -> list[str]:
    """Return one sentence per unplaced module, upward import and import cycle."""
    found = []
    for name in sorted(graph):
        if layer_of(name) is None:
            found.append(
                f"{label(name)} is in no layer: add it to LAYERS in tests/test_layers.py, in "
                "the layer of what it is for (it may import its own layer and those below)."
            )
    for name in sorted(graph):
        here = layer_of(name)
        for target in sorted(graph[name]):
            there = layer_of(target)
            if here is not None and there is not None and there > here:
                found.append(
                    f"{label(name)} (layer {LAYERS[here][0]!r}) imports {label(target)} "
                    f"(layer {LAYERS[there][0]!r}, above it): move what it needs down, "
                    "or have the caller pass it in."
                )
    found.extend(f"import cycle: {' -> '.join(map(label, cycle))}" for cycle in cycles(graph))
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return one cycle per strongly connected group of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
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
            if len(group) > 1:
                found.append([*sorted(group), sorted(group)[0]])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_import_points_down_and_nothing_imports_in_a_circle():
    root = Path(tenancy.__file__).parent
    assert problems(import_graph(root)) == []


def test_the_graph_sees_function_level_and_relative_imports():
    graph = import_graph(Path(tenancy.__file__).parent)
    assert "current" in graph["registry"]
    assert "signals" in graph["registry"]  # from . import signals
    assert "models.tenants" in graph["registry"]  # inside a function
    assert "stats.counters" in graph["registry"]
    assert "registry" in graph["admin.tenants"]  # from ..registry import


@pytest.fixture
def toy(tmp_path):
    """A package laid out like tenancy: ``ids`` at the bottom, ``registry`` above it."""
    root = tmp_path / PACKAGE
    (root / "stats").mkdir(parents=True)
    (root / "__init__.py").write_text("from .ids import check\n")
    (root / "ids.py").write_text("def check():\n    return True\n")
    (root / "registry.py").write_text("from .ids import check\n")
    (root / "stats" / "__init__.py").write_text("")
    (root / "stats" / "counters.py").write_text("from ..ids import check\n")
    return root


def test_a_clean_toy_package_passes(toy):
    assert problems(import_graph(toy)) == []


def test_an_upward_import_inside_a_function_fails(toy):
    (toy / "ids.py").write_text("def check():\n    from .registry import x\n    return x\n")
    found = problems(import_graph(toy))
    assert any("tenancy.ids (layer 'ids') imports tenancy.registry" in p for p in found), found
    assert any(p.startswith("import cycle: tenancy.ids -> tenancy.registry") for p in found)


def test_an_upward_import_under_type_checking_fails(toy):
    (toy / "stats" / "counters.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tenancy.registry import x\n"
    )
    found = problems(import_graph(toy))
    assert any(
        "tenancy.stats.counters (layer 'context') imports tenancy.registry" in p for p in found
    )


def test_a_module_in_no_layer_fails_with_a_hint(toy):
    (toy / "novelty.py").write_text("from . import ids\n")
    found = problems(import_graph(toy))
    assert found == [
        "tenancy.novelty is in no layer: add it to LAYERS in tests/test_layers.py, in the "
        "layer of what it is for (it may import its own layer and those below)."
    ]
