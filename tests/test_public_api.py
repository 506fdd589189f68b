"""The public surface is what the docs promise, and imports flow one way."""

from __future__ import annotations

import ast
from pathlib import Path

import mlmon
import mlmon.emitters
import mlmon.testing

PACKAGE = Path(mlmon.__file__).parent


def test_top_level_surface() -> None:
    expected = {
        "CATALOG", "Call", "FakeClock", "MetricInfo", "Monitor", "Sample", "Snapshot", "Track",
        "__version__", "configure", "flush", "get_monitor", "log_feedback", "log_outcome",
        "snapshot", "track",
    }  # fmt: skip
    assert expected <= set(mlmon.__all__)
    for name in mlmon.__all__:
        assert hasattr(mlmon, name), name


def test_emitters_and_testing_surface() -> None:
    assert {"ConsoleEmitter", "JsonlEmitter", "InMemoryEmitter", "Emitter"} <= set(mlmon.emitters.__all__)
    assert set(mlmon.testing.__all__) == {"FakeClock", "InMemoryEmitter"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_layers_import_one_way() -> None:
    # stats are pure; emitters see only snapshots; neither knows the hot path or the reporter.
    forbidden = {
        "stats": ("mlmon.monitor", "mlmon.reporter", "mlmon._default", "mlmon.emitters", "mlmon.window"),
        "emitters": ("mlmon.monitor", "mlmon.reporter", "mlmon._default", "mlmon.window", "mlmon.features"),
    }
    for sub, bad in forbidden.items():
        for path in (PACKAGE / sub).glob("*.py"):
            hits = {m for m in _imports(path) if m.startswith(bad)}
            assert not hits, f"{path.name} imports {hits}"
    assert not {m for m in _imports(PACKAGE / "snapshot.py") if m.startswith("mlmon.")}


def test_py_typed_is_shipped() -> None:
    assert (PACKAGE / "py.typed").exists()
