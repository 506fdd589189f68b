"""Bad feature input costs only itself: one hostile call among N is counted, the others are exact.

Every test ingests the same batch twice, with and without the hostile call, into two
components and compares their window accumulators array by array: the N-1 good calls must be
processed exactly as if the hostile one had not been there, and the hostile one must show up
in ``invalid_rows`` (and in the emitted ``mlmon_feature_invalid_rows_total``) with its rows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlmon._component import CallBatch
from mlmon.drift import DriftConfig
from mlmon.features import (
    FeatureAccumulator,
    FeatureComponent,
    FeatureSchema,
    convert,
    infer_schema,
)
from mlmon.features.inputs import MAX_ROWS_HINT
from mlmon.reference import Reference

ACC_FIELDS = (
    "count", "missing", "mean", "m2", "min", "max", "hist",
    "cat_count", "cat_missing", "cat_unseen", "cat_cells", "out_hist",
)  # fmt: skip

REF = Reference.from_data(
    {
        "a": np.random.default_rng(0).normal(size=500),
        "b": np.random.default_rng(1).exponential(size=500),
        "c": np.random.default_rng(2).choice(["x", "y", "z"], size=500).tolist(),
    },
    outputs=np.random.default_rng(3).uniform(size=500),
)


# --------------------------------------------------------------------------- hostile objects


class SymbolicTensor:
    """A TensorFlow-like symbolic tensor: the batch size is not known, nothing to read."""

    shape = (None, 3)
    dtype = "float32"

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("symbolic tensors have no values")


class LazyArray:
    """A dask-like array with unknown chunk sizes: reading it would compute (mlmon must not)."""

    shape = (math.nan, 3)
    ndim = 2
    reads = 0

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        LazyArray.reads += 1
        return np.ones((4, 3))


class RaisingLen(list[Any]):
    def __len__(self) -> int:
        raise RuntimeError("len")


class RaisingCopy:
    def copy(self) -> Any:
        raise RuntimeError("copy")


class RaisingArray:
    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("array")


class RaisingAttributes:
    def __getattribute__(self, name: str) -> Any:
        raise RuntimeError(f"no attribute {name}")


class RaisingHash:
    """Hashes once (to get into a dict), then never again."""

    def __init__(self) -> None:
        self.hashed = False

    def __hash__(self) -> int:
        if self.hashed:
            raise RuntimeError("hash")
        self.hashed = True
        return 1


class RaisingStr:
    def __str__(self) -> str:
        raise RuntimeError("str")

    __repr__ = __str__


class RaisingMapping(dict[str, Any]):
    def values(self) -> Any:
        raise RuntimeError("values")


# (name, features, rows the call claims, invalid rows expected)
HOSTILE: list[tuple[str, Any, int, int]] = [
    ("tf-like shape (None, 3)", SymbolicTensor(), 5, 5),
    ("dask-like shape (nan, 3)", LazyArray(), 4, 4),
    ("polars LazyFrame", pl.LazyFrame({"a": [1.0, 2.0], "b": [1.0, 2.0], "c": ["x", "y"]}), 2, 2),
    ("len() raises", RaisingLen([[1.0, 2.0, "x"]]), 1, 1),
    ("copy() raises", RaisingCopy(), 3, 3),
    ("__array__ raises", RaisingArray(), 6, 6),
    ("attribute lookup raises", RaisingAttributes(), 2, 2),
    ("values() raises", RaisingMapping(a=1.0), 1, 1),
    ("dict key whose hash raises", {"a": 1.0, RaisingHash(): 2.0}, 1, 1),
    ("category whose str raises", {"a": 1.0, "b": 2.0, "c": RaisingStr()}, 1, 1),
    ("ragged list of rows", [[1.0, 2.0, "x"], [1.0, 2.0]], 2, 2),
    ("ragged numpy object rows", [np.array([1.0, 2.0, 3.0]), np.array([[1.0, 2.0, 3.0]])], 2, 2),
    ("string for 3 features", "a,b,c", 1, 1),
    ("bytes for 3 features", b"abc", 1, 1),
    ("huge int for 3 features", 10**400, 1, 1),
    ("huge int row count", np.ones((2, 7)), 10**400, 2),
    ("nested dict value", {"a": {"x": 1.0}, "b": 2.0, "c": "x"}, 1, 1),
    ("nested dict category", {"a": 1.0, "b": 2.0, "c": {"x": 1}}, 1, 1),
    ("list in a numeric cell", [[1.0, [2.0], "x"], [1.0, 2.0, "y"]], 2, 2),
    ("dict of columns of nested lists", {"a": [[1.0], [2.0]], "b": [1.0, 2.0]}, 2, 2),
    ("dict of ragged columns", {"a": [1.0, 2.0], "b": [1.0]}, 2, 2),
    ("3-D array", np.ones((3, 2, 3)), 3, 3),
    ("wrong number of columns", np.ones((4, 5)), 4, 4),
    ("set", {1.0, 2.0, 3.0}, 1, 1),
    ("bare object", object(), 1, 1),
    ("claims -3 rows", object(), -3, 1),
    ("claims a non-int row count", object(), "7", 1),  # type: ignore[list-item]
]


REF_NUMERIC = Reference.from_data(
    {"a": np.random.default_rng(0).normal(size=500), "b": np.random.default_rng(1).exponential(size=500)}
)


def good_calls(seed: int, n: int, numeric_only: bool = False) -> list[tuple[Any, int]]:
    """``n`` well-formed calls in every accepted form, with their row counts."""
    rng = np.random.default_rng(seed)
    out: list[tuple[Any, int]] = []
    if numeric_only:
        for i in range(n):
            k = int(rng.integers(1, 6))
            X = rng.normal(size=(k, 2))
            form = i % 4
            if form == 0:
                out.append((X, k))
            elif form == 1:
                out.append((X[0], 1))  # single rows are stacked on this schema
            elif form == 2:
                out.append(({"a": float(X[0, 0]), "b": float(X[0, 1]), "typo": 0}, 1))
            else:
                out.append((pd.DataFrame(X, columns=["b", "a"]), k))
        return out
    for i in range(n):
        k = int(rng.integers(1, 6))
        a, b = rng.normal(size=k), rng.exponential(size=k)
        c = rng.choice(["x", "y", "w"], size=k).tolist()
        form = i % 7
        if form == 0:
            X = np.empty((k, 3), dtype=object)
            X[:, 0], X[:, 1], X[:, 2] = a, b, c
            out.append((X, k))
        elif form == 1:
            out.append(({"a": float(a[0]), "b": float(b[0]), "c": c[0]}, 1))
        elif form == 2:
            out.append(([[float(a[j]), float(b[j]), c[j]] for j in range(k)], k))
        elif form == 3:
            out.append((pd.DataFrame({"a": a, "b": b, "c": c}), k))
        elif form == 4:
            out.append((pl.DataFrame({"a": a, "b": b, "c": c}), k))
        elif form == 5:
            out.append(({"a": a.tolist(), "b": b, "c": c}, k))
        else:
            out.append(([{"a": float(a[j]), "c": c[j], "typo": 1} for j in range(k)], k))
    return out


def ingest(calls: list[tuple[Any, Any]], ref: Reference = REF) -> FeatureComponent:
    comp = FeatureComponent(ref, window=60.0, now=0.0, drift=DriftConfig(min_rows=1))
    comp.ingest(
        CallBatch(
            now=1.0,
            wall=0.0,
            features=[f for f, _ in calls],
            rows=[r for _, r in calls],
            outputs=[np.linspace(0.0, 1.0, 11)],  # the same for both batches
        )
    )
    return comp


def assert_same_window(got: FeatureComponent, want: FeatureComponent, invalid: int = 0) -> None:
    """Every statistic equal, except that ``invalid`` unreadable rows count as missing."""
    a, b = got.merged(1.0), want.merged(1.0)
    assert isinstance(a, FeatureAccumulator) and isinstance(b, FeatureAccumulator)
    for name in ACC_FIELDS:
        extra = invalid if name in ("missing", "cat_missing") else 0
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name) + extra, err_msg=name)
    assert a.out_count == b.out_count


def emitted(comp: FeatureComponent) -> dict[str, float]:
    return {name: value for name, value, labels in comp.samples(1.0) if not labels}


# On the numeric-only schema, "c" is not a feature: a bad category there is an unknown key.
CATEGORY_ONLY = {"category whose str raises", "nested dict category"}
CASES = [
    pytest.param(features, rows, invalid, numeric_only, id=f"{'numeric' if numeric_only else 'mixed'}-{name}")
    for numeric_only in (False, True)
    for name, features, rows, invalid in HOSTILE
    if not (numeric_only and name in CATEGORY_ONLY)
]


@pytest.mark.parametrize(("features", "rows", "invalid", "numeric_only"), CASES)
@pytest.mark.parametrize("position", [0, 3, 7])
def test_one_hostile_call_costs_only_itself(
    features: Any, rows: Any, invalid: int, position: int, numeric_only: bool
) -> None:
    base = good_calls(seed=position, n=7, numeric_only=numeric_only)
    with_hostile = [*base[:position], (features, rows), *base[position:]]
    ref = REF_NUMERIC if numeric_only else REF
    clean, dirty = ingest(base, ref), ingest(with_hostile, ref)
    assert_same_window(dirty, clean, invalid)
    assert clean.invalid_rows == 0 and clean.errors == 0 and dirty.errors == 0
    assert dirty.invalid_rows == invalid
    assert dirty.unknown_keys == clean.unknown_keys
    got = emitted(dirty)
    assert got["mlmon_feature_invalid_rows_total"] == invalid
    assert got["mlmon_feature_errors_total"] == 0
    assert got["mlmon_feature_unknown_keys_total"] == clean.unknown_keys > 0
    acc, ref_acc = dirty.merged(1.0), clean.merged(1.0)
    assert acc is not None and ref_acc is not None
    assert int(acc.count[0] + acc.missing[0]) == int(ref_acc.count[0] + ref_acc.missing[0]) + invalid


def test_a_lazy_array_is_never_read() -> None:
    LazyArray.reads = 0
    comp = ingest([(LazyArray(), 4), *good_calls(0, 3)])
    assert comp.invalid_rows == 4 and LazyArray.reads == 0


def test_a_huge_int_inside_a_row_is_one_missing_value_not_a_bad_call() -> None:
    c = convert([[10**400, 2.0, 10**400], [1.0, 2.0, "x"]], FeatureSchema(["a", "b", "c"], categorical=["c"]))
    assert c.invalid == 0
    assert np.isnan(c.numeric[0, 0]) and c.numeric[1].tolist() == [1.0, 2.0]
    assert c.categorical[:, 0].tolist() == ["1" + "0" * 400, "x"]


def test_a_row_count_beyond_reason_is_clamped() -> None:
    comp = ingest([(object(), 10**400)])
    assert comp.invalid_rows == MAX_ROWS_HINT
    assert all(math.isfinite(v) for _, v, _ in comp.samples(1.0))


def test_polars_frames_keep_their_column_names() -> None:
    df = pl.DataFrame({"c": ["x", None, "y"], "b": [1, None, 3], "a": [0.5, 1.5, None], "extra": [1, 2, 3]})
    comp = ingest([(df, 3)])
    acc = comp.merged(1.0)
    assert acc is not None
    assert acc.count.tolist() == [2, 2] and acc.missing.tolist() == [1, 1]
    assert acc.mean.tolist() == [1.0, 2.0]
    assert (acc.cat_count.tolist(), acc.cat_missing.tolist()) == ([2], [1])
    assert comp.unknown_keys == 3 and comp.invalid_rows == 0
    schema = infer_schema(df)
    assert schema is not None
    assert (schema.names, schema.categorical_names) == (("c", "b", "a", "extra"), ("c",))


def test_polars_frame_reads_like_the_same_pandas_frame() -> None:
    data = {"a": [1.0, 2.0, None], "b": [3, 4, 5], "c": ["x", "z", None]}
    from_polars, from_pandas = ingest([(pl.DataFrame(data), 3)]), ingest([(pd.DataFrame(data), 3)])
    assert_same_window(from_polars, from_pandas)


hostile_items = st.sampled_from(HOSTILE)


@given(
    seed=st.integers(0, 2**16),
    n=st.integers(1, 9),
    hostile=st.lists(hostile_items, min_size=1, max_size=3),
    data=st.data(),
)
@settings(max_examples=60, deadline=None)
def test_any_number_of_hostile_calls_anywhere(seed: int, n: int, hostile: list[Any], data: Any) -> None:
    base = good_calls(seed, n)
    mixed = list(base)
    for _, features, rows, _ in hostile:
        mixed.insert(data.draw(st.integers(0, len(mixed))), (features, rows))
    clean, dirty = ingest(base), ingest(mixed)
    invalid = sum(h[3] for h in hostile)
    assert_same_window(dirty, clean, invalid)
    assert dirty.invalid_rows == invalid
    assert dirty.errors == 0


@pytest.mark.parametrize(
    "columns",
    [["a", "b", "c"], ["c", "a", "b"], ["b", "zzz", "a"], ["a"], ["b", "b2", "c", "a"]],
)
def test_an_all_numeric_frame_reads_like_its_dict_of_columns(columns: list[str]) -> None:
    """The one-copy path for all-numeric frames gives what the per-column path gives."""
    schema = FeatureSchema(["a", "b", "c"])
    rng = np.random.default_rng(len(columns))
    data = {name: rng.normal(size=6) for name in columns}
    data[columns[0]][2] = np.nan
    frame = pd.DataFrame(data)
    if "b" in frame:
        frame["b"] = np.arange(6)  # an int column among floats
    got = convert(frame, schema)
    want = convert({k: frame[k].to_numpy(dtype=float) for k in frame.columns}, schema)
    np.testing.assert_array_equal(got.numeric, want.numeric)
    assert (got.invalid, got.unknown) == (want.invalid, want.unknown)
    assert got.unknown == 6 * sum(c not in schema.index for c in columns)


def test_without_a_reference_a_hostile_first_call_does_not_stop_the_schema_being_learnt() -> None:
    """The schema comes from the first readable call; the hostile one before it is invalid."""
    good = [({"x": 1.0, "kind": "a"}, 1), ({"x": 3.0, "kind": "b"}, 1)]
    for hostile in ({"x": 1.0, "kind": RaisingStr()}, RaisingAttributes(), SymbolicTensor()):
        comp = FeatureComponent(None, window=60.0, now=0.0)
        comp.ingest(CallBatch(now=1.0, wall=0.0, features=[hostile, *(f for f, _ in good)], rows=[1, 1, 1]))
        assert comp.feature_names == ("x", "kind") and comp.errors == 0
        assert comp.invalid_rows == 1
        acc = comp.merged(1.0)
        assert acc is not None and acc.mean.tolist() == [2.0] and acc.cat_count.tolist() == [2]


def test_a_failure_of_mlmon_itself_is_counted_emitted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    comp = FeatureComponent(REF, window=60.0, now=0.0)
    with caplog.at_level("WARNING", logger="mlmon"):
        for _ in range(3):
            comp.ingest(None)  # type: ignore[arg-type]  # not a CallBatch: mlmon's own code fails
    assert comp.errors == 3
    assert len([r for r in caplog.records if "feature ingest failed" in r.getMessage()]) == 1
    assert emitted(comp)["mlmon_feature_errors_total"] == 3
