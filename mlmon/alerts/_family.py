"""The engine's evaluation of budgeted rules: every series of every Shift rule decided together.

The engine (:mod:`mlmon.alerts.engine`) hands its :class:`~mlmon.alerts.shift.Shift` rules here
on each evaluation. Each matching series becomes an alert instance as with any rule; what differs
is the decision: the series' statistic is computed with the vectorised functions of
:mod:`mlmon.alerts.budget` (the same ones ``benchmarks/bench_false_alarms.py`` drives), held to
the z-limit of its share of the budget, and corrected across the family in one step.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mlmon.alerts._checks import LabelPairs
from mlmon.alerts._state import FIRING, INACTIVE, Compiled, Instance
from mlmon.alerts.base import COUNT_METRICS
from mlmon.alerts.budget import AlertBudget, decide_family, series_statistics
from mlmon.alerts.shift import Shift
from mlmon.snapshot import Sample, Snapshot

if TYPE_CHECKING:
    from mlmon.alerts.events import AlertEvent

__all__ = ["Family", "series_count"]

_DEFAULT_INTERVAL = 10.0  # seconds assumed between decisions before two have been seen


def series_count(samples: Sequence[Sample], labels: LabelPairs) -> float:
    """The value of the count series that applies to a series with ``labels``.

    Count metrics (``mlmon_labels_window``, ``mlmon_rows_per_second``, ...) carry only the labels
    that split the traffic (a ``segment``, say): the count of a series is the count sample whose
    labels are the series' labels restricted to those keys, else the unlabelled one. NaN when
    there is neither.
    """
    keys = {k for s in samples for k, _ in s.labels}
    want = tuple(kv for kv in labels if kv[0] in keys)
    fallback = math.nan
    for s in samples:
        if s.labels == want:
            return s.value
        if not s.labels:
            fallback = s.value
    return fallback


def _same(samples: Sequence[Sample], labels: LabelPairs) -> float:
    for s in samples:
        if s.labels == labels:
            return s.value
    return math.nan


def _positive_share(samples: Sequence[Sample], labels: LabelPairs) -> float:
    """Share of the window's outputs predicted as the series' class (binary: the positive one)."""
    have = dict(labels)
    if "average" in have:
        return math.nan  # a macro/micro average has no single class to count
    cls = have.pop("class", None)
    rest = tuple(sorted(have.items()))
    last = math.nan
    for s in samples:
        d = dict(s.labels)
        c = d.pop("class", None)
        if tuple(sorted(d.items())) != rest:
            continue
        if cls is not None and c == cls:
            return s.value
        last = s.value  # the task's classes in order: a binary task's positive one is last
    return math.nan if cls is not None else last


class Family:
    """The budget, the interval between decisions as measured, and the evaluation itself."""

    def __init__(self, budget: AlertBudget) -> None:
        self.budget = budget
        self._gaps: deque[float] = deque(maxlen=16)
        self._last: float | None = None

    def reset(self) -> None:
        self._gaps.clear()
        self._last = None

    def interval(self) -> float:
        """Seconds between decisions: the budget's, else the median recent gap."""
        if self.budget.interval is not None:
            return float(self.budget.interval)
        return statistics.median(self._gaps) if self._gaps else _DEFAULT_INTERVAL

    def evaluate(
        self,
        compiled: Sequence[Compiled],
        snapshot: Snapshot,
        index: Mapping[str, list[Sample]],
        now: float,
        events: list[AlertEvent],
        *,
        instance: Callable[[Compiled, LabelPairs, LabelPairs], Instance | None],
        baseline: Callable[..., tuple[float | None, float | None]],
        step: Callable[..., None],
        error: Callable[[str, BaseException], None],
    ) -> None:
        """Decide every series of the budgeted rules in ``compiled`` and step their states."""
        if self._last is not None and now > self._last:
            self._gaps.append(now - self._last)
        self._last = now
        window = snapshot.window
        per_rule: list[tuple[Compiled, list[Any]]] = []
        for c in compiled:
            per_rule.append((c, self._collect(c, snapshot, index, now, window, instance, baseline, error)))
        series = sum(len(c.instances) for c in compiled)
        interval = self.interval()
        insts: list[tuple[Compiled, Instance]] = []
        parts: list[tuple[Any, ...]] = []
        for c, rows in per_rule:
            if not rows:
                continue
            rule = c.rule
            assert isinstance(rule, Shift)
            limit = self.budget.limit(series, window, interval, rule.sides)
            z, change, ok = self._statistics(rule, rows, limit)
            k = len(rows)
            firing = np.array([r[0].state == FIRING for r in rows], dtype=np.bool_)
            parts.append((z, change, ok, np.full(k, limit), firing,
                          np.full(k, rule.min_effect), np.full(k, rule.clear_ratio)))  # fmt: skip
            insts.extend((c, r[0]) for r in rows)
        if parts:
            z, change, ok, limits, firing, min_effect, clear = (np.concatenate(x) for x in zip(*parts, strict=True))
            cond = decide_family(z, change, ok, limits, firing, min_effect, clear, self.budget.correction)
            for i, (c, inst) in enumerate(insts):
                inst.limit = float(limits[i])
                if ok[i]:
                    inst.measure = float(z[i])
                    step(c, inst, bool(cond[i]), now, None, snapshot, events)
                else:
                    inst.measure = None
                    step(c, inst, None, now, None, snapshot, events)
        for c, rows in per_rule:
            seen = {id(r[0]) for r in rows}
            for key, inst in list(c.instances.items()):
                if id(inst) in seen:
                    continue
                inst.value = inst.measure = None
                step(c, inst, None, now, None, snapshot, events)
                if inst.state == INACTIVE and now - inst.last_seen > c.forget:
                    del c.instances[key]

    def _collect(
        self,
        c: Compiled,
        snapshot: Snapshot,
        index: Mapping[str, list[Sample]],
        now: float,
        window: float,
        instance: Callable[[Compiled, LabelPairs, LabelPairs], Instance | None],
        baseline: Callable[..., tuple[float | None, float | None]],
        error: Callable[[str, BaseException], None],
    ) -> list[Any]:
        """One row per matching series: (instance, value, baseline, trials, n_baseline, scale).

        A series whose baseline raises (a ``reference_value`` of yours) is counted as an error
        of the rule and left undecided; the rule's other series go on.
        """
        rule = c.rule
        assert isinstance(rule, Shift)
        spec = rule.spec
        counts = index.get(COUNT_METRICS[spec.count], [])
        per_second = spec.count in ("rows", "calls")
        base_spec = rule.baseline
        rows: list[Any] = []
        for s in index.get(rule.metric, ()):
            if not c.matches(s.labels):
                continue
            key = tuple(kv for kv in s.labels if kv[0] not in c.fixed_keys)
            inst = instance(c, key, s.labels)
            if inst is None:
                continue
            inst.last_seen = now
            inst.series_labels = s.labels
            inst.value = s.value
            n = series_count(counts, s.labels)
            if per_second:
                n = round(n * window, 6)
            trials = n
            if spec.trials is not None:
                share = _positive_share(index.get("mlmon_output_class_ratio", []), s.labels)
                trials = n * share
                if spec.trials == "actual":
                    p = _same(index.get("mlmon_precision", []), s.labels)
                    r = _same(index.get("mlmon_recall", []), s.labels)
                    trials = trials * p / r if r > 0 else math.nan
            scale = math.nan
            if spec.scale == "mlmon_rmse":  # mean error: variance = rmse² - mean²
                rmse = _same(index.get("mlmon_rmse", []), s.labels)
                scale = rmse * rmse - s.value * s.value
                scale = max(0.0, scale) if math.isfinite(scale) else math.nan
            elif spec.scale is not None:
                scale = _same(index.get(spec.scale, []), s.labels)
            base: float | None = None
            n_base: float | None = None
            if math.isfinite(n) and n >= rule.min_samples and math.isfinite(s.value):
                try:
                    base, n_base = baseline(c, inst, s, trials, now, window)
                except BaseException as exc:  # counted, never out of the reporter thread
                    error(f"rule:{rule.name}", exc)
                    base = n_base = None
                if base_spec.kind == "trailing" and n_base is not None:
                    # The trailing mean averages overlapping windows spanning seconds + window.
                    assert base_spec.seconds is not None
                    n_base *= max(1.0, base_spec.min_coverage * base_spec.seconds / max(window, 1e-9))
            inst.baseline = base
            rows.append((inst, s.value, base, trials, n_base, scale))
        return rows

    @staticmethod
    def _statistics(
        rule: Shift, rows: list[Any], limit: float
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """z, change and eligibility of each row (vectorised over the rule's series)."""
        spec = rule.spec
        value = np.array([r[1] for r in rows], dtype=np.float64)
        base = np.array([math.nan if r[2] is None else r[2] for r in rows], dtype=np.float64)
        trials = np.array([r[3] for r in rows], dtype=np.float64)
        n_base = np.array([math.inf if r[4] is None else r[4] for r in rows], dtype=np.float64)
        scale = np.array([r[5] for r in rows], dtype=np.float64)
        return series_statistics(
            spec.kind, value, base, trials, n_base,
            scale if spec.kind == "mean" else None, rule.direction,
            limit=limit, effect=rule.effect, power=rule.power,
        )  # fmt: skip
