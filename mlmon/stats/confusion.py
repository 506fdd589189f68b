"""A mergeable confusion matrix with precision, recall, F1 and accuracy read-outs.

Counts are a dense ``k × k`` int64 array, true class by row and predicted class by column, so
a batch is one ``bincount`` and a merge is one array addition.

A metric whose denominator is zero is undefined and read as None (per class: NaN in the
arrays), never as 0: a window without predicted positives has no precision, and reporting 0
would fire every "precision dropped" alert. F1 is ``2 tp / (2 tp + fp + fn)``, which is the
harmonic mean of precision and recall where both are defined, and stays defined (0) when one
of them is not but there were errors. Macro averages are the mean over the classes where the
metric is defined (scikit-learn's ``zero_division=np.nan``); micro averages pool the counts.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["ConfusionMatrix"]

FloatArray = npt.NDArray[np.float64]


def _ratio(num: npt.NDArray[np.int64], den: npt.NDArray[np.int64]) -> FloatArray:
    out = np.full(num.shape, math.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _opt(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


class ConfusionMatrix:
    """Counts of (true class, predicted class) pairs over ``n_classes`` classes.

    Args:
        n_classes: number of classes, >= 2. For a binary task class 1 is the positive class.

    >>> cm = ConfusionMatrix(2)
    >>> cm.update_many(np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1]))
    >>> cm.total, cm.accuracy()
    (5, 0.6)
    >>> cm.precision(1), cm.recall(1), round(cm.f1(1), 4)
    (0.6666666666666666, 0.6666666666666666, 0.6667)
    >>> ConfusionMatrix(2).precision(1) is None   # no predicted positives: undefined
    True
    """

    __slots__ = ("counts", "n_classes")

    def __init__(self, n_classes: int) -> None:
        if not (isinstance(n_classes, int) and n_classes >= 2):
            raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
        self.n_classes = n_classes
        self.counts: npt.NDArray[np.int64] = np.zeros((n_classes, n_classes), dtype=np.int64)

    @property
    def total(self) -> int:
        """Pairs counted."""
        return int(self.counts.sum())

    def update(self, true: int, pred: int) -> None:
        """Count one pair of class indices."""
        self.counts[true, pred] += 1

    def update_many(self, true: npt.ArrayLike, pred: npt.ArrayLike) -> None:
        """Count pairs of class indices (equal-length integer arrays in ``[0, n_classes)``)."""
        t = np.asarray(true, dtype=np.int64).ravel()
        p = np.asarray(pred, dtype=np.int64).ravel()
        if t.shape != p.shape:
            raise ValueError(f"true and pred differ in length: {t.size} != {p.size}")
        k = self.n_classes
        if t.size:
            if min(int(t.min()), int(p.min())) < 0 or max(int(t.max()), int(p.max())) >= k:
                raise ValueError(f"class indices must be in [0, {k})")
            if k == 2:
                # Two classes: the four cells from three sums (no GIL held, unlike bincount).
                tp = int(np.count_nonzero(t & p))
                st, sp = int(t.sum()), int(p.sum())
                self.counts += np.array([[t.size - st - sp + tp, sp - tp], [st - tp, tp]], dtype=self.counts.dtype)
            else:
                self.counts += np.bincount(t * k + p, minlength=k * k).reshape(k, k)

    def merge(self, other: object) -> None:
        """Add another matrix's counts (same number of classes)."""
        assert isinstance(other, ConfusionMatrix)
        if other.n_classes != self.n_classes:
            raise ValueError("cannot merge confusion matrices of different sizes")
        self.counts += other.counts

    def reset(self) -> None:
        """Forget everything."""
        self.counts[:] = 0

    # -- read-outs -----------------------------------------------------------------------
    def per_class(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Precision, recall and F1 of every class (NaN where undefined)."""
        tp = np.diagonal(self.counts).copy()
        predicted = self.counts.sum(axis=0)
        actual = self.counts.sum(axis=1)
        return (
            _ratio(tp, predicted),
            _ratio(tp, actual),
            _ratio(2 * tp, predicted + actual),
        )

    def precision(self, cls: int) -> float | None:
        """``tp / (tp + fp)`` of class ``cls``; None with no predictions of it."""
        return _opt(float(self.per_class()[0][cls]))

    def recall(self, cls: int) -> float | None:
        """``tp / (tp + fn)`` of class ``cls``; None with no true labels of it."""
        return _opt(float(self.per_class()[1][cls]))

    def f1(self, cls: int) -> float | None:
        """``2 tp / (2 tp + fp + fn)`` of class ``cls``; None when it never occurs at all."""
        return _opt(float(self.per_class()[2][cls]))

    def accuracy(self) -> float | None:
        """Share of pairs on the diagonal; None when empty."""
        n = self.total
        return float(np.trace(self.counts)) / n if n else None

    def macro(self) -> tuple[float | None, float | None, float | None]:
        """Macro precision, recall, F1: means over the classes where each is defined."""
        out: list[float | None] = []
        for arr in self.per_class():
            defined = arr[~np.isnan(arr)]
            out.append(float(defined.mean()) if defined.size else None)
        return out[0], out[1], out[2]

    def micro(self) -> tuple[float | None, float | None, float | None]:
        """Micro precision, recall, F1 from pooled counts (each equals accuracy here)."""
        acc = self.accuracy()
        return acc, acc, acc
