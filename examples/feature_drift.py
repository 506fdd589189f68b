"""Feature drift: profile the training data once, save it, serve with it, watch a feature drift.

Run: python examples/feature_drift.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

import mlmon
from mlmon.testing import FakeClock

rng = np.random.default_rng(11)
names = ["age", "income", "tenure"]

# Training time: a reference keeps only a summary (deciles, moments, missing rate) per feature.
X_train = np.column_stack([rng.normal(40, 10, 20_000), rng.lognormal(10, 0.5, 20_000), rng.exponential(3, 20_000)])
reference = mlmon.Reference.from_data(X_train, feature_names=names)
path = Path(tempfile.mkdtemp()) / "reference.json"
reference.save(path)
print(f"reference saved: {path.stat().st_size:,} bytes for {len(X_train):,} training rows")

# Serving time: load it and monitor. A fake clock makes the example fast and repeatable.
clock = FakeClock()
mon = mlmon.Monitor("churn", reference=mlmon.Reference.load(path), window=600.0, clock=clock)


@mon.track(features="X", outputs=False)
def predict(X: np.ndarray) -> None:
    """A model that does not matter here: we watch its inputs."""


for minute in range(20):
    X = np.column_stack([rng.normal(40, 10, 500), rng.lognormal(10, 0.5, 500), rng.exponential(3, 500)])
    if minute >= 10:
        X[:, 1] *= 1.6  # from minute 10, incomes arrive in another currency
        X[rng.random(500) < 0.1, 2] = np.nan  # and a tenth of tenures go missing
    predict(X)
    clock.advance(60.0)
    if minute in (9, 19):
        snap = mon.snapshot()
        print(f"after minute {minute + 1}:")
        for name in names:
            status = {0: "ok", 1: "warning", 2: "DRIFT"}[int(snap.get("mlmon_feature_drift_status", feature=name))]
            print(
                f"  {name:7s} psi={snap.get('mlmon_feature_drift_psi', feature=name):.3f} "
                f"ks={snap.get('mlmon_feature_drift_ks', feature=name):.3f} "
                f"missing={snap.get('mlmon_feature_missing_ratio', feature=name):.1%} {status}"
            )

snap = mon.snapshot()
assert snap.get("mlmon_feature_drift_status", feature="income") == 2
assert snap.get("mlmon_feature_drift_status", feature="age") == 0
assert snap.get("mlmon_feature_missing_ratio", feature="tenure") > 0.04
mon.close()
