"""Multiclass ranking metrics from probability rows: top-k accuracy and one-vs-rest ROC and
PR AUC per class from per-class score histograms (:class:`RowMetrics`).

Top-k accuracy. A labelled row is a top-k hit when its true class is among the ``k`` classes
of highest probability. Ties are broken as scikit-learn's ``top_k_accuracy_score`` breaks them
(a stable ascending sort, reversed): of equal probabilities, the higher class index ranks
first. The rank of the true class ``t`` is then
``#{j: p_j > p_t} + #{j > t: p_j == p_t}``, and the row is a hit when that rank is below ``k``.
Rows kept as their top ``m`` classes only (indices in that order) give the same ranks for the
classes they hold, so top-k is exact for ``k <= m``.

One-vs-rest AUC. Class ``c``'s histogram counts the rows labelled ``c`` (positives) and the
other rows (negatives) by the bin of the row's probability of ``c``; each class's ROC AUC,
its error bound and its average precision are the binary ones of
:mod:`mlmon.stats.binary` on that histogram (exact where no bin holds both a positive and a
negative, e.g. while the window has few rows). All histograms live in two flat arrays (class
``c``'s cells at ``c * cells``), so adding a batch is two ``bincount`` calls and a merge is two
array additions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["RowMetrics", "class_bins", "default_top_k", "true_class_rank"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_CHUNK_VALUES = 1 << 20
MAX_HISTOGRAM_CELLS = 32_000
"""Most score bins over all classes of one histogram: 1,000 bins a class up to 32 classes,
fewer (never under 100) above."""


def class_bins(n_classes: int) -> int:
    """Score bins of width ``1 / bins`` on [0, 1] per class for ``n_classes`` classes.

    >>> class_bins(10), class_bins(64), class_bins(1000)
    (1000, 500, 100)
    """
    return max(100, min(1000, MAX_HISTOGRAM_CELLS // max(n_classes, 1)))


def default_top_k(n_classes: int, ks: Sequence[int] | None = None) -> tuple[int, ...]:
    """The ``k`` values of top-k accuracy: ``ks`` (default 1, 3, 5) limited to ``k < n_classes``
    (with ``k >= n_classes`` every row is a hit), sorted, without repeats.

    >>> default_top_k(4), default_top_k(10), default_top_k(10, [10, 2, 2])
    ((1, 3), (1, 3, 5), (2,))
    """
    want = (1, 3, 5) if ks is None else ks
    return tuple(sorted({int(k) for k in want if 1 <= int(k) < n_classes}))


def true_class_rank(rows: npt.NDArray[np.floating], labels: IntArray) -> IntArray:
    """Rank (0 = first) of each row's true class among its classes, ties broken as
    scikit-learn's ``top_k_accuracy_score`` (of equal probabilities the higher index first).

    >>> true_class_rank(np.array([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2]]), np.array([2, 0])).tolist()
    [1, 1]
    """
    n, k = rows.shape
    pt = rows[np.arange(n), labels][:, None]
    above = rows > pt
    tied_after = (rows == pt) & (np.arange(k)[None, :] > labels[:, None])
    out: IntArray = (above | tied_after).sum(axis=1).astype(np.int64)
    return out


class RowMetrics:
    """Top-k hits and per-class one-vs-rest score histograms of labelled probability rows.

    Args:
        n_classes: classes of the rows (their width).
        ks: the ``k`` of each top-k accuracy (see :func:`default_top_k`).
        bins: score bins of width ``1 / bins`` on [0, 1] per class (:func:`class_bins`).

    >>> r = RowMetrics(3, (1, 2), bins=10)
    >>> r.add(np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]]), np.array([0, 1, 1]))
    >>> r.rows, r.hits.tolist()
    (3, [1, 3])
    >>> auc, bound, ap = r.per_class()
    >>> auc.tolist(), bound.tolist()
    ([1.0, 1.0, nan], [0.0, 0.0, nan])
    """

    __slots__ = ("depth", "hits", "n_classes", "neg", "pos", "rows", "schema")

    def __init__(self, n_classes: int, ks: Sequence[int], bins: int) -> None:
        self.n_classes = n_classes
        self.schema = bins + 2  # cells per class: configuration, never state (see the fleet codec)
        self.rows = 0
        # The fewest top classes of any row added as top classes only (0: all rows were full):
        # top-k above it is unknown.
        self.depth = 0
        self.hits: IntArray = np.zeros(len(ks), dtype=np.int64)
        # Positive and negative counts per (class, cell), class c's cells at c * schema; made at
        # the first full row, so that windows without rows (class outputs) hold no histogram.
        self.pos: FloatArray | None = None
        self.neg: FloatArray | None = None

    def add(
        self,
        rows: npt.NDArray[np.floating],
        labels: IntArray,
        ks: Sequence[int] | None = None,
        top: IntArray | None = None,
    ) -> None:
        """Add labelled rows: full ``(n, k)`` rows of probabilities in [0, 1], or (with ``top``)
        each row's ``m`` highest probabilities, ``top`` holding their class indices in rank
        order; such rows count in top-k only (their other classes' probabilities are unknown).

        ``ks`` defaults to 1, 2, ... (as many as ``hits``). Many rows of many classes are added
        in chunks of about a million values, which bounds the temporaries."""
        n = int(labels.size)
        if n == 0:
            return
        step = max(1, _CHUNK_VALUES // max(rows.shape[1], 1))
        if n > step:
            for lo in range(0, n, step):
                sub = None if top is None else top[lo : lo + step]
                self.add(rows[lo : lo + step], labels[lo : lo + step], ks, sub)
            return
        kvals = np.asarray(ks if ks is not None else range(1, self.hits.size + 1), dtype=np.int64)
        if top is None:
            rank = true_class_rank(rows, labels)
        else:
            at = top == labels[:, None]
            rank = np.where(at.any(axis=1), at.argmax(axis=1), top.shape[1]).astype(np.int64)
            m = int(top.shape[1])
            self.depth = m if self.depth == 0 else min(self.depth, m)
        self.rows += n
        if kvals.size:
            self.hits += (rank[:, None] < kvals[None, :]).sum(axis=0)
        if top is not None:
            return
        k, cells = self.n_classes, self.schema
        b = cells - 2
        # Cell of each probability: 1..b on [0, 1] (the last bin closed), as bin_index does on
        # the edges i / b; 0 and b + 1 stay empty for probabilities, which are in [0, 1].
        idx = np.minimum(np.floor(rows.astype(np.float64) * b).astype(np.intp) + 1, b)
        flat = (idx + np.arange(k, dtype=np.intp)[None, :] * cells).ravel()
        onehot = np.zeros((n, k))
        onehot[np.arange(n), labels] = 1.0
        size = k * cells
        if self.pos is None or self.neg is None:
            self.pos, self.neg = np.zeros(size), np.zeros(size)
        self.pos += np.bincount(flat, weights=onehot.ravel(), minlength=size)
        self.neg += np.bincount(flat, weights=1.0 - onehot.ravel(), minlength=size)

    def check_merge(self, other: object) -> None:
        """Raise ValueError, changing nothing, if ``other`` cannot be merged into this one."""
        if not isinstance(other, RowMetrics) or other.n_classes != self.n_classes:
            raise ValueError("cannot merge row metrics of different classes")
        if other.hits.shape != self.hits.shape:
            raise ValueError("cannot merge row metrics of different top-k")
        size = self.n_classes * self.schema
        for arr in (other.pos, other.neg):
            if arr is not None and arr.shape != (size,):
                raise ValueError(f"cannot merge row histograms of {arr.shape} cells into {size}")
        if (other.pos is None) != (other.neg is None):
            raise ValueError("row histograms: one half missing")

    def merge(self, other: object) -> None:
        self.check_merge(other)
        assert isinstance(other, RowMetrics)
        self.rows += other.rows
        if other.depth:
            self.depth = other.depth if self.depth == 0 else min(self.depth, other.depth)
        self.hits += other.hits
        if other.pos is not None and other.neg is not None:
            if self.pos is None or self.neg is None:
                self.pos, self.neg = other.pos.copy(), other.neg.copy()
            else:
                self.pos += other.pos
                self.neg += other.neg

    def reset(self) -> None:
        """Forget everything (keeps the histograms)."""
        self.rows = 0
        self.depth = 0
        self.hits[:] = 0
        if self.pos is not None and self.neg is not None:
            self.pos[:] = 0.0
            self.neg[:] = 0.0

    @property
    def has_histograms(self) -> bool:
        """Whether any full row was added (the AUCs need them)."""
        return self.pos is not None and bool(self.pos.any())

    def top_k(self, ks: Sequence[int]) -> list[float | None]:
        """Top-k accuracy for each ``k`` of ``ks`` (those :meth:`add` counted); None without
        rows, or for a ``k`` above the top classes kept of some row."""
        if not self.rows:
            return [None] * self.hits.size
        return [
            h / self.rows if not self.depth or k <= self.depth else None
            for k, h in zip(ks, self.hits.tolist(), strict=True)
        ]

    def per_class(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """ROC AUC, its error bound, and average precision of each class against the rest
        (NaN where undefined: an AUC needs positives and negatives, an AP positives): the
        values of :func:`~mlmon.stats.binary.binned_auc` and
        :func:`~mlmon.stats.binary.binned_average_precision` on each class's histogram, for
        all classes at once."""
        k = self.n_classes
        if self.pos is None or self.neg is None:
            nan = np.full(k, math.nan)
            return nan, nan.copy(), nan.copy()
        pos = self.pos.reshape(k, -1)
        neg = self.neg.reshape(k, -1)
        p, n = pos.sum(axis=1), neg.sum(axis=1)
        defined = (p > 0.0) & (n > 0.0)
        pn = np.where(defined, p * n, 1.0)
        below = np.cumsum(neg, axis=1) - neg
        auc = np.clip(np.einsum("ij,ij->i", pos, below + 0.5 * neg) / pn, 0.0, 1.0)
        bound = np.einsum("ij,ij->i", pos, neg) / pn / 2.0
        auc[~defined] = math.nan
        bound[~defined] = math.nan
        rpos, rneg = pos[:, ::-1], neg[:, ::-1]
        tp, fp = np.cumsum(rpos, axis=1), np.cumsum(rneg, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(rpos > 0.0, tp / (tp + fp), 0.0)
        has = p > 0.0
        ap = np.full(k, math.nan)
        ap[has] = np.einsum("ij,ij->i", rpos[has], precision[has]) / p[has]
        return auc, bound, ap
