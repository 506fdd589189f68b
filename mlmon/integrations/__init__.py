"""Integrations with model libraries and web frameworks, each imported on first use.

- :mod:`mlmon.integrations.sklearn`: :func:`~mlmon.integrations.sklearn.monitor_estimator`
  wraps a fitted scikit-learn estimator (task, reference and tracking in one call).
- :mod:`mlmon.integrations.asgi`: request ids as prediction ids, a ``/metrics`` endpoint
  served by the application itself, and a ``lifespan`` (or ``ShutdownMiddleware``) that closes
  the monitors at the server's shutdown (plain ASGI: FastAPI, Starlette, Quart, ...).
- :mod:`mlmon.integrations.gunicorn`: ``worker_exit``/``on_exit`` hooks that close each
  process's monitors, and a ``child_exit`` hook that removes the Prometheus ``file_sd`` target
  of a worker that was killed.
- :mod:`mlmon.integrations.signals`: an opt-in ``SIGTERM`` handler that closes every monitor,
  then lets the signal end the process as before.

See ``docs/integrations.md``.

None of them imports its library before you use it: ``import mlmon`` never needs scikit-learn
or a web framework.

>>> import mlmon.integrations
>>> sorted(mlmon.integrations.__all__)
['MetricsEndpoint', 'MonitoredEstimator', 'RequestIdMiddleware', 'ShutdownMiddleware', 'current_request_id',
 'install_sigterm_handler', 'lifespan', 'monitor_estimator']
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "MetricsEndpoint",
    "MonitoredEstimator",
    "RequestIdMiddleware",
    "ShutdownMiddleware",
    "current_request_id",
    "install_sigterm_handler",
    "lifespan",
    "monitor_estimator",
]

_LAZY = {
    "MonitoredEstimator": "mlmon.integrations.sklearn",
    "monitor_estimator": "mlmon.integrations.sklearn",
    "MetricsEndpoint": "mlmon.integrations.asgi",
    "RequestIdMiddleware": "mlmon.integrations.asgi",
    "current_request_id": "mlmon.integrations.asgi",
    "ShutdownMiddleware": "mlmon.integrations.asgi",
    "lifespan": "mlmon.integrations.asgi",
    "install_sigterm_handler": "mlmon.integrations.signals",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlmon.integrations' has no attribute {name!r}")
