"""The per-feature summaries of a reference: :class:`NumericProfile` and :class:`CategoricalProfile`.

Each checks its own invariants when built and reads its file form strictly (:class:`_Fields`).
Re-exported by :mod:`mlmon.reference`; import the names from there.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import attrs
import numpy as np
import numpy.typing as npt

from mlmon._binning import _numeric_edges_and_counts, binned_counts
from mlmon._values import category_key
from mlmon.stats.calibration import MAX_KNOTS, isotonic_knots, quantile_edges

__all__ = [
    "MAX_BINS",
    "MAX_CATEGORIES",
    "MAX_COUNT",
    "MIN_LABELS_PER_CLASS",
    "Calibration",
    "CategoricalProfile",
    "FeatureProfile",
    "NumericProfile",
]

MAX_BINS = 10_000
"""Most quantile bins per numeric feature (``bins`` of :meth:`Reference.from_data`); a profile
holds at most ``MAX_BINS + 1`` bins (a point bin at a clipped maximum)."""

MAX_CATEGORIES = 100_000
"""Most categories kept per categorical feature (``max_categories``)."""

MAX_COUNT = 2**63 - 1
"""Largest count a profile may hold: window histograms count in int64."""


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


def _moments(name: str, v: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Mean and population variance of a feature's valid values (two passes)."""
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(v.mean())
        d = v - mean
        variance = float(d @ d) / v.size
    if not (math.isfinite(mean) and math.isfinite(variance)):
        raise ValueError(f"feature {name!r} has values too large to summarise (variance overflows float64)")
    return mean, variance


@attrs.frozen(kw_only=True)
class NumericProfile:
    """Reference summary of one numeric feature (or of the model outputs).

    Attributes:
        name: feature name.
        rows: rows of the reference data (valid + missing).
        count: valid (finite) values.
        edges: ``m + 1`` bin edges, ``edges[0] == min`` and ``edges[-1] == max``; empty when
            the feature had no valid value. A segment's profile (:meth:`on_edges`) shares the
            overall reference's edges instead: ``edges[0] <= min`` and ``max <= edges[-1]``,
            and the edges stay when the segment has no valid value (all counts 0).
        counts: reference values in each of the ``m`` bins (none fall outside by construction).
        min, max, mean, variance: of the valid values (population variance); NaN when none.

    >>> from mlmon.reference import Reference
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
        e = self.edges
        if self.count == 0 and not e:
            if self.counts:
                raise ValueError(f"counts must be empty when edges are, got {_short(self.counts)}")
            return
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
            raise ValueError(f"counts must sum to count ({self.count}), got {_short(self.counts)}")
        if self.count == 0:  # a segment without a valid value, on the overall edges
            return
        if not e[0] <= self.min <= self.max <= e[-1]:
            raise ValueError(
                f"min/max must lie within the outer edges {e[0]!r}/{e[-1]!r}, got {self.min!r}/{self.max!r}"
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
    def from_values(
        cls, name: str, values: npt.ArrayLike, bins: int = 10, *, finite_sorted: npt.NDArray[np.float64] | None = None
    ) -> NumericProfile:
        """Summarise a 1-D column (non-finite values count as missing).

        ``finite_sorted``: the column sorted, when every value is finite and the caller has
        sorted it already (the same profile, without sorting it again)."""
        x = np.asarray(values, dtype=np.float64).ravel()
        v = x if finite_sorted is not None else x[np.isfinite(x)]
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
        edges, cells = _numeric_edges_and_counts(v, bins, finite_sorted)
        mean, variance = _moments(name, v)
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

    @property
    def own_edges(self) -> bool:
        """Whether the edges are the profile's own (``min``/``max`` are the outer edges, no
        edges without a valid value), as :meth:`from_values` makes them; a segment's profile
        on the overall edges (:meth:`on_edges`) usually is not."""
        if self.count == 0:
            return not self.edges
        return self.min == self.edges[0] and self.max == self.edges[-1]

    @classmethod
    def on_edges(cls, name: str, values: npt.ArrayLike, edges: Sequence[float]) -> NumericProfile:
        """Summarise a 1-D column on given ``edges`` (another profile's, e.g. the overall
        reference's for one segment's rows), so both count on the same cells.

        Raises:
            ValueError: a finite value outside ``[edges[0], edges[-1]]``, or values but no edges.

        >>> p = NumericProfile.on_edges("x", [2.0, 3.0, float("nan")], (1.0, 2.5, 4.0))
        >>> p.edges, p.counts, p.min, p.max, p.missing
        ((1.0, 2.5, 4.0), (1, 1), 2.0, 3.0, 1)
        """
        x = np.asarray(values, dtype=np.float64).ravel()
        v = x[np.isfinite(x)]
        nan = math.nan
        if v.size == 0:
            return cls(name=name, rows=int(x.size), count=0, edges=edges, counts=[0] * max(len(edges) - 1, 0),
                       min=nan, max=nan, mean=nan, variance=nan)  # fmt: skip
        if not edges:
            raise ValueError(f"feature {name!r}: {v.size} valid values but no edges to count them on")
        e = np.asarray(edges, dtype=np.float64)
        cells = binned_counts(v, e)
        if cells[0] or cells[-1]:
            raise ValueError(
                f"feature {name!r}: {int(cells[0] + cells[-1])} values outside the edges "
                f"[{float(e[0])!r}, {float(e[-1])!r}]"
            )
        mean, variance = _moments(name, v)
        return cls(name=name, rows=int(x.size), count=int(v.size), edges=edges, counts=cells[1:-1].tolist(),
                   min=float(v.min()), max=float(v.max()), mean=mean, variance=variance)  # fmt: skip

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

    >>> from mlmon.reference import Reference
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


MIN_LABELS_PER_CLASS = 100
"""Fewest reference labels of each class a :class:`Calibration` is fitted from: with fewer, the
calibrated probabilities (and every estimate built on them) would carry errors as large as the
drops they must detect."""

AUC_BINS = 1000
"""Score bins of the estimated ROC AUC (quantiles of the reference scores)."""

CALIBRATION_VERSION = 1
"""Version of the ``calibration`` object in a reference file."""


def _floats_checked(value: Iterable[Any]) -> tuple[float, ...]:
    return tuple(float(v) for v in value)


@attrs.frozen(kw_only=True)
class Calibration:
    """Isotonic calibration of a binary classifier's scores, fitted on labelled reference data.

    Maps a raw score (a probability, a logit, a margin: any real number, only the order
    matters) to the share of positives among reference rows with such scores: linear between
    knots ``(x, y)``, clipped outside ``[x[0], x[-1]]``, the range of the reference scores.

    Attributes:
        x: increasing raw scores (knots); ``x[0]``/``x[-1]`` are the reference's min and max.
        y: calibrated probabilities at the knots, non-decreasing, in [0, 1].
        edges: increasing raw-score bin edges (reference quantiles) for the estimated ROC AUC.
        positives, negatives: labelled reference rows of each class.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> s = rng.uniform(size=2000); y = rng.uniform(size=2000) < s ** 2
    >>> cal = Calibration.fit(s, y)
    >>> cal.positives + cal.negatives, round(float(cal.apply(np.array([0.5]))[0]), 1)
    (2000, 0.2)
    """

    x: tuple[float, ...] = attrs.field(converter=_floats_checked)
    y: tuple[float, ...] = attrs.field(converter=_floats_checked)
    edges: tuple[float, ...] = attrs.field(converter=_floats_checked)
    positives: int = attrs.field(validator=_count)
    negatives: int = attrs.field(validator=_count)

    def __attrs_post_init__(self) -> None:
        x, y, e = self.x, self.y, self.edges
        if not 2 <= len(x) <= MAX_KNOTS or len(y) != len(x):
            raise ValueError(
                f"calibration needs 2 to {MAX_KNOTS} knots with one y per x, got {len(x)} x and {len(y)} y"
            )
        if not all(math.isfinite(v) for v in x) or any(b <= a for a, b in itertools.pairwise(x)):
            raise ValueError(f"calibration x must be finite and strictly increasing, got {_short(x)}")
        if not all(0.0 <= v <= 1.0 for v in y) or any(b < a for a, b in itertools.pairwise(y)):
            raise ValueError(f"calibration y must be non-decreasing probabilities in [0, 1], got {_short(y)}")
        if not 2 <= len(e) <= AUC_BINS + 1:
            raise ValueError(f"calibration edges must hold 2 to {AUC_BINS + 1} values, got {len(e)}")
        if not all(math.isfinite(v) for v in e) or any(b <= a for a, b in itertools.pairwise(e)):
            raise ValueError(f"calibration edges must be finite and strictly increasing, got {_short(e)}")
        for name in ("positives", "negatives"):
            n = getattr(self, name)
            if n < MIN_LABELS_PER_CLASS:
                raise ValueError(
                    f"calibration {name} must be >= {MIN_LABELS_PER_CLASS} (MIN_LABELS_PER_CLASS), got {n}"
                )

    @property
    def score_range(self) -> tuple[float, float]:
        """The reference's lowest and highest score: beyond them the estimate is unreliable."""
        return self.x[0], self.x[-1]

    def apply(self, scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Calibrated probabilities of raw ``scores`` (NaN stays NaN)."""
        out: npt.NDArray[np.float64] = np.interp(scores, np.asarray(self.x), np.asarray(self.y))
        return out

    @classmethod
    def fit(cls, scores: npt.ArrayLike, labels: npt.ArrayLike, *, bins: int = AUC_BINS) -> Calibration:
        """Fit on reference ``scores`` and their ``labels`` (1/True positive, 0/False negative);
        ``bins`` quantile bins (at most :data:`AUC_BINS`) for the estimated ROC AUC.

        Raises:
            ValueError: scores or labels not 1-D numbers of equal length, a NaN or infinite
                score, a label other than 0/1, fewer than :data:`MIN_LABELS_PER_CLASS` labels
                of either class (one class only, a few dozen labels), or constant scores.
        """
        try:
            s = np.asarray(scores, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("calibration: outputs (the reference scores) must be numbers") from None
        if s.ndim == 2 and s.shape[1] == 1:
            s = s[:, 0]
        lab = np.asarray(labels)
        if lab.dtype.kind not in "biuf":
            raise ValueError(
                f"labels must be 0/1 or booleans (1 = the positive class), got dtype {lab.dtype}"
            )
        if s.ndim != 1 or lab.ndim != 1 or s.size != lab.size:
            raise ValueError(
                f"labels must be 1-D with one label per output score, got {lab.shape} labels "
                f"for {s.shape} scores"
            )
        t = lab.astype(np.float64)
        bad = ~((t == 0.0) | (t == 1.0))
        if bad.any():
            raise ValueError(
                f"labels must be 0/1 or booleans (1 = the positive class), got {_short(lab[bad][0].item())} "
                f"({int(bad.sum())} such labels)"
            )
        nonfinite = int(np.count_nonzero(~np.isfinite(s)))
        if nonfinite:
            raise ValueError(
                f"calibration needs a finite score for every labelled row: outputs has {nonfinite} "
                "NaN or infinite scores (drop those rows from the reference)"
            )
        pos = int(t.sum())
        neg = int(t.size - pos)
        if min(pos, neg) < MIN_LABELS_PER_CLASS:
            raise ValueError(
                f"calibration needs at least {MIN_LABELS_PER_CLASS} reference labels of each class, "
                f"got {pos} positive and {neg} negative"
            )
        if s.min() == s.max():
            raise ValueError(f"calibration needs varying scores, the reference scores are all {float(s[0])!r}")
        x, y = isotonic_knots(s, t)
        if x.size < 2:  # unreachable: two distinct scores make two knots
            raise ValueError("calibration: fewer than two distinct scores")
        return cls(x=x.tolist(), y=y.tolist(), edges=quantile_edges(s, min(bins, AUC_BINS)).tolist(),
                   positives=pos, negatives=neg)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, versioned: ``{"mlmon_calibration": 1, "method": "isotonic", ...}``."""
        return {
            "mlmon_calibration": CALIBRATION_VERSION,
            "method": "isotonic",
            "x": list(self.x),
            "y": list(self.y),
            "edges": list(self.edges),
            "positives": self.positives,
            "negatives": self.negatives,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "calibration") -> Calibration:
        """Inverse of :meth:`to_dict`, strict about types and invariants.

        Raises:
            ValueError: an unsupported version or method, or a missing or invalid field,
                named as ``where.field``.
        """
        r = _Fields(data, where)
        version = r.get("mlmon_calibration")
        if type(version) is not int or version != CALIBRATION_VERSION:
            raise r.fail("mlmon_calibration", f"{CALIBRATION_VERSION} (the supported version)", version)
        if r.get("method") != "isotonic":
            raise r.fail("method", "'isotonic'", r.get("method"))
        kw: dict[str, Any] = {
            "x": r.numbers("x", MAX_KNOTS),
            "y": r.numbers("y", MAX_KNOTS),
            "edges": r.numbers("edges", AUC_BINS + 1),
            "positives": r.count("positives"),
            "negatives": r.count("negatives"),
        }
        return r.build(cls, kw)


_P = TypeVar("_P", NumericProfile, CategoricalProfile, Calibration)


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
