"""Streaming count, mean, variance, min and max with an exact parallel merge (Chan et al.)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["Moments", "finite_extremes"]



def finite_extremes(values: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], float, float] | None:
    """The finite values of ``values`` (flattened float64) with their minimum and maximum, or
    None if there are none. The extremes say whether every value is finite (a NaN makes both
    NaN, an infinity shows in one), so a batch without a missing value costs no mask pass.

    >>> finite_extremes([3.0, float("nan"), -1.0])
    (array([ 3., -1.]), -1.0, 3.0)
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if not x.size:
        return None
    lo, hi = float(x.min()), float(x.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        x = x[np.isfinite(x)]
        if not x.size:
            return None
        lo, hi = float(x.min()), float(x.max())
    return x, lo, hi


class Moments:
    """Count, mean, variance, min, max of a stream of floats, mergeable across slices.

    Batches are reduced with numpy (two passes over the batch, so the batch variance is
    exact) and combined with Chan's pairwise update, which stays accurate where a running
    sum of squares would cancel catastrophically. Non-finite values are ignored; the caller
    counts them.

    >>> m = Moments()
    >>> m.update_many(np.array([1.0, 2.0, 3.0, 4.0]))
    >>> m.count, m.mean, m.variance
    (4, 2.5, 1.25)
    >>> other = Moments(); other.update(10.0)
    >>> m.merge(other)
    >>> m.count, m.max
    (5, 10.0)
    """

    __slots__ = ("count", "m2", "max", "mean", "min")

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf

    def reset(self) -> None:
        """Forget everything."""
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf

    def _combine(self, n: int, mean: float, m2: float, lo: float, hi: float) -> None:
        if n == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.m2, self.min, self.max = n, mean, m2, lo, hi
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)

    def update(self, value: float) -> None:
        """Add one value (non-finite values are ignored)."""
        v = float(value)
        if math.isfinite(v):
            self._combine(1, v, 0.0, v, v)

    def update_many(self, values: npt.ArrayLike) -> None:
        """Add a batch of values (non-finite values are ignored)."""
        finite = finite_extremes(values)
        if finite is None:
            return
        x, lo, hi = finite
        n = int(x.size)
        # Values near the float limit overflow to inf: that variance is then not emitted
        # (non-finite gauges are left out of snapshots), which is the defined outcome.
        with np.errstate(over="ignore", invalid="ignore"):
            mean = float(x.mean())
            d = x - mean
            m2 = float(d @ d)
        self._combine(n, mean, m2, lo, hi)

    def merge(self, other: object) -> None:
        """Add everything ``other`` (a Moments) has seen."""
        assert isinstance(other, Moments)
        self._combine(other.count, other.mean, other.m2, other.min, other.max)

    @property
    def variance(self) -> float:
        """Population variance (ddof=0); NaN when empty."""
        return self.m2 / self.count if self.count else math.nan

    @property
    def sample_variance(self) -> float:
        """Sample variance (ddof=1); NaN with fewer than two values."""
        return self.m2 / (self.count - 1) if self.count > 1 else math.nan

    @property
    def total(self) -> float:
        """Sum of the values."""
        return self.mean * self.count
