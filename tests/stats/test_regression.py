"""RegressionErrors against numpy, merge == concatenation, non-finite pairs, empty."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlmon.stats.regression import RegressionErrors

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


def test_every_prefix_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    pred, true = rng.normal(5, 2, 200), rng.normal(5, 2, 200)
    e = RegressionErrors()
    for i in range(1, 201):
        e.update(pred[i - 1], true[i - 1])
        err = pred[:i] - true[:i]
        assert e.count == i
        assert e.mae() == pytest.approx(np.mean(np.abs(err)), rel=1e-12)
        assert e.rmse() == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-12)
        assert e.mean_error() == pytest.approx(np.mean(err), rel=1e-9, abs=1e-12)


def test_matches_scikit_learn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    pred, true = rng.normal(0, 3, 500), rng.normal(0, 3, 500)
    e = RegressionErrors()
    e.update_many(pred, true)
    assert e.mae() == pytest.approx(metrics.mean_absolute_error(true, pred))
    assert e.rmse() == pytest.approx(math.sqrt(metrics.mean_squared_error(true, pred)))


def test_empty_reads_none() -> None:
    e = RegressionErrors()
    assert (e.mae(), e.rmse(), e.mean_error()) == (None, None, None)


def test_non_finite_pairs_are_skipped() -> None:
    e = RegressionErrors()
    e.update_many([1.0, math.nan, math.inf, 4.0], [0.0, 1.0, 2.0, 5.0])
    e.update(math.nan, 1.0)
    assert e.count == 2
    assert e.mae() == 1.0
    assert e.mean_error() == 0.0


def test_sign_is_prediction_minus_label() -> None:
    e = RegressionErrors()
    e.update(3.0, 1.0)
    assert e.mean_error() == 2.0


def test_length_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="length"):
        RegressionErrors().update_many([1.0, 2.0], [1.0])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.tuples(finite, finite), max_size=20), min_size=1, max_size=4))
def test_merge_equals_one_fed_everything(parts: list[list[tuple[float, float]]]) -> None:
    merged, whole = RegressionErrors(), RegressionErrors()
    for part in parts:
        piece = RegressionErrors()
        piece.update_many([p for p, _ in part], [t for _, t in part])
        merged.merge(piece)
    pairs = [pair for part in parts for pair in part]
    whole.update_many([p for p, _ in pairs], [t for _, t in pairs])
    assert merged.count == whole.count
    if whole.count:
        assert merged.mae() == pytest.approx(whole.mae(), rel=1e-9, abs=1e-9)
        assert merged.rmse() == pytest.approx(whole.rmse(), rel=1e-9, abs=1e-9)
        assert merged.mean_error() == pytest.approx(whole.mean_error(), rel=1e-9, abs=1e-6)


def test_reset_forgets_everything() -> None:
    e = RegressionErrors()
    e.update(1.0, 0.0)
    e.reset()
    assert e.count == 0 and e.mae() is None
