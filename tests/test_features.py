"""Feature accumulators, input conversion and the feature component."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlmon._component import CallBatch
from mlmon.drift import DriftConfig
from mlmon.features import (
    FeatureAccumulator,
    FeatureComponent,
    FeatureSchema,
    convert,
    infer_schema,
)
from mlmon.reference import CategoricalProfile, NumericProfile, Reference, binned_counts
from mlmon.snapshot import CATALOG

try:
    import pandas as pd
except ImportError:  # pragma: no cover - pandas is optional
    pd = None

needs_pandas = pytest.mark.skipif(pd is None, reason="pandas is not installed")


@pytest.fixture(scope="module")
def ref() -> Reference:
    rng = np.random.default_rng(5)
    return Reference.from_data(
        {
            "a": rng.normal(size=4000),
            "b": rng.exponential(size=4000),
            "color": rng.choice(["red", "green", "blue"], size=4000, p=[0.5, 0.3, 0.2]),
        },
        outputs=rng.uniform(size=4000),
    )


def batch(t: float, *features: Any, outputs: list[Any] | None = None) -> CallBatch:
    return CallBatch(
        now=t,
        wall=t,
        features=list(features),
        outputs=outputs if outputs is not None else [None] * len(features),
        rows=[1 if isinstance(f, dict) or not hasattr(f, "__len__") else len(f) for f in features],
    )


COUNTERS = {
    "mlmon_feature_invalid_rows_total",
    "mlmon_feature_unknown_keys_total",
    "mlmon_feature_errors_total",
}
# Cumulative bin counts and the reference's constant shares, per bin (fleet PSI).
BINS = {
    "mlmon_feature_bin_total",
    "mlmon_feature_reference_ratio",
    "mlmon_output_reference_bin_total",
    "mlmon_output_reference_ratio",
}


def as_dict(samples: list[Any]) -> dict[tuple[str, str | None], float]:
    """Window samples by (name, feature); the cumulative counters are left out."""
    return {
        (name, labels.get("feature")): value
        for name, value, labels in samples
        if name not in COUNTERS and name not in BINS
    }


def counters(comp: FeatureComponent) -> dict[str, float]:
    return {name: value for name, value, _ in comp.samples(0.0) if name in COUNTERS}


# --------------------------------------------------------------------------- accumulator vs numpy


def numeric_schema(ref: Reference) -> FeatureSchema:
    return FeatureSchema(reference=Reference(rows=ref.rows, features=ref.features[:2]))


def test_window_statistics_equal_numpy_on_the_same_rows(ref: Reference) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 2)) * [1.0, 3.0] + [0.0, 1.0]
    X[rng.random(X.shape) < 0.05] = np.nan
    X[7, 0], X[8, 1] = np.inf, -np.inf
    acc = FeatureAccumulator(numeric_schema(ref))
    for part in np.array_split(X, 7):
        acc.update_batch(part)
    for j in range(2):
        col = X[:, j]
        ok = col[np.isfinite(col)]
        assert acc.count[j] == ok.size
        assert acc.missing[j] == X.shape[0] - ok.size  # NaN and ±inf are missing
        assert acc.mean[j] == pytest.approx(ok.mean(), rel=1e-12)
        assert acc.variance()[j] == pytest.approx(ok.var(), rel=1e-10)
        assert (acc.min[j], acc.max[j]) == (ok.min(), ok.max())
        prof = ref.features[j]
        assert isinstance(prof, NumericProfile)
        assert acc.cells(j).tolist() == binned_counts(ok, np.array(prof.edges)).tolist()


def test_variance_stays_accurate_far_from_zero() -> None:
    """A running sum of squares would lose every digit here; two-pass batches plus Chan do not."""
    rng = np.random.default_rng(1)
    X = 1e9 + rng.normal(size=(10_000, 1))
    acc = FeatureAccumulator(FeatureSchema(["x"]))
    for part in np.array_split(X, 100):
        acc.update_batch(part)
    assert acc.variance()[0] == pytest.approx(X[:, 0].var(), rel=1e-6)


finite_or_missing = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.just(np.nan),
    st.just(np.inf),
    st.integers(-3, 3).map(float),
)


@given(
    arrays(np.float64, st.tuples(st.integers(0, 60), st.just(2)), elements=finite_or_missing),
    st.lists(st.integers(0, 60), max_size=4),
)
@settings(max_examples=150, deadline=None)
def test_merge_equals_one_accumulator_fed_the_concatenation(X: np.ndarray, cuts: list[int]) -> None:
    schema = FeatureSchema(
        reference=Reference.from_data(np.array([[-2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, 2.0]]))
    )
    whole = FeatureAccumulator(schema)
    whole.update_batch(X)
    merged = FeatureAccumulator(schema)
    for part in np.split(X, sorted(c for c in cuts if c <= len(X))):
        acc = FeatureAccumulator(schema)
        acc.update_batch(part)
        merged.merge(acc)
    assert merged.count.tolist() == whole.count.tolist()
    assert merged.missing.tolist() == whole.missing.tolist()
    assert merged.hist.tolist() == whole.hist.tolist()
    assert merged.min.tolist() == whole.min.tolist() and merged.max.tolist() == whole.max.tolist()
    assert np.allclose(merged.mean, whole.mean, rtol=1e-9, atol=1e-6)
    assert np.allclose(merged.variance(), whole.variance(), rtol=1e-7, atol=1e-3, equal_nan=True)


def test_empty_batches_change_nothing(ref: Reference) -> None:
    acc = FeatureAccumulator(numeric_schema(ref))
    acc.update_batch(np.empty((0, 2)))
    acc.update_invalid(0)
    assert acc.count.tolist() == [0, 0] and acc.missing.tolist() == [0, 0] and acc.hist.sum() == 0


def test_invalid_rows_are_missing_for_every_feature(ref: Reference) -> None:
    acc = FeatureAccumulator(FeatureSchema(reference=ref))
    acc.update_invalid(4)
    assert acc.missing.tolist() == [4, 4] and acc.cat_missing.tolist() == [4]


def test_reset_forgets_everything(ref: Reference) -> None:
    acc = FeatureAccumulator(FeatureSchema(reference=ref))
    acc.update_batch(np.ones((3, 2)))
    acc.update_categorical(np.array([["red"], ["x"], [None]], dtype=object))
    acc.update_outputs(np.array([0.5]))
    acc.reset()
    fresh = FeatureAccumulator(FeatureSchema(reference=ref))
    for name in (
        "count",
        "missing",
        "mean",
        "m2",
        "min",
        "max",
        "hist",
        "cat_count",
        "cat_cells",
        "out_hist",
    ):
        assert getattr(acc, name).tolist() == getattr(fresh, name).tolist()


def test_merge_rejects_another_schema(ref: Reference) -> None:
    with pytest.raises(TypeError, match="same schema"):
        FeatureAccumulator(FeatureSchema(reference=ref)).merge(
            FeatureAccumulator(FeatureSchema(["a"]))
        )


def test_wrong_matrix_shape_raises_in_the_low_level_api(ref: Reference) -> None:
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        FeatureAccumulator(numeric_schema(ref)).update_batch(np.ones((2, 3)))


# --------------------------------------------------------------------------- categorical


def test_categories_count_on_reference_cells_with_unseen_in_other(ref: Reference) -> None:
    acc = FeatureAccumulator(FeatureSchema(reference=ref))
    C = np.array(
        [["red"], ["red"], ["blue"], ["purple"], [None], [float("nan")], [3]], dtype=object
    )
    acc.update_categorical(C)
    prof = ref["color"]
    assert isinstance(prof, CategoricalProfile)
    expected = dict.fromkeys(prof.categories, 0) | {"red": 2, "blue": 1}
    assert acc.category_cells(0).tolist() == [*[expected[c] for c in prof.categories], 2]
    assert (acc.cat_count[0], acc.cat_missing[0], acc.cat_unseen[0]) == (5, 2, 2)


def test_a_million_distinct_categories_use_no_more_memory() -> None:
    ref = Reference.from_data({"user": [f"u{i}" for i in range(50)]})
    comp = FeatureComponent(ref, window=60.0, now=0.0)
    start = comp.merged(0.0)
    assert start is not None
    before = {name: getattr(start, name).nbytes for name in ("cat_cells", "cat_count", "hist")}
    for chunk in range(10):
        ids = np.array([f"id{chunk}-{i}" for i in range(100_000)], dtype=object).reshape(-1, 1)
        comp.ingest(batch(1.0, ids))
    acc = comp.merged(1.0)
    assert acc is not None
    assert {name: getattr(acc, name).nbytes for name in before} == before
    assert acc.cat_unseen[0] == 1_000_000
    assert as_dict(comp.samples(1.0))[("mlmon_feature_unseen_ratio", "user")] == 1.0


# --------------------------------------------------------------------------- conversion


@pytest.fixture
def schema() -> FeatureSchema:
    return FeatureSchema(["a", "b", "c"], categorical=["c"])


def rows_of(converted: Any) -> tuple[list[list[float]], list[list[Any]]]:
    """Numeric rows and categorical rows; categories come out as their keys (str or None)."""
    return converted.numeric.tolist(), converted.categorical.tolist()


NAN = float("nan")


@pytest.mark.parametrize(
    ("features", "numeric", "categorical", "invalid", "unknown"),
    [
        # single rows
        (np.array([1.0, 2.0, 3.0]), [[1.0, 2.0]], [["3"]], 0, 0),
        ([1, 2, "x"], [[1.0, 2.0]], [["x"]], 0, 0),
        ((1, "two", "x"), [[1.0, NAN]], [["x"]], 0, 0),  # a string in a numeric feature is missing
        ({"a": 1, "c": "x", "zz": 9, "yy": 8}, [[1.0, NAN]], [["x"]], 0, 2),  # absent b is missing
        ({"a": None, "b": float("inf"), "c": None}, [[NAN, math.inf]], [[None]], 0, 0),
        ({"a": np.array(2.0), "b": np.float16(1), "c": np.str_("x")}, [[2.0, 1.0]], [["x"]], 0, 0),
        (
            [2**2000, True, b"x"],
            [[NAN, 1.0]],
            [["x"]],
            0,
            0,
        ),  # an int beyond float range is missing
        # batches
        (np.arange(6.0).reshape(2, 3), [[0.0, 1.0], [3.0, 4.0]], [["2"], ["5"]], 0, 0),
        ([[1, 2, "x"], (3, 4, "y")], [[1.0, 2.0], [3.0, 4.0]], [["x"], ["y"]], 0, 0),
        ([[2**2000, 2, "x"], [1, 2, "y"]], [[NAN, 2.0], [1.0, 2.0]], [["x"], ["y"]], 0, 0),
        (
            np.array([["1.5", "2", "x"]]),
            [[NAN, NAN]],
            [["x"]],
            0,
            0,
        ),  # numeric strings are not parsed
        ([{"a": 1, "c": "x"}, {"b": 2, "q": 0}], [[1.0, NAN], [NAN, 2.0]], [["x"], [None]], 0, 1),
        (
            {"a": [1, 2], "c": ["x", "y"], "q": [0, 0]},
            [[1.0, NAN], [2.0, NAN]],
            [["x"], ["y"]],
            0,
            2,
        ),
        # empty batches: no-op
        ([], [], [], 0, 0),
        (np.empty((0, 3)), [], [], 0, 0),
        (np.empty(0), [], [], 0, 0),
        ({}, [[NAN, NAN]], [[None]], 0, 0),  # a row given by name with no name: all missing
        # the wrong number of columns: the whole call is invalid rows
        (np.ones((4, 2)), [], [], 4, 0),
        (np.ones(5), [], [], 1, 0),
        ([[1, 2, 3], [1, 2]], [], [], 2, 0),
        ([1, 2], [], [], 1, 0),
        (np.ones((2, 3, 1)), [], [], 2, 0),
        ({"a": [1, 2], "b": [1]}, [], [], 2, 0),
        # things that are not features at all
        (7.0, [], [], 1, 0),
        ("abc", [], [], 1, 0),
        (object(), [], [], 3, 0),  # counted with the call's rows hint
        (None, [], [], 0, 0),
    ],
)
def test_convert_reads_every_accepted_shape_and_counts_the_rest(
    schema: FeatureSchema,
    features: Any,
    numeric: list[list[float]],
    categorical: list[list[Any]],
    invalid: int,
    unknown: int,
) -> None:
    c = convert(features, schema, rows_hint=3)
    got_num, got_cat = rows_of(c)
    np.testing.assert_array_equal(
        np.array(got_num, dtype=float).reshape(-1, 2), np.array(numeric, dtype=float).reshape(-1, 2)
    )
    assert got_cat == categorical
    assert (c.invalid, c.unknown) == (invalid, unknown)


def test_a_single_feature_model_reads_a_1d_array_as_rows() -> None:
    c = convert(np.array([1.0, 2.0, 3.0]), FeatureSchema(["x"]))
    assert c.numeric.tolist() == [[1.0], [2.0], [3.0]]
    assert convert(4.0, FeatureSchema(["x"])).numeric.tolist() == [[4.0]]


@needs_pandas
def test_convert_reads_dataframes_by_name_or_position(schema: FeatureSchema) -> None:
    by_name = pd.DataFrame({"c": ["x", None], "a": [1.0, np.nan], "extra": [0, 0]})
    c = convert(by_name, schema)
    np.testing.assert_array_equal(c.numeric, [[1.0, np.nan], [np.nan, np.nan]])
    assert c.categorical[0, 0] == "x" and c.unknown == 2
    positional = pd.DataFrame([[1.0, 2.0, "x"]])
    assert rows_of(convert(positional, schema)) == ([[1.0, 2.0]], [["x"]])
    assert convert(pd.DataFrame([[1.0, 2.0]]), schema).invalid == 1
    assert convert(pd.DataFrame(columns=["a", "b", "c"]), schema).numeric.shape == (0, 2)
    row = pd.Series({"a": 1.0, "b": 2.0, "c": "y"})
    assert rows_of(convert(row, schema)) == ([[1.0, 2.0]], [["y"]])


# --------------------------------------------------------------------------- component


def test_samples_use_catalog_names_with_the_feature_label(ref: Reference) -> None:
    rng = np.random.default_rng(2)
    comp = FeatureComponent(ref, window=60.0, now=0.0, drift=DriftConfig(min_rows=10))
    X = np.empty((600, 3), dtype=object)
    X[:, 0] = rng.normal(size=600)
    X[:, 1] = rng.exponential(size=600)
    X[:, 2] = rng.choice(["red", "green", "pink"], size=600)
    comp.ingest(batch(1.0, X, outputs=[rng.uniform(size=600)]))
    samples = comp.samples(1.0)
    names = {name for name, _, _ in samples}
    assert names <= set(CATALOG)
    assert all(CATALOG[name].kind == "counter" for name in COUNTERS)
    assert BINS <= names
    assert names - COUNTERS - BINS == {
        "mlmon_feature_missing_ratio",
        "mlmon_feature_mean",
        "mlmon_feature_variance",
        "mlmon_feature_min",
        "mlmon_feature_max",
        "mlmon_feature_out_of_range_ratio",
        "mlmon_feature_unseen_ratio",
        "mlmon_feature_drift_psi",
        "mlmon_feature_drift_js",
        "mlmon_feature_drift_ks",
        "mlmon_feature_drift_wasserstein",
        "mlmon_feature_drift_pvalue",
        "mlmon_feature_drift_status",
        "mlmon_output_drift_psi",
    }
    for name, value, labels in samples:
        assert math.isfinite(value)
        unlabelled = name == "mlmon_output_drift_psi" or name in COUNTERS
        if name in BINS:
            assert set(labels) == ({"bin"} if name.startswith("mlmon_output") else {"feature", "bin"})
        else:
            assert set(labels) == (set() if unlabelled else {"feature"})
        assert set(labels) == set(CATALOG[name].labels)
    got = as_dict(samples)
    assert got[("mlmon_feature_mean", "a")] == pytest.approx(X[:, 0].astype(float).mean())
    assert ("mlmon_feature_drift_ks", "color") not in got  # no order among categories
    assert ("mlmon_feature_unseen_ratio", "a") not in got
    assert got[("mlmon_feature_unseen_ratio", "color")] == pytest.approx(np.mean(X[:, 2] == "pink"))


def test_no_samples_at_all_without_data(ref: Reference) -> None:
    comp = FeatureComponent(ref, window=60.0, now=0.0)
    assert comp.samples(1.0) == []
    comp.ingest(batch(1.0, None))  # a call without features
    assert comp.samples(1.0) == []


def test_all_missing_feature_has_only_its_missing_ratio(ref: Reference) -> None:
    comp = FeatureComponent(ref, window=60.0, now=0.0)
    comp.ingest(batch(1.0, [{"a": None, "b": 1.0, "color": None}]))
    got = as_dict(comp.samples(1.0))
    assert got[("mlmon_feature_missing_ratio", "a")] == 1.0
    assert not any(f == "a" for (name, f) in got if name != "mlmon_feature_missing_ratio")
    assert got[("mlmon_feature_missing_ratio", "color")] == 1.0


def test_out_of_range_counts_values_outside_the_reference_min_max(ref: Reference) -> None:
    prof = ref["a"]
    assert isinstance(prof, NumericProfile)
    comp = FeatureComponent(ref, window=60.0, now=0.0)
    values = [prof.min - 1, prof.min, 0.0, prof.max, prof.max + 1]
    comp.ingest(batch(1.0, [{"a": v} for v in values]))
    assert as_dict(comp.samples(1.0))[("mlmon_feature_out_of_range_ratio", "a")] == pytest.approx(
        2 / 5
    )


def test_drift_waits_for_min_rows(ref: Reference) -> None:
    rng = np.random.default_rng(3)
    comp = FeatureComponent(ref, window=60.0, now=0.0, drift=DriftConfig(min_rows=500))
    X = np.empty((499, 3), dtype=object)
    X[:, 0] = rng.normal(size=499)
    X[:, 1] = rng.exponential(size=499)
    X[:, 2] = "red"
    X[0, 1] = None  # b has one valid value fewer than the others
    comp.ingest(batch(1.0, X))
    assert not any(name.startswith("mlmon_feature_drift") for name, _, _ in comp.samples(1.0))
    comp.ingest(batch(2.0, X[1:2]))
    decided = {
        f for (name, f) in as_dict(comp.samples(2.0)) if name == "mlmon_feature_drift_status"
    }
    assert decided == {"a", "color"}  # b has 499 valid values: still no decision


def test_names_only_component_has_quality_but_no_drift() -> None:
    comp = FeatureComponent(
        ["x", "kind"], categorical=["kind"], window=60.0, now=0.0, drift=DriftConfig(min_rows=1)
    )
    comp.ingest(batch(1.0, [{"x": 1.0, "kind": "a"}, {"x": 3.0, "kind": None}]))
    got = as_dict(comp.samples(1.0))
    assert got == {
        ("mlmon_feature_missing_ratio", "x"): 0.0,
        ("mlmon_feature_mean", "x"): 2.0,
        ("mlmon_feature_variance", "x"): 1.0,
        ("mlmon_feature_min", "x"): 1.0,
        ("mlmon_feature_max", "x"): 3.0,
        ("mlmon_feature_missing_ratio", "kind"): 0.5,
    }


def test_wrong_columns_are_counted_and_show_as_missing(ref: Reference) -> None:
    comp = FeatureComponent(ref, window=60.0, now=0.0)
    comp.ingest(batch(1.0, np.zeros((3, 3)), np.zeros((6, 5))))
    assert comp.invalid_rows == 6
    assert as_dict(comp.samples(1.0))[("mlmon_feature_missing_ratio", "a")] == pytest.approx(6 / 9)


def test_unknown_keys_are_counted(ref: Reference) -> None:
    comp = FeatureComponent(ref, window=60.0, now=0.0)
    comp.ingest(batch(1.0, {"a": 1.0, "typo": 2.0}, {"b": 1.0, "typo": 2.0, "other": 0}))
    assert comp.unknown_keys == 3


def test_output_drift_compares_outputs_with_the_reference_outputs(ref: Reference) -> None:
    rng = np.random.default_rng(4)
    comp = FeatureComponent(ref, window=60.0, now=0.0)
    probas = np.column_stack(
        [1 - (s := rng.uniform(size=800) ** 2), s]
    )  # (n, 2): second column used
    comp.ingest(batch(1.0, None, None, outputs=[probas, 0.5]))
    got = as_dict(comp.samples(1.0))
    assert got[("mlmon_output_drift_psi", None)] > 0.2
    calm = FeatureComponent(ref, window=60.0, now=0.0)
    calm.ingest(batch(1.0, None, outputs=[rng.uniform(size=800)]))
    assert as_dict(calm.samples(1.0))[("mlmon_output_drift_psi", None)] < 0.05


def test_window_forgets_old_rows(ref: Reference) -> None:
    comp = FeatureComponent(ref, window=10.0, slices=10, now=0.0)
    comp.ingest(batch(0.5, [{"a": 1.0}]))
    comp.ingest(batch(5.5, [{"a": 3.0}]))
    assert as_dict(comp.samples(9.9))[("mlmon_feature_mean", "a")] == 2.0
    assert as_dict(comp.samples(10.7))[("mlmon_feature_mean", "a")] == 3.0
    assert as_dict(comp.samples(30.0)) == {}
    assert counters(comp) == dict.fromkeys(COUNTERS, 0.0)  # cumulative: still there


def test_reset_forgets_the_window_and_counters(ref: Reference) -> None:
    comp = FeatureComponent(ref, window=10.0, now=0.0)
    comp.ingest(batch(0.5, np.zeros((2, 9))))
    comp.reset()
    assert comp.samples(1.0) == [] and comp.invalid_rows == 0  # counters restart, unseen again


@pytest.mark.parametrize(
    ("features", "names", "categorical"),
    [
        ({"age": 31, "city": "Oslo", "vip": None}, ("age", "city", "vip"), ("city",)),
        ([{"a": 1.0}, {"b": "x"}], ("a", "b"), ("b",)),
        ({"a": [1, 2], "b": ["x", "y"]}, ("a", "b"), ("b",)),
        (np.zeros((4, 3)), ("f0", "f1", "f2"), ()),
        (np.array([1.0, 2.0]), ("f0", "f1"), ()),
        ([[1, "x"], [2, "y"]], ("f0", "f1"), ("f1",)),
        (3.5, ("f0",), ()),
    ],
)
def test_infer_schema_reads_names_and_kinds(
    features: Any, names: tuple[str, ...], categorical: tuple[str, ...]
) -> None:
    schema = infer_schema(features)
    assert schema is not None
    assert (schema.names, schema.categorical_names) == (names, categorical)


@pytest.mark.parametrize("features", [[], np.empty((0, 2)), {"a-b": 1, "a_b": 2}, {1: 2.0}, {}])
def test_infer_schema_gives_up_on_what_cannot_name_features(features: Any) -> None:
    assert infer_schema(features) is None


@needs_pandas
def test_infer_schema_reads_a_dataframe() -> None:
    schema = infer_schema(pd.DataFrame({"n": [1.0, 2.0], "c": pd.Categorical(["x", "y"])}))
    assert schema is not None and (schema.names, schema.categorical_names) == (("n", "c"), ("c",))


def test_component_without_reference_learns_the_features_from_the_first_call() -> None:
    comp = FeatureComponent(None, window=60.0, now=0.0)
    assert comp.feature_names == () and comp.samples(0.0) == []  # no features given yet
    comp.ingest(batch(1.0, [], {"a-b": 1, "a_b": 2}))  # nothing to learn from: counted, not kept
    assert comp.invalid_rows == 1 and comp.feature_names == ()
    comp.ingest(
        batch(2.0, {"x": 1.0, "kind": "a"}, {"x": 3.0, "kind": "b", "new": 0}, np.ones((2, 5)))
    )
    assert comp.feature_names == ("x", "kind")
    assert (comp.unknown_keys, comp.invalid_rows) == (1, 3)
    got = as_dict(comp.samples(2.0))
    assert got[("mlmon_feature_mean", "x")] == 2.0
    assert got[("mlmon_feature_missing_ratio", "kind")] == pytest.approx(2 / 4)
    assert not any(name.startswith("mlmon_feature_drift") for name, _ in got)


class Hostile:
    """An object that breaks every protocol numpy or mlmon might try."""

    def __len__(self) -> int:
        raise RuntimeError("no len")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no array")

    def __iter__(self) -> Any:
        raise RuntimeError("no iter")


garbage = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=3),
        st.binary(max_size=3),
        st.builds(Hostile),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=2), inner, max_size=4),
        st.tuples(inner, inner),
    ),
    max_leaves=12,
)


@given(st.lists(garbage, max_size=4), st.lists(garbage, max_size=4))
@settings(max_examples=200, deadline=None)
def test_ingest_never_raises_on_garbage(features: list[Any], outputs: list[Any]) -> None:
    ref = Reference.from_data({"a": [1.0, 2.0, 3.0], "c": ["x", "y", "x"]}, outputs=[0.1, 0.5, 0.9])
    comp = FeatureComponent(ref, window=10.0, now=0.0, drift=DriftConfig(min_rows=1))
    comp.ingest(
        CallBatch(now=1.0, wall=1.0, features=features, outputs=outputs, rows=[1] * len(features))
    )
    for name, value, _ in comp.samples(1.0):
        assert name in CATALOG and math.isfinite(value)


def test_ingest_survives_a_hostile_batch(ref: Reference) -> None:
    comp = FeatureComponent(ref, window=10.0, now=0.0)
    comp.ingest(CallBatch(now=1.0, wall=1.0, features=[Hostile()], outputs=[Hostile()], rows=["x"]))  # type: ignore[list-item]
    comp.ingest(None)  # type: ignore[arg-type]
    assert comp.errors == 1 and comp.invalid_rows == 1


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"features": "abc"}, TypeError, "Reference, a sequence of names or None"),
        ({"features": None, "slices": 1}, ValueError, "slices must be an int >= 2"),
        ({"features": ["a", "a"]}, ValueError, "repeated"),
        ({"features": ["a-b", "a_b"]}, ValueError, "both become 'a_b'"),
        ({"features": ["a"], "categorical": ["b"]}, ValueError, "'b' is not a feature name"),
        ({"features": ["a"], "window": 0}, ValueError, "window must be a positive number"),
        ({"features": ["a"], "drift": {"min_rows": 3}}, TypeError, "drift must be a DriftConfig"),
    ],
)
def test_bad_configuration_raises(kwargs: dict[str, Any], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        FeatureComponent(**kwargs)
