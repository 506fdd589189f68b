"""Rolling windows: a ring of time slices, each holding mergeable accumulators.

The window never "reverts" an observation. Time is cut into ``slices`` equal slices of
``window / slices`` seconds; observations go into the current slice; when time moves past a
slice boundary the oldest slice is reset and reused. Reading the window merges every slice into
a fresh accumulator, so anything with ``merge`` and ``reset`` can live in a window.

Coverage: after warm-up the merged value covers between ``window - width`` and ``window``
seconds (the oldest slice is dropped whole when a new one starts); :meth:`RollingWindow.covered`
says exactly how many, and rates divide by that.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["Mergeable", "RollingWindow"]


class Mergeable(Protocol):
    """An accumulator that a window can hold."""

    def merge(self, other: object, /) -> None: ...  # pragma: no cover - protocol

    def reset(self) -> None: ...  # pragma: no cover - protocol


T = TypeVar("T", bound=Mergeable)


class RollingWindow(Generic[T]):
    """A ring of ``slices`` accumulators made by ``factory``, rotated by time.

    Args:
        factory: makes an empty accumulator.
        window: seconds the window covers, > 0.
        slices: number of slices, >= 2.
        now: the clock reading at creation (seconds, monotonic).

    Time that goes backwards is treated as no time passing; a jump forward longer than the
    window (a suspended process) clears the window once instead of looping slice by slice.

    >>> class Count:
    ...     def __init__(self): self.n = 0
    ...     def merge(self, o): self.n += o.n
    ...     def reset(self): self.n = 0
    >>> w = RollingWindow(Count, window=10.0, slices=10, now=0.0)
    >>> w.current(0.5).n += 3
    >>> w.current(5.5).n += 4
    >>> w.merged(9.9).n
    7
    >>> w.merged(10.7).n   # the slice [0, 1) has rotated out
    4
    >>> w.merged(100.0).n
    0
    """

    __slots__ = ("_factory", "_head", "_head_start", "_ring", "_start", "slices", "width", "window")

    def __init__(self, factory: Callable[[], T], window: float, slices: int = 10, now: float = 0.0):
        if not (isinstance(window, (int, float)) and math.isfinite(window) and window > 0):
            raise ValueError(f"window must be a positive number of seconds, got {window!r}")
        if not (isinstance(slices, int) and slices >= 2):
            raise ValueError(f"slices must be an int >= 2, got {slices!r}")
        self._factory = factory
        self.window = float(window)
        self.slices = slices
        self.width = self.window / slices
        self._ring: list[T] = [factory() for _ in range(slices)]
        self._head = 0
        self._start = float(now)
        self._head_start = float(now)

    def _advance(self, now: float) -> None:
        elapsed = now - self._head_start
        if elapsed < self.width:
            return  # includes time going backwards
        steps = int(elapsed // self.width)
        if steps >= self.slices:
            for acc in self._ring:
                acc.reset()
            self._head = (self._head + steps) % self.slices
        else:
            for _ in range(steps):
                self._head = (self._head + 1) % self.slices
                self._ring[self._head].reset()
        self._head_start += steps * self.width

    def current(self, now: float) -> T:
        """The accumulator for observations made at ``now`` (rotating first if due)."""
        self._advance(now)
        return self._ring[self._head]

    def merged(self, now: float) -> T:
        """A fresh accumulator equal to every slice in the window merged."""
        self._advance(now)
        out = self._factory()
        # Oldest first, so order-sensitive merges see time order.
        for i in range(1, self.slices + 1):
            out.merge(self._ring[(self._head + i) % self.slices])
        return out

    def covered(self, now: float) -> float:
        """Seconds of observation the merged window holds (> 0)."""
        self._advance(now)
        span = (self.slices - 1) * self.width + max(0.0, now - self._head_start)
        since_start = max(0.0, now - self._start)
        return max(min(span, since_start, self.window), 1e-9)

    def reset(self) -> None:
        """Empty every slice (after a fork, say)."""
        for acc in self._ring:
            acc.reset()
