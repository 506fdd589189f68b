"""Feature names and binning, shared by the reference and the serving-side window.

Re-exported by :mod:`mlmon.reference` (whose docstring describes the binning); import the names
from there.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

__all__ = ["bin_index", "binned_counts", "check_feature_names", "sanitize_label"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


# --------------------------------------------------------------------------- names


def sanitize_label(name: str) -> str:
    """``name`` as emitters that cannot quote write it: every ``[^A-Za-z0-9_]`` becomes ``_``.

    >>> sanitize_label("age (years)")
    'age__years_'
    """
    return _UNSAFE.sub("_", name)


def check_feature_names(names: Iterable[object], field: str = "feature_names") -> tuple[str, ...]:
    """Validate feature names: non-empty strings, unique, and still unique once sanitised.

    Any string is a fine label value (Prometheus quotes it), but StatsD and Graphite paths are
    sanitised with :func:`sanitize_label`, so two names that sanitise alike would merge there.

    Raises:
        TypeError: a name is not a string.
        ValueError: a name is empty, repeated, or collides with another once sanitised.

    >>> check_feature_names(["age", "income"])
    ('age', 'income')
    >>> check_feature_names(["a-b", "a.b"])
    Traceback (most recent call last):
    ...
    ValueError: feature_names: 'a-b' and 'a.b' both become 'a_b' once sanitised for metric paths; rename one
    """
    out: list[str] = []
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"{field}: feature names must be str, got {name!r}")
        if not name:
            raise ValueError(f"{field}: feature names must not be empty, got {name!r}")
        key = sanitize_label(name)
        if key in seen:
            first = seen[key]
            if first == name:
                raise ValueError(f"{field}: feature name {name!r} is repeated")
            raise ValueError(
                f"{field}: {first!r} and {name!r} both become {key!r} once sanitised for "
                "metric paths; rename one"
            )
        seen[key] = name
        out.append(name)
    return tuple(out)


# --------------------------------------------------------------------------- values


def binned_counts(
    values: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """Counts of finite ``values`` in the ``m + 2`` cells defined by ``m + 1`` ``edges``.

    Cell 0 is underflow (``< edges[0]``), cells ``1..m`` are the bins ``[e[i], e[i+1])`` (the
    last one closed, so the maximum belongs to it), cell ``m + 1`` is overflow (``> edges[m]``).
    Non-finite values are not counted.

    >>> binned_counts(np.array([-1.0, 0.0, 0.5, 1.0, 2.0, 2.0, 9.0]), np.array([0.0, 1.0, 2.0]))
    array([1, 2, 3, 1])
    """
    m = len(edges) - 1
    v = values[np.isfinite(values)]
    idx = bin_index(v, edges)
    return np.bincount(idx, minlength=m + 2).astype(np.int64)


def bin_index(
    values: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]
) -> npt.NDArray[np.intp]:
    """Cell index in ``0..m+1`` of each value; see :func:`binned_counts` (NaN and ``+inf``
    go to the overflow cell ``m + 1``, ``-inf`` to the underflow cell 0).

    On evenly spaced edges (:func:`_even_step`: the AUC and score edges, not quantile edges)
    and enough values, the cell is found by arithmetic and corrected exactly against the
    edges (:func:`_bin_even`), which is faster than a binary search and gives the same cells.

    >>> bin_index(np.array([-1.0, 0.0, 0.5, 2.0, 9.0, np.nan]), np.array([0.0, 1.0, 2.0]))
    array([0, 1, 1, 2, 3, 3])
    """
    n_edges = len(edges)
    if n_edges >= _EVEN_MIN_EDGES and values.size >= (
        _EVEN_MIN_VALUES if n_edges < _MANY_EDGES else _EVEN_MIN_VALUES_MANY
    ):
        fit = _even_fit_cached(edges)
        if fit is not None:
            return _bin_even(values, edges, *fit)
    return _bin_search(values, edges)


# Below these sizes the binary search is faster (measured: 65,536 values on 5 edges 0.7 ms
# searched, 0.9 ms by arithmetic; on 11 edges 1.2 and 0.9 ms; 4,096 values on 11: 0.05 and 0.03).
_EVEN_MIN_EDGES = 8
_EVEN_MIN_VALUES = 4096
# On many edges a search costs more per value (1,001 edges, 2,000 values: 98 µs searched, 28 µs
# by arithmetic with the step found; 1,000 values: 30 and 24 µs; 512 values: 10 and 22 µs).
_MANY_EDGES = 64
_EVEN_MIN_VALUES_MANY = 1024


def _bin_search(
    values: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]
) -> npt.NDArray[np.intp]:
    """:func:`bin_index` by a binary search of each value in the edges (any edges)."""
    m = len(edges) - 1
    idx = np.searchsorted(edges, values, side="right")
    # The last bin is closed: the maximum (and a repeated last edge, a point bin) belongs to it.
    idx[values == edges[m]] = m
    return idx


_STEPS: dict[bytes, tuple[float, float] | None] = {}
_STEPS_MAX = 64  # edge sets remembered (the monitor's own few, and each reference's)


def _even_fit_cached(edges: npt.NDArray[np.float64]) -> tuple[float, float] | None:
    """:func:`_even_step` and :func:`_even_slack` of the edges, remembered by the edges'
    bytes: a batch binned on the 1,001 AUC edges would otherwise check their spacing again
    (about 60 µs, measured) every time."""
    key = np.asarray(edges, dtype=np.float64).tobytes()
    try:
        return _STEPS[key]
    except KeyError:
        pass
    step = _even_step(edges)
    fit = None if step is None else (step, _even_slack(edges, step))
    if len(_STEPS) >= _STEPS_MAX:
        _STEPS.clear()
    _STEPS[key] = fit
    return fit


def _even_slack(edges: npt.NDArray[np.float64], inv_w: float) -> float:
    """How far (in cells) a value's position computed by :func:`_bin_even` can be from the
    edge it must be compared with: each edge's offset from its place on the even grid, plus
    the float rounding of the positions (a few units in the last place of ``m + 2``, bounded
    generously). A value whose position is farther than this from every integer lies
    strictly inside the cell its position names."""
    e = np.asarray(edges, dtype=np.float64)
    m = e.size - 1
    with np.errstate(over="ignore", invalid="ignore"):
        pos = (e - (e[0] - 1.0 / inv_w)) * inv_w  # edge i bounds cell i + 1 from below
        dev = float(np.max(np.abs(pos - np.arange(1, m + 2))))
    slack = dev + 64.0 * (m + 2) * 2.0**-52
    return slack if math.isfinite(slack) else math.inf


def _even_step(edges: npt.NDArray[np.float64]) -> float | None:
    """``1 / w`` when the edges are finite, strictly increasing and evenly spaced by
    ``w = (e[m] - e[0]) / m`` up to a quarter of ``w`` each (float rounding of edges such as
    ``i / 1000`` is far less), else None. Within that tolerance the arithmetic guess of
    :func:`_bin_even` is never more than one cell off, which its one-step correction fixes."""
    e = np.asarray(edges, dtype=np.float64)
    m = e.size - 1
    if m < 1 or not np.isfinite(e).all():
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        w = (float(e[-1]) - float(e[0])) / m
        inv = 1.0 / w if w > 0.0 else math.inf
        if not (math.isfinite(w) and math.isfinite(inv) and w >= np.finfo(np.float64).tiny):
            return None
        if not (np.diff(e) > 0.0).all():
            return None
        dev = np.abs(e - (e[0] + np.arange(m + 1) * w))
    if not bool((dev <= 0.25 * w).all()):
        return None
    return inv


def _bin_even(
    values: npt.NDArray[np.float64], edges: npt.NDArray[np.float64], inv_w: float, slack: float = math.inf
) -> npt.NDArray[np.intp]:
    """:func:`bin_index` on evenly spaced edges (``inv_w`` from :func:`_even_step`).

    The guess ``k = floor((v - e[0]) / w) + 1``, computed as ``(v - (e[0] - w)) / w`` clipped
    to ``[0, m + 1]`` and truncated (NaN goes to ``m + 1``), is the true cell or a neighbour;
    it is then corrected one step each way against the bounds ``b = [-inf, e[0] .. e[m-1],
    next(e[m]), NaN]``, where cell ``k`` is ``b[k] <= v < b[k+1]``: ``next(e[m])``, the float
    after the last edge, puts the maximum in the last bin, and the top bound, NaN, compares
    false with everything so that no value moves past the overflow cell ``m + 1`` (the true
    cell is never beyond it). NaN compares false with every bound and keeps its guess.

    Only values whose position lies within ``slack`` (:func:`_even_slack`) of an integer
    can be off, clipped ones included (their position is an integer): with a slack below
    half a cell only those are compared with the bounds (on the AUC edges, a few values in
    a billion), the rest keep their guess.
    """
    e = np.asarray(edges, dtype=np.float64)
    m = e.size - 1
    with np.errstate(over="ignore", invalid="ignore"):
        q = np.subtract(values, e[0] - 1.0 / inv_w, dtype=np.float64)
        q *= inv_w
    np.fmin(q, float(m + 1), out=q)  # fmin: NaN becomes m + 1
    np.maximum(q, 0.0, out=q)
    if slack < 0.5:
        whole = np.floor(q)
        k: npt.NDArray[np.intp] = whole.astype(np.intp)
        frac = np.subtract(q, whole, out=q)
        frac -= 0.5
        np.abs(frac, out=frac)  # 0.5 at an integer, 0 halfway between two
        near = frac >= 0.5 - slack
        if near.any():
            at = np.flatnonzero(near)
            k[at] = _bin_even_exact(values[at], k[at], e)
        return k
    return _bin_even_exact(values, q.astype(np.intp), e)  # truncation is floor on [0, m + 1]


def _bin_even_exact(
    values: npt.NDArray[np.float64], k: npt.NDArray[np.intp], e: npt.NDArray[np.float64]
) -> npt.NDArray[np.intp]:
    """The guesses ``k`` of :func:`_bin_even` corrected one step each way against the
    bounds (in place)."""
    m = e.size - 1
    bounds = np.empty(m + 3, dtype=np.float64)
    bounds[0] = -np.inf
    bounds[1 : m + 1] = e[:m]
    bounds[m + 1] = np.nextafter(e[m], np.inf)
    bounds[m + 2] = np.nan
    k -= values < bounds[k]
    k += values >= bounds[1:][k]
    return k


def _numeric_edges(v: npt.NDArray[np.float64], bins: int) -> npt.NDArray[np.float64]:
    distinct = np.unique(v)
    if distinct.size <= bins:
        # One bin per distinct value; the repeated last edge makes the maximum a point bin.
        return np.append(distinct, distinct[-1])
    q = np.quantile(v, np.linspace(0.0, 1.0, bins + 1))
    edges = np.unique(q)
    if q[-2] == q[-1]:
        # The maximum holds at least 1/bins of the mass (a clipped feature): its own point bin.
        edges = np.append(edges, edges[-1])
    return edges


def _numeric_edges_and_counts(
    v: npt.NDArray[np.float64], bins: int, s: npt.NDArray[np.float64] | None = None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """``_numeric_edges(v, bins)`` and ``binned_counts(v, edges)`` of finite ``v`` from one
    sort of ``v``: the distinct values, the quantiles and the cell counts are read off the
    sorted column (the same edges and counts, several times faster).

    A column holding both ``-0.0`` and ``0.0`` takes the two functions themselves: which of
    the two zeros becomes an edge depends on how each of them orders the values.

    >>> _numeric_edges_and_counts(np.array([3.0, 1.0, 2.0, 2.0]), 10)
    (array([1., 2., 3., 3.]), array([0, 1, 2, 1, 0]))
    """
    if s is None:  # else the caller's sorted copy of v
        s = np.sort(v)  # as np.unique sorts its copy
    lo, hi = s.searchsorted(0.0, side="left"), s.searchsorted(0.0, side="right")
    if hi - lo > 1:
        neg = np.signbit(s[lo:hi])
        if neg.any() and not neg.all():
            edges = _numeric_edges(v, bins)
            return edges, binned_counts(v, edges)
    first = np.empty(s.size, dtype=np.bool_)
    first[:1] = True
    np.not_equal(s[1:], s[:-1], out=first[1:])  # the first of each run of equal values
    if int(np.count_nonzero(first)) <= bins:
        distinct = s[first]  # np.unique(v)
        edges = np.append(distinct, distinct[-1])
    else:
        q = _sorted_quantiles(s, bins)  # np.quantile(v, linspace(0, 1, bins + 1)), read off s
        edges = np.unique(q)
        if q[-2] == q[-1]:
            edges = np.append(edges, edges[-1])
    return edges, _sorted_counts(s, edges)


def _sorted_quantiles(s: npt.NDArray[np.float64], bins: int) -> npt.NDArray[np.float64]:
    """``np.quantile(s, np.linspace(0.0, 1.0, bins + 1))`` of sorted finite ``s`` (numpy's
    default linear method, the same floats), read off ``s``: np.quantile partitions a copy
    of the column (about as long as sorting it) to find order statistics that a sorted
    column holds in place. A test checks it against np.quantile.

    >>> _sorted_quantiles(np.array([1.0, 2.0, 4.0, 8.0]), 4)
    array([1.  , 1.75, 3.  , 5.  , 8.  ])
    """
    n = s.size
    virtual = (n - 1) * np.linspace(0.0, 1.0, bins + 1)
    lo = np.floor(virtual)
    hi = lo + 1
    top = virtual >= n - 1  # the maximum: both neighbours are the last value
    lo[top] = -1
    hi[top] = -1
    gamma = virtual - lo
    a = s[lo.astype(np.intp)]
    b = s[hi.astype(np.intp)]
    # numpy's _lerp: from the nearer end, so that the ends are exact.
    diff = b - a
    out = a + diff * gamma
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out


def _sorted_counts(
    s: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """:func:`binned_counts` of sorted finite values ``s`` on non-decreasing ``edges``: cell
    ``i`` (``1..m-1``) holds the values from the first ``>= e[i-1]`` to the first ``>= e[i]``,
    the last bin also the values equal to ``e[m]``."""
    m = len(edges) - 1
    pos = np.empty(m + 2, dtype=np.int64)
    pos[0] = 0
    pos[1 : m + 1] = s.searchsorted(edges[:m], side="left")
    pos[m + 1] = s.searchsorted(edges[m], side="right")
    cells = np.empty(m + 2, dtype=np.int64)
    cells[: m + 1] = np.diff(pos)
    cells[m + 1] = s.size - pos[m + 1]
    return cells
