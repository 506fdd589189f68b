"""Emitters: where snapshots go. ``Emitter`` is the protocol (``emit(snapshot)`` + ``close()``).

``OtlpEmitter`` needs the ``otel`` extra (``pip install 'mlmon[otel]'``).
"""

from __future__ import annotations

from typing import Any

from mlmon.emitters.base import Emitter
from mlmon.emitters.console import ConsoleEmitter
from mlmon.emitters.jsonl import JsonlEmitter
from mlmon.emitters.memory import InMemoryEmitter
from mlmon.naming import check_collisions

__all__ = [
    "ConsoleEmitter",
    "Emitter",
    "GraphiteEmitter",
    "InMemoryEmitter",
    "JsonlEmitter",
    "OtlpEmitter",
    "PrometheusEmitter",
    "StatsdEmitter",
    "check_collisions",
]

_LAZY = {
    "StatsdEmitter": "mlmon.emitters.statsd",
    "GraphiteEmitter": "mlmon.emitters.graphite",
    "PrometheusEmitter": "mlmon.emitters.prometheus",
    "OtlpEmitter": "mlmon.emitters.otlp",  # needs the `otel` extra
}


def __getattr__(name: str) -> Any:
    # Network emitters are imported on first use, so `import mlmon` stays light.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlmon.emitters' has no attribute {name!r}")
