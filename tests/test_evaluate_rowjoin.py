"""evaluate's one-batch prediction store (_RowJoin) with the probability rows the quality part
records, on batches of one row too (the single-label join): a chunk equals a live monitor."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
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


def test_a_range_of_ids_joins_as_the_same_ids_in_an_array() -> None:
    """Ids given as a range (evaluate's batches whose every row has a label) take slices, not
    a search, when each row's prediction is waiting for its first label; any other batch
    takes the search. Same joined rows and counters either way."""
    from mlmon.offline import _RowJoin

    rng = np.random.default_rng(3)
    preds = rng.uniform(size=100)
    preds[[10, 11]] = np.nan  # not stored: no label can join them

    def fresh() -> _RowJoin:
        store = _RowJoin()
        keys = np.arange(500, 600, dtype=np.int64)
        store.record_keys(keys, np.ones(100, dtype=np.bool_), preds, now=0.0)
        return store

    labels = rng.integers(0, 2, size=100).astype(np.float64)
    cases = [
        (range(520, 560), np.ones(40, dtype=np.bool_)),  # all waiting: slices
        (range(500, 540), np.ones(40, dtype=np.bool_)),  # two not stored: the search
        (range(560, 600), rng.random(40) < 0.5),  # invalid labels: the search
        (range(590, 620), np.ones(30, dtype=np.bool_)),  # past the batch: the search
        (range(480, 510), np.ones(30, dtype=np.bool_)),  # before it
    ]
    from mlmon import offline

    searched: list[int] = []
    real_keys = offline.id_keys

    def keys_spy(ids: Any) -> Any:
        searched.append(len(ids))
        return real_keys(ids)

    a, b = fresh(), fresh()
    for i, (ids, valid) in enumerate(cases * 2):  # the second time, every prediction is a duplicate
        lab = labels[: len(ids)]
        searched.clear()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(offline, "id_keys", keys_spy)
            x = a.join(ids, lab, valid, 0.0)
        assert (searched == []) == (i == 0)  # only the first case, all waiting, takes slices
        y = b.join(np.arange(ids.start, ids.stop), lab, valid, 0.0)
        np.testing.assert_array_equal(x.preds, y.preds)
        np.testing.assert_array_equal(x.labels, y.labels)
        np.testing.assert_array_equal(x.delays, y.delays)
        counters = ("joined", "duplicate", "unmatched", "invalid", "_pending", "_labelled")
        assert [getattr(a, c) for c in counters] == [getattr(b, c) for c in counters]
        np.testing.assert_array_equal(a._state, b._state)
    # Independently: each stored id joins its first valid label.
    stored = {500 + i for i in range(100) if np.isfinite(preds[i])}
    first = {i for ids, valid in cases for i, ok in zip(ids, valid, strict=True) if ok and i in stored}
    assert a.joined == len(first) > 40
    assert a.duplicate > 0
