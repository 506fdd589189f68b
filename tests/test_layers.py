"""Every module has a layer, and imports only flow down (or across, without a cycle).

Every import counts: module level, inside functions (lazy), and under ``TYPE_CHECKING``.
docs/architecture.md shows the same table.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mlmon

PACKAGE = Path(mlmon.__file__).parent

# Lowest first. A module is matched by its dotted name or by the longest package prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("leaves", ("mlmon._clock", "mlmon._files", "mlmon._handover", "mlmon.scheduler", "mlmon.stats", "mlmon.snapshot", "mlmon._catalog", "mlmon._jsonl")),
    ("vocabulary", ("mlmon.window", "mlmon._component", "mlmon.naming", "mlmon.tasks", "mlmon._values")),
    (
        "parts",
        (
            "mlmon.feedback", "mlmon.stores", "mlmon.reference", "mlmon._binning", "mlmon._profiles", "mlmon.drift", "mlmon.outputs",
            "mlmon.outcomes", "mlmon.quality", "mlmon.service", "mlmon.features", "mlmon.resources", "mlmon.segments",
        ),
    ),
    ("alerts", ("mlmon.alerts",)),
    ("emitters", ("mlmon.emitters",)),
    ("hot path and orchestration", ("mlmon.buffers", "mlmon.tracking", "mlmon.delivery", "mlmon._lifecycle", "mlmon._config", "mlmon.drain", "mlmon._segmented", "mlmon.fleet", "mlmon._env")),
    ("monitor", ("mlmon.monitor",)),
    ("public API", ("mlmon._default", "mlmon.testing", "mlmon.offline", "mlmon")),
    (
        "applications",
        ("mlmon.integrations", "mlmon.export", "mlmon.report", "mlmon._command", "mlmon.demo", "mlmon.cli", "mlmon.__main__"),
    ),
]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer_of(name: str) -> int:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = name == prefix or name.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    assert best is not None, f"{name} has no layer: add it to LAYERS (and docs/architecture.md)"
    return best[1]


def imports_of(name: str) -> set[str]:
    """The mlmon modules ``name`` imports, anywhere in its code."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return imports_in(path.read_text(), package)


def imports_in(source: str, package: str) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in MODULES else base)
    return {m for m in out if m == "mlmon" or m.startswith("mlmon.")}


def resolve(name: str) -> str:
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def test_every_module_has_a_layer() -> None:
    for name in MODULES:
        layer_of(name)


def test_imports_never_go_up_a_layer() -> None:
    upward = []
    for name in MODULES:
        for target in imports_of(name):
            target = resolve(target)
            if layer_of(target) > layer_of(name):
                upward.append(f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})")
    assert upward == []


def test_there_is_no_import_cycle() -> None:
    graph = {name: {resolve(t) for t in imports_of(name)} - {name} for name in MODULES}
    # A package's __init__ re-exports its modules: an edge into the package from one of its
    # own modules would be a cycle, and is one.
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_scheduler_and_stats_import_nothing_from_mlmon() -> None:
    assert imports_of("mlmon.scheduler") == set()
    for name in MODULES:
        if name.startswith("mlmon.stats."):
            assert {resolve(t) for t in imports_of(name)} <= {n for n in MODULES if n.startswith("mlmon.stats")}, name


def test_the_checker_sees_lazy_type_checking_and_relative_imports() -> None:
    src = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from mlmon.monitor import Monitor\n"
        "def f():\n    from mlmon import tracking\n    from . import outputs\n    import mlmon.alerts.rules\n"
    )
    assert imports_in(src, "mlmon") == {"mlmon.monitor", "mlmon.tracking", "mlmon.outputs", "mlmon.alerts.rules"}
    assert layer_of("mlmon.monitor") > layer_of("mlmon.quality")
