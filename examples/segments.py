"""Segments: a fraud model that is fine on average and fails in one market.

A scikit-learn model scores card payments from three markets. Its reference keeps a profile per
market. Halfway through, the payments of the smallest market ("pt", 10% of the traffic) grow
and stop following the model: overall precision falls by about a tenth, "pt"'s collapses, its
amount drifts against its own profile, and a `Shift` rule fanned out over the segments fires for
"pt" only. The snapshots go to a JSON-lines log, from which the HTML report (with its Segments
section) is built at the end.

Run: python examples/segments.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import mlmon
from mlmon import report
from mlmon.alerts import AlertBudget, Shift
from mlmon.emitters import JsonlEmitter
from mlmon.testing import FakeClock

rng = np.random.default_rng(11)
MARKETS = np.array(["es", "fr", "pt"])
SHARES = [0.6, 0.3, 0.1]


def payments(n: int, shifted: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    market = rng.choice(MARKETS, size=n, p=SHARES)
    amount = rng.gamma(2.0, 40.0, n)
    hour = rng.integers(0, 24, n).astype(float)
    p_fraud = 1.0 / (1.0 + np.exp(-(amount - 100.0) / 15.0))
    if shifted:  # in pt, amounts grow by half and fraud no longer follows them
        pt = market == "pt"
        amount[pt] *= 1.5
        p_fraud[pt] = 0.1
    fraud = rng.uniform(size=n) < p_fraud
    return pd.DataFrame({"amount": amount, "hour": hour, "market": market}), fraud.astype(int)


train, y_train = payments(20_000)
model = LogisticRegression(max_iter=1000).fit(train[["amount", "hour"]], y_train)
reference = mlmon.Reference.from_data(train, feature_names=["amount", "hour"], segment="market", min_segment_rows=500)

clock = FakeClock()
log = Path(tempfile.mkdtemp()) / "fraud.jsonl"
rules = [Shift("mlmon_precision", effect=0.25, baseline="reference", labels={"segment": "*"}, min_effect=0.2)]
mon = mlmon.Monitor(
    "fraud", task=mlmon.BinaryClassification(threshold=0.5), reference=reference, clock=clock,
    window=600.0, flush_interval=30.0, rules=rules, alert_budget=AlertBudget(false_alarms=1, per="week"),
    reference_values={"mlmon_precision": 0.85}, emitters=[JsonlEmitter(str(log))],
)  # fmt: skip


@mon.track(features="X", ids="ids", segment=mlmon.by_feature("market"))
def score(X: pd.DataFrame, ids: list[str]) -> np.ndarray:
    return model.predict_proba(X[["amount", "hour"]])[:, 1]


fired = []
before = None
for step in range(80):
    X, y = payments(400, shifted=step >= 40)
    ids = [f"{step}-{i}" for i in range(len(X))]
    score(X, ids)
    mon.log_feedback(ids, y)  # labels joined by id, each to its prediction's market
    clock.advance(30.0)
    snap = mon.flush()
    if step == 39:
        before = snap.get("mlmon_precision")
    for alert in snap.alerts:
        if alert.state == "firing" and (step, alert.labels) not in fired:
            fired.append((step, alert.labels))

snap = mon.snapshot()
print(f"overall precision {before:.2f} before the change, {snap.get('mlmon_precision'):.2f} after")
for market in MARKETS:
    print(f"  {market}: precision {snap.get('mlmon_precision', segment=market):.2f}, "
          f"amount drift status {snap.get('mlmon_feature_drift_status', feature='amount', segment=market):.0f}, "
          f"own reference {snap.get('mlmon_segment_reference', segment=market):.0f}")  # fmt: skip
first = {dict(labels).get("segment") for step, labels in fired}
print("alerts fired for segments:", sorted(s for s in first if s))
mon.close()
assert first == {"pt"}, first

page, info = report.build(str(log))
out = log.with_suffix(".html")
out.write_text(page, encoding="utf-8")
assert "Segments" in page
print(f"report: {out}")
