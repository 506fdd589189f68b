"""A uniform sample of a stream of numbers (reservoir sampling), taken and restarted per cycle."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["Reservoir"]


class Reservoir:
    """Keeps a uniform sample of at most ``capacity`` of the values added since the last take.

    Every value added has the same chance ``capacity / seen`` of being in the sample, so a
    sample of ``n`` values out of ``seen`` stands for ``seen`` values at rate ``n / seen``.

    Args:
        capacity: most values kept, >= 1.
        seed: for the random choices (tests).

    >>> r = Reservoir(3, seed=1)
    >>> r.add_many(np.array([1.0, 2.0]))
    >>> r.take()
    ((1.0, 2.0), 1.0)
    >>> r.add_many(np.arange(10.0))
    >>> sample, rate = r.take()
    >>> len(sample), rate
    (3, 0.3)
    >>> r.take()
    ((), 1.0)
    """

    __slots__ = ("_rng", "_values", "capacity", "seen")

    def __init__(self, capacity: int, *, seed: int | None = None) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        self.capacity = capacity
        self._values = np.empty(capacity)
        self._rng = np.random.default_rng(seed)
        self.seen = 0

    def add_many(self, values: npt.NDArray[np.float64]) -> None:
        """Offer every value of ``values`` to the sample."""
        cap, seen = self.capacity, self.seen
        room = max(0, min(cap - seen, values.size))
        if room:
            self._values[seen : seen + room] = values[:room]
        rest = values[room:]
        if rest.size:
            # Value number j (1-based, since the last take) replaces a random slot with
            # probability cap / j.
            j = seen + room + np.arange(1, rest.size + 1)
            keep = self._rng.random(rest.size) < cap / j
            slots = self._rng.integers(0, cap, int(keep.sum()))
            self._values[slots] = rest[keep]
        self.seen = seen + int(values.size)

    def take(self) -> tuple[tuple[float, ...], float]:
        """The sample and its sampling rate (kept / seen); starts a new sample."""
        seen = self.seen
        if not seen:
            return (), 1.0
        n = min(seen, self.capacity)
        sample = tuple(self._values[:n].tolist())
        self.seen = 0
        return sample, n / seen

    def reset(self) -> None:
        """Forget the current sample."""
        self.seen = 0
