"""With a shared prediction store (Redis) the store keeps only each prediction's class: the
multiclass row metrics are absent, while the confusion metrics join as before."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import mlmon
from mlmon.stores import RedisStore

pytestmark = pytest.mark.integration

RANKED = ("mlmon_top_k_accuracy", "mlmon_roc_auc", "mlmon_pr_auc")


def test_row_metrics_are_absent_for_predictions_in_a_shared_store(redis_server: Any) -> None:
    rng = np.random.default_rng(1)
    task = mlmon.MulticlassClassification(classes=["a", "b", "c", "d"])
    rows = rng.dirichlet(np.ones(4), size=200)
    labels = [task.classes[i] for i in rng.integers(0, 4, 200)]
    mon = mlmon.Monitor("rows", task=task, store=RedisStore(redis_server.url, retry_for=5.0), flush_interval=60.0, window=600.0)
    try:
        predict = mon.track(ids="rid")(lambda x, rid: x)
        predict(rows, rid=[f"r{i}" for i in range(200)])
        mon.flush()  # the background cycle writes the predictions
        mon.log_feedback([f"r{i}" for i in range(200)], labels)
        snap = mon.flush()
        assert snap.get("mlmon_labels_total") == 200 and snap.get("mlmon_accuracy") is not None
        assert not [s for s in snap.samples if s.name in RANKED]
    finally:
        mon.close()
