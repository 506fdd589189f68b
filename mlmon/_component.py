"""The internal interface between the monitor and the parts that own window accumulators.

The hot path only appends records to bounded buffers. When the reporter (or ``snapshot()``, or
a full buffer) drains them, the monitor hands each component one :class:`CallBatch` of the
calls that finished since the last drain, under the monitor's drain lock; components update
their own :class:`~mlmon.window.RollingWindow` with it. When a snapshot is built, each
component contributes ``(name, value, labels)`` triples.

Components never see the caller's arrays: the monitor copies them on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast

import attrs

__all__ = ["CallBatch", "Component", "Triple"]

Triple = tuple[str, float, Mapping[str, str]]
T = TypeVar("T")


@attrs.define(slots=True)
class CallBatch:
    """The successful calls drained at one time.

    Attributes:
        now: monitor clock reading at the drain (seconds, monotonic; a FakeClock in tests).
        wall: wall-clock Unix time at the drain.
        outputs: per entry, recorded outputs. The decorator's fast path gathers every call that
            returned one number into a single float64 1-D array (one entry, ``rows`` = its
            length, no ids); other entries are one call each: a numpy array or list copied on
            the hot path, a string, None, or any object the predict returned. Components
            validate and count what they cannot use.
        features: per call, the copied features (numpy array 1-D for one row or 2-D for a
            batch, a dict of name → value for one row, a list of rows) or None.
        ids: per call, the prediction ids (a list or numpy array copy, a single id, or a
            ``range`` of generated ids) or None.
        rows: per call, the number of prediction rows.
        times: per entry, the monitor clock reading when the call finished (for label delay);
            entries without one (the fast path's, which have no ids) use ``now``.
        segments: per entry, what ``track(segment=...)`` gave (a value, one value per row, a
            ``FeatureSegment``), ``NO_SEGMENT`` for calls without one; empty when no call had one.
        segment_errors: ``(segment, error type)`` of the calls with a segment that raised.
        segment_codes: set by the segment part before the quality part reads the batch: one
            ``uint32`` segment code per mapped output row (0: none), or None.
    """

    now: float
    wall: float
    outputs: Sequence[Any] = attrs.field(factory=list)
    features: Sequence[Any] = attrs.field(factory=list)
    ids: Sequence[Any] = attrs.field(factory=list)
    rows: Sequence[int] = attrs.field(factory=list)
    times: Sequence[float] = attrs.field(factory=list)
    segments: Sequence[Any] = attrs.field(factory=tuple)
    segment_errors: Sequence[tuple[Any, str]] = attrs.field(factory=tuple)
    segment_codes: Any = None

    _memo: dict[Any, Any] = attrs.field(factory=dict, init=False, repr=False, eq=False)

    def memo(self, key: Any, compute: Callable[[], T]) -> T:
        """``compute()``, once per batch and key: parts that derive the same thing from a batch
        (the outputs mapped by the task, say) share one computation."""
        try:
            return cast(T, self._memo[key])
        except KeyError:
            value = self._memo[key] = compute()
            return value

    def time_of(self, i: int) -> float:
        """When entry ``i`` finished (``now`` when unknown)."""
        return float(self.times[i]) if i < len(self.times) else self.now


class Component(Protocol):
    """A part of the monitor with accumulators over the rolling window."""

    def ingest(self, batch: CallBatch) -> None:
        """Update the window with drained calls. Must not raise on bad data: count it."""

    def samples(self, now: float) -> Iterable[Triple]:
        """The component's metric values at ``now`` (window-scoped gauges, cumulative counters)."""

    def reset(self) -> None:
        """Forget everything (called in a forked child)."""
