"""The model as software: calls, rows, errors, latency and calls in flight (a monitor part).

Fed by the monitor's drain with the raw durations of the calls that finished since the last
drain; holds the rolling window of service slices, the cumulative counters and latency
buckets, and (when an emitter forwards raw timings) the cycle's latency sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt

from mlmon._component import Triple
from mlmon.stats.loghist import LogHistogram
from mlmon.stats.reservoir import Reservoir
from mlmon.window import RollingWindow

__all__ = ["LATENCY_BUCKETS", "LATENCY_QUANTILES", "ServiceComponent"]

LATENCY_QUANTILES = (0.5, 0.9, 0.95, 0.99, 1.0)
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
MAX_ERROR_TYPES = 64


def _fmt_le(x: float) -> str:
    return "+Inf" if math.isinf(x) else format(x, "g")


class _ServiceSlice:
    """Service counters of one window slice."""

    __slots__ = ("calls", "errors", "good", "lat_sum", "latency", "rows", "slow")

    def __init__(self) -> None:
        self.lat_sum = 0.0
        self.calls = 0
        self.rows = 0
        self.slow = 0
        self.good = 0
        self.errors = 0
        self.latency = LogHistogram(rel_error=0.01, min_value=1e-9, max_value=1e5)

    def merge(self, other: object) -> None:
        assert isinstance(other, _ServiceSlice)
        self.calls += other.calls
        self.rows += other.rows
        self.slow += other.slow
        self.good += other.good
        self.errors += other.errors
        self.lat_sum += other.lat_sum
        self.latency.merge(other.latency)

    def reset(self) -> None:
        self.calls = self.rows = self.slow = self.good = self.errors = 0
        self.lat_sum = 0.0
        self.latency.reset()


class _StreamSlice:
    """Streaming calls of one window slice: time to first item and items."""

    __slots__ = ("first", "items", "streams")

    def __init__(self) -> None:
        self.streams = 0
        self.items = 0
        self.first = LogHistogram(rel_error=0.01, min_value=1e-9, max_value=1e5)

    def merge(self, other: object) -> None:
        assert isinstance(other, _StreamSlice)
        self.streams += other.streams
        self.items += other.items
        self.first.merge(other.first)

    def reset(self) -> None:
        self.streams = self.items = 0
        self.first.reset()


class ServiceComponent:
    """Calls, rows, errors by type, latency and calls in flight of one monitor.

    Args:
        window: seconds the rolling window covers.
        slices: slices of the window.
        now: the monitor's monotonic clock at creation.
        latency_budget: seconds; slower calls count as slow and against availability.
        inflight: returns the calls in flight now and the age of the oldest (seconds).
        timings: size of the per-cycle latency sample, or None to keep none.

    >>> svc = ServiceComponent(window=60.0, now=0.0, latency_budget=0.1)
    >>> svc.observe(np.array([0.02, 0.3]), error_types=["ValueError"], rows=3, now=1.0)
    >>> values = {(n, tuple(l.values())): v for n, v, l in svc.samples(2.0)}
    >>> values[("mlmon_calls_total", ())], values[("mlmon_slow_calls_total", ())]
    (2, 1)
    >>> values[("mlmon_errors_total", ("ValueError",))], values[("mlmon_availability_ratio", ())]
    (1, 0.5)
    """

    def __init__(
        self,
        window: float,
        slices: int = 10,
        now: float = 0.0,
        *,
        latency_budget: float | None = None,
        inflight: Callable[[], tuple[int, float]] | None = None,
        timings: int | None = None,
    ) -> None:
        self.latency_budget = latency_budget
        self._inflight = inflight
        self._window: RollingWindow[_ServiceSlice] = RollingWindow(_ServiceSlice, window, slices, now)
        self._window_args = (window, slices, now)
        self._streams: RollingWindow[_StreamSlice] | None = None  # made at the first stream
        self.timings = Reservoir(timings) if timings else None
        self._le = np.array((*LATENCY_BUCKETS, math.inf))
        self._init_totals()

    def _init_totals(self) -> None:
        self.calls_total = 0
        self.rows_total = 0
        self.slow_total = 0
        self.errors_total: dict[str, int] = {}
        self._le_counts = np.zeros(len(self._le), dtype=np.int64)
        self._lat_sum = 0.0
        self.stream_items_total = 0

    def add_error(self, error_type: str, count: int) -> None:
        """Count ``count`` errors of a type (types beyond the 64th are counted as "other")."""
        if error_type not in self.errors_total and len(self.errors_total) >= MAX_ERROR_TYPES:
            error_type = "other"
        self.errors_total[error_type] = self.errors_total.get(error_type, 0) + count

    def add_dropped(self, calls: int, rows: int, errors: dict[str, int]) -> None:
        """Calls whose details were dropped: their count, rows and error types still count."""
        self.calls_total += calls
        self.rows_total += rows
        for key, count in errors.items():
            self.add_error(key, count)

    def observe(self, seconds: npt.NDArray[np.float64], error_types: list[str], rows: int, now: float) -> None:
        """Add drained calls: ``seconds`` holds the successful calls' durations first, then one
        per error in ``error_types``; ``rows`` is their prediction rows."""
        n = int(seconds.size)
        n_err = len(error_types)
        n_ok = n - n_err
        for name in error_types:
            self.add_error(name, 1)
        budget = self.latency_budget
        if budget is None:
            slow, good = 0, n_ok
        else:
            slow = int(np.count_nonzero(seconds > budget))
            good = int(np.count_nonzero(seconds[:n_ok] <= budget))
        total = float(seconds.sum())
        sl = self._window.current(now)
        sl.calls += n
        sl.rows += rows
        sl.errors += n_err
        sl.slow += slow
        sl.good += good
        sl.latency.add_many(seconds)
        sl.lat_sum += total
        self.calls_total += n
        self.rows_total += rows
        self.slow_total += slow
        self._le_counts += np.bincount(np.searchsorted(self._le, seconds, side="left"), minlength=self._le.size)
        self._lat_sum += total
        if self.timings is not None:
            self.timings.add_many(seconds)

    def observe_streams(self, streams: list[tuple[int, int]], now: float) -> None:
        """Add finished streaming calls: (ns to first item, or -1 for none; items)."""
        if self._streams is None:
            self._streams = RollingWindow(_StreamSlice, *self._window_args)
        first = np.array([f for f, _ in streams], dtype=np.float64)
        items = sum(n for _, n in streams)
        sl = self._streams.current(now)
        sl.streams += len(streams)
        sl.items += items
        sl.first.add_many(np.maximum(first[first >= 0], 0.0) / 1e9)
        self.stream_items_total += items

    def covered(self, now: float) -> float:
        """Seconds of observation the window holds."""
        return self._window.covered(now)

    def samples(self, now: float) -> Iterator[Triple]:
        """Counters, window rates and ratios, latency quantiles and buckets, in-flight calls."""
        yield ("mlmon_up", 1.0, {})
        yield ("mlmon_calls_total", self.calls_total, {})
        yield ("mlmon_rows_total", self.rows_total, {})
        yield ("mlmon_slow_calls_total", self.slow_total, {})
        for etype, count in sorted(self.errors_total.items()):
            yield ("mlmon_errors_total", count, {"error_type": etype})
        w = self._window.merged(now)
        covered = self._window.covered(now)
        yield ("mlmon_calls_per_second", w.calls / covered, {})
        yield ("mlmon_rows_per_second", w.rows / covered, {})
        if w.calls:
            yield ("mlmon_error_ratio", w.errors / w.calls, {})
            yield ("mlmon_availability_ratio", w.good / w.calls, {})
            for q in LATENCY_QUANTILES:
                yield ("mlmon_latency_seconds", w.latency.quantile(q), {"quantile": format(q, "g")})
            yield ("mlmon_latency_seconds_mean", w.lat_sum / w.calls, {})
        n_inflight, oldest = self._inflight() if self._inflight is not None else (0, 0.0)
        yield ("mlmon_inflight_calls", n_inflight, {})
        yield ("mlmon_oldest_inflight_seconds", oldest, {})
        cum = np.cumsum(self._le_counts)
        for le, c in zip(self._le.tolist(), cum.tolist(), strict=True):
            yield ("mlmon_latency_seconds_bucket", c, {"le": _fmt_le(le)})
        yield ("mlmon_latency_seconds_sum", self._lat_sum, {})
        yield ("mlmon_latency_seconds_count", int(cum[-1]), {})
        if self._streams is not None:
            yield ("mlmon_stream_items_total", self.stream_items_total, {})
            st = self._streams.merged(now)
            if st.streams:
                yield ("mlmon_stream_items_mean", st.items / st.streams, {})
            if st.first.count:
                for q in LATENCY_QUANTILES:
                    yield ("mlmon_time_to_first_item_seconds", st.first.quantile(q), {"quantile": format(q, "g")})

    def reset(self) -> None:
        """Forget everything (in a forked child)."""
        self._window.reset()
        self._streams = None
        self._init_totals()
        if self.timings is not None:
            self.timings.reset()
