"""A scikit-learn model, monitored in one call: task, drift reference and tracking.

Trains a churn classifier, wraps it with ``monitor_estimator`` (the task, the reference of the
validation data and the quality baseline come from the estimator), serves single-row requests
with ids — the second half with a shifted ``tenure`` feature — logs the true labels for most of
them, and prints what the monitor sees next to the validation baseline.

Run: python examples/sklearn_model.py   (needs scikit-learn)
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from mlmon.integrations.sklearn import monitor_estimator

FEATURES = ["tenure", "monthly_charges", "support_calls", "usage_drop"]
rng = np.random.default_rng(42)
X, y = make_classification(
    n_samples=6000, n_features=4, n_informative=3, n_redundant=0, random_state=42
)
X_train, y_train, X_val, y_val, X_live, y_live = X[:3000], y[:3000], X[3000:4500], y[3000:4500], X[4500:], y[4500:]

clf = LogisticRegression().fit(X_train, y_train)
# Validation data as the reference: drift is measured against it, and the model's quality on
# it becomes the baseline (training-set quality would be optimistic).
model = monitor_estimator(
    clf, X_val, y_val, name="churn", version="2024-06", feature_names=FEATURES, latency_budget=0.01
)
print(f"task: {model.task}")
print("validation baseline: " + ", ".join(f"{k}={v:.3f}" for k, v in model.reference_values.items()))

# Serve: one request per row; the second half of the traffic comes from a changed population
# (tenure shifted by 1.5 standard deviations).
served_ids: list[str] = []
for i, row in enumerate(X_live):
    features = row.copy()
    if i >= len(X_live) // 2:
        features[0] += 1.5 * X_train[:, 0].std()
    request_id = f"req-{i}"
    model.predict_proba(features.reshape(1, -1), ids=[request_id])  # scores [[p(0), p(1)]]
    served_ids.append(request_id)

# Later: the true labels of 80% of the requests come back and are joined by id.
labelled = rng.random(len(served_ids)) < 0.8
model.log_feedback(np.array(served_ids)[labelled], y_live[labelled])

snap = model.snapshot()
calls, rows = snap.get("mlmon_calls_total"), snap.get("mlmon_rows_total")
print(f"calls={calls:.0f} rows={rows:.0f} latency p99={1000 * snap.get('mlmon_latency_seconds', quantile='0.99'):.2f} ms "
      f"slow={snap.get('mlmon_slow_calls_total'):.0f}")
print(f"output mean={snap.get('mlmon_output_mean'):.3f} (validation {model.reference.outputs.mean:.3f}), "
      f"output drift PSI={snap.get('mlmon_output_drift_psi'):.3f}")
print(f"labels={snap.get('mlmon_labels_total'):.0f} coverage={snap.get('mlmon_label_coverage_ratio'):.2f} "
      f"precision={snap.get('mlmon_precision'):.3f} recall={snap.get('mlmon_recall'):.3f} f1={snap.get('mlmon_f1'):.3f}")
status = {0: "ok", 1: "warning", 2: "drift"}
for name in FEATURES:
    psi = snap.get("mlmon_feature_drift_psi", feature=name)
    print(f"  feature {name:<16} PSI={psi:6.3f}  {status[int(snap.get('mlmon_feature_drift_status', feature=name))]}")
model.close()

# The example checks itself, so a test that runs it catches a regression.
assert (calls, rows) == (len(X_live), len(X_live))
assert snap.get("mlmon_labels_total") == labelled.sum()
assert snap.get("mlmon_feature_drift_status", feature="tenure") == 2
assert snap.get("mlmon_feature_drift_status", feature="support_calls") == 0
