"""The package's shape, guarded: a Dagster-free core laid out as the loop, a thin Dagster layer, serving
that loads no Dagster, and `definitions` imported by nothing.

Read from the source (every import statement, also the deferred ones inside functions), so a lazy
`import dagster` in the core fails here as surely as a top-level one.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mlops_pipeline"
#: Modules allowed to import dagster: the Dagster layer and the CLI that launches its runs.
DAGSTER_LAYER = ("mlops_pipeline.defs", "mlops_pipeline.cli")
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, absolute or relative, at any depth of the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _modules() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _in(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_core_and_serving_import_no_dagster_anywhere_in_their_source():
    offenders = {
        name: sorted(i for i in imports if _in(i, ("dagster", "dagster_aws", "mlops_pipeline.defs")))
        for name, imports in _modules().items()
        if not _in(name, DAGSTER_LAYER)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_nothing_but_the_cli_imports_the_definitions():
    importers = sorted(name for name, imports in _modules().items()
                       if "mlops_pipeline.defs.definitions" in imports
                       and not _in(name, ("mlops_pipeline.cli",)))
    assert importers == []


def test_the_package_has_no_import_cycle():
    """Edges between the package's modules (a `from pkg import name` counts for pkg.name when that is a
    module); a cycle means two concepts without one home."""
    modules = _modules()
    graph = {name: {i for i in imports if i in modules and i != name} for name, imports in modules.items()}
    # A package's __init__ importing its own submodules is how a package exposes its names, not a cycle.
    for name, edges in graph.items():
        graph[name] = {e for e in edges if not e.startswith(name + ".")}
    visiting, done, cycles = set(), set(), []

    def visit(node: str, path: list[str]) -> None:
        visiting.add(node)
        for nxt in sorted(graph[node]):
            if nxt in visiting:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in done:
                visit(nxt, [*path, nxt])
        visiting.discard(node)
        done.add(node)

    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    assert cycles == []


def test_no_module_is_over_the_size_a_reader_can_hold():
    sizes = {_module_name(p): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_importing_the_serving_app_or_the_core_clients_loads_no_dagster():
    """What the import graph promises, checked in a fresh interpreter: serving and the CLI's plain
    clients start without Dagster (about a third of the serving app's import time)."""
    code = ("import sys, mlops_pipeline.serving.app, mlops_pipeline.deployment.registry, "
            "mlops_pipeline.data.snapshots, mlops_pipeline.monitoring.predictions; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'dagster_aws') "
            "or m.startswith('mlops_pipeline.defs')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
