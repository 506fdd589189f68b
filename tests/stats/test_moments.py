"""Moments against numpy on every prefix, merge == concatenation, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlmon.stats import Moments

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


def test_every_prefix_matches_numpy() -> None:
    x = np.random.default_rng(0).normal(3.0, 2.0, 300)
    m = Moments()
    for i, v in enumerate(x, 1):
        m.update(v)
        assert m.count == i
        assert m.mean == pytest.approx(x[:i].mean(), rel=1e-12, abs=1e-12)
        assert m.variance == pytest.approx(x[:i].var(), rel=1e-9, abs=1e-12)
        assert (m.min, m.max) == (x[:i].min(), x[:i].max())


@settings(max_examples=200, deadline=None)
@given(a=st.lists(finite, max_size=40), b=st.lists(finite, max_size=40))
def test_merge_equals_one_fed_everything(a: list[float], b: list[float]) -> None:
    ma, mb, mall = Moments(), Moments(), Moments()
    ma.update_many(a)
    mb.update_many(b)
    mall.update_many(a + b)
    ma.merge(mb)
    assert ma.count == mall.count
    if mall.count:
        assert ma.mean == pytest.approx(mall.mean, rel=1e-9, abs=1e-6)
        assert ma.variance == pytest.approx(mall.variance, rel=1e-7, abs=1e-3)
        assert (ma.min, ma.max) == (mall.min, mall.max)


@settings(max_examples=100, deadline=None)
@given(xs=st.lists(finite, min_size=1, max_size=50))
def test_update_many_equals_a_loop_of_update(xs: list[float]) -> None:
    batch, loop = Moments(), Moments()
    batch.update_many(xs)
    for x in xs:
        loop.update(x)
    assert batch.count == loop.count
    assert batch.mean == pytest.approx(loop.mean, rel=1e-9, abs=1e-6)
    assert batch.variance == pytest.approx(loop.variance, rel=1e-6, abs=1e-3)


def test_empty_one_value_and_all_equal() -> None:
    m = Moments()
    assert m.count == 0 and math.isnan(m.variance) and math.isnan(m.sample_variance)
    m.update(4.0)
    assert (m.mean, m.variance) == (4.0, 0.0) and math.isnan(m.sample_variance)
    m.update_many([4.0] * 10)
    assert (m.count, m.mean, m.variance) == (11, 4.0, 0.0)


def test_non_finite_values_are_ignored() -> None:
    m = Moments()
    m.update_many([1.0, math.nan, math.inf, -math.inf, 3.0])
    m.update(math.nan)
    assert (m.count, m.mean) == (2, 2.0)


def test_large_offset_small_spread_is_accurate() -> None:
    # A running sum of squares would lose every digit here.
    x = 1e9 + np.random.default_rng(1).normal(0, 1e-3, 10_000)
    m = Moments()
    for chunk in np.array_split(x, 37):
        m.update_many(chunk)
    assert m.variance == pytest.approx(x.var(), rel=1e-4)  # float64 holds ~7 digits of the spread here
