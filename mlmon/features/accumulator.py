"""Per-feature window statistics, vectorised over features and mergeable across time slices."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from mlmon._handover import handover
from mlmon._values import category_key
from mlmon.features.schema import F64, I64, FeatureSchema, Obj
from mlmon.reference import bin_index

__all__ = ["FeatureAccumulator"]

# Most bounds per feature (cells + 1) counted by comparisons rather than by sorting the batch.
_COMPARE_KEYS = 24


_LANES = 8 * 255
"""Booleans summed as 8-byte words, 255 words at a time: no byte of a sum exceeds 255."""

ROW_PASS_ROWS = 4096
ROW_PASS_VALUES = 1 << 20
"""Rows and values from which a finite batch is read feature by feature (see
:meth:`FeatureAccumulator._update_finite_rows`): ``evaluate``'s batches (131,072 rows by
default). Smaller batches take whole-batch passes, as a live monitor's drain reduces its calls
(stacked up to about :data:`mlmon.features.inputs.PART_VALUES` values): the batch path whose
effect on predict's latency the stall benchmark measures."""


class _Below:
    """Counts of values below each of several bounds, for rows of up to ``n`` values and up
    to ``bounds`` bounds: one comparison call makes a row of booleans per bound, counted as
    bytes summed 8 at a time (the padding stays False)."""

    __slots__ = ("lt", "n", "words")

    def __init__(self, n: int, bounds: int) -> None:
        width = -(-n // _LANES) * _LANES
        self.n = n
        self.lt = np.zeros((max(bounds, 1), width), dtype=np.bool_)
        self.words = self.lt.view(np.uint64).reshape(max(bounds, 1), width // _LANES, 255)

    def count(self, row: F64, bounds: F64) -> npt.NDArray[np.uint64]:
        """``[count_nonzero(row < b) for b in bounds]`` (``bounds`` a column, ``(m, 1)``)."""
        m = bounds.shape[0]
        np.less(row, bounds, out=self.lt[:m, : self.n])
        sums: npt.NDArray[np.uint64] = self.words[:m].sum(axis=2)
        counts: npt.NDArray[np.uint64] = sums.view(np.uint8).sum(axis=1, dtype=np.uint64)
        return counts


def _few_keys(schema: FeatureSchema) -> bool:
    """Whether every binned feature of ``schema`` has at most :data:`_COMPARE_KEYS` bounds
    (cells counted by comparisons, not by sorting)."""
    return bool(schema.bin_keys) and schema.bin_inner_max + 2 <= _COMPARE_KEYS


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
        """Chan et al.'s pairwise update, one feature per element (values near the float range
        overflow to inf, as they would in any float sum: no warning is printed for them)."""
        total = self.count + n
        frac = np.divide(n, total, out=np.zeros(len(n)), where=total > 0)
        with np.errstate(over="ignore", invalid="ignore"):
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
        schema = self.schema
        if n >= ROW_PASS_ROWS and n * X.shape[1] >= ROW_PASS_VALUES and (not schema.hist_size or _few_keys(schema)):
            # Feature by feature, each a row of X.T read where it is when its values are
            # contiguous (a column-major batch: pandas' blocks of floats), else transposed once.
            xt = X.T if X.strides[0] == X.itemsize else np.ascontiguousarray(X.T)
            with np.errstate(over="ignore", invalid="ignore"):
                if not self._update_finite_rows(xt):
                    self._update_masked(xt, own=not np.may_share_memory(xt, X))
            return
        # Feature-major and contiguous: every reduction then runs along memory (and numpy's
        # pairwise summation applies), and each feature's searchsorted reads one row.
        xt = np.ascontiguousarray(X.T)
        own = not np.may_share_memory(xt, X)
        with np.errstate(over="ignore", invalid="ignore"):
            total = xt.sum(axis=1)
        # A NaN or an infinity makes its feature's sum NaN or infinite (so does a sum that
        # overflows: that batch then takes the masked path, exact too).
        with np.errstate(over="ignore", invalid="ignore"):  # huge values: inf, counted as such
            if np.isfinite(total).all():
                self._update_finite(xt, own, total)
            else:
                self._update_masked(xt, own)

    def _update_finite(self, xt: F64, own: bool, total: F64) -> None:
        """:meth:`update_batch` of a batch without a missing value (``xt`` feature-major,
        ``own`` when it is a private copy, ``total`` its sums per feature)."""
        f, n = xt.shape
        mean = total / n
        schema = self.schema
        if schema.hist_size and len(schema.binned) == f:
            # Every feature is binned: sort once (in place when the copy is ours, without
            # the GIL); the ends are the minimum and maximum, the sorted rows are binned, then
            # overwritten with the deviations (no other temporary of the batch's size).
            srt = xt if own else xt.copy()
            handover()
            srt.sort(axis=1)
            handover()
            lo = srt[:, 0].copy()
            hi = srt[:, -1].copy()
            self._count_cells(srt)
            handover()
            d = np.subtract(srt, mean[:, None], out=srt)
        else:
            lo = xt.min(axis=1)
            hi = xt.max(axis=1)
            if schema.hist_size:
                self._bin(xt, own=False, finite=True)  # some features binned: their rows are copied
                handover()
            d = np.subtract(xt, mean[:, None], out=xt) if own else xt - mean[:, None]
        # Two passes over the batch: the batch's own M2 is exact, then Chan-merged.
        m2 = np.einsum("ij,ij->i", d, d)
        self._combine(np.full(f, n, dtype=np.int64), mean, m2, lo, hi)

    def _update_finite_rows(self, xt: F64) -> bool:
        """:meth:`update_batch` of a batch without a missing value, feature by feature, each
        feature's cells counted by comparisons: its values (one row of ``xt``) are read from
        memory once (by their sum), then stay in the core's cache for their minimum, maximum,
        cell counts and deviations. False, with nothing changed, at the first feature whose
        sum is not finite (a missing value, or a sum beyond the float range): the batch then
        takes the masked path.

        A feature's inner bounds are compared in one call (a row of booleans per bound) and
        the booleans counted 8 at a time (:class:`_Below`): a few long numpy calls per
        feature, each without the GIL. Calls of a few microseconds each (a comparison and a
        count per bound) are slower on two threads than on one, measured: every hand-over of
        the GIL between threads costs a wake-up.
        """
        f, n = xt.shape
        schema = self.schema
        mean = np.empty(f)
        lo = np.empty(f)
        hi = np.empty(f)
        m2 = np.empty(f)
        dev = np.empty(n)
        isfinite = math.isfinite
        binned = schema.bin_of
        pos = schema.bin_pos
        bounds = np.empty(pos[-1], dtype=np.intp)
        lt = _Below(n, schema.bin_inner_max)
        for j in range(f):
            handover()
            row = xt[j]
            total = row.sum()
            if not isfinite(total):
                return False
            mean[j] = mu = total / n
            lo[j] = row.min()
            hi[j] = row.max()
            k = binned[j]
            if k >= 0:
                # Finite values: none below -max, all below inf (the outer bounds).
                a, b = int(pos[k]), int(pos[k + 1])
                bounds[a] = 0
                bounds[a + 1 : b - 1] = lt.count(row, schema.bin_inner[k])
                bounds[b - 1] = n
            np.subtract(row, mu, out=dev)
            m2[j] = np.einsum("i,i->", dev, dev)
        if schema.hist_size:
            self.hist += np.diff(bounds)[schema.bin_take]
        self._combine(np.full(f, n, dtype=np.int64), mean, m2, lo, hi)
        return True

    def _update_masked(self, xt: F64, own: bool) -> None:
        """:meth:`update_batch` of a batch with missing values (NaN, inf) or sums beyond the
        float range."""
        n = xt.shape[1]
        valid = np.isfinite(xt)
        cnt = valid.sum(axis=1).astype(np.int64)
        mean = np.where(valid, xt, 0.0).sum(axis=1) / np.maximum(cnt, 1)
        d = np.where(valid, xt - mean[:, None], 0.0)
        lo = np.where(valid, xt, np.inf).min(axis=1)
        hi = np.where(valid, xt, -np.inf).max(axis=1)
        self.missing += n - cnt
        m2 = np.einsum("ij,ij->i", d, d)
        self._combine(cnt, mean, m2, lo, hi)
        if self.schema.hist_size:
            handover()
            self._bin(xt, own)

    def _bin(self, xt: F64, own: bool, finite: bool = False) -> None:
        """Count the batch on the reference cells of every binned feature.

        A feature with few cells (at most :data:`_COMPARE_KEYS` bounds, 21 bins) is counted by
        comparisons, one vectorised pass per bound (:meth:`_count_cells_unsorted`); the others'
        rows are sorted once (SIMD sorts cost a few ns per value, a binary search per value
        costs several times that), then counted by :meth:`_count_cells`. Both count the same
        cells. ``finite``: no value of the batch is missing.
        """
        schema = self.schema
        rows = schema.binned
        if _few_keys(schema):
            self._count_cells_unsorted(xt, rows, finite)
            return
        if len(rows) != xt.shape[0]:
            srt = xt[rows]  # a copy: sorted in place
            srt.sort(axis=1)
        elif own:
            srt = xt  # the statistics are done: the transposed copy can be sorted in place
            srt.sort(axis=1)
        else:
            srt = np.sort(xt, axis=1)
        handover()
        self._count_cells(srt)

    def _count_cells_unsorted(self, xt: F64, rows: npt.NDArray[np.intp], finite: bool = False) -> None:
        """:meth:`_count_cells` of the rows ``rows`` of ``xt`` unsorted: the number of values
        below each bound, ``count_nonzero(row < bound)``, is the bound's ``searchsorted``
        position in the sorted row (NaN compares false, as it sorts last). With ``finite``
        values the outer bounds need no pass: none is below ``-max``, all are below ``inf``.

        About two comparison passes cost what sorting a value costs (numpy's SIMD sort): with
        the default 10 bins, 11 passes take half the time of the sort.
        """
        lt = np.empty(xt.shape[1], dtype=np.bool_)

        def below(k: int, keys: F64) -> list[int]:
            row = xt[rows[k]]
            bounds = keys.tolist()
            if finite:
                inner = [int(np.count_nonzero(np.less(row, key, out=lt))) for key in bounds[1:-1]]
                return [0, *inner, row.size]
            return [int(np.count_nonzero(np.less(row, key, out=lt))) for key in bounds]

        self._add_cells(below)

    def _count_cells(self, srt: F64) -> None:
        """Add the cell counts of the binned features' sorted rows ``srt`` (one row per binned
        feature, in order): differences of ``m + 3`` positions found by one ``searchsorted``
        of the schema's bounds per feature: ``[-max, e0 .. e(m-1), next(e(m)), inf)`` with
        ``side="left"``, so -inf, +inf and NaN (sorted last) fall outside every cell and the
        maximum belongs to the last bin."""
        self._add_cells(lambda k, keys: srt[k].searchsorted(keys, side="left"))

    def _add_cells(self, positions: Callable[[int, F64], Any]) -> None:
        """Add the cells whose bounds' positions among binned feature ``k``'s values are
        ``positions(k, bounds)`` (bounds as in :meth:`_count_cells`)."""
        schema = self.schema
        pos = schema.bin_pos
        keys = schema.bin_keys
        bounds = np.empty(pos[-1], dtype=np.intp)
        for k in range(len(keys)):
            handover()
            bounds[pos[k] : pos[k + 1]] = positions(k, keys[k])
        self.hist += np.diff(bounds)[schema.bin_take]

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
        if len(e) <= _COMPARE_KEYS:
            # The values below each bound [e0 .. e(m-1), next(e(m))]: their differences are
            # the cells of bin_index (a pass of comparisons each, faster than a search).
            below = np.empty(len(e) + 2, dtype=np.int64)
            below[0] = 0
            for i, key in enumerate([*e[:-1].tolist(), float(np.nextafter(e[-1], np.inf))]):
                below[i + 1] = np.count_nonzero(s < key)
            below[-1] = s.size
            self.out_hist += np.diff(below)
        else:
            self.out_hist += np.bincount(bin_index(s, e), minlength=len(e) + 1)

    def merge(self, other: object) -> None:
        """Add everything ``other`` (an accumulator of the same schema) has seen."""
        if not isinstance(other, FeatureAccumulator) or other.schema is not self.schema:
            raise TypeError("can only merge a FeatureAccumulator of the same schema")
        handover()  # a window merges many slices: each merge is a step of its own
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

