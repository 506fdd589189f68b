"""The arithmetic binning on evenly spaced edges gives exactly the cells of the binary search."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mlmon._binning import _EVEN_MIN_EDGES, _EVEN_MIN_VALUES, _bin_search, _even_step, bin_index
from mlmon.outputs import SCORE_EDGES, UNCALIBRATED_AUC_EDGES


def searched(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The cells as the binary search has always given them (written out independently)."""
    idx = np.searchsorted(edges, values, side="right")
    idx[values == edges[-1]] = len(edges) - 1
    return idx


EVEN_EDGES = [
    np.asarray(UNCALIBRATED_AUC_EDGES, dtype=np.float64),
    np.asarray(SCORE_EDGES, dtype=np.float64),
    np.linspace(0.0, 1.0, _EVEN_MIN_EDGES),
    np.array([i / 10 for i in range(21)]),
    np.linspace(-3.0, 5.0, 17),
    np.linspace(1e6, 1e6 + 1.0, 1001),  # a large offset: edges rounded to the float grid
    np.linspace(-1e-300, 1e-300, 33),  # tiny spacing
    np.linspace(-1e300, 1e300, 64),  # huge spacing
    np.arange(100, dtype=np.float64) * 0.1 - 5.0,  # accumulated rounding
]


def adversarial(edges: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every edge and its neighbouring floats, the edges' midpoints, specials, and random
    values in and around the range, shuffled and padded to the arithmetic path's size."""
    up = np.nextafter(edges, np.inf)
    down = np.nextafter(edges, -np.inf)
    mids = (edges[:-1] + edges[1:]) / 2
    span = edges[-1] - edges[0]
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e308, -1e308, np.finfo(float).max,
                        -np.finfo(float).max, 5e-324, -5e-324, 2.2250738585072014e-308])  # fmt: skip
    rand = rng.uniform(edges[0] - span / 4, edges[-1] + span / 4, size=_EVEN_MIN_VALUES)
    v = np.concatenate([edges, up, down, np.nextafter(up, np.inf), np.nextafter(down, -np.inf), mids, special, rand])
    rng.shuffle(v)
    return v


@pytest.mark.parametrize("k", range(len(EVEN_EDGES)))
def test_even_edges_take_the_arithmetic_path_and_give_the_searched_cells(k: int) -> None:
    edges = EVEN_EDGES[k]
    assert _even_step(edges) is not None
    rng = np.random.default_rng(k)
    v = adversarial(edges, rng)
    assert v.size >= _EVEN_MIN_VALUES
    got = bin_index(v, edges)
    assert got.dtype == np.intp
    np.testing.assert_array_equal(got, searched(v, edges))
    np.testing.assert_array_equal(got, _bin_search(v, edges))
    # The specials land where the documented rules say.
    m = len(edges) - 1
    assert (got[np.isnan(v)] == m + 1).all()
    assert (got[v == np.inf] == m + 1).all()
    assert (got[v == -np.inf] == 0).all()
    assert (got[v == edges[-1]] == m).all()
    assert (got[v == edges[0]] == 1).all()


def test_non_even_edges_are_not_taken_for_even() -> None:
    rng = np.random.default_rng(3)
    quantile = np.quantile(rng.normal(size=10_000), np.linspace(0, 1, 21))
    assert _even_step(quantile) is None
    assert _even_step(np.append(np.linspace(0, 1, 20), 1.0)) is None  # a repeated last edge
    assert _even_step(np.array([0.0, 1.0, 1.0, 2.0])) is None
    assert _even_step(np.array([0.0, np.inf])) is None
    assert _even_step(np.array([-1e308, 1e308])) is None  # the width overflows
    assert _even_step(np.array([0.0, 5e-324, 1e-323])) is None  # subnormal width
    assert _even_step(np.array([0.0, 0.7, 1.0])) is None  # off by more than a quarter width
    # Non-even edges with enough values still give the searched cells (the search path).
    v = adversarial(quantile, rng)
    np.testing.assert_array_equal(bin_index(v, quantile), searched(v, quantile))


def test_small_inputs_keep_the_search_and_agree() -> None:
    edges = np.linspace(0.0, 1.0, 5)  # 5 edges: below the arithmetic path's minimum
    assert len(edges) < _EVEN_MIN_EDGES
    v = adversarial(edges, np.random.default_rng(5))
    np.testing.assert_array_equal(bin_index(v, edges), searched(v, edges))
    few = v[:100]
    auc = np.asarray(UNCALIBRATED_AUC_EDGES)
    np.testing.assert_array_equal(bin_index(few, auc), searched(few, auc))


def test_constant_and_views() -> None:
    edges = np.asarray(UNCALIBRATED_AUC_EDGES)
    for c in (0.0, 0.5, 1.0, np.nextafter(1.0, 2.0), -0.0, np.nan):
        v = np.full(_EVEN_MIN_VALUES, c)
        np.testing.assert_array_equal(bin_index(v, edges), searched(v, edges))
    m = np.random.default_rng(2).uniform(-0.1, 1.1, size=(_EVEN_MIN_VALUES, 3))
    col = m[:, 1]  # a strided view, as the multiclass estimate passes
    np.testing.assert_array_equal(bin_index(col, edges), searched(col, edges))


@settings(max_examples=60, deadline=None)
@given(
    lo=st.floats(-1e6, 1e6),
    width=st.floats(1e-6, 1e3),
    n_edges=st.integers(_EVEN_MIN_EDGES, 300),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_even_edges(lo: float, width: float, n_edges: int, seed: int) -> None:
    edges = lo + np.arange(n_edges) * width
    if not (np.diff(edges) > 0).all():
        return  # the spacing is below the float grid at this offset: not edges at all
    rng = np.random.default_rng(seed)
    v = adversarial(edges, rng)
    np.testing.assert_array_equal(bin_index(v, edges), searched(v, edges))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=50))
def test_any_values_on_the_auc_edges(extra: list[float]) -> None:
    edges = np.asarray(UNCALIBRATED_AUC_EDGES)
    v = np.concatenate([np.array(extra), np.random.default_rng(len(extra)).uniform(-0.5, 1.5, _EVEN_MIN_VALUES)])
    np.testing.assert_array_equal(bin_index(v, edges), searched(v, edges))


def test_the_step_is_remembered_by_the_edges_values_and_the_memory_is_bounded() -> None:
    from mlmon import _binning

    _binning._STEPS.clear()
    even = np.linspace(0.0, 1.0, 1001)
    fit = _binning._even_fit_cached(even)
    assert fit is not None and fit[0] == _even_step(even) and 0.0 < fit[1] < 1e-9
    even[500] = 0.9  # the same array, changed in place: another key, another answer
    assert _binning._even_fit_cached(even) is None and _even_step(even) is None
    for k in range(200):
        e = np.linspace(0.0, 1.0 + k, 12)
        fit = _binning._even_fit_cached(e)
        assert fit is not None and fit[0] == _even_step(e)
    assert len(_binning._STEPS) <= _binning._STEPS_MAX


@settings(max_examples=60, deadline=None)
@given(
    st.integers(_EVEN_MIN_EDGES, 300),
    st.floats(-1e6, 1e6),
    st.floats(1e-6, 1e3),
    st.floats(0.0, 0.24),
    st.integers(0, 2**32 - 1),
)
def test_edges_off_their_even_grid_still_give_the_searched_cells(n: int, start: float, width: float, jitter: float, seed: int) -> None:
    """Edges up to a quarter cell off the even grid: values whose computed position is
    within the slack of an integer are compared with the edges, the others keep their guess."""
    from mlmon import _binning

    rng = np.random.default_rng(seed)
    edges = start + width * (np.arange(n) + rng.uniform(-jitter, jitter, size=n))
    edges[0], edges[-1] = start, start + width * (n - 1)
    assume(bool((np.diff(edges) > 0).all()) and _even_step(edges) is not None)
    fit = _binning._even_fit_cached(edges)
    assert fit is not None and fit[1] < 0.5
    v = adversarial(edges, rng)
    np.testing.assert_array_equal(bin_index(v, edges), searched(v, edges))


def test_positions_near_an_edge_are_the_only_ones_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlmon import _binning

    edges = np.asarray(UNCALIBRATED_AUC_EDGES)
    rng = np.random.default_rng(5)
    v = np.concatenate([rng.uniform(0.0, 1.0, 20_000), edges, np.nextafter(edges, 2.0), [np.nan, -1.0, 2.0]])
    compared: list[int] = []
    exact = _binning._bin_even_exact

    def spy(values: np.ndarray, k: np.ndarray, e: np.ndarray) -> np.ndarray:
        compared.append(values.size)
        return exact(values, k, e)

    monkeypatch.setattr(_binning, "_bin_even_exact", spy)
    got = bin_index(v, edges)
    np.testing.assert_array_equal(got, searched(v, edges))
    # The edges, their next floats, the NaN and the two clipped values; random values in
    # [0, 1) land within 1e-11 of a cell boundary about once in 10^8.
    assert compared and 2 * edges.size + 3 <= compared[0] < 2 * edges.size + 3 + 10
