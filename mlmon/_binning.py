"""Feature names and binning, shared by the reference and the serving-side window.

Re-exported by :mod:`mlmon.reference` (whose docstring describes the binning); import the names
from there.
"""

from __future__ import annotations

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
    """Cell index in ``0..m+1`` of each (finite) value; see :func:`binned_counts`."""
    m = len(edges) - 1
    idx = np.searchsorted(edges, values, side="right")
    # The last bin is closed: the maximum (and a repeated last edge, a point bin) belongs to it.
    idx[values == edges[m]] = m
    return idx


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
