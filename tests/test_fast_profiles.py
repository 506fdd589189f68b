"""Numeric profiles from one sort of each column: the same edges, counts and reference files
as the former separate distinct count, quantiles and binning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlmon import _profiles
from mlmon._binning import (
    _numeric_edges,
    _numeric_edges_and_counts,
    _sorted_quantiles,
    binned_counts,
)
from mlmon.reference import Reference

FIXTURE = Path(__file__).parent / "data" / "reference_before_sorted_profiles.json"


def fixture_frame() -> tuple[pd.DataFrame, np.ndarray]:
    """The data tests/data/reference_before_sorted_profiles.json was written from, by the
    code before profiles were read off sorted columns (columns from integer arithmetic:
    exact in IEEE doubles on every platform)."""
    i = np.arange(3000, dtype=np.int64)
    return pd.DataFrame({
        "spread": ((i * 7919) % 1000) / 37.0 - 10.0,
        "ties": ((i * 31) % 7).astype(np.float64),  # 7 distinct: one bin each
        "clipped": np.minimum((i * 13) % 100, 60) / 4.0,  # the maximum holds 39%: its point bin
        "const": np.full(i.size, 2.5),
        "gaps": np.where(i % 11 == 0, np.nan, ((i * 104729) % 5003) * 1e-3),
        "huge": ((i * 17) % 101 - 50) * 1e150,
        "zeros": np.where(i % 3 == 0, -0.0, (i % 5) * 1.0),  # -0.0 and 0.0 both
        "colour": np.array(["red", "green", "blue"])[i % 3],
    }), ((i * 7) % 1000) / 999.0  # fmt: skip


def former(v: np.ndarray, bins: int, s: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The edges and counts as from_values made them before: two functions, two passes (from
    the column itself, whether or not a sorted copy is given)."""
    edges = _numeric_edges(v, bins)
    return edges, binned_counts(v, edges)


def same(a: np.ndarray, b: np.ndarray) -> None:
    """Equal to the bit (a -0.0 edge is not a 0.0 edge in a reference file)."""
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes(), (a, b)


def test_a_reference_file_written_before_loads_equal_to_one_made_now(tmp_path: Path) -> None:
    X, out = fixture_frame()
    now = Reference.from_data(X, outputs=out, bins=10)
    assert Reference.load(FIXTURE) == now
    assert Reference.load(FIXTURE).to_dict() == now.to_dict()
    now.save(tmp_path / "now.json")
    assert json.loads((tmp_path / "now.json").read_text()) == json.loads(FIXTURE.read_text())
    assert (tmp_path / "now.json").read_text() == FIXTURE.read_text()  # -0.0 stays -0.0


def columns() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    normal = rng.normal(size=5000)
    edges = np.quantile(normal, np.linspace(0, 1, 11))
    return [
        normal,
        np.full(100, 7.0),  # constant
        np.array([1.0, 2.0] * 50),
        np.arange(10, dtype=np.float64),  # exactly `bins` distinct
        np.arange(11, dtype=np.float64),  # one more
        np.minimum(rng.exponential(size=4000), 0.5),  # clipped: the point bin at the maximum
        np.maximum(rng.exponential(size=4000), 2.0),  # clipped below
        np.concatenate([edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf), normal]),
        rng.integers(-3, 3, size=3000).astype(np.float64) * 5e307,  # huge, few distinct
        rng.normal(size=3000) * 1e300,
        rng.normal(size=3000) * 5e-324,  # subnormal
        np.array([-0.0] * 40 + [0.0] * 40 + list(range(1, 30))),  # both zeros: the former path
        np.array([-0.0] * 40 + list(range(1, 30)), dtype=np.float64),  # -0.0 only
        np.array([5e-324]),  # one value
        np.repeat(rng.normal(size=15), 200),  # heavy ties on the quantiles
    ]


@pytest.mark.parametrize("bins", [1, 2, 10, 37])
@pytest.mark.parametrize("k", range(len(columns())))
def test_edges_and_counts_equal_the_former_ones(k: int, bins: int) -> None:
    v = columns()[k]
    assert np.isfinite(v).all()
    rng = np.random.default_rng(k)
    for arr in (v, rng.permutation(v)):
        edges, counts = _numeric_edges_and_counts(arr, bins)
        e0, c0 = former(arr, bins)
        same(edges, e0)
        same(counts, c0)
        assert counts.sum() == arr.size


@settings(max_examples=150, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(1, 300), elements=st.floats(allow_nan=False, allow_infinity=False, width=64)),
    st.integers(1, 30),
)
def test_any_finite_column(v: np.ndarray, bins: int) -> None:
    edges, counts = _numeric_edges_and_counts(v, bins)
    e0, c0 = former(v, bins)
    same(edges, e0)
    same(counts, c0)


@settings(max_examples=300, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(1, 400), elements=st.floats(allow_nan=False, allow_infinity=False, width=64)),
    st.integers(1, 60),
)
def test_quantiles_read_off_the_sorted_column_are_numpys(v: np.ndarray, bins: int) -> None:
    """The order statistics np.quantile finds by partitioning, read off the sorted column:
    the same floats (interpolations that overflow included). Columns with both zeros never
    take this path (their edges depend on how each function orders -0.0 and 0.0)."""
    zeros = np.signbit(v[v == 0])
    assume(zeros.all() or not zeros.any())
    s = np.sort(v)
    with np.errstate(all="ignore"):
        same(_sorted_quantiles(s, bins), np.quantile(s, np.linspace(0.0, 1.0, bins + 1)))


@pytest.mark.parametrize("k", range(len(columns())))
def test_quantiles_of_the_test_columns(k: int) -> None:
    s = np.sort(columns()[k])
    zeros = np.signbit(s[s == 0])
    if zeros.any() and not zeros.all():
        return  # the former path (see above)
    for bins in (1, 2, 3, 10, 37, 100, s.size + 5):
        with np.errstate(all="ignore"):
            same(_sorted_quantiles(s, bins), np.quantile(s, np.linspace(0.0, 1.0, bins + 1)))


def former_from_data(monkeypatch: pytest.MonkeyPatch, *args: object, **kw: object) -> Reference:
    """Reference.from_data with the profiles' edges and counts made the former way."""
    with monkeypatch.context() as m:
        m.setattr(_profiles, "_numeric_edges_and_counts", former)
        return Reference.from_data(*args, **kw)  # type: ignore[arg-type]


def test_from_data_is_unchanged_on_test_data(monkeypatch: pytest.MonkeyPatch) -> None:
    X, out = fixture_frame()
    rng = np.random.default_rng(4)
    labels = (rng.random(len(X)) < out).astype(int)
    seg = np.array(["a", "b"])[rng.integers(0, 2, len(X))]
    for kw in ({}, {"outputs": out, "labels": labels}, {"outputs": out, "segment": seg, "min_segment_rows": 10}):
        want = former_from_data(monkeypatch, X, **kw)
        got = Reference.from_data(X, **kw)
        assert got.to_dict() == want.to_dict()
        assert json.dumps(got.to_dict()) == json.dumps(want.to_dict())


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 200), st.integers(1, 4)),
               elements=st.floats(-1e200, 1e200) | st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e308])),
    st.integers(1, 12),
)  # fmt: skip
def test_from_data_is_unchanged_on_generated_data(X: np.ndarray, bins: int) -> None:
    with pytest.MonkeyPatch.context() as mp:
        try:
            want = former_from_data(mp, X, bins=bins)
        except ValueError as e:  # e.g. a variance beyond the float range: the same error now
            with pytest.raises(ValueError, match="too large"):
                Reference.from_data(X, bins=bins)
            assert "too large" in str(e)
            return
    got = Reference.from_data(X, bins=bins)
    assert json.dumps(got.to_dict()) == json.dumps(want.to_dict())


@pytest.mark.parametrize("cpus", [2, 3])
def test_a_reference_profiled_in_sorted_blocks_on_threads_is_the_same_file(cpus: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On threads, each thread's columns are sorted as one block when all finite (column by
    column otherwise: "gaps" has NaN; "zeros" mixes -0.0 and 0.0): the file is the same."""
    from mlmon import reference

    monkeypatch.setattr(reference, "PARALLEL_VALUES", 1000)
    monkeypatch.setattr(reference, "usable_cpus", lambda limit=8: cpus)
    X, out = fixture_frame()
    Reference.from_data(X, outputs=out, bins=10).save(tmp_path / "threads.json")
    assert (tmp_path / "threads.json").read_text() == FIXTURE.read_text()
