"""Mergeable regression error sums: MAE, RMSE and mean (signed) error."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["RegressionErrors"]


class RegressionErrors:
    """Sums of errors ``prediction - label`` for MAE, RMSE and bias, mergeable across slices.

    Plain sums merge exactly (one addition each); the error magnitudes of a monitoring window
    do not need compensated summation. Non-finite pairs are skipped (the caller counts them).
    Read-outs are None when empty.

    >>> e = RegressionErrors()
    >>> e.update_many(np.array([3.0, 5.0, 2.0]), np.array([2.0, 5.0, 4.0]))
    >>> e.count, e.mae(), e.mean_error()
    (3, 1.0, -0.3333333333333333)
    >>> round(e.rmse(), 6)
    1.290994
    """

    __slots__ = ("count", "sum_abs", "sum_error", "sum_sq")

    def __init__(self) -> None:
        self.count = 0
        self.sum_error = 0.0
        self.sum_abs = 0.0
        self.sum_sq = 0.0

    def update(self, pred: float, true: float) -> None:
        """Add one (prediction, label) pair."""
        err = float(pred) - float(true)
        if math.isfinite(err):
            self.count += 1
            self.sum_error += err
            self.sum_abs += abs(err)
            self.sum_sq += err * err

    def update_many(self, pred: npt.ArrayLike, true: npt.ArrayLike) -> None:
        """Add equal-length arrays of predictions and labels."""
        p = np.asarray(pred, dtype=np.float64).ravel()
        t = np.asarray(true, dtype=np.float64).ravel()
        if p.shape != t.shape:
            raise ValueError(f"pred and true differ in length: {p.size} != {t.size}")
        err = p - t
        if err.size and not np.isfinite(err).all():
            err = err[np.isfinite(err)]
        if err.size == 0:
            return
        self.count += int(err.size)
        self.sum_error += float(err.sum())
        self.sum_abs += float(np.abs(err).sum())
        self.sum_sq += float(err @ err)

    def merge(self, other: object) -> None:
        """Add another accumulator's sums."""
        assert isinstance(other, RegressionErrors)
        self.count += other.count
        self.sum_error += other.sum_error
        self.sum_abs += other.sum_abs
        self.sum_sq += other.sum_sq

    def reset(self) -> None:
        """Forget everything."""
        self.count = 0
        self.sum_error = self.sum_abs = self.sum_sq = 0.0

    def mae(self) -> float | None:
        """Mean absolute error."""
        return self.sum_abs / self.count if self.count else None

    def rmse(self) -> float | None:
        """Root mean squared error."""
        return math.sqrt(self.sum_sq / self.count) if self.count else None

    def mean_error(self) -> float | None:
        """Mean signed error (positive: the model over-predicts)."""
        return self.sum_error / self.count if self.count else None
