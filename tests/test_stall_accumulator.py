"""The feature accumulator's batch update, on every path it takes: all values finite (sorted
in place, the sorted ends are the minimum and maximum), missing values (masked), sums that
overflow, only some features binned, row- and column-major input. Each is checked against
numpy on the same values, and the caller's array is never modified."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlmon._binning import binned_counts
from mlmon.features import FeatureAccumulator, FeatureSchema
from mlmon.reference import NumericProfile, Reference

FEATURES = 4


def _schema(binned: str) -> FeatureSchema:
    rng = np.random.default_rng(3)
    data = rng.normal(size=(2000, FEATURES)) * [1.0, 10.0, 0.1, 1e6]
    if binned == "some":
        data[:, 2] = np.nan  # no reference values: feature 2 has no bins
    names = [f"x{j}" for j in range(FEATURES)]
    if binned == "none":
        return FeatureSchema(names)
    return FeatureSchema(reference=Reference.from_data(data, feature_names=names))


SCHEMAS = {k: _schema(k) for k in ("all", "some", "none")}


def _check(acc: FeatureAccumulator, X: np.ndarray) -> None:
    schema = acc.schema
    for j in range(FEATURES):
        col = X[:, j]
        ok = col[np.isfinite(col)]
        assert acc.count[j] == ok.size
        assert acc.missing[j] == X.shape[0] - ok.size
        if ok.size == 0:
            continue
        assert (acc.min[j], acc.max[j]) == (ok.min(), ok.max())
        with np.errstate(all="ignore"):
            mean, var = ok.mean(), ok.var()
            scale = max(abs(mean), np.sqrt(var), 1e-300)
            finite = np.isfinite([mean, var, scale * scale]).all()
        if finite:
            assert acc.mean[j] == pytest.approx(mean, rel=1e-9, abs=1e-12 * scale)
            assert acc.variance()[j] == pytest.approx(var, rel=1e-7, abs=1e-12 * scale * scale)
        edges = schema.edges[j]
        if edges is None:
            assert schema.hist_offsets[j] == schema.hist_offsets[j + 1]
        else:
            assert acc.cells(j).tolist() == binned_counts(ok, edges).tolist()


SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e308, -1e308, 5e-324])


@st.composite
def batches(draw: st.DrawFn) -> np.ndarray:
    n = draw(st.integers(1, 60))
    X = draw(arrays(np.float64, (n, FEATURES), elements=st.floats(-1e6, 1e6, allow_nan=False)))
    for _ in range(draw(st.integers(0, 6))):
        X[draw(st.integers(0, n - 1)), draw(st.integers(0, FEATURES - 1))] = draw(SPECIAL)
    return X


@settings(max_examples=150, deadline=None)
@given(st.lists(batches(), min_size=1, max_size=4), st.sampled_from(sorted(SCHEMAS)), st.booleans())
def test_batches_match_numpy_on_every_path(parts: list[np.ndarray], binned: str, fortran: bool) -> None:
    acc = FeatureAccumulator(SCHEMAS[binned])
    for part in parts:
        given_array = np.asfortranarray(part) if fortran else part
        before = given_array.copy()
        acc.update_batch(given_array)
        # The caller's rows are never sorted or overwritten in place.
        np.testing.assert_array_equal(given_array, before)
    _check(acc, np.concatenate(parts))


@pytest.mark.parametrize("binned", sorted(SCHEMAS))
def test_a_finite_batch_and_its_columns_one_by_one_agree(binned: str) -> None:
    rng = np.random.default_rng(11)
    X = rng.normal(size=(1000, FEATURES)) * [1.0, 10.0, 0.1, 1e6] + [0.0, 5.0, -3.0, 1e9]
    whole = FeatureAccumulator(SCHEMAS[binned])
    whole.update_batch(X)
    _check(whole, X)
    rows = FeatureAccumulator(SCHEMAS[binned])
    for part in np.array_split(X, 13):
        rows.update_batch(part)
    np.testing.assert_array_equal(whole.hist, rows.hist)
    np.testing.assert_array_equal(whole.min, rows.min)
    np.testing.assert_array_equal(whole.max, rows.max)
    np.testing.assert_allclose(whole.mean, rows.mean, rtol=1e-12)
    np.testing.assert_allclose(whole.variance(), rows.variance(), rtol=1e-9)


def test_a_sum_beyond_the_float_range_is_not_mistaken_for_a_missing_value() -> None:
    X = np.full((4, FEATURES), 1e308)  # finite values whose sums overflow
    acc = FeatureAccumulator(SCHEMAS["all"])
    acc.update_batch(X)
    assert acc.count.tolist() == [4] * FEATURES
    assert acc.missing.tolist() == [0] * FEATURES
    assert acc.min.tolist() == acc.max.tolist() == [1e308] * FEATURES
    ref = SCHEMAS["all"].reference
    assert ref is not None
    for j, prof in enumerate(ref.features):
        assert isinstance(prof, NumericProfile)
        assert acc.cells(j).sum() == 4
