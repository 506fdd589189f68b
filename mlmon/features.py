"""Per-feature data quality and drift over the rolling window, in bounded memory.

Three layers, each usable alone:

- :class:`FeatureSchema` fixes the feature order, which features are categorical and, when a
  :class:`~mlmon.reference.Reference` is given, the reference bins every window histogram uses.
- :func:`convert` turns whatever a user passed to ``track(features=...)`` into a float64 matrix
  of the numeric features plus an object matrix of the categorical ones, counting (never
  raising on) what it cannot use. It runs at drain time, on the monitor's copies.
- :class:`FeatureAccumulator` holds, for every feature at once (vectorised over features), the
  window statistics: rows, missing, mean/variance (Chan merge), min, max, and histogram counts
  on the reference cells (underflow, bins, overflow; categories, "other"). It has ``merge`` and
  ``reset``, so it lives in a :class:`~mlmon.window.RollingWindow`.

:class:`FeatureComponent` puts them together behind the monitor's
:class:`~mlmon._component.Component` protocol and emits the ``mlmon_feature_*`` samples and
``mlmon_output_drift_psi``.

What counts as missing: ``None``, NaN, ``inf``/``-inf`` (an infinite value would poison the mean
and variance, so it is treated as invalid), strings or any other non-number in a numeric feature,
``None``/NaN in a categorical feature, a key absent from a dict row, and every feature of a row
that could not be read at all (a call with the wrong number of columns).

Memory is fixed by the schema, never by the data: per numeric feature 6 numbers plus one count
per reference cell (12 with deciles), per categorical feature 3 numbers plus one count per kept
reference category and one for "other". A categorical feature with a million distinct values
in the window costs the same as one with three: categories outside the reference are counted
in "other" (and as unseen), they are not remembered.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from mlmon._component import CallBatch, Triple
from mlmon.drift import DriftConfig, DriftScores, decide, drift_scores, psi
from mlmon.reference import (
    CategoricalProfile,
    NumericProfile,
    Reference,
    bin_index,
    category_key,
    check_feature_names,
    is_numeric_column,
    object_column_to_float,
    to_float,
)
from mlmon.window import RollingWindow

__all__ = [
    "Converted",
    "FeatureAccumulator",
    "FeatureComponent",
    "FeatureSchema",
    "convert",
    "infer_schema",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Obj = npt.NDArray[np.object_]

_FAST_TYPES = frozenset({float, int, bool, np.float64, np.float32, np.int64, np.int32, np.bool_})


class FeatureSchema:
    """The feature layout every accumulator and conversion of one monitor shares.

    Args:
        names: feature names, in the column order users pass positional rows in.
        categorical: the names of the categorical features.
        reference: the reference; when given, ``names``/``categorical`` come from it and the
            window histograms use its bins.

    >>> s = FeatureSchema(["age", "city"], categorical=["city"])
    >>> s.numeric_names, s.categorical_names
    (('age',), ('city',))
    """

    __slots__ = (
        "bin_edges",
        "bin_last",
        "bin_shift",
        "binned",
        "cat_cells",
        "cat_lut",
        "cat_offsets",
        "cat_pos",
        "cat_ref",
        "categorical_names",
        "edge_last",
        "edges",
        "hist_offsets",
        "hist_size",
        "index",
        "names",
        "num_pos",
        "numeric_names",
        "output_edges",
        "output_ref",
        "reference",
    )

    def __init__(
        self,
        names: Sequence[str] | None = None,
        categorical: Iterable[str] = (),
        reference: Reference | None = None,
    ) -> None:
        self.reference = reference
        if reference is not None:
            names = reference.feature_names
            categorical = reference.categorical
        if names is None:
            raise ValueError("FeatureSchema needs feature names or a reference")
        self.names: tuple[str, ...] = check_feature_names(names)
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.names)}
        cat = set()
        for c in categorical:
            if c not in self.index:
                raise ValueError(
                    f"categorical: {c!r} is not a feature name (names: {list(self.names)})"
                )
            cat.add(c)
        self.num_pos: npt.NDArray[np.intp] = np.array(
            [i for i, n in enumerate(self.names) if n not in cat], dtype=np.intp
        )
        self.cat_pos: npt.NDArray[np.intp] = np.array(
            [i for i, n in enumerate(self.names) if n in cat], dtype=np.intp
        )
        self.numeric_names = tuple(self.names[i] for i in self.num_pos)
        self.categorical_names = tuple(self.names[i] for i in self.cat_pos)

        # Numeric histogram cells, flat: feature j owns hist[hist_offsets[j] : hist_offsets[j + 1]].
        self.edges: list[F64 | None] = []
        sizes = []
        for name in self.numeric_names:
            prof = reference[name] if reference is not None else None
            if isinstance(prof, NumericProfile) and prof.count > 0:
                e = np.array(prof.edges, dtype=np.float64)
                self.edges.append(e)
                sizes.append(len(e) + 1)  # m bins + underflow + overflow
            else:
                self.edges.append(None)
                sizes.append(0)
        self.hist_offsets: npt.NDArray[np.intp] = np.concatenate(
            ([0], np.cumsum(sizes, dtype=np.intp))
        ).astype(np.intp)
        self.hist_size = int(self.hist_offsets[-1])
        # The numeric features that have reference bins, and per-row constants of the binning.
        self.binned: npt.NDArray[np.intp] = np.array(
            [j for j, e in enumerate(self.edges) if e is not None], dtype=np.intp
        )
        self.bin_edges: list[F64] = [e for e in self.edges if e is not None]
        self.edge_last: F64 = np.array([e[-1] for e in self.bin_edges], dtype=np.float64)
        self.bin_last: npt.NDArray[np.intp] = np.array(
            [len(e) - 1 for e in self.bin_edges], dtype=np.intp
        )
        self.bin_shift: npt.NDArray[np.intp] = self.hist_offsets[self.binned]

        # Categorical cells, flat: the kept reference categories, then "other".
        self.cat_lut: list[dict[str, int] | None] = []
        self.cat_ref: list[CategoricalProfile | None] = []
        cat_sizes = []
        for name in self.categorical_names:
            prof = reference[name] if reference is not None else None
            if isinstance(prof, CategoricalProfile):
                self.cat_lut.append({c: k for k, c in enumerate(prof.categories)})
                self.cat_ref.append(prof)
                cat_sizes.append(len(prof.categories) + 1)
            else:
                self.cat_lut.append(None)
                self.cat_ref.append(None)
                cat_sizes.append(0)
        self.cat_offsets: npt.NDArray[np.intp] = np.concatenate(
            ([0], np.cumsum(cat_sizes, dtype=np.intp))
        ).astype(np.intp)
        self.cat_cells = int(self.cat_offsets[-1])

        self.output_ref: NumericProfile | None = None
        self.output_edges: F64 | None = None
        if reference is not None and reference.outputs is not None and reference.outputs.count > 0:
            self.output_ref = reference.outputs
            self.output_edges = np.array(reference.outputs.edges, dtype=np.float64)

    @property
    def n_numeric(self) -> int:
        """Number of numeric features."""
        return len(self.num_pos)

    @property
    def n_categorical(self) -> int:
        """Number of categorical features."""
        return len(self.cat_pos)


class FeatureAccumulator:
    """Window statistics of every feature of a schema, mergeable across time slices.

    ``update_batch`` takes the numeric features as an ``(n, n_numeric)`` float64 matrix (NaN
    and inf are missing); ``update_categorical`` the categorical ones as an ``(n,
    n_categorical)`` object matrix. Statistics are population moments (ddof=0).

    >>> s = FeatureSchema(["x", "y"])
    >>> a = FeatureAccumulator(s)
    >>> a.update_batch(np.array([[1.0, 10.0], [3.0, np.nan], [5.0, 20.0]]))
    >>> a.count.tolist(), a.missing.tolist(), a.mean.tolist(), a.variance().tolist()
    ([3, 2], [0, 1], [3.0, 15.0], [2.6666666666666665, 25.0])
    >>> b = FeatureAccumulator(s); b.update_batch(np.array([[7.0, 30.0]])); a.merge(b)
    >>> a.count.tolist(), a.max.tolist()
    ([4, 3], [7.0, 30.0])
    """

    __slots__ = (
        "cat_cells",
        "cat_count",
        "cat_missing",
        "cat_unseen",
        "count",
        "hist",
        "m2",
        "max",
        "mean",
        "min",
        "missing",
        "out_count",
        "out_hist",
        "schema",
    )

    def __init__(self, schema: FeatureSchema) -> None:
        self.schema = schema
        f = schema.n_numeric
        c = schema.n_categorical
        self.count: I64 = np.zeros(f, dtype=np.int64)
        self.missing: I64 = np.zeros(f, dtype=np.int64)
        self.mean: F64 = np.zeros(f)
        self.m2: F64 = np.zeros(f)
        self.min: F64 = np.full(f, np.inf)
        self.max: F64 = np.full(f, -np.inf)
        self.hist: I64 = np.zeros(schema.hist_size, dtype=np.int64)
        self.cat_count: I64 = np.zeros(c, dtype=np.int64)
        self.cat_missing: I64 = np.zeros(c, dtype=np.int64)
        self.cat_unseen: I64 = np.zeros(c, dtype=np.int64)
        self.cat_cells: I64 = np.zeros(schema.cat_cells, dtype=np.int64)
        n_out = 0 if schema.output_edges is None else len(schema.output_edges) + 1
        self.out_count = 0
        self.out_hist: I64 = np.zeros(n_out, dtype=np.int64)

    def reset(self) -> None:
        """Forget everything."""
        self.count[:] = 0
        self.missing[:] = 0
        self.mean[:] = 0.0
        self.m2[:] = 0.0
        self.min[:] = np.inf
        self.max[:] = -np.inf
        self.hist[:] = 0
        self.cat_count[:] = 0
        self.cat_missing[:] = 0
        self.cat_unseen[:] = 0
        self.cat_cells[:] = 0
        self.out_count = 0
        self.out_hist[:] = 0

    # ------------------------------------------------------------------- updates

    def _combine(self, n: I64, mean: F64, m2: F64, lo: F64, hi: F64) -> None:
        """Chan et al.'s pairwise update, one feature per element."""
        total = self.count + n
        frac = np.divide(n, total, out=np.zeros(len(n)), where=total > 0)
        delta = mean - self.mean
        self.m2 = np.where(self.count == 0, m2, self.m2 + m2 + delta * delta * self.count * frac)
        self.mean = np.where(self.count == 0, mean, self.mean + delta * frac)
        self.count = total
        np.minimum(self.min, lo, out=self.min)
        np.maximum(self.max, hi, out=self.max)

    def update_batch(self, X: F64) -> None:
        """Add rows of the numeric features: ``X`` is ``(n, n_numeric)`` float64."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.schema.n_numeric:
            raise ValueError(f"X must have shape (n, {self.schema.n_numeric}), got {X.shape}")
        n = X.shape[0]
        if n == 0 or X.shape[1] == 0:
            return
        # Feature-major and contiguous: every reduction then runs along memory (and numpy's
        # pairwise summation applies), and each feature's searchsorted reads one row.
        xt = np.ascontiguousarray(X.T)
        valid = np.isfinite(xt)
        if valid.all():
            cnt = np.full(xt.shape[0], n, dtype=np.int64)
            mean = xt.sum(axis=1) / n
            d = xt - mean[:, None]
            lo = xt.min(axis=1)
            hi = xt.max(axis=1)
        else:
            cnt = valid.sum(axis=1).astype(np.int64)
            mean = np.where(valid, xt, 0.0).sum(axis=1) / np.maximum(cnt, 1)
            d = np.where(valid, xt - mean[:, None], 0.0)
            lo = np.where(valid, xt, np.inf).min(axis=1)
            hi = np.where(valid, xt, -np.inf).max(axis=1)
        self.missing += n - cnt
        # Two passes over the batch: the batch's own M2 is exact, then Chan-merged.
        m2 = np.einsum("ij,ij->i", d, d)
        self._combine(cnt, mean, m2, lo, hi)
        if self.schema.hist_size:
            self._bin(xt, valid)

    def _bin(self, xt: F64, valid: npt.NDArray[np.bool_]) -> None:
        schema = self.schema
        rows = schema.binned
        size = schema.hist_size
        cells = np.empty((len(rows), xt.shape[1]), dtype=np.intp)
        for k, j in enumerate(rows):
            cells[k] = np.searchsorted(schema.bin_edges[k], xt[j], side="right")
        sub = xt[rows]
        # The last bin is closed: the maximum (or a point bin at it) takes the last edge's value.
        np.copyto(cells, schema.bin_last[:, None], where=sub == schema.edge_last[:, None])
        cells += schema.bin_shift[:, None]
        # Missing values go to a spare cell past the end, dropped below.
        np.copyto(cells, size, where=~valid[rows])
        self.hist += np.bincount(cells.ravel(), minlength=size + 1)[:size]

    def update_categorical(self, C: Obj) -> None:
        """Add rows of the categorical features: ``C`` is ``(n, n_categorical)`` of objects."""
        C = np.asarray(C, dtype=object)
        if C.ndim != 2 or C.shape[1] != self.schema.n_categorical:
            raise ValueError(f"C must have shape (n, {self.schema.n_categorical}), got {C.shape}")
        n = C.shape[0]
        if n == 0:
            return
        schema = self.schema
        for j in range(C.shape[1]):
            keys = [v if type(v) is str else category_key(v) for v in C[:, j]]
            missing = keys.count(None)
            self.cat_missing[j] += missing
            self.cat_count[j] += n - missing
            lut = schema.cat_lut[j]
            if lut is None:
                continue
            other = len(lut)
            get = lut.get
            codes = np.fromiter(
                (get(k, other) for k in keys if k is not None), dtype=np.intp, count=n - missing
            )
            counts = np.bincount(codes, minlength=other + 1)
            self.cat_unseen[j] += int(counts[other])
            lo = schema.cat_offsets[j]
            self.cat_cells[lo : lo + other + 1] += counts

    def update_invalid(self, rows: int) -> None:
        """Add ``rows`` rows that could not be read: every feature is missing in them."""
        if rows > 0:
            self.missing += rows
            self.cat_missing += rows

    def update_outputs(self, scores: F64) -> None:
        """Add model outputs (1-D float64) to the output histogram (non-finite are skipped)."""
        e = self.schema.output_edges
        if e is None:
            return
        s = np.asarray(scores, dtype=np.float64).ravel()
        s = s[np.isfinite(s)]
        if s.size == 0:
            return
        self.out_count += int(s.size)
        self.out_hist += np.bincount(bin_index(s, e), minlength=len(e) + 1)

    def merge(self, other: object) -> None:
        """Add everything ``other`` (an accumulator of the same schema) has seen."""
        if not isinstance(other, FeatureAccumulator) or other.schema is not self.schema:
            raise TypeError("can only merge a FeatureAccumulator of the same schema")
        self.missing += other.missing
        self._combine(other.count, other.mean, other.m2, other.min, other.max)
        self.hist += other.hist
        self.cat_count += other.cat_count
        self.cat_missing += other.cat_missing
        self.cat_unseen += other.cat_unseen
        self.cat_cells += other.cat_cells
        self.out_count += other.out_count
        self.out_hist += other.out_hist

    # ------------------------------------------------------------------- read-outs

    def variance(self) -> F64:
        """Population variance per numeric feature (NaN where no valid value)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.m2 / np.maximum(self.count, 1), np.nan)

    def cells(self, j: int) -> I64:
        """Histogram of numeric feature ``j`` on its reference cells (underflow, bins, overflow)."""
        o = self.schema.hist_offsets
        return self.hist[o[j] : o[j + 1]]

    def category_cells(self, j: int) -> I64:
        """Counts of categorical feature ``j`` per kept reference category, then "other"."""
        o = self.schema.cat_offsets
        return self.cat_cells[o[j] : o[j + 1]]


# ----------------------------------------------------------------------- conversion


class Converted(NamedTuple):
    """What :func:`convert` made of one call's features.

    Attributes:
        numeric: ``(n, n_numeric)`` float64 (NaN = missing).
        categorical: ``(n, n_categorical)`` objects.
        invalid: rows that could not be read at all (wrong number of columns, unknown type).
        unknown: dict keys / DataFrame cells under names that are not features.
    """

    numeric: F64
    categorical: Obj
    invalid: int
    unknown: int


def _is_pandas(obj: object, cls_name: str) -> bool:
    t = type(obj)
    return t.__name__ == cls_name and t.__module__.split(".")[0] == "pandas"


def _column_to_float(col: npt.NDArray[Any]) -> F64:
    if col.dtype.kind in "biuf":
        return col.astype(np.float64)
    if col.dtype.kind == "O" and set(map(type, col)) <= _FAST_TYPES:
        try:
            return col.astype(np.float64)
        except OverflowError:  # an int beyond float range: that value alone is missing
            pass
    return object_column_to_float(col.astype(object, copy=False))


class _Builder:
    """Collects converted rows of many calls; rows and blocks are stacked once at the end."""

    __slots__ = ("blocks_c", "blocks_x", "invalid", "rows_c", "rows_x", "schema", "unknown")

    def __init__(self, schema: FeatureSchema) -> None:
        self.schema = schema
        self.blocks_x: list[F64] = []
        self.blocks_c: list[Obj] = []
        self.rows_x: list[Any] = []
        self.rows_c: list[list[Any]] = []
        self.invalid = 0
        self.unknown = 0

    def row(self, values: Sequence[Any]) -> None:
        """One row of all features in schema order (any Python values)."""
        s = self.schema
        self.rows_x.append([to_float(values[p]) for p in s.num_pos])
        self.rows_c.append([values[p] for p in s.cat_pos])

    def named_row(self, row: Mapping[Any, Any]) -> None:
        s = self.schema
        get = row.get
        self.rows_x.append([to_float(get(n)) for n in s.numeric_names])
        self.rows_c.append([get(n) for n in s.categorical_names])
        index = s.index
        known = sum(1 for k in row if k in index)
        self.unknown += len(row) - known

    def array(self, a: npt.NDArray[Any], rows_hint: int) -> None:
        s = self.schema
        f = len(s.names)
        if a.ndim == 0:
            if f == 1:
                self.row([a.item()])
            else:
                self.invalid += max(rows_hint, 1)
            return
        if a.ndim == 1:
            if a.size == 0:
                return
            if a.size == f:
                if a.dtype.kind in "biuf" and s.n_categorical == 0:
                    self.rows_x.append(a.astype(np.float64))
                    self.rows_c.append([])
                else:
                    self.row(a.tolist() if a.dtype.kind != "O" else list(a))
                return
            if f == 1:  # a 1-D batch of a single-feature model: n rows
                a = a.reshape(-1, 1)
            else:
                self.invalid += 1
                return
        if a.ndim != 2:
            self.invalid += a.shape[0]
            return
        n, c = a.shape
        if n == 0:
            return
        if c != f:
            self.invalid += n
            return
        self.block(a)

    def block(self, a: npt.NDArray[Any]) -> None:
        """A 2-D ``(n, n_features)`` array in schema order."""
        s = self.schema
        n = a.shape[0]
        if a.dtype.kind in "biuf":
            x = a.astype(np.float64, copy=False)
            self.blocks_x.append(x if s.n_categorical == 0 else x[:, s.num_pos])
            self.blocks_c.append(x[:, s.cat_pos].astype(object))
            return
        obj = a.astype(object, copy=False)
        x = np.empty((n, s.n_numeric))
        for j, p in enumerate(s.num_pos):
            x[:, j] = _column_to_float(obj[:, p])
        self.blocks_x.append(x)
        self.blocks_c.append(obj[:, s.cat_pos])

    def columns(self, cols: Mapping[str, Any], n: int) -> None:
        """Named 1-D columns of length ``n`` (absent features are missing)."""
        s = self.schema
        x = np.full((n, s.n_numeric), np.nan)
        for j, name in enumerate(s.numeric_names):
            col = cols.get(name)
            if col is not None:
                x[:, j] = _column_to_float(np.asarray(col))
        c = np.full((n, s.n_categorical), None, dtype=object)
        for j, name in enumerate(s.categorical_names):
            col = cols.get(name)
            if col is not None:
                c[:, j] = np.asarray(col, dtype=object)
        self.blocks_x.append(x)
        self.blocks_c.append(c)

    def finish(self) -> Converted:
        s = self.schema
        xs = list(self.blocks_x)
        cs = list(self.blocks_c)
        if self.rows_x:
            xs.append(
                np.array(self.rows_x, dtype=np.float64).reshape(len(self.rows_x), s.n_numeric)
            )
            c = np.empty((len(self.rows_c), s.n_categorical), dtype=object)
            if s.n_categorical:
                c[:, :] = self.rows_c
            cs.append(c)
        if xs:
            x = xs[0] if len(xs) == 1 else np.concatenate(xs, axis=0)
            cat = cs[0] if len(cs) == 1 else np.concatenate(cs, axis=0)
        else:
            x = np.empty((0, s.n_numeric))
            cat = np.empty((0, s.n_categorical), dtype=object)
        return Converted(x, cat, self.invalid, self.unknown)


def _is_column(v: object) -> bool:
    return isinstance(v, (list, tuple)) or (isinstance(v, np.ndarray) and v.ndim == 1)


def _add(builder: _Builder, features: Any, rows_hint: int) -> None:
    """Convert one call's features into ``builder``; unreadable input counts as invalid rows."""
    s = builder.schema
    f = len(s.names)
    if features is None:
        return
    if isinstance(features, np.ndarray):
        builder.array(features, rows_hint)
        return
    if isinstance(features, Mapping):
        values = list(features.values())
        if values and any(_is_column(v) for v in values):
            # A dict of columns.
            lengths = {len(v) if _is_column(v) else -1 for v in values}
            if len(lengths) != 1 or -1 in lengths:
                builder.invalid += max(x for x in lengths if x >= 0)
                return
            n = lengths.pop()
            if n == 0:
                return
            known = {k: v for k, v in features.items() if k in s.index}
            builder.unknown += n * (len(features) - len(known))
            builder.columns(known, n)
            return
        builder.named_row(features)
        return
    if _is_pandas(features, "DataFrame"):
        _add_dataframe(builder, features)
        return
    if _is_pandas(features, "Series"):
        if all(isinstance(k, str) for k in features.index):
            builder.named_row(features.to_dict())
        else:
            builder.array(features.to_numpy(dtype=object), rows_hint)
        return
    if isinstance(features, (list, tuple)):
        n = len(features)
        if n == 0:
            return
        first = features[0]
        if isinstance(first, Mapping):
            for row in features:
                if isinstance(row, Mapping):
                    builder.named_row(row)
                else:
                    builder.invalid += 1
            return
        if isinstance(first, (list, tuple, np.ndarray)):
            if any(not isinstance(r, (list, tuple, np.ndarray)) or len(r) != f for r in features):
                builder.invalid += n  # one bad row spoils the whole call: its columns are in doubt
                return
            block = np.empty((n, f), dtype=object)
            for i, r in enumerate(features):
                block[i, :] = list(r)
            builder.block(block)
            return
        if n == f:
            builder.row(features)
        elif f == 1:
            builder.block(np.array(features, dtype=object).reshape(-1, 1))
        else:
            builder.invalid += 1
        return
    if (
        isinstance(features, (str, bytes, int, float, np.generic))
        or features is True
        or features is False
    ):
        if f == 1:
            builder.row([features])
        else:
            builder.invalid += 1
        return
    # Anything array-like (a tensor, a memoryview): let numpy read it, or give up on the call.
    try:
        a = np.asarray(features)
    except Exception:
        builder.invalid += max(rows_hint, 1)
        return
    if a.dtype.kind == "O" and a.ndim == 0:
        builder.invalid += max(rows_hint, 1)
        return
    builder.array(a, rows_hint)


def _add_dataframe(builder: _Builder, df: Any) -> None:
    s = builder.schema
    n = len(df)
    if n == 0:
        return
    names = [c if isinstance(c, str) else str(c) for c in df.columns]
    matched = [c for c in names if c in s.index]
    if not matched:
        if len(names) == len(s.names):
            builder.block(
                df.to_numpy(dtype=object)
                if any(d.kind not in "biuf" for d in df.dtypes)
                else df.to_numpy(dtype=np.float64)
            )
        else:
            builder.invalid += n
        return
    builder.unknown += n * (len(names) - len(matched))
    cols: dict[str, Any] = {}
    for c, name in zip(df.columns, names, strict=True):
        if name not in s.index:
            continue
        col = df[c]
        kind = getattr(col.dtype, "kind", "O")
        if kind in "biuf" and name not in s.categorical_names:
            cols[name] = col.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            cols[name] = col.to_numpy(dtype=object)
    builder.columns(cols, n)


def convert(features: Any, schema: FeatureSchema, rows_hint: int = 1) -> Converted:
    """Read what a user passed to ``track(features=...)`` for one call. Never raises on bad data.

    Accepted: one row as a 1-D array, list or tuple (in schema order) or a dict / pandas Series
    by name; a batch as a 2-D array, a list of rows, a list of dicts, a dict of columns or a
    pandas DataFrame (by column name, or by position when no column name is a feature name).
    Unknown names are counted in ``unknown``; absent names are missing; a call whose rows do
    not have one value per feature counts all its rows in ``invalid``; strings in numeric
    features are missing. ``rows_hint`` is how many rows to count as invalid when the object
    cannot be read at all.

    >>> s = FeatureSchema(["a", "b"])
    >>> c = convert({"a": 1.0, "b": "oops", "zzz": 3}, s)
    >>> c.numeric.tolist(), c.invalid, c.unknown
    ([[1.0, nan]], 0, 1)
    >>> convert(np.ones((5, 3)), s).invalid
    5
    """
    b = _Builder(schema)
    try:
        _add(b, features, rows_hint)
    except Exception:
        # Unknown shapes of unknown objects: count the call, never break the drain.
        b = _Builder(schema)
        b.invalid = max(rows_hint, 1)
    return b.finish()


def _scores(outputs: Any) -> F64 | None:
    """Model outputs as 1-D scores: scalars, 1-D arrays, ``(n, 1)``, or ``(n, 2)`` probabilities
    (the second column, as ``predict_proba`` of a binary classifier). None when unusable."""
    if outputs is None:
        return None
    if isinstance(outputs, (bool, int, float, np.number)):
        return np.array([to_float(outputs)])
    try:
        a = np.asarray(outputs)
    except Exception:
        return None
    if a.ndim == 0:
        return np.array([to_float(a.item())])
    if a.ndim == 2 and a.shape[1] in (1, 2):
        a = a[:, -1]
    if a.ndim != 1:
        return None
    if a.dtype.kind in "biuf":
        return a.astype(np.float64)
    return object_column_to_float(a.astype(object))


def infer_schema(features: Any) -> FeatureSchema | None:
    """A schema read off the first features a monitor without a reference sees, or None.

    Names come from a DataFrame's columns, a dict's keys (a row, a dict of columns or a list of
    dicts) or a Series' index; positional data (arrays, lists) gets ``f0, f1, ...``. A column is
    categorical when most of its non-missing values are not numbers. None when nothing usable
    can be read (an empty batch, names that are not strings or collide once sanitised).

    >>> s = infer_schema({"age": 31, "city": "Oslo"})
    >>> s.names, s.categorical_names
    (('age', 'city'), ('city',))
    >>> infer_schema(np.zeros((4, 3))).names
    ('f0', 'f1', 'f2')
    """
    try:
        names, cols = _infer_columns(features)
    except Exception:
        return None
    if not names:
        return None
    try:
        check_feature_names(names)
    except (TypeError, ValueError):
        return None
    categorical = [
        n for n, c in zip(names, cols, strict=True) if c is not None and not is_numeric_column(c)
    ]
    return FeatureSchema(names, categorical=categorical)


def _infer_columns(features: Any) -> tuple[list[Any], list[npt.NDArray[Any] | None]]:
    """Names and a sample column (or None: numeric) per feature."""
    if _is_pandas(features, "DataFrame"):
        if len(features.columns) == 0:
            return [], []
        cols = [features[c].to_numpy(dtype=object) for c in features.columns]
        return [c if isinstance(c, str) else str(c) for c in features.columns], list(cols)
    if _is_pandas(features, "Series"):
        if all(isinstance(k, str) for k in features.index):
            return _infer_columns(features.to_dict())
        features = features.to_numpy(dtype=object)
    if isinstance(features, Mapping):
        values = list(features.values())
        if any(_is_column(v) for v in values):
            return list(features), [
                np.array(list(v), dtype=object) if _is_column(v) else None for v in values
            ]
        return list(features), [np.array([v], dtype=object) for v in values]
    if (
        isinstance(features, (list, tuple))
        and features
        and all(isinstance(r, Mapping) for r in features)
    ):
        keys: dict[Any, None] = {}
        for r in features:
            keys.update(dict.fromkeys(r))
        return list(keys), [np.array([r.get(k) for r in features], dtype=object) for k in keys]
    if (
        isinstance(features, (list, tuple))
        and features
        and isinstance(features[0], (list, tuple, np.ndarray))
    ):
        features = np.array([list(r) for r in features], dtype=object)
    a = np.asarray(features, dtype=object) if not isinstance(features, np.ndarray) else features
    if a.ndim == 0:
        a = a.reshape(1, 1)
    elif a.ndim == 1:
        if a.size == 0:
            return [], []
        a = a.reshape(1, -1)
    if a.ndim != 2 or a.shape[0] == 0:
        return [], []
    names: list[Any] = [f"f{j}" for j in range(a.shape[1])]
    if a.dtype.kind in "biuf":
        return names, [None] * len(names)
    return names, [a[:, j].astype(object) for j in range(a.shape[1])]


# ----------------------------------------------------------------------- component


class _Empty:
    def merge(self, other: object, /) -> None:
        pass

    def reset(self) -> None:
        pass


class FeatureComponent:
    """Feature quality and drift over the rolling window, as a monitor component.

    Args:
        features: a :class:`~mlmon.reference.Reference` (quality, out-of-range, drift and
            output drift), feature names (quality only: missing, mean, variance, min, max), or
            None: quality only, with names and kinds read off the first features ingested
            (:func:`infer_schema`) and fixed from then on.
        categorical: names of categorical features when ``features`` is a list of names.
        window: seconds the window covers.
        slices: slices of the window.
        now: monitor clock at creation.
        drift: drift decision settings (:class:`~mlmon.drift.DriftConfig` defaults when None).

    ``ingest`` never raises: unreadable calls count in :attr:`invalid_rows` (and as rows with
    every feature missing), unknown dict keys in :attr:`unknown_keys`, and a failure of mlmon's
    own code in :attr:`errors`.

    >>> import numpy as np
    >>> from mlmon._component import CallBatch
    >>> rng = np.random.default_rng(1)
    >>> ref = Reference.from_data(rng.normal(size=(5000, 2)), feature_names=["a", "b"])
    >>> comp = FeatureComponent(ref, window=60.0, slices=6, now=0.0)
    >>> X = rng.normal(size=(1000, 2)); X[:, 1] += 1.0   # feature b moved by 1 sigma
    >>> comp.ingest(CallBatch(now=1.0, wall=0.0, features=[X], rows=[1000]))
    >>> out = {(name, labels["feature"]): value for name, value, labels in comp.samples(2.0)}
    >>> out[("mlmon_feature_drift_status", "a")], out[("mlmon_feature_drift_status", "b")]
    (0.0, 2.0)
    >>> out[("mlmon_feature_missing_ratio", "a")]
    0.0
    """

    def __init__(
        self,
        features: Reference | Sequence[str] | None,
        *,
        categorical: Iterable[str] = (),
        window: float = 300.0,
        slices: int = 10,
        now: float = 0.0,
        drift: DriftConfig | None = None,
    ) -> None:
        schema: FeatureSchema | None
        if features is None:
            schema = None  # read off the first features ingested (see infer_schema)
        elif isinstance(features, Reference):
            schema = FeatureSchema(reference=features)
        elif isinstance(features, (str, bytes)) or not isinstance(features, Iterable):
            raise TypeError(
                f"features must be a Reference, a sequence of names or None, got {features!r}"
            )
        else:
            schema = FeatureSchema(list(features), categorical=categorical)
        if drift is None:
            drift = DriftConfig()
        elif not isinstance(drift, DriftConfig):
            raise TypeError(f"drift must be a DriftConfig or None, got {drift!r}")
        RollingWindow(_Empty, window=window, slices=slices, now=now)  # validates window and slices
        self.drift = drift
        self._window_args = (float(window), slices, float(now))
        self._lock = threading.Lock()
        self.schema: FeatureSchema | None = None
        self._window: RollingWindow[FeatureAccumulator] | None = None
        if schema is not None:
            self._configure(schema)
        self.invalid_rows = 0
        """Rows of calls whose features could not be read (cumulative)."""
        self.unknown_keys = 0
        """Values given under names that are not features (cumulative)."""
        self.errors = 0
        """Failures of mlmon's own code while ingesting (cumulative)."""

    def _configure(self, schema: FeatureSchema) -> None:
        window, slices, now = self._window_args
        self.schema = schema
        self._window = RollingWindow(
            lambda: FeatureAccumulator(schema), window=window, slices=slices, now=now
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The monitored features, in order (empty until inferred, without a reference)."""
        return () if self.schema is None else self.schema.names

    def ingest(self, batch: CallBatch) -> None:
        """Add the features (and outputs, for output drift) of drained calls. Never raises."""
        try:
            self._ingest(batch)
        except Exception:
            self.errors += 1

    def _ingest(self, batch: CallBatch) -> None:
        rows = list(batch.rows)
        if self.schema is None:
            for feats in batch.features:
                inferred = infer_schema(feats) if feats is not None else None
                if inferred is not None:
                    with self._lock:
                        self._configure(inferred)
                    break
        schema = self.schema
        if schema is None:
            # Nothing readable yet to name the features by: the calls with features are invalid.
            self.invalid_rows += sum(
                (rows[i] if i < len(rows) and isinstance(rows[i], int) else 1)
                for i, f in enumerate(batch.features)
                if f is not None
            )
            return
        window = self._window
        assert window is not None
        b = _Builder(schema)
        any_features = False
        # Single rows of an all-numeric schema, as 1-D numeric arrays, are stacked into one
        # block and reduced together: a Python-level conversion per row would cost more than
        # the predict call that produced it.
        n_feat = len(schema.names)
        stack_rows = schema.n_categorical == 0
        singles: list[npt.NDArray[Any]] = []
        for i, feats in enumerate(batch.features):
            if feats is None:
                continue
            any_features = True
            if (
                stack_rows
                and feats.__class__ is np.ndarray
                and feats.ndim == 1
                and feats.shape[0] == n_feat
                and feats.dtype.kind in "biuf"
            ):
                singles.append(feats)
                continue
            hint = rows[i] if i < len(rows) and isinstance(rows[i], int) else 1
            before = (len(b.blocks_x), len(b.rows_x), b.invalid, b.unknown)
            try:
                _add(b, feats, hint)
            except Exception:
                # Roll back whatever this call added, then count the whole call.
                del b.blocks_x[before[0] :], b.blocks_c[before[0] :]
                del b.rows_x[before[1] :], b.rows_c[before[1] :]
                b.invalid, b.unknown = before[2] + max(hint, 1), before[3]
        if singles:
            b.block(np.vstack(singles))
        scores: list[F64] = []
        if schema.output_edges is not None:
            for out in batch.outputs:
                try:
                    s = _scores(out)
                except Exception:
                    s = None
                if s is not None and s.size:
                    scores.append(s)
        if not any_features and not scores:
            return
        conv = b.finish()
        with self._lock:
            acc = window.current(batch.now)
            if conv.numeric.shape[0]:
                acc.update_batch(conv.numeric)
                if schema.n_categorical:
                    acc.update_categorical(conv.categorical)
            acc.update_invalid(conv.invalid)
            if scores:
                acc.update_outputs(np.concatenate(scores))
            self.invalid_rows += conv.invalid
            self.unknown_keys += conv.unknown

    def merged(self, now: float) -> FeatureAccumulator | None:
        """The window's accumulator at ``now`` (a fresh merge of every slice); None before
        the features are known."""
        with self._lock:
            return None if self._window is None else self._window.merged(now)

    def samples(self, now: float) -> list[Triple]:
        """``mlmon_feature_*`` and ``mlmon_output_drift_psi`` samples for the window at ``now``.

        A feature without a row in the window has no sample at all; statistics of values
        (mean, variance, min, max, ratios over values) need at least one valid value; drift
        scores and status need ``drift.min_rows`` valid values.
        """
        acc = self.merged(now)
        schema = self.schema
        if acc is None or schema is None:
            return []
        cfg = self.drift
        out: list[Triple] = []
        drift_of: list[tuple[str, DriftScores]] = []
        variance = acc.variance()

        def emit(name: str, value: float, feature: str) -> None:
            if math.isfinite(value):
                out.append((name, float(value), {"feature": feature}))

        for j, name in enumerate(schema.numeric_names):
            n = int(acc.count[j])
            rows = n + int(acc.missing[j])
            if rows == 0:
                continue
            emit("mlmon_feature_missing_ratio", acc.missing[j] / rows, name)
            if n == 0:
                continue
            emit("mlmon_feature_mean", acc.mean[j], name)
            emit("mlmon_feature_variance", variance[j], name)
            emit("mlmon_feature_min", acc.min[j], name)
            emit("mlmon_feature_max", acc.max[j], name)
            if schema.edges[j] is None:
                continue
            cells = acc.cells(j)
            emit("mlmon_feature_out_of_range_ratio", (cells[0] + cells[-1]) / n, name)
            if n >= cfg.min_rows:
                prof = schema.reference[name] if schema.reference is not None else None
                assert isinstance(prof, NumericProfile)
                drift_of.append(
                    (name, drift_scores(prof.cells(), cells, ordered=True, epsilon=cfg.epsilon))
                )

        for j, name in enumerate(schema.categorical_names):
            n = int(acc.cat_count[j])
            rows = n + int(acc.cat_missing[j])
            if rows == 0:
                continue
            emit("mlmon_feature_missing_ratio", acc.cat_missing[j] / rows, name)
            ref = schema.cat_ref[j]
            if n == 0 or ref is None:
                continue
            emit("mlmon_feature_unseen_ratio", acc.cat_unseen[j] / n, name)
            if n >= cfg.min_rows:
                drift_of.append(
                    (
                        name,
                        drift_scores(
                            ref.cells(), acc.category_cells(j), ordered=False, epsilon=cfg.epsilon
                        ),
                    )
                )

        statuses = decide([s for _, s in drift_of], cfg)
        for (name, s), status in zip(drift_of, statuses, strict=True):
            emit("mlmon_feature_drift_psi", s.psi, name)
            emit("mlmon_feature_drift_js", s.js, name)
            emit("mlmon_feature_drift_ks", s.ks, name)
            emit("mlmon_feature_drift_wasserstein", s.wasserstein, name)
            emit("mlmon_feature_drift_pvalue", s.pvalue, name)
            if status is not None:
                emit("mlmon_feature_drift_status", float(status), name)

        if schema.output_ref is not None and acc.out_count >= cfg.min_rows:
            value = psi(schema.output_ref.cells(), acc.out_hist, cfg.epsilon)
            if math.isfinite(value):
                out.append(("mlmon_output_drift_psi", value, {}))
        return out

    def reset(self) -> None:
        """Forget the window (after a fork); cumulative counters restart too."""
        with self._lock:
            if self._window is not None:
                self._window.reset()
            self.invalid_rows = 0
            self.unknown_keys = 0
            self.errors = 0
