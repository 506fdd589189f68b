"""Realized score metrics through a shared RedisStore: the score rides with the class."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

import mlmon
from mlmon.stores import RedisStore

pytestmark = pytest.mark.integration


def test_roc_auc_and_log_loss_of_labels_joined_in_another_monitor(redis_server: Any) -> None:
    rng = np.random.default_rng(0)
    n = 2000
    scores = rng.random(n)
    labels = (rng.random(n) < scores).astype(int)
    ids = [f"req-{i}" for i in range(n)]
    a, b = (
        mlmon.Monitor("shared_scores", task=mlmon.BinaryClassification(), window=600.0, flush_interval=60.0,
                      store=RedisStore(redis_server.url, retry_for=5.0))
        for _ in range(2)
    )  # fmt: skip
    try:
        predict = a.track(ids="rid")(lambda x, rid: x)
        for i in range(0, n, 100):
            predict(scores[i : i + 100], ids[i : i + 100])
        a.flush()  # the background cycle writes the predictions
        b.log_feedback(ids, labels.tolist())  # the labels arrive in another worker
        snap = b.flush()
        assert snap.get("mlmon_labels_total") == n
        exact = roc_auc_score(labels, scores)
        assert abs(snap.get("mlmon_roc_auc") - exact) <= snap.get("mlmon_roc_auc_error_bound") + 1e-12
        assert snap.get("mlmon_log_loss") == pytest.approx(log_loss(labels, scores), rel=1e-9)
        assert snap.get("mlmon_brier_score") == pytest.approx(brier_score_loss(labels, scores), rel=1e-9)
    finally:
        a.close()
        b.close()
