"""Counting feature cells by comparisons gives exactly the counts of the sorted search."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlmon._binning import _bin_search
from mlmon.features import accumulator
from mlmon.features.accumulator import _COMPARE_KEYS, FeatureAccumulator, _Below
from mlmon.features.schema import FeatureSchema
from mlmon.reference import Reference, binned_counts


def reference(bins: int, seed: int = 0) -> Reference:
    rng = np.random.default_rng(seed)
    n = 2000
    return Reference.from_data(pd.DataFrame({
        "normal": rng.normal(size=n),
        "ints": rng.integers(0, 5, size=n).astype(float),  # few distinct: point bins
        "const": np.full(n, 3.0),
        "clipped": np.minimum(rng.exponential(size=n), 1.0),  # a point bin at the maximum
        "none": np.full(n, np.nan),  # no valid value: not binned
    }), bins=bins)  # fmt: skip


def hostile(schema: FeatureSchema, rng: np.random.Generator, n: int) -> np.ndarray:
    """Values on every edge and its neighbouring floats, NaN, +-inf, huge, random."""
    cols = []
    for e in schema.edges:
        base = rng.normal(size=n)
        if e is not None:
            pool = np.concatenate([e, np.nextafter(e, np.inf), np.nextafter(e, -np.inf),
                                   [np.nan, np.inf, -np.inf, 1e308, -1e308, 0.0, -0.0]])  # fmt: skip
            pick = rng.random(n) < 0.5
            base[pick] = rng.choice(pool, size=int(pick.sum()))
        cols.append(base)
    return np.column_stack(cols)


def expected_hist(schema: FeatureSchema, X: np.ndarray) -> np.ndarray:
    """The histogram, independently: binned_counts of each binned feature's finite values."""
    parts = [binned_counts(X[:, j], e) for j, e in enumerate(schema.edges) if e is not None]
    return np.concatenate(parts)


def sorted_counts(schema: FeatureSchema, X: np.ndarray) -> np.ndarray:
    """The histogram as the sorting path counts it."""
    acc = FeatureAccumulator(schema)
    xt = np.ascontiguousarray(X.T)
    acc._count_cells(np.sort(xt[schema.binned], axis=1))
    return acc.hist


@pytest.mark.parametrize("bins", [10, 20, 40])
def test_masked_and_partly_binned_batches_count_the_same_cells(bins: int) -> None:
    schema = FeatureSchema(reference=reference(bins))
    assert len(schema.binned) < schema.n_numeric  # "none" is not binned: the partial path
    by_compare = int(np.diff(schema.bin_pos).max()) <= _COMPARE_KEYS
    assert by_compare == (bins <= 20)
    rng = np.random.default_rng(bins)
    acc = FeatureAccumulator(schema)
    want = np.zeros_like(acc.hist)
    for n in (1, 7, 5000):
        X = hostile(schema, rng, n)
        acc.update_batch(X)
        want += expected_hist(schema, X)
        np.testing.assert_array_equal(sorted_counts(schema, X), expected_hist(schema, X))
        finite = np.nan_to_num(X, nan=0.5, posinf=2.0, neginf=-2.0)  # the finite path too
        acc.update_batch(finite)
        want += expected_hist(schema, finite)
    np.testing.assert_array_equal(acc.hist, want)


def test_statistics_are_unchanged_by_the_counting() -> None:
    """The moments of a masked batch do not depend on how its cells are counted."""
    schema = FeatureSchema(reference=reference(10))
    X = hostile(schema, np.random.default_rng(1), 3000)
    a = FeatureAccumulator(schema)
    a.update_batch(X)
    valid = np.isfinite(X)
    np.testing.assert_array_equal(a.count, valid.sum(axis=0))
    np.testing.assert_array_equal(a.min, np.where(valid, X, np.inf).min(axis=0))
    np.testing.assert_array_equal(a.max, np.where(valid, X, -np.inf).max(axis=0))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=5, max_size=200))
def test_any_values(values: list[float]) -> None:
    schema = FeatureSchema(reference=reference(10))
    k = schema.n_numeric
    X = np.resize(np.array(values), (len(values), k))
    acc = FeatureAccumulator(schema)
    acc.update_batch(X)
    np.testing.assert_array_equal(acc.hist, expected_hist(schema, X))


@pytest.mark.parametrize("bins", [1, 10, 40])
def test_output_cells_are_the_binned_ones(bins: int) -> None:
    rng = np.random.default_rng(bins)
    ref_scores = np.concatenate([rng.uniform(size=3000), np.ones(500)])  # a point bin at 1.0
    ref = Reference.from_data(pd.DataFrame({"x": rng.normal(size=3500)}), outputs=ref_scores, bins=bins)
    schema = FeatureSchema(reference=ref)
    e = schema.output_edges
    assert e is not None and (len(e) <= _COMPARE_KEYS) == (bins <= 20)
    pool = np.concatenate([e, np.nextafter(e, np.inf), np.nextafter(e, -np.inf),
                           [np.nan, np.inf, -np.inf, 1e308, -1e308, 0.0, -0.0, np.finfo(float).max]])  # fmt: skip
    acc = FeatureAccumulator(schema)
    want = np.zeros_like(acc.out_hist)
    for n in (1, 50, 5000):
        s = np.where(rng.random(n) < 0.5, rng.choice(pool, n), rng.uniform(-0.2, 1.2, n))
        acc.update_outputs(s)
        finite = s[np.isfinite(s)]
        want += np.bincount(_bin_search(finite, e), minlength=len(e) + 1)
    np.testing.assert_array_equal(acc.out_hist, want)
    assert acc.out_count == want.sum()


@pytest.mark.parametrize("bins", [1, 10, 20, 40])
def test_finite_batches_of_all_binned_features_count_the_same_cells(bins: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every feature binned, no missing value: small batches are sorted; from ROW_PASS_ROWS
    rows and ROW_PASS_VALUES values (set low here) and up to 21 bins, a feature's cells are
    counted by comparisons (the outer bounds without a pass), beyond 21 bins by sorting. Same
    cells every way, and the moments of the batch itself."""
    monkeypatch.setattr(accumulator, "ROW_PASS_VALUES", 4096)
    rng = np.random.default_rng(bins)
    n = 2000
    ref = Reference.from_data(pd.DataFrame({
        "normal": rng.normal(size=n),
        "ints": rng.integers(0, 5, size=n).astype(float),
        "const": np.full(n, 3.0),
        "clipped": np.minimum(rng.exponential(size=n), 1.0),
    }), bins=bins)  # fmt: skip
    schema = FeatureSchema(reference=ref)
    assert len(schema.binned) == schema.n_numeric
    paths: list[str] = []
    for name in ("_update_finite", "_update_finite_rows", "_update_masked"):
        real = getattr(FeatureAccumulator, name)
        monkeypatch.setattr(FeatureAccumulator, name, lambda self, *a, _r=real, _n=name: paths.append(_n) or _r(self, *a))
    acc = FeatureAccumulator(schema)
    want = np.zeros_like(acc.hist)
    for size in (1, 7, 5000):
        X = hostile(schema, rng, size)
        # Finite with sums in range (a 1e308 sends a batch to the masked path, tested above).
        X = np.where(np.isfinite(X) & (np.abs(X) < 1e300), X, rng.choice([1e200, -1e200, 0.0, -0.0], size=X.shape))
        one = FeatureAccumulator(schema)
        one.update_batch(X)
        np.testing.assert_array_equal(one.hist, expected_hist(schema, X))
        np.testing.assert_array_equal(one.count, np.full(schema.n_numeric, size))
        np.testing.assert_array_equal(one.min, X.min(axis=0))
        np.testing.assert_array_equal(one.max, X.max(axis=0))
        acc.update_batch(X)
        want += expected_hist(schema, X)
    np.testing.assert_array_equal(acc.hist, want)
    big_path = "_update_finite_rows" if bins <= 20 else "_update_finite"
    assert paths == ["_update_finite"] * 4 + [big_path] * 2


def test_moments_of_a_finite_batch_without_sorting() -> None:
    ref = Reference.from_data(pd.DataFrame({"a": np.arange(100.0), "b": np.arange(100.0) ** 2}), bins=10)
    schema = FeatureSchema(reference=ref)
    rng = np.random.default_rng(3)
    X = rng.normal(loc=5.0, scale=[1.0, 1e6], size=(10_000, 2))
    acc = FeatureAccumulator(schema)
    acc.update_batch(X)
    np.testing.assert_allclose(acc.mean, X.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(acc.variance(), X.var(axis=0), rtol=1e-12)


@pytest.mark.parametrize("n", [1, 7, 2039, 2040, 2041, 4080, 65536, 70001])
def test_booleans_counted_eight_at_a_time(n: int) -> None:
    """Every byte lane of a word sum stays below 256, however many values are below a bound
    (all of them, here, for the outer bounds) and wherever the row ends in its last block."""
    rng = np.random.default_rng(n)
    row = rng.normal(size=n)
    row[rng.random(n) < 0.1] = 0.0
    bounds = np.array([-np.inf, -1.0, 0.0, np.nextafter(0.0, 1.0), 2.0, np.inf, 1e308])[:, None]
    below = _Below(n, 9)
    for _ in range(2):  # the buffer is reused: the padding never counts
        got = below.count(row, bounds)
        assert got.tolist() == [int(np.count_nonzero(row < b)) for b in bounds[:, 0]]
    assert below.count(row, bounds[:2]).tolist() == [0, int(np.count_nonzero(row < -1.0))]


@pytest.mark.parametrize("bins", [1, 10, 20])
def test_a_batch_read_feature_by_feature_equals_whole_batch_passes(bins: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finite batches from ROW_PASS_ROWS rows are read a feature at a time: the same cells,
    counts, minimum, maximum and mean as passes over the whole batch; the deviations are
    summed in another order (the variance within a few ulps)."""
    rng = np.random.default_rng(bins)
    ref = reference(bins)
    schema = FeatureSchema(reference=ref)
    X = hostile(schema, rng, 9000)
    # Finite, and no sum beyond the float range (1e308s would send the batch to the masked path).
    X = np.where(np.isfinite(X) & (np.abs(X) < 1e300), X, rng.normal(size=X.shape))
    monkeypatch.setattr(accumulator, "ROW_PASS_VALUES", 9000 * schema.n_numeric)  # this batch's size
    rows_read: list[bool] = []
    real_rows = FeatureAccumulator._update_finite_rows

    def spy(self: FeatureAccumulator, xt: np.ndarray) -> bool:
        rows_read.append(done := real_rows(self, xt))
        return done

    monkeypatch.setattr(FeatureAccumulator, "_update_finite_rows", spy)
    by_row = FeatureAccumulator(schema)
    by_row.update_batch(X)  # rows of X.T strided: transposed once
    in_place = FeatureAccumulator(schema)
    in_place.update_batch(np.asfortranarray(X))  # each feature's values contiguous: read in place
    missing = X.copy()
    missing[4321, 1] = np.nan  # one feature's sum is NaN: the masked path, from the start
    masked_rows = FeatureAccumulator(schema)
    masked_rows.update_batch(np.asfortranarray(missing))
    assert rows_read == [True, True, False]  # the third fell back to the masked path
    monkeypatch.setattr(accumulator, "ROW_PASS_ROWS", 10**9)
    whole = FeatureAccumulator(schema)
    whole.update_batch(X)
    masked_whole = FeatureAccumulator(schema)
    masked_whole.update_batch(missing)
    for name in ("hist", "count", "missing", "min", "max", "mean"):
        np.testing.assert_array_equal(getattr(by_row, name), getattr(whole, name), err_msg=name)
        np.testing.assert_array_equal(getattr(in_place, name), getattr(whole, name), err_msg=name)
        np.testing.assert_array_equal(getattr(masked_rows, name), getattr(masked_whole, name), err_msg=name)
    np.testing.assert_array_equal(in_place.m2, by_row.m2)
    np.testing.assert_array_equal(masked_rows.m2, masked_whole.m2)
    np.testing.assert_allclose(by_row.m2, whole.m2, rtol=1e-13)
    np.testing.assert_array_equal(by_row.hist, expected_hist(schema, X))
    assert rows_read == [True, True, False]  # the whole-batch passes did not read by feature
    assert masked_rows.missing.tolist() == [0, 1] + [0] * (schema.n_numeric - 2)
