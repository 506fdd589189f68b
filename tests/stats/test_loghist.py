"""LogHistogram: every quantile within the documented 1% of the exact order statistic."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlmon.stats import LogHistogram

QS = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999)


def assert_within(h: LogHistogram, data: np.ndarray, rel: float = 0.01) -> None:
    for q in QS:
        exact = float(np.quantile(data, q, method="lower"))
        got = h.quantile(q)
        assert abs(got - exact) <= rel * abs(exact) + 1e-12, (q, exact, got)


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(0).lognormal(-6, 2, 20_001),  # latencies from µs to s
        np.random.default_rng(1).uniform(0, 1, 5_000),  # scores
        np.random.default_rng(2).normal(0, 10, 5_000),  # signed values
        np.r_[np.zeros(50), np.ones(50)],  # many ties, zeros
        np.array([7.5]),
    ],
)
def test_quantiles_within_one_percent(data: np.ndarray) -> None:
    h = LogHistogram()
    h.add_many(data)
    assert h.count == data.size
    assert_within(h, data)
    assert (h.quantile(0.0), h.quantile(1.0)) == (data.min(), data.max())


@settings(max_examples=100, deadline=None)
@given(
    a=st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), max_size=50),
    b=st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), max_size=50),
)
def test_merge_equals_one_fed_everything(a: list[float], b: list[float]) -> None:
    ha, hb, hall = LogHistogram(), LogHistogram(), LogHistogram()
    ha.add_many(a)
    hb.add_many(b)
    hall.add_many(a + b)
    ha.merge(hb)
    assert ha.count == hall.count
    for q in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert ha.quantile(q) == hall.quantile(q) or (math.isnan(ha.quantile(q)) and math.isnan(hall.quantile(q)))


def test_empty_is_nan_and_non_finite_ignored() -> None:
    h = LogHistogram()
    assert math.isnan(h.quantile(0.5))
    h.add_many([math.nan, math.inf, -math.inf])
    assert h.count == 0
    h.add(2.0)
    assert h.quantile(0.5) == 2.0


def test_values_outside_range_keep_exact_extremes() -> None:
    h = LogHistogram(max_value=1e3)
    h.add_many([1e-12, 5.0, 1e6])
    assert h.quantile(1.0) == 1e6 and h.quantile(0.0) == 1e-12
    assert h.quantile(0.5) == pytest.approx(5.0, rel=0.01)


def test_reset_and_bad_parameters() -> None:
    h = LogHistogram()
    h.add_many([1.0, -1.0])
    h.reset()
    assert h.count == 0 and math.isnan(h.quantile(0.5))
    with pytest.raises(ValueError, match="q"):
        h.quantile(1.5)
    with pytest.raises(ValueError, match="rel_error"):
        LogHistogram(rel_error=0.0)
    with pytest.raises(ValueError, match="different parameters"):
        LogHistogram(rel_error=0.02).merge(_filled(LogHistogram()))


def _filled(h: LogHistogram) -> LogHistogram:
    h.add(1.0)
    return h
