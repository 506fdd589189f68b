"""Downstream outcomes: what happened after the predictions (clicks, purchases, revenue).

``log_outcome(name, ids=None, value=1.0)`` adds ``value`` once per id (once when ``ids`` is
None), or the sum of ``value`` when it is a batch as long as ``ids``. The totals are counters
``mlmon_outcome_total{outcome}``; ``mlmon_outcome_rate{outcome}`` is the window's outcome sum
divided by the window's prediction rows (outcomes per prediction).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from mlmon._component import CallBatch, Triple
from mlmon.feedback import as_batch
from mlmon.window import RollingWindow

__all__ = ["DEFAULT_MAX_OUTCOMES", "OutcomeComponent"]

DEFAULT_MAX_OUTCOMES = 100
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _number(v: object) -> float:
    """A value as a float; NaN (dropped, counted) for anything but a real number — a string
    such as ``"3"`` is not parsed, as labels never are."""
    if not isinstance(v, (int, float, np.integer, np.floating, np.bool_)):
        return math.nan
    try:
        return float(v)
    except OverflowError:
        return math.nan


class _OutcomeSlice:
    __slots__ = ("rows", "sums")

    def __init__(self) -> None:
        self.rows = 0
        self.sums: dict[str, float] = {}

    def merge(self, other: object) -> None:
        assert isinstance(other, _OutcomeSlice)
        self.rows += other.rows
        for name, v in other.sums.items():
            self.sums[name] = self.sums.get(name, 0.0) + v

    def reset(self) -> None:
        self.rows = 0
        self.sums.clear()


class OutcomeComponent:
    """Totals and per-prediction rates of named downstream outcomes (a monitor component).

    Args:
        window: seconds the window covers.
        slices: slices of the window.
        now: the monitor's monotonic clock at creation.
        max_names: most distinct outcome names (default 100). Outcomes under further names
            are dropped and counted in ``mlmon_dropped_total{buffer="outcomes"}``, so that a
            name built from data cannot grow the metric set without bound.

    Names must match ``[A-Za-z0-9_-]{1,64}`` (they become metric labels and StatsD/Graphite
    path parts); anything else raises ValueError at the call, like any misconfiguration.
    Non-finite values are dropped and counted the same way.

    >>> from mlmon._component import CallBatch
    >>> comp = OutcomeComponent(window=60.0, now=0.0)
    >>> comp.ingest(CallBatch(now=1.0, wall=0.0, outputs=[None], rows=[4]))
    >>> comp.log("click", ids=["a", "b"], now=2.0)
    >>> sorted((n, l["outcome"], v) for n, v, l in comp.samples(3.0) if "outcome" in l)
    [('mlmon_outcome_rate', 'click', 0.5), ('mlmon_outcome_total', 'click', 2.0)]
    """

    def __init__(
        self,
        window: float,
        slices: int = 10,
        now: float = 0.0,
        *,
        max_names: int = DEFAULT_MAX_OUTCOMES,
    ) -> None:
        if not (isinstance(max_names, int) and max_names >= 1):
            raise ValueError(f"max_names must be an int >= 1, got {max_names!r}")
        self.max_names = max_names
        self._window: RollingWindow[_OutcomeSlice] = RollingWindow(
            _OutcomeSlice, window, slices, now
        )
        self.totals: dict[str, float] = {}
        self.dropped = 0

    def ingest(self, batch: CallBatch) -> None:
        """Count the drained calls' prediction rows (the rate's denominator)."""
        self._window.current(batch.now).rows += int(sum(batch.rows))

    def log(self, name: str, ids: Any = None, value: Any = 1.0, now: float = 0.0) -> None:
        """Record outcomes.

        Args:
            name: the outcome's name.
            ids: the predictions it followed (a batch or a single id); each counts once.
            value: added per id: a number, or a batch of numbers as long as ``ids``.
            now: the monitor's monotonic clock.

        Raises:
            ValueError: for an invalid name, or ``value`` and ``ids`` of different lengths.
        """
        if not isinstance(name, str) or _NAME.fullmatch(name) is None:
            raise ValueError(f"outcome name must match [A-Za-z0-9_-]{{1,64}}, got {name!r}")
        n = 1 if ids is None else len(as_batch(ids))
        if isinstance(value, (int, float, np.integer, np.floating, str, bytes)):
            values = np.full(n, _number(value))
        else:
            batch = as_batch(value)
            if ids is not None and len(batch) != n:
                raise ValueError(
                    f"value must be a number or as long as ids, got {len(batch)} values for {n} ids"
                )
            values = np.fromiter((_number(v) for v in batch), np.float64, len(batch))
        finite = np.isfinite(values)
        bad = int(values.size - np.count_nonzero(finite))
        if name not in self.totals and len(self.totals) >= self.max_names:
            self.dropped += int(values.size)
            return
        self.dropped += bad
        if bad == values.size:
            return
        amount = float(values[finite].sum())
        self.totals[name] = self.totals.get(name, 0.0) + amount
        sums = self._window.current(now).sums
        sums[name] = sums.get(name, 0.0) + amount

    def samples(self, now: float) -> Iterator[Triple]:
        """Outcome totals, rates over the window, and the dropped counter."""
        m = self._window.merged(now)
        for name, total in self.totals.items():
            yield ("mlmon_outcome_total", total, {"outcome": name})
            if m.rows:
                yield ("mlmon_outcome_rate", m.sums.get(name, 0.0) / m.rows, {"outcome": name})
        yield ("mlmon_dropped_total", self.dropped, {"buffer": "outcomes"})

    def reset(self) -> None:
        """Forget everything (after a fork)."""
        self._window.reset()
        self.totals.clear()
        self.dropped = 0
