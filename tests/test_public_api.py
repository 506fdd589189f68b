"""The public surface is exactly what the docs promise (imports: tests/test_layers.py)."""

from __future__ import annotations

from pathlib import Path

import mlmon
import mlmon.emitters
import mlmon.testing

PACKAGE = Path(mlmon.__file__).parent


def test_top_level_surface_is_exactly_what_the_docs_promise() -> None:
    expected = {
        "BinaryClassification", "CATALOG", "Call", "DriftConfig", "FakeClock", "Fleet", "MetricInfo",
        "Monitor", "MulticlassClassification", "Reference", "Regression", "Sample", "Snapshot",
        "Track", "__version__", "configure", "flush", "get_monitor", "log_feedback", "log_outcome",
        "snapshot", "track", "emitter_from_url", "emitters_from_env", "evaluate", "by_feature",
        "set_background_switch_interval",
    }  # fmt: skip
    assert expected == set(mlmon.__all__)
    for name in mlmon.__all__:
        assert hasattr(mlmon, name), name


def test_testing_surface() -> None:
    assert {"FakeClock", "InMemoryEmitter"} == set(mlmon.testing.__all__)


def test_emitters_surface() -> None:
    assert {"ConsoleEmitter", "Emitter", "GraphiteEmitter", "InMemoryEmitter", "JsonlEmitter",
            "PrometheusEmitter", "StatsdEmitter", "check_collisions", "OtlpEmitter"} == set(mlmon.emitters.__all__)  # fmt: skip


def test_py_typed_is_shipped() -> None:
    assert (PACKAGE / "py.typed").exists()
