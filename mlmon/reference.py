"""The training-data reference: a small per-feature summary that drift is measured against.

A :class:`Reference` keeps no raw rows. Per numeric feature it keeps quantile bin edges (deciles by
default), the reference count in each bin, min, max, mean, variance, the number of valid values
and of rows; per categorical feature the counts of its most frequent categories plus an "other"
count. The same summary of the model's outputs (1-D scores) is kept when ``outputs=`` is given.

Binning, shared by the reference and the serving-side window (:func:`binned_counts`):

- edges ``e[0] = min < ... <= e[m] = max`` make ``m`` bins ``[e[i], e[i+1])``, the last closed;
- values below ``e[0]`` fall in an explicit underflow bin and values above ``e[m]`` in an overflow
  bin, so counts have ``m + 2`` cells and the reference has zero mass in the two outer ones;
- a feature with at most ``bins`` distinct values gets one bin per distinct value (the last edge is
  repeated so the maximum is a point bin); a constant feature is the extreme case: edges
  ``(c, c)``, one bin holding all the mass, and any other value is out of range;
- when the maximum alone holds at least ``1/bins`` of the mass (a clipped feature), it also gets
  its own point bin.

Categories are compared by their string form (``1``, ``1.0`` and ``"1"`` are the same category);
``None`` and NaN are missing.
"""

from __future__ import annotations

import importlib
import itertools
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import attrs
import numpy as np
import numpy.typing as npt

from mlmon._files import atomic_write
from mlmon._values import (
    category_key,
    is_numeric_column,
    is_pandas,
    object_column_to_float,
    to_float,
)

__all__ = [
    "CategoricalProfile",
    "FeatureProfile",
    "NumericProfile",
    "Reference",
    "binned_counts",
    "category_key",
    "check_feature_names",
    "is_numeric_column",
    "object_column_to_float",
    "sanitize_label",
    "to_float",
]

FORMAT_VERSION = 1
"""Version of the JSON file written by :meth:`Reference.save`."""

MAX_BINS = 10_000
"""Most quantile bins per numeric feature (``bins`` of :meth:`Reference.from_data`); a profile
holds at most ``MAX_BINS + 1`` bins (a point bin at a clipped maximum)."""

MAX_CATEGORIES = 100_000
"""Most categories kept per categorical feature (``max_categories``)."""

MAX_COUNT = 2**63 - 1
"""Largest count a profile may hold: window histograms count in int64."""

MAX_FILE_BYTES = 64 * 2**20
"""Default size limit of a reference file read by :meth:`Reference.load` (64 MiB)."""

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


# --------------------------------------------------------------------------- validators


def _name(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a non-empty str, got {value!r}")


def _short(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (file values can be huge)."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond the int-to-str digit limit
        return f"<{type(value).__name__} too large to print>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _count(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if (
        not isinstance(value, (int, np.integer))
        or isinstance(value, bool)
        or not 0 <= value <= MAX_COUNT
    ):
        raise ValueError(f"{attribute.name} must be an int >= 0 (at most 2**63 - 1), got {_short(value)}")


def _float(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"{attribute.name} must be a float, got {value!r}")


def _int_tuple(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= MAX_COUNT for c in value):  # type: ignore[attr-defined]
        raise ValueError(
            f"{attribute.name} must hold ints >= 0 (at most 2**63 - 1), got {_short(value)}"
        )


def _ints(value: Iterable[Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


def _strs(value: Iterable[Any]) -> tuple[str, ...]:
    return tuple(value)


def _profiles(value: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(value)


def _nan_key(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def _floats(value: Iterable[Any]) -> tuple[float, ...]:
    return tuple(float(v) for v in value)


# --------------------------------------------------------------------------- profiles


@attrs.frozen(kw_only=True)
class NumericProfile:
    """Reference summary of one numeric feature (or of the model outputs).

    Attributes:
        name: feature name.
        rows: rows of the reference data (valid + missing).
        count: valid (finite) values.
        edges: ``m + 1`` bin edges, ``edges[0] == min`` and ``edges[-1] == max``; empty when
            the feature had no valid value.
        counts: reference values in each of the ``m`` bins (none fall outside by construction).
        min, max, mean, variance: of the valid values (population variance); NaN when none.

    >>> p = Reference.from_data([[1.0], [2.0], [3.0], [4.0]], bins=2).features[0]
    >>> p.edges, p.counts, p.mean
    ((1.0, 2.5, 4.0), (2, 2), 2.5)
    """

    name: str = attrs.field(validator=_name)
    rows: int = attrs.field(validator=_count)
    count: int = attrs.field(validator=_count)
    edges: tuple[float, ...] = attrs.field(converter=_floats)
    counts: tuple[int, ...] = attrs.field(converter=_ints, validator=_int_tuple)
    # NaN (an all-missing feature) compares equal to NaN, so a saved and loaded profile is equal.
    min: float = attrs.field(validator=_float, eq=_nan_key)
    max: float = attrs.field(validator=_float, eq=_nan_key)
    mean: float = attrs.field(validator=_float, eq=_nan_key)
    variance: float = attrs.field(validator=_float, eq=_nan_key)

    kind: Literal["numeric"] = attrs.field(default="numeric", init=False)

    def __attrs_post_init__(self) -> None:
        if self.count > self.rows:
            raise ValueError(f"count must be <= rows ({self.rows}), got {self.count!r}")
        if self.count == 0:
            if self.edges or self.counts:
                raise ValueError(f"edges must be empty when count is 0, got {self.edges!r}")
            return
        e = self.edges
        if len(e) < 2:
            raise ValueError(f"edges must hold at least 2 values, got {e!r}")
        if len(e) > MAX_BINS + 2:
            raise ValueError(
                f"edges must hold at most {MAX_BINS + 2} values ({MAX_BINS} bins and a point "
                f"bin), got {len(e)}"
            )
        if not all(math.isfinite(x) for x in e):
            raise ValueError(f"edges must be finite, got {e!r}")
        # Strictly increasing, except that the last edge may repeat (a point bin at the maximum).
        inner = e[:-1]
        if any(b <= a for a, b in itertools.pairwise(inner)) or e[-1] < e[-2]:
            raise ValueError(f"edges must increase (only the last may repeat), got {e!r}")
        if len(self.counts) != len(e) - 1:
            raise ValueError(
                f"counts must hold len(edges) - 1 = {len(e) - 1} values, got {self.counts!r}"
            )
        if sum(self.counts) != self.count:
            raise ValueError(f"counts must sum to count ({self.count}), got {self.counts!r}")
        if self.min != e[0] or self.max != e[-1]:
            raise ValueError(
                f"min/max must equal the outer edges {e[0]!r}/{e[-1]!r}, got {self.min!r}/{self.max!r}"
            )
        if not (math.isfinite(self.mean) and math.isfinite(self.variance) and self.variance >= 0):
            raise ValueError(
                f"mean/variance must be finite and variance >= 0, got {self.mean!r}/{self.variance!r}"
            )

    @property
    def missing(self) -> int:
        """Reference rows where the feature was missing or invalid."""
        return self.rows - self.count

    @property
    def proportions(self) -> tuple[float, ...]:
        """Share of the valid reference values in each bin."""
        return tuple(c / self.count for c in self.counts) if self.count else ()

    def cells(self) -> npt.NDArray[np.int64]:
        """Reference counts on the ``m + 2`` cells of :func:`binned_counts` (outer cells 0)."""
        return np.array([0, *self.counts, 0], dtype=np.int64)

    @classmethod
    def from_values(cls, name: str, values: npt.ArrayLike, bins: int = 10) -> NumericProfile:
        """Summarise a 1-D column (non-finite values count as missing)."""
        x = np.asarray(values, dtype=np.float64).ravel()
        v = x[np.isfinite(x)]
        if v.size == 0:
            nan = math.nan
            return cls(
                name=name,
                rows=int(x.size),
                count=0,
                edges=(),
                counts=(),
                min=nan,
                max=nan,
                mean=nan,
                variance=nan,
            )
        edges = _numeric_edges(v, bins)
        cells = binned_counts(v, edges)
        with np.errstate(over="ignore", invalid="ignore"):
            mean = float(v.mean())
            d = v - mean
            variance = float(d @ d) / v.size
        if not (math.isfinite(mean) and math.isfinite(variance)):
            raise ValueError(
                f"feature {name!r} has values too large to summarise (variance overflows float64)"
            )
        return cls(
            name=name,
            rows=int(x.size),
            count=int(v.size),
            edges=edges.tolist(),
            counts=cells[1:-1].tolist(),
            min=float(edges[0]),
            max=float(edges[-1]),
            mean=mean,
            variance=variance,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN statistics of an all-missing feature become None)."""

        def f(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "name": self.name,
            "kind": "numeric",
            "rows": self.rows,
            "count": self.count,
            "edges": list(self.edges),
            "counts": list(self.counts),
            "min": f(self.min),
            "max": f(self.max),
            "mean": f(self.mean),
            "variance": f(self.variance),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "profile") -> NumericProfile:
        """Inverse of :meth:`to_dict`; strict about types (no value is coerced).

        Raises:
            ValueError: a missing or invalid field, named as ``where.field``.
        """
        r = _Fields(data, where)
        kw: dict[str, Any] = {
            "name": r.name("name"),
            "rows": r.count("rows"),
            "count": r.count("count"),
            "edges": r.numbers("edges", MAX_BINS + 2),
            "counts": r.counts("counts", MAX_BINS + 1),
        }
        for key in ("min", "max", "mean", "variance"):
            kw[key] = r.stat(key)
        r.kind("numeric")
        return r.build(cls, kw)


@attrs.frozen(kw_only=True)
class CategoricalProfile:
    """Reference summary of one categorical feature: top categories plus an "other" count.

    Attributes:
        name: feature name.
        rows: rows of the reference data (valid + missing).
        count: valid (non-missing) values.
        categories: the most frequent categories (at most ``max_categories``), most frequent first.
        counts: reference count of each kept category.
        other: reference values in categories beyond the kept ones.

    >>> p = Reference.from_data({"color": ["red", "red", "blue", None]}).features[0]
    >>> p.categories, p.counts, p.other, p.missing
    (('red', 'blue'), (2, 1), 0, 1)
    """

    name: str = attrs.field(validator=_name)
    rows: int = attrs.field(validator=_count)
    count: int = attrs.field(validator=_count)
    categories: tuple[str, ...] = attrs.field(converter=_strs)
    counts: tuple[int, ...] = attrs.field(converter=_ints, validator=_int_tuple)
    other: int = attrs.field(validator=_count)

    kind: Literal["categorical"] = attrs.field(default="categorical", init=False)

    def __attrs_post_init__(self) -> None:
        if self.count > self.rows:
            raise ValueError(f"count must be <= rows ({self.rows}), got {self.count!r}")
        if len(self.categories) > MAX_CATEGORIES:
            raise ValueError(
                f"categories must hold at most {MAX_CATEGORIES} values, got {len(self.categories)}"
            )
        if not all(isinstance(c, str) for c in self.categories):
            raise ValueError(f"categories must be str, got {_short(self.categories)}")
        if len(set(self.categories)) != len(self.categories):
            raise ValueError(f"categories must be unique, got {self.categories!r}")
        if len(self.counts) != len(self.categories):
            raise ValueError(f"counts must hold one value per category, got {self.counts!r}")
        if sum(self.counts) + self.other != self.count:
            raise ValueError(
                f"counts + other must sum to count ({self.count}), got {self.counts!r} + {self.other!r}"
            )

    @property
    def missing(self) -> int:
        """Reference rows where the feature was missing."""
        return self.rows - self.count

    @property
    def proportions(self) -> dict[str, float]:
        """Share of the valid reference values per kept category."""
        return (
            {c: n / self.count for c, n in zip(self.categories, self.counts, strict=True)}
            if self.count
            else {}
        )

    def cells(self) -> npt.NDArray[np.int64]:
        """Reference counts per kept category, then "other" (the cells drift compares)."""
        return np.array([*self.counts, self.other], dtype=np.int64)

    @classmethod
    def from_values(
        cls, name: str, values: Iterable[object], max_categories: int = 100
    ) -> CategoricalProfile:
        """Summarise a column of categories (see :func:`category_key`)."""
        rows = 0
        counter: Counter[str] = Counter()
        for v in values:
            rows += 1
            k = category_key(v)
            if k is not None:
                counter[k] += 1
        count = sum(counter.values())
        # Ties broken by name so the same data always gives the same file.
        ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        kept = ranked[:max_categories]
        other = count - sum(n for _, n in kept)
        return cls(
            name=name,
            rows=rows,
            count=count,
            categories=[c for c, _ in kept],
            counts=[n for _, n in kept],
            other=other,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "kind": "categorical",
            "rows": self.rows,
            "count": self.count,
            "categories": list(self.categories),
            "counts": list(self.counts),
            "other": self.other,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "profile") -> CategoricalProfile:
        """Inverse of :meth:`to_dict`; strict about types (no value is coerced).

        Raises:
            ValueError: a missing or invalid field, named as ``where.field``.
        """
        r = _Fields(data, where)
        kw = {
            "name": r.name("name"),
            "rows": r.count("rows"),
            "count": r.count("count"),
            "categories": r.strings("categories", MAX_CATEGORIES),
            "counts": r.counts("counts", MAX_CATEGORIES),
            "other": r.count("other"),
        }
        r.kind("categorical")
        return r.build(cls, kw)


FeatureProfile = NumericProfile | CategoricalProfile
"""The summary of one feature."""


# --------------------------------------------------------------------------- file fields


_P = TypeVar("_P", NumericProfile, CategoricalProfile)


class _Fields:
    """Strict readers of one JSON object of a reference file; errors name ``where.field``."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ValueError(f"{where} must be a JSON object, got {_short(data)}")
        self.data = data
        self.where = where

    def get(self, key: str) -> Any:
        if key not in self.data:
            raise ValueError(f"{self.where}: missing field {key!r}")
        return self.data[key]

    def fail(self, key: str, what: str, value: object) -> ValueError:
        return ValueError(f"{self.where}.{key} must be {what}, got {_short(value)}")

    def name(self, key: str) -> str:
        v = self.get(key)
        if not isinstance(v, str) or not v:
            raise self.fail(key, "a non-empty string", v)
        return v

    def count(self, key: str) -> int:
        v = self.get(key)
        if type(v) is not int or not 0 <= v <= MAX_COUNT:
            raise self.fail(key, "an int >= 0 (at most 2**63 - 1)", v)
        return v

    def _list(self, key: str, limit: int) -> list[Any]:
        v = self.get(key)
        if not isinstance(v, list):
            raise self.fail(key, "a list", v)
        if len(v) > limit:
            raise ValueError(f"{self.where}.{key} must hold at most {limit} values, got {len(v)}")
        return v

    def counts(self, key: str, limit: int) -> list[int]:
        v = self._list(key, limit)
        for i, c in enumerate(v):
            if type(c) is not int or not 0 <= c <= MAX_COUNT:
                raise self.fail(f"{key}[{i}]", "an int >= 0 (at most 2**63 - 1)", c)
        if sum(v) > MAX_COUNT:
            raise ValueError(f"{self.where}.{key} must sum to at most 2**63 - 1")
        return v

    def numbers(self, key: str, limit: int) -> list[float]:
        v = self._list(key, limit)
        for i, x in enumerate(v):
            if type(x) not in (int, float) or not math.isfinite(x):
                raise self.fail(f"{key}[{i}]", "a finite number", x)
        return [float(x) for x in v]

    def strings(self, key: str, limit: int) -> list[str]:
        v = self._list(key, limit)
        for i, x in enumerate(v):
            if not isinstance(x, str):
                raise self.fail(f"{key}[{i}]", "a string", x)
        return v

    def stat(self, key: str) -> float:
        v = self.get(key)
        if v is None:
            return math.nan
        if type(v) not in (int, float) or not math.isfinite(v):
            raise self.fail(key, "a finite number or null", v)
        return float(v)

    def kind(self, want: str) -> None:
        v = self.data.get("kind", want)
        if v != want:
            raise self.fail("kind", repr(want), v)

    def build(self, cls: type[_P], kw: dict[str, Any]) -> _P:
        try:
            return cls(**kw)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{self.where}: {e}") from None


# --------------------------------------------------------------------------- input columns


def _columns(
    X: Any, feature_names: Sequence[str] | None
) -> tuple[list[str], list[npt.NDArray[Any]]]:
    """Column names and 1-D columns (float64 or object) of the reference data."""
    names: list[str] | None = None
    cols: list[npt.NDArray[Any]]
    if is_pandas(X, "DataFrame"):
        # Only reached when the caller already has pandas.
        pd: Any = importlib.import_module("pandas")

        names = [str(c) for c in X.columns]
        cols = []
        for c in X.columns:
            s = X[c]
            if pd.api.types.is_numeric_dtype(s.dtype) and not isinstance(
                s.dtype, pd.CategoricalDtype
            ):
                cols.append(s.to_numpy(dtype=np.float64, na_value=np.nan))
            else:
                cols.append(s.to_numpy(dtype=object))
    elif isinstance(X, Mapping):
        names = [str(k) for k in X]
        cols = [
            np.asarray(v) if isinstance(v, np.ndarray) else np.array(list(v), dtype=object)
            for v in X.values()
        ]
        for name, c in zip(names, cols, strict=True):
            if c.ndim != 1:
                raise ValueError(f"X: column {name!r} must be 1-D, got shape {c.shape}")
        lengths = {len(c) for c in cols}
        if len(lengths) > 1:
            raise ValueError(f"X: columns must have equal lengths, got {sorted(lengths)}")
    elif isinstance(X, np.ndarray):
        if X.ndim != 2:
            raise ValueError(
                f"X must be 2-D (rows x features), got shape {X.shape}; use X.reshape(-1, 1) for one feature"
            )
        cols = [X[:, j] for j in range(X.shape[1])]
    elif isinstance(X, (list, tuple)):
        if X and all(isinstance(r, Mapping) for r in X):
            keys: dict[str, None] = {}
            for r in X:
                for k in r:
                    keys.setdefault(str(k), None)
            names = list(keys)
            cols = [np.array([r.get(k) for r in X], dtype=object) for k in names]
        else:
            width = None
            for i, r in enumerate(X):
                if not isinstance(r, (list, tuple, np.ndarray)):
                    raise ValueError(
                        f"X: row {i} must be a list, tuple or array, got {type(r).__name__}"
                    )
                if width is None:
                    width = len(r)
                elif len(r) != width:
                    raise ValueError(f"X: row {i} has {len(r)} values, row 0 has {width}")
            arr = np.empty((len(X), width or 0), dtype=object)
            for i, r in enumerate(X):
                arr[i, :] = list(r)
            cols = [arr[:, j] for j in range(arr.shape[1])]
    else:
        raise TypeError(
            f"X must be a 2-D array, a list of rows, a dict of columns or a DataFrame, got {type(X).__name__}"
        )
    if feature_names is not None:
        given = list(feature_names)
        if len(given) != len(cols):
            raise ValueError(f"feature_names has {len(given)} names for {len(cols)} columns")
        names = given
    if names is None:
        names = [f"f{j}" for j in range(len(cols))]
    return names, cols


# --------------------------------------------------------------------------- Reference


def _check_features(_inst: object, attribute: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
    for p in value:
        if not isinstance(p, (NumericProfile, CategoricalProfile)):
            raise ValueError(
                f"{attribute.name} must hold NumericProfile/CategoricalProfile, got {p!r}"
            )
    check_feature_names([p.name for p in value], attribute.name)


@attrs.frozen(kw_only=True)
class Reference:
    """What the training data looked like, per feature and for the outputs, in a few numbers.

    Build it once from the training (or a validation) set with :meth:`from_data`, save it next
    to the model with :meth:`save`, and hand it to the monitor; the serving process then
    measures the window's data quality and drift against it.

    Attributes:
        rows: rows of the reference data.
        features: one profile per feature, in column order.
        outputs: profile of the reference model outputs, or None.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(1000, 2))
    >>> ref = Reference.from_data(X, feature_names=["age", "income"], outputs=rng.uniform(size=1000))
    >>> ref.feature_names
    ('age', 'income')
    >>> len(ref["age"].edges), ref["age"].counts
    (11, (100, 100, 100, 100, 100, 100, 100, 100, 100, 100))
    >>> Reference.from_dict(ref.to_dict()) == ref
    True
    """

    rows: int = attrs.field(validator=_count)
    features: tuple[FeatureProfile, ...] = attrs.field(
        converter=_profiles, validator=_check_features
    )
    outputs: NumericProfile | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.instance_of(NumericProfile)),
    )

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Feature names, in column order."""
        return tuple(p.name for p in self.features)

    @property
    def categorical(self) -> tuple[str, ...]:
        """Names of the categorical features."""
        return tuple(p.name for p in self.features if p.kind == "categorical")

    def __getitem__(self, name: str) -> FeatureProfile:
        for p in self.features:
            if p.name == name:
                return p
        raise KeyError(name)

    @classmethod
    def from_data(
        cls,
        X: Any,
        feature_names: Sequence[str] | None = None,
        categorical: Iterable[str | int] | None = None,
        outputs: npt.ArrayLike | None = None,
        bins: int = 10,
        max_categories: int = 100,
    ) -> Reference:
        """Summarise reference data.

        Args:
            X: a 2-D numpy array, a list of rows (lists, tuples or dicts), a dict of columns,
                or a pandas DataFrame.
            feature_names: names of the columns (default: the DataFrame's or dict's keys,
                else ``f0, f1, ...``).
            categorical: names or column indices of the categorical features. When None,
                non-numeric columns (strings, pandas categories, objects) are categorical.
                Booleans are numeric (0/1).
            outputs: 1-D reference model outputs (scores), for ``mlmon_output_drift_psi``.
            bins: quantile bins per numeric feature (10: deciles).
            max_categories: categories kept per categorical feature; the rest count as "other".

        Raises:
            ValueError: no rows, no columns, ragged rows, bad names (see
                :func:`check_feature_names`), unknown categorical names, bad outputs, or
                ``bins``/``max_categories`` out of range.
        """
        if not (isinstance(bins, int) and not isinstance(bins, bool) and 1 <= bins <= MAX_BINS):
            raise ValueError(f"bins must be an int in [1, {MAX_BINS}], got {bins!r}")
        if not (
            isinstance(max_categories, int)
            and not isinstance(max_categories, bool)
            and 1 <= max_categories <= MAX_CATEGORIES
        ):
            raise ValueError(
                f"max_categories must be an int in [1, {MAX_CATEGORIES}], got {max_categories!r}"
            )
        names, cols = _columns(X, feature_names)
        if not cols:
            raise ValueError("X has no columns: a reference needs at least one feature")
        rows = len(cols[0])
        if rows == 0:
            raise ValueError("X has 0 rows: a reference needs at least one row")
        names_t = check_feature_names(names)
        cat: set[int] = set()
        if categorical is not None:
            for c in categorical:
                if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
                    if not 0 <= int(c) < len(cols):
                        raise ValueError(
                            f"categorical: column index {c!r} out of range for {len(cols)} columns"
                        )
                    cat.add(int(c))
                elif c in names_t:
                    cat.add(names_t.index(c))
                else:
                    raise ValueError(
                        f"categorical: {c!r} is not a feature name (names: {list(names_t)})"
                    )
        else:
            cat = {j for j, col in enumerate(cols) if not is_numeric_column(col)}
        profiles: list[FeatureProfile] = []
        for j, (name, col) in enumerate(zip(names_t, cols, strict=True)):
            if j in cat:
                profiles.append(CategoricalProfile.from_values(name, col, max_categories))
            else:
                x = (
                    col.astype(np.float64)
                    if col.dtype.kind in "biuf"
                    else object_column_to_float(col)
                )
                profiles.append(NumericProfile.from_values(name, x, bins))
        out_profile = None
        if outputs is not None:
            out_profile = NumericProfile.from_values("output", _outputs_1d(outputs), bins)
        return cls(rows=rows, features=tuple(profiles), outputs=out_profile)

    # ----------------------------------------------------------------------- files

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, versioned: ``{"mlmon_reference": 1, ...}``."""
        return {
            "mlmon_reference": FORMAT_VERSION,
            "rows": self.rows,
            "features": [p.to_dict() for p in self.features],
            "outputs": None if self.outputs is None else self.outputs.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Reference:
        """Inverse of :meth:`to_dict`, checking everything :meth:`from_data` guarantees.

        Types are strict (a count is a JSON integer, an edge a finite number, no value is
        coerced); counts fit in int64 and add up (bins to the feature's count, every feature's
        rows to the reference's rows); edges are finite and increasing; at most
        :data:`MAX_BINS` bins (plus a point bin) and :data:`MAX_CATEGORIES` categories per
        feature; kinds are known; names follow :func:`check_feature_names`.

        Raises:
            ValueError: not an mlmon reference, an unsupported version, or a missing/invalid
                field; the message names the field (``features[2].counts[5]``) and the value.
        """
        if not isinstance(data, Mapping) or "mlmon_reference" not in data:
            raise ValueError("not an mlmon reference: the 'mlmon_reference' version key is missing")
        version = data["mlmon_reference"]
        if type(version) is not int or version != FORMAT_VERSION:
            raise ValueError(
                f"unsupported mlmon reference version {_short(version)} (this mlmon reads "
                f"version {FORMAT_VERSION})"
            )
        top = _Fields(data, "reference")
        rows = top.count("rows")
        if rows == 0:
            raise ValueError("reference.rows must be >= 1, got 0")
        items = top.get("features")
        if not isinstance(items, list) or not items:
            raise top.fail("features", "a non-empty list", items)
        features: list[FeatureProfile] = []
        for i, f in enumerate(items):
            where = f"features[{i}]"
            kind = f.get("kind") if isinstance(f, Mapping) else None
            if kind == "numeric":
                features.append(NumericProfile.from_dict(f, where))
            elif kind == "categorical":
                features.append(CategoricalProfile.from_dict(f, where))
            else:
                raise ValueError(
                    f"{where}.kind must be 'numeric' or 'categorical', got {_short(kind)}"
                )
            if features[-1].rows != rows:
                raise ValueError(
                    f"{where}.rows must equal the reference rows ({rows}), got {features[-1].rows}"
                )
        out = data.get("outputs")
        outputs = None if out is None else NumericProfile.from_dict(out, "outputs")
        try:
            return cls(rows=rows, features=tuple(features), outputs=outputs)
        except TypeError as e:  # a name that is not a string: check_feature_names
            raise ValueError(str(e)) from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the reference as JSON, atomically (a reader never sees half a file)."""
        atomic_write(path, json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":")))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, max_bytes: int = MAX_FILE_BYTES) -> Reference:
        """Read a file written by :meth:`save`.

        Args:
            path: the file.
            max_bytes: size limit (default :data:`MAX_FILE_BYTES`, 64 MiB; a reference of 100
                features with the maximum 10,000 bins each is about 20 MiB). Larger files are
                refused before they are parsed.

        Raises:
            OSError: the file cannot be read.
            ValueError: the file is larger than ``max_bytes``, not UTF-8, corrupt or truncated
                (invalid JSON, nested too deep), not an mlmon reference, of an unsupported
                version, or has a missing or invalid field (see :meth:`from_dict`); the message
                names the file and the problem.
        """
        if not (isinstance(max_bytes, int) and not isinstance(max_bytes, bool) and max_bytes > 0):
            raise ValueError(f"max_bytes must be an int > 0, got {max_bytes!r}")
        name = os.fspath(path)
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)  # never more, whatever the file claims to be
        if len(raw) > max_bytes:
            raise ValueError(
                f"{name}: larger than max_bytes={max_bytes} bytes; a reference file is small "
                "(raise max_bytes= if this one is genuine)"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{name}: not UTF-8 text (corrupt file?): {e}") from None
        try:
            data = json.loads(text, parse_constant=_no_constant)
        except json.JSONDecodeError as e:
            raise ValueError(f"{name}: not valid JSON (corrupt or truncated file?): {e}") from None
        except RecursionError:
            raise ValueError(f"{name}: not valid JSON (nested too deep)") from None
        except ValueError as e:  # NaN/Infinity, or an integer with too many digits
            raise ValueError(f"{name}: not valid JSON: {e}") from None
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None


def _no_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a number in a reference file")


def _outputs_1d(outputs: npt.ArrayLike) -> npt.NDArray[np.float64]:
    try:
        a = np.asarray(outputs, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("outputs must be 1-D numeric scores") from None
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"outputs must be 1-D scores (one per row), got shape {a.shape}")
    if a.size == 0:
        raise ValueError("outputs has 0 values: give the reference scores or leave outputs=None")
    return a
