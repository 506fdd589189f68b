"""The training-data reference: a small per-feature summary that drift is measured against.

A :class:`Reference` keeps no raw rows. Per numeric feature it keeps quantile bin edges (deciles by
default), the reference count in each bin, min, max, mean, variance, the number of valid values
and of rows; per categorical feature the counts of its most frequent categories plus an "other"
count. The same summary of the model's outputs (1-D scores) is kept when ``outputs=`` is given,
and with ``labels=`` (binary classifiers) an isotonic :class:`Calibration` of those scores, from
which the monitor estimates precision, recall, F1, accuracy and ROC AUC before labels arrive.

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

Segments (``from_data(..., segment=...)``): each segment with enough rows also gets its own
profiles, counted on the overall reference's cells (its numeric edges, its kept categories and
"other", its output edges), so the window of one segment, binned once like every row, compares
like with like against the segment's share of the training data; see :meth:`Reference.for_segment`.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from mlmon._binning import bin_index as bin_index
from mlmon._binning import binned_counts, check_feature_names, sanitize_label
from mlmon._files import atomic_write
from mlmon._profiles import MAX_BINS as MAX_BINS
from mlmon._profiles import MAX_CATEGORIES as MAX_CATEGORIES
from mlmon._profiles import MAX_COUNT as MAX_COUNT
from mlmon._profiles import MIN_LABELS_PER_CLASS as MIN_LABELS_PER_CLASS
from mlmon._profiles import (
    Calibration,
    CategoricalProfile,
    FeatureProfile,
    NumericProfile,
    _count,
    _Fields,
    _profiles,
    _short,
)
from mlmon._values import (
    category_key,
    is_numeric_column,
    is_pandas,
    object_column_to_float,
    to_float,
)
from mlmon.segments import OVERFLOW, segment_name

PARALLEL_VALUES = 1 << 20
"""Numeric values from which :meth:`Reference.from_data` profiles the columns on threads (numpy
sorts them without the GIL); the profiles are the same."""


def usable_cpus(limit: int = 8) -> int:
    """CPUs this process may run on (its affinity where the OS says), at most ``limit``."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, limit))


def _float_column(col: Any) -> npt.NDArray[np.float64]:
    """A column as float64 (a float64 column as it is: nothing downstream writes to it)."""
    return col.astype(np.float64, copy=False) if col.dtype.kind in "biuf" else object_column_to_float(col)


def _numeric_profiles(
    names: Sequence[str], cols: Sequence[Any], idx: list[int], bins: int
) -> dict[int, NumericProfile | BaseException]:
    """The profiles of the numeric columns ``idx``, made on threads when there are enough
    values (else none: the caller makes them); a column that fails gives its exception."""
    threads = usable_cpus()
    if threads < 2 or len(idx) < 2 or len(cols[idx[0]]) * len(idx) < PARALLEL_VALUES:
        return {}

    def one(j: int, x: Any = None, s: Any = None) -> NumericProfile | BaseException:
        try:
            return NumericProfile.from_values(names[j], _float_column(cols[j]) if x is None else x, bins, finite_sorted=s)
        except Exception as exc:
            return exc

    def block(js: list[int]) -> list[NumericProfile | BaseException]:
        # A thread's columns sorted in one numpy call (long, without the GIL: calls of a
        # column each hand the GIL between the threads too often to overlap), when every
        # value is finite; else column by column.
        try:
            xs = [_float_column(cols[j]) for j in js]
            m = np.stack(xs)
            finite = bool(np.isfinite(m).all())
        except Exception:
            finite = False
        if not finite:
            return [one(j) for j in js]
        m.sort(axis=1)
        return [one(j, x, srt) for j, x, srt in zip(js, xs, m, strict=True)]

    k = min(len(idx), threads)
    blocks = [idx[i * len(idx) // k : (i + 1) * len(idx) // k] for i in range(k)]
    with ThreadPoolExecutor(k, thread_name_prefix="mlmon-reference") as ex:
        done = [p for b in ex.map(block, blocks) for p in b]
    return dict(zip(idx, done, strict=True))


__all__ = [
    "MIN_LABELS_PER_CLASS",
    "Calibration",
    "CategoricalProfile",
    "FeatureProfile",
    "NumericProfile",
    "Reference",
    "SegmentReferences",
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

MAX_FILE_BYTES = 64 * 2**20
"""Default size limit of a reference file read by :meth:`Reference.load` (64 MiB)."""

SEGMENTS_VERSION = 1
"""Version of the ``segments`` object of a reference file (see :meth:`Reference.to_dict`)."""

MAX_SEGMENTS = 1000
"""Most segments with their own profile in a reference (``max_segments``, and in a file)."""


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


# --------------------------------------------------------------------------- segments


def _split_segment_column(
    X: Any, segment: str, feature_names: Sequence[str] | None
) -> tuple[list[str], list[npt.NDArray[Any]], Any]:
    """Feature names and columns of ``X``, and the raw values of its column ``segment``.

    The segment column is not a feature unless ``feature_names`` lists it (then they name every
    column); otherwise it is dropped and ``feature_names`` name the other columns.
    """
    names, cols = _columns(X, None)
    if feature_names is not None and segment in list(feature_names):
        names, cols = _columns(X, feature_names)
        j = names.index(segment)
        return names, cols, _raw_column(X, j, cols[j])
    if segment not in names:
        raise ValueError(
            f"segment: {segment!r} is not a column of X (columns: {_short(names, 200)}); give a "
            "column name or one segment value per row"
        )
    j = names.index(segment)
    raw = _raw_column(X, j, cols[j])
    names = names[:j] + names[j + 1 :]
    cols = cols[:j] + cols[j + 1 :]
    if feature_names is not None:
        given = list(feature_names)
        if len(given) != len(cols):
            raise ValueError(
                f"feature_names has {len(given)} names for {len(cols)} columns (the segment "
                f"column {segment!r} is not a feature unless feature_names lists it)"
            )
        names = given
    return names, cols, raw


def _raw_column(X: Any, j: int, col: npt.NDArray[Any]) -> Any:
    """Column ``j`` as given (a DataFrame's numeric columns were read as float64)."""
    if is_pandas(X, "DataFrame"):
        return X.iloc[:, j].to_numpy()
    return col


def _segment_codes(values: Any, rows: int) -> tuple[npt.NDArray[np.intp], list[str], int]:
    """Per row, the index of its segment name in the returned list; and how many rows had a
    value without a name (put in :data:`~mlmon.segments.OVERFLOW`)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise ValueError(
            f"segment must be None, a column name of X or one value per row, got {_short(values)}"
        )
    if isinstance(values, np.ndarray):
        arr = values
    elif is_pandas(values, "Series") or is_pandas(values, "Categorical") or is_pandas(values, "Index"):
        arr = np.asarray(values)
    else:
        arr = np.empty(len(values), dtype=object)
        arr[:] = list(values)
    if arr.ndim != 1 or len(arr) != rows:
        raise ValueError(
            f"segment must hold one value per row of X ({rows}), got shape {np.shape(arr)}"
        )
    names: dict[str, int] = {}
    invalid_rows = 0

    def code(value: Any) -> tuple[int, bool]:
        try:
            name = segment_name(value)
            bad = False
        except ValueError:
            name, bad = OVERFLOW, True
        return names.setdefault(name, len(names)), bad

    codes = np.empty(rows, dtype=np.intp)
    if arr.dtype.kind in "biufUS":
        uniq, inverse = np.unique(arr, return_inverse=True)
        per_unique = [code(u) for u in uniq.tolist()]
        lut = np.array([c for c, _ in per_unique], dtype=np.intp)
        codes[:] = lut[inverse.ravel()]
        bad_unique = np.array([b for _, b in per_unique], dtype=np.bool_)
        invalid_rows = int(np.count_nonzero(bad_unique[inverse.ravel()]))
    else:
        cache: dict[tuple[type, Any], tuple[int, bool]] = {}
        for i, v in enumerate(arr):
            try:
                hit = cache.get((v.__class__, v))
                if hit is None:
                    hit = cache[(v.__class__, v)] = code(v)
            except TypeError:  # unhashable: named every time
                hit = code(v)
            codes[i] = hit[0]
            invalid_rows += hit[1]
    return codes, list(names), invalid_rows


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
        raise ValueError(f"{name} must be an int in [{low}, {high}], got {_short(value)}")
    return value


class SegmentReferences(Mapping[str, "Reference"]):
    """The per-segment references of a :class:`Reference` (read-only), by segment name, the
    segment with the most reference rows first.

    >>> ref = Reference.from_data({"x": [1.0, 2.0, 3.0, 4.0]}, segment=["a", "a", "b", "a"], min_segment_rows=2)
    >>> ref.segments
    SegmentReferences({'a': <3 rows>})
    >>> ref.segments["a"]["x"].counts, ref["x"].counts
    ((1, 1, 0, 1), (1, 1, 1, 1))
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Reference] | Iterable[tuple[str, Reference]] = ()) -> None:
        self._items: dict[str, Reference] = dict(items)

    def __getitem__(self, name: str) -> Reference:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return self._items == dict(other.items())

    def __repr__(self) -> str:
        return f"SegmentReferences({{{', '.join(f'{k!r}: <{v.rows} rows>' for k, v in self._items.items())}}})"


def _check_segment_name(name: object, where: str) -> None:
    if not isinstance(name, str):
        raise ValueError(f"{where}: a segment name must be a str, got {_short(name)}")
    named = segment_name(name)
    if named != name:
        raise ValueError(
            f"{where}: {_short(name)} is not a segment name (segment_name gives {_short(named)})"
        )
    if name == OVERFLOW:
        raise ValueError(
            f"{where}: {OVERFLOW!r} (the overflow segment) has no reference of its own: its rows "
            "depend on the serving cap, not on the reference data"
        )


def _check_same_cells(
    overall: Reference, features: Sequence[FeatureProfile], outputs: NumericProfile | None, where: str
) -> None:
    """A segment's profiles count on the overall reference's cells: same features, kinds, edges,
    categories, and outputs edges."""
    names = tuple(p.name for p in features)
    if names != overall.feature_names:
        raise ValueError(
            f"{where}.features must be the overall reference's features {_short(list(overall.feature_names))}, "
            f"got {_short(list(names))}"
        )
    for i, (p, q) in enumerate(zip(overall.features, features, strict=True)):
        if p.kind != q.kind:
            raise ValueError(f"{where}.features[{i}].kind must be {p.kind!r} as in the overall reference, got {q.kind!r}")
        if isinstance(p, NumericProfile) and isinstance(q, NumericProfile) and p.edges != q.edges:
            raise ValueError(
                f"{where}.features[{i}].edges must be the overall reference's edges (a segment counts "
                f"on the same bins), got {_short(q.edges)}"
            )
        if isinstance(p, CategoricalProfile) and isinstance(q, CategoricalProfile) and p.categories != q.categories:
            raise ValueError(
                f"{where}.features[{i}].categories must be the overall reference's categories, got "
                f"{_short(q.categories)}"
            )
    if (overall.outputs is None) != (outputs is None):
        raise ValueError(
            f"{where}.outputs must be {'absent' if overall.outputs is None else 'present'} as in the overall reference"
        )
    if overall.outputs is not None and outputs is not None and overall.outputs.edges != outputs.edges:
        raise ValueError(f"{where}.outputs.edges must be the overall reference's edges, got {_short(outputs.edges)}")


class _SegmentPlan:
    """The rows of each segment that gets its own profile, and those profiles as they are built
    (one feature at a time, on the overall profile's cells)."""

    def __init__(self, names: list[str], groups: list[npt.NDArray[np.intp]], invalid_rows: int) -> None:
        self.names = names
        self.groups = groups  # row indices of each kept segment
        self.invalid_rows = invalid_rows
        self.features: list[list[FeatureProfile]] = [[] for _ in names]
        self.outputs: list[NumericProfile | None] = [None for _ in names]

    @classmethod
    def of(cls, values: Any, rows: int, min_rows: int, max_segments: int) -> _SegmentPlan:
        codes, names, invalid = _segment_codes(values, rows)
        sizes = np.bincount(codes, minlength=len(names))
        eligible = [(-int(sizes[c]), n, c) for c, n in enumerate(names) if n != OVERFLOW and sizes[c] >= min_rows]
        kept = sorted(eligible)[:max_segments]
        order = np.argsort(codes, kind="stable")
        starts = np.concatenate(([0], np.cumsum(sizes)))
        groups = [order[starts[c] : starts[c + 1]] for _, _, c in kept]
        return cls([n for _, n, _ in kept], groups, invalid)

    def add_numeric(self, overall: NumericProfile, x: npt.NDArray[np.float64]) -> None:
        for out, rows in zip(self.features, self.groups, strict=True):
            out.append(NumericProfile.on_edges(overall.name, x[rows], overall.edges))

    def add_categorical(self, overall: CategoricalProfile, keys: list[str | None]) -> None:
        k = len(overall.categories)
        lut = {c: i + 1 for i, c in enumerate(overall.categories)}
        # Cell 0: missing, 1..k: the kept categories, k + 1: other.
        cell = np.fromiter((0 if key is None else lut.get(key, k + 1) for key in keys), np.intp, len(keys))
        for out, rows in zip(self.features, self.groups, strict=True):
            n = np.bincount(cell[rows], minlength=k + 2)
            out.append(CategoricalProfile(name=overall.name, rows=len(rows), count=len(rows) - int(n[0]),
                                          categories=overall.categories, counts=n[1 : k + 1].tolist(),
                                          other=int(n[k + 1])))  # fmt: skip

    def add_outputs(self, overall: NumericProfile, scores: npt.NDArray[np.float64]) -> None:
        for i, rows in enumerate(self.groups):
            self.outputs[i] = NumericProfile.on_edges("output", scores[rows], overall.edges)

    def references(self) -> list[tuple[str, Reference]]:
        return [
            (name, Reference(rows=len(rows), features=tuple(feats), outputs=out, segment=name))
            for name, rows, feats, out in zip(self.names, self.groups, self.features, self.outputs, strict=True)
        ]


def _segment_map(value: Mapping[str, Reference] | Iterable[tuple[str, Reference]] | None) -> SegmentReferences:
    if isinstance(value, SegmentReferences):
        return value
    return SegmentReferences(() if value is None else value)


# --------------------------------------------------------------------------- Reference


def _check_features(_inst: object, attribute: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
    for p in value:
        if not isinstance(p, (NumericProfile, CategoricalProfile)):
            raise ValueError(
                f"{attribute.name} must hold NumericProfile/CategoricalProfile, got {p!r}"
            )
    check_feature_names([p.name for p in value], attribute.name)


MAX_CALIBRATED_CLASSES = 32
"""Most classes of a multiclass calibration (each keeps its own score bins per window slice)."""

CLASS_AUC_BINS = 250
"""Score bins per class of the multiclass estimated ROC AUC."""


def _calibration_tuple(value: Iterable[Calibration] | None) -> tuple[Calibration, ...] | None:
    return None if value is None else tuple(value)


def _check_class_calibration(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not 2 <= len(value) <= MAX_CALIBRATED_CLASSES or not all(isinstance(c, Calibration) for c in value):
        raise ValueError(
            f"{attribute.name} must hold 2 to {MAX_CALIBRATED_CLASSES} Calibration objects, got {_short(value)}"
        )


def _probability_rows(outputs: npt.ArrayLike) -> npt.NDArray[np.float64]:
    try:
        proba = np.asarray(outputs, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("outputs must be numeric probability rows (n, k)") from None
    if proba.ndim != 2 or not 2 <= proba.shape[1] <= MAX_CALIBRATED_CLASSES:
        raise ValueError(
            f"outputs must be probability rows (n, k) with 2 <= k <= {MAX_CALIBRATED_CLASSES}, "
            f"got shape {proba.shape}"
        )
    return proba


def _fit_classes(proba: npt.NDArray[np.float64], labels: npt.ArrayLike) -> tuple[Calibration, ...]:
    """One-vs-rest calibrations of each probability column on class-index ``labels``."""
    lab = np.asarray(labels)
    k = proba.shape[1]
    if lab.dtype.kind not in "biuf" or not np.all(np.isin(lab, np.arange(k))):
        bad = lab[~np.isin(lab, np.arange(k))] if lab.dtype.kind in "biuf" else lab
        raise ValueError(
            f"labels of probability rows must be class indices 0 .. {k - 1} (the columns), "
            f"got {_short(bad[0].item() if bad.size and hasattr(bad[0], 'item') else bad[:1].tolist())}"
        )
    out = []
    for c in range(k):
        try:
            out.append(Calibration.fit(proba[:, c], lab == c, bins=CLASS_AUC_BINS))
        except ValueError as e:
            raise ValueError(f"class {c}: {e}") from None
    return tuple(out)


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
        calibration: isotonic calibration of the outputs (binary scores) fitted on the
            reference labels, or None (see :meth:`from_data` ``labels=``).
        class_calibration: multiclass: one isotonic calibration per class of that class's
            probability column (one-vs-rest), in class order, or None.
        segments: the per-segment references (read-only mapping, segment name to
            :class:`Reference`, the most rows first), empty unless built with ``segment=``.
            Their profiles are counted on this reference's cells; they have no segments and
            no calibration of their own: ``calibration`` and ``class_calibration`` are overall
            only (estimated performance uses them for every segment).
        segment: in a segment's reference, its name; None in the overall reference.
        segment_invalid_rows: reference rows whose segment value had no name (they went to
            :data:`~mlmon.segments.OVERFLOW`, which never has a reference of its own).

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

    Per segment (a column, or one value per row), drift against the segment's own rows:

    >>> seg = Reference.from_data(X, feature_names=["age", "income"], segment=["eu"] * 600 + ["us"] * 400,
    ...                           min_segment_rows=300)
    >>> {name: r.rows for name, r in seg.segments.items()}
    {'eu': 600, 'us': 400}
    >>> seg.for_segment("eu")[1], seg.for_segment("jp") == (seg, False)
    (True, True)
    """

    rows: int = attrs.field(validator=_count)
    features: tuple[FeatureProfile, ...] = attrs.field(
        converter=_profiles, validator=_check_features
    )
    outputs: NumericProfile | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.instance_of(NumericProfile)),
    )
    calibration: Calibration | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.instance_of(Calibration)),
    )
    class_calibration: tuple[Calibration, ...] | None = attrs.field(
        default=None, converter=_calibration_tuple, validator=_check_class_calibration
    )
    segments: SegmentReferences = attrs.field(factory=SegmentReferences, converter=_segment_map)
    segment: str | None = attrs.field(default=None)
    segment_invalid_rows: int = attrs.field(default=0, validator=_count)

    def __attrs_post_init__(self) -> None:
        if self.segment is not None:
            _check_segment_name(self.segment, "segment")
            if self.segments or self.segment_invalid_rows:
                raise ValueError(f"segment {self.segment!r}: a segment's reference has no segments of its own")
            if self.calibration is not None or self.class_calibration is not None:
                raise ValueError(
                    f"segment {self.segment!r}: a segment's reference has no calibration (calibration "
                    "is the overall reference's)"
                )
            for i, p in enumerate(self.features):
                if p.rows != self.rows:
                    raise ValueError(f"features[{i}].rows must equal the reference rows ({self.rows}), got {p.rows}")
            return
        own: list[tuple[str, FeatureProfile | None]] = [(f"features[{i}]", p) for i, p in enumerate(self.features)]
        for where, q in [*own, ("outputs", self.outputs)]:
            if isinstance(q, NumericProfile) and not q.own_edges:
                raise ValueError(
                    f"{where}: min/max must equal the outer edges (and edges be empty when count is 0) "
                    f"in the overall reference, got edges {_short(q.edges)} and min/max {q.min!r}/{q.max!r}"
                )
        if len(self.segments) > MAX_SEGMENTS:
            raise ValueError(f"segments: at most {MAX_SEGMENTS} (MAX_SEGMENTS), got {len(self.segments)}")
        if self.segment_invalid_rows > self.rows:
            raise ValueError(
                f"segment_invalid_rows must be <= rows ({self.rows}), got {self.segment_invalid_rows}"
            )
        total = 0
        for name, sub in self.segments.items():
            where = f"segments[{_short(name)}]"
            _check_segment_name(name, where)
            if not isinstance(sub, Reference):
                raise ValueError(f"{where} must be a Reference, got {_short(sub)}")
            if sub.segment != name:
                raise ValueError(f"{where}: its reference is of segment {sub.segment!r}")
            _check_same_cells(self, sub.features, sub.outputs, where)
            total += sub.rows
        if total > self.rows:
            raise ValueError(
                f"segments: their references hold {total} rows in all, more than the reference's {self.rows}"
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

    def for_segment(self, name: str) -> tuple[Reference, bool]:
        """The reference drift of segment ``name`` (a name as :func:`~mlmon.segments.segment_name`
        gives it) is measured against: its own and True when it has one (see :attr:`segments`),
        else this overall reference and False (a small segment, :data:`~mlmon.segments.OVERFLOW`,
        a segment unseen in the reference data).
        """
        sub = self.segments.get(name)
        return (self, False) if sub is None else (sub, True)

    @classmethod
    def from_data(
        cls,
        X: Any,
        feature_names: Sequence[str] | None = None,
        categorical: Iterable[str | int] | None = None,
        outputs: npt.ArrayLike | None = None,
        bins: int = 10,
        max_categories: int = 100,
        labels: npt.ArrayLike | None = None,
        *,
        segment: Any = None,
        min_segment_rows: int = 1000,
        max_segments: int = 32,
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
            outputs: 1-D reference model outputs (scores), for ``mlmon_output_drift_psi``; or,
                for a multiclass model with ``labels``, its ``(n, k)`` probability rows (the
                output profile is then of the top probability, as the monitor sees outputs).
            bins: quantile bins per numeric feature (10: deciles).
            max_categories: categories kept per categorical feature; the rest count as "other".
            labels: binary classifiers: the true label of each row, 1 (or True) for the
                positive class and 0 (False) for the negative; with ``outputs``, fits the
                :class:`Calibration` the monitor estimates performance from before labels
                arrive. Multiclass (2-D ``outputs``): the class index of each row (``0 ..
                k - 1``, the column of ``outputs`` and the position in the task's ``classes``),
                fitting one calibration per class (``class_calibration``). Use held-out data
                (the model's scores on its training rows are optimistic).
            segment: None (no per-segment profiles), a column name of ``X`` (a DataFrame
                column, a dict key, or a name of ``feature_names``), or one value per row
                (array-like). Values are named by :func:`~mlmon.segments.segment_name`; a value
                without a name goes to :data:`~mlmon.segments.OVERFLOW` and is counted in
                :attr:`segment_invalid_rows`. A segment column is not a feature unless
                ``feature_names`` lists it (then ``feature_names`` name every column of ``X``).
            min_segment_rows: fewest rows a segment needs for its own profile (default 1,000);
                smaller segments are measured against the overall reference.
            max_segments: most segments with their own profile (default 32, at most
                :data:`MAX_SEGMENTS`): the largest by rows (ties by name).

        Raises:
            ValueError: no rows, no columns, ragged rows, bad names (see
                :func:`check_feature_names`), unknown categorical names, bad outputs, or
                ``bins``/``max_categories`` out of range; ``labels`` without ``outputs``, not
                one 0/1 label per row, or unfit to calibrate (see :meth:`Calibration.fit`:
                NaN scores, constant scores, fewer than :data:`MIN_LABELS_PER_CLASS` labels of
                either class); ``segment`` not a column of ``X`` nor one value per row,
                ``min_segment_rows``/``max_segments`` out of range, or ``outputs`` with
                ``segment`` but not one score per row.
        """
        _check_int("min_segment_rows", min_segment_rows, 1, MAX_COUNT)
        _check_int("max_segments", max_segments, 1, MAX_SEGMENTS)
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
        seg_values: Any = None
        if isinstance(segment, str):
            names, cols, seg_values = _split_segment_column(X, segment, feature_names)
        else:
            names, cols = _columns(X, feature_names)
            seg_values = segment
        if not cols:
            raise ValueError("X has no columns: a reference needs at least one feature")
        rows = len(cols[0])
        if rows == 0:
            raise ValueError("X has 0 rows: a reference needs at least one row")
        plan = None if seg_values is None else _SegmentPlan.of(seg_values, rows, min_segment_rows, max_segments)
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
        ready = {} if plan is not None else _numeric_profiles(names_t, cols, [j for j in range(len(cols)) if j not in cat], bins)
        for j, (name, col) in enumerate(zip(names_t, cols, strict=True)):
            if j in cat:
                if plan is None:
                    profiles.append(CategoricalProfile.from_values(name, col, max_categories))
                else:
                    keys = [category_key(v) for v in col]  # once for the overall and the segments
                    cp = CategoricalProfile.from_values(name, keys, max_categories)
                    profiles.append(cp)
                    plan.add_categorical(cp, keys)
            elif j in ready:
                done = ready[j]
                if isinstance(done, BaseException):
                    raise done  # as the column, in its turn, would have raised
                profiles.append(done)
            else:
                x = _float_column(col)
                num = NumericProfile.from_values(name, x, bins)
                profiles.append(num)
                if plan is not None:
                    plan.add_numeric(num, x)
        out_profile = None
        calibration = None
        if labels is not None and outputs is None:
            raise ValueError("labels= needs outputs= (the reference scores they calibrate)")
        class_calibration = None
        if outputs is not None:
            if labels is not None and np.ndim(outputs) == 2 and np.shape(outputs)[1] > 1:
                proba = _probability_rows(outputs)
                if np.shape(labels) != (rows,) or proba.shape[0] != rows:
                    raise ValueError(
                        f"labels and outputs need one row per row of X ({rows}), got shapes "
                        f"{np.shape(labels)} and {proba.shape}"
                    )
                class_calibration = _fit_classes(proba, labels)
                scores = proba.max(axis=1)
                out_profile = NumericProfile.from_values("output", scores, bins)
            else:
                scores = _outputs_1d(outputs)
                out_profile = NumericProfile.from_values("output", scores, bins)
                if labels is not None:
                    if np.shape(labels) != (rows,):
                        raise ValueError(
                            f"labels must be 1-D with one label per row of X ({rows}), got shape {np.shape(labels)}"
                        )
                    calibration = Calibration.fit(scores, labels)
            if plan is not None:
                if scores.shape != (rows,):
                    raise ValueError(
                        f"outputs need one score per row of X ({rows}) to profile segments, got shape {scores.shape}"
                    )
                plan.add_outputs(out_profile, scores)
        return cls(rows=rows, features=tuple(profiles), outputs=out_profile, calibration=calibration,
                   class_calibration=class_calibration,
                   segments=None if plan is None else plan.references(),
                   segment_invalid_rows=0 if plan is None else plan.invalid_rows)  # fmt: skip

    def with_calibration(self, scores: npt.ArrayLike, labels: npt.ArrayLike) -> Reference:
        """This reference with a :class:`Calibration` fitted on ``scores`` and 0/1 ``labels``
        (e.g. a validation set's, when the drift profile came from the training set); with
        ``(n, k)`` probability rows and class-index labels, one per class
        (``class_calibration``).

        Raises:
            ValueError: as :meth:`Calibration.fit`.
        """
        if np.ndim(scores) == 2 and np.shape(scores)[1] > 1:
            proba = _probability_rows(scores)
            if np.shape(labels) != (proba.shape[0],):
                raise ValueError(f"labels must be 1-D with one label per row, got shape {np.shape(labels)}")
            return attrs.evolve(self, class_calibration=_fit_classes(proba, labels))
        return attrs.evolve(self, calibration=Calibration.fit(_outputs_1d(scores), labels))

    # ----------------------------------------------------------------------- files

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, versioned: ``{"mlmon_reference": 1, ...}``.

        Per-segment references are in ``"segments": {"mlmon_segments": 1, "invalid_rows": n,
        "references": [{"segment": name, "rows": ..., "features": [...], "outputs": ...}]}``,
        an object of its own version that a reader without segments ignores (it reads the
        overall reference, unchanged); a reference without segments has no such key. A
        segment's reference on its own carries ``"segment": name``.
        """
        out: dict[str, Any] = {"mlmon_reference": FORMAT_VERSION}
        if self.segment is not None:
            out["segment"] = self.segment
        out.update(self._body())
        if self.calibration is not None:
            out["calibration"] = self.calibration.to_dict()
        if self.class_calibration is not None:
            out["class_calibration"] = [c.to_dict() for c in self.class_calibration]
        if self.segments or self.segment_invalid_rows:
            out["segments"] = {
                "mlmon_segments": SEGMENTS_VERSION,
                "invalid_rows": self.segment_invalid_rows,
                "references": [{"segment": name, **sub._body()} for name, sub in self.segments.items()],
            }
        return out

    def _body(self) -> dict[str, Any]:
        return {
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
        feature; kinds are known; names follow :func:`check_feature_names`. Segments: at most
        :data:`MAX_SEGMENTS`, each named as :func:`~mlmon.segments.segment_name` names itself
        (not :data:`~mlmon.segments.OVERFLOW`), once, with the overall reference's features,
        edges and categories, and fewer rows in all than the overall reference.

        Raises:
            ValueError: not an mlmon reference, an unsupported version, or a missing/invalid
                field; the message names the field (``features[2].counts[5]``,
                ``segments.references[1].segment``) and the value.
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
        rows, features, outputs = _read_body(top, "")
        cal = data.get("calibration")
        calibration = None if cal is None else Calibration.from_dict(cal, "calibration")
        if calibration is not None and outputs is None:
            raise ValueError("reference.calibration needs reference.outputs (the scores it calibrates)")
        per_class = data.get("class_calibration")
        class_calibration = None
        if per_class is not None:
            if not isinstance(per_class, list) or not 2 <= len(per_class) <= MAX_CALIBRATED_CLASSES:
                raise ValueError(
                    f"reference.class_calibration must be a list of 2 to {MAX_CALIBRATED_CLASSES} "
                    f"calibrations, got {_short(per_class)}"
                )
            class_calibration = tuple(
                Calibration.from_dict(c, f"class_calibration[{i}]") for i, c in enumerate(per_class)
            )
        segment = data.get("segment")
        if segment is not None:
            _check_segment_name(segment, "reference.segment")
            if "segments" in data:
                raise ValueError("reference.segments: a segment's reference has no segments of its own")
        try:
            overall = cls(rows=rows, features=tuple(features), outputs=outputs, calibration=calibration,
                          class_calibration=class_calibration, segment=segment)  # fmt: skip
        except TypeError as e:  # a name that is not a string: check_feature_names
            raise ValueError(str(e)) from None
        if data.get("segments") is None:
            return overall
        segments, invalid = _read_segments(overall, data["segments"])
        try:
            return attrs.evolve(overall, segments=segments, segment_invalid_rows=invalid)
        except ValueError as e:
            raise ValueError(f"reference.segments: {e}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the reference as JSON, atomically (a reader never sees half a file)."""
        atomic_write(path, json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":")))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, max_bytes: int = MAX_FILE_BYTES) -> Reference:
        """Read a file written by :meth:`save`.

        Args:
            path: the file.
            max_bytes: size limit (default :data:`MAX_FILE_BYTES`, 64 MiB; a reference of 100
                features with the maximum 10,000 bins each is about 20 MiB; each segment with
                its own profile adds about as much as the overall one). Larger files are
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


def _read_body(top: _Fields, prefix: str) -> tuple[int, list[FeatureProfile], NumericProfile | None]:
    """Rows, features and outputs of a reference (``prefix`` "") or of one segment's."""
    rows = top.count("rows")
    if rows == 0:
        raise ValueError(f"{top.where}.rows must be >= 1, got 0")
    items = top.get("features")
    if not isinstance(items, list) or not items:
        raise top.fail("features", "a non-empty list", items)
    features: list[FeatureProfile] = []
    for i, f in enumerate(items):
        where = f"{prefix}features[{i}]"
        kind = f.get("kind") if isinstance(f, Mapping) else None
        if kind == "numeric":
            features.append(NumericProfile.from_dict(f, where))
        elif kind == "categorical":
            features.append(CategoricalProfile.from_dict(f, where))
        else:
            raise ValueError(f"{where}.kind must be 'numeric' or 'categorical', got {_short(kind)}")
        if features[-1].rows != rows:
            raise ValueError(
                f"{where}.rows must equal the reference rows ({rows}), got {features[-1].rows}"
            )
    out = top.data.get("outputs")
    outputs = None if out is None else NumericProfile.from_dict(out, f"{prefix}outputs")
    return rows, features, outputs


def _read_segments(overall: Reference, data: object) -> tuple[list[tuple[str, Reference]], int]:
    """The ``segments`` object of a file: (name, reference) pairs and the invalid rows."""
    f = _Fields(data, "segments")
    version = f.get("mlmon_segments")
    if type(version) is not int or version != SEGMENTS_VERSION:
        raise f.fail("mlmon_segments", f"{SEGMENTS_VERSION} (the supported version)", version)
    invalid = f.count("invalid_rows")
    items = f.get("references")
    if not isinstance(items, list):
        raise f.fail("references", "a list", items)
    if len(items) > MAX_SEGMENTS:
        raise ValueError(
            f"segments.references must hold at most {MAX_SEGMENTS} segments (MAX_SEGMENTS), got {len(items)}"
        )
    out: list[tuple[str, Reference]] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"segments.references[{i}]"
        it = _Fields(item, where)
        name = it.name("segment")
        _check_segment_name(name, f"{where}.segment")
        if name in seen:
            raise ValueError(f"{where}.segment {_short(name)} is repeated")
        seen.add(name)
        rows, features, outputs = _read_body(it, f"{where}.")
        _check_same_cells(overall, features, outputs, where)
        try:
            out.append((name, Reference(rows=rows, features=tuple(features), outputs=outputs, segment=name)))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from None
    return out, invalid


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
