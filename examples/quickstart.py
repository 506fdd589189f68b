"""Quickstart: monitor a model's predict function and look at what mlmon sees.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import numpy as np

import mlmon
from mlmon.emitters import ConsoleEmitter

rng = np.random.default_rng(0)
weights = rng.normal(size=4)

mon = mlmon.Monitor("quickstart", version="1", latency_budget=0.01, emitters=[ConsoleEmitter()])


@mon.track(features="X")
def predict(X: np.ndarray) -> np.ndarray:
    """Scores for a batch of rows."""
    if not np.isfinite(X).all():
        raise ValueError("non-finite feature")
    return 1 / (1 + np.exp(-(X @ weights)))


for i in range(200):
    X = rng.normal(size=(16, 4))
    if i % 50 == 49:
        X[0, 0] = np.nan  # a bad request now and then
    try:
        predict(X)
    except ValueError:
        pass

snap = mon.flush()  # prints the table, returns the snapshot
print(f"calls={snap.get('mlmon_calls_total'):.0f} rows={snap.get('mlmon_rows_total'):.0f} "
      f"errors={snap.total('mlmon_errors_total'):.0f}")
mon.close()
