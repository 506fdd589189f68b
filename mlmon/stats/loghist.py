"""A mergeable quantile sketch with bounded relative error (log-spaced buckets).

Value ``x > 0`` goes to bucket ``k = ceil(log(x) / log(gamma))`` with
``gamma = (1 + a) / (1 - a)``; the bucket's representative ``2 gamma^k / (gamma + 1)`` is within
a relative error ``a`` of every value in the bucket, so every quantile is within ``a`` of the true
order statistic of the same rank. Negative values use a mirrored set of buckets; values with
``|x| < min_value`` count as zero; values above ``max_value`` land in the top bucket (their
exact maximum is still kept). Counts live in dense numpy arrays so a batch is one ``bincount``
and a merge is one array addition.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from mlmon.stats.moments import finite_extremes

__all__ = ["LogHistogram"]


class LogHistogram:
    """Quantiles within ``rel_error`` relative error, mergeable, in fixed memory.

    Args:
        rel_error: the relative error bound ``a`` (default 1%).
        min_value: smallest magnitude kept apart from zero.
        max_value: largest magnitude resolved.

    With the defaults (1%, 1e-9 .. 1e9) there are 2,073 buckets per sign: 16.6 KB for positive
    values, the negative half allocated only when a negative value arrives.

    >>> h = LogHistogram()
    >>> h.add_many(np.arange(1, 1001, dtype=float))
    >>> abs(h.quantile(0.5) - 500.5) / 500.5 < 0.01
    True
    >>> h.quantile(1.0), h.count
    (1000.0, 1000)
    """

    __slots__ = (
        "_lg",
        "_neg",
        "_offset",
        "_pos",
        "count",
        "max",
        "max_value",
        "min",
        "min_value",
        "rel_error",
        "zero",
    )

    def __init__(self, rel_error: float = 0.01, min_value: float = 1e-9, max_value: float = 1e9):
        if not 0 < rel_error < 1:
            raise ValueError(f"rel_error must be in (0, 1), got {rel_error!r}")
        if not 0 < min_value < max_value:
            raise ValueError(f"need 0 < min_value < max_value, got {min_value!r}, {max_value!r}")
        self.rel_error = rel_error
        self.min_value = min_value
        self.max_value = max_value
        gamma = (1 + rel_error) / (1 - rel_error)
        self._lg = math.log(gamma)
        lo = math.ceil(math.log(min_value) / self._lg)
        hi = math.ceil(math.log(max_value) / self._lg)
        self._offset = lo
        self._pos = np.zeros(hi - lo + 1, dtype=np.int64)
        self._neg: npt.NDArray[np.int64] | None = None
        self.zero = 0
        self.count = 0
        self.min = math.inf
        self.max = -math.inf

    @property
    def buckets(self) -> int:
        """Buckets per sign."""
        return int(self._pos.size)

    def reset(self) -> None:
        """Forget everything (keeps the arrays)."""
        self._pos[:] = 0
        if self._neg is not None:
            self._neg[:] = 0
        self.zero = 0
        self.count = 0
        self.min = math.inf
        self.max = -math.inf

    def _index(self, mags: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
        t = np.log(mags)  # one temporary, then in place: the same cells as ceil(log(m) / lg)
        np.divide(t, self._lg, out=t)
        np.ceil(t, out=t)
        k = t.astype(np.intp)
        k -= self._offset
        np.clip(k, 0, self._pos.size - 1, out=k)
        return k

    def add(self, value: float) -> None:
        """Add one value (non-finite values are ignored)."""
        self.add_many(np.array([value], dtype=np.float64))

    def add_many(self, values: npt.ArrayLike) -> None:
        """Add a batch of values (non-finite values are ignored; the caller counts them)."""
        finite = finite_extremes(values)
        if finite is None:
            return
        x, lo, hi = finite
        self.count += int(x.size)
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)
        n = self._pos.size
        if lo >= self.min_value:  # all positive: no sign masks
            self._pos += np.bincount(self._index(x), minlength=n)
            return
        pos = x[x >= self.min_value]
        if pos.size:
            self._pos += np.bincount(self._index(pos), minlength=n)
        neg = x[x <= -self.min_value]
        if neg.size:
            if self._neg is None:
                self._neg = np.zeros(n, dtype=np.int64)
            self._neg += np.bincount(self._index(-neg), minlength=n)
        self.zero += int(x.size - pos.size - neg.size)

    def merge(self, other: object) -> None:
        """Add everything ``other`` has seen. Both must have the same parameters."""
        assert isinstance(other, LogHistogram)
        if other.count == 0:
            return
        if other._pos.size != self._pos.size or other._offset != self._offset:
            raise ValueError("cannot merge LogHistograms with different parameters")
        self._pos += other._pos
        if other._neg is not None:
            if self._neg is None:
                self._neg = other._neg.copy()
            else:
                self._neg += other._neg
        self.zero += other.zero
        self.count += other.count
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def _value(self, k: int) -> float:
        gamma = math.exp(self._lg)
        return 2.0 * gamma ** (k + self._offset) / (gamma + 1.0)

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0 <= q <= 1); ``q=0`` and ``q=1`` are the exact min and max.

        The rank is ``q * (count - 1)`` (lower order statistic), as numpy's ``"lower"`` method.
        Returns NaN when empty.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q!r}")
        if self.count == 0:
            return math.nan
        if q == 0.0:
            return self.min
        if q == 1.0:
            return self.max
        rank = math.floor(q * (self.count - 1))
        seen = 0
        if self._neg is not None:
            neg_total = int(self._neg.sum())
            if rank < neg_total:
                # Most negative first: walk the negative buckets from the top index down.
                cum = np.cumsum(self._neg[::-1])
                i = int(np.searchsorted(cum, rank, side="right"))
                k = self._neg.size - 1 - i
                return self._clamp(-self._value(k))
            seen = neg_total
        if rank < seen + self.zero:
            return self._clamp(0.0)
        seen += self.zero
        cum = np.cumsum(self._pos)
        i = int(np.searchsorted(cum, rank - seen, side="right"))
        return self._clamp(self._value(min(i, self._pos.size - 1)))

    def quantiles(self, qs: tuple[float, ...]) -> list[float]:
        """Several quantiles at once."""
        return [self.quantile(q) for q in qs]

    def _clamp(self, v: float) -> float:
        return min(max(v, self.min), self.max)
