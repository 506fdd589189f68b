"""evaluate's one-batch prediction store (_RowJoin) with the probability rows the quality part
records, on batches of one row too (the single-label join): a chunk equals a live monitor."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from test_evaluate import assert_chunks_equal_live

import mlmon


def test_multiclass_rows_and_one_row_batches_equal_a_live_monitor() -> None:
    rng = np.random.default_rng(21)
    n = 800
    p = rng.dirichlet([1, 1, 1], size=n)
    p[5] = np.nan
    y: list[Any] = list(rng.choice(["a", "b", "c"], n))
    y[399] = "b"  # the one-row batch of the first chunk has a label
    log = pd.DataFrame({"a": p[:, 0], "b": p[:, 1], "c": p[:, 2], "y": pd.Series(y, dtype=object), "x": rng.normal(size=n)})
    task = mlmon.MulticlassClassification(classes=["a", "b", "c"])
    # Chunks of 400 in batches of 133: 133, 133, 133 and a batch of one row.
    res = mlmon.evaluate(log, outputs=["a", "b", "c"], labels="y", features=["x"], chunk=400, task=task, batch_rows=133)
    assert (res["internal_errors"] == 0).all()
    assert res["mlmon_labels_total"].sum() == n - 1  # row 5's output is unreadable
    assert_chunks_equal_live(res, log, 400, batch=133, outputs=["a", "b", "c"], features=["x"], labels="y", task=task, feature_names=["x"])
